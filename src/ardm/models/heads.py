"""Output heads: what a network's output ``out (..., O)`` at one variable means.

A head turns the output into a distribution over the variable's values (or over one digit of
it, for an Upscale ARDM's stage) and gives the three things every process and the coder need:

* ``log_prob``: the log-likelihood of given values (training, exact likelihoods);
* ``sample``: one value per variable (generation);
* the coder's rows: a categorical table (:class:`CategoricalHead`), a mixture's ``K``-way
  table computed only at a step's variables or, for 16-bit values, two 256-way byte symbols
  (:class:`MixtureHead`), a stage's ``b``-way digit table (:class:`DigitHead`).

Heads hold no weights (the network has them); the mixture's initial offsets are a buffer
derived from its size, so they move with the model but are never saved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ardm.coding.stages import Stage
from ardm.core.dmol import (
    BYTE,
    dmol_byte_log_probs,
    dmol_init_bias,
    dmol_log_prob,
    dmol_log_probs_range,
    dmol_sample,
)
from ardm.core.upscale import coarsen, digit, refine, stage_log_probs
from ardm.errors import ConfigError

OutFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``out_fn(x, known, t) -> params``: the network's output at every variable, as the head
reads it ``(N, *shape, O)``."""

MAX_FULL_K = 4096
"""Largest ``K`` for which a :class:`MixtureHead` builds the full ``(..., K)`` table."""

PARAMETRISATIONS = ("data", "direct")


