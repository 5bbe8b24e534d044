"""The integer (portable) WaveNet: exact new ops, the digit pmf, and the same bits everywhere.

(a) the exact dilated conv equals an int64 reference; the tanh table the function it stands
    for; the gate's product the Python-int product of the tables;
(b) the digit pmf gives invalid digits weight 0 and the valid ones ``2^24 - b``, and follows
    the float head's softmax;
(c) the integer form of the shipped ``fsdd`` WaveNet (and of tiny random ones: one stage, and
    upscale stages with ``K`` not a power of ``b``) stays close to the float net, and its
    digit pmf tables have the same SHA-256 at batch 1 and 16, with 1 and 2 threads, and in
    subprocesses under ``ATEN_CPU_CAPABILITY=default`` and the machine's best.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ardm
from ardm.core.upscale import coarsen, num_stages
from ardm.data.items import model_items
from ardm.models.heads import DigitHead
from ardm.models.upscale import UpscaleARDM
from ardm.nets.wavenet import WaveNet, WaveNetConfig
from ardm.portable.ops import ExactDilatedConv
from ardm.portable.pmf import categorical_pmf, digit_pmf, masked_categorical_pmf
from ardm.portable.quant import NARROW, WIDE
from ardm.portable.tables import tanh_table
from ardm.portable.wavenet import Gate, IntegerWaveNet, Widths, stage_inputs
from tests.portable.determinism import (
    assert_same_bits_for_batch_and_threads,
    assert_same_bits_in_other_processes,
)
from tests.portable.test_unet import ints
from tests.tiny_nets import randomize

# ---------------------------------------------------------------------------- (a) ops


def dilated_reference(a: torch.Tensor, w: torch.Tensor, *, dilation: int) -> torch.Tensor:
    """Same-length dilated conv1d ``(B, I, L)`` x ``(O, I, k)`` in int64, tap by tap."""
    k, L = w.shape[-1], a.shape[-1]
    pad = dilation * (k - 1) // 2
    ap = torch.nn.functional.pad(a, (pad, pad))  # (B, I, L + 2 pad)
    out = torch.zeros(a.shape[0], w.shape[0], L, dtype=torch.int64)
    for j in range(k):
        out += torch.einsum("oi,bil->bol", w[:, :, j], ap[:, :, j * dilation : j * dilation + L])
    return out  # (B, O, L)


@pytest.mark.parametrize(
    ("c_in", "a_bound", "k", "dilation"),
    [
        (32, NARROW, 3, 1),
        (32, NARROW, 3, 8),
        (600, NARROW, 3, 2),
        (16, WIDE, 3, 4),
        (4, 1 << 16, 3, 1),
    ],
)
def test_exact_dilated_conv_equals_int64_reference(
    c_in: int, a_bound: int, k: int, dilation: int
) -> None:
    a = ints((2, c_in, 50), a_bound, seed=c_in + dilation)
    w = ints((6, c_in, k), NARROW, seed=c_in + 7)
    pad = dilation * (k - 1) // 2
    conv = ExactDilatedConv(w[:, :, None].float(), NARROW, a_bound, 1, pad, dilation)
    out = conv(a[:, :, None])  # (2, 6, 1, 50) float64 integers
    assert out.shape == (2, 6, 1, 50) and torch.equal(out, out.floor())
    assert torch.equal(out[:, :, 0].long(), dilated_reference(a, w, dilation=dilation))
    assert out.abs().max() <= conv.acc_bound


@pytest.mark.parametrize(("batch", "dilation"), [(1, 1), (3, 8)])
def test_taps_accumulator_equals_int64_reference(batch: int, dilation: int) -> None:
    """A wide input's conv as one float64 GEMM per tap on views of the zero-padded input."""
    a = ints((batch, 16, 50), WIDE, seed=dilation)
    w = ints((6, 16, 3), NARROW, seed=dilation + 1)
    conv = ExactDilatedConv(w[:, :, None].float(), NARROW, WIDE, 1, dilation, dilation)
    assert conv.taps_exact
    z = conv.padded(a[:, :, None])  # (batch, 16, 50 + 2 dilation), padding zero
    z[..., dilation : dilation + 50] = a
    out = conv.taps_accumulator(z)  # (batch, 6, 1, 50)
    assert torch.equal(out[:, :, 0].long(), dilated_reference(a, w, dilation=dilation))
    assert torch.equal(out, conv(a[:, :, None]))
    narrow = ExactDilatedConv(w[:, :, None].float(), NARROW, NARROW, 1, dilation, dilation)
    assert not narrow.taps_exact


