"""Files of the codec (:mod:`ardm.coding.codec`): compress and decompress, tiles, corruption,
checksums, batch and thread invariance, and the golden files.

Regenerate the golden files of the current format (``tests/golden/v4_*.ardm``; only after a
deliberate format or coder change, together with a version bump) with ``ARDM_REGEN_GOLDEN=1
PYTHONPATH=src .venv/bin/pytest tests/coding/test_codec.py -k golden``. The older golden files are
frozen: the version-2 ones (``tests/golden/*_budget*.ardm`` without a ``v3_``/``v4_`` prefix)
and the version-3 ones (``v3_*``); nothing writes those versions any more, they check that
old files decode.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ardm.coding import codec, container
from ardm.coding.lockstep import CodingSetup, decode, decode_with_rest, encode, single_stage
from ardm.coding.tiles import cut_tiles, tile_grid
from ardm.core.orders import order_from_seed
from ardm.errors import DataError, FormatError
from fuzz.campaign import build_file
from tests.coding.checks import GOLDEN, REGEN, one_line, policy_nll, small_transformer, small_unet
from tests.tiny_nets import IntegerNet, StandInModel, TinyAttnNet, TinyConvNet, TinyNet


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
    assert header.shape == shape and header.K == 16 and header.version == 4
    assert header.crc32 is None
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
    """Six tiles share one stream: the payload is the model's NLL summed over the tiles (per
    file, not per tile) plus the 32 bits of the checksum it starts from, within -2 and +12
    bits; smaller than the tiles' own streams together; and every truncation of the file is
    refused with a one-line FormatError."""
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
    assert header.version == 4 and header.shape == shape
    assert torch.equal(codec.decompress(m, blob), x)
    tiles, pad = cut_tiles(x, net.shape)
    assert tiles.shape[0] == 6 and not pad.any()
    sigma, policy = order_from_seed(net.D, 5), m.policy_for_budget(budget)
    _, smoothed = policy_nll(net.eval(), tiles, sigma, policy)
    nll, bits = float(smoothed.sum()), 8 * len(body)
    crc = container.data_crc32(x.numpy(), net.K)
    assert crc >= 1 << 24  # a full word (this data)
    assert nll + crc.bit_length() - 2 <= bits <= nll + crc.bit_length() + 12, (bits, nll)
    per_tile = encode(
        CodingSetup(single_stage(net, sigma, policy), net.shape, net.K), tiles
    )  # version 2: one per tile
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
        "version": blob[:2] + b"\x0a" + blob[3:],
        "header only": blob[:10],
        "trailing": blob + b"\x01",
        "trailing zero": blob + b"\x00",
    }
    for bad in junk.values():
        with pytest.raises(FormatError) as e:
            codec.decompress(m, bad)
        one_line(e)
    with pytest.raises(FormatError, match="version 10"):
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


def test_every_payload_bit_flip_is_refused() -> None:
    """Version 4: each single-bit flip of a payload is refused with a one-line FormatError,
    by the decoder's rest (more than a word left, or a word that is not the decoded data's
    checksum) or by the coder; never wrong data, and never silently the same data (ANS
    decodes another stack to other values or another rest)."""
    m, _, files = _corruption_fixture()
    messages: set[str] = set()
    for blob in files[:2]:
        body = len(container.unpack(blob)[1])
        start = len(blob) - body
        for bit in range(8 * body):
            bad = bytearray(blob)
            bad[start + bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(FormatError) as e:
                codec.decompress(m, bytes(bad))
            messages.add(one_line(e).split(":")[0])
    assert "decoded data does not match its checksum" in messages
    assert "corrupt payload" in messages


def test_a_stream_from_another_word_is_refused() -> None:
    """The data checksum is the stream's initial state: a stream started from any other word
    (or from the empty state, as in version 3) decodes to the right values but is refused."""
    m, x, files = _corruption_fixture()
    crc = container.data_crc32(x[0].numpy(), m.K)
    stages = m.coding_stages(5, m.order_seed)
    header = files[0][: len(files[0]) - len(container.unpack(files[0])[1])]
    setup = CodingSetup(stages, m.shape, m.K)
    assert header + encode(setup, x[:1], initial=[crc])[0] == files[0]
    for word in (crc ^ 1, crc ^ (1 << 31), 0, 12345):
        stream = encode(setup, x[:1], initial=[word])[0]
        with pytest.raises(FormatError, match="does not match its checksum") as e:
            codec.decompress(m, header + stream)
        one_line(e)
    v3 = build_file(m, x[0], budget=5, seed=m.order_seed, version=3)
    assert torch.equal(codec.decompress(m, v3), x[0])  # version 3 still reads
    assert len(v3) > len(files[0])
    as_v4 = v3[:2] + b"\x04" + v3[3 : len(header)] + v3[len(header) + 4 :]  # crc32 field dropped
    with pytest.raises(FormatError, match="does not match its checksum"):
        codec.decompress(m, as_v4)


def data_with_crc(x: torch.Tensor, K: int, target: int) -> torch.Tensor:
    """``x`` (``K <= 256``: one byte per value) with its last four values changed so that
    ``data_crc32`` is ``target``. CRC-32 is affine over GF(2) in the message bits, and any
    32 consecutive bits reach every value: solve the 32 x 32 linear system."""
    assert K == 256 and x.numel() >= 4
    flat = x.reshape(-1).clone()
    flat[-4:] = 0
    base = container.data_crc32(flat.view(x.shape).numpy(), K)
    columns = []
    for bit in range(32):
        y = flat.clone()
        y[-4 + bit // 8] = 1 << (bit % 8)
        columns.append(container.data_crc32(y.view(x.shape).numpy(), K) ^ base)
    # Gaussian elimination: find bits v with XOR_j v_j columns[j] == base ^ target.
    rows = [(col, 1 << j) for j, col in enumerate(columns)]  # (value, which bits make it)
    basis: dict[int, tuple[int, int]] = {}
    for value, mask in rows:
        for pivot in sorted(basis, reverse=True):
            if value >> pivot & 1:
                value, mask = value ^ basis[pivot][0], mask ^ basis[pivot][1]
        if value:
            basis[value.bit_length() - 1] = (value, mask)
    want, chosen = base ^ target, 0
    for pivot in sorted(basis, reverse=True):
        if want >> pivot & 1:
            want, chosen = want ^ basis[pivot][0], chosen ^ basis[pivot][1]
    assert want == 0
    for bit in range(32):
        if chosen >> bit & 1:
            flat[-4 + bit // 8] |= 1 << (bit % 8)
    out = flat.view(x.shape)
    assert container.data_crc32(out.numpy(), K) == target
    return out


@pytest.mark.parametrize("target", [0, 1, 0xABCDEF, 0xFFFFFF, 1 << 24, 2**32 - 1])
@pytest.mark.parametrize("shape", [(1, 4, 4), (1, 5, 7)], ids=["native", "tiled"])
def test_checksum_edges(target: int, shape: tuple[int, ...]) -> None:
    """Data whose checksum is 0 (the encoder starts from the empty state, and the decoder must
    end empty), or below ``2**24`` (a top byte of 0 in the initial word), native and tiled."""
    m = StandInModel(TinyConvNet(256, (1, 4, 4), seed=8), kind="image")
    x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(target % 1000))
    x = data_with_crc(x, 256, target)
    blob = codec.compress(m, x, budget=3)
    assert isinstance(blob, bytes) and blob[-1] != 0
    assert torch.equal(codec.decompress(m, blob), x)
    header, body = container.unpack(blob)
    count = 1 if header.shape is None else math.prod(tile_grid(shape, m.shape))
    stream = container.unpack_stream(body, count)
    stages = m.coding_stages(3, m.order_seed)
    tiles, pad = cut_tiles(x, m.shape)
    setup = CodingSetup(stages, m.shape, 256, pad=pad, groups=[count])
    y, rest = decode_with_rest(setup, [stream])
    assert rest == [target] and torch.equal(y, tiles)
    if target == 0:  # a stream from the empty state: version 3's decoder reads it too
        assert torch.equal(decode(setup, [stream]), tiles)
    for n in range(len(blob)):
        with pytest.raises(FormatError) as e:
            codec.decompress(m, blob[:n])
        one_line(e)


class _SureOfZeroNet(TinyNet):
    """Every value is 0 with probability ``1 - 1e-13``: a stream of almost nothing."""

    def __init__(self, K: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.K, self.shape, self.D = K, shape, math.prod(shape)

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*x.shape, self.K), -30.0)
        logits[..., 0] = 0.0
        return torch.log_softmax(logits, dim=-1)


def test_a_short_tiled_stream_is_padded() -> None:
    """Version 4: a stream of little more than the checksum, for ten tiles, is padded with
    zero bytes to ``tiles - 1`` bytes (the coder's last byte is never zero, also from the
    checksum), and the padding is removed again."""
    m = StandInModel(_SureOfZeroNet(16, (1, 4, 4)), kind="image")
    x = torch.zeros(1, 4, 40, dtype=torch.long)  # 10 tiles
    blob = codec.compress(m, x, budget=2)
    assert isinstance(blob, bytes)
    _, body = container.unpack(blob)
    stream = container.unpack_stream(body, 10)
    assert (
        len(body) == 9 and 1 <= len(stream) <= 5 and body[len(stream) :] == bytes(9 - len(stream))
    )
    assert torch.equal(codec.decompress(m, blob), x)
    for n in range(len(blob)):
        with pytest.raises(FormatError) as e:
            codec.decompress(m, blob[:n])
        one_line(e)


def test_real_ardm_round_trip() -> None:
    """The real :class:`ardm.model.ARDM` (tiny U-Net) through compress/decompress."""
    from tests.conftest import tiny_image_model, tiny_text_model

    for model, K in ((tiny_image_model(K=16, shape=(1, 4, 4)), 16), (tiny_text_model(), 5)):
        x = torch.randint(0, K, (2, *model.shape), generator=torch.Generator().manual_seed(0))
        files = codec.compress(model, x, budget=5)
        assert isinstance(files, list)
        assert torch.equal(torch.stack([codec.decompress(model, f) for f in files]), x)


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


def _golden_v4_cases() -> dict[str, tuple[StandInModel, torch.Tensor, int]]:
    """The version-4 golden files (the current format): the data of the version-2 and -3
    files, the same fixed models, native and tiled."""
    v2, v3 = _golden_v2_cases(), _golden_v3_cases()
    return {
        "v4_image_8x8_budget10": v2["image_8x8_budget10"],
        "v4_text_40_budget40": v2["text_40_budget40"],
        "v4_image_11x13_tiled_budget5": v3["v3_image_11x13_tiled_budget5"],
        "v4_text_100_tiled_budget12": v3["v3_text_100_tiled_budget12"],
    }


@pytest.mark.parametrize("name", sorted(_golden_v2_cases()))
def test_golden_v2_files_still_decode(name: str) -> None:
    """Files of format version 2 decode, and are exactly the version-2 layout rebuilt by hand;
    a native file's version-3 payload is the same, a tiled file's is shorter; the version-4
    file of the same data is shorter still."""
    model, x, budget = _golden_v2_cases()[name]
    blob = (GOLDEN / f"{name}.ardm").read_bytes()
    header, body = container.unpack(blob)
    assert header.version == 2
    assert torch.equal(codec.decompress(model, blob), x)
    assert build_file(model, x, budget=budget, seed=model.order_seed, version=2) == blob
    v3 = build_file(model, x, budget=budget, seed=model.order_seed, version=3)
    if header.shape is None:
        assert v3 == blob[:2] + b"\x03" + blob[3:]
    else:
        assert len(container.unpack(v3)[1]) < len(body)
    now = codec.compress(model, x, budget=budget)
    assert isinstance(now, bytes) and container.unpack(now)[0].version == 4
    assert len(now) < len(v3)


@pytest.mark.parametrize("name", sorted(_golden_v3_cases()))
def test_golden_v3_files_still_decode(name: str) -> None:
    """Files of format version 3 (frozen) decode, and are exactly the version-3 layout
    rebuilt by hand (a ``crc32`` field, a stream from the empty state)."""
    model, x, budget = _golden_v3_cases()[name]
    blob = (GOLDEN / f"{name}.ardm").read_bytes()
    header, _ = container.unpack(blob)
    assert header.version == 3 and header.shape == tuple(x.shape)
    assert header.crc32 == container.data_crc32(x.numpy(), model.K)
    assert torch.equal(codec.decompress(model, blob), x)
    assert build_file(model, x, budget=budget, seed=model.order_seed, version=3) == blob
    for n in range(len(blob)):  # every truncation: a one-line FormatError
        with pytest.raises(FormatError) as e:
            codec.decompress(model, blob[:n])
        one_line(e)


@pytest.mark.parametrize("name", sorted(_golden_v4_cases()))
def test_golden_files(name: str) -> None:
    """The current format, byte for byte (``ARDM_REGEN_GOLDEN=1`` rewrites these files only)."""
    model, x, budget = _golden_v4_cases()[name]
    blob = codec.compress(model, x, budget=budget)
    assert isinstance(blob, bytes)
    path = GOLDEN / f"{name}.ardm"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(blob)
    assert blob == path.read_bytes(), "format or coder output changed (see module docstring)"
    header, body = container.unpack(blob)
    assert header.version == container.VERSION and header.crc32 is None
    assert header.shape == (None if tuple(x.shape) == model.shape else tuple(x.shape))
    assert torch.equal(codec.decompress(model, path.read_bytes()), x)
    count = 1 if header.shape is None else math.prod(tile_grid(header.shape, model.shape))
    stages = model.coding_stages(budget, model.order_seed)
    setup = CodingSetup(
        stages, model.shape, model.K, pad=cut_tiles(x, model.shape)[1], groups=[count]
    )
    _, rest = decode_with_rest(setup, [container.unpack_stream(body, count)])
    assert rest == [container.data_crc32(x.numpy(), model.K)]  # the checksum, in the stream
    for n in range(len(blob)):  # every truncation: a one-line FormatError
        with pytest.raises(FormatError) as e:
            codec.decompress(model, blob[:n])
        one_line(e)
