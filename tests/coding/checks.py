"""What the coding tests share: the golden folder, a one-line message check, the NLL a
policy should cost, and two small real nets whose outputs depend on batch and threads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from ardm.coding.stages import coding_probs, policy_nll_bits
from ardm.core.policy import step_bounds
from tests.tiny_nets import TinyNet, randomize

GOLDEN = Path(__file__).parents[1] / "golden"
REGEN = os.environ.get("ARDM_REGEN_GOLDEN") == "1"
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    """The message of ``e``, checked to be one line."""
    text = str(e.value)
    assert text and "\n" not in text, f"message is not one line: {text!r}"
    return text


def policy_nll(
    net: TinyNet, x: torch.Tensor, sigma: torch.Tensor, policy: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-log2 p`` per item under the policy from the same log-probs: (raw, smoothed)."""
    N, D = x.shape[0], sigma.numel()
    xf = x.reshape(N, D)
    raw = torch.zeros(N, dtype=torch.float64)
    smoothed = torch.zeros(N, dtype=torch.float64)
    with torch.no_grad():
        for left, right in step_bounds(policy, D):
            known = (sigma < left)[None].expand(N, D)
            inp = torch.where(known, xf, 0).view(x.shape)
            lp = net(inp, known.reshape(x.shape), known.sum(1)).reshape(N, D, -1)
            step = (sigma >= left) & (sigma < right)
            raw += policy_nll_bits(lp[:, step], xf[:, step])
            probs = torch.from_numpy(coding_probs(lp[:, step]))
            smoothed -= torch.log2(probs.gather(-1, xf[:, step][..., None])[..., 0]).sum(1)
    return raw, smoothed


def small_unet(K: int = 256, shape: tuple[int, int, int] = (1, 8, 8)) -> torch.nn.Module:
    """A U-Net whose batch-1 output differs between 1 and 2 threads on the dev machine (and
    between batch 1 and 16), so the invariance tests (test_lockstep, test_codec) fail if the codec stops pinning
    batch and threads (checked by mutation)."""
    from ardm.nets.unet import UNet, UNetConfig

    cfg = UNetConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1)
    net = UNet(cfg, K=K, channels=shape[0], height=shape[1], width=shape[2])
    return randomize(net, seed=1, scale=1.0).eval()


def small_transformer(K: int = 27, L: int = 32) -> torch.nn.Module:
    """A two-layer Transformer with random weights (the sequence counterpart of :func:`small_unet`)."""
    from ardm.nets.transformer import Transformer, TransformerConfig

    cfg = TransformerConfig(dim=32, depth=2, heads=4, time_cond=True)
    return randomize(Transformer(cfg, K=K, seq_len=L), seed=1, scale=1.0).eval()
