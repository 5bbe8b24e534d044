"""Files as chains of blocks, each coded given the bytes before it (format versions 7 and 6).

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
from ardm.coding.stages import exact_rows, takes_positions
from ardm.core.context import PAD
from ardm.core.policy import optimal_policy, step_bounds
from ardm.core.seeded_order import seeded_order
from ardm.core.spread_order import block_ranks

CHAIN_BATCH = 16
"""Windows per network call when the caller gives no ``batch`` (read at each call; exact
tables: it changes the speed only)."""

CHAIN_CONTEXT = 16
"""Known bytes before a block of text (at most the model's ``context``): a window of 128
holds 16 bytes of context and a block of 112. At the same network calls per byte a short
context codes smaller than the trained 64 (``english-bytes``, 4 files of 4 KB, one call per
8 bytes: context 64 2.944 bits per byte, 32 2.903, 16 2.848, 8 2.846): within a block the
values coded in one step are neighbours, and a longer block spreads them further apart. In
spread orders (format version 9) the context matters little (8: 2.703, 16: 2.710, 32: 2.707,
64: 2.737), so it stays 16."""

CHAIN_BYTES_PER_CALL = 8.0
"""Default budget of a block of text: one network call per 8 bytes of the block (14 calls for
a block of 112: ``ardm compress`` without ``--budget``). Session 12 made it one per 6.25 (18
calls), for 1.5-2 % smaller files in seeded orders (format version 7). In spread orders
(version 9) more calls buy almost nothing (``english-bytes``, 4 files of 4 KB: 10 calls 2.714
bits per byte, 14 2.710, 18 2.708, 28 2.706, 56 2.706; 7 calls 2.738 and 4 calls 2.834), so
session 13 went back to 14: 0.1 % larger than 18, about 1.35x as fast
(``benchmarks/results/orders.md``)."""


def chain_budget(D: int, context: int) -> int:
    """The default network calls per block of ``D - context`` values."""
    return math.ceil((D - context) / CHAIN_BYTES_PER_CALL)


WAVE_BUDGET = 6
"""Default network calls per block of an image (a photo's blocks are 9x larger than a text
block, and a 768 x 512 photo has 700 of them): on the 4 held-out Kodak photos 6 calls give
3.840 bits per sub-pixel at 36-37 s per photo (``ardm compress``, 2 threads), 4 calls 3.910 at
28-30 s; on kodim17 8 calls give 3.637 against 3.655 at 6, for 1.24x the time
(``benchmarks/results/photos.md``)."""

MIN_SEGMENT_BYTES = 112
"""A file is cut into segments of at most about this many values each (one block of the
shipped ``english-bytes``, 16 bytes of context in its 128-byte window)..."""
MAX_SEGMENTS = 16
"""... and into at most this many: a 20 KB file decodes as 16 chains of 1.25 KB in lockstep,
a 4 KB file as 16 of 250 bytes, a 1 KB file as 9 of one block each. Each segment's first block
is coded without the text before it (``benchmarks/results/text_files.md`` measures the cost:
on 1 KB files with ``english-bytes``, 3 segments of 334 bytes gave 2.971 bits per byte and
869 B/s decoding; one block per segment costs nothing there and decodes faster, tiles
without any context giving 2.957)."""


def default_segment_bytes(n: int) -> int:
    """The segment length the coder picks for ``n`` values (stored in the file)."""
    segments = max(1, min(MAX_SEGMENTS, -(-n // MIN_SEGMENT_BYTES)))
    return -(-n // segments)


Logits = Callable[..., torch.Tensor]
"""``(x (G, D), known (G, D)) -> (G, D, O)``: the integer network's outputs; with a third
argument ``positions (m,)`` (where the network takes it) only their rows ``(G, m, O)``."""
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
    of ``b`` values uses ``L[D - b:]``), ``budget`` calls per block, and the order within a
    block: ``seeded_order(b, seed)`` (format versions 6 and 7), or with ``spread`` the spread
    order of the block's values by their place in the window of shape ``tile``
    (:func:`ardm.core.spread_order.block_ranks`, format version 9)."""

    def __init__(
        self,
        L: np.ndarray,
        D: int,
        budget: int,
        seed: int,
        *,
        spread: bool = False,
        tile: tuple[int, ...] | None = None,
    ) -> None:
        self.L, self.D, self.budget, self.seed = np.asarray(L, dtype=np.float64), D, budget, seed
        self.spread = spread
        self.tile = (D,) if tile is None else tuple(tile)

    def for_block(self, block: Block) -> _BlockPlan:
        """The plan of ``block``: by its size, or with a spread order by its coded positions."""
        if not self.spread:
            return self.block(int(block.coded.numel()))
        return self._spread_block(tuple(block.coded.tolist()))

    @functools.cache  # noqa: B019 - one plan per file, few block lengths
    def block(self, b: int) -> _BlockPlan:
        return self._plan(seeded_order(b, self.seed))  # (b,) rank of each block value

    @functools.cache  # noqa: B019 - one plan per file, few block shapes
    def _spread_block(self, coded: tuple[int, ...]) -> _BlockPlan:
        return self._plan(block_ranks(self.tile, torch.tensor(coded, dtype=torch.int64)))

    def _plan(self, rank: torch.Tensor) -> _BlockPlan:
        b = int(rank.numel())
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
    ``batch``, spread over the ``pool``'s workers. Where the network takes positions
    (:func:`ardm.coding.stages.takes_positions`), jobs that code the same window positions
    share chunks, and the network computes their rows only."""
    at = takes_positions(logits)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, job in enumerate(jobs):  # one group, or one per set of coded positions
        groups.setdefault(tuple(job.coded.tolist()) if at else (), []).append(i)
    workers = 1 if pool is None else pool._max_workers
    size = max(1, min(batch, -(-len(jobs) // workers)))
    chunks = [ids[lo : lo + size] for ids in groups.values() for lo in range(0, len(ids), size)]

    def run(chunk: list[int]) -> list[np.ndarray]:
        x = torch.stack([jobs[i].window for i in chunk])  # (G, D)
        known = torch.stack([jobs[i].known for i in chunk])  # (G, D)
        if at:
            out = logits(x, known, jobs[chunk[0]].coded)  # (G, m, O)
            return [rows(out[g]) for g in range(len(chunk))]
        out = logits(x, known)  # (G, D, O)
        return [rows(out[g, jobs[i].coded]) for g, i in enumerate(chunk)]

    done = map(run, chunks) if pool is None or len(chunks) == 1 else pool.map(run, chunks)
    found: dict[int, np.ndarray] = {}
    for chunk, part in zip(chunks, done, strict=True):
        found.update(zip(chunk, part, strict=True))
    return [(job, found[i]) for i, job in enumerate(jobs)]


def encode_chain(
    x: torch.Tensor,
    layout: Layout,
    plan: ChainPlan,
    logits: Logits,
    rows: Rows,
    *,
    initial: int,
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """The ANS stream of ``x (n,)`` (flat) coded as ``layout``'s waves of blocks.

    Decoding order: for each wave, for each step, for each block of the wave, pop that step's
    values in rank order. The encoder knows every window in advance: it evaluates the steps of
    several waves in one batch (about ``batch`` windows per worker), from the last wave back,
    and pushes them in exactly the reverse order. ``progress(values)`` after each group of
    waves."""
    batch = CHAIN_BATCH if batch is None else batch
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
                    bp = plan.for_block(block)
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
            if progress is not None:
                progress(sum(int(b.coded.numel()) for w in waves[lo:hi] for b in w))
            hi = lo
    return enc.get_bytes()


def decode_chain(
    payload: bytes,
    layout: Layout,
    plan: ChainPlan,
    logits: Logits,
    rows: Rows,
    *,
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, int | None]:
    """Decode ``layout.n`` values: ``(x (n,), what the stream has left)`` (see
    :meth:`ardm.coding.ans.Decoder.remaining`). ``progress(values)`` after each wave."""
    batch = CHAIN_BATCH if batch is None else batch
    with _pool() as pool:
        dec = Decoder(payload)
        x = torch.zeros(layout.n, dtype=torch.long)
        for wave in layout.waves():
            plans = [plan.for_block(block) for block in wave]
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
    call = getattr(net, "outputs", net.logits)  # float32 integers where the net has them

    def logits(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        G, D = x.shape
        t = known.sum(dim=1)  # (G,)
        with torch.no_grad():
            out = call(x.view(G, *shape), known.view(G, *shape), t)  # (G, *shape, O)
        return out.reshape(G, D, -1)  # type: ignore[no-any-return]

    def logits_at(x: torch.Tensor, known: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        G = x.shape[0]
        t = known.sum(dim=1)  # (G,)
        with torch.no_grad():
            return call(x.view(G, *shape), known.view(G, *shape), t, positions)  # type: ignore[no-any-return]

    def rows(out: torch.Tensor) -> np.ndarray:  # (m, O) -> (m, K), only these rows to int64
        return exact_rows(pmf(portable, out[None].to(torch.int64), None, None)[0])  # type: ignore[arg-type]

    return (logits_at if takes_positions(call) else logits), rows
