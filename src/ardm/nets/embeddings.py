"""Embeddings shared by the networks: the time ``t`` and rotary token positions.

Time (paper Sec. 5.1, ``TimeEmbedding``): the number of known variables ``t`` is rescaled to
``t * 1000 / D`` so that every data size uses the same range of frequencies, embedded with
fixed sinusoids (sin half, cos half) and passed through a two-layer MLP.

Stages (Upscale ARDMs): a stage-conditioned network gets the global step ``t = stage * D +
t_in`` and splits it with :func:`split_step`; the stage gets its own learned embedding (or
one-hot channels) and the time embedding sees ``t_in``.

Rotary positions (Su et al., RoFormer): each pair of channels ``(x_i, x_{i+h})`` of a query
or key at position ``p`` is rotated by the angle ``p * omega_i``. The dot product of a
rotated query at ``m`` and a rotated key at ``n`` then depends on ``m - n`` only, so an
attention layer sees relative offsets and no absolute position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Fixed sinusoids of a (possibly fractional) time, ``(B,) -> (B, dim)`` float32.

    Channel ``i < dim // 2`` is ``sin(t * w_i)`` and channel ``dim // 2 + i`` is
    ``cos(t * w_i)`` with ``w_i = max_period ** (-i / (dim // 2 - 1))``; an odd ``dim`` gets
    one trailing zero channel.
    """
    if dim < 2:
        raise ValueError(f"sinusoidal embedding needs dim >= 2, got {dim}")
    half = dim // 2
    scale = math.log(max_period) / max(half - 1, 1)
    freqs = torch.exp(-scale * torch.arange(half, device=t.device, dtype=torch.float32))  # (h,)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]  # (B, h)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (B, 2h)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))  # (B, dim)
    return emb


class TimeEmbedding(nn.Module):
    """``t`` (number of known variables) -> ``t * 1000 / D`` -> sinusoid(dim) -> MLP -> out_dim."""

    def __init__(self, dim: int, out_dim: int, *, D: int) -> None:
        super().__init__()
        if D < 1:
            raise ValueError(f"time embedding needs D >= 1, got {D}")
        self.dim = dim
        self.D = D
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        s = t.to(torch.float32) * (1000.0 / self.D)  # (B,)
        return self.mlp(sinusoidal_embedding(s, self.dim))  # (B, out_dim)


def split_step(t: torch.Tensor, D: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global step ``t = stage * D + t_in`` ``(B,)`` -> ``(stage, t_in)``, each ``(B,)``."""
    stage = torch.div(t, D, rounding_mode="floor")  # (B,)
    return stage, t - stage * D


def check_output_bias(bias: torch.Tensor, out_classes: int) -> None:
    """A network's ``set_output_bias`` argument must be one value per output, ``(out_classes,)``."""
    if bias.shape != (out_classes,):
        raise ValueError(f"output bias must have shape ({out_classes},), got {tuple(bias.shape)}")


def check_stages(stages: int, out_classes: int) -> None:
    """Validate a network's ``stages`` and ``out_classes`` arguments."""
    if stages < 1:
        raise ValueError(f"a network needs stages >= 1, got {stages}")
    if out_classes < 1:
        raise ValueError(f"a network needs out_classes >= 1, got {out_classes}")


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, *, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the rotary angles, each ``(L, head_dim // 2)`` float32.

    ``positions`` is ``(L,)`` (integer or float); channel pair ``i`` turns at frequency
    ``base ** (-2 i / head_dim)``.
    """
    if head_dim < 2 or head_dim % 2 != 0:
        raise ValueError(f"rotary embeddings need an even head_dim >= 2, got {head_dim}")
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64) * 2.0 / head_dim)  # (h,)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (L, h)
    return torch.cos(angles).to(torch.float32), torch.sin(angles).to(torch.float32)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs ``(x_i, x_{i+h})`` of ``x (..., L, 2h)`` by the angles of ``cos, sin (L, h)``.

    Computed in float32 and returned in ``x``'s dtype (bf16 under autocast).
    """
    half = x.shape[-1] // 2
    xf = x.to(torch.float32)
    x1, x2 = xf[..., :half], xf[..., half:]  # (..., L, h) each
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (..., L, 2h)
    return out.to(x.dtype)
