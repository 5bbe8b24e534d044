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

The integer coder (format version 8; version 5 in seeded orders). A model with a portable
form (``model.portable``, :class:`ardm.portable.model.PortableModel`: every shipped model) is
coded with exact integer tables (``Stage.exact``: no smoothing, ``constriction`` codes ``w +
1``), the spread order of its shape (:func:`ardm.core.spread_order.spread_order`; version 5:
:func:`ardm.core.seeded_order.seeded_order`) and its fingerprint; its tables do not depend on
batch or threads, so tiles and items go through the network batched (:data:`PORTABLE_BATCH`
per call). Such files decode on every machine. :func:`compress` writes version 8 for such a
model and version 4 otherwise (``version=4`` forces the float coder, ``version=5`` the seeded
orders); :func:`decompress` dispatches on the file's version (:func:`_coder`).

Many files at once. For the same reason, :func:`decompress_many` decodes version-5 and -8 files
of the same version, budget and seed together, as :func:`compress` encodes a batch: their tiles in one
lockstep decode, one stream per file (``groups``), every step one batched network call over
all of them (up to :data:`BATCH_TILES` tiles). Each file's data and checksum check are those
of :func:`decompress` alone; a corrupt file fails alone.

Two levels:

* :func:`encode` / :func:`decode` (:func:`decode_with_rest`) against any
  ``log_prob_fn(x, known, t) -> (N, *shape, K)`` (log-probabilities), a fixed order
  ``sigma`` and a ``policy``: raw payloads, no header.
* :func:`compress` / :func:`decompress` (:func:`decompress_many`) against a model (a
  :class:`ardm.models.process.Process`, which gives its coding stages): files with the
  header of :mod:`ardm.coding.container`, a data checksum and tiling for data larger or
  smaller than the model's shape (one stream per file; version-2 files, one stream per
  tile, and version-3 files, a checksum field, are still read).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ardm.coding.chain_files import compress_chain, decompress_chain
from ardm.coding.container import (
    CHAIN_VERSION,
    CHAIN_VERSIONS,
    CHAIN_WRITE_VERSIONS,
    FINGERPRINT_BYTES,
    MAX_D,
    PORTABLE_VERSION,
    PORTABLE_VERSIONS,
    SPREAD_VERSIONS,
    VERSION,
    WRITE_VERSIONS,
    Header,
    data_crc32,
    pack,
    pack_stream,
    split_tiles,
    unpack,
    unpack_stream,
)
from ardm.coding.lockstep import (
    _LEFT_CAUSES,
    CodingSetup,
    decode_with_rest,
    encode,
)
from ardm.coding.stages import CodingModel, Stage, check_on_cpu, model_device
from ardm.coding.tiles import _check_tileable, cut_tiles, paste_tiles, tile_grid
from ardm.errors import DataError, FormatError


# ---------------------------------------------------------------------------- files
def _check_eval(model: CodingModel) -> None:
    if getattr(model, "training", False):
        raise ValueError("the model is in training mode: call model.eval() before coding")


@dataclass(frozen=True)
class _Coder:
    """How a file is coded: its format ``version``, the fingerprint it carries, the stages
    (``stages(budget, seed)``) and how the lockstep evaluates them (per item, or batched
    ``batch`` tiles at a time)."""

    version: int
    fingerprint: bytes
    stages: Callable[[int, int], list[Stage]]
    per_item: bool = True
    batch: int | None = None


PORTABLE_BATCH = 16
"""Tiles per network call of the integer coder (format versions 5 and 8): its integer tables do not
depend on the batch, so this changes the speed only (see benchmarks/portable.py)."""


def _coder(model: CodingModel, version: int | None = None) -> _Coder:
    """The coder of format ``version`` for ``model`` (``None``: version 8 when the model has a
    portable form, ``model.portable``, else version 4)."""
    portable = getattr(model, "portable", None)
    if version is None:
        version = PORTABLE_VERSION if portable is not None else VERSION
    if version not in PORTABLE_VERSIONS:
        return _Coder(version, model.fingerprint()[:FINGERPRINT_BYTES], model.coding_stages)
    if portable is None:
        raise FormatError(
            f"this file was made by the integer coder (format v{version}), which needs the "
            "model's portable form (shipped models have one; `ardm export` freezes one)"
        )
    check_on_cpu(model)
    spread = version in SPREAD_VERSIONS

    def stages(budget: int, seed: int) -> list[Stage]:
        return list(portable.coding_stages(model, budget, seed, spread=spread))

    fingerprint = bytes(portable.fingerprint())[:FINGERPRINT_BYTES]
    return _Coder(version, fingerprint, stages, per_item=False, batch=PORTABLE_BATCH)


