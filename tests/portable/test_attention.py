"""Exact integer attention (:mod:`ardm.portable.attention`) against its int64 definition."""

from __future__ import annotations

import pytest
import torch

from ardm.portable import attention, quant
from ardm.portable.attention import attend, packed_limbs, score_exp_table
from ardm.portable.quant import NARROW, Rescale, div_round
from ardm.portable.tables import exp_table


def ints(shape: tuple[int, ...], bound: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-bound, bound + 1, shape, generator=g)


def reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score: Rescale, value: int, shift: int
) -> torch.Tensor:
    """The definition in int64, queries and keys row-major ``(b, L, hd)``: ``(b, Lq, hd)``."""
    s = q @ k.transpose(1, 2)  # (b, Lq, Lk)
    table = exp_table(frac_bits=6, span=16, out_bits=14)
    e = table[score(s.amax(dim=-1, keepdim=True) - s).clamp(max=table.numel() - 1)]
    den = e.sum(dim=-1, keepdim=True) << shift  # (b, Lq, 1)
    return div_round((e @ v) * value, den).clamp(-NARROW, NARROW)


def test_score_gap_table_is_the_rescale_then_the_exp_table() -> None:
    bound = 2 * 32 * NARROW * NARROW
    score = Rescale.from_ratio(0.0021 * 64, in_bound=bound)
    limbs = score_exp_table(score, bound)  # (2, n) float32
    table = exp_table(frac_bits=6, span=16, out_bits=14)
    gaps = torch.cat([torch.arange(3000), ints((3000,), bound, seed=26).abs()])
    want = table[score(gaps).clamp(max=table.numel() - 1)]  # the two-step path
    i = gaps.clamp(max=limbs.shape[1] - 1)
    got = limbs[1, i].long() * 128 + limbs[0, i].long()
    assert torch.equal(got, want) and limbs.max() <= 128
    pairs = packed_limbs(limbs)[i].view(torch.float32).view(-1, 2)  # one word per entry
    assert torch.equal(pairs.t(), limbs[:, i])


@pytest.mark.parametrize(
    ("hd", "Lq", "Lk", "ratio", "value"),
    [
        (32, 128, 128, 0.0021, 5 << 22),  # the transformer's heads
        (64, 49, 49, 0.0008, 3 << 23),  # a U-Net's middle block
        (8, 5, 1500, 0.0030, 1 << 24),  # more keys than one exact GEMM takes
        (16, 40, 40, 0.0004, 1 << 35),  # a multiplier beyond the float64 division
    ],
)
def test_attend_equals_its_int64_definition(
    hd: int, Lq: int, Lk: int, ratio: float, value: int
) -> None:
    bound = 2 * hd * NARROW * NARROW
    score = Rescale.from_ratio(ratio * 64, in_bound=bound)
    b = 3
    q, k, v = (
        ints((b, Lq, hd), NARROW, 1),
        ints((b, Lk, hd), NARROW, 2),
        ints((b, Lk, hd), NARROW, 3),
    )
    k[0, : Lk // 2] = q[0, :1]  # many equal scores: the largest sums of weights
    want = reference(q, k, v, score, value, 24)  # (b, Lq, hd)
    packed = packed_limbs(score_exp_table(score, bound))
    qt, kt, vt = (x.float().transpose(1, 2) for x in (q, k, v))  # channel-major views
    got = attend(qt, kt, vt, packed, torch.tensor(value))  # (b, hd, Lq)
    assert got.dtype == torch.float32 and torch.equal(got.long(), want.transpose(1, 2))


def test_the_float64_division_and_the_int64_one_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    S = torch.cat([torch.tensor([1.0, 2.0, 3.0, 1 << 21]), ints((500,), 1 << 21, 7).abs() + 1.0])
    S = S.view(1, 1, -1).double()  # (1, 1, n) sums of weights
    num = (torch.rand(4, 1, S.shape[-1], dtype=torch.float64) * 2 - 1).mul(127 * S).round()
    for value in (1, 3 << 20, 1 << 23):
        fast = attention._weighted_average(num.clone(), S, torch.tensor(value), 24)
        assert fast.dtype == torch.float64  # the float64 division ran
        monkeypatch.setattr(attention, "FLOAT64_EXACT", 0)
        slow = attention._weighted_average(num.clone(), S, torch.tensor(value), 24)
        monkeypatch.undo()
        assert slow.dtype == torch.int64 and torch.equal(fast.long(), slow)


def test_div_round_float64_is_div_round_up_to_its_bound() -> None:
    g = torch.Generator().manual_seed(11)
    den = torch.randint(1, 1 << 50, (4000,), generator=g)
    den[:1000] = torch.randint(1, 1000, (1000,), generator=g)  # small denominators
    q = torch.randint(-(1 << 40), 1 << 40, (4000,), generator=g)
    num = (q * den).clamp(-(1 << 51), 1 << 51)  # exact multiples, then one off either way
    for n in (num, num - 1, num + 1, (2 * num - den) // 2, (2 * num + den) // 2):
        n = n.clamp(-((1 << 53) - 3 * den) // 2, ((1 << 53) - 3 * den) // 2)  # the bound
        got = quant.div_round_float64(n.double(), den.double())
        assert torch.equal(got.long(), div_round(n, den))
