"""The integer logistic-mixture pmf and the integer U-Net of the shipped mixture model.

(a) :func:`mixture_pmf` is a coder table (entries >= 0, sum exactly ``2^24 - K``) for any
    parameters, close to the float :mod:`ardm.core.dmol` table on the same parameters;
(b) the ``cifar10-subset`` integer U-Net's parameters and pmf rows have the same SHA-256 at
    batch 1 and 16, with 1 and 2 threads, and in subprocesses under
    ``ATEN_CPU_CAPABILITY=default`` and the machine's best.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import ardm
from ardm.core.dmol import dmol_init_bias, dmol_log_probs_range, log_scale_min
from ardm.core.orders import known_mask, random_orders
from ardm.portable import IntegerUNet
from ardm.portable.pmf import MIX_FRAC_BITS, _inverse_scales, mixture_pmf
from ardm.portable.tables import exp_range_table
from tests.portable.determinism import (
    assert_same_bits_for_batch_and_threads,
    assert_same_bits_in_other_processes,
)

K, M = 256, 10
TOTAL = (1 << 24) - K
ONE = 1 << MIX_FRAC_BITS


def random_params(n: int, seed: int) -> torch.Tensor:
    """Float mixture parameters ``(n, 3M)`` around the head's initial bias, sharp and wide."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.tensor([2.0] * M + [0.6] * M + [1.5] * M)
    shift = torch.tensor([0.0] * (2 * M) + [-1.5] * M)
    return torch.randn(n, 3 * M, generator=g) * spread + shift + dmol_init_bias(M)


def fixed(params: torch.Tensor) -> torch.Tensor:
    return torch.round(params.double() * ONE).long()  # (n, 3M) Q_12


def assert_coder_table(w: torch.Tensor) -> None:
    assert w.dtype == torch.int64 and bool((w >= 0).all())
    assert bool((w.sum(-1) == TOTAL).all())


# ---------------------------------------------------------------------- (a) the pmf


def test_mixture_pmf_is_a_coder_table_for_any_parameters() -> None:
    q = fixed(random_params(64, seed=0))
    q[0] = 0  # equal weights, all means 0, log-scales 0
    q[1, 2 * M :] = -100 * ONE  # every component as sharp as the clamp allows
    q[2, 2 * M :] = 200 * ONE  # every component flat (inverse scale 0)
    q[3, M : 2 * M] = 250 * ONE  # means far above the top bin
    q[4, M : 2 * M] = -250 * ONE  # ... and far below the bottom one
    q[5, :M] = torch.arange(M) * 100 * ONE  # one weight takes all
    w = mixture_pmf(q, K)  # (64, K)
    assert_coder_table(w)
    assert int(w[3].argmax()) == K - 1 and int(w[4].argmax()) == 0
    assert int(w[3, -1]) > TOTAL - 2 * K and int(w[2, 0]) + int(w[2, -1]) > TOTAL - 2 * K


def test_mixture_pmf_is_close_to_the_float_dmol() -> None:
    q = fixed(random_params(512, seed=1))
    w = mixture_pmf(q, K)  # (512, K)
    p = dmol_log_probs_range(q.double() / ONE, 0, K, K).double().exp()  # (512, K)
    p = p / p.sum(-1, keepdim=True)
    code = (w.double() + 1) / (1 << 24)
    kl = (p * (p.clamp_min(1e-300).log() - code.log())).sum(-1) / math.log(2)  # bits
    assert float(kl.mean()) < 1e-4 and float(kl.max()) < 5e-3
    entropy = -(p * p.clamp_min(1e-300).log()).sum(-1).mean() / math.log(2)
    assert float(kl.mean()) < 1e-4 * float(entropy)


def test_mixture_pmf_rows_are_independent() -> None:
    q = fixed(random_params(32, seed=2))
    whole = mixture_pmf(q, K)
    rows = torch.cat([mixture_pmf(q[i : i + 1], K) for i in range(32)])
    assert torch.equal(whole, rows)


def test_inverse_scales_follow_exp_and_the_clamp() -> None:
    log_s = torch.linspace(-12.0, 6.0, 200, dtype=torch.float64)  # (200,)
    inv = _inverse_scales(fixed(log_s)[None], K, MIX_FRAC_BITS)[0].double() / 2**18
    ref = torch.exp(-log_s.clamp(min=log_scale_min(K)))
    assert float(((inv - ref).abs() / ref).max()) < 3e-3  # Q_8 log-scales: 1/512 relative
    table = exp_range_table(frac_bits=4, start=-40, count=80, out_bits=20)
    ref_table = [round(2**20 * math.exp(-(i - 40) / 16)) for i in range(80)]
    assert max(abs(a - b) for a, b in zip(table.tolist(), ref_table, strict=True)) <= 1


# ------------------------------------------------------------- (b) the shipped mixture U-Net


@pytest.fixture(scope="module")
def shipped() -> IntegerUNet:
    m = ardm.load("cifar10-subset")
    g = torch.Generator().manual_seed(0)
    items = torch.randint(0, 256, (4, 3, 32, 32), generator=g)
    return IntegerUNet.from_float(m.net.eval(), items, passes=1, head_bias=m.head.bias)  # type: ignore[arg-type]


def inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g)
    t = torch.randint(0, 3072, (n,), generator=g)
    known = known_mask(random_orders(n, 3072, generator=g), t).view(n, 3, 32, 32)
    return x, known, t


STEP = "(net.logits(x, known, t), net.params_pmf(net.logits(x, known, t).flatten(1, 3)[:, ::192]))"
"""The parameters and the pmf rows of 16 unknown variables per item."""


def test_mixture_unet_gives_a_coder_table_near_the_float_model(shipped: IntegerUNet) -> None:
    m = ardm.load("cifar10-subset")
    x, known, t = inputs(2)
    out = shipped.logits(x, known, t)  # (2, 3, 32, 32, 30)
    assert out.shape == (2, 3, 32, 32, 3 * M) and out.dtype == torch.int64
    w = shipped.params_pmf(out.flatten(1, 3)[:, ::48])  # (2, 64, K)
    assert_coder_table(w)
    with torch.no_grad():
        params = m.params(x, known, t).flatten(1, 3)[:, ::48]  # (2, 64, 3M) float
    lp = m.head.table(params).double()  # (2, 64, K)
    agree = (w.argmax(-1) - lp.argmax(-1)).abs() <= 1
    assert float(agree.double().mean()) > 0.9


def test_mixture_unet_same_bits_for_batch_and_threads(shipped: IntegerUNet) -> None:
    assert_same_bits_for_batch_and_threads(shipped, STEP, *inputs(16))


def test_mixture_unet_same_bits_under_every_cpu_capability(
    shipped: IntegerUNet, tmp_path: Path
) -> None:
    x, known, t = inputs(4, seed=2)
    assert_same_bits_in_other_processes(shipped, STEP, x, known, t, tmp_path, size=2)
