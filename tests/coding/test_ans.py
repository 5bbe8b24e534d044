"""The rANS coder (:mod:`ardm.coding.ans`): round trips, smoothing, end and initial states,
and a golden stream that catches a change inside ``constriction``.

Regenerate ``tests/golden/ans_64_symbols.bin`` (only after a deliberate coder change) with
``ARDM_REGEN_GOLDEN=1 PYTHONPATH=src .venv/bin/pytest tests/coding/test_ans.py -k golden``.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ardm.coding import ans
from ardm.coding.stages import coding_probs
from ardm.errors import FormatError
from tests.coding.checks import FAST, GOLDEN, REGEN, one_line


def test_smoothing_floor_and_cost_bound() -> None:
    assert ans.smoothing_eps(256) == 2e-5
    assert math.isclose(ans.smoothing_cost_bits(256), -math.log2(1 - 2e-5 * 256))
    assert ans.smoothing_cost_bits(256) < 0.0075
    for K in (2, 27, 256, 4096, 65536, ans.MAX_K):
        assert ans.smoothing_eps(K) * K <= 1 / 128
        assert ans.smoothing_cost_bits(K) <= -math.log2(1 - 1 / 128) + 1e-12
    lp = torch.log_softmax(torch.randn(5, 300) * 30, dim=-1)
    p = coding_probs(lp)
    assert p.dtype == np.float64 and p.min() >= ans.smoothing_eps(300)
    assert np.allclose(p.sum(-1), 1.0, atol=1e-5)


@given(
    K=st.integers(2, 300),
    steps=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
)
@FAST
def test_ans_round_trip_any_steps(K: int, steps: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [ans.smooth(rng.dirichlet(np.full(K, 0.3), size=n)) for n in steps]
    symbols = [np.array([rng.choice(K, p=r / r.sum()) for r in rs], dtype=np.int64) for rs in rows]
    enc = ans.Encoder()
    for sym, rs in zip(reversed(symbols), reversed(rows), strict=True):
        enc.push_step(sym, rs)
    payload = enc.get_bytes()
    assert not payload or payload[-1] != 0
    nll = -sum(
        np.log2(rs[np.arange(len(s)), s] / rs.sum(1)).sum()
        for s, rs in zip(symbols, rows, strict=True)
    )
    assert len(payload) * 8 <= 1.01 * nll + 48
    dec = ans.Decoder(payload)
    for sym, rs in zip(symbols, rows, strict=True):
        assert np.array_equal(dec.pop_step(rs), sym)
    assert dec.finished()


def test_ans_rejects_bad_input() -> None:
    enc = ans.Encoder()
    with pytest.raises(ValueError):
        enc.push_step(np.array([3]), np.full((1, 3), 1 / 3))
    with pytest.raises(ValueError):
        enc.push_step(np.array([0, 1]), np.full((1, 3), 1 / 3))
    with pytest.raises(FormatError) as e:
        ans.Decoder(b"\x01\x02\x00")
    one_line(e)
    with pytest.raises(FormatError) as e:
        ans.Decoder(b"\x00\x00\x00\x00")
    one_line(e)


def test_ans_end_state_check() -> None:
    """The decoder's end-state check catches trailing data; popping past the end of a stream
    is not detectable by the coder (the empty state decodes 0s forever): the checksum is."""
    rows = ans.smooth(np.full((50, 7), 1 / 7))
    enc = ans.Encoder()
    enc.push_step(np.arange(50) % 7, rows)
    dec = ans.Decoder(enc.get_bytes() + b"\x07")
    dec.pop_step(rows)
    assert not dec.finished() and dec.bits_left > 0
    dec = ans.Decoder(enc.get_bytes())
    assert np.array_equal(dec.pop_step(rows), np.arange(50) % 7) and dec.finished()
    assert np.array_equal(dec.pop_step(rows), np.zeros(50)) and dec.finished()


@given(
    initial=st.sampled_from([0, 1, 5, 255, 256, 0xABCDEF, 1 << 24, 123_456_789, 2**32 - 1])
    | st.integers(0, 2**32 - 1),
    K=st.integers(2, 300),
    steps=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
)
@FAST
def test_ans_initial_state_is_what_remains(
    initial: int, K: int, steps: list[int], seed: int
) -> None:
    """An encoder started from a 32-bit word: the decoder, after the last pop, is left with
    exactly that word. From a word of at least ``2**24`` (the coder's precision) the stack is
    that word's bits plus ``-log2 p`` rounded up to bytes (measured over random cases: -0.8
    to +7.9 bits; the bound adds slack for the 24-bit quantisation of the rows). Below it,
    the first values pushed can be free as from the empty state (0s while the state is
    smaller than their frequency), or cost more (the old bound of the empty state)."""
    rng = np.random.default_rng(seed)
    rows = [ans.smooth(rng.dirichlet(np.full(K, 0.3), size=n)) for n in steps]
    symbols = [np.array([rng.choice(K, p=r / r.sum()) for r in rs], dtype=np.int64) for rs in rows]
    enc = ans.Encoder(initial)
    for sym, rs in zip(reversed(symbols), reversed(rows), strict=True):
        enc.push_step(sym, rs)
    payload = enc.get_bytes()
    assert not payload or payload[-1] != 0  # the zero-padding rule of tiled payloads holds
    nll = -sum(
        np.log2(rs[np.arange(len(s)), s] / rs.sum(1)).sum()
        for s, rs in zip(symbols, rows, strict=True)
    )
    extra = 8 * len(payload) - nll - initial.bit_length()
    if initial >= 1 << ans.PRECISION_BITS:
        assert -2 <= extra <= 12, extra
    else:
        assert extra <= 0.01 * nll + 48, extra
    dec = ans.Decoder(payload)
    if len(payload) > 4:
        assert dec.remaining() is None  # more than one word on the stack
    for sym, rs in zip(symbols, rows, strict=True):
        assert np.array_equal(dec.pop_step(rs), sym)
    assert dec.remaining() == initial
    assert dec.finished() == (initial == 0)


def test_ans_initial_state_edges() -> None:
    assert ans.Encoder(0).get_bytes() == ans.Encoder().get_bytes() == b""
    assert ans.Encoder(5).get_bytes() == b"\x05"
    assert ans.Encoder(0xABCDEF).get_bytes() == bytes.fromhex("efcdab")  # zero top byte dropped
    assert ans.Encoder(2**32 - 1).get_bytes() == b"\xff" * 4
    for word in (5, 0xABCDEF, 2**32 - 1):
        dec = ans.Decoder(ans.Encoder(word).get_bytes())
        assert dec.remaining() == word and not dec.finished()
    assert ans.Decoder(b"").remaining() == 0
    rows = ans.smooth(np.full((3, 7), 1 / 7))
    enc = ans.Encoder()
    enc.push_step(np.zeros(3, dtype=np.int64), rows)  # 0s from the empty state are free
    assert enc.get_bytes() == b""
    enc = ans.Encoder(5)
    enc.push_step(np.zeros(3, dtype=np.int64), rows)  # nor from a word below their frequency
    assert enc.get_bytes() == b"\x05"
    enc = ans.Encoder(1 << 24)
    enc.push_step(np.zeros(3, dtype=np.int64), rows)  # from 2**24 on they cost -log2 p
    assert len(enc.get_bytes()) == 5  # 25 bits of the word + 3 x 2.8 bits, in bytes
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match="initial state"):
            ans.Encoder(bad)


def test_golden_ans_stream() -> None:
    """The raw coder on fixed rational rows: catches a change inside constriction."""
    rng = random.Random(0)
    rows = np.array([[rng.randint(1, 50) for _ in range(11)] for _ in range(64)], dtype=np.float64)
    rows /= rows.sum(1, keepdims=True)
    symbols = np.array([rng.randrange(11) for _ in range(64)])
    enc = ans.Encoder()
    enc.push_step(symbols[32:], rows[32:])
    enc.push_step(symbols[:32], rows[:32])
    path = GOLDEN / "ans_64_symbols.bin"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(enc.get_bytes())
    assert enc.get_bytes() == path.read_bytes()
