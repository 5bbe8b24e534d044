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

A 16-bit OA-ARDM whose output is a discretised logistic mixture (no 65536-way table) codes
each value as two 256-way symbols from the step's one network call: the decoder pops a step's
high bytes, then its low bytes given them, so the encoder pushes the low bytes first
(:class:`Stage`, ``byte_pair``).

Two levels:

* :func:`encode` / :func:`decode` against any ``log_prob_fn(x, known, t) -> (N, *shape, K)``
  (log-probabilities), a fixed order ``sigma`` and a ``policy``: raw payloads, no header.
* :func:`compress` / :func:`decompress` against a model (an :class:`ardm.model.ARDM`): files
  with the header of :mod:`ardm.coding.container`, a data checksum and tiling for data
  larger or smaller than the model's shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ardm.coding.ans import Decoder, Encoder, smooth
from ardm.coding.container import (
    FINGERPRINT_BYTES,
    MAX_D,
    MAX_NDIM,
    Header,
    data_crc32,
    join_tiles,
    pack,
    split_tiles,
    tile_grid,
    unpack,
)
from ardm.core.dmol import BYTE, dmol_byte_log_probs
from ardm.core.orders import order_from_seed
from ardm.core.policy import step_bounds
from ardm.errors import DataError, FormatError

LogProbFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``log_prob_fn(x, known, t) -> log_probs``: ``x (N, *shape)`` int64 (zero where unknown),
``known (N, *shape)`` bool, ``t (N,)`` int64 number of known variables -> ``(N, *shape, K)``."""


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


def _rows(log_probs: torch.Tensor, b: int | None) -> np.ndarray:
    """Smoothed coding rows ``(n, m, b)`` of log-probabilities, checking the class count ``b``."""
    if b is not None and log_probs.shape[-1] != b:
        raise ValueError(f"the network gives {log_probs.shape[-1]} classes, expected {b}")
    return coding_probs(log_probs)


def _coarse(x: torch.Tensor, unit: int) -> torch.Tensor:
    return torch.div(x, unit, rounding_mode="floor") * unit


def _push(
    encoders: list[Encoder], coded: np.ndarray, symbols: np.ndarray, probs: np.ndarray
) -> None:
    """Push one step's ``symbols (n, m)`` with rows ``probs (n, m, b)``, the ``coded`` ones only."""
    for i, enc in enumerate(encoders):
        if coded[i].all():
            enc.push_step(symbols[i], probs[i])
        else:
            enc.push_step(symbols[i][coded[i]], probs[i][coded[i]])


def _pop(decoders: list[Decoder], coded: np.ndarray, probs: np.ndarray) -> torch.Tensor:
    """Pop one step's symbols with rows ``probs (n, m, b)``: ``(n, m)`` int64, 0 where not coded."""
    values = np.zeros(coded.shape, dtype=np.int64)  # (n, m)
    for i, dec in enumerate(decoders):
        if coded[i].all():
            values[i] = dec.pop_step(probs[i])
        else:
            values[i, coded[i]] = dec.pop_step(probs[i][coded[i]])
    return torch.from_numpy(values)


def _encode_group(
    x: torch.Tensor, pad: torch.Tensor, stages: list[Stage], shape: tuple[int, ...]
) -> list[bytes]:
    """Encode ``n`` items ``x (n, D)`` with one network call per step for the group."""
    device = x.device
    encoders = [Encoder() for _ in range(x.shape[0])]
    with torch.no_grad():
        for stage in reversed(stages):  # ANS is a stack: last stage and step first
            b = stage.b or 0
            fine = _coarse(x, stage.unit)  # (n, D) values after this stage
            coarse = _coarse(x, stage.unit * b) if stage.b else torch.zeros_like(x)  # before
            digits = torch.div(fine, stage.unit, rounding_mode="floor")  # (n, D)
            if stage.b:
                digits = digits % stage.b
            sigma = stage.sigma
            order = _order(sigma, x.shape[1])
            for left, right in reversed(step_bounds(stage.policy, x.shape[1])):
                positions = order[left:right]  # (m,) variables of this step, by sigma
                coded = ~pad[:, positions].cpu().numpy()  # (n, m) padding is never coded
                if not coded.any():
                    continue
                known = (sigma < left).to(device)[None, :] | pad  # (n, D)
                x_cur = torch.where(known, fine, coarse)  # (n, D) what the decoder holds
                out = _step_out(stage, x_cur, known, positions, shape)  # (n, m, O)
                symbols = digits[:, positions.to(device)].cpu()  # (n, m), 0 at padding
                if stage.byte_pair is None:
                    _push(encoders, coded, symbols.numpy(), _rows(out, None))
                    continue
                # The decoder pops the high bytes, then the low bytes given them: push in reverse.
                hi = torch.div(symbols, BYTE, rounding_mode="floor")  # (n, m)
                lo_rows = _rows(stage.byte_pair(out, hi.to(out.device)), BYTE)  # (n, m, 256)
                _push(encoders, coded, (symbols % BYTE).numpy(), lo_rows)
                _push(encoders, coded, hi.numpy(), _rows(stage.byte_pair(out, None), BYTE))
    return [enc.get_bytes() for enc in encoders]


