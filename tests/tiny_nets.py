"""Tiny deterministic networks and a stand-in model for the coding tests.

* :class:`TinyConvNet`: a random-init float32 conv net over 1-D or 2-D data (with channels),
  time-conditioned, that reads ``x`` only where ``known``.
* :class:`TinyAttnNet`: a random-init float32 one-layer attention net over sequences.
* :class:`IntegerNet`: integer-valued logits (a position bias plus a pull towards known
  neighbours), so its float64 log-probabilities are the same on every machine: the golden
  files are made with it.
* :class:`StandInModel`: the attributes :func:`ardm.coding.codec.compress` needs from
  :class:`ardm.model.ARDM`, around any of these nets.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ardm.coding.stages import Stage
from ardm.core.orders import order_from_seed


def randomize(module: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """Overwrite every parameter with ``N(0, scale^2 / fan_in)`` noise from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (scale / math.sqrt(fan_in)))
    return module


class TinyNet(nn.Module):
    """What the coding tests need from a net: ``K``, ``shape``, ``D`` and the call."""

    K: int
    shape: tuple[int, ...]
    D: int


class TinyConvNet(TinyNet):
    """``(N, C, *spatial)`` with 1 or 2 spatial axes -> log-probs ``(N, C, *spatial, K)``."""

    def __init__(self, K: int, shape: tuple[int, ...], *, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        if len(shape) not in (2, 3):
            raise ValueError("TinyConvNet takes shapes (C, L) or (C, H, W)")
        self.K, self.shape = K, tuple(shape)
        self.D = math.prod(shape)
        C = shape[0]
        conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
        self.conv_in = conv(2 * C, width, 3, padding=1)
        self.time = nn.Linear(1, width)
        self.conv_mid = conv(width, width, 3, padding=1)
        self.conv_out = conv(width, C * K, 1)
        randomize(self, seed, scale=2.0)

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        N, C = x.shape[:2]
        value = torch.where(known, x.float() * (2.0 / self.K) - 1.0, 0.0)  # (N, C, *sp)
        h = self.conv_in(torch.cat([value, known.float()], dim=1))  # (N, w, *sp)
        temb = self.time((t.float() / self.D)[:, None])  # (N, w)
        h = F.silu(h + temb.view(N, -1, *([1] * (x.dim() - 2))))
        h = F.silu(self.conv_mid(h))  # (N, w, *sp)
        out = self.conv_out(h).view(N, C, self.K, *x.shape[2:])  # (N, C, K, *sp)
        return torch.log_softmax(out.movedim(2, -1), dim=-1)  # (N, C, *sp, K)


class TinyAttnNet(TinyNet):
    """Sequences ``(N, L)`` -> log-probs ``(N, L, K)``; unknown tokens become token ``K``."""

    def __init__(self, K: int, L: int, *, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.K, self.shape, self.D = K, (L,), L
        self.tok = nn.Embedding(K + 1, dim)
        self.pos = nn.Parameter(torch.zeros(L, dim))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.head = nn.Linear(dim, K)
        randomize(self, seed)

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.tok(torch.where(known, x, self.K)) + self.pos  # (N, L, d)
        q, k, v = self.qkv(h).chunk(3, dim=-1)  # (N, L, d) each
        h = h + F.scaled_dot_product_attention(q, k, v)  # (N, L, d)
        return torch.log_softmax(self.head(h) * 2.0, dim=-1)  # (N, L, K)


class IntegerNet(TinyNet):
    """Machine-independent log-probs: integer logits, float64 ``log_softmax``.

    ``logit[k] = bias[variable, k] - sum over known neighbours (+-1 along the sequence, or
    along every axis but the channel axis) of |k - value| * pull``.
    """

    def __init__(self, K: int, shape: tuple[int, ...], *, seed: int = 0, pull: int = 1) -> None:
        super().__init__()
        self.K, self.shape, self.D = K, tuple(shape), math.prod(shape)
        g = torch.Generator().manual_seed(seed)
        self.bias: torch.Tensor
        self.register_buffer("bias", torch.randint(-3, 4, (*shape, K), generator=g))
        self.pull = pull

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ks = torch.arange(self.K)  # (K,)
        logits = self.bias.expand(x.shape[0], *self.bias.shape).clone()  # (N, *shape, K)
        first = 1 if x.dim() == 2 else 2  # sequences: along the sequence; else not channels
        for axis in range(first, x.dim()):
            for step in (1, -1):
                v = torch.roll(x, step, dims=axis)  # (N, *shape) neighbour values
                m = torch.roll(known, step, dims=axis)  # (N, *shape)
                edge = [slice(None)] * x.dim()
                edge[axis] = slice(0, 1) if step == 1 else slice(-1, None)
                m[tuple(edge)] = False  # no wrap-around
                logits -= m[..., None] * (ks - v[..., None]).abs() * self.pull
        return torch.log_softmax(logits.double(), dim=-1)  # (N, *shape, K) float64


class StandInModel:
    """The part of :class:`ardm.model.ARDM` that compression uses, around any net."""

    training = False
    S = 1

    def __init__(self, net: TinyNet, *, kind: str = "image", order_seed: int = 3) -> None:
        self.net = net.eval()
        self.K = net.K
        self.shape = net.shape
        self.D = math.prod(self.shape)
        self.kind = kind
        self.order_seed = order_seed
        self.device = torch.device("cpu")

    def log_probs(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, known, t)

    def policy_for_budget(self, budget: int) -> np.ndarray:
        budget = min(budget, self.D)
        return np.round(np.linspace(0, self.D, budget + 1)[:-1]).astype(np.int64)

    def budget_range(self) -> tuple[int, int]:
        return 1, self.D

    def coding_stages(self, budget: int, seed: int) -> list[Stage]:
        """One categorical stage: the net's log-probs, order ``seed``, even steps."""
        sigma = order_from_seed(self.D, seed)
        return [Stage(self.log_probs, sigma, self.policy_for_budget(budget))]

    def fingerprint(self) -> bytes:
        h = hashlib.sha256(f"{type(self.net).__name__} K={self.K} shape={self.shape}".encode())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
        return h.digest()
