"""U-Net for images with the order over sub-pixels (paper Sec. 5.1, CIFAR-10).

``logits = net(x, known, t)`` with ``x, known`` of shape ``(B, C, H, W)``; ``D = C*H*W``.

Input (``InputProcessingImage``): an unknown sub-pixel must be unambiguous, so it is given
as the value 0 *and* a mask channel:

* 3/4 of ``ch``: conv3x3 on ``concat(x * 2/K - 1 at known else 0, known)`` (2C channels);
* 1/4 of ``ch``: a learned embedding of each sub-pixel value (index ``K`` when unknown),
  the ``C * value_emb_dim`` vectors of a pixel flattened and mixed by a 1x1 conv.

Stage-conditioned (``stages = S > 1``, Upscale ARDMs): ``t`` is the global step
``stage * D + t_in`` and every sub-pixel shows its current value, so the conv input is
``concat(x * 2/K - 1, known, one_hot(stage, S))`` (2C + S channels, the paper's mask channels
+ S), the value embedding (``K`` rows) is of ``x`` everywhere, and the time embedding, if any,
is that of ``t_in``.

Body: VDM/DDPM-style levels of ResBlocks (time-conditioned) with skip concatenations, a
middle ResBlock -> self-attention -> ResBlock, and GroupNorm -> SiLU -> conv3x3 to
``C * out_classes`` logits per pixel (``out_classes`` defaults to ``K``). Only GroupNorm is
used, so no statistic is shared across the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ardm.nets.embeddings import TimeEmbedding, check_output_bias, check_stages, split_step


@dataclass(frozen=True)
class UNetConfig:
    """Size of a :class:`UNet`; ``K`` and the image shape come from the data."""

    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    attn_middle: bool = True
    value_emb_dim: int = 16
    time_cond: bool = True
    dropout: float = 0.0
    groups: int = 8

    def __post_init__(self) -> None:
        # Accept a list from a TOML preset but store a tuple (hashable, frozen).
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        if self.ch < 4:
            raise ValueError(f"unet ch must be >= 4, got {self.ch}")
        if len(self.ch_mult) == 0 or any(m < 1 for m in self.ch_mult):
            raise ValueError(
                f"unet ch_mult must be a non-empty list of ints >= 1, got {self.ch_mult}"
            )
        if self.num_res_blocks < 1:
            raise ValueError(f"unet num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if self.value_emb_dim < 1:
            raise ValueError(f"unet value_emb_dim must be >= 1, got {self.value_emb_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"unet dropout must be in [0, 1), got {self.dropout}")
        if self.groups < 1:
            raise ValueError(f"unet groups must be >= 1, got {self.groups}")
        for c in (self.ch, *(self.ch * m for m in self.ch_mult)):
            if c % self.groups != 0:
                raise ValueError(
                    f"unet groups={self.groups} must divide every channel count "
                    f"(ch={self.ch} times ch_mult={self.ch_mult}); {c} is not divisible"
                )


def zero_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Zero weights and bias: the layer starts as a no-op on its residual branch."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 (+ time) -> GroupNorm -> SiLU -> dropout -> conv3x3 (zero init), + skip."""

    def __init__(
        self, in_ch: int, out_ch: int, *, temb_dim: int | None, dropout: float, groups: int
    ) -> None:
        super().__init__()
        self.norm_1 = nn.GroupNorm(groups, in_ch)
        self.conv_1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_dim, out_ch) if temb_dim is not None else None
        self.norm_2 = nn.GroupNorm(groups, out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv_2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        r = self.conv_1(F.silu(self.norm_1(h)))  # (B, out, H, W)
        if self.temb_proj is not None and temb is not None:
            r = r + self.temb_proj(F.silu(temb))[:, :, None, None]  # (B, out, H, W)
        r = self.conv_2(self.drop(F.silu(self.norm_2(r))))  # (B, out, H, W)
        return self.skip(h) + r  # (B, out, H, W)


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, zero-initialised output, residual."""

    def __init__(self, ch: int, *, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = zero_init(nn.Conv2d(ch, ch, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, C, H, W = h.shape
        qkv = self.qkv(self.norm(h)).reshape(B, 3, C, H * W)  # (B, 3, C, HW)
        q, k, v = qkv.transpose(2, 3).unbind(dim=1)  # (B, HW, C) each
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])  # (B, 1, HW, C)
        y = y[:, 0].transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
        return h + self.proj(y)  # (B, C, H, W)


class Downsample(nn.Module):
    """Stride-2 conv3x3: (B, c, H, W) -> (B, c, H/2, W/2)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h)  # (B, c, H/2, W/2)


