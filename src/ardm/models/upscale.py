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
x^(stage+1), x^(stage))``; ``ll_nats`` = summed digit log-likelihood over the ``D - t_in``
unknown variables. The stage's bound is ``D * ll_nats / (D - t_in)`` nats (as OA-ARDM) and a
uniform stage draw is weighted by ``S``, so in bits per dim

    bpd = -S * D * ll_nats / ((D - t_in) * D ln 2) = -S * ll_nats / ((D - t_in) ln 2).

The tracker has ``S * D`` slots; slot ``s * D + t_in`` holds that stage's ``L_t = -ll_nats /
((D - t_in) D ln 2)``, so all slots sum to the bpd.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from ardm.coding.fingerprint import raw_config
from ardm.coding.stages import LogProbFn, Stage
from ardm.config import Config, ModelConfig
from ardm.core.orders import order_from_seed
from ardm.core.policy import monotone_losses, policy_costs, split_budget
from ardm.core.upscale import coarsen, digit, num_stages, refine
from ardm.models.ardm import ARDM
from ardm.models.heads import DigitHead, sample_categorical
from ardm.models.process import Sampling, check_budget_mode


class UpscaleARDM(ARDM):
    """Upscale ARDM over ``D = prod(net.shape)`` variables with ``K`` classes, branching ``b``:
    an :class:`~ardm.models.ardm.ARDM` of ``S`` stages whose head gives a stage's digit."""

    head: DigitHead

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
        config: Config | None = None,
    ) -> None:
        S = num_stages(K, branching)
        head = DigitHead(K, branching, S, parametrisation)
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
        if out != head.out_classes:
            what = "K" if parametrisation == "data" else "S * b"
            raise ValueError(
                f"the {parametrisation} parametrisation needs a network with out_classes = "
                f"{what} = {head.out_classes}, got {out}"
            )
        super().__init__(
            net, kind=kind, head=head, ce_weight=ce_weight, order_seed=order_seed, config=config
        )

    @staticmethod
    def config_head(K: int, mc: ModelConfig) -> DigitHead:
        """The digit head of ``model.branching`` and ``model.parametrisation``."""
        return DigitHead(K, mc.branching, num_stages(K, mc.branching), mc.parametrisation)

    @classmethod
    def from_config(cls, net: nn.Module, cfg: Config, *, kind: str) -> UpscaleARDM:
        """The Upscale ARDM of a resolved config around ``net``."""
        mc = cfg.model
        return cls(
            net,
            kind=kind,
            K=int(net.K),  # type: ignore[arg-type]
            branching=mc.branching,
            parametrisation=mc.parametrisation,
            ce_weight=mc.ce_weight,
            config=cfg,
        )

    @property
    def parametrisation(self) -> str:
        return self.head.parametrisation

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
        return self.head.stage_log_probs(out, x_cur, s)

    def _digit_log_probs(
        self, x_cur: torch.Tensor, known: torch.Tensor, stage: torch.Tensor, t_in: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`stage_log_probs` with a stage per example ``(B,)``: ``(B, *shape, b)``."""
        out = self.net(x_cur, known, stage * self.D + t_in).float()  # (B, *shape, O)
        result = out.new_empty((*x_cur.shape, self.b))  # (B, *shape, b)
        for s in torch.unique(stage).tolist():  # one head per stage present in the batch
            rows = stage == s  # (B,)
            result[rows] = self.head.stage_log_probs(out[rows], x_cur[rows], s)
        return result

    def step_ll(
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

    def step_draw(
        self, x: torch.Tensor, known: torch.Tensor, s: int, t_in: int, how: Sampling
    ) -> torch.Tensor:
        """Every variable refined by a stage-``s`` digit drawn given the state (one call)."""
        log_probs = self.stage_log_probs(x, known, s, t_in)  # (n, *shape, b)
        d = sample_categorical(log_probs / how.temperature, how.generator)  # (n, *shape)
        return refine(x, d, s, b=self.b, S=self.S)

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

    # ------------------------------------------------------------------ policies
    def stage_L(self) -> np.ndarray:
        """The tracked ``L`` per stage, each stage sorted non-increasing: ``(S, D)``.

        The paper sorts ``L`` separately within each stage (eq. 4 holds within a stage; the
        stages are different problems).
        """
        L = self.tracker.L().reshape(self.S, self.D)  # (S, D)
        return np.sort(L, axis=1)[:, ::-1].copy()

    def stage_budgets(self, budget: int, *, mode: str, naive: bool, start: int) -> list[int]:
        """Network calls per stage (:meth:`~ardm.models.ardm.ARDM.stage_policies`).

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
        """
        check_budget_mode(mode)
        remaining = self.D - start
        if mode == "per-stage":
            if not budget >= 1:
                raise ValueError(f"budget must be at least 1 call per stage, got {budget}")
            return [budget] * self.S
        if not budget >= self.S:
            raise ValueError(
                f"a joint budget needs at least one call per stage, S={self.S}, got {budget}"
            )
        budget = min(budget, self.S * remaining)  # more calls cannot help
        if naive:
            return [budget // self.S + (s < budget % self.S) for s in range(self.S)]
        n = min(budget - self.S + 1, remaining)
        raw = self.tracker.L().reshape(self.S, self.D)  # (S, D) as tracked
        curves = [
            policy_costs(monotone_losses(L[start:], "isotonic"), n, presorted=True) for L in raw
        ]
        return split_budget(curves, budget)

    def coding_stages(self, budget: int, seed: int) -> list[Stage]:
        """One stage per digit, coarse first: stage ``s`` in the order ``order_from_seed(D,
        seed + s)`` with the joint DP's policy (``budget`` calls in all), each digit worth
        ``b^(S-s-1)``."""
        policies = self.stage_policies(budget, mode="joint")

        def fn(s: int) -> LogProbFn:
            return lambda x, known, t: self.stage_log_probs(x, known, s, t)

        return [
            Stage(
                fn(s),
                order_from_seed(self.D, seed + s),
                policies[s],
                self.b ** (self.S - s - 1),
                self.b,
            )
            for s in range(self.S)
        ]

    # ------------------------------------------------------------------ identity
    def identity(self) -> bytes:
        """The raw resolved config, ``b``, ``S`` and the parametrisation."""
        config: dict[str, Any] = raw_config(self.config)
        tag = f"upscale b={self.b} S={self.S} {self.parametrisation}"
        return json.dumps(config, sort_keys=True).encode() + tag.encode()