def sample_categorical(log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gumbel-max sample of the last axis: ``(..., K) -> (...)``."""
    u = torch.rand(log_probs.shape, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-300, 1.0 - 1e-16)  # keep both logarithms finite
    gumbel = -torch.log(-torch.log(u)).float()  # (..., K) standard Gumbel noise
    return (log_probs + gumbel.to(log_probs.device)).argmax(dim=-1)


def log_frequencies(values: torch.Tensor, n: int) -> torch.Tensor:
    """Log relative frequencies ``(n,)`` of the integers ``values`` in ``[0, n)``.

    Add-half smoothing keeps an unseen class finite (``log(0.5 / (N + n/2))``).
    """
    counts = torch.bincount(values.flatten().long().cpu(), minlength=n).double() + 0.5  # (n,)
    return (counts / counts.sum()).log().float()


class Head(nn.Module):
    """A distribution over ``K`` values per variable from ``out_classes`` network outputs."""

    def __init__(self, K: int, out_classes: int) -> None:
        super().__init__()
        self.K = K
        self.out_classes = out_classes
        self.S = 1  # stages: one, whose digit is the value
        self.b = K

    def params(self, out: torch.Tensor) -> torch.Tensor:
        """The network's output ``(..., O)`` as this head reads it (float32)."""
        return out.float()

    def table(self, params: torch.Tensor) -> torch.Tensor:
        """All ``K`` log-probabilities ``(..., K)``."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` (nats) of the values ``x (...)``: ``(...)``."""
        return self.table(params).gather(-1, x.unsqueeze(-1)).squeeze(-1)

    def sample(
        self, params: torch.Tensor, *, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One value ``(...)`` int64 per variable."""
        return sample_categorical(self.table(params) / temperature, generator)

    def byte_log_probs(self, params: torch.Tensor, hi: torch.Tensor | None) -> torch.Tensor:
        """A 16-bit mixture's byte symbols (:class:`MixtureHead`); other heads have none."""
        raise ValueError(f"byte_log_probs is for a mixture over K = 65536 values, not K={self.K}")

    def coding_stage(self, out_fn: OutFn, sigma: torch.Tensor, policy: np.ndarray) -> Stage:
        """The coder's one stage of an OA-ARDM with this head: ``out_fn`` gives :meth:`params`."""
        return Stage(lambda x, known, t: self.table(out_fn(x, known, t)), sigma, policy)

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        """The output bias ``(O,)`` under which this head gives the values' frequencies in
        ``data`` (``model.output_bias = "marginal"``)."""
        return log_frequencies(data, self.K)


class CategoricalHead(Head):
    """A ``K``-way softmax per variable."""

    def __init__(self, K: int) -> None:
        super().__init__(K, K)

    def table(self, params: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(params, dim=-1)  # (..., K)


class MixtureHead(Head):
    """A discretised logistic mixture of ``mixtures`` components per variable (audio,
    :mod:`ardm.core.dmol`): ``3 * mixtures`` outputs instead of a ``K``-way softmax.

    The network's last layer starts at zero and :func:`~ardm.core.dmol.dmol_init_bias` is
    added to its output, so training starts from a near-uniform mixture.
    """

    def __init__(self, K: int, mixtures: int) -> None:
        if mixtures < 1:
            raise ValueError(f"a mixture needs at least 1 component, got mixtures={mixtures}")
        super().__init__(K, 3 * mixtures)
        self.mixtures = mixtures
        self.bias: torch.Tensor
        self.register_buffer("bias", dmol_init_bias(mixtures), persistent=False)

    def params(self, out: torch.Tensor) -> torch.Tensor:
        return out.float() + self.bias  # (..., 3M)

    def table(self, params: torch.Tensor) -> torch.Tensor:
        """The full table ``(..., K)``, only for ``K <= 4096`` (tests, tiny models)."""
        if self.K > MAX_FULL_K:
            raise ValueError(
                f"a DMoL model with K={self.K} classes has no full (..., K) table of "
                "log-probabilities; use masked_ll (likelihoods), draw (samples) or "
                "byte_log_probs (coding)"
            )
        return dmol_log_probs_range(params, 0, self.K, self.K)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return dmol_log_prob(params, x, self.K)

    def sample(
        self, params: torch.Tensor, *, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        return dmol_sample(params, self.K, generator, temperature)

    def byte_log_probs(self, params: torch.Tensor, hi: torch.Tensor | None) -> torch.Tensor:
        """Log-probabilities ``(..., 256)`` of the high byte (``hi=None``) or of the low byte
        given the high byte ``hi (...)``; only for ``K = 65536``."""
        if self.K != BYTE * BYTE:
            raise ValueError(f"byte_log_probs needs K = 65536 (16-bit values), not K={self.K}")
        return dmol_byte_log_probs(params, hi)

    def coding_stage(self, out_fn: OutFn, sigma: torch.Tensor, policy: np.ndarray) -> Stage:
        """16-bit values as byte pairs (no 65536-way table); a small ``K`` with its table, computed
        only at each step's variables (a whole ``(N, D, K)`` table costs more than the net)."""
        if self.K == BYTE * BYTE:
            return Stage(out_fn, sigma, policy, byte_pair=dmol_byte_log_probs)
        if self.K > MAX_FULL_K:
            raise ValueError(
                f"a mixture model with K={self.K} classes can be coded only with K <= 4096 (a "
                f"full table) or K = 65536 (two bytes per value)"
            )
        return Stage(out_fn, sigma, policy, head=self.table)

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            "model.output_bias='marginal' needs a categorical output; a discretised logistic "
            "mixture has none (it starts near-uniform instead)"
        )


class DigitHead(Head):
    """An Upscale ARDM's output (paper Sec. 3.3): the ``b``-way distribution of stage ``s``'s
    base-``b`` digit of every variable (``S`` stages, ``K`` values).

    * ``"data"``: ``K`` outputs, a distribution over the final value; the digit's distribution
      is the mass of each child of the current value, renormalised.
    * ``"direct"``: ``S * b`` outputs; stage ``s`` uses the ``b`` of slice ``s``, with every
      digit whose value would reach ``K`` masked to ``-inf`` before the softmax.
    """

    def __init__(self, K: int, b: int, S: int, parametrisation: str = "data") -> None:
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"unknown parametrisation {parametrisation!r}; expected 'data' or 'direct'"
            )
        super().__init__(K, K if parametrisation == "data" else S * b)
        self.b, self.S = b, S
        self.parametrisation = parametrisation

    def stage_log_probs(self, out: torch.Tensor, x_cur: torch.Tensor, s: int) -> torch.Tensor:
        """The stage-``s`` digit's log-probabilities ``(..., b)`` from the output ``(..., O)``
        (float32) given the current values ``x_cur (...)``."""
        if self.parametrisation == "data":
            log_probs = torch.log_softmax(out, dim=-1)  # (..., K) over the final values
            return stage_log_probs(log_probs, x_cur, s, b=self.b, S=self.S)
        logits = out.unflatten(-1, (self.S, self.b))[..., s, :]  # (..., b) this stage's slice
        past = coarsen(x_cur, s, b=self.b, S=self.S)  # (...)
        d = torch.arange(self.b, device=x_cur.device)  # (b,)
        valid = refine(past[..., None], d, s, b=self.b, S=self.S) < self.K  # (..., b)
        return torch.log_softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        """Data parametrisation: ``(K,)`` over the values. Direct: ``(S * b,)``, stage ``s``'s
        slice the frequencies of the stage-``s`` digit."""
        if self.parametrisation == "data":
            return log_frequencies(data, self.K)
        return torch.cat(
            [log_frequencies(digit(data, s, b=self.b, S=self.S), self.b) for s in range(self.S)]
        )
