"""The integer Transformer (``english``): exact new ops, a coder table, the same bits everywhere.

(a) the GELU table, the normal-CDF and rotary tables, the rotation and the row-wise linear
    and LayerNorm equal Python-int / int64 references exactly;
(b) the integer Transformer's pmf tables have the same SHA-256 at batch 1 and 16, with 1 and 2
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
from ardm.data.items import model_items
from ardm.nets.embeddings import rotary_cos_sin
from ardm.nets.transformer import Transformer
from ardm.portable.layers import IntLayer
from ardm.portable.ops import GELUTable, IntGELU, IntNorm
from ardm.portable.quant import NARROW, WIDE, Rescale
from ardm.portable.tables import normal_cdf_table, rotary_table
from ardm.portable.transformer import (
    IntegerTransformer,
    linear,
    rotate_rescaled,
)
from tests.portable.determinism import (
    assert_same_bits_for_batch_and_threads,
    assert_same_bits_in_other_processes,
)
from tests.portable.test_unet import PMF, conv_reference, ints, norm_reference

# ---------------------------------------------------------------------------- (a) ops


def test_normal_cdf_and_rotary_tables_match_the_functions_they_stand_for() -> None:
    phi = normal_cdf_table(frac_bits=8, span=16, out_bits=16)
    z = torch.arange(-4096, 4096, dtype=torch.float64) / 256
    want = 2**16 * 0.5 * (1 + torch.special.erf(z / math.sqrt(2)))
    assert phi[0] == 0 and phi[-1] == 1 << 16 and (phi.double() - want).abs().max() <= 0.5
    assert bool((phi[1:] >= phi[:-1]).all())  # monotone
    cos, sin = rotary_table(positions=128, head_dim=32, out_bits=14)
    c, s = rotary_cos_sin(torch.arange(128), 32)  # (128, 16) float32
    assert cos.shape == (128, 16) and cos[0].eq(1 << 14).all() and sin[0].eq(0).all()
    assert (cos.double() - c.double() * 2**14).abs().max() <= 0.51
    assert (sin.double() - s.double() * 2**14).abs().max() <= 0.51


def test_gelu_equals_python_reference_float_and_its_table() -> None:
    z = ints((4000,), 40 << 8, seed=21)
    gelu = IntGELU.freeze(out_scale=0.04, out_bound=NARROW)
    table = normal_cdf_table(frac_bits=8, span=16, out_bits=16).tolist()
    m, s = int(gelu.rescale.multiplier), gelu.rescale.shift
    want = []
    for v in z.tolist():
        p = 1 << 16 if v >= 4096 else table[min(max(v, -4096), 4095) + 4096]
        want.append(max(-NARROW, min(NARROW, (v * p * m + (1 << (s - 1))) >> s)))
    assert gelu(z).long().tolist() == want
    ref = F.gelu(z.double() / 256) / 0.04
    assert (gelu(z).double() - ref.clamp(-NARROW, NARROW)).abs().max() <= 1
    for out_scale in (0.04, 0.5):  # a table within the CDF's span, and one beyond it
        lut = GELUTable.freeze(out_scale=out_scale, out_bound=NARROW)
        assert torch.equal(lut(z.float()), IntGELU.freeze(out_scale=out_scale, out_bound=NARROW)(z))
        assert torch.equal(lut(z.float().view(40, 100).t()), lut(z.float()).view(40, 100).t())


def test_rotation_and_its_rescale_are_exact() -> None:
    """The rotation and its rescale equal the int64 rotation, multiplied and shifted."""
    x = ints((2, 3, 16, 8), WIDE, seed=22)  # (B, nh, L, hd)
    cos, sin = rotary_table(positions=16, head_dim=8, out_bits=14)
    x[0, 0, 0] = WIDE  # the extremes of a wide input
    x[0, 0, 1] = -WIDE
    x1, x2 = x[..., :4], x[..., 4:]
    want = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # int64
    for ratio in (0.37, 3.1, 0.004):
        r = Rescale.from_ratio(ratio * 2.0**-14, in_bound=2 * WIDE << 14, float64=True)
        m, s = int(r.multiplier), r.shift
        for bound in (NARROW, (1 << 23) - 1):  # clamped, and the whole rescaled rotation
            fused = rotate_rescaled(x.float(), cos.double(), sin.double(), r, bound)
            ref = ((want * m + (1 << (s - 1))) >> s).clamp(-bound, bound)
            assert fused.dtype == torch.float32 and torch.equal(fused.long(), ref)


@pytest.mark.parametrize("pow2", [True, False])
def test_row_linear_and_layer_norm_equal_their_int64_definitions(pow2: bool) -> None:
    torch.manual_seed(3)
    lin = torch.nn.Linear(512, 96)
    layer = IntLayer.freeze(
        lin, in_scale=0.02, in_bound=NARROW, out_scale=0.05, out_bound=WIDE, pow2=pow2
    )
    assert (layer._float32_epilogue is not None) == pow2  # fast row path, or the layer's own
    a = ints((70, 512), NARROW, seed=23)  # (N, I) rows
    add = ints((70, 96), 300, seed=24)
    acc = conv_reference(a.t()[None, :, :, None], layer.conv.weight.long(), stride=1, padding=0)
    acc = acc[0, :, :, 0].t()  # (N, O)
    bias = layer.bias.reshape(1, -1).long()
    m, s = layer.rescale.multiplier.reshape(1, -1), layer.rescale.shift
    want = (((acc + bias) * m + (1 << (s - 1))) >> s) + add
    got = linear(layer, a.float(), add.float())
    assert got.shape == (70, 96) and torch.equal(got.long(), want.clamp(-WIDE, WIDE))
    ln = torch.nn.LayerNorm(128)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.2, 0.2)
    norm = IntNorm.freeze(ln, in_scale=1e-3, in_bound=WIDE, out_unit=0.03, out_bound=NARROW)
    h = ints((40, 128), WIDE // 2, seed=25) + 300
    y = norm.layer_norm(h.float())
    assert y.long().flatten().tolist() == norm_reference(norm, h)
    assert (y.double() - ln(h.float() * 1e-3).double() / 0.03).abs().max() <= 1


# --------------------------------------------------------------- (b, c) the integer Transformer


@pytest.fixture(scope="module")
def shipped() -> tuple[Transformer, IntegerTransformer]:
    m = ardm.load("english")
    net = m.net.eval()
    assert isinstance(net, Transformer)
    return net, IntegerTransformer.from_float(net, model_items(m, "train", 16), passes=1)


def inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 27, (n, 128), generator=g)
    t = torch.randint(0, 128, (n,), generator=g)
    known = known_mask(random_orders(n, 128, generator=g), t).view(n, 128)
    return x, known, t


def test_integer_transformer_pmf_is_a_coder_table(
    shipped: tuple[Transformer, IntegerTransformer],
) -> None:
    net, inet = shipped
    x, known, t = inputs(4)
    w = inet.pmf(x, known, t)  # (4, 128, 27)
    assert w.shape == (4, 128, 27) and w.dtype == torch.int64 and bool((w >= 0).all())
    assert bool((w.sum(-1) == (1 << 24) - 27).all())
    with torch.no_grad():
        lp = torch.log_softmax(net(x, known, t).double(), -1)
    assert (w.argmax(-1) == lp.argmax(-1)).double().mean() > 0.95
    logits = inet.logits(x, known, t).double() / 64
    assert (torch.log_softmax(logits, -1) - lp).abs().mean() < 0.05


@pytest.mark.parametrize("n", [1, 3])
def test_integer_transformer_rows_at_positions_are_its_outputs_there(
    shipped: tuple[Transformer, IntegerTransformer], n: int
) -> None:
    """The coder's call (``positions``: the last block's queries, norm and head at those rows
    only) gives the same integers as the whole output there."""
    _, inet = shipped
    x, known, t = inputs(n, seed=5)
    full = inet.outputs(x, known, t)  # (n, 128, 27)
    positions = torch.tensor([0, 127, 64, 3, 3])
    assert torch.equal(inet.outputs(x, known, t, positions), full[:, positions])


def test_integer_transformer_same_bits_for_batch_and_threads(
    shipped: tuple[Transformer, IntegerTransformer],
) -> None:
    assert_same_bits_for_batch_and_threads(shipped[1], PMF, *inputs(16))


def test_integer_transformer_same_bits_under_every_cpu_capability(
    shipped: tuple[Transformer, IntegerTransformer], tmp_path: Path
) -> None:
    x, known, t = inputs(8, seed=2)
    assert_same_bits_in_other_processes(shipped[1], PMF, x, known, t, tmp_path, size=4)


def test_fused_fc_and_gelu_give_the_layers_integers(
    shipped: tuple[Transformer, IntegerTransformer],
) -> None:
    """The MLP's first layer and the GELU table in one pass (``IntBlock._fc_gelu``) equal the
    layer, its clamp and the table's lookup, also at inputs that drive it past the table."""
    from ardm.portable.transformer import linear

    _, inet = shipped
    g = torch.Generator().manual_seed(2)
    a = torch.randint(-127, 128, (300, inet.blocks[0].fc.conv.weight.shape[1]), generator=g)
    a = a.float()
    a[:20] = 127.0 * torch.sign(a[:20])  # extreme rows: GELU's saturated ends
    for block in inet.blocks:
        assert block._fc_gelu is not None  # the fused pass is taken
        assert torch.equal(block.fc_gelu(a), block.gelu(linear(block.fc, a)))
