"""What every generative process around a network shares (OA-ARDM, Upscale ARDM, D3PM).

A process holds the network, its output head, the per-step loss tracker and the resolved
config, and gives one interface whatever the process:

* training: ``loss(x)``, ``bound_bpd``, ``estimate_L`` (one loop; a process gives the bound's
  terms at given steps, :meth:`Process.step_terms`), ``marginal_logits``, ``with_net``;
* generation: ``sample(n, budget=, mode=, policies=, ...)`` and ``complete(x, known, ...)``,
  ``budget`` network calls (a D3PM's budget is its number of steps);
* policies and likelihoods: ``stage_policies``, ``expected_bpd``, ``exact_nll_bpd(policies=,
  sigmas=)``, ``budget_nlls`` (what evaluation measures per budget);
* coding: ``budget_range()`` and ``coding_stages(budget, seed)`` (what the coder walks);
* identity: ``fingerprint()``.

A process without an order (D3PM) refuses the order-based calls with a one-line
:class:`~ardm.errors.DataError`, so callers never ask for the class.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ardm.coding.fingerprint import stable_config
from ardm.coding.stages import Stage
from ardm.config import Config, to_dict
from ardm.core.loss_tracker import LossTracker
from ardm.core.objective import BoundTerms
from ardm.core.orders import sample_t
from ardm.core.policy import step_bounds
from ardm.models.heads import Head

P = TypeVar("P", bound="Process")

OnStep = Callable[[torch.Tensor, torch.Tensor], Any]
"""``on_step(x, step_mask)``: called after each network call of a sample (animations)."""


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
"""How a budget is read by a model with stages (:meth:`ardm.models.ardm.ARDM.stage_policies`):
calls in each stage, or calls in all. A one-stage OA-ARDM reads both the same way."""


def check_budget_mode(mode: str) -> None:
    if mode not in BUDGET_MODES:
        raise ValueError(f"unknown budget mode {mode!r}; expected 'per-stage' or 'joint'")


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


def policy_steps(policy: np.ndarray | None, D: int) -> list[tuple[int, int]]:
    """Steps ``[l, r)`` of a policy whose first boundary may be ``g > 0`` (``g`` variables given)."""
    if policy is None:
        raise ValueError("a policy or a budget is needed")
    start = int(policy[0])
    return [
        (left + start, right + start)
        for left, right in step_bounds(np.asarray(policy) - start, D - start)
    ]


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # () scalar to minimise: mean bound + ce_weight * mean ce, bits per dim
    terms: BoundTerms  # per-example terms, (B,) each
    t: torch.Tensor  # (B,) sampled step (the tracker's slot)
    tracked: torch.Tensor | None = None  # (B,) bool: the examples whose L_t the tracker takes
    # (None: all; a model with context: those drawn as its L_t is defined, context_examples)

    def track(self, tracker: LossTracker) -> None:
        """Record the tracked examples' ``L_t`` in ``tracker``."""
        t, L_t = self.t, self.terms.L_t
        if self.tracked is not None:
            t, L_t = t[self.tracked], L_t[self.tracked]
        tracker.update(t, L_t)


@dataclass(frozen=True)
class Sampling:
    """How to generate: a budget read as ``mode`` says (or explicit per-stage ``policies``),
    ``naive`` even steps instead of the DP, the temperature, the random source and a callback.
    ``given`` values where ``known`` (conditional generation; both ``None`` otherwise)."""

    budget: int | None = None
    mode: str = "joint"
    policies: Sequence[np.ndarray] | None = None
    naive: bool = False
    temperature: float = 1.0
    generator: torch.Generator | None = None
    on_step: OnStep | None = None
    given: torch.Tensor | None = None
    known: torch.Tensor | None = None


@dataclass(frozen=True)
class BudgetNLL:
    """One measured likelihood of evaluation: items' ``nll_bpd (N,)`` under ``calls`` network
    calls, by ``method`` ("exact", "dp", "naive", "d3pm"), with the DP's expectation from the
    tracked ``L_t`` where there is one and a note that says what it is."""

    method: str
    calls: int
    nll_bpd: torch.Tensor
    expected_bpd: float | None
    note: str


