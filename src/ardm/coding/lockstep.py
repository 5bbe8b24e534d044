"""Raw ANS encoding and decoding of tiles in lockstep over a list of coding stages.

Encoding walks the policy in reverse (ANS is a stack); decoding walks it forwards. The tiles
of one file share one stream and are interleaved step by step; items are evaluated one at a
time on a pool of worker threads (see :mod:`ardm.coding.codec` for why)."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from ardm.coding.ans import Decoder, Encoder
from ardm.coding.stages import (
    LogProbFn,
    Stage,
    _order,
    coding_probs,
    exact_rows,
)
from ardm.core.dmol import BYTE
from ardm.core.policy import step_bounds
from ardm.errors import FormatError

_T = TypeVar("_T")


@contextmanager
def _one_intra_op_thread() -> Iterator[int]:
    """Run with ``torch.set_num_threads(1)``; yields the previous thread count, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


def _step_out(
    stage: Stage,
    x_cur: torch.Tensor,
    known: torch.Tensor,
    positions: torch.Tensor,
    shape: tuple[int, ...],
) -> torch.Tensor:
    """One network call for ``n`` items: its output ``(n, m, O)`` at the variables ``positions``."""
    n = x_cur.shape[0]
    t = known.sum(dim=1)  # (n,) number of known variables
    if stage.at:  # the network gives the rows at the positions itself
        return stage.log_prob_fn(x_cur.view(n, *shape), known.view(n, *shape), t, positions)
    out = stage.log_prob_fn(x_cur.view(n, *shape), known.view(n, *shape), t)  # (n, *shape, O)
    out = out.reshape(n, -1, out.shape[-1])  # (n, D, O)
    return out[:, positions.to(out.device)]  # (n, m, O)


def _table(stage: Stage, out: torch.Tensor) -> torch.Tensor:
    """A step's log-probabilities ``(n, m, b)`` from the network's output ``out (n, m, O)``."""
    return out if stage.head is None else stage.head(out)


def _rows(log_probs: torch.Tensor, b: int | None, *, exact: bool = False) -> np.ndarray:
    """Coding rows ``(n, m, b)``, checking the class count ``b``: smoothed probabilities of
    log-probabilities, or (``exact``) integer weights as float64, unchanged."""
    if b is not None and log_probs.shape[-1] != b:
        raise ValueError(f"the network gives {log_probs.shape[-1]} classes, expected {b}")
    return exact_rows(log_probs) if exact else coding_probs(log_probs)


def _coarse(x: torch.Tensor, unit: int) -> torch.Tensor:
    return torch.div(x, unit, rounding_mode="floor") * unit


def _take(a: np.ndarray, coded: np.ndarray) -> np.ndarray:
    """``a[coded]`` (rows of the coded variables), without a copy when all are coded."""
    return a if coded.all() else a[coded]


