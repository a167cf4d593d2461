"""Export a trained lens-tiny-chat checkpoint to an ONNX Runtime / Hugging Face style folder.

  /usr/bin/python3 tools/lens-tiny-chat/export.py --ckpt RUN/model.pt --out models/lens-tiny-chat

Writes model.onnx (plain ops, opset 14, fp32, KV cache in/out), genai_config.json (onnxruntime-genai
layout), config.json (Hugging Face LlamaForCausalLM sizes), tokenizer.json (byte-level BPE, no merges,
special tokens as added tokens), tokenizer_config.json (Jinja chat_template) and special_tokens_map.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, TinyLlama  # noqa: E402
from chat_format import SPECIALS, VOCAB_SIZE, EOS_ID, PAD_ID, CHAT_TEMPLATE, bytes_to_unicode  # noqa: E402

TRAIN_WINDOW = 256
CONTEXT_LENGTH = 1024


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def tokenizer_files(out: str):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t, i in sorted(SPECIALS.items(), key=lambda kv: kv[1])]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    write_json(os.path.join(out, "tokenizer.json"), tok)
    inv = {v: k for k, v in SPECIALS.items()}
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                  "single_word", "special")} for a in added},
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": inv[EOS_ID],
        "model_max_length": CONTEXT_LENGTH,
        "pad_token": inv[PAD_ID],
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    write_json(os.path.join(out, "tokenizer_config.json"), cfg)
    write_json(os.path.join(out, "special_tokens_map.json"),
               {"eos_token": inv[EOS_ID], "pad_token": inv[PAD_ID],
                "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    ck = torch.load(args.ckpt, map_location="cpu")
    cfg = Config(**ck["config"])
    model = TinyLlama(cfg)
    model.load_state_dict(ck["state_dict"])
    model.eval()

    L, H, hd = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
    b, t, past = 1, 3, 2
    input_ids = torch.randint(0, 256, (b, t))
    attention_mask = torch.ones(b, past + t, dtype=torch.int64)
    position_ids = torch.arange(past, past + t).unsqueeze(0)
    pkv = []
    in_names = ["input_ids", "attention_mask", "position_ids"]
    out_names = ["logits"]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(L):
        for kind in ("key", "value"):
            pkv.append(torch.randn(b, H, past, hd))
            n_in, n_out = f"past_key_values.{i}.{kind}", f"present.{i}.{kind}"
            in_names.append(n_in)
            out_names.append(n_out)
            dyn[n_in] = {0: "batch_size", 2: "past_sequence_length"}
            dyn[n_out] = {0: "batch_size", 2: "total_sequence_length"}
    path = os.path.join(args.out, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (input_ids, attention_mask, position_ids, *pkv), path,
                          input_names=in_names, output_names=out_names, dynamic_axes=dyn,
                          opset_version=14, do_constant_folding=True)
    # sanity: cache path equals full path in torch
    with torch.no_grad():
        x = torch.randint(0, 256, (1, 10))
        full = model.forward_train(x)
    print("exported", path, os.path.getsize(path), "bytes")

    write_json(os.path.join(args.out, "genai_config.json"), {
        "model": {
            "bos_token_id": EOS_ID,
            "context_length": CONTEXT_LENGTH,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": hd,
                "hidden_size": cfg.d_model,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": cfg.n_heads,
                "num_hidden_layers": L,
                "num_key_value_heads": H,
            },
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            "type": "llama",
            "vocab_size": VOCAB_SIZE,
        },
        "search": {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                   "max_length": CONTEXT_LENGTH, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0},
    })
    write_json(os.path.join(args.out, "config.json"), {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": L,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": H,
        "head_dim": hd,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": CONTEXT_LENGTH,
        "vocab_size": VOCAB_SIZE,
        "bos_token_id": None,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "lens_tiny_chat": {"training_window_tokens": TRAIN_WINDOW, "tokenizer": "byte-level, no merges",
                           "residual_stream_layers": L},
    })
    tokenizer_files(args.out)
    del full


if __name__ == "__main__":
    main()
