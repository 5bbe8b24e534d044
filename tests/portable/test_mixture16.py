"""16-bit logistic mixtures on the integer coder: two 256-way integer pmfs per value.

(a) :func:`mixture_byte_pmf` gives coder tables (entries >= 0, sum exactly ``2^24 - 256``)
    for the high byte and for the low byte given any high byte, for any parameters, close to
    the float :func:`ardm.core.dmol.dmol_byte_log_probs` on the same parameters;
(b) the integer form of a small random WaveNet with a 16-bit mixture head stays close to the
    float net, and its byte tables have the same SHA-256 at batch 1 and 16, with 1 and 2
    threads, and in subprocesses under ``ATEN_CPU_CAPABILITY=default`` and the machine's best;
(c) such a model writes version-5 files that round-trip, within 1 % of the float coder's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ardm.coding.codec import compress, decompress
from ardm.config import load_config
from ardm.core.dmol import dmol_byte_log_probs, dmol_init_bias
from ardm.models.build import build_model
from ardm.portable.model import PortablePending, freeze
from ardm.portable.pmf import MIX16_FRAC_BITS, mixture_byte_pmf
from ardm.portable.wavenet import IntegerWaveNet
from tests.portable.determinism import (
    assert_same_bits_for_batch_and_threads,
    assert_same_bits_in_other_processes,
)
from tests.tiny_nets import randomize

M = 6
TOTAL = (1 << 24) - 256
FRAC = torch.tensor(MIX16_FRAC_BITS).repeat_interleave(M)  # (3M,)


def random_params(n: int, seed: int) -> torch.Tensor:
    """Float 16-bit mixture parameters ``(n, 3M)``: weights, means anywhere, scales from a
    fraction of a bin to a tenth of the range."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.tensor([2.0] * M + [0.6] * M + [2.5] * M)
    shift = torch.tensor([0.0] * (2 * M) + [-6.0] * M)
    return torch.randn(n, 3 * M, generator=g) * spread + shift + dmol_init_bias(M)


def fixed(params: torch.Tensor) -> torch.Tensor:
    return torch.round(params.double() * 2.0**FRAC).long()  # (n, 3M)


def assert_coder_table(w: torch.Tensor) -> None:
    assert w.dtype == torch.int64 and w.shape[-1] == 256 and bool((w >= 0).all())
    assert bool((w.sum(-1) == TOTAL).all())


# ---------------------------------------------------------------------- (a) the pmfs


def test_byte_pmfs_are_coder_tables_for_any_parameters() -> None:
    q = fixed(random_params(16, seed=0))
    q[0] = 0  # equal weights, all means 0, log-scales 0
    q[1, 2 * M :] = -(100 << MIX16_FRAC_BITS[2])  # as sharp as the clamp allows
    q[2, 2 * M :] = 200 << MIX16_FRAC_BITS[2]  # flat (inverse scale 0)
    q[3, M : 2 * M] = 7 << MIX16_FRAC_BITS[1]  # means far above the top bin
    q[4, M : 2 * M] = -(7 << MIX16_FRAC_BITS[1])  # ... and far below the bottom one
    q[5, :M] = torch.arange(M) * (100 << MIX16_FRAC_BITS[0])  # one weight takes all
    hi = mixture_byte_pmf(q)  # (16, 256)
    assert_coder_table(hi)
    assert int(hi[3].argmax()) == 255 and int(hi[4].argmax()) == 0
    for h in (0, 1, 128, 255):
        assert_coder_table(mixture_byte_pmf(q, torch.full((16,), h)))
    lo = mixture_byte_pmf(q[1:2], torch.tensor([0]))  # a block far from every component
    assert_coder_table(lo)
    with pytest.raises(ValueError, match="hi must lie"):
        mixture_byte_pmf(q, torch.full((16,), 256))


def test_byte_pmfs_are_close_to_the_float_dmol() -> None:
    params = random_params(200, seed=1)
    q = fixed(params)
    p_hi = dmol_byte_log_probs(q.double() / 2.0**FRAC).double().exp()  # (200, 256)
    hi = torch.multinomial(p_hi.float(), 1, generator=torch.Generator().manual_seed(0))[:, 0]
    p_lo = dmol_byte_log_probs(q.double() / 2.0**FRAC, hi).double().exp()
    for p, w in ((p_hi, mixture_byte_pmf(q)), (p_lo, mixture_byte_pmf(q, hi))):
        assert_coder_table(w)
        p = p / p.sum(-1, keepdim=True)
        code = (w.double() + 1) / (1 << 24)
        kl = (p * (p.clamp_min(1e-300).log() - code.log())).sum(-1) / math.log(2)  # bits
        assert float(kl.mean()) < 1e-3 and float(kl.max()) < 2e-2


