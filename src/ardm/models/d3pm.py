"""D3PM with the absorbing state (Austin et al. 2021): the discrete-diffusion baseline.

The same network contract as :class:`ardm.model.ARDM` (``logits = net(x, known, t)``) serves
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

import hashlib
import json
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ardm.core.loss_tracker import LossTracker
from ardm.core.objective import LN2, BoundTerms, masked_log_likelihood
from ardm.core.orders import sample_t
from ardm.models.ardm import LossOutput, _sample_categorical
from ardm.models.process import Process, step_batches


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


def d3pm_bound(S: torch.Tensor, t: torch.Tensor, T: int, D: int) -> BoundTerms:
    """Terms from ``S`` (summed log-lik. of the absorbed positions, nats ``(B,)``) at step ``t``.

    ``t`` is 1-indexed ``(B,)`` in ``[1, T]``; ``L_t = -S / t`` and ``bpd = T L_t`` (as ``t``
    is uniform), both per ``D ln 2``. ``ce_bpd`` is the unweighted ``-S / (D ln 2)``.
    """
    scale = D * LN2
    L_t = -S / t.to(S.dtype) / scale  # (B,)
    return BoundTerms(bpd=T * L_t, ce_bpd=-S / scale, L_t=L_t)


class D3PMAbsorbing(Process):
    """D3PM-absorbing over ``D = prod(net.shape)`` variables with ``K`` classes, ``T`` steps.

    Mirrors :class:`ardm.model.ARDM` where the training loop and evaluation need it.
    ``order_seed`` is kept for interface parity only (D3PM has no generation order).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        kind: str,
        steps: int = 1000,
        ce_weight: float = 1e-3,
        order_seed: int = 0,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.net = net
        self.K: int = int(net.K)  # type: ignore[arg-type]
        self.shape: tuple[int, ...] = tuple(net.shape)  # type: ignore[arg-type]
        self.D: int = math.prod(self.shape)
        self.kind = kind
        self.T = int(steps)
        self.ce_weight = ce_weight
        self.order_seed = order_seed
        self.tracker = LossTracker(self.T, self.K)  # slot t-1 holds L_t, bits per dim
        self.config: dict[str, Any] = {}  # resolved config, set by the builder
        self.last_sample_calls = 0  # network calls made by the latest ``sample``

    # ------------------------------------------------------------------ network
    def log_probs(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, *shape, K)`` (float32) of ``x0`` given the unabsorbed ones."""
        logits = self.net(x, known, t)  # (B, *shape, K)
        return torch.log_softmax(logits.float(), dim=-1)

    def absorbed_ll(self, x: torch.Tensor, absorbed: torch.Tensor) -> torch.Tensor:
        """``S`` ``(B,)``: summed ``log p_theta(x0_i | x_t)`` over absorbed positions ``(B, D)``."""
        B = x.shape[0]
        known = (~absorbed).view(B, *self.shape)  # (B, *shape)
        t_in = known.flatten(1).sum(dim=1).clamp(max=self.D - 1)  # (B,) unabsorbed count
        return masked_log_likelihood(self.log_probs(x, known, t_in), x, ~known)

    # ------------------------------------------------------------------ training
    def loss(
        self, x: torch.Tensor, *, antithetic: bool = False, generator: torch.Generator | None = None
    ) -> LossOutput:
        """The D3PM training loss for ``x`` ``(B, *shape)``; ``t`` in the output is ``step - 1``."""
        B = x.shape[0]
        slot = sample_t(B, self.T, antithetic=antithetic, generator=generator)  # (B,) in [0, T)
        step = slot + 1  # (B,) diffusion step in [1, T]
        absorbed = absorb_mask(B, self.D, step / self.T, generator=generator, device=x.device)
        S = self.absorbed_ll(x, absorbed)  # (B,)
        terms = d3pm_bound(S, step.to(x.device), self.T, self.D)
        loss = terms.bpd.mean() + self.ce_weight * terms.ce_bpd.mean()
        return LossOutput(loss=loss, terms=terms, t=slot.to(x.device))

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
                S = self.absorbed_ll(x[items.to(device)], absorbed.to(device))  # (J,)
                nll.index_add_(0, items, -S.double().cpu() / step.double())
        return nll / (passes * self.D * LN2)

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
        """Fresh ``L_t`` (bits per dim) for every step, ``(T,)``: each pass evaluates every ``t``.

        Items are drawn at random from ``items`` ``(N, *shape)``, with a fresh ``x_t`` each.
        """
        device = self.device
        total = torch.zeros(self.T, dtype=torch.float64)
        for slot in step_batches(self.T, batch_size, passes, progress=progress):
            idx = torch.randint(0, items.shape[0], (len(slot),), generator=generator)
            x = items[idx].to(device).long()  # (b, *shape)
            step = slot + 1  # (b,)
            absorbed = absorb_mask(len(slot), self.D, step / self.T, generator=generator)
            S = self.absorbed_ll(x, absorbed.to(device))  # (b,)
            total[slot] += d3pm_bound(S.double().cpu(), step, self.T, self.D).L_t
        return (total / passes).numpy()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        on_step: Any = None,
    ) -> torch.Tensor:
        """Ancestral sampling of ``n`` items ``(n, *shape)`` in ``steps`` steps (default ``T``).

        From ``x_T`` (all absorbed), step ``t`` reveals each absorbed position with
        probability ``1/t`` and gives it a value drawn from ``p_theta(x0 | x_t)``; step 1
        reveals the rest. A step that reveals nothing skips the network: the number of
        network calls made is left in ``self.last_sample_calls`` (at most ``steps``, at most
        ``D`` per item). ``on_step(x, step_mask)`` is called after each network call.
        """
        T = self.T if steps is None else int(steps)
        if T < 1:
            raise ValueError(f"steps must be at least 1, got {T}")
        device = self.device
        x = torch.zeros(n, self.D, dtype=torch.long, device=device)  # (n, D)
        absorbed = torch.ones(n, self.D, dtype=torch.bool, device=device)  # (n, D)
        calls = 0
        for t in range(T, 0, -1):
            reveal = absorbed & absorb_mask(
                n, self.D, torch.full((n,), 1.0 / t), generator=generator, device=device
            )  # (n, D)
            if not bool(reveal.any()):
                continue
            known = (~absorbed).view(n, *self.shape)
            t_in = known.flatten(1).sum(dim=1).clamp(max=self.D - 1)  # (n,)
            log_probs = self.log_probs(x.view(n, *self.shape), known, t_in).view(n, self.D, -1)
            draw = _sample_categorical(log_probs / temperature, generator)  # (n, D)
            x = torch.where(reveal, draw, x)
            absorbed &= ~reveal
            calls += 1
            if on_step is not None:
                on_step(x.view(n, *self.shape), reveal.view(n, *self.shape))
        self.last_sample_calls = calls
        return x.view(n, *self.shape)

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> bytes:
        """SHA-256 of the resolved config, ``T``, order seed, sorted ``L_t`` and all weights."""
        h = hashlib.sha256()
        h.update(json.dumps(self.config, sort_keys=True).encode())
        h.update(f"d3pm-absorbing T={self.T}".encode())
        h.update(str(self.order_seed).encode())
        h.update(self.tracker.sorted_L().tobytes())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.digest()
