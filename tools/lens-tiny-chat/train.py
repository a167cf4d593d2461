"""Train lens-tiny-chat from scratch on the token stream written by build_data.py.

  nice -n 10 /usr/bin/python3 tools/lens-tiny-chat/train.py --data DATA --out RUN

Deterministic for a given --seed on a given machine/BLAS build (fixed step count, seeded batches).
Writes OUT/model.pt (weights + config), OUT/train_log.jsonl and OUT/summary.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, TinyLlama, count_params  # noqa: E402
from chat_format import VOCAB_SIZE  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--d-model", type=int, default=160)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=432)
    args = ap.parse_args()

    torch.set_num_threads(1)  # OpenBLAS already uses both cores
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    os.makedirs(args.out, exist_ok=True)

    ids = np.fromfile(os.path.join(args.data, "train.u16"), dtype=np.uint16).astype(np.int64)
    starts = np.fromfile(os.path.join(args.data, "starts.i64"), dtype=np.int64)
    starts = starts[starts + args.seq + 1 <= len(ids)]
    data = torch.from_numpy(ids)

    cfg = Config(vocab_size=VOCAB_SIZE, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                 n_kv_heads=args.heads, ffn_dim=args.ffn)
    model = TinyLlama(cfg)
    n_params = count_params(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    log = open(os.path.join(args.out, "train_log.jsonl"), "w")
    print(f"params {n_params} tokens {len(ids)} conversations {len(starts)}", flush=True)
    t0 = time.time()
    running = None
    for step in range(args.steps):
        sel = rng.randint(0, len(starts), size=args.batch)
        batch = torch.stack([data[s: s + args.seq + 1] for s in starts[sel]])
        x, y = batch[:, :-1], batch[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model.forward_train(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        running = lv if running is None else 0.95 * running + 0.05 * lv
        if step % 25 == 0 or step == args.steps - 1:
            rec = {"step": step, "loss": round(lv, 4), "loss_ema": round(running, 4), "lr": lr_at(step),
                   "elapsed_s": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if (step + 1) % 250 == 0:
            torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict(), "step": step + 1},
                       os.path.join(args.out, "model.pt"))
    elapsed = time.time() - t0
    torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict(), "step": args.steps},
               os.path.join(args.out, "model.pt"))
    summary = {"params": n_params, "steps": args.steps, "batch": args.batch, "seq": args.seq,
               "tokens_seen": args.steps * args.batch * args.seq, "train_time_s": round(elapsed, 1),
               "final_loss_ema_nats_per_token": round(running, 4), "final_loss": round(lv, 4),
               "seed": args.seed, "lr": args.lr, "warmup": args.warmup, "config": cfg.to_dict()}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(summary, flush=True)


if __name__ == "__main__":
    main()
