"""Raw coding in lockstep (:mod:`ardm.coding.lockstep`): round trips and sizes against the
policy's NLL, padding, groups sharing a stream, initial states, batched mode, bad arguments,
and batch and thread invariance."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ardm.coding import ans
from ardm.coding.lockstep import CodingSetup, decode, decode_with_rest, encode, single_stage
from ardm.core.orders import order_from_seed
from ardm.core.policy import naive_policy
from ardm.errors import FormatError
from tests.coding.checks import one_line, policy_nll, small_transformer, small_unet
from tests.tiny_nets import TinyAttnNet, TinyConvNet, TinyNet

Case = tuple[TinyNet, torch.Tensor, torch.Tensor, np.ndarray]


@st.composite
def coding_cases(draw: st.DrawFn) -> Case:
    arch = draw(st.sampled_from(["conv1d", "conv2d", "attn"]))
    K = draw(st.integers(2, 300))
    seed = draw(st.integers(0, 2**16))
    if arch == "conv2d":
        shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        net: TinyNet = TinyConvNet(K, shape, seed=seed)
    elif arch == "conv1d":
        net = TinyConvNet(K, (draw(st.integers(1, 2)), draw(st.integers(1, 12))), seed=seed)
    else:
        net = TinyAttnNet(K, draw(st.integers(1, 16)), seed=seed)
    D = net.D
    budget = draw(st.integers(1, D))
    inner = draw(st.lists(st.integers(1, D - 1), max_size=budget - 1)) if D > 1 else []
    policy = np.array(sorted({0, *inner}), dtype=np.int64)
    N = draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        x = torch.randint(0, K, (N, *net.shape), generator=g)
    else:  # low-entropy data: a few values only
        x = torch.randint(0, min(K, 3), (N, *net.shape), generator=g)
    return net.eval(), x, order_from_seed(D, seed), policy


@given(case=coding_cases())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_and_size(case: Case) -> None:
    net, x, sigma, policy = case
    setup = CodingSetup(single_stage(net, sigma, policy), net.shape, net.K, workers=1)
    payloads = encode(setup, x)
    y = decode(setup, payloads)
    assert torch.equal(y, x)
    raw, smoothed = policy_nll(net, x, sigma, policy)
    for p, r, s in zip(payloads, raw.tolist(), smoothed.tolist(), strict=True):
        bits = 8 * len(p)
        # Above: the final ANS state. (A payload can also be much *smaller* than -log2 p: ANS
        # starts from an empty state, and 0s pushed while the state is small are free.)
        assert bits <= 1.01 * s + 48, (bits, s)
        assert bits <= r + net.D * ans.smoothing_cost_bits(net.K) + 0.01 * s + 48, (bits, r)


@given(case=coding_cases(), data=st.data())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_with_padding(case: Case, data: st.DataObject) -> None:
    net, x, sigma, policy = case
    pad = torch.tensor(data.draw(st.lists(st.booleans(), min_size=x.numel(), max_size=x.numel())))
    pad = pad.view(x.shape)
    setup = CodingSetup(single_stage(net, sigma, policy), net.shape, net.K, pad=pad, workers=1)
    payloads = encode(setup, x)
    y = decode(setup, payloads)
    assert torch.equal(y, torch.where(pad, 0, x))
    for p, m in zip(payloads, pad.reshape(len(payloads), -1), strict=True):
        assert p == b"" or not bool(m.all())


@given(case=coding_cases(), data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_groups_share_one_stream(case: Case, data: st.DataObject) -> None:
    """Items in groups (the tiles of files): one stream per group, decoded with the same
    groups; a group of one item is that item's own payload."""
    net, x, sigma, policy = case
    N = x.shape[0]
    groups = [1]
    for cut in data.draw(st.lists(st.booleans(), min_size=N - 1, max_size=N - 1)):
        groups[-1:] = [groups[-1], 1] if cut else [groups[-1] + 1]
    pad = None
    if data.draw(st.booleans()):
        pad = torch.tensor(
            data.draw(st.lists(st.booleans(), min_size=x.numel(), max_size=x.numel()))
        )
        pad = pad.view(x.shape)
    workers = data.draw(st.sampled_from([1, 2]))
    setup = CodingSetup(single_stage(net, sigma, policy), net.shape, net.K, pad=pad)
    streams = encode(replace(setup, groups=groups, workers=workers), x)
    assert len(streams) == len(groups)
    y = decode(replace(setup, groups=groups, workers=1), streams)
    assert torch.equal(y, x if pad is None else torch.where(pad, 0, x))
    alone = encode(replace(setup, workers=1), x)
    assert encode(replace(setup, groups=[1] * N), x) == alone
    for g, stream, first in zip(groups, streams, np.cumsum([0, *groups]), strict=False):
        if g == 1:
            assert stream == alone[first]


