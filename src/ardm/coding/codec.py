"""Lossless compression with an ARDM: the network's step distributions drive the ANS coder.

Encoding (paper Sec. 4; ANS is a stack, so the policy is walked in reverse): for each step
``[l, r)`` the network is called once on the data with ``known = sigma < l`` (unknown values
zeroed, exactly what the decoder will hold), and the values of the variables with
``l <= sigma < r``, ordered by ``sigma``, are pushed with their smoothed probabilities.
Decoding walks the policy forwards, calls the network on the partially decoded data and pops
each step's values in the same order.

Determinism. The decoder must see bit-identical probabilities. On CPU a batched call is *not*
bitwise invariant to the batch size or the thread count (oneDNN convolutions and small-``M``
matrix products pick different kernels; see ``docs/format.md``, "What decodes where"). So by
default (``per_item=True``) every item is evaluated alone (batch 1) with one intra-op thread,
and the items of a batch are spread over a pool of worker threads instead: each file decodes
on its own, with any thread count, on the same software and CPU family.

One stream per file (format versions 3 and 4). The tiles of a file (data larger than the
model's shape) share one ANS stream, so the stream's termination is paid once per file. They
are interleaved in lockstep: every tile has the same (stage, step) list; at each step the
decoder computes every tile's rows (each tile alone, on the worker pool), then pops tile 0's
symbols, tile 1's, and so on; the encoder, which knows the data, pushes in exactly the
reverse order (last step first, last tile first). Tiles with nothing to code at a step
(padding) are skipped on both sides. :func:`encode` / :func:`decode` take the tile counts
of the files as ``groups``; without them every item is its own stream.

The checksum is the stream's initial state (format version 4). :func:`compress` starts each
file's stream from the data's CRC-32 (:func:`ardm.coding.container.data_crc32`; ``encode``
with ``initial``) instead of the empty state, and :func:`decompress` checks that the decoder,
after the last value, is left with exactly that word for the decoded data
(:func:`decode_with_rest`). The checksum rides in the stream for about 18 bits less than a
4-byte header field (see :mod:`ardm.coding.ans`). Version-2 and -3 files have the field and
an empty initial state; they still decode.

A 16-bit OA-ARDM whose output is a discretised logistic mixture (no 65536-way table) codes
each value as two 256-way symbols from the step's one network call: the decoder pops a tile's
high bytes of a step, then its low bytes given them, so the encoder pushes the low bytes
first (:class:`Stage`, ``byte_pair``).

Two levels:

* :func:`encode` / :func:`decode` (:func:`decode_with_rest`) against any
  ``log_prob_fn(x, known, t) -> (N, *shape, K)`` (log-probabilities), a fixed order
  ``sigma`` and a ``policy``: raw payloads, no header.
* :func:`compress` / :func:`decompress` against a model (an :class:`ardm.model.ARDM`): files
  with the header of :mod:`ardm.coding.container`, a data checksum and tiling for data
  larger or smaller than the model's shape (one stream per file; version-2 files, one
  stream per tile, and version-3 files, a checksum field, are still read).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from ardm.coding.ans import Decoder, Encoder, smooth
from ardm.coding.container import (
    FINGERPRINT_BYTES,
    MAX_D,
    MAX_NDIM,
    Header,
    data_crc32,
    pack,
    pack_stream,
    split_tiles,
    tile_grid,
    unpack,
    unpack_stream,
)
from ardm.core.dmol import BYTE, dmol_byte_log_probs
from ardm.core.orders import order_from_seed
from ardm.core.policy import step_bounds
from ardm.errors import DataError, FormatError

_T = TypeVar("_T")

LogProbFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``log_prob_fn(x, known, t) -> log_probs``: ``x (N, *shape)`` int64 (zero where unknown),
``known (N, *shape)`` bool, ``t (N,)`` int64 number of known variables -> ``(N, *shape, K)``."""


