"""D3PM with the absorbing state (Austin et al. 2021): the discrete-diffusion baseline.

The same network contract as :class:`ardm.models.ardm.ARDM` (``logits = net(x, known, t)``) serves
here: absorbed positions are the unknown ones, and the network predicts ``x0`` at every
position (x0-parametrisation). ``t`` given to the network is the number of unabsorbed
positions of each example, clamped to ``[0, D-1]``; the diffusion step never reaches it.

Forward process (linear absorbing schedule, ``T`` steps). At step ``t in {1..T}`` every
position is absorbed, independently, with cumulative probability ``a_t = t/T``; so ``x_0`` is
the data and ``x_T`` is all absorbed. One step absorbs a still-unabsorbed position with
``beta_t = 1/(T-t+1)``, since ``(1 - a_{t-1})(1 - beta_t) = 1 - a_t``.

Posterior. A position absorbed in ``x_t`` was unabsorbed (equal to ``x0``) at ``t-1`` with

    q(unabsorbed at t-1 | absorbed at t, x0) = (1 - a_{t-1}) beta_t / a_t
                                             = ((T-t+1)/T) (1/(T-t+1)) / (t/T) = 1/t,

and stays absorbed otherwise; an unabsorbed position is copied. The model step
``p(x_{t-1} | x_t)`` is the same posterior with ``x0`` replaced by ``p_theta(x0 | x_t)``
(independent over positions): an absorbed position stays absorbed with ``1 - 1/t`` and
becomes ``k`` with ``(1/t) p_theta(k | x_t)``. Per absorbed position the KL is therefore

    (1 - 1/t) log((1-1/t)/(1-1/t)) + (1/t) log((1/t) / ((1/t) p_theta(x0_i | x_t)))
        = (1/t) (-log p_theta(x0_i | x_t)),

and 0 for unabsorbed positions. At ``t = 1`` every absorbed position is revealed (``1/t =
1``): the reconstruction term ``-log p(x0 | x_1)`` has the same form. The prior term
``KL(q(x_T | x0) || p(x_T))`` is 0 (both are all absorbed). Hence

    -log p(x0) <= sum_{t=1}^{T} L_t,
    L_t = E_{x_t ~ q(x_t | x0)} [ (1/t) sum_{i absorbed in x_t} -log p_theta(x0_i | x_t) ].

Checks: for a network that ignores context, ``E[#absorbed] = D t/T`` makes every ``L_t =
(1/T) (-log p(x0))``, so the bound is exact at any ``T``. As ``T -> inf`` it tends to the
OA-ARDM bound: ``int_0^1 (1/s) Bin(n; D, s) ds = 1/n``.

Training (``loss``): ``t ~ U{1..T}`` and one draw of ``x_t``; ``T * L_t`` estimates the bound.
Everything is reported in bits per dim (nats divided by ``D ln 2``). A draw in which nothing
is absorbed contributes 0. The tracker slot ``t - 1`` holds ``L_t`` (bits per dim), so the
slots sum to the bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ardm.coding.fingerprint import raw_config
from ardm.coding.stages import Stage
from ardm.config import Config, ModelConfig
from ardm.core.objective import LN2, BoundTerms, masked_log_likelihood
from ardm.errors import DataError
from ardm.models.heads import CategoricalHead
from ardm.models.process import BudgetNLL, Process, Sampling

EVAL_STEPS = (1000, 256, 100, 50, 20)
"""The step counts at which evaluation measures a D3PM's bound (its budgets)."""

NO_ORDER = (
    "a D3PM model has no generation order: its T steps are fixed by its schedule (policies, "
    "plans, exact likelihoods, conditional generation and compression are for ARDMs)"
)