class Upsample(nn.Module):
    """Nearest x2 then conv3x3: (B, c, H, W) -> (B, c, 2H, 2W)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (B, c, 2H, 2W)


class UNet(nn.Module):
    """``f(x, known, t) -> logits`` for ``(C, H, W)`` images of ``K``-valued sub-pixels."""

    def __init__(
        self,
        cfg: UNetConfig,
        *,
        K: int,
        channels: int,
        height: int,
        width: int,
        stages: int = 1,
        out_classes: int | None = None,
    ) -> None:
        super().__init__()
        if K < 2:
            raise ValueError(f"unet needs K >= 2 classes, got K={K}")
        if channels < 1 or height < 1 or width < 1:
            raise ValueError(f"unet needs a positive image shape, got {(channels, height, width)}")
        factor = 2 ** (len(cfg.ch_mult) - 1)
        if height % factor != 0 or width % factor != 0:
            raise ValueError(
                f"unet with ch_mult={cfg.ch_mult} downsamples by {factor}, which must divide "
                f"the image size {height}x{width}"
            )
        out_classes = K if out_classes is None else out_classes
        check_stages(stages, out_classes)
        self.cfg = cfg
        self.K = K
        self.shape: tuple[int, ...] = (channels, height, width)
        self.D = channels * height * width
        self.stages = stages
        self.out_classes = out_classes
        ch, groups, drop = cfg.ch, cfg.groups, cfg.dropout

        # Input processing: 3/4 of ch from (value, mask[, stage]) by conv3x3, 1/4 from value
        # embeddings.
        ch_conv = 3 * ch // 4
        stage_ch = stages if stages > 1 else 0
        self.conv_in = nn.Conv2d(2 * channels + stage_ch, ch_conv, 3, padding=1)
        rows = K + 1 if stages == 1 else K  # row K: unknown (no unknown value with stages)
        self.value_emb = nn.Embedding(rows, cfg.value_emb_dim)
        self.value_in = nn.Conv2d(channels * cfg.value_emb_dim, ch - ch_conv, 1)

        temb_dim: int | None = None
        self.time_emb: TimeEmbedding | None = None
        if cfg.time_cond:
            temb_dim = 4 * ch
            self.time_emb = TimeEmbedding(ch, temb_dim, D=self.D)

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, temb_dim=temb_dim, dropout=drop, groups=groups)

        # Down path; remember the channel count of every skip.
        self.down = nn.ModuleList()
        skips = [ch]
        c = ch
        for level, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(res(c, ch * mult))
                c = ch * mult
                skips.append(c)
            if level != len(cfg.ch_mult) - 1:
                self.down.append(Downsample(c))
                skips.append(c)

        self.mid_1 = res(c, c)
        self.mid_attn: AttnBlock | None = AttnBlock(c, groups=groups) if cfg.attn_middle else None
        self.mid_2 = res(c, c)

        # Up path: num_res_blocks + 1 blocks per level, each eating one skip.
        self.up = nn.ModuleList()
        for level in reversed(range(len(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(res(c + skips.pop(), ch * cfg.ch_mult[level]))
                c = ch * cfg.ch_mult[level]
            if level != 0:
                self.up.append(Upsample(c))

        self.norm_out = nn.GroupNorm(groups, c)
        self.conv_out = nn.Conv2d(c, channels * out_classes, 3, padding=1)

    @torch.no_grad()
    def set_output_bias(self, bias: torch.Tensor) -> None:
        """Set the output layer's bias to ``bias`` ``(out_classes,)`` (e.g. log-frequencies)."""
        check_output_bias(bias, self.out_classes)
        # conv_out's channels are (channel, class): every image channel gets the same bias
        self.conv_out.bias.copy_(bias.repeat(self.shape[0]))  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        mask = known.to(torch.float32)  # (B, C, H, W)
        if self.stages == 1:
            x = torch.where(known, x, self.K)  # (B, C, H, W) unknown -> absorbing index K
            value = torch.where(known, x.to(torch.float32) * (2.0 / self.K) - 1.0, 0.0)
            h_conv = self.conv_in(torch.cat([value, mask], dim=1))  # (B, 3ch/4, H, W)
        else:  # stages: x is the current value everywhere, t the global step
            stage, t = split_step(t, self.D)  # (B,) each: stage and t_in
            value = x.to(torch.float32) * (2.0 / self.K) - 1.0  # (B, C, H, W)
            onehot = F.one_hot(stage, self.stages).to(torch.float32)  # (B, S)
            onehot = onehot[:, :, None, None].expand(B, self.stages, H, W)  # (B, S, H, W)
            h_conv = self.conv_in(torch.cat([value, mask, onehot], dim=1))  # (B, 3ch/4, H, W)
        e = self.value_emb(x)  # (B, C, H, W, E)
        e = e.permute(0, 1, 4, 2, 3).reshape(B, -1, H, W)  # (B, C*E, H, W)
        h = torch.cat([h_conv, self.value_in(e)], dim=1)  # (B, ch, H, W)

        temb = self.time_emb(t) if self.time_emb is not None else None  # (B, 4ch)

        hs = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)  # (B, c, h, w)
            hs.append(h)

        h = self.mid_1(h, temb)  # (B, c, h, w)
        if self.mid_attn is not None:
            h = self.mid_attn(h)  # (B, c, h, w)
        h = self.mid_2(h, temb)  # (B, c, h, w)

        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), temb)  # (B, c, h, w)
            else:
                h = layer(h)  # (B, c, 2h, 2w)

        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C*O, H, W), O = out_classes
        return out.reshape(B, C, self.out_classes, H, W).permute(0, 1, 3, 4, 2)  # (B, C, H, W, O)