HeadFn = Callable[[torch.Tensor], torch.Tensor]
"""``head(out) -> log_probs``: a network's output rows ``(n, m, O)`` -> ``(n, m, b)``."""


class CodingModel(Protocol):
    """What :func:`compress` / :func:`decompress` need from every model.

    The rest depends on the kind (:func:`model_stages`): an OA-ARDM (:class:`ardm.model.ARDM`)
    has ``log_probs(x, known, t)`` and ``policy_for_budget(budget)``, a mixture model
    (:class:`ardm.dmol_model.DMoLARDM`) also ``mixtures`` and ``params(x, known, t)``, an
    Upscale ARDM (:class:`ardm.upscale_model.UpscaleARDM`) ``S``, ``b``,
    ``stage_log_probs`` and ``stage_policies``.
    """

    K: int
    shape: tuple[int, ...]
    D: int
    S: int  # stages: 1 for an OA-ARDM
    kind: str
    order_seed: int

    def fingerprint(self) -> bytes: ...


# ---------------------------------------------------------------------------- probabilities
def coding_probs(log_probs: torch.Tensor) -> np.ndarray:
    """Log-probabilities ``(..., K)`` -> smoothed float64 probabilities ``(..., K)`` for the coder.

    The one conversion used by both encoder and decoder: float64, ``exp``, then
    ``(1 - eps*K) p + eps`` (:func:`ardm.coding.ans.smooth`).
    """
    probs = log_probs.detach().to(device="cpu", dtype=torch.float64, copy=True).exp_()  # (..., K)
    return smooth(probs.numpy())


