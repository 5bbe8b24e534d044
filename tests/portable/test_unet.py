"""The integer (portable) coding path: exact ops, and the same pmf bits everywhere.

(a) every integer op equals an int64 / Python-int reference exactly on random inputs;
(b) the integer U-Net's pmf tables have the same SHA-256 at batch 1 and 16, with 1 and 2
    threads, and in subprocesses under ``ATEN_CPU_CAPABILITY=default`` and the machine's best;
(c) every pmf sums to exactly ``2^24 - K`` with every entry >= 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ardm
from ardm.core.orders import known_mask, random_orders
from ardm.nets.unet import UNet
from ardm.portable import IntegerUNet, categorical_pmf, ops
from ardm.portable.layers import IntLayer
from ardm.portable.ops import (
    ExactConv,
    IntNorm,
    IntSiLU,
    NormSiLU,
    SiLUTable,
    limbs,
)
from ardm.portable.quant import WIDE, Rescale, div_round, isqrt, isqrt_float64
from ardm.portable.tables import exp_table, sigmoid_table, sinusoid_table
from tests.portable.determinism import (
    assert_same_bits_for_batch_and_threads,
    assert_same_bits_in_other_processes,
)


def ints(shape: tuple[int, ...], bound: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-bound, bound + 1, shape, generator=g)


def conv_reference(a: torch.Tensor, w: torch.Tensor, *, stride: int, padding: int) -> torch.Tensor:
    """int64 conv2d by unfold (exact in float64 for these sizes) and an int64 matmul."""
    B, _, H, _ = a.shape
    c_out, _, kh, kw = w.shape
    cols = F.unfold(
        a.double(), (kh, kw), padding=padding, stride=stride
    ).long()  # (B, c_in*kh*kw, L)
    out = w.reshape(c_out, -1) @ cols  # (B, c_out, L) int64
    Ho = (H + 2 * padding - kh) // stride + 1
    return out.reshape(B, c_out, Ho, -1)


# ---------------------------------------------------------------------------- (a) ops


@pytest.mark.parametrize(
    ("c_in", "a_bound", "k", "stride"),
    [(16, 127, 3, 1), (128, 127, 3, 1), (32, WIDE, 3, 2), (96, WIDE, 1, 1), (2, 256, 3, 1)],
)
def test_exact_conv_equals_int64_reference(c_in: int, a_bound: int, k: int, stride: int) -> None:
    a = ints((3, c_in, 9, 9), a_bound, seed=c_in)
    w = ints((8, c_in, k, k), 127, seed=c_in + 1)
    conv = ExactConv(w.float(), 127, a_bound, stride=stride, padding=k // 2)
    out = conv(a)  # (3, 8, H', W') float64 integers
    assert torch.equal(out, out.floor())
    assert torch.equal(out.long(), conv_reference(a, w, stride=stride, padding=k // 2))
    assert out.abs().max() <= conv.acc_bound
    assert torch.equal(conv(a.float()), out)  # float32 carriers: the same integers


@pytest.mark.parametrize(
    ("c_in", "a_bound", "w_bound", "k"),
    [(32, WIDE, 511, 3), (130, 127, 127, 3), (16, WIDE, 127, 1)],
)
def test_conv_at_some_pixels_is_the_conv_there(
    c_in: int, a_bound: int, w_bound: int, k: int
) -> None:
    """:meth:`ExactConv.terms_at` (the receptive fields of a few pixels, limbs and chunks as
    the conv splits them) gives the conv's integers at those pixels, the borders included."""
    a = ints((3, c_in, 6, 9), a_bound, seed=c_in)
    a[0] = a_bound
    w = ints((10, c_in, k, k), w_bound, seed=c_in + 2)
    conv = ExactConv(w.float(), w_bound, a_bound, stride=1, padding=k // 2)
    pixels = torch.tensor([0, 8, 9, 53, 20, 20, 45])  # corners, an edge, a repeat
    got = sum(y.double() * float(1 << s) for y, s in conv.terms_at(a.float(), pixels))
    want = conv_reference(a, w, stride=1, padding=k // 2).flatten(2)[:, :, pixels]  # (3, 10, 7)
    assert torch.equal(got.long(), want)


@pytest.mark.parametrize(
    ("c_in", "a_bound", "w_bound"), [(64, WIDE, 127), (130, WIDE, 127), (5, 200, 511)]
)
def test_up2_conv_equals_the_conv_of_the_upsampled_input(
    c_in: int, a_bound: int, w_bound: int
) -> None:
    """The upsample conv at the input's resolution (phases, summed taps) is the same integers
    as the 3x3 conv of the nearest-x2 input, the extremes of the bound included."""
    a = ints((3, c_in, 5, 7), a_bound, seed=c_in)
    a[0], a[1] = a_bound, -a_bound
    w = ints((6, c_in, 3, 3), w_bound, seed=c_in + 1)
    w[0], w[1] = w_bound, -w_bound
    conv = ExactConv(w.float(), w_bound, a_bound, stride=1, padding=1)
    up = a.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (3, I, 10, 14)
    got = sum(y.double() * float(1 << s) for y, s in conv.up2_terms(a.float()))
    assert torch.equal(got.long(), conv_reference(up, w, stride=1, padding=1))
    with pytest.raises(ValueError, match="3x3"):
        ExactConv(w[:, :, :1, :1].float(), w_bound, a_bound).up2_terms(a.float())


@pytest.mark.parametrize(("a_bound", "pow2"), [(127, True), (127, False), (WIDE, False)])
def test_int_layer_equals_its_int64_definition(a_bound: int, pow2: bool) -> None:
    torch.manual_seed(a_bound + pow2)
    conv = torch.nn.Conv2d(48, 16, 3, padding=1)
    layer = IntLayer.freeze(
        conv, in_scale=0.02, in_bound=a_bound, out_scale=0.05, out_bound=WIDE, pow2=pow2
    )
    assert (layer._float32_epilogue is not None) == pow2  # the fast float32 epilogue
    a = ints((2, 48, 7, 7), a_bound, seed=11)
    add = ints((2, 16, 1, 1), 50, seed=12)
    acc = conv_reference(a, layer.conv.weight.long(), stride=1, padding=1)  # (2, 16, 7, 7)
    want = (layer.rescale(acc + layer.bias.long()) + add).clamp(-WIDE, WIDE)  # int64 rescale
    got = layer(a.float(), add.float())
    assert got.dtype == torch.float32 and torch.equal(got.long(), want)
    ref = conv(a.float() * 0.02) / 0.05
    assert (got.double() - ref.double() - add).abs().max() < 0.02 * ref.abs().max() + 1


def test_limbs_recompose_every_value() -> None:
    a = torch.arange(-WIDE, WIDE + 1)
    parts = limbs(a, WIDE)
    assert len(parts) == 2
    assert torch.equal(sum(p << s for p, _, s in parts), a)  # type: ignore[misc]
    assert all(int(p.abs().max()) <= b for p, b, _ in parts)
    floats = limbs(a.float(), WIDE)
    assert all(torch.equal(p.long(), q) for (p, _, _), (q, _, _) in zip(floats, parts, strict=True))


def test_rescale_div_round_isqrt_are_exact() -> None:
    x = ints((1000,), 1 << 30, seed=5)
    r = Rescale.from_ratio(0.0123, in_bound=1 << 30)
    m, s = int(r.multiplier), r.shift
    assert r(x).tolist() == [(v * m + (1 << (s - 1))) >> s for v in x.tolist()]
    assert abs(m / 2**s - 0.0123) < 1e-9
    r64 = Rescale.from_ratio(0.0123, in_bound=1 << 30, float64=True)  # exact in float64
    m, s = int(r64.multiplier), r64.shift
    assert r64(x.double()).long().tolist() == [(v * m + (1 << (s - 1))) >> s for v in x.tolist()]
    den = ints((1000,), 1000, seed=6).abs() + 1
    want = [(2 * n + d) // (2 * d) for n, d in zip(x.tolist(), den.tolist(), strict=True)]
    assert div_round(x, den).tolist() == want
    a = torch.cat([torch.arange(0, 5000), ints((1000,), 1 << 51, seed=7).abs()])
    assert isqrt(a).tolist() == [math.isqrt(v) for v in a.tolist()]


@pytest.mark.parametrize("error", [0.0, 1.0, -1.0])  # a square root one ulp off either way
def test_float64_isqrt_is_exact_even_on_an_inexact_square_root(
    error: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel whose square root is faithful but not correctly rounded (one ulp off)."""
    squares = torch.randint(1, 1 << 26, (5000,), generator=torch.Generator().manual_seed(5)) ** 2
    a = torch.cat(
        [
            torch.arange(0, 3000),
            squares - 1,
            squares,
            ints((5000,), 1 << 52, seed=14).abs(),
            torch.tensor([(1 << 52) - 1]),
        ]
    ).clamp(0, (1 << 52) - 1)
    sqrt = torch.sqrt

    def off(v: torch.Tensor) -> torch.Tensor:
        if not error:
            return sqrt(v)
        return torch.nextafter(sqrt(v), torch.full_like(v, error * math.inf)).clamp_(min=0.0)

    monkeypatch.setattr(torch, "sqrt", off)
    assert isqrt_float64(a.double()).long().tolist() == [math.isqrt(v) for v in a.tolist()]


def norm_reference(norm: IntNorm, x: torch.Tensor) -> list[int]:
    """:class:`IntNorm` with Python integers, element by element."""
    B, C = x.shape[:2]
    G, per = norm.groups, C // norm.groups
    out = []
    flat = x.reshape(B, G, -1).tolist()
    for b in range(B):
        for g in range(G):
            vals = flat[b][g]
            n = len(vals)
            m = (2 * (sum(vals) << 3) + n) // (2 * n)
            d = [(v << 3) - m for v in vals]
            V = sum(e * e for e in d)
            sigma = math.isqrt((V << 10) // n + norm.eps_q)
            per_c = len(vals) // per
            for i, e in enumerate(d):
                c = g * per + i // per_c
                num = int(norm.gamma_q[c]) << 29
                den = sigma << norm.gamma_bits
                coef = (2 * num + den) // (2 * den)
                y = ((e * coef + (1 << 23)) >> 24) + int(norm.beta_q[c])
                out.append(max(-norm.out_bound, min(norm.out_bound, y)))
    return out


NORM_PATHS = ["few channels", "centred", "uncentred"]


def _norm_path(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make :class:`IntNorm` take ``path``: its statistics in Python integers (a few
    channels), or in tensors with the centring pass or without it (the uncentred form)."""
    if path != "few channels":
        monkeypatch.setattr(ops, "FEW_CHANNELS", 0)
    monkeypatch.setattr(ops, "UNCENTRED_MIN", 0 if path == "uncentred" else 1 << 30)


@pytest.mark.parametrize("path", NORM_PATHS)
@pytest.mark.parametrize("float64_division", [True, False])
def test_group_norm_equals_python_reference_and_float(
    float64_division: bool, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _norm_path(path, monkeypatch)
    if not float64_division:  # every per-channel factor by int64 division instead
        monkeypatch.setattr(ops, "FLOAT64_EXACT", 0)
    torch.manual_seed(0)
    gn = torch.nn.GroupNorm(4, 8)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2.0)
        gn.bias.uniform_(-1.0, 1.0)
    x = ints((2, 8, 5, 5), 3000, seed=8) + 700
    scale = 1e-3
    norm = IntNorm.freeze(gn, in_scale=scale, in_bound=WIDE, out_unit=2.0**-8, out_bound=1 << 20)
    y = norm(x.float())
    assert y.long().flatten().tolist() == norm_reference(norm, x)
    want = gn(x.double().float() * scale).double() * 2**8
    assert (y.double() - want).abs().max() <= 1  # one unit of 2^-8
    lut = SiLUTable.freeze(out_scale=0.03, out_bound=127)
    assert torch.equal(NormSiLU(norm, lut)(x.float()), lut(y))  # fused: the same integers


@pytest.mark.parametrize("path", NORM_PATHS)
def test_norm_of_flat_groups_falls_back_to_the_centred_form(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Constant groups (variance 0, the factor ``gamma / sigma`` as large as it gets) and wide
    values: the uncentred form would not be exact, and every path gives the reference."""
    _norm_path(path, monkeypatch)
    gn = torch.nn.GroupNorm(2, 8, eps=1e-9)
    with torch.no_grad():
        gn.weight.uniform_(40.0, 60.0)
    norm = IntNorm.freeze(gn, in_scale=1.0, in_bound=WIDE, out_unit=2.0**-8, out_bound=1 << 20)
    x = torch.full((2, 8, 4, 4), float(WIDE - 3))
    x[1, 4:] = -float(WIDE)  # item 1's second group: constant too
    x[1, :4] = ints((4, 4, 4), WIDE, seed=21).float()  # item 1's first group: spread out
    affine = norm._few_channels_affine(x.double().reshape(2, 2, -1), 0.5)
    assert affine is None  # too large for the uncentred form
    assert norm(x).long().flatten().tolist() == norm_reference(norm, x.long())


@pytest.mark.parametrize("top", [1 << 40, 1 << 51])  # float64 statistics, and int64 ones
def test_norm_sigma_equals_its_int64_definition(top: int) -> None:
    gn = torch.nn.GroupNorm(2, 8)
    norm = IntNorm.freeze(gn, in_scale=1e-3, in_bound=WIDE, out_unit=2.0**-8, out_bound=127)
    n = 300
    V = torch.cat([torch.tensor([0, 1, top]), ints((200,), top, seed=13).abs()]).view(-1, 1, 1)
    den, bound = norm._scaled_sigma(V.double(), n)
    want = isqrt(((V << 10) // n) + norm.eps_q) << norm.gamma_bits
    assert den.dtype == torch.float64 and torch.equal(den.long(), want)
    assert int(want.max()) <= bound


def test_silu_equals_python_reference_float_and_its_table() -> None:
    z = ints((4000,), 40 << 8, seed=9)
    silu = IntSiLU.freeze(out_scale=0.05, out_bound=127)
    table = sigmoid_table(frac_bits=8, span=16, out_bits=16).tolist()
    r = silu.rescale
    m, s = int(r.multiplier), r.shift
    want = []
    for v in z.tolist():
        sig = 1 << 16 if v >= 4096 else table[min(max(v, -4096), 4095) + 4096]
        want.append(max(-127, min(127, (v * sig * m + (1 << (s - 1))) >> s)))
    assert silu(z).long().tolist() == want
    ref = F.silu(z.double() / 256) / 0.05
    assert (silu(z).double() - ref.clamp(-127, 127)).abs().max() <= 1
    for out_scale in (0.05, 0.5):  # a table within the sigmoid's span, and one beyond it
        lut = SiLUTable.freeze(out_scale=out_scale, out_bound=127)
        exact = IntSiLU.freeze(out_scale=out_scale, out_bound=127)
        assert torch.equal(lut(z.float()), exact(z))


def test_tables_match_the_functions_they_stand_for() -> None:
    e = exp_table(frac_bits=6, span=18, out_bits=24)
    i = torch.arange(e.numel(), dtype=torch.float64)
    assert e[0] == 1 << 24 and (e.double() - 2**24 * torch.exp(-i / 64)).abs().max() <= 0.5
    s = sigmoid_table(frac_bits=8, span=16, out_bits=16)
    z = torch.arange(-4096, 4096, dtype=torch.float64) / 256
    assert (s.double() - 2**16 * torch.sigmoid(z)).abs().max() <= 0.5
    from ardm.nets.embeddings import sinusoidal_embedding

    sin = sinusoid_table(steps=50, dim=9, D=50, out_bits=14)
    ref = sinusoidal_embedding(torch.arange(50) * 1000.0 / 50, 9).double() * WIDE
    assert sin.shape == (50, 9) and (sin.double() - ref).abs().max() <= 0.6


# ------------------------------------------------------------------------------ (c) pmf


def test_pmf_sums_to_the_coder_total_and_follows_softmax() -> None:
    logits = ints((50, 256), 64 * 30, seed=10)
    logits[0] = 0  # all equal
    logits[1, 3] = 10**6  # one certain class
    w = categorical_pmf(logits)
    assert w.dtype == torch.int64 and bool((w >= 0).all())
    assert bool((w.sum(-1) == (1 << 24) - 256).all())
    p = torch.softmax(logits.double() / 64, dim=-1) * ((1 << 24) - 256)
    assert (w.double() - p).abs().max() < 300  # the floors and the remainder, in 2^-24 units


# --------------------------------------------------------------------- (b) the integer U-Net


@pytest.fixture(scope="module")
def shipped() -> tuple[UNet, IntegerUNet]:
    m = ardm.load("mnist")
    net = m.net.eval()
    g = torch.Generator().manual_seed(0)
    items = torch.randint(0, 256, (8, 1, 28, 28), generator=g)
    return net, IntegerUNet.from_float(net, items, passes=1)


def inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g)
    t = torch.randint(0, 784, (n,), generator=g)
    known = known_mask(random_orders(n, 784, generator=g), t).view(n, 1, 28, 28)
    return x, known, t


PMF = "net.pmf(x, known, t)"


def test_integer_unet_pmf_is_a_coder_table(shipped: tuple[UNet, IntegerUNet]) -> None:
    net, inet = shipped
    x, known, t = inputs(4)
    w = inet.pmf(x, known, t)  # (4, 1, 28, 28, 256)
    assert w.shape == (4, 1, 28, 28, 256) and bool((w >= 0).all())
    assert bool((w.sum(-1) == (1 << 24) - 256).all())
    with torch.no_grad():
        lp = torch.log_softmax(net(x, known, t).double(), -1)
    agree = (w.argmax(-1) == lp.argmax(-1)).double().mean()
    assert agree > 0.95


def test_integer_unet_rows_at_positions_are_its_outputs_there(
    shipped: tuple[UNet, IntegerUNet],
) -> None:
    """The coder's call (``positions``: the last conv at those variables only) gives the
    same integers as the whole output there."""
    _, inet = shipped
    x, known, t = inputs(3, seed=4)
    full = inet.outputs(x, known, t).reshape(3, 784, -1)  # (3, D, O)
    positions = torch.tensor([0, 27, 28, 400, 783, 5])
    assert torch.equal(inet.outputs(x, known, t, positions), full[:, positions])


def test_integer_unet_same_bits_for_batch_and_threads(shipped: tuple[UNet, IntegerUNet]) -> None:
    assert_same_bits_for_batch_and_threads(shipped[1], PMF, *inputs(16))


def test_integer_unet_same_bits_under_every_cpu_capability(
    shipped: tuple[UNet, IntegerUNet], tmp_path: Path
) -> None:
    x, known, t = inputs(8, seed=2)
    assert_same_bits_in_other_processes(shipped[1], PMF, x, known, t, tmp_path, size=4)
