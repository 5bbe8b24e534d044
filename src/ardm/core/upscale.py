"""Stage arithmetic of Upscale ARDMs (paper Sec. 3.2): coarse digits first.

With branching factor ``b`` and ``S = ceil(log_b K)`` stages, the value at stage ``s`` is
``x^(s) = floor(x / b^(S-s)) * b^(S-s)``: ``x^(0) = 0`` (the absorbing state) and
``x^(S) = x``. Stage ``s`` (0-indexed, ``s < S``) generates ``x^(s+1)`` from ``x^(s)`` by
choosing one base-``b`` digit, ``(x // b^(S-s-1)) % b``.

The *data parametrisation* turns a network's K-way distribution ``theta`` into the stage's
b-way distribution: the mass of every value whose stage-``s+1`` value is each child of
``x^(s)``, renormalised over those children (children beyond ``K - 1`` get no mass).
"""

from __future__ import annotations

import torch


def num_stages(K: int, b: int) -> int:
    """``S``: the smallest number of base-``b`` digits that covers ``K`` values."""
    if K < 2 or b < 2:
        raise ValueError(f"need K >= 2 and b >= 2, got K={K}, b={b}")
    S, span = 0, 1
    while span < K:
        S, span = S + 1, span * b
    return S


def coarsen(x: torch.Tensor, s: int, *, b: int, S: int) -> torch.Tensor:
    """``x^(s)``: ``x`` with its last ``S - s`` base-``b`` digits set to zero."""
    if not 0 <= s <= S:
        raise ValueError(f"stage must lie in [0, {S}], got {s}")
    unit = b ** (S - s)
    return torch.div(x, unit, rounding_mode="floor") * unit


def digit(x: torch.Tensor, s: int, *, b: int, S: int) -> torch.Tensor:
    """The digit chosen at stage ``s``: ``(x // b^(S-s-1)) % b``, in ``[0, b)``."""
    if not 0 <= s < S:
        raise ValueError(f"stage must lie in [0, {S - 1}], got {s}")
    return torch.div(x, b ** (S - s - 1), rounding_mode="floor") % b


def refine(x_past: torch.Tensor, d: torch.Tensor, s: int, *, b: int, S: int) -> torch.Tensor:
    """``x^(s+1)`` from ``x^(s)`` and the stage's digit: ``x_past + d * b^(S-s-1)``."""
    return x_past + d * b ** (S - s - 1)


def stage_log_probs(
    log_probs: torch.Tensor, x_past: torch.Tensor, s: int, *, b: int, S: int
) -> torch.Tensor:
    """Data parametrisation: log-probabilities ``(..., b)`` of the stage-``s`` digit.

    ``log_probs`` ``(..., K)`` is the network's distribution over the final values and
    ``x_past`` ``(...)`` the current stage values; digits whose values all lie beyond
    ``K - 1`` get ``-inf``.
    """
    K = log_probs.shape[-1]
    span = b**S
    pad = log_probs.new_full((*log_probs.shape[:-1], span - K), float("-inf"))
    full = torch.cat([log_probs, pad], dim=-1)  # (..., b^S)
    blocks = full.view(
        *log_probs.shape[:-1], b**s, b, b ** (S - s - 1)
    )  # (..., parents, b, leaves)
    per_digit = torch.logsumexp(blocks, dim=-1)  # (..., parents, b)
    parent = torch.div(x_past, b ** (S - s), rounding_mode="floor")  # (...)
    index = parent[..., None, None].expand(*parent.shape, 1, b)
    chosen = per_digit.gather(-2, index).squeeze(-2)  # (..., b)
    return torch.log_softmax(chosen, dim=-1)
