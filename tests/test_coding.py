"""Entropy coding: the ANS layer, the file format, the codec, determinism and golden files.

Regenerate the golden files of the current format (only after a deliberate format or coder
change) with ``ARDM_REGEN_GOLDEN=1 PYTHONPATH=src .venv/bin/pytest tests/test_coding.py -k
golden``. The version-2 golden files (``tests/golden/*_budget*.ardm`` without a ``v3_``
prefix) are frozen: nothing writes version 2 any more, they check that old files decode.
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ardm.coding import ans, codec, container
from ardm.coding.container import Header
from ardm.core.orders import order_from_seed
from ardm.core.policy import naive_policy, step_bounds
from ardm.errors import DataError, FormatError
from fuzz.campaign import build_file
from tests.tiny_nets import (
    IntegerNet,
    StandInModel,
    TinyAttnNet,
    TinyConvNet,
    TinyNet,
    randomize,
)

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("ARDM_REGEN_GOLDEN") == "1"
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
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
            raw += codec.policy_nll_bits(lp[:, step], xf[:, step])
            probs = torch.from_numpy(codec.coding_probs(lp[:, step]))
            smoothed -= torch.log2(probs.gather(-1, xf[:, step][..., None])[..., 0]).sum(1)
    return raw, smoothed


# ============================================================================ ans
def test_smoothing_floor_and_cost_bound() -> None:
    assert ans.smoothing_eps(256) == 2e-5
    assert math.isclose(ans.smoothing_cost_bits(256), -math.log2(1 - 2e-5 * 256))
    assert ans.smoothing_cost_bits(256) < 0.0075
    for K in (2, 27, 256, 4096, 65536, ans.MAX_K):
        assert ans.smoothing_eps(K) * K <= 1 / 128
        assert ans.smoothing_cost_bits(K) <= -math.log2(1 - 1 / 128) + 1e-12
    lp = torch.log_softmax(torch.randn(5, 300) * 30, dim=-1)
    p = codec.coding_probs(lp)
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


# ============================================================================ container
@given(st.integers(0, 2**64))
def test_varint_round_trip(value: int) -> None:
    b = container.write_varint(value)
    assert container.read_varint(b + b"\xff", 0, "v") == (value, len(b))
    assert len(b) == max(1, math.ceil(value.bit_length() / 7))


def test_varint_refuses_overlong_and_truncated() -> None:
    with pytest.raises(FormatError, match="minimally"):
        container.read_varint(b"\x81\x00", 0, "budget")
    with pytest.raises(FormatError, match="truncated"):
        container.read_varint(b"\x81\x82", 0, "budget")
    with pytest.raises(FormatError, match="longer"):
        container.read_varint(b"\xff" * 12, 0, "budget")


headers = st.builds(
    Header,
    kind=st.sampled_from(container.KINDS),
    budget=st.integers(1, container.MAX_D),
    seed=st.integers(0, container.MAX_SEED),
    fingerprint=st.binary(min_size=4, max_size=4),
    crc32=st.integers(0, 2**32 - 1),
)


@given(
    header=headers,
    shape=st.none() | st.lists(st.integers(1, 60), min_size=1, max_size=4),
    version=st.sampled_from(container.READ_VERSIONS),
)
def test_header_round_trip(header: Header, shape: list[int] | None, version: int) -> None:
    header = Header(**{**header.__dict__, "version": version})
    if shape is not None:
        header = Header(**{**header.__dict__, "K": 256, "shape": tuple(shape)})
    payload = b"\x12\x34"
    blob = container.pack(header, payload)
    assert container.unpack(blob) == (header, payload)


def test_header_is_14_bytes_for_a_native_item() -> None:
    # An MNIST digit with the model's native shape: budget 100, order seed 0..127.
    h = Header(kind="image", budget=100, seed=3, fingerprint=b"abcd", crc32=123)
    assert len(container.pack(h, b"")) == 14
    h = Header(kind="image", budget=784, seed=3, fingerprint=b"abcd", crc32=123)
    assert len(container.pack(h, b"")) == 15


def test_header_refuses_malformed_files() -> None:
    good = container.pack(
        Header(kind="text", budget=20, seed=1, fingerprint=b"wxyz", crc32=7), b"\x05"
    )
    cases = {
        "empty": b"",
        "magic": b"PK\x03\x04" + good[4:],
        "version": good[:2] + bytes([container.VERSION + 1]) + good[3:],
        "version 1": good[:2] + b"\x01" + good[3:],
        "flags": good[:3] + bytes([good[3] | 0x80]) + good[4:],
        "kind": good[:3] + bytes([good[3] | 0x03]) + good[4:],
        "budget0": good[:4] + b"\x00" + good[5:],
        "huge shape": good[:3]
        + bytes([good[3] | 0x04])
        + b"\x14\x01"
        + container.write_varint(256)
        + b"\x03"
        + container.write_varint(1 << 40),
        "too many axes": good[:3] + bytes([good[3] | 0x04]) + b"\x14\x01\x80\x02\x09",
    }
    messages = {}
    for name, blob in cases.items():
        with pytest.raises(FormatError) as e:
            container.unpack(blob)
        messages[name] = one_line(e)
    assert container.VERSION == 3 and container.READ_VERSIONS == (2, 3)
    assert "version 4 (this ardm reads versions 2, 3)" in messages["version"]
    assert "version 1 (this ardm reads versions 2, 3)" in messages["version 1"]
    assert container.unpack(good[:2] + b"\x02" + good[3:])[0].version == 2
    assert "not an ardm" in messages["magic"]
    for n in range(len(good) - 1):  # every truncation inside the header
        with pytest.raises(FormatError, match=r"truncated|not an ardm|empty"):
            container.unpack(good[:n])


def test_tiles_split_join() -> None:
    parts = [b"a" * 3, b"", b"b" * 200, b"c"]
    body = container.join_tiles(parts)
    assert container.split_tiles(body, 4) == parts
    assert container.split_tiles(container.join_tiles([b"", b""]), 2) == [b"", b""]
    for bad in (body[:100], body[:5], b"", b"\x05abc"):
        with pytest.raises(FormatError, match="truncated"):
            container.split_tiles(bad, 4)


@given(stream=st.binary(max_size=12), count=st.integers(1, 20))
def test_stream_padding(stream: bytes, count: int) -> None:
    """Version 3: a tiled payload has at least ``tiles - 1`` bytes; the padding (zero bytes,
    which end no stream) is removed again, and zeros anywhere else are left for the coder to
    refuse."""
    stream = stream.rstrip(b"\x00")  # the coder never ends a stream in a zero byte
    payload = container.pack_stream(stream, count)
    assert len(payload) == max(len(stream), count - 1)
    assert container.unpack_stream(payload, count) == stream
    if len(payload) != count - 1:  # extra zeros are not padding
        assert container.unpack_stream(payload + b"\x00", count).endswith(b"\x00")
    if count > 1:
        with pytest.raises(FormatError, match="truncated file") as e:
            container.unpack_stream(bytes(count - 2), count)
        one_line(e)


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    tile=st.lists(st.integers(1, 4), min_size=3, max_size=3),
)
@FAST
def test_cut_paste_tiles(shape: list[int], tile: list[int]) -> None:
    tile = tile[: len(shape)]
    x = torch.randint(1, 100, shape)
    tiles, pad = codec.cut_tiles(x, tuple(tile))
    assert tiles.shape[1:] == tuple(tile) and pad.shape == tiles.shape
    assert int((~pad).sum()) == x.numel() and bool((tiles[pad] == 0).all())
    assert torch.equal(codec.paste_tiles(tiles, tuple(shape)), x)


# ============================================================================ codec round trips
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
    payloads = codec.encode(net, x, sigma=sigma, policy=policy, workers=1)
    y = codec.decode(net, payloads, shape=net.shape, K=net.K, sigma=sigma, policy=policy, workers=1)
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
    payloads = codec.encode(net, x, sigma=sigma, policy=policy, pad=pad, workers=1)
    y = codec.decode(
        net, payloads, shape=net.shape, K=net.K, sigma=sigma, policy=policy, pad=pad, workers=1
    )
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
    args = {"sigma": sigma, "policy": policy, "pad": pad}
    streams = codec.encode(net, x, groups=groups, workers=workers, **args)
    assert len(streams) == len(groups)
    y = codec.decode(net, streams, shape=net.shape, K=net.K, groups=groups, workers=1, **args)
    assert torch.equal(y, x if pad is None else torch.where(pad, 0, x))
    alone = codec.encode(net, x, workers=1, **args)
    assert codec.encode(net, x, groups=[1] * N, **args) == alone
    for g, stream, first in zip(groups, streams, np.cumsum([0, *groups]), strict=False):
        if g == 1:
            assert stream == alone[first]


def test_batched_mode_round_trips_with_the_same_batch() -> None:
    net = TinyConvNet(50, (2, 4, 4), seed=5).eval()
    x = torch.randint(0, 50, (4, 2, 4, 4))
    sigma, policy = order_from_seed(32, 9), naive_policy(32, 5)
    p = codec.encode(net, x, sigma=sigma, policy=policy, per_item=False)
    y = codec.decode(net, p, shape=net.shape, K=50, sigma=sigma, policy=policy, per_item=False)
    assert torch.equal(y, x)
    args = {"sigma": sigma, "policy": policy, "groups": [3, 1], "per_item": False}
    p = codec.encode(net, x, **args)
    assert len(p) == 2
    assert torch.equal(codec.decode(net, p, shape=net.shape, K=50, **args), x)


def test_codec_rejects_bad_arguments() -> None:
    net = TinyAttnNet(5, 6).eval()
    x = torch.zeros(1, 6, dtype=torch.long)
    sigma = order_from_seed(6, 0)
    for policy in ([1, 3], [0, 4, 2], [0, 6], []):
        with pytest.raises(ValueError):
            codec.encode(net, x, sigma=sigma, policy=np.array(policy))
    with pytest.raises(ValueError):
        codec.encode(net, x, sigma=torch.tensor([0, 0, 1, 2, 3, 4]), policy=np.array([0]))
    with pytest.raises(ValueError, match="classes"):
        codec.decode(net, [b"\x01"], shape=(6,), K=7, sigma=sigma, policy=np.array([0]))
    for groups in ([2], [0, 1], [1, 1]):
        with pytest.raises(ValueError, match="groups"):
            codec.encode(net, x, sigma=sigma, policy=np.array([0]), groups=groups)
    with pytest.raises(ValueError, match="2 payloads for 1 groups"):
        codec.decode(
            net, [b"", b""], shape=(6,), K=5, sigma=sigma, policy=np.array([0]), groups=[2]
        )


# ============================================================================ determinism
def small_unet(K: int = 256, shape: tuple[int, int, int] = (1, 8, 8)) -> torch.nn.Module:
    """A U-Net whose batch-1 output differs between 1 and 2 threads on the dev machine (and
    between batch 1 and 16), so the invariance test below fails if the codec stops pinning
    batch and threads (checked by mutation)."""
    from ardm.nets.unet import UNet, UNetConfig

    cfg = UNetConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1)
    net = UNet(cfg, K=K, channels=shape[0], height=shape[1], width=shape[2])
    return randomize(net, seed=1, scale=1.0).eval()


def small_transformer(K: int = 27, L: int = 32) -> torch.nn.Module:
    from ardm.nets.transformer import Transformer, TransformerConfig

    cfg = TransformerConfig(dim=32, depth=2, heads=4, time_cond=True)
    return randomize(Transformer(cfg, K=K, seq_len=L), seed=1, scale=1.0).eval()


@pytest.mark.parametrize("make", [small_unet, small_transformer], ids=["unet", "transformer"])
def test_batch_and_thread_invariance(make: Callable[[], torch.nn.Module]) -> None:
    """Encode 16 items at 2 threads; every file decodes alone at 1 thread, and vice versa."""
    net = make()
    shape, K = tuple(net.shape), int(net.K)  # type: ignore[arg-type]
    D = math.prod(shape)
    x = torch.randint(0, K, (16, *shape), generator=torch.Generator().manual_seed(0))
    sigma, policy = order_from_seed(D, 2), naive_policy(D, 6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = codec.encode(net, x, sigma=sigma, policy=policy)  # 2 workers
        assert torch.get_num_threads() == 2  # restored
        torch.set_num_threads(1)
        for i in (0, 7, 15):
            alone = codec.encode(net, x[i : i + 1], sigma=sigma, policy=policy)
            assert alone == [batch[i]]  # byte-identical, batch 16 vs 1, 2 threads vs 1
            y = codec.decode(net, [batch[i]], shape=shape, K=K, sigma=sigma, policy=policy)
            assert torch.equal(y[0], x[i])
        torch.set_num_threads(2)
        y = codec.decode(net, batch, shape=shape, K=K, sigma=sigma, policy=policy)
        assert torch.equal(y, x)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("make", [small_unet, small_transformer], ids=["unet", "transformer"])
def test_tiled_batch_and_thread_invariance(make: Callable[[], torch.nn.Module]) -> None:
    """Tiled files (one stream each, tiles in lockstep) compressed as a batch at 2 threads
    are each the file of the item alone at 1 thread, and decode alone at 1 and 2 threads."""
    net = make()
    model = StandInModel(net, kind="image" if len(net.shape) == 3 else "text", order_seed=2)  # type: ignore[arg-type]
    shape = (1, 12, 20) if model.kind == "image" else (80,)  # 2 x 3 tiles, 3 tiles; padded
    x = torch.randint(0, model.K, (3, *shape), generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = codec.compress(model, x, budget=6)
        assert isinstance(batch, list) and torch.get_num_threads() == 2  # restored
        torch.set_num_threads(1)
        for i in range(3):
            assert codec.compress(model, x[i], budget=6) == batch[i]
            assert torch.equal(codec.decompress(model, batch[i]), x[i])
        torch.set_num_threads(2)
        assert torch.equal(codec.decompress(model, batch[1]), x[1])
    finally:
        torch.set_num_threads(threads)


# ============================================================================ files
def image_model(seed: int = 0, shape: tuple[int, ...] = (1, 6, 6), K: int = 16) -> StandInModel:
    return StandInModel(TinyConvNet(K, shape, seed=seed), kind="image", order_seed=5)


def test_compress_single_and_batch() -> None:
    m = image_model()
    x = torch.randint(0, 16, (3, 1, 6, 6), generator=torch.Generator().manual_seed(1))
    files = codec.compress(m, x, budget=7)
    assert isinstance(files, list) and len(files) == 3
    one = codec.compress(m, x[1], budget=7)
    assert one == files[1]
    for f, xi in zip(files, x, strict=True):
        assert torch.equal(codec.decompress(m, f), xi)
    header, _ = container.unpack(one)
    assert (header.budget, header.seed, header.shape) == (7, 5, None)
    assert codec.compress(m, x[0].to(torch.uint8), budget=1000) == codec.compress(
        m, x[0], budget=36
    )  # budget clamped to D


@pytest.mark.parametrize("shape", [(1, 11, 13), (1, 3, 2), (1, 6, 20), (2, 6, 6)])
def test_tiled_images(shape: tuple[int, ...]) -> None:
    m = image_model()
    x = torch.randint(0, 16, shape, generator=torch.Generator().manual_seed(2))
    blob = codec.compress(m, x, budget=6)
    assert isinstance(blob, bytes)
    header, _ = container.unpack(blob)
    assert header.shape == shape and header.K == 16 and header.version == 3
    assert torch.equal(codec.decompress(m, blob), x)


def test_text_of_another_length() -> None:
    m = StandInModel(TinyAttnNet(27, 12, seed=3), kind="text")
    for L in (5, 12, 30):
        x = torch.randint(0, 27, (L,), generator=torch.Generator().manual_seed(L))
        blob = codec.compress(m, x, budget=4)
        assert isinstance(blob, bytes)
        assert torch.equal(codec.decompress(m, blob), x)


@pytest.mark.parametrize("kind", ["text", "image"])
def test_a_tiled_file_is_one_stream_near_its_nll(kind: str) -> None:
    """Six tiles share one stream: the payload is within 48 bits of the model's NLL summed
    over the tiles (per file, not per tile), smaller than the tiles' own streams together,
    and every truncation of the file is refused with a one-line FormatError."""
    net: TinyNet
    if kind == "text":
        net, shape = TinyAttnNet(27, 16, seed=4), (96,)  # 6 tiles
    else:
        net, shape = TinyConvNet(16, (1, 6, 6), seed=2), (1, 12, 18)  # 2 x 3 tiles
    m = StandInModel(net, kind=kind, order_seed=5)
    x = torch.randint(0, net.K, shape, generator=torch.Generator().manual_seed(6))
    budget = 5
    blob = codec.compress(m, x, budget=budget)
    assert isinstance(blob, bytes)
    header, body = container.unpack(blob)
    assert header.version == 3 and header.shape == shape
    assert torch.equal(codec.decompress(m, blob), x)
    tiles, pad = codec.cut_tiles(x, net.shape)
    assert tiles.shape[0] == 6 and not pad.any()
    sigma, policy = order_from_seed(net.D, 5), m.policy_for_budget(budget)
    _, smoothed = policy_nll(net.eval(), tiles, sigma, policy)
    nll, bits = float(smoothed.sum()), 8 * len(body)
    assert nll - 48 <= bits <= nll + 48, (bits, nll)
    per_tile = codec.encode(net, tiles, sigma=sigma, policy=policy)  # version 2: one per tile
    assert len(body) < sum(len(p) for p in per_tile) < len(container.join_tiles(per_tile))
    for n in range(len(blob)):
        with pytest.raises(FormatError) as e:
            codec.decompress(m, blob[:n])
        one_line(e)


def test_compress_refuses_bad_data() -> None:
    m = image_model()
    with pytest.raises(DataError):
        codec.compress(m, torch.full((1, 6, 6), 16), budget=3)
    with pytest.raises(DataError):
        codec.compress(m, torch.zeros(6, 6, dtype=torch.long), budget=3)
    with pytest.raises(DataError):
        codec.compress(m, torch.zeros(1, 6, 6), budget=3)
    m.training = True
    with pytest.raises(ValueError, match="eval"):
        codec.compress(m, torch.zeros(1, 6, 6, dtype=torch.long), budget=3)


def test_decompress_refuses_wrong_model_kind_and_junk() -> None:
    m = image_model()
    x = torch.randint(0, 16, (1, 6, 6), generator=torch.Generator().manual_seed(3))
    blob = codec.compress(m, x, budget=5)
    assert isinstance(blob, bytes)
    with pytest.raises(FormatError, match="another model") as e:
        codec.decompress(image_model(seed=1), blob)
    one_line(e)
    text_m = image_model()
    text_m.kind = "text"
    with pytest.raises(FormatError, match="image data"):
        codec.decompress(text_m, blob)
    junk = {
        "empty": b"",
        "magic": b"\x89PNG" + blob[4:],
        "version": blob[:2] + b"\x09" + blob[3:],
        "header only": blob[:14],
        "trailing": blob + b"\x01",
        "trailing zero": blob + b"\x00",
    }
    for bad in junk.values():
        with pytest.raises(FormatError) as e:
            codec.decompress(m, bad)
        one_line(e)
    with pytest.raises(FormatError, match="version 9"):
        codec.decompress(m, junk["version"])
    for n in range(len(blob)):  # every truncation
        with pytest.raises(FormatError):
            codec.decompress(m, blob[:n])


@given(flips=st.lists(st.integers(0, 10_000), min_size=1, max_size=3), which=st.integers(0, 2))
@settings(max_examples=200, deadline=2000)
def test_corruption_is_caught_or_harmless(flips: list[int], which: int) -> None:
    m, x, files = _corruption_fixture()
    blob = bytearray(files[which])
    for f in flips:
        blob[(f // 8) % len(blob)] ^= 1 << (f % 8)
    try:
        y = codec.decompress(m, bytes(blob))
    except FormatError as e:
        assert "\n" not in str(e)
    else:
        assert torch.equal(y, x[which])  # never wrong data


@functools.cache
def _corruption_fixture() -> tuple[StandInModel, torch.Tensor, list[bytes]]:
    m = StandInModel(TinyConvNet(16, (2, 4, 4), seed=7), kind="image")
    x = torch.randint(0, 16, (3, 2, 4, 4), generator=torch.Generator().manual_seed(4))
    files = codec.compress(m, x, budget=5)
    assert isinstance(files, list)
    return m, x, files


def test_real_ardm_round_trip() -> None:
    """The real :class:`ardm.model.ARDM` (tiny U-Net) through compress/decompress."""
    from tests.conftest import tiny_image_model, tiny_text_model

    for model, K in ((tiny_image_model(K=16, shape=(1, 4, 4)), 16), (tiny_text_model(), 5)):
        x = torch.randint(0, K, (2, *model.shape), generator=torch.Generator().manual_seed(0))
        files = codec.compress(model, x, budget=5)
        assert isinstance(files, list)
        assert torch.equal(torch.stack([codec.decompress(model, f) for f in files]), x)


# ============================================================================ golden files
def _golden_v2_cases() -> dict[str, tuple[StandInModel, torch.Tensor, int]]:
    """The version-2 golden files (frozen: one ANS stream per tile)."""
    img = StandInModel(IntegerNet(16, (1, 8, 8), seed=1), kind="image", order_seed=11)
    h, w = torch.meshgrid(torch.arange(11), torch.arange(13), indexing="ij")
    pattern = ((h * 3 + w * 2 + (h * w) % 5) % 16)[None]  # (1, 11, 13)
    text = StandInModel(IntegerNet(27, (40,), seed=2), kind="text", order_seed=0)
    words = "the quick brown fox jumps over the lazy dog and runs"
    chars = torch.tensor([0 if c == " " else ord(c) - 96 for c in words[:40]])  # (40,)
    return {
        "image_8x8_budget10": (img, pattern[:, :8, :8].contiguous(), 10),
        "image_11x13_tiled_budget5": (img, pattern, 5),
        "text_40_budget40": (text, chars, 40),
    }


def _golden_v3_cases() -> dict[str, tuple[StandInModel, torch.Tensor, int]]:
    """The version-3 golden files: tiled data, one stream per file (same fixed models)."""
    cases = _golden_v2_cases()
    img, pattern, _ = cases["image_11x13_tiled_budget5"]  # 2 x 2 tiles of 8 x 8, padded
    text = cases["text_40_budget40"][0]
    words = (
        "the quick brown fox jumps over the lazy dog and runs far away into the woods "
        "where nobody can find it again"
    )
    chars = torch.tensor([0 if c == " " else ord(c) - 96 for c in words[:100]])  # 3 tiles
    return {
        "v3_image_11x13_tiled_budget5": (img, pattern, 5),
        "v3_text_100_tiled_budget12": (text, chars, 12),
    }


@pytest.mark.parametrize("name", sorted(_golden_v2_cases()))
def test_golden_v2_files_still_decode(name: str) -> None:
    """Files of format version 2 decode, and are exactly the version-2 layout rebuilt by hand;
    a native file's version-3 payload is the same, a tiled file's is shorter."""
    model, x, budget = _golden_v2_cases()[name]
    blob = (GOLDEN / f"{name}.ardm").read_bytes()
    header, body = container.unpack(blob)
    assert header.version == 2
    assert torch.equal(codec.decompress(model, blob), x)
    assert build_file(model, x, budget=budget, seed=model.order_seed, version=2) == blob
    now = codec.compress(model, x, budget=budget)
    assert isinstance(now, bytes)
    if header.shape is None:
        assert now == blob[:2] + b"\x03" + blob[3:]
    else:
        assert len(container.unpack(now)[1]) < len(body)


@pytest.mark.parametrize("name", sorted(_golden_v3_cases()))
def test_golden_files(name: str) -> None:
    model, x, budget = _golden_v3_cases()[name]
    blob = codec.compress(model, x, budget=budget)
    assert isinstance(blob, bytes)
    path = GOLDEN / f"{name}.ardm"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(blob)
    assert blob == path.read_bytes(), "format or coder output changed (see module docstring)"
    header, _ = container.unpack(blob)
    assert header.version == container.VERSION and header.shape == tuple(x.shape)
    assert torch.equal(codec.decompress(model, path.read_bytes()), x)
    for n in range(len(blob)):  # every truncation: a one-line FormatError
        with pytest.raises(FormatError) as e:
            codec.decompress(model, blob[:n])
        one_line(e)


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