def _pop_tile(dec: Decoder, coded: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Pop one tile's step with rows ``probs (m, b)``: ``(m,)`` int64, 0 where not ``coded``."""
    if coded.all():
        return dec.pop_step(probs)
    values = np.zeros(coded.shape, dtype=np.int64)  # (m,)
    values[coded] = dec.pop_step(probs[coded])
    return values


# ---------------------------------------------------------------------------- lockstep
@dataclass(frozen=True)
class _Step:
    """One network call of every tile: the variables ``positions`` ``(m,)`` (by ``sigma``) of
    stage ``index`` of the plan, coded given the variables ``before`` ``(D,)`` (``sigma < l``)."""

    index: int
    stage: Stage
    positions: torch.Tensor
    before: torch.Tensor


def _steps(plan: list[Stage], D: int) -> list[_Step]:
    """The (stage, step) list in decoding order: the same for every tile of every item."""
    steps = []
    for index, stage in enumerate(plan):
        order = _order(stage.sigma, D)
        for left, right in step_bounds(stage.policy, D):
            steps.append(_Step(index, stage, order[left:right], stage.sigma < left))
    return steps


_TILES_PER_WORKER = 4
"""Tiles evaluated ahead per worker: bounds the probability rows held at once (a step's rows
can be ``D x K`` float64 a tile) while the caller pushes or pops the results in order."""


class _Workers:
    """Runs ``fn(i)`` for many tiles, on a thread pool or (``pool=None``) in order; ``batch``:
    the most tiles of one batched network call (``None``: all; only without ``per_item``)."""

    def __init__(
        self, pool: ThreadPoolExecutor | None, size: int, batch: int | None = None
    ) -> None:
        self.pool, self.size, self.batch = pool, size, batch

    def imap(self, fn: Callable[[int], _T], items: Sequence[int]) -> Iterator[_T]:
        """``fn(i)`` for every item, in order, as the caller takes them: the pool works on at
        most ``_TILES_PER_WORKER`` items per worker ahead of the caller."""
        if self.pool is None:
            yield from (fn(i) for i in items)
            return
        ahead = _TILES_PER_WORKER * self.size
        pending: deque[Future[_T]] = deque(self.pool.submit(fn, i) for i in items[:ahead])
        try:
            for i in items[ahead:]:
                result = pending.popleft().result()
                pending.append(self.pool.submit(fn, i))
                yield result
            while pending:
                yield pending.popleft().result()
        finally:  # the caller stopped early (an error): drop the work not started
            for future in pending:
                future.cancel()


@contextmanager
def _workers(
    n: int,
    workers: int | None,
    device: torch.device,
    *,
    per_item: bool,
    batch: int | None = None,
    exact: bool = False,
) -> Iterator[_Workers]:
    """The workers for ``n`` tiles. Per item, torch runs with one intra-op thread throughout
    and ``workers`` threads (``None``: the torch thread count; on a GPU one) share the tiles;
    the schedule never changes a result, every tile is evaluated alone, single-threaded.
    Batched (not ``per_item``): no pool, calls of at most ``batch`` tiles, with the caller's
    thread count, or (``exact`` stages on a CPU: the same bits with any thread count) one
    intra-op thread: on a loaded 2-core machine, 2 threads made batched integer calls 2-10x
    slower than 1 (benchmarks/results/portable_threads.md)."""
    if not per_item:
        if not (exact and device.type == "cpu"):
            yield _Workers(None, 1, batch)
            return
        with _one_intra_op_thread() as threads:
            size = max(1, min(threads if workers is None else workers, n))
            if size == 1:
                yield _Workers(None, 1, batch)
                return
            with ThreadPoolExecutor(max_workers=size) as pool:
                yield _Workers(pool, size, batch)
        return
    with _one_intra_op_thread() as threads:
        if workers is None:
            workers = 1 if device.type != "cpu" else threads
        workers = max(1, min(workers, n))
        if workers == 1:
            yield _Workers(None, 1)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield _Workers(pool, workers)


class _StepWork(Generic[_T]):
    """One step of many tiles: what the network sees (:meth:`current`) and what is made of
    its output (:meth:`finish`, on the worker thread of the tile). A tile's values are read
    and written only by its own work and by the caller, after that work is done."""

    def __init__(self, step: _Step, shape: tuple[int, ...], pad: torch.Tensor) -> None:
        self.step, self.shape = step, shape
        self.known = step.before.to(pad.device)[None, :] | pad  # (N, D) padding is known
        self.positions = step.positions.to(pad.device)  # (m,)

    def current(self, rows: slice | torch.Tensor) -> torch.Tensor:
        """The values the network sees for the tiles ``rows`` (a slice or indices): ``(n, D)``."""
        raise NotImplementedError

    def finish(self, i: int, out: torch.Tensor) -> _T:
        """What tile ``i`` makes of the network's output ``out (1, m, O)``."""
        raise NotImplementedError

    def _one(self, i: int) -> _T:
        rows = slice(i, i + 1)
        out = _step_out(
            self.step.stage, self.current(rows), self.known[rows], self.step.positions, self.shape
        )
        return self.finish(i, out)

    def run(self, tiles: Sequence[int], workers: _Workers, *, per_item: bool) -> Iterator[_T]:
        """:meth:`finish` of ``tiles``, in order: per item one call per tile (batch 1) on the
        workers; batched one call for all ``N`` tiles (``workers.batch`` set: one call per run
        of at most that many tiles, from the first of ``tiles`` to the last)."""
        if per_item:
            return workers.imap(self._one, tiles)
        if workers.batch is None:
            everything = slice(None)
            out = _step_out(
                self.step.stage,
                self.current(everything),
                self.known,
                self.step.positions,
                self.shape,
            )  # (N, m, O)
            return iter([self.finish(i, out[i : i + 1]) for i in tiles])
        return iter(self._batched(tiles, workers))

    def _batched(self, tiles: Sequence[int], workers: _Workers) -> list[_T]:
        """:meth:`finish` of ``tiles`` (in their order) from one call per chunk of at most
        ``workers.batch`` of them, the chunks shared by the workers (exact stages only: a
        result does not depend on the chunking). Only the tiles asked for are evaluated: a
        tile with nothing to code at a step may have every variable known, a ``t`` no step
        has."""
        wanted = sorted(tiles)
        if not wanted:
            return []
        size = min(workers.batch or len(wanted), -(-len(wanted) // workers.size))
        chunks = [wanted[k : k + size] for k in range(0, len(wanted), size)]
        done: dict[int, _T] = {}
        for part in workers.imap(lambda c: self._chunk(chunks[c]), range(len(chunks))):
            done.update(part)
        return [done[i] for i in tiles]

    def _chunk(self, chunk: list[int]) -> dict[int, _T]:
        """:meth:`finish` of the tiles ``chunk`` from one batched network call."""
        rows = torch.tensor(chunk, device=self.known.device)  # (n,)
        out = _step_out(
            self.step.stage, self.current(rows), self.known[rows], self.step.positions, self.shape
        )  # (n, m, O)
        return {i: self.finish(i, out[j : j + 1]) for j, i in enumerate(chunk)}


_Pushes = list[tuple[np.ndarray, np.ndarray]]
"""A tile's step for the encoder: ``(symbols (k,), rows (k, b))`` in push order."""


class _EncodeStep(_StepWork[_Pushes]):
    def __init__(
        self,
        step: _Step,
        shape: tuple[int, ...],
        pad: torch.Tensor,
        coded: np.ndarray,
        digits: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> None:
        super().__init__(step, shape, pad)
        self.coded = coded  # (N, m)
        self.fine, self.coarse, self.digits = digits  # (N, D) each

    def current(self, rows: slice | torch.Tensor) -> torch.Tensor:
        return torch.where(self.known[rows], self.fine[rows], self.coarse[rows])  # (n, D)

    def finish(self, i: int, out: torch.Tensor) -> _Pushes:
        coded = self.coded[i]  # (m,)
        symbols = self.digits[i, self.positions].cpu()  # (m,) 0 at padding
        byte_pair = self.step.stage.byte_pair
        if byte_pair is None:
            rows = _rows(_table(self.step.stage, out), None, exact=self.step.stage.exact)[0]
            return [(_take(symbols.numpy(), coded), _take(rows, coded))]
        # The decoder pops the high bytes, then the low bytes given them: push in reverse.
        hi = torch.div(symbols, BYTE, rounding_mode="floor")  # (m,)
        lo_rows = _rows(byte_pair(out, hi[None].to(out.device)), BYTE, exact=self.step.stage.exact)[
            0
        ]  # (m, 256)
        hi_rows = _rows(byte_pair(out, None), BYTE, exact=self.step.stage.exact)[0]  # (m, 256)
        return [
            (_take((symbols % BYTE).numpy(), coded), _take(lo_rows, coded)),
            (_take(hi.numpy(), coded), _take(hi_rows, coded)),
        ]


class _DecodeStep(_StepWork[tuple[torch.Tensor | None, np.ndarray]]):
    def __init__(
        self, step: _Step, shape: tuple[int, ...], pad: torch.Tensor, x: torch.Tensor, K: int
    ) -> None:
        super().__init__(step, shape, pad)
        self.x, self.K = x, K

    def current(self, rows: slice | torch.Tensor) -> torch.Tensor:
        return self.x[rows].clone()  # (n, D) decoded so far (coarse where not yet refined)

    def finish(self, i: int, out: torch.Tensor) -> tuple[torch.Tensor | None, np.ndarray]:
        stage = self.step.stage
        if stage.byte_pair is None:
            return None, _rows(_table(stage, out), stage.b or self.K, exact=stage.exact)[0]
        return out, _rows(stage.byte_pair(out, None), BYTE, exact=stage.exact)[
            0
        ]  # the high bytes' rows


def _owners(groups: list[int]) -> list[int]:
    """The stream of every tile: tile ``i`` belongs to group ``owner[i]``."""
    return [g for g, count in enumerate(groups) for _ in range(count)]


def _encode_tiles(
    x: torch.Tensor,
    pad: torch.Tensor,
    plan: list[Stage],
    shape: tuple[int, ...],
    groups: list[int],
    initial: list[int],
    workers: _Workers,
    *,
    per_item: bool,
) -> list[bytes]:
    """Encode the tiles ``x (N, D)`` into one stream per group (``groups`` tile counts), each
    started from its ``initial`` state.

    ANS is a stack, so everything is pushed in the reverse of the decoding order: the steps
    last first, within a step the tiles last first, within a tile's step (byte pairs) the low
    bytes before the high bytes.
    """
    N, D = x.shape
    owner = _owners(groups)
    encoders = [Encoder(start) for start in initial]
    padn = pad.cpu().numpy()  # (N, D)
    digits = []  # per stage: values after it, values before it, its digits; (N, D) each
    for stage in plan:
        fine = _coarse(x, stage.unit)
        coarse = _coarse(x, stage.unit * stage.b) if stage.b else torch.zeros_like(x)
        digit = torch.div(fine, stage.unit, rounding_mode="floor")
        digits.append((fine, coarse, digit % stage.b if stage.b else digit))
    with torch.no_grad():
        for step in reversed(_steps(plan, D)):
            coded = ~padn[:, step.positions.numpy()]  # (N, m) padding is never coded
            active = [i for i in range(N - 1, -1, -1) if coded[i].any()]  # last tile first
            if not active:
                continue
            work = _EncodeStep(step, shape, pad, coded, digits[step.index])
            results = work.run(active, workers, per_item=per_item)
            for i, pushes in zip(active, results, strict=True):
                for symbols, rows in pushes:
                    encoders[owner[i]].push_step(symbols, rows)
    return [enc.get_bytes() for enc in encoders]


def _decode_tiles(
    streams: list[bytes],
    pad: torch.Tensor,
    plan: list[Stage],
    shape: tuple[int, ...],
    K: int,
    groups: list[int],
    workers: _Workers,
    *,
    per_item: bool,
) -> tuple[torch.Tensor, list[Decoder]]:
    """Decode one stream per group into the tiles ``(N, D)``: the steps in order; at each,
    every tile's rows (each alone on the workers), then the pops tile by tile in order.
    Also returns the decoders, with whatever is left on their stacks."""
    N, D = pad.shape
    owner = _owners(groups)
    decoders = [Decoder(s) for s in streams]
    x = torch.zeros(pad.shape, dtype=torch.long, device=pad.device)  # (N, D)
    padn = pad.cpu().numpy()
    with torch.no_grad():
        for step in _steps(plan, D):
            coded = ~padn[:, step.positions.numpy()]  # (N, m)
            active = [i for i in range(N) if coded[i].any()]
            if not active:
                continue
            work = _DecodeStep(step, shape, pad, x, K)
            byte_pair, unit = step.stage.byte_pair, step.stage.unit
            results = work.run(active, workers, per_item=per_item)
            for i, (out, rows) in zip(active, results, strict=True):
                dec = decoders[owner[i]]
                values = _pop_tile(dec, coded[i], rows)  # (m,)
                if byte_pair is not None and out is not None:  # then the low bytes
                    hi = torch.from_numpy(values)[None].to(out.device)  # (1, m)
                    lo_rows = _rows(byte_pair(out, hi), BYTE, exact=step.stage.exact)[0]  # (m, 256)
                    values = values * BYTE + _pop_tile(dec, coded[i], lo_rows)
                x[i, work.positions] += torch.from_numpy(values).to(x.device) * unit
    return x, decoders


_LEFT_CAUSES = "truncated, extended, or encoded with another model, order or policy"


def _check_pad(pad: torch.Tensor | None, n: int, D: int, device: torch.device) -> torch.Tensor:
    if pad is None:
        return torch.zeros(n, D, dtype=torch.bool, device=device)
    pad = torch.as_tensor(pad, device=device).reshape(n, D)
    if pad.dtype != torch.bool:
        raise ValueError("pad must be a bool mask")
    return pad


def _check_groups(groups: Sequence[int] | None, n: int) -> list[int]:
    """``groups`` as a list (``None``: every item alone), checked to add up to ``n`` items."""
    if groups is None:
        return [1] * n
    out = [int(g) for g in groups]
    if any(g < 1 for g in out) or sum(out) != n:
        raise ValueError(f"groups must be positive tile counts adding up to {n}, got {out}")
    return out


@dataclass(frozen=True)
class CodingSetup:
    """What the encoder and the decoder of a batch of tiles agree on.

    ``stages``: the coding stages (one for an OA-ARDM, :func:`single_stage`; ``S`` for an
    Upscale ARDM; byte pairs). ``shape`` and ``K``: a tile's shape and its number of classes.
    ``pad (N, *shape)`` bool marks variables that are not coded: they are known from the
    start with value 0 (tiles at the border of an image); ``None``: none.

    ``groups``: ``None`` (default) gives every item its own payload (independent items);
    otherwise tile counts adding up to ``N``: the first ``groups[0]`` items share one ANS
    stream (the tiles of one file), the next ``groups[1]`` the next one, and so on. A shared
    stream interleaves its tiles step by step: the decoder walks the steps, and at each pops
    the tiles' symbols in order.

    With ``per_item`` (default) each item is evaluated alone (batch 1) with one intra-op
    thread, so every payload decodes on its own; ``workers`` threads share the items at every
    step (default: the torch thread count; it never changes the payloads). With
    ``per_item=False`` there is one network call per step for the whole batch (faster, but
    only decodable with the same batch and thread count, unless the stages are ``exact``:
    integer tables do not depend on either). ``batch`` (with ``per_item=False``): the most
    tiles of one network call (``None``: all ``N``). Network tensors live on ``device``.
    """

    stages: Sequence[Stage]
    shape: tuple[int, ...]
    K: int
    pad: torch.Tensor | None = None
    groups: Sequence[int] | None = None
    per_item: bool = True
    workers: int | None = None
    device: torch.device | str = "cpu"
    batch: int | None = None


def single_stage(
    log_prob_fn: LogProbFn, sigma: torch.Tensor | np.ndarray, policy: np.ndarray
) -> list[Stage]:
    """The one stage of an OA-ARDM: the order ``sigma (D,)``, shared by all items, and
    ``policy`` the step boundaries."""
    return [Stage(log_prob_fn, torch.as_tensor(sigma), np.asarray(policy))]


def encode(
    setup: CodingSetup, x: torch.Tensor, *, initial: Sequence[int] | None = None
) -> list[bytes]:
    """Encode the items of ``x (N, *shape)`` (int64 in ``[0, K)``): one payload per group.

    ``initial``: ``None`` (default) starts every stream from the empty state (decode it with
    :func:`decode`); otherwise one 32-bit value per group (per item without ``groups``), the
    stream's initial state (:class:`ardm.coding.ans.Encoder`), which
    :func:`decode_with_rest` hands back after the last value (format version 4: the data
    checksum). An initial state of 0 is the empty state.
    """
    N = x.shape[0]
    shape = tuple(x.shape[1:])
    if shape != tuple(setup.shape):
        raise ValueError(f"items of shape {shape}, but the set-up codes {tuple(setup.shape)}")
    D = math.prod(shape)
    plan = _plan(setup.stages, D)
    sizes = _check_groups(setup.groups, N)
    starts = [0] * len(sizes) if initial is None else [int(v) for v in initial]
    if len(starts) != len(sizes):
        raise ValueError(f"{len(starts)} initial states for {len(sizes)} groups")
    if any(not 0 <= v < 1 << 32 for v in starts):
        raise ValueError(f"initial states must lie in [0, 2**32), got {starts}")
    dev = torch.device(setup.device)
    xf = x.to(dev).reshape(N, D).long()  # (N, D)
    padf = _check_pad(setup.pad, N, D, dev)  # (N, D)
    xf = torch.where(padf, 0, xf)
    exact = all(stage.exact for stage in setup.stages)
    with _workers(
        N, setup.workers, dev, per_item=setup.per_item, batch=setup.batch, exact=exact
    ) as pool:
        return _encode_tiles(xf, padf, plan, shape, sizes, starts, pool, per_item=setup.per_item)


def decode(setup: CodingSetup, payloads: list[bytes]) -> torch.Tensor:
    """Decode payloads of :func:`encode` (the same set-up; no ``initial``): one payload per
    group.

    Returns ``(N, *shape)`` int64 on ``device``, ``N`` the number of items (``sum(groups)``).
    Raises :class:`FormatError` if a payload is malformed or not consumed exactly, back to
    the empty state (a data checksum, as in :func:`decompress`, is the complete check).
    Payloads encoded with ``initial`` states: :func:`decode_with_rest`.
    """
    x, rests = decode_with_rest(setup, payloads)
    if any(rest != 0 for rest in rests):
        raise FormatError(
            f"corrupt payload: bits are left after decoding every value ({_LEFT_CAUSES})"
        )
    return x


def decode_with_rest(
    setup: CodingSetup, payloads: list[bytes]
) -> tuple[torch.Tensor, list[int | None]]:
    """:func:`decode` without its end check: the items, and what each group's stream has
    left after its last value (:meth:`ardm.coding.ans.Decoder.remaining`).

    For a payload of :func:`encode` with ``initial``, the rest is that group's initial state
    (0 for the empty state); ``None`` means more than one 32-bit word is left. The caller
    checks the rests (:func:`decompress`: the data checksum); a rest other than the expected
    one means a corrupt payload, and then the items are garbage.
    """
    groups = setup.groups
    sizes = [1] * len(payloads) if groups is None else _check_groups(groups, sum(groups))
    if len(sizes) != len(payloads):
        raise ValueError(f"{len(payloads)} payloads for {len(sizes)} groups")
    N = sum(sizes)
    shape, K = tuple(setup.shape), setup.K
    D = math.prod(shape)
    plan = _plan(setup.stages, D)
    if K != BYTE * BYTE and any(stage.byte_pair is not None for stage in plan):
        raise ValueError(f"byte-pair stages code 16-bit values (K = 65536), not K={K}")
    dev = torch.device(setup.device)
    padf = _check_pad(setup.pad, N, D, dev)  # (N, D)
    exact = all(stage.exact for stage in setup.stages)
    with _workers(
        N, setup.workers, dev, per_item=setup.per_item, batch=setup.batch, exact=exact
    ) as pool:
        x, decoders = _decode_tiles(
            list(payloads), padf, plan, shape, K, sizes, pool, per_item=setup.per_item
        )
    return x.view(N, *shape), [dec.remaining() for dec in decoders]


def _plan(stages: Sequence[Stage], D: int) -> list[Stage]:
    """The stages to code, each with its order checked and held on the CPU."""
    plan = []
    for stage in stages:
        _order(stage.sigma, D)  # a permutation of 0..D-1, or a ValueError
        sig = torch.as_tensor(stage.sigma).reshape(-1).long().cpu()  # (D,)
        step_bounds(stage.policy, D)  # a valid policy, or a ValueError
        plan.append(dataclasses.replace(stage, sigma=sig))
    return plan