def test_tanh_table_and_gate_product_are_exact() -> None:
    t = tanh_table(frac_bits=10, span=8, out_bits=15)
    z = torch.arange(-(8 << 10), 8 << 10, dtype=torch.float64) / 1024
    assert (t.double() - 2**15 * torch.tanh(z)).abs().max() <= 0.5 + 1e-6
    gate = Gate.build()
    f = ints((3, 4, 1, 40), 20 << 10, seed=1).float()  # beyond the tables too (clamped)
    g = ints((3, 4, 1, 40), 20 << 10, seed=2).float()
    tt, st = gate.tanh.long().tolist(), gate.sigmoid.long().tolist()

    def at(table: list[int], v: int) -> int:
        half = len(table) // 2
        return table[min(max(v, -half), half - 1) + half]

    want = [
        at(tt, a) * at(st, b)
        for a, b in zip(f.long().flatten().tolist(), g.long().flatten().tolist(), strict=True)
    ]
    assert gate(f, g).long().flatten().tolist() == want


# ---------------------------------------------------------------------------- (b) digit pmf


@pytest.mark.parametrize(("K", "b"), [(1000, 16), (65536, 256), (300, 4)])
def test_digit_pmf_zero_at_invalid_digits_and_sums_to_the_total(K: int, b: int) -> None:
    S = num_stages(K, b)
    g = torch.Generator().manual_seed(K)
    x = torch.randint(0, K, (3, 40), generator=g)
    logits = ints((3, 40, S * b), 64 * 12, seed=K)
    head = DigitHead(K, b, S, "direct")
    for s in range(S):
        x_cur = coarsen(x, s, b=b, S=S)  # (3, 40)
        w = digit_pmf(logits, x_cur, s, b=b, S=S, K=K)  # (3, 40, b)
        lp = head.stage_log_probs(logits.double() / 64, x_cur, s)  # (3, 40, b)
        valid = torch.isfinite(lp)
        assert w.dtype == torch.int64 and bool((w >= 0).all())
        assert bool((w.sum(-1) == (1 << 24) - b).all())
        assert bool((w[~valid] == 0).all()) and bool((w[valid] > 0).any())
        p = lp.exp().nan_to_num(0.0) * ((1 << 24) - b)
        assert (w.double() - p).abs().max() < 300
    if b**S > K:  # stage 0 of a K that is not a power of b: some digit is invalid
        w0 = digit_pmf(logits, torch.zeros_like(x), 0, b=b, S=S, K=K)
        assert bool((w0[..., -1] == 0).all())


def test_masked_pmf_equals_the_plain_one_where_all_are_valid() -> None:
    logits = ints((20, 64), 64 * 30, seed=3)
    valid = torch.ones(20, 64, dtype=torch.bool)
    assert torch.equal(masked_categorical_pmf(logits, valid), categorical_pmf(logits))
    valid[:, 10:] = False
    valid[0, 0] = False
    w = masked_categorical_pmf(logits, valid)
    assert bool((w[~valid] == 0).all()) and bool((w.sum(-1) == (1 << 24) - 64).all())
    p = torch.softmax(logits[1:, :10].double() / 64, dim=-1) * ((1 << 24) - 64)
    assert (w[1:, :10].double() - p).abs().max() < 100  # the valid ones alone


# ---------------------------------------------------------------------------- (c) networks


@pytest.mark.parametrize(("K", "b", "stages"), [(1000, 16, 3), (256, 256, 1)])
def test_tiny_random_wavenet_integer_close_to_float(K: int, b: int, stages: int) -> None:
    out = stages * b if stages > 1 else K
    cfg = WaveNetConfig(channels=8, blocks=3, dilation_cycle=2, value_emb_dim=4)
    net = randomize(WaveNet(cfg, K=K, length=60, stages=stages, out_classes=out), seed=K)
    g = torch.Generator().manual_seed(1)
    items = torch.randint(0, K, (8, 60), generator=g)
    for widths in (Widths(), Widths(WIDE, NARROW, NARROW), Widths(WIDE, WIDE, WIDE)):
        inet = IntegerWaveNet.from_float(net, items, passes=4, widths=widths)
        x, known, t = stage_inputs(items, K=K, b=b, S=stages, generator=g)
        q = inet.logits(x, known, t)  # (8, 60, out)
        assert q.dtype == torch.int64 and q.shape == (8, 60, out)
        with torch.no_grad():
            f = net(x, known, t).double()
        err = (q.double() / 64 - f).abs().max()
        assert err < 0.05 * f.abs().max() + 0.1


@pytest.fixture(scope="module")
def fsdd() -> tuple[WaveNet, IntegerWaveNet, UpscaleARDM]:
    m = ardm.load("fsdd")
    net = m.net.eval()
    return net, IntegerWaveNet.from_float(net, model_items(m, "train", 4), passes=1), m


