"""Running per-step loss components ``L_t`` (bits per dim) for the DP over budgets.

Each training example reports its step's ``L_t`` estimate; slot ``t`` keeps an exponential
moving average (momentum 0.95; the first observation initialises it). Steps never seen get
the uniform-model cost ``log2(K) / D``. In distributed training every rank gathers all
ranks' observations before updating, so the trackers stay identical.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist


class LossTracker:
    """EMA of ``L_t`` per step ``t in {0..D-1}``; a plain object whose state goes in checkpoints."""

    def __init__(self, D: int, K: int, *, momentum: float = 0.95) -> None:
        self.D = D
        self.K = K
        self.momentum = momentum
        self.values = torch.zeros(D, dtype=torch.float64)  # (D,)
        self.seen = torch.zeros(D, dtype=torch.bool)  # (D,)

    def update(self, t: torch.Tensor, L_t: torch.Tensor) -> None:
        """Record per-example ``L_t`` (bits per dim) at steps ``t``; gathers across ranks."""
        t = t.detach().long().reshape(-1)
        L_t = L_t.detach().double().reshape(-1)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t, L_t = _all_gather(t), _all_gather(L_t)
        t, L_t = t.cpu(), L_t.cpu()
        finite = torch.isfinite(L_t)
        for step, value in zip(t[finite].tolist(), L_t[finite].tolist(), strict=True):
            if self.seen[step]:
                self.values[step] = self.momentum * self.values[step] + (1 - self.momentum) * value
            else:
                self.values[step] = value
                self.seen[step] = True

    def set_all(self, L: np.ndarray) -> None:
        """Replace every slot by fresh estimates ``L`` ``(D,)`` (e.g. from held-out passes)."""
        values = torch.as_tensor(np.asarray(L, dtype=np.float64))
        if values.shape != (self.D,):
            raise ValueError(f"expected {self.D} loss components, got {tuple(values.shape)}")
        self.values = values.clone()
        self.seen = torch.ones(self.D, dtype=torch.bool)

    def L(self) -> np.ndarray:
        """``L_t`` for every step (unseen steps: ``log2(K)/D``), bits per dim, ``(D,)``."""
        default = math.log2(self.K) / self.D
        return torch.where(self.seen, self.values, torch.full_like(self.values, default)).numpy()

    def sorted_L(self) -> np.ndarray:
        """``L`` sorted non-increasing, as the DP expects (paper eq. 4; sorting removes noise)."""
        return np.sort(self.L())[::-1].copy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        values, seen = state["values"], state["seen"]
        if values.shape != (self.D,) or seen.shape != (self.D,):
            raise ValueError(f"loss tracker has {tuple(values.shape)} steps, expected ({self.D},)")
        self.values = values.to(torch.float64).clone()
        self.seen = seen.to(torch.bool).clone()


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)
