"""Chains of blocks coded with context (format version 6).

A tiny byte model with a known prefix (``model.context``), frozen to its integer form, codes
texts of every awkward length in one or several segments; the decoder gives the same values
back with any batch size, and a damaged file or another model's file is refused in one line.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import pytest
import torch

from ardm.coding.chain import ChainLayout, ChainPlan, decode_chain, encode_chain, portable_rows
from ardm.coding.chain_files import compress_chain
from ardm.coding.codec import compress, decompress
from ardm.coding.container import CHAIN_VERSION, unpack
from ardm.config import load_config
from ardm.errors import DataError, FormatError
from ardm.models.build import build_model
from ardm.portable.model import freeze
from tests.conftest import perturb

D, CONTEXT = 16, 8
TEXT = "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014I went to sea.\n"


def tiny_chain_model(seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    cfg = load_config(
        "english-bytes-cpu",
        [
            f"data.seq_len={D}",
            f"model.context={CONTEXT}",
            "model.transformer.heads=1",
            "model.transformer.dim=16",
            "model.transformer.heads=2",
            "model.transformer.depth=1",
        ],
    )
    model = build_model(cfg).eval()
    data = torch.tensor(list(TEXT.encode() * 4), dtype=torch.long)
    items = data[: (data.numel() // D) * D].view(-1, D)  # (N, D)
    perturb(model.net, scale=0.3, seed=seed)  # outputs that depend on the known values
    with torch.no_grad():  # a little structure, so that the tables are not uniform
        model.net.head.bias.copy_(torch.log(torch.bincount(data, minlength=256) + 0.5))
    model.tracker.set_all(np.linspace(6.0, 2.0, D))
    model.portable = freeze(model, items, passes=1)
    return model


@pytest.fixture(scope="module")
def chain_model():  # type: ignore[no-untyped-def]
    return tiny_chain_model()


def as_bytes(text: str) -> torch.Tensor:
    return torch.tensor(list(text.encode()), dtype=torch.uint8)


def test_layout_blocks_cover_the_file_once_in_order() -> None:
    for n in (1, 7, 8, 9, 64, 65, 100):
        for segment in (0, 1, 3):
            layout = ChainLayout(n, D, CONTEXT, segment)
            spans = [span for seg in layout.segments() for span in seg]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            assert all(0 < e - s <= D - CONTEXT for s, e in spans)
            if segment:
                assert all(len(seg) <= segment for seg in layout.segments())


@pytest.mark.parametrize("n", [1, 7, 8, 9, 40, 333])
@pytest.mark.parametrize("budget", [1, 3, 100])
def test_texts_of_any_length_round_trip(chain_model, n: int, budget: int) -> None:  # type: ignore[no-untyped-def]
    x = as_bytes(TEXT * 5)[:n]
    blob = compress(chain_model, x, budget=budget)
    header, _ = unpack(blob)
    assert header.version == CHAIN_VERSION and header.shape == (n,)
    assert header.budget == min(budget, D - CONTEXT)
    assert torch.equal(decompress(chain_model, blob), x.long())


def test_segments_round_trip_and_a_single_chain_costs_no_more(chain_model) -> None:  # type: ignore[no-untyped-def]
    x = as_bytes(TEXT * 3)
    sizes = {}
    for segment_bytes in (0, 16, 40):
        blob = compress_chain(chain_model, x, budget=4, segment_bytes=segment_bytes)
        assert torch.equal(decompress(chain_model, blob), x.long())
        sizes[segment_bytes] = len(blob)
    assert len(sizes) == 3


def test_decoding_does_not_depend_on_the_batch(chain_model) -> None:  # type: ignore[no-untyped-def]
    x = as_bytes(TEXT * 2).long()
    layout = ChainLayout(x.numel(), D, CONTEXT, 2)
    plan = ChainPlan(chain_model.tracker.L(), D, 3, 11)
    logits, rows = portable_rows(chain_model.portable)
    stream = encode_chain(x, layout, plan, logits, rows, initial=1 << 30, batch=32)
    assert stream == encode_chain(x, layout, plan, logits, rows, initial=1 << 30, batch=1)
    for batch in (1, 2, 32):
        y, rest = decode_chain(stream, layout, plan, logits, rows, batch=batch)
        assert torch.equal(y, x) and rest == 1 << 30


def test_a_damaged_file_or_another_models_file_is_refused(chain_model) -> None:  # type: ignore[no-untyped-def]
    x = as_bytes(TEXT)
    blob = compress(chain_model, x, budget=4)
    damaged = bytearray(blob)
    damaged[len(blob) // 2 + 8] ^= 0x10
    with pytest.raises(FormatError):
        decompress(chain_model, bytes(damaged))
    with pytest.raises(FormatError, match="another model"):
        decompress(tiny_chain_model(seed=1), blob)
    with pytest.raises(FormatError, match=r"truncated|corrupt"):
        decompress(chain_model, blob[:-3])


def test_bad_inputs_get_one_line_errors(chain_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="empty"):
        compress(chain_model, torch.zeros(0, dtype=torch.uint8), budget=4)
    with pytest.raises(DataError, match=r"\[0, 256\)"):
        compress(chain_model, torch.tensor([1, 300]), budget=4)
    with pytest.raises(ValueError, match="budget"):
        compress(chain_model, as_bytes("abc"), budget=0)


def test_the_tiled_coder_still_codes_a_context_model(chain_model) -> None:  # type: ignore[no-untyped-def]
    x = as_bytes(TEXT)
    blob = compress(chain_model, x, budget=4, version=5)
    assert unpack(blob)[0].version == 5
    assert torch.equal(decompress(chain_model, blob), x.long())


@pytest.mark.parametrize("version", [7, 9])
def test_the_stream_costs_what_the_model_says_given_the_true_known_values(
    chain_model,  # type: ignore[no-untyped-def]
    version: int,
) -> None:
    """Recompute, independently of the coder, the code length of a text: every block's every
    step, the window holding the true values before the block and the block's values coded at
    earlier steps. The stream must cost that, plus the checksum it starts from (32 bits) and
    under a byte of rounding: so no known value reaches the network wrong (a mistake made the
    same way on both sides would still round-trip). Version 7 codes each block in the order
    ``seeded_order(b, seed)``, version 9 in the spread order of its positions."""
    from ardm.core.context import PAD
    from ardm.core.seeded_order import seeded_order
    from ardm.core.spread_order import spread_ranks
    from ardm.portable.pmf import categorical_pmf, pmf_nll_bits

    x = as_bytes(TEXT * 2).long()
    n, B, budget, seed = x.numel(), D - CONTEXT, 3, int(chain_model.order_seed)
    plan = ChainPlan(chain_model.tracker.L(), D, budget, seed)
    bits = 0.0
    for s in range(0, n, B):
        e = min(s + B, n)
        b = e - s
        idx = torch.arange(e - D, e)
        window = torch.where(idx >= 0, x[idx.clamp(min=0)], PAD)  # the true values
        spread = spread_ranks(torch.arange(b)[:, None])
        rank = seeded_order(b, seed) if version == 7 else spread
        for left, right in plan.block(b).steps:
            known = torch.ones(D, dtype=torch.bool)
            known[D - b :] = rank < left
            logits = chain_model.portable.net.logits(
                torch.where(known, window, 0)[None], known[None], known.sum()[None]
            )[0]
            coded = (D - b) + torch.nonzero((rank >= left) & (rank < right)).flatten()
            w = categorical_pmf(logits[coded])
            bits += float(pmf_nll_bits(w, window[coded]).sum())
    blob = compress_chain(chain_model, x, budget=budget, segment_bytes=0, version=version)
    assert blob[2] == version
    header_bytes = len(blob) - len(unpack(blob)[1]) + 2  # and the segment and context varints
    stream_bits = 8 * (len(blob) - header_bytes)
    assert bits + 32 - 8 <= stream_bits <= bits + 32 + 8


def test_a_short_file_cannot_declare_a_long_decode(chain_model) -> None:  # type: ignore[no-untyped-def]
    from ardm.coding.container import pack

    blob = compress(chain_model, as_bytes(TEXT), budget=4)
    header, body = unpack(blob)
    huge = pack(dataclasses.replace(header, shape=(1 << 22,)), body)  # 4 Mi values, same body
    start = time.perf_counter()
    with pytest.raises(FormatError, match="truncated"):
        decompress(chain_model, huge)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("context", [2, CONTEXT, 12])
def test_any_context_round_trips_and_is_stored_in_the_file(chain_model, context: int) -> None:  # type: ignore[no-untyped-def]
    from ardm.coding.container import read_varint

    x = as_bytes(TEXT * 2)
    blob = compress_chain(chain_model, x, budget=3, segment_bytes=40, context=context)
    _, body = unpack(blob)
    _, pos = read_varint(body, 0, "segment length")
    assert read_varint(body, pos, "context")[0] == context
    assert torch.equal(decompress(chain_model, blob), x.long())


@pytest.mark.parametrize("context", [0, D, 200])
def test_a_context_outside_the_window_is_refused(chain_model, context: int) -> None:  # type: ignore[no-untyped-def]
    from ardm.coding.container import pack, write_varint

    blob = compress_chain(chain_model, as_bytes(TEXT), budget=3, segment_bytes=0)
    header, body = unpack(blob)
    assert body[:2] == write_varint(0) + write_varint(CONTEXT)
    with pytest.raises(FormatError, match=r"corrupt payload: context must lie in \(0, 16\)"):
        decompress(chain_model, pack(header, write_varint(0) + write_varint(context) + body[2:]))


def test_version_6_files_are_read_with_the_models_context(chain_model) -> None:  # type: ignore[no-untyped-def]
    from tests.coding.chain_versions import as_v6

    x = as_bytes(TEXT * 2)
    v6 = as_v6(compress_chain(chain_model, x, budget=3, context=CONTEXT, version=7), CONTEXT)
    assert v6[2] == 6
    assert torch.equal(decompress(chain_model, v6), x.long())
    other = as_v6(
        compress_chain(chain_model, x, budget=3, context=4, version=7), 4
    )  # never written so
    with pytest.raises(FormatError):
        decompress(chain_model, other)
