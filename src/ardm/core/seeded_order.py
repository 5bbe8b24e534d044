"""Orders from a seed by integer arithmetic alone: the orders of format version 5.

:func:`ardm.core.orders.order_from_seed` draws its order with ``torch.randperm``, whose
algorithm belongs to torch and may change between releases; a file's order must not. Version-5
files (the integer coder) take each stage's order from :func:`seeded_order`, which is defined
here, in full, by Python integer arithmetic:

* the generator is SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state ``z`` starts at
  ``seed``; each draw adds ``0x9E3779B97F4A7C15`` to the state (mod ``2^64``) and returns the
  state mixed by ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
  z *= 0x94D049BB133111EB; z ^= z >> 31`` (every product mod ``2^64``);
* the order is a Fisher-Yates shuffle of ``[0, 1, ..., D-1]``: for ``i = D-1`` down to ``1``,
  draw ``r`` and swap entries ``i`` and ``r mod (i + 1)`` (the modulo bias is below
  ``D / 2^64``, harmless for an order);
* the shuffled array is ``sigma``: variable ``v`` is generated ``sigma[v]``-th.
"""

from __future__ import annotations

import torch

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB


def splitmix64(state: int) -> tuple[int, int]:
    """One SplitMix64 draw: ``(next state, 64-bit output)``."""
    state = (state + _GAMMA) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * _MIX_1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX_2) & _MASK
    return state, z ^ (z >> 31)


def seeded_order(D: int, seed: int) -> torch.Tensor:
    """The order ``sigma (D,)`` int64 of ``D`` variables for ``seed`` (``0 <= seed < 2^64``):
    a permutation of ``0..D-1``, the same on every machine and every torch release."""
    if D < 1:
        raise ValueError(f"D must be at least 1, got {D}")
    if not 0 <= seed <= _MASK:
        raise ValueError(f"seed must lie in [0, 2**64), got {seed}")
    perm = list(range(D))
    state = seed
    for i in range(D - 1, 0, -1):
        state, r = splitmix64(state)
        j = r % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return torch.tensor(perm, dtype=torch.int64)  # (D,)