def test_byte_pmf_rows_are_independent() -> None:
    q = fixed(random_params(12, seed=2))
    hi = torch.arange(12) * 20
    assert torch.equal(
        mixture_byte_pmf(q, hi),
        torch.cat([mixture_byte_pmf(q[i : i + 1], hi[i : i + 1]) for i in range(12)]),
    )
    assert torch.equal(mixture_byte_pmf(q.view(3, 4, -1)).view(12, 256), mixture_byte_pmf(q))


# ---------------------------------------------------------------------- (b) the network

TINY = [
    "data.seq_len=120",
    "model.wavenet.channels=8",
    "model.wavenet.blocks=3",
    "model.wavenet.dilation_cycle=2",
    f"model.mixtures={M}",
]


def signals(n: int, seed: int) -> torch.Tensor:
    """``n`` 16-bit clips ``(n, 120)``: sines with noise around the middle."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(120)
    wave = 3000 * torch.sin(t * 0.1 + 6 * torch.rand(n, 1, generator=g))
    return (32768 + wave + 60 * torch.randn(n, 120, generator=g)).long().clamp(0, 65535)


@pytest.fixture(scope="module")
def tiny() -> tuple[object, IntegerWaveNet]:
    model = build_model(load_config("fsdd-tiny", TINY)).eval()
    randomize(model.net, seed=3)
    model.portable = freeze(model, signals(4, seed=0))  # type: ignore[assignment]
    return model, model.portable.net  # type: ignore[return-value]


def inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 120, (n,), generator=g)
    known = torch.rand(n, 120, generator=g) < t[:, None] / 120
    return signals(n, seed), known, t


BYTES = (
    "(net.byte_pmf(net.logits(x, known, t), None), net.byte_pmf(net.logits(x, known, t), x // 256))"
)
"""Every variable's high-byte table and its low-byte table given its own high byte."""


def test_integer_mixture_wavenet_is_close_to_the_float_net(tiny: tuple) -> None:
    model, inet = tiny
    x, known, t = inputs(3, seed=1)
    out = inet.logits(x, known, t)  # (3, 120, 3M)
    assert out.dtype == torch.int64 and out.shape == (3, 120, 3 * M)
    with torch.no_grad():
        params = model.params(x, known, t).double()  # (3, 120, 3M)
    p = dmol_byte_log_probs(params).exp()  # (3, 120, 256)
    code = (inet.byte_pmf(out, None).double() + 1) / (1 << 24)
    kl = (p * (p.clamp_min(1e-300).log() - code.log())).sum(-1) / math.log(2)
    assert float(kl.mean()) < 0.01, float(kl.mean())


def test_integer_mixture_wavenet_same_bits_for_batch_and_threads(tiny: tuple) -> None:
    assert_same_bits_for_batch_and_threads(tiny[1], BYTES, *inputs(16, seed=2))


def test_integer_mixture_wavenet_same_bits_under_every_cpu_capability(
    tiny: tuple, tmp_path: Path
) -> None:
    assert_same_bits_in_other_processes(tiny[1], BYTES, *inputs(4, seed=3), tmp_path, size=2)


# ---------------------------------------------------------------------- (c) files


def test_16_bit_mixture_files_round_trip_within_one_percent_of_the_float_coder(
    tiny: tuple,
) -> None:
    model, _ = tiny
    x = signals(3, seed=4)
    ints, floats = compress(model, x, budget=6), compress(model, x, budget=6, version=4)
    assert all(b[2] == 8 for b in ints) and all(b[2] == 4 for b in floats)
    assert torch.equal(torch.stack([decompress(model, b) for b in ints]), x)
    assert sum(map(len, ints)) <= 1.01 * sum(map(len, floats)) + 3


def test_mixtures_without_an_integer_coder_are_refused() -> None:
    model = build_model(load_config("fsdd-tiny", [*TINY, "data.name=english"]))
    with pytest.raises((PortablePending, ValueError)):
        freeze(model, torch.zeros(2, 120, dtype=torch.long))