def fsdd_inputs(
    m: UpscaleARDM, n: int, s: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` stage-``s`` inputs on the first test clips, each at its own ``t_in``."""
    x = model_items(m, "test", 2).repeat(n // 2, 1)  # (n, D)
    g = torch.Generator().manual_seed(seed)
    t_in = torch.randint(0, m.D, (n,), generator=g)
    known = torch.rand(n, m.D, generator=g) < t_in[:, None] / m.D
    x_cur = torch.where(known, coarsen(x, s + 1, b=m.b, S=m.S), coarsen(x, s, b=m.b, S=m.S))
    return x_cur, known, s * m.D + t_in


def test_fsdd_integer_wavenet_is_close_and_a_coder_table(
    fsdd: tuple[WaveNet, IntegerWaveNet, UpscaleARDM],
) -> None:
    """KL to the float model under 0.01 nats per sample, except in the first steps of stage 0
    (``t_in < 250``), where 8-bit inputs of the dilated convs (:class:`Widths`, the default)
    cost up to about 0.15 (the files: -0.06 to +0.14 % on 16 test clips at budgets 4, 20, 100)."""
    _, inet, m = fsdd
    for s in range(m.S):
        x, known, t = fsdd_inputs(m, 2, s, seed=s)
        w = inet.digit_pmf(x, known, t)  # (2, D, b)
        assert w.shape == (2, m.D, m.b) and bool((w >= 0).all())
        assert bool((w.sum(-1) == (1 << 24) - m.b).all())
        with torch.no_grad():
            lp = m.stage_log_probs(x, known, s, t - s * m.D).double()  # (2, D, b)
        p = (w + 1).double() / (1 << 24)
        kl = (p * (p.log() - lp)).sum(-1).mean(-1)  # (2,) nats per sample
        first = t < 250  # stage 0's first steps (t = s D + t_in)
        assert bool((kl[~first] < 0.01).all()) and bool((kl[first] < 0.25).all()), (t, kl)


DIGITS = "net.digit_pmf(x, known, t)"


def test_fsdd_same_bits_for_batch_and_threads(
    fsdd: tuple[WaveNet, IntegerWaveNet, UpscaleARDM],
) -> None:
    _, inet, m = fsdd
    assert_same_bits_for_batch_and_threads(inet, DIGITS, *fsdd_inputs(m, 16, 1, seed=3))


def test_fsdd_same_bits_under_every_cpu_capability(
    fsdd: tuple[WaveNet, IntegerWaveNet, UpscaleARDM], tmp_path: Path
) -> None:
    _, inet, m = fsdd
    x, known, t = fsdd_inputs(m, 4, 0, seed=4)
    assert_same_bits_in_other_processes(inet, DIGITS, x, known, t, tmp_path, size=2)


def test_fsdd_stage_rows_and_chunks_are_the_same_integers(
    fsdd: tuple[WaveNet, IntegerWaveNet, UpscaleARDM], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coder's call (one stage's logits, items run in chunks, a step's positions only)
    equals the full net's logits at that stage's rows, whatever the chunk size; its row pmf is
    the digit pmf."""
    from ardm.portable import wavenet
    from ardm.portable.model import _row_pmf

    _, inet, m = fsdd
    for s in range(m.S):
        x, known, t = fsdd_inputs(m, 4, s, seed=10 + s)
        full = inet.logits(x, known, t)  # (4, D, S b) int64
        rows = inet.outputs(x, known, t, stage_rows=True)  # (4, D, b) float32
        assert rows.dtype == torch.float32 and rows.shape == (4, m.D, m.b)
        assert torch.equal(rows.long(), full[..., s * m.b : (s + 1) * m.b])
        assert torch.equal(_row_pmf(rows), inet.digit_pmf(x, known, t))
        for chunk in (1, m.D, 3 * m.D):
            monkeypatch.setattr(wavenet, "CHUNK_VALUES", chunk)
            assert torch.equal(inet.outputs(x, known, t, stage_rows=True), rows)
        monkeypatch.undo()
        positions = torch.tensor([0, m.D - 1, 17, 17, 900])  # the rows of a step only
        at = inet.outputs(x, known, t, positions, stage_rows=True)  # (4, 5, b)
        assert torch.equal(at, rows[:, positions])
        assert torch.equal(inet.outputs(x, known, t, positions), full[:, positions].float())
    with pytest.raises(ValueError, match="one stage per call"):
        inet.outputs(x, known, torch.tensor([0, m.D, 0, m.D]), stage_rows=True)