def policy_nll_bits(log_probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log2 p(x)`` of the coded values under unsmoothed log-probs ``(N, M, K)``, ``x (N, M)``."""
    lp = log_probs.detach().double().gather(-1, x[..., None].long())[..., 0]  # (N, M)
    return -lp.sum(dim=-1) / math.log(2.0)  # (N,)


# ---------------------------------------------------------------------------- steps
def _order(sigma: torch.Tensor, D: int) -> torch.Tensor:
    """The variables in generation order: ``order[s]`` is the variable with ``sigma == s``."""
    sigma = torch.as_tensor(sigma).reshape(-1).long().cpu()  # (D,)
    if sigma.numel() != D or not torch.equal(torch.sort(sigma).values, torch.arange(D)):
        raise ValueError(f"sigma must be a permutation of 0..{D - 1}")
    return torch.argsort(sigma)  # (D,)


@contextmanager
def _one_intra_op_thread() -> Iterator[int]:
    """Run with ``torch.set_num_threads(1)``; yields the previous thread count, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


ByteFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``byte_fn(out, hi)``: from the network's output ``out (n, m, O)`` at a step's variables, the
log-probabilities ``(n, m, 256)`` of the high byte (``hi=None``) or of the low byte given the
high bytes ``hi (n, m)`` (e.g. :func:`ardm.core.dmol.dmol_byte_log_probs`)."""


@dataclass(frozen=True)
class Stage:
    """One stage of coding: every variable gets one base-``b`` digit worth ``unit``.

    An OA-ARDM has one stage (``unit = 1``, ``b = K``: the digit is the value); an Upscale
    ARDM has ``S`` stages, coarse digits first. ``log_prob_fn(x_cur, known, t)`` gives the
    digit's log-probabilities ``(N, *shape, b)`` given the current values ``x_cur`` (finer
    values where ``known``, the stage's coarse values elsewhere) and ``t`` the number of known
    variables. ``sigma (D,)`` and ``policy`` order and group the stage's variables.

    ``head`` (a mixture OA-ARDM with a small ``K``): ``log_prob_fn`` gives the network's
    output ``(N, *shape, O)``, and ``head`` turns the rows ``(n, m, O)`` of a step's ``m``
    variables into their log-probabilities ``(n, m, b)``, so the table is computed only where
    it is used (a full ``(N, D, K)`` mixture table costs far more than the network).

    ``byte_pair`` (a 16-bit OA-ARDM without a 65536-way table, e.g. a discretised logistic
    mixture): ``log_prob_fn`` gives the network's output ``(N, *shape, O)`` instead, and every
    value ``v = 256 hi + lo`` is coded as two 256-way symbols from that one output, the high
    byte ``byte_pair(out, None)`` and then the low byte ``byte_pair(out, hi)`` given it.
    """

    log_prob_fn: LogProbFn
    sigma: torch.Tensor
    policy: np.ndarray
    unit: int = 1
    b: int | None = None  # None: whatever the network gives (checked against K on decoding)
    byte_pair: ByteFn | None = None  # set: each value is coded as a high and a low byte
    head: HeadFn | None = None  # set: log_prob_fn gives raw outputs, head the step's table


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
    out = stage.log_prob_fn(x_cur.view(n, *shape), known.view(n, *shape), t)  # (n, *shape, O)
    out = out.reshape(n, -1, out.shape[-1])  # (n, D, O)
    return out[:, positions.to(out.device)]  # (n, m, O)


def _table(stage: Stage, out: torch.Tensor) -> torch.Tensor:
    """A step's log-probabilities ``(n, m, b)`` from the network's output ``out (n, m, O)``."""
    return out if stage.head is None else stage.head(out)


def _rows(log_probs: torch.Tensor, b: int | None) -> np.ndarray:
    """Smoothed coding rows ``(n, m, b)`` of log-probabilities, checking the class count ``b``."""
    if b is not None and log_probs.shape[-1] != b:
        raise ValueError(f"the network gives {log_probs.shape[-1]} classes, expected {b}")
    return coding_probs(log_probs)


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
    """Runs ``fn(i)`` for many tiles, on a thread pool or (``pool=None``) in order."""

    def __init__(self, pool: ThreadPoolExecutor | None, size: int) -> None:
        self.pool, self.size = pool, size

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
    n: int, workers: int | None, device: torch.device, *, per_item: bool
) -> Iterator[_Workers]:
    """The workers for ``n`` tiles. Per item, torch runs with one intra-op thread throughout
    and ``workers`` threads (``None``: the torch thread count; on a GPU one) share the tiles;
    the schedule never changes a result, every tile is evaluated alone, single-threaded.
    Batched (not ``per_item``): no pool, the caller's thread count."""
    if not per_item:
        yield _Workers(None, 1)
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

    def current(self, rows: slice) -> torch.Tensor:
        """The values the network sees for the tiles ``rows``: ``(n, D)``."""
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
        workers; batched one call for all ``N`` tiles."""
        if per_item:
            return workers.imap(self._one, tiles)
        everything = slice(None)
        out = _step_out(
            self.step.stage, self.current(everything), self.known, self.step.positions, self.shape
        )  # (N, m, O)
        return iter([self.finish(i, out[i : i + 1]) for i in tiles])


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

    def current(self, rows: slice) -> torch.Tensor:
        return torch.where(self.known[rows], self.fine[rows], self.coarse[rows])  # (n, D)

    def finish(self, i: int, out: torch.Tensor) -> _Pushes:
        coded = self.coded[i]  # (m,)
        symbols = self.digits[i, self.positions].cpu()  # (m,) 0 at padding
        byte_pair = self.step.stage.byte_pair
        if byte_pair is None:
            rows = _rows(_table(self.step.stage, out), None)[0]  # (m, b)
            return [(_take(symbols.numpy(), coded), _take(rows, coded))]
        # The decoder pops the high bytes, then the low bytes given them: push in reverse.
        hi = torch.div(symbols, BYTE, rounding_mode="floor")  # (m,)
        lo_rows = _rows(byte_pair(out, hi[None].to(out.device)), BYTE)[0]  # (m, 256)
        hi_rows = _rows(byte_pair(out, None), BYTE)[0]  # (m, 256)
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

    def current(self, rows: slice) -> torch.Tensor:
        return self.x[rows].clone()  # (n, D) decoded so far (coarse where not yet refined)

    def finish(self, i: int, out: torch.Tensor) -> tuple[torch.Tensor | None, np.ndarray]:
        stage = self.step.stage
        if stage.byte_pair is None:
            return None, _rows(_table(stage, out), stage.b or self.K)[0]  # (m, b)
        return out, _rows(stage.byte_pair(out, None), BYTE)[0]  # the high bytes' rows


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
                    lo_rows = _rows(byte_pair(out, hi), BYTE)[0]  # (m, 256)
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


def encode(
    log_prob_fn: LogProbFn | None,
    x: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    policy: np.ndarray | None = None,
    stages: list[Stage] | None = None,
    pad: torch.Tensor | None = None,
    groups: Sequence[int] | None = None,
    initial: Sequence[int] | None = None,
    per_item: bool = True,
    workers: int | None = None,
) -> list[bytes]:
    """Encode the items of ``x (N, *shape)`` (int64 in ``[0, K)``): one payload per group.

    Either ``log_prob_fn`` with the order ``sigma (D,)`` shared by all items and ``policy``
    the step boundaries (one stage: an OA-ARDM), or ``stages`` (an Upscale ARDM, byte
    pairs). ``pad (N, *shape)`` bool marks variables that are not coded: they are known from
    the start with value 0 (tiles at the border of an image).

    ``groups``: ``None`` (default) gives every item its own payload (independent items);
    otherwise tile counts adding up to ``N``: the first ``groups[0]`` items share one ANS
    stream (the tiles of one file), the next ``groups[1]`` the next one, and so on. A shared
    stream interleaves its tiles step by step: the decoder walks the steps, and at each pops
    the tiles' symbols in order.

    ``initial``: ``None`` (default) starts every stream from the empty state (decode it with
    :func:`decode`); otherwise one 32-bit value per group (per item without ``groups``), the
    stream's initial state (:class:`ardm.coding.ans.Encoder`), which
    :func:`decode_with_rest` hands back after the last value (format version 4: the data
    checksum). An initial state of 0 is the empty state.

    With ``per_item`` (default) each item is evaluated alone (batch 1) with one intra-op
    thread, so every payload decodes on its own; ``workers`` threads share the items at every
    step (default: the torch thread count; it never changes the payloads). With
    ``per_item=False`` there is one network call per step for the whole batch (faster, but
    only decodable with the same batch and thread count). Network tensors live on
    ``x.device``.
    """
    N = x.shape[0]
    shape = tuple(x.shape[1:])
    D = math.prod(shape)
    plan = _plan(log_prob_fn, sigma, policy, stages, D)
    sizes = _check_groups(groups, N)
    starts = [0] * len(sizes) if initial is None else [int(v) for v in initial]
    if len(starts) != len(sizes):
        raise ValueError(f"{len(starts)} initial states for {len(sizes)} groups")
    if any(not 0 <= v < 1 << 32 for v in starts):
        raise ValueError(f"initial states must lie in [0, 2**32), got {starts}")
    xf = x.reshape(N, D).long()  # (N, D)
    padf = _check_pad(pad, N, D, x.device)  # (N, D)
    xf = torch.where(padf, 0, xf)
    with _workers(N, workers, x.device, per_item=per_item) as pool:
        return _encode_tiles(xf, padf, plan, shape, sizes, starts, pool, per_item=per_item)


def decode(
    log_prob_fn: LogProbFn | None,
    payloads: list[bytes],
    *,
    shape: tuple[int, ...],
    K: int,
    sigma: torch.Tensor | None = None,
    policy: np.ndarray | None = None,
    stages: list[Stage] | None = None,
    pad: torch.Tensor | None = None,
    groups: Sequence[int] | None = None,
    per_item: bool = True,
    workers: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Decode payloads of :func:`encode` (same order, policy or stages, ``pad``, ``groups``,
    ``per_item``; no ``initial``): one payload per group.

    Returns ``(N, *shape)`` int64 on ``device``, ``N`` the number of items (``sum(groups)``).
    Raises :class:`FormatError` if a payload is malformed or not consumed exactly, back to
    the empty state (a data checksum, as in :func:`decompress`, is the complete check).
    Payloads encoded with ``initial`` states: :func:`decode_with_rest`.
    """
    x, rests = decode_with_rest(
        log_prob_fn,
        payloads,
        shape=shape,
        K=K,
        sigma=sigma,
        policy=policy,
        stages=stages,
        pad=pad,
        groups=groups,
        per_item=per_item,
        workers=workers,
        device=device,
    )
    if any(rest != 0 for rest in rests):
        raise FormatError(
            f"corrupt payload: bits are left after decoding every value ({_LEFT_CAUSES})"
        )
    return x


def decode_with_rest(
    log_prob_fn: LogProbFn | None,
    payloads: list[bytes],
    *,
    shape: tuple[int, ...],
    K: int,
    sigma: torch.Tensor | None = None,
    policy: np.ndarray | None = None,
    stages: list[Stage] | None = None,
    pad: torch.Tensor | None = None,
    groups: Sequence[int] | None = None,
    per_item: bool = True,
    workers: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, list[int | None]]:
    """:func:`decode` without its end check: the items, and what each group's stream has
    left after its last value (:meth:`ardm.coding.ans.Decoder.remaining`).

    For a payload of :func:`encode` with ``initial``, the rest is that group's initial state
    (0 for the empty state); ``None`` means more than one 32-bit word is left. The caller
    checks the rests (:func:`decompress`: the data checksum); a rest other than the expected
    one means a corrupt payload, and then the items are garbage.
    """
    sizes = [1] * len(payloads) if groups is None else _check_groups(groups, sum(groups))
    if len(sizes) != len(payloads):
        raise ValueError(f"{len(payloads)} payloads for {len(sizes)} groups")
    N = sum(sizes)
    shape = tuple(shape)
    D = math.prod(shape)
    plan = _plan(log_prob_fn, sigma, policy, stages, D)
    if K != BYTE * BYTE and any(stage.byte_pair is not None for stage in plan):
        raise ValueError(f"byte-pair stages code 16-bit values (K = 65536), not K={K}")
    dev = torch.device(device)
    padf = _check_pad(pad, N, D, dev)  # (N, D)
    with _workers(N, workers, dev, per_item=per_item) as pool:
        x, decoders = _decode_tiles(
            list(payloads), padf, plan, shape, K, sizes, pool, per_item=per_item
        )
    return x.view(N, *shape), [dec.remaining() for dec in decoders]


def _plan(
    log_prob_fn: LogProbFn | None,
    sigma: torch.Tensor | None,
    policy: np.ndarray | None,
    stages: list[Stage] | None,
    D: int,
) -> list[Stage]:
    """The stages to code, each with its order checked and held on the CPU."""
    if stages is None:
        if log_prob_fn is None or sigma is None or policy is None:
            raise ValueError("give log_prob_fn, sigma and policy, or stages")
        stages = [Stage(log_prob_fn, torch.as_tensor(sigma), np.asarray(policy))]
    plan = []
    for stage in stages:
        _order(stage.sigma, D)  # a permutation of 0..D-1, or a ValueError
        sig = torch.as_tensor(stage.sigma).reshape(-1).long().cpu()  # (D,)
        step_bounds(stage.policy, D)  # a valid policy, or a ValueError
        plan.append(dataclasses.replace(stage, sigma=sig))
    return plan


# ---------------------------------------------------------------------------- tiles
def cut_tiles(x: torch.Tensor, tile: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``x`` (any shape with ``len(tile)`` axes) into tiles ``(T, *tile)`` in C order.

    Tiles at the far border are padded with zeros; the second result ``(T, *tile)`` bool
    marks that padding.
    """
    grid = tile_grid(tuple(x.shape), tile)
    full = tuple(g * m for g, m in zip(grid, tile, strict=True))
    canvas = torch.zeros(full, dtype=x.dtype, device=x.device)
    pad = torch.ones(full, dtype=torch.bool, device=x.device)
    inside = tuple(slice(0, n) for n in x.shape)
    canvas[inside] = x
    pad[inside] = False
    split = [d for g, m in zip(grid, tile, strict=True) for d in (g, m)]  # (g0, m0, g1, m1, ...)
    perm = [*range(0, 2 * len(tile), 2), *range(1, 2 * len(tile), 2)]

    def tiles(a: torch.Tensor) -> torch.Tensor:
        return a.reshape(split).permute(perm).reshape(-1, *tile)  # (T, *tile)

    return tiles(canvas), tiles(pad)


def paste_tiles(tiles: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`cut_tiles`: tiles ``(T, *tile)`` -> data of ``shape``."""
    tile = tuple(tiles.shape[1:])
    grid = tile_grid(shape, tile)
    n = len(tile)
    a = tiles.reshape(*grid, *tile)  # (g0, g1, ..., m0, m1, ...)
    perm = [i for axis in range(n) for i in (axis, n + axis)]
    full = a.permute(perm).reshape([g * m for g, m in zip(grid, tile, strict=True)])
    return full[tuple(slice(0, s) for s in shape)]


# ---------------------------------------------------------------------------- files
def _model_device(model: CodingModel) -> torch.device:
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def _check_eval(model: CodingModel) -> None:
    if getattr(model, "training", False):
        raise ValueError("the model is in training mode: call model.eval() before coding")


def model_calls(model: CodingModel) -> tuple[int, int]:
    """The fewest and the most network calls a file of ``model`` can use: ``(S, S * D)``."""
    return model.S, model.S * model.D


def _is_mixture(model: CodingModel) -> bool:
    """Whether ``model`` is a discretised-logistic-mixture OA-ARDM
    (:class:`ardm.dmol_model.DMoLARDM`: ``mixtures``, ``params`` and ``table``)."""
    return getattr(model, "mixtures", None) is not None and hasattr(model, "params")


def _codes_byte_pairs(model: CodingModel) -> bool:
    """Whether ``model`` is coded as byte pairs: a discretised-logistic-mixture OA-ARDM
    (:class:`ardm.dmol_model.DMoLARDM`, with ``mixtures`` and ``params``) over 16-bit values.

    Such a model has no ``(..., 65536)`` table: one network call gives the mixture, and each
    value is two 256-way symbols (:func:`ardm.core.dmol.dmol_byte_log_probs`). A mixture model
    with a small ``K`` (at most 4096) has a full table and is coded like any OA-ARDM.
    """
    if not _is_mixture(model):
        return False
    if model.K == BYTE * BYTE:
        return True
    from ardm.dmol_model import MAX_FULL_K

    if model.K > MAX_FULL_K:
        raise ValueError(
            f"a mixture model with K={model.K} classes can be coded only with K <= 4096 (a "
            f"full table) or K = 65536 (two bytes per value)"
        )
    return False


def model_stages(model: CodingModel, budget: int, seed: int) -> list[Stage]:
    """The coding stages of ``model`` for ``budget`` network calls and order seed ``seed``.

    An OA-ARDM has one stage with the DP policy for ``budget``; a 16-bit mixture model
    (:func:`_codes_byte_pairs`) codes that stage's values as byte pairs. An Upscale ARDM (a model with
    ``S`` stages of base-``b`` digits) has one stage per digit, coarse first, with the order
    ``order_from_seed(D, seed + s)`` and the joint DP: ``budget`` calls in total, split over
    the stages where they lower the expected cost most.
    """
    stages = model.S
    if stages == 1:
        oa: Any = model  # an ardm.model.ARDM (or its mixture variant, DMoLARDM)
        sigma, policy = order_from_seed(model.D, seed), oa.policy_for_budget(budget)
        if _codes_byte_pairs(model):
            return [Stage(oa.params, sigma, policy, byte_pair=dmol_byte_log_probs)]
        if _is_mixture(model):  # its K-way table only at each step's variables
            return [Stage(oa.params, sigma, policy, head=oa.table)]
        return [Stage(oa.log_probs, sigma, policy)]
    upscale: Any = model  # an ardm.upscale_model.UpscaleARDM
    b = int(upscale.b)
    policies = upscale.stage_policies(budget, mode="joint")
    stage_fn = upscale.stage_log_probs

    def fn(s: int) -> LogProbFn:
        return lambda x, known, t: stage_fn(x, known, s, t)

    return [
        Stage(fn(s), order_from_seed(model.D, seed + s), policies[s], b ** (stages - s - 1), b)
        for s in range(stages)
    ]


def _check_tileable(shape: tuple[int, ...], tile: tuple[int, ...]) -> None:
    if len(shape) > MAX_NDIM or any(n < 1 for n in shape) or math.prod(shape) > MAX_D:
        raise DataError(f"data of shape {shape} is empty or larger than {MAX_D} values")
    if math.prod(tile_grid(shape, tile)) * math.prod(tile) > 2 * MAX_D:
        raise DataError(f"data of shape {shape} needs too many tiles of the model's shape {tile}")


def compress(model: CodingModel, x: torch.Tensor, *, budget: int) -> bytes | list[bytes]:
    """Compress one item ``x`` (``bytes``) or a batch ``(N, ...)`` (a list of files).

    An item has the model's shape, or any shape with as many axes (an image larger or
    smaller than the model's tile, a text of another length): it is then cut into tiles of
    the model's shape and its true shape is stored. ``budget`` network calls per tile
    (clamped to ``S * D``; an Upscale ARDM with ``S`` stages needs at least ``S``), order
    ``model.order_seed``.
    """
    _check_eval(model)
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise DataError(f"expected integer data, got {x.dtype}")
    ndim = len(model.shape)
    if x.dim() == ndim:
        items, single = [x], True
    elif x.dim() == ndim + 1:
        items, single = list(x), False
    else:
        raise DataError(
            f"expected one item with {ndim} axes (model shape {model.shape}) or a batch of "
            f"them, got shape {tuple(x.shape)}"
        )
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if not items:
        return []
    fewest, most = model_calls(model)
    if budget < fewest:
        raise DataError(f"this model has {fewest} stages: it needs a budget of at least {fewest}")
    budget = min(int(budget), most)
    device = _model_device(model)
    fingerprint = model.fingerprint()[:FINGERPRINT_BYTES]
    stages = model_stages(model, budget, int(model.order_seed))

    tiles: list[torch.Tensor] = []
    pads: list[torch.Tensor] = []
    counts: list[int] = []
    crcs: list[int] = []
    headers: list[Header] = []
    for item in items:
        values = item.long().cpu()
        if values.numel() and (values.min() < 0 or values.max() >= model.K):
            raise DataError(f"data values must lie in [0, {model.K})")
        native = tuple(values.shape) == tuple(model.shape)
        if native:
            t, p = values[None], torch.zeros((1, *model.shape), dtype=torch.bool)  # (1, *shape)
        else:
            _check_tileable(tuple(values.shape), tuple(model.shape))
            t, p = cut_tiles(values, tuple(model.shape))  # (T, *shape) each
        tiles.append(t)
        pads.append(p)
        counts.append(t.shape[0])
        crcs.append(data_crc32(values.numpy(), model.K))
        headers.append(
            Header(
                kind=model.kind,
                budget=budget,
                seed=int(model.order_seed),
                fingerprint=fingerprint,
                K=None if native else model.K,
                shape=None if native else tuple(values.shape),
            )
        )
    streams = encode(  # one stream per file, shared by its tiles, from the data checksum
        None,
        torch.cat(tiles).to(device),
        stages=stages,
        pad=torch.cat(pads).to(device),
        groups=counts,
        initial=crcs,
    )
    files = [
        pack(header, pack_stream(stream, count))
        for header, stream, count in zip(headers, streams, counts, strict=True)
    ]
    return files[0] if single else files


def decompress(model: CodingModel, blob: bytes) -> torch.Tensor:
    """Decompress one file of :func:`compress` with the model that made it.

    Raises :class:`FormatError` (one line) for a malformed file, a file of another model or
    data kind, and data that does not match its checksum (version 4: the stream's initial
    state, all that may be left after the last value; versions 2 and 3: the header field):
    wrong data is never returned.
    """
    _check_eval(model)
    header, body = unpack(blob)
    ours = model.fingerprint()[:FINGERPRINT_BYTES]
    if header.fingerprint != ours:
        raise FormatError(
            f"this file was compressed with another model (fingerprint "
            f"{header.fingerprint.hex()}, this model is {ours.hex()})"
        )
    if header.kind != model.kind:
        raise FormatError(f"this file holds {header.kind} data but the model is for {model.kind}")
    fewest, most = model_calls(model)
    if not fewest <= header.budget <= most:
        raise FormatError(
            f"corrupt header: budget {header.budget} is outside [{fewest}, {most}] for this model"
        )
    tile = tuple(model.shape)
    if header.shape is None:
        shape, count = tile, 1
    else:
        if header.K != model.K:
            raise FormatError(f"this file holds K={header.K} data but the model has K={model.K}")
        shape = header.shape
        if len(shape) != len(tile):
            raise FormatError(
                f"this file holds data of shape {shape} but the model's items have "
                f"{len(tile)} axes {tile}"
            )
        count = math.prod(tile_grid(shape, tile))
        if count * model.D > 2 * MAX_D:
            raise FormatError(f"corrupt header: shape {shape} needs {count} tiles of {tile}")
    if header.version == 2:  # one stream per tile, each but the last after its length
        payloads, groups = split_tiles(body, count), None
    else:  # one stream for all tiles
        payloads, groups = [unpack_stream(body, count)], [count]
    device = _model_device(model)
    if header.shape is None:
        pad = torch.zeros((1, *tile), dtype=torch.bool)
    else:
        _, pad = cut_tiles(torch.zeros(shape, dtype=torch.uint8), tile)  # (T, *tile)
    tiles, rests = decode_with_rest(
        None,
        payloads,
        shape=tile,
        K=model.K,
        stages=model_stages(model, header.budget, header.seed),
        pad=pad.to(device),
        groups=groups,
        device=device,
    )
    tiles = tiles.cpu()  # (T, *tile)
    if header.crc32 is not None:  # versions 2 and 3: streams from the empty state, a field
        if any(rest != 0 for rest in rests):
            raise FormatError(
                f"corrupt payload: bits are left after decoding every value ({_LEFT_CAUSES})"
            )
        expected = header.crc32
    else:  # version 4: the stream started from the checksum, which must be all that is left
        if rests[0] is None:
            raise FormatError(
                f"corrupt payload: more than the 32-bit checksum is left after decoding every "
                f"value ({_LEFT_CAUSES})"
            )
        expected = rests[0]
    x = tiles[0] if header.shape is None else paste_tiles(tiles, shape)
    if data_crc32(x.numpy(), model.K) != expected:
        raise FormatError(
            "decoded data does not match its checksum: the file is corrupt or was encoded on "
            "a configuration whose network outputs differ"
        )
    return x
