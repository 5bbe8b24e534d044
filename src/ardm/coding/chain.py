"""Files as chains of blocks, each coded given the bytes before it (format version 6).

A model trained with a known prefix (``model.context = c``, :mod:`ardm.core.context`) codes a
sequence of ``n`` values as blocks of ``B = D - c``: block ``[s, e)`` is the end of a window of
the model's ``D`` positions ``[e - D, e)``, whose positions before ``s`` (at least ``c``) are
known, the values already coded. Positions before the start of the chain hold the byte
:data:`ardm.core.context.PAD`, as in training. Within a block, the ``b = e - s`` values are
coded as an OA-ARDM given that prefix: order ``seeded_order(b, seed)``, and the DP policy
for ``budget`` calls on the model's calibrated block losses ``L[D - b:]`` (the tracker's slots
from the context on).

Segments. A chain must be decoded block after block. To decode a long file with batched network
calls anyway, the blocks are cut into segments of ``segment`` blocks, each a chain of its own
(its first block sees padding, not the previous segment's bytes); the decoder walks all
segments in lockstep: block ``j`` of every segment, step by step, one batched call per step.
The cost: each segment's first block is coded without the text before it.

One ANS stream per file. Decoding order: for block ``j``, for step ``i``, for segment ``g``,
pop that step's values in order of rank; the encoder, which knows every window in advance,
computes the rows block index by block index from the last and pushes in exactly the reverse
order. The stream starts from the data's CRC-32, as in format versions 4 and 5.

Probabilities come from the model's portable form only (integer tables, exact on every
machine): a chain file decodes anywhere, with any batch and any thread count.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ardm.coding.ans import Decoder, Encoder
from ardm.coding.stages import exact_rows
from ardm.core.context import PAD
from ardm.core.policy import optimal_policy, step_bounds
from ardm.core.seeded_order import seeded_order

CHAIN_BATCH = 16
"""Windows per network call (exact tables: changes the speed only)."""

CHAIN_BUDGET = 8
"""Default network calls per block (``ardm compress`` without ``--budget``)."""

MIN_SEGMENT_BYTES = 1024
"""A file is cut into segments of at least this many values (by default)..."""
MAX_SEGMENTS = 8
"""... and into at most this many: a 20 KB file decodes as 8 chains of 2.5 KB in lockstep,
a 4 KB file as 4 of 1 KB, a 1 KB file as one. Each segment's first block is coded without
the text before it (``benchmarks/results/text_files.md`` measures the cost)."""


def default_segment_bytes(n: int) -> int:
    """The segment length the coder picks for ``n`` values (stored in the file)."""
    segments = max(1, min(MAX_SEGMENTS, n // MIN_SEGMENT_BYTES))
    return -(-n // segments)

Logits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x (G, D), known (G, D)) -> (G, D, O)``: the integer network's outputs."""
Rows = Callable[[torch.Tensor], np.ndarray]
"""``(outputs (m, O)) -> (m, K)`` float64 rows for ``constriction`` (exact weights)."""


@dataclass(frozen=True)
class Block:
    """One block: the window the network sees and which of its positions are coded.

    ``index (D,)`` int64: the flat data position shown at each window position, ``-1`` for
    padding (the layout's ``pad`` value, known); ``coded (b,)`` int64: the window positions
    whose values this block codes (unknown before it), in window order. Every other window
    position is known: coded by an earlier wave, or padding."""

    index: torch.Tensor
    coded: torch.Tensor


class Layout(Protocol):
    """How ``n`` values are cut into blocks: ``waves()`` lists them in waves whose blocks do not
    depend on each other (a block sees only values coded in earlier waves)."""

    @property
    def n(self) -> int:
        """Values in all."""
        ...

    @property
    def pad(self) -> int:
        """The value of padding positions."""
        ...

    def waves(self) -> list[list[Block]]: ...


