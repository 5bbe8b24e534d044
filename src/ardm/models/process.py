"""What every generative process around a network shares (OA-ARDM, Upscale ARDM, D3PM).

A process holds ``net`` and gives ``loss(x, generator=...)`` with per-example ``terms.bpd``;
this base adds the device, the averaged stochastic bound and the copy around another
network (the EMA weights in training).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ardm.core.objective import BoundTerms
from ardm.core.policy import step_bounds

P = TypeVar("P", bound="Process")


def log_frequencies(values: torch.Tensor, n: int) -> torch.Tensor:
    """Log relative frequencies ``(n,)`` of the integers ``values`` in ``[0, n)``.

    Add-half smoothing keeps an unseen class finite (``log(0.5 / (N + n/2))``).
    """
    counts = torch.bincount(values.flatten().long().cpu(), minlength=n).double() + 0.5  # (n,)
    return (counts / counts.sum()).log().float()


def step_batches(
    steps: int, batch_size: int, passes: int, *, progress: bool = False
) -> Iterator[torch.Tensor]:
    """The steps ``0..steps-1`` in batches ``(<= batch_size,)``, ``passes`` times over (for
    ``estimate_L``), with a progress bar when ``progress``."""
    batches = torch.arange(steps).split(batch_size)
    with tqdm(
        total=passes * len(batches), desc="calibrating L_t", unit="batch", disable=not progress
    ) as bar:
        for _ in range(passes):
            for t in batches:
                yield t
                bar.update(1)


BUDGET_MODES = ("per-stage", "joint")
"""How a budget is read by a model with stages (:meth:`ardm.upscale_model.UpscaleARDM.stage_policies`):
calls in each stage, or calls in all. A one-stage OA-ARDM reads both the same way."""


def check_budget_mode(mode: str) -> None:
    if mode not in BUDGET_MODES:
        raise ValueError(f"unknown budget mode {mode!r}; expected 'per-stage' or 'joint'")


class Process(nn.Module):
    """Base of :class:`ardm.model.ARDM`, :class:`ardm.upscale_model.UpscaleARDM` and
    :class:`ardm.d3pm.D3PMAbsorbing`."""

    net: nn.Module
    K: int

    def loss(self, x: torch.Tensor, *, antithetic: bool = False, generator: Any = None) -> Any:
        raise NotImplementedError

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        """Log-frequencies of ``data``'s values ``(N, *shape)``, laid out like the net's output:
        ``(K,)`` for a ``K``-way head. The initial output bias of ``model.output_bias =
        "marginal"``; a process whose head is laid out otherwise overrides this."""
        return log_frequencies(data, self.K)

    @property
    def device(self) -> torch.device:
        """Where the network's tensors live (CPU for a network without any)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def with_net(self: P, net: nn.Module) -> P:
        """The same model around another network (e.g. the EMA copy); shares the tracker."""
        other = copy.copy(self)
        other._modules = dict(self._modules)  # a shallow copy would share the net slot
        other.net = net
        return other

    @torch.no_grad()
    def bound_bpd(
        self, x: torch.Tensor, *, passes: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Stochastic bound per item, averaged over ``passes`` draws of the loss: ``(N,)``."""
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for _ in range(passes):
            total += self.loss(x, generator=generator).terms.bpd.double().cpu()
        return total / passes


def given_values(
    n: int,
    D: int,
    K: int,
    given: torch.Tensor | None,
    given_mask: torch.Tensor | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Conditional generation's inputs as ``(values (n, D), mask (n, D), g)``.

    ``given_mask`` (``shape`` or ``(n, *shape)``, bool) marks the known variables, with the
    same count ``g`` in every item; their values come from ``given`` and must lie in
    ``[0, K)``. Without a mask nothing is given (``g = 0``).
    """
    mask = torch.zeros(n, D, dtype=torch.bool, device=device)
    values = torch.zeros(n, D, dtype=torch.long, device=device)
    if given_mask is not None:
        if given is None:
            raise ValueError("given_mask needs the given values")
        mask = given_mask.to(device).reshape(-1, D).expand(n, D).clone()
        values = torch.where(mask, given.to(device).reshape(-1, D).long(), values)
        if (values < 0).any() or (values >= K).any():
            raise ValueError(f"given values must lie in [0, {K})")
    counts = mask.sum(dim=1)
    g = int(counts[0]) if n else 0
    if bool((counts != g).any()):
        raise ValueError("every item must have the same number of given variables")
    return values, mask, g


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # () scalar to minimise: mean bound + ce_weight * mean ce, bits per dim
    terms: BoundTerms  # per-example terms, (B,) each
    t: torch.Tensor  # (B,) sampled number of known variables


def _one_stage(policies: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """The policy of a one-stage model: ``policy`` itself or the only entry of ``[policy]``."""
    if isinstance(policies, np.ndarray) and policies.ndim == 1:
        return policies
    if len(policies) != 1:
        raise ValueError(f"expected 1 policy (an OA-ARDM has one stage), got {len(policies)}")
    return np.asarray(policies[0])


def _steps(policy: np.ndarray | None, D: int) -> list[tuple[int, int]]:
    """Steps ``[l, r)`` of a policy whose first boundary may be ``g > 0`` (``g`` variables given)."""
    if policy is None:
        raise ValueError("a policy or a budget is needed")
    start = int(policy[0])
    return [
        (left + start, right + start)
        for left, right in step_bounds(np.asarray(policy) - start, D - start)
    ]


def _sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gumbel-max sample of the last axis: ``(..., K) -> (...)``."""
    u = torch.rand(log_probs.shape, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-300, 1.0 - 1e-16)  # keep both logarithms finite
    gumbel = -torch.log(-torch.log(u)).float()  # (..., K) standard Gumbel noise
    return (log_probs + gumbel.to(log_probs.device)).argmax(dim=-1)
