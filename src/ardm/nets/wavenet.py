"""Non-causal WaveNet / DiffWave for audio (paper Sec. 5.3, SC09).

``out = net(x, known, t)``: ``x, known`` are ``(B, L)``, ``out`` is ``(B, L, out_classes)``
(``K`` logits per sample by default; ``3 M`` mixture parameters for a discretised logistic
mixture, :mod:`ardm.core.dmol`; the digit logits of all stages for an Upscale ARDM).

Input: an unknown sample must be unambiguous, so it is given as the value 0 *and* a mask
channel (``value = x * 2/K - 1`` where known, else 0). 3/4 of the channels come from a width-3
conv on ``concat(value, known)`` (plus ``S`` one-hot stage channels when ``stages > 1``), 1/4
from a learned embedding of the top 8 bits of the value (``x * 256 // K``; index 256 when
unknown), mixed by a 1x1 conv, then ReLU.

Body: ``blocks`` residual blocks, block ``i`` a width-``kernel`` conv with dilation
``2 ** (i % dilation_cycle)`` (same-length, zero padding on both sides: non-causal) to
``2 * channels``, a gated unit ``tanh(a) * sigmoid(b)``, a 1x1 conv to a residual and a skip
half; the residual stream is ``(h + residual) / sqrt(2)``, the skips are summed and divided by
``sqrt(blocks)``. Output: ReLU -> 1x1 -> ReLU -> zero-initialised 1x1 (so a model starts
from whatever its output bias says). No normalisation layer: nothing is shared across the
batch.

Time: ``t`` (number of known samples) through :class:`~ardm.nets.embeddings.TimeEmbedding`,
projected into every block. Upscale ARDMs (``stages = S > 1``, paper Sec. 3.2): ``t`` is the
global step ``s * D + t_in``; the network reads ``x`` everywhere (positions not yet upscaled
hold their coarser known value), adds the stage one-hot channels and conditions on ``t_in``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ardm.nets.embeddings import TimeEmbedding, check_output_bias, check_stages, split_step

_VALUE_BUCKETS = 256  # the embedding sees the top 8 bits of a value


@dataclass(frozen=True)
class WaveNetConfig:
    """Size of a :class:`WaveNet`; ``K`` and the clip length come from the data."""

    channels: int = 64
    blocks: int = 10
    dilation_cycle: int = 10  # dilation of block i: 2 ** (i % dilation_cycle)
    kernel: int = 3
    value_emb_dim: int = 16
    time_cond: bool = True

    def __post_init__(self) -> None:
        if self.channels < 4 or self.channels % 4 != 0:
            raise ValueError(f"wavenet channels must be a multiple of 4, >= 4; got {self.channels}")
        if self.blocks < 1:
            raise ValueError(f"wavenet blocks must be >= 1, got {self.blocks}")
        if not 1 <= self.dilation_cycle <= 20:
            raise ValueError(
                f"wavenet dilation_cycle must be in [1, 20] (max dilation 2^19), "
                f"got {self.dilation_cycle}"
            )
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(
                f"wavenet kernel must be odd (same-length, centred convs), got {self.kernel}"
            )
        if self.value_emb_dim < 1:
            raise ValueError(f"wavenet value_emb_dim must be >= 1, got {self.value_emb_dim}")


class ResidualBlock(nn.Module):
    """Dilated conv (+ time) -> tanh * sigmoid -> 1x1 -> (residual, skip)."""

    def __init__(self, ch: int, *, kernel: int, dilation: int, temb_dim: int | None) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.dilated = nn.Conv1d(ch, 2 * ch, kernel, dilation=dilation, padding=pad)
        self.temb_proj = nn.Linear(temb_dim, ch) if temb_dim is not None else None
        self.out = nn.Conv1d(ch, 2 * ch, 1)

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y = h
        if self.temb_proj is not None and temb is not None:
            y = y + self.temb_proj(F.silu(temb))[:, :, None]  # (B, ch, L)
        filt, gate = self.dilated(y).chunk(2, dim=1)  # (B, ch, L) each
        y = torch.tanh(filt) * torch.sigmoid(gate)  # (B, ch, L)
        residual, skip = self.out(y).chunk(2, dim=1)  # (B, ch, L) each
        return (h + residual) / math.sqrt(2.0), skip


class WaveNet(nn.Module):
    """``f(x, known, t) -> (B, L, out_classes)`` for clips of ``length`` ``K``-valued samples."""

    def __init__(
        self,
        cfg: WaveNetConfig,
        *,
        K: int,
        length: int,
        stages: int = 1,
        out_classes: int | None = None,
    ) -> None:
        super().__init__()
        if K < 2:
            raise ValueError(f"wavenet needs K >= 2 classes, got K={K}")
        if length < 1:
            raise ValueError(f"wavenet needs a clip length >= 1, got {length}")
        out_classes = K if out_classes is None else out_classes
        check_stages(stages, out_classes)
        self.cfg = cfg
        self.K = K
        self.shape: tuple[int, ...] = (length,)
        self.D = length
        self.stages = stages
        self.out_classes = out_classes
        self.buckets = min(K, _VALUE_BUCKETS)
        ch = cfg.channels

        # Input: 3/4 of ch from (value, mask[, stage one-hot]) by a width-3 conv, 1/4 from
        # embeddings of the top 8 bits.
        ch_conv = 3 * ch // 4
        in_ch = 2 + (stages if stages > 1 else 0)
        self.conv_in = nn.Conv1d(in_ch, ch_conv, 3, padding=1)
        self.value_emb = nn.Embedding(self.buckets + 1, cfg.value_emb_dim)  # last row: unknown
        self.value_in = nn.Conv1d(cfg.value_emb_dim, ch - ch_conv, 1)

        temb_dim: int | None = None
        self.time_emb: TimeEmbedding | None = None
        if cfg.time_cond:
            temb_dim = 4 * ch
            self.time_emb = TimeEmbedding(ch, temb_dim, D=length)

        self.blocks = nn.ModuleList(
            ResidualBlock(
                ch, kernel=cfg.kernel, dilation=2 ** (i % cfg.dilation_cycle), temb_dim=temb_dim
            )
            for i in range(cfg.blocks)
        )
        self.skip_out = nn.Conv1d(ch, ch, 1)
        self.conv_out = nn.Conv1d(ch, self.out_classes, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]  # bias=True: a Tensor

    @torch.no_grad()
    def set_output_bias(self, bias: torch.Tensor) -> None:
        """Set the output layer's bias to ``bias`` ``(out_classes,)`` (e.g. log-frequencies)."""
        check_output_bias(bias, self.out_classes)
        self.conv_out.bias.copy_(bias)  # type: ignore[union-attr]  # bias=True: a Tensor

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, L = x.shape
        mask = known.to(torch.float32)[:, None]  # (B, 1, L)
        bucket = torch.div(x * self.buckets, self.K, rounding_mode="floor")  # (B, L)
        value = x.to(torch.float32) * (2.0 / self.K) - 1.0  # (B, L)
        if self.stages == 1:  # never read x where it is not known
            bucket = torch.where(known, bucket, self.buckets)
            value = torch.where(known, value, 0.0)
            t_in = t
            extra: list[torch.Tensor] = []
        else:  # upscale: x holds the known coarse value everywhere; t = s * D + t_in
            stage, t_in = split_step(t, self.D)  # (B,) each
            onehot = F.one_hot(stage, self.stages).to(torch.float32)  # (B, S)
            extra = [onehot[:, :, None].expand(B, self.stages, L)]  # (B, S, L)
        h_conv = self.conv_in(torch.cat([value[:, None], mask, *extra], dim=1))  # (B, 3ch/4, L)
        e = self.value_emb(bucket).transpose(1, 2)  # (B, E, L)
        h = F.relu(torch.cat([h_conv, self.value_in(e)], dim=1))  # (B, ch, L)

        temb = self.time_emb(t_in) if self.time_emb is not None else None  # (B, 4ch)

        skips = torch.zeros_like(h)  # (B, ch, L)
        for block in self.blocks:
            h, skip = block(h, temb)  # (B, ch, L) each
            skips = skips + skip
        skips = skips / math.sqrt(len(self.blocks))  # (B, ch, L)
        out = self.conv_out(F.relu(self.skip_out(F.relu(skips))))  # (B, out_classes, L)
        return out.transpose(1, 2)  # (B, L, out_classes)