def _decode_group(
    payloads: list[bytes],
    pad: torch.Tensor,
    stages: list[Stage],
    shape: tuple[int, ...],
    K: int,
) -> torch.Tensor:
    """Decode ``n`` payloads into ``(n, D)`` with one network call per step for the group."""
    device = pad.device
    decoders = [Decoder(p) for p in payloads]
    x = torch.zeros(pad.shape, dtype=torch.long, device=device)  # (n, D)
    with torch.no_grad():
        for stage in stages:
            sigma = stage.sigma
            order = _order(sigma, x.shape[1])
            for left, right in step_bounds(stage.policy, x.shape[1]):
                positions = order[left:right]  # (m,)
                coded = ~pad[:, positions].cpu().numpy()  # (n, m)
                if not coded.any():
                    continue
                known = (sigma < left).to(device)[None, :] | pad  # (n, D)
                out = _step_out(stage, x, known, positions, shape)  # (n, m, O)
                if stage.byte_pair is None:
                    values = _pop(decoders, coded, _rows(out, stage.b or K))  # (n, m)
                else:
                    hi = _pop(decoders, coded, _rows(stage.byte_pair(out, None), BYTE))
                    lo_rows = _rows(stage.byte_pair(out, hi.to(out.device)), BYTE)
                    values = hi * BYTE + _pop(decoders, coded, lo_rows)  # (n, m)
                x[:, positions.to(device)] += values.to(device) * stage.unit
    for dec in decoders:
        if not dec.finished():
            raise FormatError(
                f"corrupt payload: {dec.bits_left} bits are left after decoding every value "
                f"(truncated, extended, or encoded with another model, order or policy)"
            )
    return x


def _check_pad(pad: torch.Tensor | None, n: int, D: int, device: torch.device) -> torch.Tensor:
    if pad is None:
        return torch.zeros(n, D, dtype=torch.bool, device=device)
    pad = torch.as_tensor(pad, device=device).reshape(n, D)
    if pad.dtype != torch.bool:
        raise ValueError("pad must be a bool mask")
    return pad


def _run_items(
    work: Callable[[int], Any], n: int, *, workers: int | None, device: torch.device
) -> list[Any]:
    """Run ``work(i)`` for every item with one intra-op thread, spread over worker threads.

    ``workers=None`` means the torch thread count (capped at ``n``); on a GPU one worker. The
    schedule never changes a result: every item is evaluated alone, single-threaded.
    """
    with _one_intra_op_thread() as threads:
        if workers is None:
            workers = 1 if device.type != "cpu" else threads
        workers = max(1, min(workers, n))
        if workers == 1:
            return [work(i) for i in range(n)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(work, range(n)))


