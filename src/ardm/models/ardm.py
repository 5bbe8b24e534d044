"""The ARDM process wrapped around any network ``f(x, known, t)``.

``ARDM`` is the order-agnostic ARDM of ``D`` variables with ``K`` classes, in ``S`` stages:
one for an OA-ARDM, ``S`` base-``b`` digit stages for :class:`ardm.models.upscale.UpscaleARDM`
(which supplies the per-stage likelihood and draw). One walker over policy steps serves the
training bound, exact likelihoods, sampling and completion
(:func:`ardm.core.policy.step_bounds`); the head (:mod:`ardm.models.heads`) says what the
network's output means: a ``K``-way softmax or a discretised logistic mixture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ardm.coding.stages import Stage
from ardm.config import Config, ModelConfig
from ardm.core.context import (
    coding_order,
    context_examples,
    context_region,
    policy_starts,
    prefix_orders,
)
from ardm.core.objective import LN2, BoundTerms, ardm_bound
from ardm.core.orders import (
    known_mask,
    order_from_seed,
    orders_given_first,
    random_orders,
    sample_t,
)
from ardm.core.policy import naive_policy, optimal_policy, policy_cost
from ardm.core.upscale import coarsen
from ardm.errors import DataError
from ardm.models.heads import CategoricalHead, Head, MixtureHead
from ardm.models.process import (
    BudgetNLL,
    LossOutput,
    Process,
    Sampling,
    check_budget_mode,
    given_values,
    policy_steps,
)


class ARDM(Process):
    """Order-agnostic ARDM over ``D = prod(net.shape)`` variables with ``K`` classes each.

    ``head`` (default: a ``K``-way softmax over ``net.K`` classes) reads the network's output.
    The policy methods take per-stage policies and a budget ``mode`` for every ``S`` (one
    stage here), so callers need not tell an OA-ARDM from an Upscale ARDM.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        kind: str,
        head: Head | None = None,
        ce_weight: float = 1e-3,
        order_seed: int = 0,
        context: int = 0,
        config: Config | None = None,
    ) -> None:
        head = head if head is not None else CategoricalHead(int(net.K))  # type: ignore[arg-type]
        D = int(np.prod(tuple(net.shape)))  # type: ignore[arg-type]
        super().__init__(
            net,
            head=head,
            kind=kind,
            slots=head.S * D,
            ce_weight=ce_weight,
            order_seed=order_seed,
            config=config,
        )
        self.S = head.S
        self.b = head.b  # the stages' digit base: K for one stage (the digit is the value)
        if context and self.S != 1:
            raise ValueError(f"context={context} needs a one-stage model")
        if context:
            context_region(self.shape, context)  # checks 0 < context < the item's extent
        self.context = context
        """Known prefix of a coded block (:mod:`ardm.core.context`); 0: plain OA training."""

    @property
    def default_budget(self) -> int:
        """Network calls per tile (100), or per block of a model with context (text: one per
        :data:`ardm.coding.chain.CHAIN_BYTES_PER_CALL` values of the coder's block;
        :data:`ardm.coding.chain.WAVE_BUDGET` for images), when the user gives none."""
        from ardm.coding.chain import WAVE_BUDGET, chain_budget
        from ardm.coding.chain_files import coder_context

        if not self.context:
            return 100
        if len(self.shape) == 3:
            return WAVE_BUDGET
        return chain_budget(self.D, coder_context(self))

    @staticmethod
    def config_head(K: int, mc: ModelConfig) -> Head:
        """The head ``model.output`` names: a ``K``-way softmax or a logistic mixture."""
        return MixtureHead(K, mc.mixtures) if mc.output == "dmol" else CategoricalHead(K)

    @classmethod
    def from_config(cls, net: nn.Module, cfg: Config, *, kind: str) -> ARDM:
        """The OA-ARDM of a resolved config around ``net``."""
        head = cls.config_head(int(net.K), cfg.model)  # type: ignore[arg-type]
        return cls(
            net,
            kind=kind,
            head=head,
            ce_weight=cfg.model.ce_weight,
            context=cfg.model.context,
            config=cfg,
        )

    # ------------------------------------------------------------------ network
    def params(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The head's reading ``(B, *shape, O)`` (float32) of the network's output."""
        return self.head.params(self.net(x, known, t))

    def table(self, params: torch.Tensor) -> torch.Tensor:
        """All ``K`` log-probabilities ``(..., K)`` of :meth:`params` (a mixture: ``K <= 4096``)."""
        return self.head.table(params)

    def log_probs(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, *shape, K)`` (float32) of every variable given the known ones."""
        return self.head.table(self.params(x, known, t))

    def byte_log_probs(
        self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor, hi: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A 16-bit mixture's high-byte (``hi=None``) or low-byte log-probabilities ``(B, *shape,
        256)`` (:meth:`ardm.models.heads.MixtureHead.byte_log_probs`)."""
        return self.head.byte_log_probs(self.params(x, known, t), hi)

    def masked_ll(
        self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor, select: torch.Tensor
    ) -> torch.Tensor:
        """Summed log-likelihood ``(B,)`` (nats) of ``x`` at ``select`` given ``x`` at ``known``."""
        log_px = self.head.log_prob(self.params(x, known, t), x)  # (B, *shape)
        log_px = torch.where(select, log_px, torch.zeros_like(log_px))
        return log_px.flatten(1).sum(dim=1)  # (B,)

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
        params = self.params(x, known, t)  # (B, *shape, O)
        return self.head.sample(params, temperature=temperature, generator=generator)

    # ------------------------------------------------------------------ one stage's step
    def step_ll(
        self,
        x: torch.Tensor,
        stage: torch.Tensor,
        t_in: torch.Tensor,
        known: torch.Tensor,
        select: torch.Tensor,
    ) -> torch.Tensor:
        """Summed log-likelihood ``(B,)`` (nats) at ``select`` in stage ``stage (B,)`` with
        ``t_in (B,)`` variables of the stage known (``known``); one network call."""
        return self.masked_ll(x, known, t_in, select)

    def step_draw(
        self, x: torch.Tensor, known: torch.Tensor, s: int, t_in: int, how: Sampling
    ) -> torch.Tensor:
        """The values ``(n, *shape)`` every variable would take in stage ``s`` (one network
        call) given the state ``x`` with the ``t_in`` variables ``known``."""
        t = torch.full((x.shape[0],), t_in, dtype=torch.long, device=x.device)
        return self.draw(x, known, t, temperature=how.temperature, generator=how.generator)

    # ------------------------------------------------------------------ training
    def bound_terms(self, x: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor) -> BoundTerms:
        """The bound's terms ``(B,)`` for global steps ``t = s * D + t_in`` ``(B,)`` and orders
        ``sigma`` ``(B, D)``: one stage's OA-ARDM terms, ``bpd`` weighted by the ``S`` stages."""
        B = x.shape[0]
        stage = torch.div(t, self.D, rounding_mode="floor")  # (B,)
        t_in = t - stage * self.D  # (B,)
        known = known_mask(sigma, t_in).view(B, *self.shape)  # (B, *shape)
        ll_nats = self.step_ll(x, stage, t_in, known, ~known)  # (B,)
        terms = ardm_bound(ll_nats, t_in, self.D)
        return BoundTerms(bpd=self.S * terms.bpd, ce_bpd=terms.ce_bpd, L_t=terms.L_t)

    def step_terms(
        self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
    ) -> BoundTerms:
        if self.context:  # slots from the context on: the block given its prefix
            sigma = prefix_orders(t, self.D, self.context, shape=self.shape, generator=generator)
        else:
            sigma = random_orders(x.shape[0], self.D, generator=generator, device=x.device)
        return self.bound_terms(x, t, sigma)

    def loss(
        self,
        x: torch.Tensor,
        *,
        antithetic: bool = False,
        generator: torch.Generator | None = None,
        policy_budget: int = 0,
        spread_order: bool = False,
    ) -> LossOutput:
        """The OA loss, or with ``context`` the prefix-known mixture of
        :func:`ardm.core.context.context_examples` (``antithetic`` does not apply to it), its
        coding case drawn at the coder's steps for ``policy_budget`` calls per block if
        nonzero (:func:`ardm.core.context.policy_starts`, planned on the tracked ``L``) and,
        with ``spread_order``, in the spread coder's order of the block
        (:func:`ardm.core.context.coding_order`)."""
        if not self.context:
            return super().loss(
                x,
                antithetic=antithetic,
                generator=generator,
                policy_budget=policy_budget,
                spread_order=spread_order,
            )
        starts = None
        if policy_budget:
            known = int(context_region(self.shape, self.context).sum())  # the coding case's
            starts = policy_starts(self.tracker.L(), self.D, known, policy_budget)
        sigma_c = coding_order(self.shape, self.context) if spread_order else None
        x, t, sigma, tracked = context_examples(
            x.flatten(1),
            self.context,
            shape=self.shape,
            generator=generator,
            coding_starts=starts,
            coding_sigma=sigma_c,
        )
        out = self.loss_output(self.bound_terms(x.view(-1, *self.shape), t, sigma), t)
        return dataclasses.replace(out, tracked=tracked)

    @torch.no_grad()
    def bound_bpd(
        self, x: torch.Tensor, *, passes: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Stochastic bound per item ``(N,)``; with ``context`` the plain OA bound (uniform
        ``t`` and orders over the whole item), not the training mixture's average."""
        if not self.context:
            return super().bound_bpd(x, passes=passes, generator=generator)
        B = x.shape[0]
        total = torch.zeros(B, dtype=torch.float64)
        for _ in range(passes):
            t = sample_t(B, self.D, generator=generator).to(x.device)  # (B,)
            sigma = random_orders(B, self.D, generator=generator, device=x.device)  # (B, D)
            total += self.bound_terms(x, t, sigma).bpd.double().cpu()
        return total / passes

    # ------------------------------------------------------------------ policies
    def stage_budgets(self, budget: int, *, mode: str, naive: bool, start: int) -> list[int]:
        """Network calls per stage for ``budget`` read as ``mode`` (one stage: the budget)."""
        if not budget >= 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        return [budget] * self.S

    def stage_policies(
        self, budget: int, *, mode: str = "joint", naive: bool = False, start: int = 0
    ) -> list[np.ndarray]:
        """One policy per stage (step boundaries over ``start..D-1``), ``S`` arrays.

        Each stage's calls (:meth:`stage_budgets`) go to the DP on that stage's ``L`` sorted
        non-increasing (``naive``: even steps); a stage given at least as many calls as
        variables gets one variable per step. ``start`` variables are given (conditional
        generation). Ties in ``L`` may leave calls unused.
        """
        check_budget_mode(mode)
        if not 0 <= start < self.D:
            raise ValueError(f"start must lie in [0, {self.D}), got {start}")
        remaining = self.D - start
        policies = []
        budgets = self.stage_budgets(budget, mode=mode, naive=naive, start=start)
        for L, calls in zip(self.stage_L(), budgets, strict=True):
            if calls >= remaining:
                policy = np.arange(start, self.D)
            elif naive:
                policy = naive_policy(remaining, calls) + start
            else:
                policy = optimal_policy(L[start:], calls, presorted=True)[0] + start
            policies.append(policy)
        return policies

    def policy_for_budget(self, budget: int, *, start: int = 0, naive: bool = False) -> np.ndarray:
        """The first stage's policy for ``budget`` calls in it (an OA-ARDM: its only one)."""
        return self.stage_policies(budget, mode="per-stage", naive=naive, start=start)[0]

    def per_stage(self, policies: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """``policies`` as one array per stage; a single policy is a one-stage model's."""
        if isinstance(policies, np.ndarray) and policies.ndim == 1:
            policies = [policies]
        if len(policies) != self.S:
            raise ValueError(
                f"expected {self.S} {'policy' if self.S == 1 else 'policies'} (one per stage), "
                f"got {len(policies)}"
            )
        return [np.asarray(p) for p in policies]

    def expected_bpd(self, policies: np.ndarray | Sequence[np.ndarray]) -> float:
        """Expected bpd of per-stage policies (or one policy of a one-stage model) from each
        stage's tracked sorted ``L``; a policy starting at ``g > 0`` is scored on ``L[g:]``."""
        total = 0.0
        for L, policy in zip(self.stage_L(), self.per_stage(policies), strict=True):
            p = np.asarray(policy, dtype=np.int64)
            total += policy_cost(L[int(p[0]) :], p - p[0])
        return float(total)

    def budget_range(self) -> tuple[int, int]:
        return self.S, self.S * self.D

    def coding_stages(self, budget: int, seed: int) -> list[Stage]:
        """One stage: the order ``order_from_seed(D, seed)``, the DP policy for ``budget``, the
        head's rows (a table, a mixture's table at each step's variables, or byte pairs)."""
        sigma = order_from_seed(self.D, seed)
        return [self.head.coding_stage(self.params, sigma, self.policy_for_budget(budget))]

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def exact_nll_bpd(
        self,
        x: torch.Tensor,
        *,
        sigmas: torch.Tensor | None = None,
        policies: Sequence[np.ndarray] | None = None,
        batch_size: int = 256,
        sigma: torch.Tensor | None = None,
        policy: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Exact ``-log2 p(x) / D`` under fixed per-stage orders and policies, per item ``(N,)``.

        The sum over stages of each stage's chain rule: ``sigmas`` ``(S, D)`` (or ``(N, S, D)``)
        holds one order per stage, default ``order_from_seed(D, order_seed + s)``; ``policies``
        one per stage, default one variable per step (``S * D`` calls per item). Under a policy
        with fewer steps, each step's variables are modelled independently given the state.
        ``sigma`` and ``policy`` are a one-stage model's ``sigmas=[sigma]``, ``policies=[policy]``.
        All (item, stage, step) jobs go through the network ``batch_size`` at a time.
        """
        N, device = x.shape[0], x.device
        if sigma is not None:
            sigmas = torch.as_tensor(sigma).reshape(-1, 1, self.D)
        if sigmas is None:
            sigmas = torch.stack(
                [order_from_seed(self.D, self.order_seed + s) for s in range(self.S)]
            )
        sigmas = sigmas.to(device).reshape(-1, self.S, self.D).expand(N, self.S, self.D)
        if policy is not None:
            policies = [policy]
        stages = self.per_stage(policies if policies is not None else [np.arange(self.D)] * self.S)
        jobs = [
            (n, s, left, right)
            for n in range(N)
            for s in range(self.S)
            for (left, right) in policy_steps(stages[s], self.D)
        ]
        nll = torch.zeros(N, dtype=torch.float64, device=device)
        for i in range(0, len(jobs), batch_size):
            chunk = torch.tensor(jobs[i : i + batch_size], device=device)  # (J, 4)
            items, stage, left, right = chunk.unbind(1)  # (J,) each
            sig = sigmas[items, stage]  # (J, D)
            known = (sig < left[:, None]).view(-1, *self.shape)  # (J, *shape)
            step = ((sig >= left[:, None]) & (sig < right[:, None])).view(-1, *self.shape)
            ll_nats = self.step_ll(x[items], stage, left, known, step)  # (J,)
            nll.index_add_(0, items, -ll_nats.double())
        return (nll / (self.D * LN2)).cpu()

    def budget_nlls(
        self,
        x: torch.Tensor,
        budgets: Sequence[int],
        *,
        exact: bool = True,
        naive: bool = True,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
    ) -> Iterator[BudgetNLL]:
        """The exact NLL of the fixed order (``S * D`` calls; skipped with ``exact=False``),
        then per budget (calls in all, split over the stages by the joint DP) the exact NLL
        under the DP policy and, with ``naive``, under even steps."""
        if exact:
            nll = self.exact_nll_bpd(x, batch_size=batch_size)
            note = f"exact NLL, fixed order (seed {self.order_seed})"
            yield BudgetNLL("exact", self.S * self.D, nll, float(self.tracker.L().sum()), note)
        fewest, most = self.budget_range()
        for budget in budgets:
            if budget >= most or budget < fewest:
                continue
            for evenly in (False, True) if naive else (False,):
                policies = self.stage_policies(budget, mode="joint", naive=evenly)
                nll = self.exact_nll_bpd(x, policies=policies, batch_size=batch_size)
                calls, expected = sum(len(p) for p in policies), self.expected_bpd(policies)
                what = "naive" if evenly else "DP"
                note = f"exact NLL under the {what} policy, fixed order"
                yield BudgetNLL(what.lower(), calls, nll, expected, note)

    # ------------------------------------------------------------------ generation
    def sample_policies(self, how: Sampling, start: int) -> list[np.ndarray]:
        """The per-stage policies of a sample: ``how.policies``, or the budget's (at least ``S``
        calls in "joint" mode), or one variable per step without a budget."""
        if how.policies is not None:
            return self.per_stage(how.policies)
        if how.budget is None:
            return [np.arange(start, self.D)] * self.S
        if how.mode == "joint" and how.budget < self.S:
            raise DataError(f"this model has {self.S} stages: the budget must be at least {self.S}")
        return self.stage_policies(how.budget, mode=how.mode, naive=how.naive, start=start)

    @torch.no_grad()
    def generate(self, n: int, how: Sampling) -> torch.Tensor:
        """Stage by stage from ``x = 0``: each stage's variables in a fresh order (given ones
        first, so they are never drawn; the state shows them as ``x^(s+1)`` during stage
        ``s``), one network call per policy step. ``last_sample_calls``: the calls budgeted."""
        device = self.device
        full, mask, g = given_values(n, self.D, self.K, how.given, how.known, device)
        if g == self.D:
            return full.view(n, *self.shape)
        policies = self.sample_policies(how, g)
        self.last_sample_calls = sum(len(p) for p in policies)
        if how.policies is None and how.budget is not None:  # a tie in L may leave calls unused
            per = how.budget if how.mode == "joint" else self.S * how.budget
            self.last_sample_calls = min(per, self.S * (self.D - g))
        x = torch.zeros(n, self.D, dtype=torch.long, device=device)  # x^(0)
        for s in range(self.S):
            sigma = orders_given_first(mask, generator=how.generator)  # (n, D) fresh per stage
            x = torch.where(mask, coarsen(full, s + 1, b=self.b, S=self.S), x)
            for left, right in policy_steps(policies[s], self.D):
                known = (sigma < left).view(n, *self.shape)
                draw = self.step_draw(x.view(n, *self.shape), known, s, left, how).view(n, self.D)
                step = (sigma >= left) & (sigma < right)  # (n, D)
                x = torch.where(step, draw, x)
                if how.on_step is not None:
                    how.on_step(x.view(n, *self.shape), step.view(n, *self.shape))
        return x.view(n, *self.shape)