def _items(model: CodingModel, x: torch.Tensor) -> tuple[list[torch.Tensor], bool]:
    """The items of ``x`` (one item or a batch) and whether it was one item."""
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise DataError(f"expected integer data, got {x.dtype}")
    ndim = len(model.shape)
    if x.dim() == ndim:
        return [x], True
    if x.dim() == ndim + 1:
        return list(x), False
    raise DataError(
        f"expected one item with {ndim} axes (model shape {model.shape}) or a batch of "
        f"them, got shape {tuple(x.shape)}"
    )


def compress(
    model: CodingModel,
    x: torch.Tensor,
    *,
    budget: int,
    version: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> bytes | list[bytes]:
    """Compress one item ``x`` (``bytes``) or a batch ``(N, ...)`` (a list of files).

    An item has the model's shape, or any shape with as many axes (an image larger or
    smaller than the model's tile, a text of another length): it is then cut into tiles of
    the model's shape and its true shape is stored. ``budget`` network calls per tile
    (clamped to ``S * D``; an Upscale ARDM with ``S`` stages needs at least ``S``), order
    ``model.order_seed``. ``version``: ``None`` (default) writes format version 8 (the
    integer coder in spread orders, decodable on every machine) when the model has a portable
    form (``model.portable``) and version 4 (the float coder) otherwise; 4 forces the float
    coder, 5 the integer coder in seeded orders; a model with context writes version 9 (7:
    seeded orders).
    ``progress(values)``: called as a model with context (format version 9) codes values.
    """
    _check_eval(model)
    if getattr(model, "context", 0) and (version is None or version in CHAIN_WRITE_VERSIONS):
        chain = CHAIN_VERSION if version is None else version
        return _compress_chains(model, x, budget=budget, version=chain, progress=progress)
    items, single = _items(model, x)
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if version is not None and version not in WRITE_VERSIONS:
        raise ValueError(f"version must be one of {WRITE_VERSIONS} or None, got {version}")
    if version in CHAIN_WRITE_VERSIONS:
        raise ValueError(
            f"version {version} (chains with context) needs a model with model.context > 0"
        )
    if not items:
        return []
    fewest, most = model.budget_range()
    if budget < fewest:
        raise DataError(f"this model has {fewest} stages: it needs a budget of at least {fewest}")
    budget = min(int(budget), most)
    device = model_device(model)
    coder = _coder(model, version)
    stages = coder.stages(budget, int(model.order_seed))

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
                fingerprint=coder.fingerprint,
                K=None if native else model.K,
                shape=None if native else tuple(values.shape),
                version=coder.version,
            )
        )
    setup = CodingSetup(
        stages,
        tuple(model.shape),
        model.K,
        pad=torch.cat(pads).to(device),
        groups=counts,
        device=device,
        per_item=coder.per_item,
        batch=coder.batch,
    )
    # One stream per file, shared by its tiles, from the data checksum.
    streams = encode(setup, torch.cat(tiles).to(device), initial=crcs)
    files = [
        pack(header, pack_stream(stream, count))
        for header, stream, count in zip(headers, streams, counts, strict=True)
    ]
    return files[0] if single else files


