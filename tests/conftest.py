"""Shared fixtures: tiny models on CPU."""

from __future__ import annotations

import pytest
import torch

from ardm.models.ardm import ARDM
from ardm.nets.build import build_net
from ardm.nets.transformer import TransformerConfig
from ardm.nets.unet import UNetConfig


def perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Add noise to every parameter so zero-initialised layers do not make outputs trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def tiny_text_model(K: int = 5, L: int = 6, seed: int = 0) -> ARDM:
    torch.manual_seed(seed)
    net = build_net(
        "transformer",
        K=K,
        shape=(L,),
        transformer=TransformerConfig(dim=16, depth=1, heads=2, time_cond=True),
    )
    return ARDM(perturb(net, seed=seed), kind="text").eval()


def tiny_image_model(K: int = 4, shape: tuple[int, int, int] = (1, 4, 4), seed: int = 0) -> ARDM:
    torch.manual_seed(seed)
    cfg = UNetConfig(ch=8, ch_mult=(1,), num_res_blocks=1, value_emb_dim=4, groups=4)
    net = build_net("unet", K=K, shape=shape, unet=cfg)
    return ARDM(perturb(net, seed=seed), kind="image").eval()


@pytest.fixture
def text_model() -> ARDM:
    return tiny_text_model()


@pytest.fixture
def image_model() -> ARDM:
    return tiny_image_model()
