"""Networks ``f(x, known, t) -> logits`` used by ARDMs.

Every network in this package has the same call signature::

    logits = net(x, known, t)
    # x:      (B, *shape) int64 in [0, K); values at unknown positions are arbitrary
    # known:  (B, *shape) bool, True where the variable is given
    # t:      (B,) int64, number of known variables (0-indexed step)
    # logits: (B, *shape, K) float, one K-way categorical per variable

A network must never read ``x`` where ``known`` is False (no leak): it replaces those
values by its own absorbing input (token ``K`` for text; value 0 plus a mask channel for
images) before doing anything else.
"""

from __future__ import annotations

from typing import Protocol

import torch


class DenoisingNet(Protocol):
    """What :class:`ardm.model.ARDM` needs from a network."""

    K: int
    shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