class Process(nn.Module):
    """Base of :class:`ardm.models.ardm.ARDM`, :class:`ardm.models.upscale.UpscaleARDM` and
    :class:`ardm.models.d3pm.D3PMAbsorbing`: the network, its ``head``, ``K`` classes per
    variable, ``D = prod(net.shape)`` variables, the data ``kind``, the loss tracker with
    ``slots`` steps, the typed resolved config ``cfg`` (``None`` for a bare model)."""

    S: int = 1
    """Stages of generation (an Upscale ARDM has ``S`` digit stages)."""

    portable: Any = None
    """The model's portable form (:class:`ardm.portable.model.PortableModel`: the frozen
    integer network the coder uses for format versions 5-9), or ``None`` (float coder only)."""

    def __init__(
        self,
        net: nn.Module,
        *,
        head: Head,
        kind: str,
        slots: int,
        ce_weight: float,
        order_seed: int = 0,
        config: Config | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.K: int = head.K
        self.shape: tuple[int, ...] = tuple(net.shape)  # type: ignore[arg-type]
        self.D: int = math.prod(self.shape)
        self.kind = kind
        self.ce_weight = ce_weight
        self.order_seed = order_seed
        self.tracker = LossTracker(slots, self.K)
        self.cfg = config
        self.last_sample_calls = 0  # network calls the latest sample was given (see sample)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config as a plain table (what checkpoints store and fingerprints hash)."""
        return {} if self.cfg is None else to_dict(self.cfg)

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
        other.portable = None  # frozen from this net, not the other
        other.net = net
        return other

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        """Log-frequencies of ``data``'s values ``(N, *shape)``, laid out like the net's output:
        the initial output bias of ``model.output_bias = "marginal"`` (see the head)."""
        return self.head.marginal_logits(data)

    # ------------------------------------------------------------------ training
    def step_terms(
        self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
    ) -> BoundTerms:
        """The bound's terms ``(B,)`` for items ``x (B, *shape)`` at tracker slots ``t (B,)``,
        with the rest of the randomness (orders, absorptions) drawn from ``generator``."""
        raise NotImplementedError

    def loss(
        self,
        x: torch.Tensor,
        *,
        antithetic: bool = False,
        generator: torch.Generator | None = None,
        policy_budget: int = 0,
        spread_order: bool = False,
    ) -> LossOutput:
        """The training loss for a batch ``x`` ``(B, *shape)``: one uniform slot per example.
        ``policy_budget`` and ``spread_order`` (training for the coder's calls and order) need
        an OA-ARDM with a context."""
        for name, value in (("policy_budget", policy_budget), ("spread_order", spread_order)):
            if value:
                raise ValueError(
                    f"train.{name} needs an OA-ARDM with model.context > 0 (the coder's "
                    "blocks given their prefix)"
                )
        B = x.shape[0]
        slots = self.tracker.D
        t = sample_t(B, slots, antithetic=antithetic, generator=generator).to(x.device)  # (B,)
        return self.loss_output(self.step_terms(x, t, generator), t)

    def loss_output(self, terms: BoundTerms, t: torch.Tensor) -> LossOutput:
        """The training loss of a batch's bound ``terms`` at slots ``t``: the mean bound plus
        ``ce_weight`` times the mean unweighted cross-entropy."""
        loss = terms.bpd.mean() + self.ce_weight * terms.ce_bpd.mean()
        return LossOutput(loss=loss, terms=terms, t=t)

    @torch.no_grad()
    def bound_bpd(
        self, x: torch.Tensor, *, passes: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Stochastic bound per item, averaged over ``passes`` draws of the loss: ``(N,)``."""
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for _ in range(passes):
            total += self.loss(x, generator=generator).terms.bpd.double().cpu()
        return total / passes

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
        """Fresh ``L`` (bits per dim) for every tracker slot: each pass evaluates every slot once.

        Items are drawn at random from ``items`` ``(N, *shape)``, each with fresh randomness;
        the training-time running average can be stale for steps rarely drawn late in
        training, this gives all steps an estimate from the current weights.
        """
        device = self.device
        slots = self.tracker.D
        total = torch.zeros(slots, dtype=torch.float64)
        for t in step_batches(slots, batch_size, passes, progress=progress):
            idx = torch.randint(0, items.shape[0], (len(t),), generator=generator)
            x = items[idx].to(device).long()  # (b, *shape)
            total[t] += self.step_terms(x, t.to(device), generator).L_t.double().cpu()
        return (total / passes).numpy()

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        budget: int | None = None,
        mode: str = "joint",
        policies: Sequence[np.ndarray] | None = None,
        naive: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        on_step: OnStep | None = None,
    ) -> torch.Tensor:
        """Generate ``n`` items ``(n, *shape)`` with ``budget`` network calls.

        ``mode`` says how a model with stages reads the budget ("joint": calls in all,
        "per-stage": calls in each); ``policies`` (one per stage) replace the budget; no
        budget means one variable per step. A D3PM's budget is its number of steps (default
        its ``T``). ``self.last_sample_calls`` is left at the calls the sample was given.
        """
        how = Sampling(budget, mode, policies, naive, temperature, generator, on_step)
        check_budget_mode(mode)
        return self.generate(n, how)

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        *,
        budget: int | None = None,
        mode: str = "joint",
        policies: Sequence[np.ndarray] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill in the unknown variables of ``x`` ``(n, *shape)`` (inpainting, text infill):
        ``known`` (``shape`` or ``(n, *shape)``, bool, the same count per item) is kept."""
        check_budget_mode(mode)
        how = Sampling(budget, mode, policies, generator=generator, given=x, known=known)
        return self.generate(x.shape[0], how)

    def generate(self, n: int, how: Sampling) -> torch.Tensor:
        """:meth:`sample` and :meth:`complete` of this process."""
        raise NotImplementedError

    # ------------------------------------------------------------------ policies, coding
    def stage_L(self) -> np.ndarray:
        """The tracked ``L`` as the policies use it, each stage sorted non-increasing: ``(S, n)``."""
        return self.tracker.sorted_L()[None]

    def stage_policies(
        self, budget: int, *, mode: str = "joint", naive: bool = False, start: int = 0
    ) -> list[np.ndarray]:
        """One policy (step boundaries over ``start..D-1``) per stage for ``budget`` calls."""
        raise NotImplementedError

    def expected_bpd(self, policies: np.ndarray | Sequence[np.ndarray]) -> float:
        """Expected bpd of per-stage policies from the tracked ``L``."""
        raise NotImplementedError

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
        """Exact ``-log2 p(x) / D`` per item ``(N,)`` under fixed orders and policies."""
        raise NotImplementedError

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
        """The likelihoods evaluation reports for items ``x``, one at a time (each is timed)."""
        raise NotImplementedError

    def budget_range(self) -> tuple[int, int]:
        """The fewest and the most network calls a coding budget may ask: ``(S, S * D)``."""
        raise NotImplementedError

    def coding_stages(self, budget: int, seed: int) -> list[Stage]:
        """What the coder walks for ``budget`` network calls and order seed ``seed``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ identity
    def identity(self) -> bytes:
        """What names the process in its fingerprint: the resolved config as fingerprinted
        (:func:`ardm.coding.fingerprint.stable_config`); others add their kind."""
        return json.dumps(stable_config(self.config), sort_keys=True).encode()

    def fingerprint(self) -> bytes:
        """SHA-256 of the identity, order seed, the policies' sorted ``L`` and all weights."""
        h = hashlib.sha256()
        h.update(self.identity())
        h.update(str(self.order_seed).encode())
        h.update(self.stage_L().tobytes())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.digest()
