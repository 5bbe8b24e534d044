"""Bidirectional Transformer for sequences (paper Sec. 5.2, text8).

``logits = net(x, known, t)``: unknown tokens are replaced by the absorbing token ``K``
(the embedding table has ``K + 1`` rows), then a non-causal pre-LayerNorm Transformer with
rotary position embeddings on queries and keys predicts ``K`` logits at every position.
There are no absolute position embeddings: the output depends on relative offsets only
(``tests/test_nets.py::test_transformer_has_no_absolute_position``). A masked sequence model
with absolute embeddings has been seen to sit at the unigram loss for thousands of steps
(reported by others; not measured in this repository).

Stage-conditioned (``stages = S > 1``, Upscale ARDMs): every token shows its current value
(embedding table of ``K`` rows), plus a learned "known" embedding (2 rows: refined in this
stage or not) and a learned stage embedding; ``t`` is the global step ``stage * D + t_in``
and the time embedding, if any, is that of ``t_in``. The head has ``out_classes`` outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ardm.nets.embeddings import (
    TimeEmbedding,
    apply_rotary,
    check_output_bias,
    check_stages,
    rotary_cos_sin,
    split_step,
)


@dataclass(frozen=True)
class TransformerConfig:
    """Size of a :class:`Transformer`; ``K`` and the sequence length come from the data."""

    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    time_cond: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.depth < 1 or self.heads < 1:
            raise ValueError(
                f"transformer dim, depth and heads must be >= 1, got "
                f"dim={self.dim} depth={self.depth} heads={self.heads}"
            )
        if self.dim % self.heads != 0:
            raise ValueError(f"transformer dim={self.dim} is not divisible by heads={self.heads}")
        if (self.dim // self.heads) % 2 != 0:
            raise ValueError(
                f"transformer head dim {self.dim // self.heads} (dim/heads) must be even "
                f"for rotary embeddings"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"transformer mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"transformer dropout must be in [0, 1), got {self.dropout}")


class SelfAttention(nn.Module):
    """Full (non-causal) multi-head self-attention with rotary queries and keys."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, L, C = h.shape
        q, k, v = self.qkv(h).split(C, dim=-1)  # (B, L, C) each
        q = q.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hd)
        k = k.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hd)
        v = v.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (B, nh, L, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, nh, L, hd)
        y = y.transpose(1, 2).reshape(B, L, C)  # (B, L, C)
        return self.resid_drop(self.proj(y))  # (B, L, C)


class MLP(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        hidden = max(1, round(cfg.mlp_ratio * cfg.dim))
        self.fc = nn.Linear(cfg.dim, hidden)
        self.proj = nn.Linear(hidden, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(h))))  # (B, L, C)


class Block(nn.Module):
    """Pre-LayerNorm block: ``h + attn(ln(h))`` then ``h + mlp(ln(h))``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln_1(h), cos, sin)  # (B, L, C)
        h = h + self.mlp(self.ln_2(h))  # (B, L, C)
        return h


class Transformer(nn.Module):
    """``f(x, known, t) -> logits`` for sequences of ``seq_len`` tokens with ``K`` classes.

    With ``cfg.time_cond`` the embedding of ``t * 1000 / D`` (``t_in`` with stages) is added
    to every token's input; otherwise ``t`` is ignored (as in the paper's text8 model), up to
    the stage it names when ``stages > 1``. Output: ``(B, L, out_classes)``, default ``K``.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        K: int,
        seq_len: int,
        stages: int = 1,
        out_classes: int | None = None,
    ) -> None:
        super().__init__()
        if K < 2:
            raise ValueError(f"transformer needs K >= 2 classes, got K={K}")
        if seq_len < 1:
            raise ValueError(f"transformer needs seq_len >= 1, got {seq_len}")
        out_classes = K if out_classes is None else out_classes
        check_stages(stages, out_classes)
        self.cfg = cfg
        self.K = K
        self.shape: tuple[int, ...] = (seq_len,)
        self.D = seq_len
        self.stages = stages
        self.out_classes = out_classes
        self.known_emb: nn.Embedding | None = None
        self.stage_emb: nn.Embedding | None = None
        if stages == 1:
            self.tok_emb = nn.Embedding(K + 1, cfg.dim)  # row K is the absorbing (mask) token
        else:
            self.tok_emb = nn.Embedding(K, cfg.dim)  # every position shows its current value
            self.known_emb = nn.Embedding(2, cfg.dim)  # refined in this stage or not
            self.stage_emb = nn.Embedding(stages, cfg.dim)
        self.time_emb = TimeEmbedding(cfg.dim, cfg.dim, D=seq_len) if cfg.time_cond else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, out_classes)
        cos, sin = rotary_cos_sin(torch.arange(seq_len), cfg.dim // cfg.heads)  # (L, hd/2)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 style: N(0, 0.02), residual projections scaled down by sqrt(2 * depth).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02
                if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                    std = 0.02 / math.sqrt(2 * self.cfg.depth)
                nn.init.normal_(p, mean=0.0, std=std)

    @torch.no_grad()
    def set_output_bias(self, bias: torch.Tensor) -> None:
        """Set the output layer's bias to ``bias`` ``(out_classes,)`` (e.g. log-frequencies)."""
        check_output_bias(bias, self.out_classes)
        self.head.bias.copy_(bias)

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.known_emb is None or self.stage_emb is None:
            x = torch.where(known, x, self.K)  # (B, L) unknown -> absorbing token K
            h = self.tok_emb(x)  # (B, L, C)
        else:  # stages: x is the current value everywhere, t the global step
            stage, t = split_step(t, self.D)  # (B,) each: stage and t_in
            h = self.tok_emb(x) + self.known_emb(known.long())  # (B, L, C)
            h = h + self.stage_emb(stage)[:, None, :]  # (B, L, C)
        if self.time_emb is not None:
            h = h + self.time_emb(t)[:, None, :]  # (B, L, C)
        h = self.drop(h)
        for block in self.blocks:
            h = block(h, self.cos, self.sin)  # (B, L, C)
        return self.head(self.ln_f(h))  # (B, L, out_classes)