def absorb_mask(
    batch: int,
    D: int,
    prob: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Absorbed positions ``(batch, D)`` bool, each independently with ``prob`` ``(batch,)``.

    Uniforms are drawn in float64 on the CPU (``generator``); ``prob = 1`` absorbs everything.
    """
    u = torch.rand(batch, D, generator=generator, dtype=torch.float64)  # (B, D) in [0, 1)
    return (u < prob.double().cpu()[:, None]).to(device)


def d3pm_bound(ll_nats: torch.Tensor, t: torch.Tensor, T: int, D: int) -> BoundTerms:
    """Terms from ``ll_nats`` (summed log-lik. of the absorbed positions, nats ``(B,)``) at step ``t``.

    ``t`` is 1-indexed ``(B,)`` in ``[1, T]``; ``L_t = -ll_nats / t`` and ``bpd = T L_t`` (as ``t``
    is uniform), both per ``D ln 2``. ``ce_bpd`` is the unweighted ``-ll_nats / (D ln 2)``.
    """
    scale = D * LN2
    L_t = -ll_nats / t.to(ll_nats.dtype) / scale  # (B,)
    return BoundTerms(bpd=T * L_t, ce_bpd=-ll_nats / scale, L_t=L_t)


class D3PMAbsorbing(Process):
    """D3PM-absorbing over ``D = prod(net.shape)`` variables with ``K`` classes, ``T`` steps.

    The same interface as :class:`ardm.models.ardm.ARDM`: a budget is a number of steps.
    What needs a generation order (policies, exact likelihoods, completion, coding) is
    refused with one line naming D3PM. ``order_seed`` is kept for the fingerprint only.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        kind: str,
        steps: int = 1000,
        ce_weight: float = 1e-3,
        order_seed: int = 0,
        config: Config | None = None,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        super().__init__(
            net,
            head=CategoricalHead(int(net.K)),  # type: ignore[arg-type]
            kind=kind,
            slots=int(steps),  # slot t-1 holds L_t, bits per dim
            ce_weight=ce_weight,
            order_seed=order_seed,
            config=config,
        )
        self.T = int(steps)

    @staticmethod
    def config_head(K: int, mc: ModelConfig) -> CategoricalHead:
        """A ``K``-way softmax over ``x0``."""
        return CategoricalHead(K)

    @classmethod
    def from_config(cls, net: nn.Module, cfg: Config, *, kind: str) -> D3PMAbsorbing:
        """The D3PM of a resolved config around ``net``."""
        mc = cfg.model
        return cls(net, kind=kind, steps=mc.d3pm_steps, ce_weight=mc.ce_weight, config=cfg)

    # ------------------------------------------------------------------ network
    def log_probs(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, *shape, K)`` (float32) of ``x0`` given the unabsorbed ones."""
        return self.head.table(self.head.params(self.net(x, known, t)))  # (B, *shape, K)

    def absorbed_ll(self, x: torch.Tensor, absorbed: torch.Tensor) -> torch.Tensor:
        """``ll_nats`` ``(B,)``: summed ``log p_theta(x0_i | x_t)`` over absorbed positions ``(B, D)``."""
        B = x.shape[0]
        known = (~absorbed).view(B, *self.shape)  # (B, *shape)
        t_in = known.flatten(1).sum(dim=1).clamp(max=self.D - 1)  # (B,) unabsorbed count
        return masked_log_likelihood(self.log_probs(x, known, t_in), x, ~known)

    # ------------------------------------------------------------------ training
    def step_terms(
        self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
    ) -> BoundTerms:
        """Terms at slots ``t (B,)`` (diffusion steps ``t + 1``) with one draw of ``x_t``."""
        step = (t + 1).cpu()  # (B,) diffusion step in [1, T]
        absorbed = absorb_mask(len(t), self.D, step / self.T, generator=generator)
        ll_nats = self.absorbed_ll(x, absorbed.to(x.device))  # (B,)
        return d3pm_bound(ll_nats, step.to(x.device), self.T, self.D)

    @torch.no_grad()
    def nll_bound_bpd(
        self,
        x: torch.Tensor,
        *,
        steps: int | None = None,
        passes: int = 1,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The full ``steps``-step bound of this network per item, bits per dim ``(N,)`` float64.

        Every step ``t = 1..steps`` is evaluated once per pass with a fresh ``x_t`` (no
        sampling of ``t``: low variance); the (item, step) pairs go through the network
        ``batch_size`` at a time. ``steps`` defaults to the training ``T``.
        """
        T = self.T if steps is None else int(steps)
        if T < 1:
            raise ValueError(f"steps must be at least 1, got {T}")
        N = x.shape[0]
        device = x.device
        nll = torch.zeros(N, dtype=torch.float64)
        for _ in range(passes):
            for jobs in torch.arange(N * T).split(batch_size):
                items = jobs // T  # (J,)
                step = jobs % T + 1  # (J,) in [1, T]
                absorbed = absorb_mask(len(jobs), self.D, step / T, generator=generator)
                ll_nats = self.absorbed_ll(x[items.to(device)], absorbed.to(device))  # (J,)
                nll.index_add_(0, items, -ll_nats.double().cpu() / step.double())
        return nll / (passes * self.D * LN2)

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
        """The bound at each of :data:`EVAL_STEPS` steps (one fresh absorption pattern per step
        and item); a D3PM has no exact likelihood and no policies, so the ARDM ``budgets``,
        ``exact`` and ``naive`` do not apply."""
        for steps in EVAL_STEPS:
            nll = self.nll_bound_bpd(x, steps=steps, batch_size=batch_size, generator=generator)
            note = f"D3PM-absorbing {steps}-step bound (trained with T={self.T})"
            yield BudgetNLL("d3pm", steps, nll, None, note)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, n: int, how: Sampling) -> torch.Tensor:
        """Ancestral sampling of ``n`` items ``(n, *shape)`` in ``how.budget`` steps (default ``T``).

        From ``x_T`` (all absorbed), step ``t`` reveals each absorbed position with
        probability ``1/t`` and gives it a value drawn from ``p_theta(x0 | x_t)``; step 1
        reveals the rest. A step that reveals nothing skips the network: the number of
        network calls made is left in ``self.last_sample_calls`` (at most the steps, at most
        ``D`` per item). ``naive`` and ``mode`` mean nothing here (no policies).
        """
        if how.known is not None:
            raise DataError("conditional generation is for ARDMs; the D3PM baseline does not do it")
        if how.policies is not None:
            raise DataError(NO_ORDER)
        T = self.T if how.budget is None else int(how.budget)
        if T < 1:
            raise ValueError(f"steps must be at least 1, got {T}")
        device = self.device
        x = torch.zeros(n, self.D, dtype=torch.long, device=device)  # (n, D)
        absorbed = torch.ones(n, self.D, dtype=torch.bool, device=device)  # (n, D)
        calls = 0
        for t in range(T, 0, -1):
            reveal = absorbed & absorb_mask(
                n, self.D, torch.full((n,), 1.0 / t), generator=how.generator, device=device
            )  # (n, D)
            if not bool(reveal.any()):
                continue
            known = (~absorbed).view(n, *self.shape)
            t_in = known.flatten(1).sum(dim=1).clamp(max=self.D - 1)  # (n,)
            params = self.head.params(self.net(x.view(n, *self.shape), known, t_in))
            draw = self.head.sample(
                params.view(n, self.D, -1), temperature=how.temperature, generator=how.generator
            )  # (n, D)
            x = torch.where(reveal, draw, x)
            absorbed &= ~reveal
            calls += 1
            if how.on_step is not None:
                how.on_step(x.view(n, *self.shape), reveal.view(n, *self.shape))
        self.last_sample_calls = calls
        return x.view(n, *self.shape)

    # ------------------------------------------------------------------ no order
    def stage_policies(
        self, budget: int, *, mode: str = "joint", naive: bool = False, start: int = 0
    ) -> list[np.ndarray]:
        raise DataError(NO_ORDER)

    def expected_bpd(self, policies: np.ndarray | Sequence[np.ndarray]) -> float:
        raise DataError(NO_ORDER)

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
        raise DataError(NO_ORDER)

    def budget_range(self) -> tuple[int, int]:
        raise DataError(NO_ORDER)

    def coding_stages(self, budget: int, seed: int) -> list[Stage]:
        raise DataError(NO_ORDER)

    # ------------------------------------------------------------------ identity
    def identity(self) -> bytes:
        """The raw resolved config and ``T``."""
        return (
            json.dumps(raw_config(self.config), sort_keys=True).encode()
            + f"d3pm-absorbing T={self.T}".encode()
        )