@given(case=coding_cases(), data=st.data())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_initial_states_come_back_and_cost_their_bits(case: Case, data: st.DataObject) -> None:
    """Streams started from 32-bit words (format version 4: the data checksum) decode to the
    items, with each stream's word as its rest; :func:`decode`, which wants streams from
    the empty state, refuses them. From a word of at least ``2**24`` a stream is ``-log2 p``
    plus the word's bits, rounded up to bytes (measured over 900 random cases: -0.8 to +7.9
    bits over)."""
    net, x, sigma, policy = case
    N = x.shape[0]
    word = st.sampled_from([0, 1, 0xABCDEF, 1 << 24, 2**32 - 1]) | st.integers(0, 2**32 - 1)
    initial = data.draw(st.lists(word, min_size=N, max_size=N))
    setup = CodingSetup(single_stage(net, sigma, policy), net.shape, net.K)
    payloads = encode(replace(setup, workers=1), x, initial=initial)
    for p in payloads:
        assert not p or p[-1] != 0
    y, rest = decode_with_rest(replace(setup, workers=1), payloads)
    assert torch.equal(y, x) and rest == initial
    _, smoothed = policy_nll(net, x, sigma, policy)
    for p, s, w in zip(payloads, smoothed.tolist(), initial, strict=True):
        extra = 8 * len(p) - s - w.bit_length()
        if w >= 1 << ans.PRECISION_BITS:
            assert -2 <= extra <= 12, (extra, s)
    if any(initial):
        with pytest.raises(FormatError, match="bits are left") as e:
            decode(replace(setup, workers=1), payloads)
        one_line(e)
    assert encode(setup, x, initial=[0] * N) == encode(setup, x)
    with pytest.raises(ValueError, match="initial states"):
        encode(setup, x, initial=[1] * (N + 1))
    with pytest.raises(ValueError, match="initial states"):
        encode(setup, x, initial=[2**32] * N)


def test_batched_mode_round_trips_with_the_same_batch() -> None:
    net = TinyConvNet(50, (2, 4, 4), seed=5).eval()
    x = torch.randint(0, 50, (4, 2, 4, 4))
    sigma, policy = order_from_seed(32, 9), naive_policy(32, 5)
    setup = CodingSetup(single_stage(net, sigma, policy), net.shape, 50, per_item=False)
    p = encode(setup, x)
    y = decode(setup, p)
    assert torch.equal(y, x)
    setup = replace(setup, groups=[3, 1])
    p = encode(setup, x)
    assert len(p) == 2
    assert torch.equal(decode(setup, p), x)


def test_codec_rejects_bad_arguments() -> None:
    net = TinyAttnNet(5, 6).eval()
    x = torch.zeros(1, 6, dtype=torch.long)
    sigma = order_from_seed(6, 0)
    for policy in ([1, 3], [0, 4, 2], [0, 6], []):
        with pytest.raises(ValueError):
            encode(CodingSetup(single_stage(net, sigma, np.array(policy)), (6,), 5), x)
    with pytest.raises(ValueError):
        repeated = torch.tensor([0, 0, 1, 2, 3, 4])
        encode(CodingSetup(single_stage(net, repeated, np.array([0])), (6,), 5), x)
    one_step = single_stage(net, sigma, np.array([0]))
    with pytest.raises(ValueError, match="classes"):
        decode(CodingSetup(one_step, (6,), 7), [b"\x01"])
    for groups in ([2], [0, 1], [1, 1]):
        with pytest.raises(ValueError, match="groups"):
            encode(CodingSetup(one_step, (6,), 5, groups=groups), x)
    with pytest.raises(ValueError, match="2 payloads for 1 groups"):
        decode(CodingSetup(one_step, (6,), 5, groups=[2]), [b"", b""])
    with pytest.raises(ValueError, match="shape"):
        encode(CodingSetup(one_step, (5,), 5), x)


@pytest.mark.parametrize("make", [small_unet, small_transformer], ids=["unet", "transformer"])
def test_batch_and_thread_invariance(make: Callable[[], torch.nn.Module]) -> None:
    """Encode 16 items at 2 threads; every file decodes alone at 1 thread, and vice versa."""
    net = make()
    shape, K = tuple(net.shape), int(net.K)  # type: ignore[arg-type]
    D = math.prod(shape)
    x = torch.randint(0, K, (16, *shape), generator=torch.Generator().manual_seed(0))
    sigma, policy = order_from_seed(D, 2), naive_policy(D, 6)
    setup = CodingSetup(single_stage(net, sigma, policy), shape, K)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = encode(setup, x)  # 2 workers
        assert torch.get_num_threads() == 2  # restored
        torch.set_num_threads(1)
        for i in (0, 7, 15):
            alone = encode(setup, x[i : i + 1])
            assert alone == [batch[i]]  # byte-identical, batch 16 vs 1, 2 threads vs 1
            y = decode(setup, [batch[i]])
            assert torch.equal(y[0], x[i])
        torch.set_num_threads(2)
        y = decode(setup, batch)
        assert torch.equal(y, x)
    finally:
        torch.set_num_threads(threads)