def encode(
    log_prob_fn: LogProbFn | None,
    x: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    policy: np.ndarray | None = None,
    stages: list[Stage] | None = None,
    pad: torch.Tensor | None = None,
    per_item: bool = True,
    workers: int | None = None,
) -> list[bytes]:
    """Encode each item of ``x (N, *shape)`` (int64 in ``[0, K)``) into its own payload.

    Either ``log_prob_fn`` with the order ``sigma (D,)`` shared by all items and ``policy``
    the step boundaries (one stage: an OA-ARDM), or ``stages`` (an Upscale ARDM). ``pad
    (N, *shape)`` bool marks variables that are not coded: they are known from the start
    with value 0 (tiles at the border of an image). With ``per_item`` (default) each item is
    evaluated alone with one intra-op thread, so every payload decodes on its own; with
    ``per_item=False`` there is one network call per step for the whole batch (faster, but
    only decodable with the same batch and thread count). ``workers`` threads share the items
    (default: the torch thread count; it never changes the payloads). Network tensors live
    on ``x.device``.
    """
    N = x.shape[0]
    shape = tuple(x.shape[1:])
    D = math.prod(shape)
    plan = _plan(log_prob_fn, sigma, policy, stages, D)
    xf = x.reshape(N, D).long()  # (N, D)
    padf = _check_pad(pad, N, D, x.device)  # (N, D)
    xf = torch.where(padf, 0, xf)
    if not per_item:
        return _encode_group(xf, padf, plan, shape)

    def work(i: int) -> bytes:
        return _encode_group(xf[i : i + 1], padf[i : i + 1], plan, shape)[0]

    return _run_items(work, N, workers=workers, device=x.device)


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
    per_item: bool = True,
    workers: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Decode payloads of :func:`encode` (same order, policy or stages, ``pad``, ``per_item``).

    Returns ``(N, *shape)`` int64 on ``device``. Raises :class:`FormatError` if a payload is
    malformed or not consumed exactly (a data checksum, as in :func:`decompress`, is the
    complete check).
    """
    N = len(payloads)
    shape = tuple(shape)
    D = math.prod(shape)
    plan = _plan(log_prob_fn, sigma, policy, stages, D)
    if K != BYTE * BYTE and any(stage.byte_pair is not None for stage in plan):
        raise ValueError(f"byte-pair stages code 16-bit values (K = 65536), not K={K}")
    dev = torch.device(device)
    padf = _check_pad(pad, N, D, dev)  # (N, D)
    if not per_item:
        return _decode_group(payloads, padf, plan, shape, K).view(N, *shape)

    def work(i: int) -> torch.Tensor:
        return _decode_group(payloads[i : i + 1], padf[i : i + 1], plan, shape, K)

    rows = _run_items(work, N, workers=workers, device=dev)
    if N == 0:
        return torch.zeros((0, *shape), dtype=torch.long, device=dev)
    return torch.cat(rows).view(N, *shape)


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
    stages = int(getattr(model, "S", 1))
    return stages, stages * model.D


def _codes_byte_pairs(model: CodingModel) -> bool:
    """Whether ``model`` is coded as byte pairs: a discretised-logistic-mixture OA-ARDM
    (:class:`ardm.dmol_model.DMoLARDM`, with ``mixtures`` and ``params``) over 16-bit values.

    Such a model has no ``(..., 65536)`` table: one network call gives the mixture, and each
    value is two 256-way symbols (:func:`ardm.core.dmol.dmol_byte_log_probs`). A mixture model
    with a small ``K`` (at most 4096) has a full table and is coded like any OA-ARDM.
    """
    if getattr(model, "mixtures", None) is None or not hasattr(model, "params"):
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
    stages = int(getattr(model, "S", 1))
    if stages == 1:
        oa: Any = model  # an ardm.model.ARDM (or its mixture variant, DMoLARDM)
        sigma, policy = order_from_seed(model.D, seed), oa.policy_for_budget(budget)
        if _codes_byte_pairs(model):
            return [Stage(oa.params, sigma, policy, byte_pair=dmol_byte_log_probs)]
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
        headers.append(
            Header(
                kind=model.kind,
                budget=budget,
                seed=int(model.order_seed),
                fingerprint=fingerprint,
                crc32=data_crc32(values.numpy(), model.K),
                K=None if native else model.K,
                shape=None if native else tuple(values.shape),
            )
        )
    payloads = encode(
        None, torch.cat(tiles).to(device), stages=stages, pad=torch.cat(pads).to(device)
    )
    files = []
    start = 0
    for header, count in zip(headers, counts, strict=True):
        files.append(pack(header, join_tiles(payloads[start : start + count])))
        start += count
    return files[0] if single else files


def decompress(model: CodingModel, blob: bytes) -> torch.Tensor:
    """Decompress one file of :func:`compress` with the model that made it.

    Raises :class:`FormatError` (one line) for a malformed file, a file of another model or
    data kind, and data that does not match its stored checksum: wrong data is never returned.
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
    payloads = split_tiles(body, count)
    device = _model_device(model)
    if header.shape is None:
        pad = torch.zeros((1, *tile), dtype=torch.bool)
    else:
        _, pad = cut_tiles(torch.zeros(shape, dtype=torch.uint8), tile)  # (T, *tile)
    tiles = decode(
        None,
        payloads,
        shape=tile,
        K=model.K,
        stages=model_stages(model, header.budget, header.seed),
        pad=pad.to(device),
        device=device,
    ).cpu()  # (T, *tile)
    x = tiles[0] if header.shape is None else paste_tiles(tiles, shape)
    if data_crc32(x.numpy(), model.K) != header.crc32:
        raise FormatError(
            "decoded data does not match its checksum: the file is corrupt or was encoded on "
            "a configuration whose network outputs differ"
        )
    return x