@dataclass(frozen=True)
class ChainLayout:
    """``n`` values of a sequence coded by a model of window ``D`` with ``context`` known values,
    in segments of ``segment`` blocks (0: one chain): wave ``j`` is block ``j`` of every segment."""

    n: int
    D: int
    context: int
    segment: int
    pad: int = PAD

    def __post_init__(self) -> None:
        if not 0 < self.context < self.D:
            raise ValueError(f"context must lie in (0, {self.D}), got {self.context}")
        if self.n < 1 or self.segment < 0:
            raise ValueError(f"bad chain layout: n={self.n}, segment={self.segment}")

    @property
    def block(self) -> int:
        """Values per block: ``D - context``."""
        return self.D - self.context

    def segments(self) -> list[list[tuple[int, int]]]:
        """The blocks ``(s, e)`` of each segment, in order."""
        B = self.block
        spans = [(s, min(s + B, self.n)) for s in range(0, self.n, B)]
        per = self.segment or len(spans)
        return [spans[i : i + per] for i in range(0, len(spans), per)]

    def waves(self) -> list[list[Block]]:
        """Block ``[s, e)`` of a segment starting at ``s0`` sees the window ``[e - D, e)``, the
        positions before ``s0`` as padding, and codes its last ``e - s`` positions."""
        segs = self.segments()
        out: list[list[Block]] = []
        for j in range(max(len(seg) for seg in segs)):
            wave = []
            for seg in segs:
                if j < len(seg):
                    s, e = seg[j]
                    index = torch.arange(e - self.D, e)  # (D,)
                    index[index < seg[0][0]] = -1
                    wave.append(Block(index, torch.arange(self.D - (e - s), self.D)))
            out.append(wave)
        return out


