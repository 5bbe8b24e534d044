"""Upscale ARDMs (paper Sec. 3.2, App. A.1): the coarse digits of every variable first.

With branching factor ``b`` and ``S = ceil(log_b K)`` stages, data ``x`` is generated as
``x^(0) = 0 -> x^(1) -> ... -> x^(S) = x`` (:mod:`ardm.core.upscale`): stage ``s`` chooses
one base-``b`` digit of every variable, the variables in a fresh order ``sigma_s``, so

    log p(x) = sum_s log p(x^(s+1) | x^(s)),   each stage an OA-ARDM over the D variables.

One stage-conditioned network (:mod:`ardm.nets`, ``stages = S``) serves all stages. It sees
the *global* step ``t = s * D + t_in`` and the current state: variables refined in this
stage (``known``) show ``x^(s+1)``, the others ``x^(s)``.

Two parametrisations of a stage's digit (paper Sec. 3.3):

* ``"data"``: the network gives ``K`` logits (a distribution over the final value) and the
  digit's distribution is the mass of each child of ``x^(s)``, renormalised
  (:func:`ardm.core.upscale.stage_log_probs`); children beyond ``K - 1`` get no mass.
* ``"direct"``: the network gives ``S * b`` logits per variable; stage ``s`` uses the ``b``
  logits of slice ``s``, with every digit whose child would be ``>= K`` masked to ``-inf``
  before the softmax, so the model is normalised over ``[0, K)`` even when ``K`` is not a
  power of ``b``.

Training (Sec. 3.2, one network call per example): draw ``t ~ U{0..S*D-1}``, ``stage = t //
D``, ``t_in = t % D``, an order ``sigma``, ``known = sigma < t_in``; input ``where(known,
x^(stage+1), x^(stage))``; ``S_nats`` = summed digit log-likelihood over the ``D - t_in``
unknown variables. The stage's bound is ``D * S_nats / (D - t_in)`` nats (as OA-ARDM) and a
uniform stage draw is weighted by ``S``, so in bits per dim

    bpd = -S * D * S_nats / ((D - t_in) * D ln 2) = -S * S_nats / ((D - t_in) ln 2).

The tracker has ``S * D`` slots; slot ``s * D + t_in`` holds that stage's ``L_t = -S_nats /
((D - t_in) D ln 2)``, so all slots sum to the bpd.
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

from ardm.core.loss_tracker import LossTracker
from ardm.core.objective import LN2, BoundTerms, ardm_bound
from ardm.core.orders import (
    known_mask,
    order_from_seed,
    orders_given_first,
    random_orders,
    sample_t,
)
from ardm.core.policy import (
    monotone_losses,
    naive_policy,
    optimal_policy,
    policy_cost,
    policy_costs,
    split_budget,
)
from ardm.core.upscale import coarsen, digit, num_stages, refine, stage_log_probs
from ardm.models.ardm import LossOutput, _sample_categorical, _steps
from ardm.models.process import (
    Process,
    check_budget_mode,
    given_values,
    log_frequencies,
    step_batches,
)

PARAMETRISATIONS = ("data", "direct")


class UpscaleARDM(Process):
    """Upscale ARDM over ``D = prod(net.shape)`` variables with ``K`` classes, branching ``b``."""

    def __init__(
        self,
        net: nn.Module,
        *,
        kind: str,
        K: int,
        branching: int,
        parametrisation: str = "data",
        ce_weight: float = 1e-3,
        order_seed: int = 0,
    ) -> None:
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"unknown parametrisation {parametrisation!r}; expected 'data' or 'direct'"
            )
        S = num_stages(K, branching)
        net_K = int(getattr(net, "K", K))
        if net_K != K:
            raise ValueError(f"the network has K={net_K} input classes but the model K={K}")
        net_stages = int(getattr(net, "stages", S))
        if net_stages != S:
            raise ValueError(
                f"K={K} with branching {branching} has S={S} stages but the network is built "
                f"for stages={net_stages}"
            )
        out = int(getattr(net, "out_classes", net_K))
        want = K if parametrisation == "data" else S * branching
        if out != want:
            what = "K" if parametrisation == "data" else "S * b"
            raise ValueError(
                f"the {parametrisation} parametrisation needs a network with out_classes = "
                f"{what} = {want}, got {out}"
            )
        self.net = net
        self.K = K
        self.b = branching
        self.S = S
        self.shape: tuple[int, ...] = tuple(net.shape)  # type: ignore[arg-type]
        self.D: int = math.prod(self.shape)
        self.kind = kind
        self.parametrisation = parametrisation
        self.ce_weight = ce_weight
        self.order_seed = order_seed
        self.tracker = LossTracker(S * self.D, K)
        self.config: dict[str, Any] = {}  # resolved config, set by the builder

    # ------------------------------------------------------------------ network
    def stage_log_probs(
        self, x_cur: torch.Tensor, known: torch.Tensor, s: int, t_in: torch.Tensor | int
    ) -> torch.Tensor:
        """Log-probabilities ``(B, *shape, b)`` (float32) of the stage-``s`` digit everywhere.

        ``x_cur`` ``(B, *shape)`` is the current state (``x^(s+1)`` where ``known``, i.e.
        refined in this stage, ``x^(s)`` elsewhere) and ``t_in`` (int or ``(B,)``) the number
        of variables refined so far in this stage. One network call at the global step
        ``s * D + t_in``. Digits whose value would reach ``K`` get ``-inf``.
        """
        if not 0 <= s < self.S:
            raise ValueError(f"stage must lie in [0, {self.S - 1}], got {s}")
        B = x_cur.shape[0]
        t = s * self.D + torch.as_tensor(t_in, dtype=torch.long, device=x_cur.device).expand(B)
        out = self.net(x_cur, known, t).float()  # (B, *shape, O)
        return self._stage_head(out, x_cur, s)

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        """Log-frequencies of ``data`` ``(N, *shape)``, laid out like the net's output.

        Data parametrisation: ``(K,)`` over the values. Direct: ``(S * b,)``, stage ``s``'s
        slice the frequencies of the stage-``s`` digit.
        """
        if self.parametrisation == "data":
            return super().marginal_logits(data)
        return torch.cat(
            [log_frequencies(digit(data, s, b=self.b, S=self.S), self.b) for s in range(self.S)]
        )

    def _stage_head(self, out: torch.Tensor, x_cur: torch.Tensor, s: int) -> torch.Tensor:
        """The stage-``s`` digit's log-probabilities ``(..., b)`` from the net's output ``(..., O)``."""
        if self.parametrisation == "data":
            log_probs = torch.log_softmax(out, dim=-1)  # (..., K) over the final values
            return stage_log_probs(log_probs, x_cur, s, b=self.b, S=self.S)
        logits = out.unflatten(-1, (self.S, self.b))[..., s, :]  # (..., b) this stage's slice
        past = coarsen(x_cur, s, b=self.b, S=self.S)  # (...)
        d = torch.arange(self.b, device=x_cur.device)  # (b,)
        valid = refine(past[..., None], d, s, b=self.b, S=self.S) < self.K  # (..., b)
        return torch.log_softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)

    def _digit_log_probs(
        self, x_cur: torch.Tensor, known: torch.Tensor, stage: torch.Tensor, t_in: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`stage_log_probs` with a stage per example ``(B,)``: ``(B, *shape, b)``."""
        out = self.net(x_cur, known, stage * self.D + t_in).float()  # (B, *shape, O)
        result = out.new_empty((*x_cur.shape, self.b))  # (B, *shape, b)
        for s in torch.unique(stage).tolist():  # one head per stage present in the batch
            rows = stage == s  # (B,)
            result[rows] = self._stage_head(out[rows], x_cur[rows], s)
        return result

    def _masked_ll(
        self,
        x: torch.Tensor,
        stage: torch.Tensor,
        t_in: torch.Tensor,
        known: torch.Tensor,
        select: torch.Tensor,
    ) -> torch.Tensor:
        """Summed digit log-likelihood ``(B,)`` (nats) of ``x`` at ``select`` in stage ``stage``.

        The state shows ``x^(stage+1)`` at ``known`` and ``x^(stage)`` elsewhere.
        """
        x_past, x_next, d = self._stage_values(x, stage)  # (B, *shape) each
        x_cur = torch.where(known, x_next, x_past)  # (B, *shape)
        log_probs = self._digit_log_probs(x_cur, known, stage, t_in)  # (B, *shape, b)
        log_pd = log_probs.gather(-1, d.unsqueeze(-1)).squeeze(-1)  # (B, *shape)
        log_pd = torch.where(select, log_pd, torch.zeros_like(log_pd))
        return log_pd.flatten(1).sum(dim=1)  # (B,)

    def _stage_values(
        self, x: torch.Tensor, stage: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x^(s)``, ``x^(s+1)`` and the stage-``s`` digit of ``x``, with ``s`` per example."""
        past, future, d = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        for s in torch.unique(stage).tolist():
            rows = stage == s
            past[rows] = coarsen(x[rows], s, b=self.b, S=self.S)
            future[rows] = coarsen(x[rows], s + 1, b=self.b, S=self.S)
            d[rows] = digit(x[rows], s, b=self.b, S=self.S)
        return past, future, d

    # ------------------------------------------------------------------ training
    def bound_terms(self, x: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor) -> BoundTerms:
        """The bound's terms ``(B,)`` for global steps ``t`` ``(B,)`` and orders ``sigma`` ``(B, D)``.

        ``bpd`` is unbiased for ``-log2 p(x) / D`` when ``t ~ U{0..S*D-1}`` and ``sigma`` is
        uniform; ``L_t`` is the step's term (slot ``t`` of the tracker).
        """
        B = x.shape[0]
        stage = torch.div(t, self.D, rounding_mode="floor")  # (B,)
        t_in = t - stage * self.D  # (B,)
        known = known_mask(sigma, t_in).view(B, *self.shape)  # (B, *shape)
        S_nats = self._masked_ll(x, stage, t_in, known, ~known)  # (B,)
        terms = ardm_bound(S_nats, t_in, self.D)  # one stage's OA-ARDM terms
        return BoundTerms(bpd=self.S * terms.bpd, ce_bpd=terms.ce_bpd, L_t=terms.L_t)

    def loss(
        self, x: torch.Tensor, *, antithetic: bool = False, generator: torch.Generator | None = None
    ) -> LossOutput:
        """The Upscale ARDM training loss for a batch ``x`` ``(B, *shape)``; ``t`` is global."""
        B = x.shape[0]
        t = sample_t(B, self.S * self.D, antithetic=antithetic, generator=generator)
        t = t.to(x.device)  # (B,)
        sigma = random_orders(B, self.D, generator=generator, device=x.device)  # (B, D)
        terms = self.bound_terms(x, t, sigma)
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
        """Fresh ``L`` ``(S*D,)`` (bits per dim): each pass evaluates every (stage, ``t_in``) once.

        Items are drawn at random from ``items`` ``(N, *shape)``, each with a fresh order.
        """
        device = self.device
        total = torch.zeros(self.S * self.D, dtype=torch.float64)
        for t in step_batches(self.S * self.D, batch_size, passes, progress=progress):
            idx = torch.randint(0, items.shape[0], (len(t),), generator=generator)
            x = items[idx].to(device).long()  # (n, *shape)
            sigma = random_orders(len(t), self.D, generator=generator, device=device)
            total[t] += self.bound_terms(x, t.to(device), sigma).L_t.double().cpu()
        return (total / passes).numpy()

    # ------------------------------------------------------------------ policies
    def stage_L(self) -> np.ndarray:
        """The tracked ``L`` per stage, each stage sorted non-increasing: ``(S, D)``.

        The paper sorts ``L`` separately within each stage (eq. 4 holds within a stage; the
        stages are different problems).
        """
        L = self.tracker.L().reshape(self.S, self.D)  # (S, D)
        return np.sort(L, axis=1)[:, ::-1].copy()

    def stage_policies(
        self, budget: int, *, mode: str = "per-stage", naive: bool = False, start: int = 0
    ) -> list[np.ndarray]:
        """One policy per stage (step boundaries over ``start..D-1``), ``S`` arrays.

        * ``mode="per-stage"``: ``budget`` network calls in *each* stage, ``S * budget`` in
          all (how the paper's code reads a budget for upscale models).
        * ``mode="joint"``: ``budget`` calls in *total*, split over the stages to minimise the
          summed expected cost (:func:`ardm.core.policy.split_budget` on each stage's DP cost
          curve; ``naive`` splits evenly); needs ``budget >= S``, one call per stage. The
          split uses cost curves of the *isotonic* fit of each stage's ``L``
          (:func:`ardm.core.policy.monotone_losses`): sorting puts the noisiest late-step
          estimates first and makes some stages look far costlier than they are, which
          misallocates calls (``benchmarks/policy_fit.py``: MNIST, b = 2, 10 calls: 1.255
          bpd measured against 1.402 with sorted curves). Each stage's own policy is still
          the DP on its sorted ``L``, which gave the better policies within a stage.

        Each stage's DP runs on that stage's ``L`` sorted non-increasing; ``naive`` spaces its
        steps evenly. ``start`` variables are given (conditional generation) in every stage,
        so each policy starts at ``start``. A stage given at least as many calls as variables
        to generate gets one variable per step. Ties in ``L`` may leave calls unused.
        """
        check_budget_mode(mode)
        if not 0 <= start < self.D:
            raise ValueError(f"start must lie in [0, {self.D}), got {start}")
        remaining = self.D - start
        if mode == "per-stage":
            if not budget >= 1:
                raise ValueError(f"budget must be at least 1 call per stage, got {budget}")
            budgets = [budget] * self.S
        else:
            if not budget >= self.S:
                raise ValueError(
                    f"a joint budget needs at least one call per stage, S={self.S}, got {budget}"
                )
            budget = min(budget, self.S * remaining)  # more calls cannot help
            if naive:
                budgets = [budget // self.S + (s < budget % self.S) for s in range(self.S)]
            else:
                n = min(budget - self.S + 1, remaining)
                raw = self.tracker.L().reshape(self.S, self.D)  # (S, D) as tracked
                curves = [
                    policy_costs(monotone_losses(L[start:], "isotonic"), n, presorted=True)
                    for L in raw
                ]
                budgets = split_budget(curves, budget)
        policies = []
        for L, calls in zip(self.stage_L(), budgets, strict=True):
            if calls >= remaining:
                policy = np.arange(start, self.D)
            elif naive:
                policy = naive_policy(remaining, calls) + start
            else:
                policy = optimal_policy(L[start:], calls, presorted=True)[0] + start
            policies.append(policy)
        return policies

    def expected_bpd(self, policies: Sequence[np.ndarray]) -> float:
        """Expected bpd of per-stage policies from each stage's tracked (sorted) ``L``.

        A policy starting at ``g > 0`` (``g`` variables given) is scored on the steps it
        generates, ``L[g:]``.
        """
        if len(policies) != self.S:
            raise ValueError(f"expected {self.S} policies (one per stage), got {len(policies)}")
        total = 0.0
        for L, policy in zip(self.stage_L(), policies, strict=True):
            p = np.asarray(policy, dtype=np.int64)
            total += policy_cost(L[int(p[0]) :], p - p[0])
        return total

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def exact_nll_bpd(
        self,
        x: torch.Tensor,
        *,
        sigmas: torch.Tensor | None = None,
        policies: Sequence[np.ndarray] | None = None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Exact ``-log2 p(x) / D`` under fixed per-stage orders and policies, per item ``(N,)``.

        The sum over stages of each stage's chain rule: ``sigmas`` ``(S, D)`` (or ``(N, S,
        D)``) holds one order per stage, default ``order_from_seed(D, order_seed + s)``;
        ``policies`` one per stage, default one variable per step (``S * D`` network calls
        per item). Under a policy with fewer steps, each step's digits are modelled
        independently given the state. All (item, stage, step) jobs are evaluated in
        network batches of ``batch_size``.
        """
        N = x.shape[0]
        device = x.device
        if sigmas is None:
            sigmas = torch.stack(
                [order_from_seed(self.D, self.order_seed + s) for s in range(self.S)]
            )
        sigmas = sigmas.to(device).reshape(-1, self.S, self.D).expand(N, self.S, self.D)
        if policies is None:
            policies = [np.arange(self.D)] * self.S
        if len(policies) != self.S:
            raise ValueError(f"expected {self.S} policies (one per stage), got {len(policies)}")
        jobs = [
            (n, s, left, right)
            for n in range(N)
            for s in range(self.S)
            for (left, right) in _steps(policies[s], self.D)
        ]
        nll = torch.zeros(N, dtype=torch.float64, device=device)
        for i in range(0, len(jobs), batch_size):
            chunk = torch.tensor(jobs[i : i + batch_size], device=device)  # (J, 4)
            items, stage, left, right = chunk.unbind(1)  # (J,) each
            sig = sigmas[items, stage]  # (J, D)
            known = (sig < left[:, None]).view(-1, *self.shape)  # (J, *shape)
            step = ((sig >= left[:, None]) & (sig < right[:, None])).view(-1, *self.shape)
            S_nats = self._masked_ll(x[items], stage, left, known, step)  # (J,)
            nll.index_add_(0, items, -S_nats.double())
        return (nll / (self.D * LN2)).cpu()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        budget: int | None = None,
        mode: str = "per-stage",
        policies: Sequence[np.ndarray] | None = None,
        given: torch.Tensor | None = None,
        given_mask: torch.Tensor | None = None,
        naive: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        on_step: Any = None,
    ) -> torch.Tensor:
        """Generate ``n`` items ``(n, *shape)``, stage by stage from ``x = 0``.

        ``budget`` is read as ``mode`` says (:meth:`stage_policies`); no budget means one
        variable per step, ``S * D`` calls. Conditional generation: ``given`` values where
        ``given_mask`` (``shape`` or ``(n, *shape)``, bool, the same count per item) are kept
        exactly; in every stage they come first in the order, so their digits are never
        sampled. During stage ``s`` the network sees a given variable as ``x^(s+1)`` (what
        it was trained on: refined in this stage), and its full value at the end.
        ``on_step(x, step_mask)`` is called after each network call.
        """
        device = self.device
        full, mask, g = given_values(n, self.D, self.K, given, given_mask, device)
        if g == self.D:
            return full.view(n, *self.shape)
        if policies is None:
            if budget is None:
                policies = [np.arange(g, self.D)] * self.S
            else:
                policies = self.stage_policies(budget, mode=mode, naive=naive, start=g)
        if len(policies) != self.S:
            raise ValueError(f"expected {self.S} policies (one per stage), got {len(policies)}")
        x = torch.zeros(n, self.D, dtype=torch.long, device=device)  # x^(0)
        for s in range(self.S):
            sigma = orders_given_first(mask, generator=generator)  # (n, D) fresh per stage
            x = torch.where(mask, coarsen(full, s + 1, b=self.b, S=self.S), x)
            for left, right in _steps(policies[s], self.D):
                known = (sigma < left).view(n, *self.shape)
                log_probs = self.stage_log_probs(x.view(n, *self.shape), known, s, left)
                d = _sample_categorical(log_probs / temperature, generator).view(n, self.D)
                step = (sigma >= left) & (sigma < right)  # (n, D)
                x = torch.where(step, refine(x, d, s, b=self.b, S=self.S), x)
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
        mode: str = "per-stage",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill in the unknown variables of ``x`` ``(n, *shape)`` (inpainting, text infill)."""
        return self.sample(
            x.shape[0], budget=budget, mode=mode, given=x, given_mask=known, generator=generator
        )

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> bytes:
        """SHA-256 of the config, ``b``, ``S``, parametrisation, order seed, per-stage sorted
        ``L`` and all weights."""
        h = hashlib.sha256()
        h.update(json.dumps(self.config, sort_keys=True).encode())
        h.update(f"upscale b={self.b} S={self.S} {self.parametrisation}".encode())
        h.update(str(self.order_seed).encode())
        h.update(self.stage_L().tobytes())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.digest()