def _compress_chains(
    model: CodingModel,
    x: torch.Tensor,
    *,
    budget: int,
    version: int = CHAIN_VERSION,
    progress: Callable[[int], None] | None = None,
) -> bytes | list[bytes]:
    """Format version 9 (or 7) for a model with context: one item (a sequence ``(n,)`` of any length,
    an image ``(C, H, W)`` of any size) or a batch of them, one file each
    (:func:`ardm.coding.chain_files.compress_chain`)."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise DataError(f"expected integer data, got {x.dtype}")
    ndim = len(model.shape)
    if x.dim() == ndim:
        return compress_chain(model, x, budget=budget, version=version, progress=progress)
    if x.dim() == ndim + 1:
        return [
            compress_chain(model, item, budget=budget, version=version, progress=progress)
            for item in x
        ]
    raise DataError(
        f"expected one item with {ndim} axes or a batch of them, got shape {tuple(x.shape)}"
    )


def float_coder_note(version: int) -> str:
    """What a failed decode of a float-coder file (format versions 2-4) adds to its error: such a
    file's probabilities came from float32 network outputs, which differ in the last bits between
    CPU kinds (AVX2, AVX-512, plain kernels), thread counts, batch sizes and devices."""
    return (
        f"; this file was made by the float coder (format v{version}) and may only decode on the "
        "machine type that made it (CPU kind, thread count, device)"
    )


def _expected_crc(header: Header, rests: list[int | None], where: str) -> int:
    """The data checksum a file promises: its ``crc32`` field (versions 2 and 3, whose streams
    must be left empty), or what its stream has left (versions 4 and 5: exactly one word)."""
    if header.crc32 is not None:  # versions 2 and 3: streams from the empty state, a field
        if any(rest != 0 for rest in rests):
            raise FormatError(
                f"corrupt payload: bits are left after decoding every value ({_LEFT_CAUSES}){where}"
            )
        return header.crc32
    if rests[0] is None:  # versions 4, 5: the stream started from the checksum, all that is left
        raise FormatError(
            f"corrupt payload: more than the 32-bit checksum is left after decoding every "
            f"value ({_LEFT_CAUSES}){where}"
        )
    return rests[0]


# ---------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class _Parsed:
    """A file of format versions 2-5 whose header passed every check of :func:`decompress`.

    ``header`` and its ``coder``; ``streams``: the ANS streams of its payload (version 2: one
    per tile; versions 3-5: one for all its tiles); ``pad (T, *tile)`` bool on the CPU: the
    padding of its ``T`` tiles (``T = 1`` and no padding for data of the model's shape).
    """

    header: Header
    coder: _Coder
    streams: list[bytes]
    pad: torch.Tensor

    @property
    def tiles(self) -> int:
        """The number of tiles ``T``."""
        return int(self.pad.shape[0])

    @property
    def groups(self) -> list[int]:
        """Tiles per stream, in order (:class:`CodingSetup`'s ``groups``)."""
        return [1] * self.tiles if self.header.version == 2 else [self.tiles]


def _parse(model: CodingModel, header: Header, body: bytes) -> _Parsed:
    """Check a file's header against ``model`` and split its payload ``body`` into streams.

    Raises :class:`FormatError` (one line) for a file of another model, data kind or ``K``,
    a budget the model cannot have, a shape with another number of axes or too many tiles,
    a truncated payload, and a version-5 or -8 file for a model without a portable form.
    Versions 2-5 and 8 only (versions 6, 7 and 9, chains, are
    :func:`ardm.coding.chain_files.decompress_chain`).
    """
    coder = _coder(model, header.version)
    ours = coder.fingerprint
    if header.fingerprint != ours:
        raise FormatError(
            f"this file was compressed with another model (fingerprint "
            f"{header.fingerprint.hex()}, this model is {ours.hex()})"
        )
    if header.kind != model.kind:
        raise FormatError(f"this file holds {header.kind} data but the model is for {model.kind}")
    fewest, most = model.budget_range()
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
    # Version 2: one stream per tile, each but the last after its length; else one for all.
    streams = split_tiles(body, count) if header.version == 2 else [unpack_stream(body, count)]
    if header.shape is None:
        pad = torch.zeros((1, *tile), dtype=torch.bool)
    else:
        _, pad = cut_tiles(torch.zeros(shape, dtype=torch.uint8), tile)  # (T, *tile)
    return _Parsed(header, coder, streams, pad)


def _checked(
    model: CodingModel, file: _Parsed, tiles: torch.Tensor, rests: list[int | None]
) -> torch.Tensor:
    """A file's data from its decoded ``tiles (T, *tile)`` (CPU) and what its streams have
    left (``rests``, one per stream), or :class:`FormatError` if they do not match its
    checksum (:func:`_expected_crc`)."""
    header = file.header
    where = "" if header.version in PORTABLE_VERSIONS else float_coder_note(header.version)
    expected = _expected_crc(header, rests, where)
    x = tiles[0] if header.shape is None else paste_tiles(tiles, header.shape)
    if data_crc32(x.numpy(), model.K) != expected:
        cause = (
            "the file is corrupt (the integer coder's tables are the same on every machine)"
            if header.version in PORTABLE_VERSIONS
            else f"the file is corrupt or was encoded on a configuration whose network outputs "
            f"differ{where}"
        )
        raise FormatError(f"decoded data does not match its checksum: {cause}")
    return x


def _decode_together(model: CodingModel, files: list[_Parsed]) -> list[torch.Tensor | FormatError]:
    """Decode ``files`` (one file, or files of format version 5 or 8 with the same version,
    budget and seed: the same stages) in ONE lockstep decode: every file's tiles in one
    :class:`CodingSetup`, one stream per file (``groups``), so every step is one batched
    network call over all of them. Each file's data, or its :class:`FormatError`.

    The integer coder's tables of a tile do not depend on the other tiles of the call, so a
    corrupt stream gives garbage in its own file only, which its checksum refuses. A stream
    that the ANS decoder refuses outright stops the whole decode: the files are then decoded
    again in two halves, each the same way, down to the refused file alone, so that every
    file gets its own result (the error of a file alone, as :func:`decompress` raises it) for
    about twice the work of the batch, not that of every file alone.
    """
    first = files[0]
    device = model_device(model)
    setup = CodingSetup(
        first.coder.stages(first.header.budget, first.header.seed),
        tuple(model.shape),
        model.K,
        pad=torch.cat([f.pad for f in files]).to(device),  # (sum T, *tile)
        groups=[g for f in files for g in f.groups],
        device=device,
        per_item=first.coder.per_item,
        batch=first.coder.batch,
    )
    try:
        tiles, rests = decode_with_rest(setup, [s for f in files for s in f.streams])
    except FormatError as e:
        if len(files) == 1:
            return [e]
        half = len(files) // 2
        return _decode_together(model, files[:half]) + _decode_together(model, files[half:])
    tiles = tiles.cpu()  # (sum T, *tile)
    results: list[torch.Tensor | FormatError] = []
    t = r = 0
    for f in files:
        try:
            results.append(
                _checked(model, f, tiles[t : t + f.tiles], rests[r : r + len(f.streams)])
            )
        except FormatError as e:
            results.append(e)
        t, r = t + f.tiles, r + len(f.streams)
    return results


def decompress(
    model: CodingModel, blob: bytes, *, progress: Callable[[int], None] | None = None
) -> torch.Tensor:
    """Decompress one file of :func:`compress` with the model that made it.

    Raises :class:`FormatError` (one line) for a malformed file, a file of another model or
    data kind, and data that does not match its checksum (versions 4 and 5: the stream's
    initial state, all that may be left after the last value; versions 2 and 3: the header
    field): wrong data is never returned. Version 5 (the integer coder) needs the model's
    portable form (``model.portable``); versions 2-4 use the float coder.
    """
    _check_eval(model)
    header, body = unpack(blob)
    if header.version in CHAIN_VERSIONS:
        if header.kind != model.kind:
            raise FormatError(
                f"this file holds {header.kind} data but the model is for {model.kind}"
            )
        return decompress_chain(model, header, body, progress=progress)
    (result,) = _decode_together(model, [_parse(model, header, body)])
    if isinstance(result, FormatError):
        raise result
    return result


BATCH_TILES = 64
"""The most tiles :func:`decompress_many` decodes together (a file with more is decoded alone):
bounds the decoded tiles and the probability rows of a step held at once, while the network
calls stay :data:`PORTABLE_BATCH` tiles each."""


def batchable(blob: bytes) -> bool:
    """Whether :func:`decompress_many` decodes ``blob`` together with other files: a file of
    format version 5 or 8 (the integer coder). ``False`` for any other version and for bytes that
    are not a file (:func:`decompress` says what is wrong)."""
    try:
        header, _ = unpack(blob)
    except FormatError:
        return False
    return header.version in PORTABLE_VERSIONS


def _batches(members: list[int], sizes: list[int], most: int) -> list[list[int]]:
    """``members`` in order, cut into runs of at most ``most`` tiles (``sizes[i]`` tiles each;
    a member with more than ``most`` is a run alone)."""
    runs: list[list[int]] = []
    total = 0
    for i in members:
        if not runs or total + sizes[i] > most:
            runs.append([])
            total = 0
        runs[-1].append(i)
        total += sizes[i]
    return runs


def decompress_many(model: CodingModel, blobs: list[bytes]) -> list[torch.Tensor | FormatError]:
    """Decompress several files: each file's data (as :func:`decompress` gives it), or the
    one-line :class:`FormatError` :func:`decompress` raises for it, in the order of ``blobs``.

    Files of format version 5 or 8 (the integer coder, :func:`batchable`) with the same
    version, budget and seed (the model being the same: the same stages) are decoded together, up to
    :data:`BATCH_TILES` tiles at once: one lockstep decode, one stream per file, every step
    one network call for all their tiles (:data:`PORTABLE_BATCH` at a time), which the
    integer tables allow because they do not depend on the batch. A file's result is the
    same as alone, and a corrupt file fails alone. Other files (versions 2-4, 6; bytes that
    are not a file) are decoded one by one with :func:`decompress`.
    """
    _check_eval(model)
    results: list[torch.Tensor | FormatError | None] = [None] * len(blobs)
    parsed: dict[int, _Parsed] = {}
    for i, blob in enumerate(blobs):
        if not batchable(blob):
            continue
        try:
            parsed[i] = _parse(model, *unpack(blob))
        except FormatError as e:
            results[i] = e
    same: dict[tuple[int, int, int], list[int]] = {}  # (version, budget, seed) -> files
    for i, f in parsed.items():
        same.setdefault((f.header.version, f.header.budget, f.header.seed), []).append(i)
    sizes = [parsed[i].tiles if i in parsed else 0 for i in range(len(blobs))]
    for members in same.values():
        for run in _batches(members, sizes, BATCH_TILES):
            decoded = _decode_together(model, [parsed[i] for i in run])
            for i, result in zip(run, decoded, strict=True):
                results[i] = result
    done: list[torch.Tensor | FormatError] = []
    for i, ready in enumerate(results):
        if ready is not None:
            done.append(ready)
            continue
        try:
            done.append(decompress(model, blobs[i]))
        except FormatError as e:
            done.append(e)
    return done
