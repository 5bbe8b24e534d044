"""An OA-ARDM whose per-variable distribution is a discretised logistic mixture (audio).

The paper's OA-ARDM on 16-bit audio (Sec. 5.3) cannot afford a 65536-way softmax per sample;
the network instead outputs ``3M`` mixture parameters per variable (:mod:`ardm.core.dmol`).
Everything else (the bound, orders, policies, sampling loop) is :class:`ardm.model.ARDM`,
which routes every likelihood through :meth:`masked_ll` and every sample through
:meth:`draw`; those two are overridden here.

The network's last layer is zero-initialised and :func:`~ardm.core.dmol.dmol_init_bias` is
added to its output, so training starts from a near-uniform mixture (means spread over
``[-1, 1]``, log-scales ``-log M``).
"""

from __future__ import annotations

import torch
from torch import nn

from ardm.core.dmol import (
    BYTE,
    dmol_byte_log_probs,
    dmol_init_bias,
    dmol_log_prob,
    dmol_log_probs_range,
    dmol_sample,
)
from ardm.errors import ConfigError
from ardm.models.ardm import ARDM

MAX_FULL_K = 4096
"""Largest ``K`` for which :meth:`DMoLARDM.log_probs` builds the full ``(…, K)`` table."""


class DMoLARDM(ARDM):
    """OA-ARDM with a ``mixtures``-component discretised logistic mixture per variable.

    ``net`` must have ``out_classes == 3 * mixtures`` (e.g. a
    :class:`~ardm.nets.wavenet.WaveNet` built with ``out_classes=3 * mixtures``).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        kind: str = "audio",
        mixtures: int = 30,
        ce_weight: float = 1e-4,
        order_seed: int = 0,
    ) -> None:
        if mixtures < 1:
            raise ValueError(f"a mixture needs at least 1 component, got mixtures={mixtures}")
        out = getattr(net, "out_classes", None)
        if out != 3 * mixtures:
            raise ValueError(
                f"a {mixtures}-component DMoL needs a net with out_classes = 3 * {mixtures} = "
                f"{3 * mixtures}; this net has out_classes={out}"
            )
        super().__init__(net, kind=kind, ce_weight=ce_weight, order_seed=order_seed)
        self.mixtures = mixtures
        self.dmol_bias: torch.Tensor
        # Derived from ``mixtures``, so not saved (checkpoints stay weights only).
        self.register_buffer("dmol_bias", dmol_init_bias(mixtures), persistent=False)

    def marginal_logits(self, data: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            "model.output_bias='marginal' needs a categorical output; a discretised logistic "
            "mixture has none (it starts near-uniform instead)"
        )

    def params(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mixture parameters ``(B, *shape, 3M)`` float32 given the known variables."""
        return self.net(x, known, t).float() + self.dmol_bias  # (B, *shape, 3M)

    def log_probs(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The full table ``(B, *shape, K)``, only for ``K <= 4096`` (tests, tiny models)."""
        if self.K > MAX_FULL_K:
            raise ValueError(
                f"a DMoL model with K={self.K} classes has no full (..., K) table of "
                "log-probabilities; use masked_ll (likelihoods), draw (samples) or "
                "byte_log_probs (coding)"
            )
        return self.table(self.params(x, known, t))

    def table(self, params: torch.Tensor) -> torch.Tensor:
        """All ``K`` log-probabilities ``(..., K)`` of mixture parameters ``params (..., 3M)``
        (:meth:`params`); only for ``K <= 4096``."""
        return dmol_log_probs_range(params, 0, self.K, self.K)

    def masked_ll(
        self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor, select: torch.Tensor
    ) -> torch.Tensor:
        """Summed ``log p(x)`` ``(B,)`` (nats) over ``select`` given ``x`` at ``known``."""
        log_px = dmol_log_prob(self.params(x, known, t), x, self.K)  # (B, *shape)
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
        """One sample ``(B, *shape)`` of every variable (int64 classes in ``[0, K)``)."""
        params = self.params(x, known, t)  # (B, *shape, 3M)
        return dmol_sample(params, self.K, generator, temperature)

    def byte_log_probs(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        t: torch.Tensor,
        hi: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-probabilities ``(B, *shape, 256)`` of the high byte (``hi=None``) or of the low
        byte given the high byte ``hi (B, *shape)``; only for ``K = 65536``."""
        if self.K != BYTE * BYTE:
            raise ValueError(f"byte_log_probs needs K = 65536 (16-bit values), not K={self.K}")
        return dmol_byte_log_probs(self.params(x, known, t), hi)
