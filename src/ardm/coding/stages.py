"""Coding stages: what a model hands the coder. One :class:`Stage` per generation stage (its
network function, order ``sigma``, policy and digit arithmetic), what the coder asks of a model
(:class:`CodingModel`: its budget range and its stages) and the one conversion of
log-probabilities to coder rows."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ardm.coding.ans import smooth

LogProbFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``log_prob_fn(x, known, t) -> log_probs``: ``x (N, *shape)`` int64 (zero where unknown),
``known (N, *shape)`` bool, ``t (N,)`` int64 number of known variables -> ``(N, *shape, K)``."""


HeadFn = Callable[[torch.Tensor], torch.Tensor]
"""``head(out) -> log_probs``: a network's output rows ``(n, m, O)`` -> ``(n, m, b)``."""


class CodingModel(Protocol):
    """What :func:`ardm.coding.codec.compress` / ``decompress`` need from every model
    (:class:`ardm.models.process.Process`): the model says how it codes."""

    K: int
    shape: tuple[int, ...]
    D: int
    kind: str
    order_seed: int

    def fingerprint(self) -> bytes: ...

    def budget_range(self) -> tuple[int, int]:
        """The fewest and the most network calls a file may use (``(S, S * D)``)."""
        ...

    def coding_stages(self, budget: int, seed: int) -> list[Stage]:
        """The stages the coder walks for ``budget`` calls and order seed ``seed``."""
        ...


# ---------------------------------------------------------------------------- probabilities
def model_device(model: object) -> torch.device:
    """Where ``model`` lives (the CPU for a model that says nothing)."""
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def check_on_cpu(model: object) -> None:
    """Raise where ``model`` lives on a device other than the CPU: the integer coder (formats
    v5 and later) runs its network on the CPU only, the kernels its exactness is proven for (a
    GPU's conv algorithms, Winograd or FFT, and TF32 are not)."""
    device = model_device(model)
    if device.type != "cpu":
        raise ValueError(
            "the integer coder runs on the CPU (its exactness is proven for CPU kernels only), "
            f"but the model is on {device}: code with the model on the CPU, model.to('cpu')"
        )


def coding_probs(log_probs: torch.Tensor) -> np.ndarray:
    """Log-probabilities ``(..., K)`` -> smoothed float64 probabilities ``(..., K)`` for the coder.

    The one conversion used by both encoder and decoder: float64, ``exp``, then
    ``(1 - eps*K) p + eps`` (:func:`ardm.coding.ans.smooth`).
    """
    probs = log_probs.detach().to(device="cpu", dtype=torch.float64, copy=True).exp_()  # (..., K)
    return smooth(probs.numpy())


def exact_rows(weights: torch.Tensor) -> np.ndarray:
    """Integer weights ``(..., b)`` -> the coder's float64 rows, unchanged (no smoothing: the
    integer coder's rows must reach ``constriction`` bit for bit). Checks that they are
    integers >= 0 summing to ``2^24 - b`` per row, which ``constriction``'s
    ``Categorical(perfect=False)`` turns into exactly ``w + 1``."""
    if weights.is_floating_point() or weights.is_complex() or weights.dtype == torch.bool:
        raise ValueError(f"an exact stage's table must hold integer weights, got {weights.dtype}")
    w = weights.detach().cpu().to(torch.int64)  # (..., b)
    b = w.shape[-1]
    if w.numel() and (bool((w < 0).any()) or bool((w.sum(dim=-1) != (1 << 24) - b).any())):
        raise ValueError(f"an exact stage's weights must be >= 0 and sum to 2**24 - {b}")
    return w.to(torch.float64).numpy()


def policy_nll_bits(log_probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log2 p(x)`` of the coded values under unsmoothed log-probs ``(N, M, K)``, ``x (N, M)``."""
    lp = log_probs.detach().double().gather(-1, x[..., None].long())[..., 0]  # (N, M)
    return -lp.sum(dim=-1) / math.log(2.0)  # (N,)


# ---------------------------------------------------------------------------- steps
def _order(sigma: torch.Tensor, D: int) -> torch.Tensor:
    """The variables in generation order: ``order[s]`` is the variable with ``sigma == s``."""
    sigma = torch.as_tensor(sigma).reshape(-1).long().cpu()  # (D,)
    if sigma.numel() != D or not torch.equal(torch.sort(sigma).values, torch.arange(D)):
        raise ValueError(f"sigma must be a permutation of 0..{D - 1}")
    return torch.argsort(sigma)  # (D,)


@dataclass(frozen=True)
class Stage:
    """One stage of coding: every variable gets one base-``b`` digit worth ``unit``.

    An OA-ARDM has one stage (``unit = 1``, ``b = K``: the digit is the value); an Upscale
    ARDM has ``S`` stages, coarse digits first. ``log_prob_fn(x_cur, known, t)`` gives the
    digit's log-probabilities ``(N, *shape, b)`` given the current values ``x_cur`` (finer
    values where ``known``, the stage's coarse values elsewhere) and ``t`` the number of known
    variables. ``sigma (D,)`` and ``policy`` order and group the stage's variables.

    ``head`` (a mixture OA-ARDM with a small ``K``): ``log_prob_fn`` gives the network's
    output ``(N, *shape, O)``, and ``head`` turns the rows ``(n, m, O)`` of a step's ``m``
    variables into their log-probabilities ``(n, m, b)``, so the table is computed only where
    it is used (a full ``(N, D, K)`` mixture table costs far more than the network).

    ``at`` (set with ``head`` or ``byte_pair``): ``log_prob_fn(x_cur, known, t, positions)``
    takes the step's variables ``positions (m,)`` (flat indices, the same for every item) and
    gives the output rows ``(N, m, O)`` there only (a network whose last layer is per
    variable computes it only where it is used).

    ``byte_pair`` (a 16-bit OA-ARDM without a 65536-way table, e.g. a discretised logistic
    mixture): ``log_prob_fn`` gives the network's output ``(N, *shape, O)`` instead, and every
    value ``v = 256 hi + lo`` is coded as two 256-way symbols from that one output, the high
    byte ``byte_pair(out, None)`` and then the low byte ``byte_pair(out, hi)`` given it.
    """

    log_prob_fn: LogProbFn | Callable[..., torch.Tensor]
    sigma: torch.Tensor
    policy: np.ndarray
    unit: int = 1
    b: int | None = None  # None: whatever the network gives (checked against K on decoding)
    byte_pair: ByteFn | None = None  # set: each value is coded as a high and a low byte
    head: HeadFn | None = None  # set: log_prob_fn gives raw outputs, head the step's table
    exact: bool = False  # set: the table is int64 weights summing to 2^24 - b, not log-probs
    at: bool = False  # set: log_prob_fn also takes the step's positions, gives their rows only


def takes_positions(fn: Callable[..., torch.Tensor]) -> bool:
    """Whether the network function ``fn`` takes a ``positions`` argument (and then gives the
    output rows of those variables only: :attr:`Stage.at`)."""
    return "positions" in inspect.signature(fn).parameters


ByteFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``byte_fn(out, hi)``: from the network's output ``out (n, m, O)`` at a step's variables, the
log-probabilities ``(n, m, 256)`` of the high byte (``hi=None``) or of the low byte given the
high bytes ``hi (n, m)`` (e.g. :func:`ardm.core.dmol.dmol_byte_log_probs`)."""
