"""The ARDM process wrapped around any network ``f(x, known, t)``.

``ARDM`` holds the network and the per-step loss tracker; it gives the training loss, exact
likelihoods for a fixed order (one step per variable, or under a policy), sequential and
parallel sampling, and conditional completion. One walker over policy steps serves all of
them (:func:`ardm.core.policy.step_bounds`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ardm.coding.fingerprint import (
    stable_config,
)
from ardm.core.loss_tracker import LossTracker
from ardm.core.objective import LN2, ardm_bound, masked_log_likelihood
from ardm.core.orders import (
    known_mask,
    order_from_seed,
    orders_given_first,
    random_orders,
    sample_t,
)
from ardm.core.policy import naive_policy, optimal_policy, policy_cost
from ardm.models.process import (
    LossOutput,
    Process,
    _one_stage,
    _sample_categorical,
    _steps,
    check_budget_mode,
    given_values,
    step_batches,
)


class ARDM(Process):
    """Order-agnostic ARDM over ``D = prod(net.shape)`` variables with ``K`` classes each.

    It is the one-stage case of :class:`ardm.upscale_model.UpscaleARDM`: ``S = 1``, and
    :meth:`stage_policies`, :meth:`expected_bpd`, :meth:`exact_nll_bpd`, :meth:`sample` and
    :meth:`complete` take per-stage policies and a budget ``mode`` as that class does, so
    callers need not tell the two apart.
    """

    S = 1
    """Stages of generation (an Upscale ARDM has ``S`` digit stages)."""

    def __init__(
        self, net: nn.Module, *, kind: str, ce_weight: float = 1e-3, order_seed: int = 0
    ) -> None:
        super().__init__()
        self.net = net
        self.K: int = int(net.K)  # type: ignore[arg-type]
        self.shape: tuple[int, ...] = tuple(net.shape)  # type: ignore[arg-type]
        self.D: int = math.prod(self.shape)
        self.kind = kind
        self.ce_weight = ce_weight
        self.order_seed = order_seed
        self.tracker = LossTracker(self.D, self.K)
        self.config: dict[str, Any] = {}  # resolved config, set by build_model

    # ------------------------------------------------------------------ network
    def log_probs(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, *shape, K)`` (float32) of every variable given the known ones."""
        logits = self.net(x, known, t)  # (B, *shape, K)
        return torch.log_softmax(logits.float(), dim=-1)

    def masked_ll(
        self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor, select: torch.Tensor
    ) -> torch.Tensor:
        """Summed log-likelihood ``(B,)`` (nats) of ``x`` at ``select`` given ``x`` at ``known``.

        Every likelihood in this class goes through here, so a subclass with another output
        distribution (e.g. a discretised logistic mixture) overrides this and :meth:`draw`.
        """
        return masked_log_likelihood(self.log_probs(x, known, t), x, select)

    def draw(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        t: torch.Tensor,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One sample ``(B, *shape)`` of every variable from its distribution given the known ones."""
        log_probs = self.log_probs(x, known, t)  # (B, *shape, K)
        return _sample_categorical(log_probs / temperature, generator)

    # ------------------------------------------------------------------ training
    def loss(
        self, x: torch.Tensor, *, antithetic: bool = False, generator: torch.Generator | None = None
    ) -> LossOutput:
        """The OA-ARDM training loss for a batch ``x`` of shape ``(B, *shape)``."""
        B = x.shape[0]
        t = sample_t(B, self.D, antithetic=antithetic, generator=generator).to(x.device)  # (B,)
        sigma = random_orders(B, self.D, generator=generator, device=x.device)  # (B, D)
        known = known_mask(sigma, t).view(B, *self.shape)  # (B, *shape)
        S = self.masked_ll(x, known, t, ~known)  # (B,)
        terms = ardm_bound(S, t, self.D)
        loss = terms.bpd.mean() + self.ce_weight * terms.ce_bpd.mean()
        return LossOutput(loss=loss, terms=terms, t=t)

    @torch.no_grad()
    def estimate_L(
        self,
        items: torch.Tensor,
        *,
        passes: int = 1,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Fresh ``L_t`` (bits per dim) for every step: each pass evaluates every ``t`` once.

        Items are drawn at random from ``items`` ``(N, *shape)`` with a fresh order each time;
        the training-time running average can be stale for steps rarely drawn late in
        training, this gives all steps an estimate from the current weights.
        """
        device = self.device
        total = torch.zeros(self.D, dtype=torch.float64)
        for t in step_batches(self.D, batch_size, passes, progress=progress):
            idx = torch.randint(0, items.shape[0], (len(t),), generator=generator)
            x = items[idx].to(device).long()  # (b, *shape)
            sigma = random_orders(len(t), self.D, generator=generator, device=device)
            known = known_mask(sigma, t.to(device)).view(len(t), *self.shape)
            S = self.masked_ll(x, known, t.to(device), ~known)
            total[t] += ardm_bound(S, t.to(device), self.D).L_t.double().cpu()
        return (total / passes).numpy()

    # ------------------------------------------------------------------ policies
    def policy_for_budget(self, budget: int, *, start: int = 0, naive: bool = False) -> np.ndarray:
        """Step boundaries for ``budget`` network calls over steps ``start..D-1``.

        The DP runs on the tracked ``L_t`` sorted non-increasing; ``naive`` spaces steps evenly.
        """
        remaining = self.D - start
        if not budget >= 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        if budget >= remaining:  # one variable per step: the exact sequential model
            return np.arange(start, self.D)
        if naive:
            return naive_policy(remaining, budget) + start
        L = self.tracker.sorted_L()[start:]
        policy, _ = optimal_policy(L, budget, presorted=True)
        return policy + start

    def stage_policies(
        self, budget: int, *, mode: str = "joint", naive: bool = False, start: int = 0
    ) -> list[np.ndarray]:
        """``[policy_for_budget(budget)]``: the one stage's policy (either ``mode``)."""
        check_budget_mode(mode)
        return [self.policy_for_budget(budget, start=start, naive=naive)]

    def expected_bpd(self, policy: np.ndarray | Sequence[np.ndarray]) -> float:
        """Expected bpd of a policy (or of ``[policy]``) from the tracked (sorted) ``L_t``."""
        return float(policy_cost(self.tracker.sorted_L(), _one_stage(policy)))

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def exact_nll_bpd(
        self,
        x: torch.Tensor,
        *,
        sigma: torch.Tensor | None = None,
        policy: np.ndarray | None = None,
        policies: Sequence[np.ndarray] | None = None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Exact ``-log2 p(x) / D`` under a fixed order and policy, per item ``(N,)``.

        ``policies`` (one per stage, as for an Upscale ARDM) is ``[policy]``.

        With the default policy (one variable per step) this is the chain-rule likelihood of
        the order ``sigma`` (default: the model's coding order); under a policy with fewer
        steps, each step's variables are modelled independently given the known ones. All
        (item, step) pairs are evaluated in network batches of ``batch_size``.
        """
        N = x.shape[0]
        device = x.device
        if sigma is None:
            sigma = order_from_seed(self.D, self.order_seed)
        sigma = sigma.to(device).reshape(-1, self.D).expand(N, self.D)  # (N, D)
        if policies is not None:
            policy = _one_stage(policies)
        if policy is None:
            policy = np.arange(self.D)
        bounds = _steps(policy, self.D)
        jobs = [(n, left, right) for n in range(N) for (left, right) in bounds]
        nll = torch.zeros(N, dtype=torch.float64, device=device)
        for i in range(0, len(jobs), batch_size):
            chunk = jobs[i : i + batch_size]
            items = torch.tensor([j[0] for j in chunk], device=device)  # (J,)
            left = torch.tensor([j[1] for j in chunk], device=device)  # (J,)
            right = torch.tensor([j[2] for j in chunk], device=device)  # (J,)
            s = sigma[items]  # (J, D)
            known = (s < left[:, None]).view(-1, *self.shape)  # (J, *shape)
            step = ((s >= left[:, None]) & (s < right[:, None])).view(-1, *self.shape)
            xs = x[items]  # (J, *shape)
            S = self.masked_ll(xs, known, left, step)  # (J,)
            nll.index_add_(0, items, -S.double())
        return (nll / (self.D * LN2)).cpu()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        budget: int | None = None,
        mode: str = "joint",
        policy: np.ndarray | None = None,
        given: torch.Tensor | None = None,
        given_mask: torch.Tensor | None = None,
        naive: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        on_step: Any = None,
    ) -> torch.Tensor:
        """Generate ``n`` items ``(n, *shape)`` with ``budget`` network calls (default ``D``).

        Conditional generation: ``given`` holds values and ``given_mask`` (``shape`` or
        ``(n, *shape)``, bool, the same count per item) says which are known; those are kept
        exactly and generated first in the order, the rest is completed under the budget.
        ``on_step(x, step_mask)`` is called after each network call (for animations).
        ``mode`` is checked only: one stage reads a budget the same way in either mode.
        """
        check_budget_mode(mode)
        device = self.device
        x, mask, g = given_values(n, self.D, self.K, given, given_mask, device)
        sigma = orders_given_first(mask, generator=generator)  # (n, D)
        if policy is None and g < self.D:
            policy = self.policy_for_budget(budget or (self.D - g), start=g, naive=naive)
        for left, right in _steps(policy, self.D) if g < self.D else []:
            known = (sigma < left).view(n, *self.shape)
            t = torch.full((n,), left, dtype=torch.long, device=device)
            draw = self.draw(
                x.view(n, *self.shape), known, t, temperature=temperature, generator=generator
            ).view(n, self.D)
            step = (sigma >= left) & (sigma < right)  # (n, D)
            x = torch.where(step, draw, x)
            if on_step is not None:
                on_step(x.view(n, *self.shape), step.view(n, *self.shape))
        return x.view(n, *self.shape)

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        *,
        budget: int | None = None,
        mode: str = "joint",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill in the unknown variables of ``x`` ``(n, *shape)`` (inpainting, text infill)."""
        return self.sample(
            x.shape[0], budget=budget, mode=mode, given=x, given_mask=known, generator=generator
        )

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> bytes:
        """SHA-256 of the resolved config, order seed, sorted ``L_t`` and all weights."""
        h = hashlib.sha256()
        h.update(json.dumps(stable_config(self.config), sort_keys=True).encode())
        h.update(str(self.order_seed).encode())
        h.update(self.tracker.sorted_L().tobytes())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.digest()
