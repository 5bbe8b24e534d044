"""The OA-ARDM bound (paper Sec. 3, eq. for D * L_t) as a short recipe on tensors.

For one example with ``t`` known variables (0-indexed) and ``ll_nats`` the summed log-likelihood of
the ``D - t`` unknown variables, all predicted by one network call:

1. ``elbo_nats = D * ll_nats / (D - t)``: unbiased for ``log p(x)`` when ``t ~ U{0..D-1}`` and the
   order is uniform (the ``D - t`` unknown variables are equally likely to come next).
2. ``bpd = -elbo_nats / (D ln 2)``: the per-example bound in bits per dim.
3. ``L_t = -ll_nats / (D - t) / (D ln 2)``: the step's loss component, so ``sum_t L_t`` is the bpd.
4. ``ce_bpd = -ll_nats / (D ln 2)``: the small unweighted term added to the training loss.

For a parallel policy with ``B`` steps, a step ``[l, r)`` drawn uniformly contributes
``(r - l) * B * ll_nats / (D - l)`` (paper Sec. 2.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LN2 = math.log(2.0)


@dataclass(frozen=True)
class BoundTerms:
    """Per-example terms of the bound, each of shape ``(B,)``."""

    bpd: torch.Tensor  # (B,) stochastic bound on -log2 p(x) / D
    ce_bpd: torch.Tensor  # (B,) unweighted masked NLL / (D ln 2)
    L_t: torch.Tensor  # (B,) estimate of the step's loss component, bits per dim


def masked_log_likelihood(
    log_probs: torch.Tensor, x: torch.Tensor, unknown: torch.Tensor
) -> torch.Tensor:
    """``ll_nats``: sum of ``log p(x_k)`` over unknown positions. ``log_probs`` is ``(B, *shape, K)``."""
    log_px = log_probs.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (B, *shape)
    log_px = torch.where(unknown, log_px, torch.zeros_like(log_px))
    return log_px.flatten(1).sum(dim=1)  # (B,)


def ardm_bound(ll_nats: torch.Tensor, t: torch.Tensor, D: int) -> BoundTerms:
    """The OA-ARDM one-step bound from ``ll_nats`` (nats, ``(B,)``) and ``t`` (``(B,)``, 0-indexed)."""
    num_unknown = (D - t).to(ll_nats.dtype)  # (B,) never zero since t <= D - 1
    per_step = ll_nats / num_unknown  # (B,) nats of one step
    scale = D * LN2
    return BoundTerms(bpd=-D * per_step / scale, ce_bpd=-ll_nats / scale, L_t=-per_step / scale)


def policy_bound(
    ll_nats: torch.Tensor, left: torch.Tensor, right: torch.Tensor, D: int, budget: int
) -> torch.Tensor:
    """Per-example bpd bound of a parallel policy from a uniformly drawn step ``[left, right)``."""
    weight = (right - left).to(ll_nats.dtype) * budget / (D - left).to(ll_nats.dtype)  # (B,)
    return -weight * ll_nats / (D * LN2)
