"""Build a network from its kind and the data's ``K`` and shape; count its size and FLOPs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ardm.nets.transformer import Transformer, TransformerConfig
from ardm.nets.unet import UNet, UNetConfig
from ardm.nets.wavenet import WaveNet, WaveNetConfig

KINDS = ("transformer", "unet", "wavenet")


def build_net(
    kind: str,
    *,
    K: int,
    shape: tuple[int, ...],
    transformer: TransformerConfig | None = None,
    unet: UNetConfig | None = None,
    wavenet: WaveNetConfig | None = None,
    stages: int = 1,
    out_classes: int | None = None,
) -> nn.Module:
    """A network ``f(x, known, t) -> logits`` for data of ``shape`` with ``K`` classes.

    ``kind="transformer"`` and ``kind="wavenet"`` take ``shape = (L,)``; ``kind="unet"`` takes
    ``shape = (C, H, W)``. A missing config means the defaults. ``stages > 1`` makes a stage-conditioned network
    for Upscale ARDMs and ``out_classes`` (default ``K``) sets the output width; see the
    contract in :mod:`ardm.nets`.
    """
    shape = tuple(shape)
    if kind == "transformer":
        if len(shape) != 1:
            raise ValueError(f"transformer needs a data shape (L,), got {shape}")
        return Transformer(
            transformer or TransformerConfig(),
            K=K,
            seq_len=shape[0],
            stages=stages,
            out_classes=out_classes,
        )
    if kind == "unet":
        if len(shape) != 3:
            raise ValueError(f"unet needs a data shape (C, H, W), got {shape}")
        C, H, W = shape
        return UNet(
            unet or UNetConfig(),
            K=K,
            channels=C,
            height=H,
            width=W,
            stages=stages,
            out_classes=out_classes,
        )
    if kind == "wavenet":
        if len(shape) != 1:
            raise ValueError(f"wavenet needs a data shape (L,), got {shape}")
        return WaveNet(
            wavenet or WaveNetConfig(),
            K=K,
            length=shape[0],
            stages=stages,
            out_classes=out_classes,
        )
    raise ValueError(f"unknown network kind {kind!r}; expected one of {', '.join(KINDS)}")


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _sdpa_flops(
    q_shape: torch.Size, k_shape: torch.Size, v_shape: torch.Size, *args: Any, **kwargs: Any
) -> int:
    # q k^T and (softmax) v, 2 FLOPs per multiply-add; the softmax itself is not counted.
    B, nh, Lq, d = q_shape
    Lk, dv = k_shape[-2], v_shape[-1]
    return 2 * B * nh * Lq * Lk * d + 2 * B * nh * Lq * Lk * dv


@torch.no_grad()
def forward_flops(net: nn.Module, batch: int) -> float:
    """FLOPs of one forward pass on ``batch`` examples (2 x multiply-adds of matmuls, convs, attention).

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one forward pass at
    batch 1 on the network's own device (every op is linear in the batch size). A training
    step (forward + backward) costs about 3x this.
    """
    shape = tuple(net.shape)  # type: ignore[arg-type]
    device = next(net.parameters()).device
    x = torch.zeros((1, *shape), dtype=torch.long, device=device)
    known = torch.zeros((1, *shape), dtype=torch.bool, device=device)
    t = torch.zeros((1,), dtype=torch.long, device=device)
    # The fused CPU attention kernel has no registered formula (torch 2.13): count it here.
    custom = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        custom[cpu_sdpa] = _sdpa_flops
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    was_training = net.training
    net.eval()  # no dropout: leaves the RNG alone
    try:
        with counter:
            net(x, known, t)
    finally:
        net.train(was_training)
    return float(counter.get_total_flops()) * batch
