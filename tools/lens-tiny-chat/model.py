"""Llama-style decoder (RMSNorm, rotary positions, SwiGLU, KV cache) over a byte-level vocabulary.

The same module is used for training (full sequences, no cache) and for the ONNX export
(past_key_values in, present out), so the exported graph is exactly what was trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 264          # 256 byte tokens + special tokens, padded to a multiple of 8
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 4
    ffn_dim: int = 688             # about 8/3 * d_model, as in Llama
    max_positions: int = 1024
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """Rotary embedding in the Hugging Face Llama layout (rotate_half over two halves)."""

    def __init__(self, cfg: Config):
        super().__init__()
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor):
        # position_ids: [batch, seq] -> cos, sin: [batch, 1, seq, head_dim]
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, bias, past_k=None, past_v=None):
        b, t, _ = x.shape
        hd = self.cfg.head_dim
        q = self.q_proj(x).view(b, t, self.cfg.n_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.cfg.n_kv_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.cfg.n_kv_heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        present_k, present_v = k, v
        rep = self.cfg.n_heads // self.cfg.n_kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + bias
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, self.cfg.n_heads * hd)
        return self.o_proj(out), present_k, present_v


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, bias, past_k=None, past_v=None):
        a, pk, pv = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, pk, pv


class TinyLlama(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.rotary = Rotary(cfg)
        self.apply(self._init)
        # Scaled init of the residual output projections (GPT-2 style).
        for name, p in self.named_parameters():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward_train(self, idx: torch.Tensor) -> torch.Tensor:
        """Full causal forward for training: idx [batch, seq] -> logits [batch, seq, vocab]."""
        b, t = idx.shape
        pos = torch.arange(t, device=idx.device).unsqueeze(0).expand(b, t)
        cos, sin = self.rotary(pos)
        causal = torch.full((t, t), float("-inf"), device=idx.device).triu(1)
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x, _, _ = layer(x, cos, sin, causal)
        return self.lm_head(self.norm(x))

    def forward(self, input_ids, attention_mask, position_ids, *past):
        """Export signature: past is (k0, v0, k1, v1, ...) each [batch, kv_heads, past_seq, head_dim].

        attention_mask is [batch, past_seq + seq] (1 = attend, 0 = padding). Returns
        (logits [batch, seq, vocab], present k0, v0, k1, v1, ...).
        """
        b, t = input_ids.shape
        past_len = past[0].shape[2]
        total = past_len + t
        cos, sin = self.rotary(position_ids)
        # Causal mask over absolute positions plus the padding mask, as an additive bias.
        q_pos = torch.arange(t, device=input_ids.device).unsqueeze(1) + past_len      # [t, 1]
        k_pos = torch.arange(total, device=input_ids.device).unsqueeze(0)              # [1, total]
        allowed = (k_pos <= q_pos).unsqueeze(0).unsqueeze(0)                             # [1,1,t,total]
        keep = attention_mask.to(torch.bool).unsqueeze(1).unsqueeze(2)                   # [b,1,1,total]
        allowed = torch.logical_and(allowed, keep)
        neg = torch.tensor(-1e9, dtype=torch.float32)
        zero = torch.tensor(0.0, dtype=torch.float32)
        bias = torch.where(allowed, zero, neg)
        x = self.embed_tokens(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, pk, pv = layer(x, cos, sin, bias, past[2 * i], past[2 * i + 1])
            presents += [pk, pv]
        logits = self.lm_head(self.norm(x))
        return (logits, *presents)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
