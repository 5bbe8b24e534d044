"""The exact tables (:mod:`ardm.portable.tables`): the fast construction (one ``exp`` and then
products, the sigmoid mirrored) equals the entry-by-entry 40-digit ``exp`` for every table the
integer networks and pmfs build at run time, and for the gate tables they were frozen with."""

from __future__ import annotations

import math
from decimal import Context, Decimal, localcontext

import pytest
import torch

from ardm.core.dmol import log_scale_min
from ardm.portable import attention, ops, pmf, wavenet
from ardm.portable.tables import exp_range_table, exp_table, sigmoid_table


def _round(v: Decimal) -> int:
    return int(v.to_integral_value(context=Context(prec=40, rounding="ROUND_HALF_EVEN")))


def exp_reference(frac_bits: int, start: int, count: int, out_bits: int, every: int) -> list[int]:
    with localcontext(Context(prec=40)):
        one, step = Decimal(2) ** out_bits, Decimal(1) / (Decimal(2) ** frac_bits)
        return [_round(one * (-((start + i) * step)).exp()) for i in range(0, count, every)]


def sigmoid_reference(frac_bits: int, span: int, out_bits: int, every: int) -> list[int]:
    with localcontext(Context(prec=40)):
        one, step = Decimal(2) ** out_bits, Decimal(1) / (Decimal(2) ** frac_bits)
        n = span << frac_bits
        return [_round(one / (1 + (-(i * step)).exp())) for i in range(-n, n, every)]


@pytest.mark.parametrize(
    ("frac_bits", "span", "out_bits"),
    [
        (pmf.LOGIT_FRAC_BITS, pmf.EXP_SPAN, pmf.PMF_TOTAL_BITS),  # categorical pmfs
        (attention.ATTN_EXP_FRAC_BITS, attention.ATTN_EXP_SPAN, attention.ATTN_EXP_BITS),
    ],
)
def test_exp_tables_equal_the_entry_by_entry_exp(frac_bits: int, span: int, out_bits: int) -> None:
    got = exp_table(frac_bits=frac_bits, span=span, out_bits=out_bits)
    assert got.tolist() == exp_reference(frac_bits, 0, span << frac_bits, out_bits, 1)


@pytest.mark.parametrize("K", [256, 1 << 16])
def test_inverse_scale_tables_equal_the_entry_by_entry_exp(K: int) -> None:
    f = pmf.SCALE_FRAC_BITS
    start, count = math.ceil(log_scale_min(K) * (1 << f)), pmf.SCALE_SPAN << f
    got = exp_range_table(frac_bits=f, start=start, count=count, out_bits=pmf.INV_SCALE_BITS)
    assert got.tolist() == exp_reference(f, start, count, pmf.INV_SCALE_BITS, 1)


@pytest.mark.parametrize(
    ("frac_bits", "span", "out_bits", "every"),
    [
        (pmf.CDF_FRAC_BITS, pmf.CDF_SPAN, pmf.CDF_BITS, 1),  # mixture CDFs
        (ops.SILU_IN_FRAC_BITS, ops.SIGMOID_SPAN, ops.SIGMOID_BITS, 1),  # SiLU (time MLPs)
        (wavenet.PRE_FRAC_BITS, wavenet.SIGMOID_SPAN, wavenet.GATE_BITS, 7),  # frozen gates
    ],
)
def test_sigmoid_tables_equal_the_entry_by_entry_exp(
    frac_bits: int, span: int, out_bits: int, every: int
) -> None:
    got = sigmoid_table(frac_bits=frac_bits, span=span, out_bits=out_bits)
    assert got.numel() == 2 * span << frac_bits
    assert got[::every].tolist() == sigmoid_reference(frac_bits, span, out_bits, every)
    assert torch.equal(got[1:] + got[1:].flip(0), torch.full_like(got[1:], 1 << out_bits))