def segment_blocks(layout_D: int, context: int, segment_bytes: int) -> int:
    """Blocks per segment for a segment length in values, rounded up (0: one chain)."""
    if segment_bytes <= 0:
        return 0
    return max(1, -(-segment_bytes // (layout_D - context)))


@dataclass(frozen=True)
class _BlockPlan:
    """How a block of ``b`` values is coded: ranks ``(b,)`` and steps ``[(l, r), ...]``,
    and for each step the block's values it codes (indices into ``Block.coded``), in rank
    order."""

    b: int
    rank: torch.Tensor
    steps: list[tuple[int, int]]
    coded: list[torch.Tensor]


class ChainPlan:
    """Block plans for one model's block losses ``L`` (the tracker's ``L`` over ``D``: a block
    of ``b`` values uses ``L[D - b:]``), ``budget`` calls per block and order seed ``seed``."""

    def __init__(self, L: np.ndarray, D: int, budget: int, seed: int) -> None:
        self.L, self.D, self.budget, self.seed = np.asarray(L, dtype=np.float64), D, budget, seed

    @functools.cache  # noqa: B019 - one plan per file, few block lengths
    def block(self, b: int) -> _BlockPlan:
        rank = seeded_order(b, self.seed)  # (b,) rank of each block value
        policy, _ = optimal_policy(self.L[self.D - b :], min(self.budget, b))
        steps = step_bounds(policy, b)
        by_rank = torch.argsort(rank)  # (b,) block values in rank order
        coded = [by_rank[left:right] for left, right in steps]
        return _BlockPlan(b, rank, steps, coded)


@dataclass
class _Job:
    item: int  # the block's place in its wave
    step: int
    window: torch.Tensor  # (D,) values, unknown ones zeroed
    known: torch.Tensor  # (D,)
    coded: torch.Tensor  # (m,) window positions coded by this step, in rank order


def _job(x: torch.Tensor, pad: int, block: Block, bp: _BlockPlan, item: int, i: int) -> _Job:
    """Step ``i`` of ``block``: its window (padding, and the values of ``x (n,)`` coded so far)."""
    w = torch.where(block.index >= 0, x[block.index.clamp(min=0)].long(), pad)  # (D,)
    known = torch.ones(w.shape[0], dtype=torch.bool)
    known[block.coded] = bp.rank < bp.steps[i][0]
    return _Job(item, i, torch.where(known, w, 0), known, block.coded[bp.coded[i]])


@contextmanager
def _pool() -> Iterator[ThreadPoolExecutor | None]:
    """Workers for the network calls: one per torch thread, each with one intra-op thread
    (exact integer calls give the same bits with any split; on a loaded 2-core machine two
    single-threaded workers beat one two-threaded call, benchmarks/results/portable_threads.md).
    """
    threads = torch.get_num_threads()
    if threads <= 1:
        yield None
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)


def _rows_of(
    jobs: list[_Job], logits: Logits, rows: Rows, batch: int, pool: ThreadPoolExecutor | None
) -> list[tuple[_Job, np.ndarray]]:
    """Each job with its rows ``(m, K)``: the windows go to the network in chunks of at most
    ``batch``, spread over the ``pool``'s workers."""
    workers = 1 if pool is None else pool._max_workers
    size = max(1, min(batch, -(-len(jobs) // workers)))
    chunks = [jobs[lo : lo + size] for lo in range(0, len(jobs), size)]

    def run(chunk: list[_Job]) -> list[tuple[_Job, np.ndarray]]:
        x = torch.stack([j.window for j in chunk])  # (G, D)
        known = torch.stack([j.known for j in chunk])  # (G, D)
        out = logits(x, known)  # (G, D, O)
        return [(job, rows(out[g, job.coded])) for g, job in enumerate(chunk)]

    done = map(run, chunks) if pool is None or len(chunks) == 1 else pool.map(run, chunks)
    return [pair for part in done for pair in part]


def encode_chain(
    x: torch.Tensor,
    layout: Layout,
    plan: ChainPlan,
    logits: Logits,
    rows: Rows,
    *,
    initial: int,
    batch: int = CHAIN_BATCH,
) -> bytes:
    """The ANS stream of ``x (n,)`` (flat) coded as ``layout``'s waves of blocks.

    Decoding order: for each wave, for each step, for each block of the wave, pop that step's
    values in rank order. The encoder knows every window in advance: it evaluates the steps of
    several waves in one batch (about ``batch`` windows per worker), from the last wave back,
    and pushes them in exactly the reverse order."""
    waves = layout.waves()
    enc = Encoder(initial)
    with _pool() as pool:
        workers = 1 if pool is None else pool._max_workers
        cap, hi = workers * batch, len(waves)
        while hi > 0:
            lo, windows = hi, 0
            while lo > 0 and (lo == hi or windows + len(waves[lo - 1]) * plan.budget <= cap):
                windows += len(waves[lo - 1]) * plan.budget
                lo -= 1
            jobs: list[tuple[int, _Job]] = []
            for w in range(lo, hi):
                for item, block in enumerate(waves[w]):
                    bp = plan.block(int(block.coded.numel()))
                    jobs += [
                        (w, _job(x, layout.pad, block, bp, item, i)) for i in range(len(bp.steps))
                    ]
            pairs = _rows_of([job for _, job in jobs], logits, rows, batch, pool)
            done = {
                (w, job.step, job.item): (job, r)
                for (w, _), (job, r) in zip(jobs, pairs, strict=True)
            }
            for key in sorted(done, reverse=True):  # decoding order is (wave, step, block)
                job, r = done[key]
                index = waves[key[0]][key[2]].index
                enc.push_step(x[index[job.coded]].numpy().astype(np.int64), r)
            hi = lo
    return enc.get_bytes()


def decode_chain(
    payload: bytes,
    layout: Layout,
    plan: ChainPlan,
    logits: Logits,
    rows: Rows,
    *,
    batch: int = CHAIN_BATCH,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, int | None]:
    """Decode ``layout.n`` values: ``(x (n,), what the stream has left)`` (see
    :meth:`ardm.coding.ans.Decoder.remaining`). ``progress(values)`` after each wave."""
    with _pool() as pool:
        dec = Decoder(payload)
        x = torch.zeros(layout.n, dtype=torch.long)
        for wave in layout.waves():
            plans = [plan.block(int(block.coded.numel())) for block in wave]
            for i in range(max(len(bp.steps) for bp in plans)):
                jobs = [
                    _job(x, layout.pad, block, bp, item, i)
                    for item, (block, bp) in enumerate(zip(wave, plans, strict=True))
                    if i < len(bp.steps)
                ]
                for job, r in _rows_of(jobs, logits, rows, batch, pool):
                    x[wave[job.item].index[job.coded]] = torch.from_numpy(dec.pop_step(r))
            if progress is not None:
                progress(sum(int(block.coded.numel()) for block in wave))
    return x, dec.remaining()


def portable_rows(portable: object) -> tuple[Logits, Rows]:
    """The integer network's outputs and the coder's exact rows of a portable model
    (:class:`ardm.portable.model.PortableModel` with a categorical or mixture head)."""
    from ardm.portable.model import head_pmf

    net = portable.net  # type: ignore[attr-defined]
    shape = tuple(portable.shape)  # type: ignore[attr-defined]
    if portable.head not in ("categorical", "mixture"):  # type: ignore[attr-defined]
        raise ValueError(f"chains need a categorical or mixture head, not {portable.head}")  # type: ignore[attr-defined]
    pmf = head_pmf(portable.head)  # type: ignore[attr-defined]

    def logits(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        G, D = x.shape
        t = known.sum(dim=1)  # (G,)
        with torch.no_grad():
            out = net.logits(x.view(G, *shape), known.view(G, *shape), t)  # (G, *shape, O)
        return out.reshape(G, D, -1)  # type: ignore[no-any-return]

    def rows(out: torch.Tensor) -> np.ndarray:  # (m, O) -> (m, K)
        return exact_rows(pmf(portable, out[None], None, None)[0])  # type: ignore[arg-type]

    return logits, rows


# ---------------------------------------------------------------------------- files
MAX_CHAIN_VALUES = 4 << 20
"""Longest file a chain codes (4 MiB): at the default budget a larger one would take hours."""


def _chain_parts(model: object) -> tuple[object, int, int]:
    """A chain model's portable form, window ``D`` and context, or a one-line error."""
    from ardm.errors import FormatError

    context = int(getattr(model, "context", 0))
    portable = getattr(model, "portable", None)
    if not context:
        raise FormatError(
            "this file is a chain of blocks with context (format v6); this "
            "model was not trained with a known prefix (model.context)"
        )
    if portable is None:
        raise FormatError(
            "chain files (format v6) are coded by the model's portable form, "
            "which this model lacks (`ardm export` freezes one)"
        )
    return portable, int(model.D), context  # type: ignore[attr-defined]


def _layout(model: object, shape: tuple[int, ...], segment: int) -> tuple[Layout, int, int]:
    """The layout of data of ``shape`` for a chain model: a sequence's :class:`ChainLayout`
    (``segment`` blocks per segment), an image's :class:`ardm.coding.wavefront.WavefrontLayout`
    (``segment`` must be 0); with the number of blocks and the most values of one block."""
    from ardm.coding.wavefront import WavefrontLayout
    from ardm.core.context import context_region

    tile = tuple(int(v) for v in model.shape)  # type: ignore[attr-defined]
    context = int(model.context)  # type: ignore[attr-defined]
    block = len(context_region(tile, context)) - int(context_region(tile, context).sum())
    if len(tile) == 1:
        layout: Layout = ChainLayout(math.prod(shape), tile[0], context, segment)
        return layout, -(-math.prod(shape) // block), block
    if segment:
        raise ValueError("images are coded in waves, not segments")
    wave = WavefrontLayout(shape, tile, context)  # type: ignore[arg-type]
    return wave, math.prod(wave.grid), block


def _check_shape(model: object, shape: tuple[int, ...], exc: type[Exception]) -> None:
    """Data of ``shape`` fits a chain model: a sequence for a sequence model, an image with
    the model's channels for an image model."""
    tile = tuple(int(v) for v in model.shape)  # type: ignore[attr-defined]
    ok = len(shape) == len(tile) and min(shape, default=0) >= 1
    if ok and len(tile) == 3:
        ok = shape[0] == tile[0]
    if not ok:
        want = "a sequence" if len(tile) == 1 else f"an image of {tile[0]} channels"
        raise exc(f"this model codes {want}, got shape {shape}")
    if math.prod(shape) > MAX_CHAIN_VALUES:
        raise exc(
            f"{math.prod(shape):,} values is more than this coder takes ({MAX_CHAIN_VALUES:,}): "
            "at about a thousand values per second it would take hours; split the file or "
            "use zstd/xz"
        )


def compress_chain(
    model: object,
    x: torch.Tensor,
    *,
    budget: int,
    segment_bytes: int | None = None,
    seed: int | None = None,
) -> bytes:
    """One file of format version 6: a sequence ``x (n,)`` as chains of blocks in segments of
    about ``segment_bytes`` values (0: one chain; ``None``: :func:`default_segment_bytes`),
    or an image ``x (C, H, W)`` in waves of
    blocks; ``budget`` calls per block (clamped to its size), order seed ``seed`` (default:
    the model's)."""
    from ardm.coding.container import (
        CHAIN_VERSION,
        FINGERPRINT_BYTES,
        Header,
        data_crc32,
        pack,
        pack_stream,
        write_varint,
    )
    from ardm.errors import DataError

    portable, D, context = _chain_parts(model)
    K = int(model.K)  # type: ignore[attr-defined]
    shape = tuple(int(v) for v in x.shape)
    if x.numel() == 0:
        raise DataError("empty input: there is nothing to compress")
    _check_shape(model, shape, DataError)
    values = x.reshape(-1).long().cpu()
    if values.min() < 0 or values.max() >= K:
        raise DataError(f"data values must lie in [0, {K})")
    seed = int(model.order_seed if seed is None else seed)  # type: ignore[attr-defined]
    if segment_bytes is None:
        segment_bytes = default_segment_bytes(math.prod(shape))
    segment = segment_blocks(D, context, segment_bytes) if len(shape) == 1 else 0
    layout, blocks, most = _layout(model, shape, segment)
    if segment >= blocks:
        layout, blocks, most = _layout(model, shape, 0)
    budget = max(1, min(int(budget), most))
    plan = ChainPlan(model.tracker.L(), D, budget, seed)  # type: ignore[attr-defined]
    logits, rows = portable_rows(portable)
    stream = encode_chain(values, layout, plan, logits, rows, initial=data_crc32(values.numpy(), K))
    header = Header(
        kind=model.kind,  # type: ignore[attr-defined]
        budget=budget,
        seed=seed,
        fingerprint=bytes(portable.fingerprint())[:FINGERPRINT_BYTES],  # type: ignore[attr-defined]
        K=K,
        shape=shape,
        version=CHAIN_VERSION,
    )
    segment = layout.segment if isinstance(layout, ChainLayout) else 0
    # a payload has at least blocks - 1 bytes (pack_stream): a short file cannot declare a
    # long decode
    return pack(header, write_varint(segment) + pack_stream(stream, blocks))


def decompress_chain(
    model: object, header: object, body: bytes, *, progress: Callable[[int], None] | None = None
) -> torch.Tensor:
    """The data of a version-6 file (its parsed ``header`` and payload ``body``), checked
    against the checksum the stream carries; anything wrong is a one-line FormatError."""
    from ardm.coding.container import FINGERPRINT_BYTES, data_crc32, read_varint, unpack_stream
    from ardm.errors import FormatError

    portable, D, _ = _chain_parts(model)
    ours = bytes(portable.fingerprint())[:FINGERPRINT_BYTES]  # type: ignore[attr-defined]
    if header.fingerprint != ours:  # type: ignore[attr-defined]
        raise FormatError(
            f"this file was compressed with another model (fingerprint "
            f"{header.fingerprint.hex()}, this model is {ours.hex()})"  # type: ignore[attr-defined]
        )
    K = int(model.K)  # type: ignore[attr-defined]
    shape = header.shape  # type: ignore[attr-defined]
    if header.K != K or shape is None:  # type: ignore[attr-defined]
        raise FormatError(f"corrupt header: a chain file holds values of K={K} and its shape")
    _check_shape(model, tuple(shape), FormatError)
    segment, pos = read_varint(body, 0, "segment length")
    try:
        layout, blocks, most = _layout(model, tuple(shape), 0)
        if segment:
            if segment >= blocks:
                raise ValueError(f"segments of {segment} blocks in a file of {blocks}")
            layout, blocks, most = _layout(model, tuple(shape), segment)
    except ValueError as e:
        raise FormatError(f"corrupt payload: {e}") from None
    if not 1 <= header.budget <= most:  # type: ignore[attr-defined]
        raise FormatError(f"corrupt header: budget {header.budget} outside [1, {most}]")  # type: ignore[attr-defined]
    plan = ChainPlan(model.tracker.L(), D, int(header.budget), int(header.seed))  # type: ignore[attr-defined]
    logits, rows = portable_rows(portable)
    stream = unpack_stream(body[pos:], blocks)  # before any network call
    x, rest = decode_chain(stream, layout, plan, logits, rows, progress=progress)
    if rest is None:
        raise FormatError("corrupt payload: more than the 32-bit checksum is left after decoding")
    if data_crc32(x.numpy(), K) != rest:
        raise FormatError(
            "decoded data does not match its checksum: the file is corrupt (the integer "
            "coder's tables are the same on every machine)"
        )
    return x.view(tuple(shape))
