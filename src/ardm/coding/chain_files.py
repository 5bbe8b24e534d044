"""Files of format version 9 (and 7, 6, read): data coded as chains of blocks with context.

A sequence (text) is a :class:`ardm.coding.chain.ChainLayout` of segments, an image a
:class:`ardm.coding.wavefront.WavefrontLayout` of waves; either way the blocks are coded by
the model's portable form (:func:`ardm.coding.chain.portable_rows`), the stream starts from
the data's CRC-32 and is padded to at least ``blocks - 1`` bytes. A text block sees
:data:`ardm.coding.chain.CHAIN_CONTEXT` known bytes (:func:`coder_context`), an image block
the model's trained context; versions 7 and 9 store it, version 6 files were coded with the model's
``context``. The layout of the bytes is in ``docs/format.md``, "Version 7".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ardm.coding.chain import (
    CHAIN_CONTEXT,
    ChainLayout,
    ChainPlan,
    Layout,
    decode_chain,
    default_segment_bytes,
    encode_chain,
    portable_rows,
    segment_blocks,
)
from ardm.coding.stages import check_on_cpu
from ardm.coding.wavefront import WavefrontLayout
from ardm.core.context import context_region

MAX_CHAIN_VALUES = 4 << 20
"""Longest sequence a chain codes (4 MiB): at the default budget a larger one would take hours."""

MAX_WAVE_VALUES = 1 << 24
"""Most values of an image coded in waves (2,364 x 2,364 RGB pixels): about ten minutes at the
default budget on 2 CPU threads."""


def _chain_parts(model: object) -> tuple[object, int, int]:
    """A chain model's portable form, window ``D`` and context, or a one-line error."""
    from ardm.errors import FormatError

    context = int(getattr(model, "context", 0))
    portable = getattr(model, "portable", None)
    if not context:
        raise FormatError(
            "this file is a chain of blocks with context (format v6, v7, v9); this "
            "model was not trained with a known prefix (model.context)"
        )
    if portable is None:
        raise FormatError(
            "chain files (format v6, v7, v9) are coded by the model's portable form, "
            "which this model lacks (`ardm export` freezes one)"
        )
    check_on_cpu(model)
    return portable, int(model.D), context  # type: ignore[attr-defined]


def coder_context(model: object) -> int:
    """The known values before a block that the coder writes: for text
    :data:`ardm.coding.chain.CHAIN_CONTEXT` (at most the model's ``context``), for an image the
    model's ``context`` (its blocks' shape)."""
    context = int(model.context)  # type: ignore[attr-defined]
    return min(CHAIN_CONTEXT, context) if len(model.shape) == 1 else context  # type: ignore[attr-defined]


def file_layout(
    model: object, shape: tuple[int, ...], segment: int, context: int | None = None
) -> tuple[Layout, int, int]:
    """The layout of data of ``shape`` for a chain model: a sequence's :class:`ChainLayout`
    (``segment`` blocks per segment), an image's :class:`ardm.coding.wavefront.WavefrontLayout`
    (``segment`` must be 0); with the number of blocks and the most values of one block.
    ``context``: known values before a block (default: the model's; an image's must be it)."""
    tile = tuple(int(v) for v in model.shape)  # type: ignore[attr-defined]
    trained = int(model.context)  # type: ignore[attr-defined]
    context = trained if context is None else int(context)
    if len(tile) == 3 and context != trained:
        raise ValueError(f"an image is coded with the model's context {trained}, not {context}")
    region = context_region(tile, context)  # (D,) the window's known part (or a ValueError)
    block = region.numel() - int(region.sum())
    if len(tile) == 1:
        layout: Layout = ChainLayout(math.prod(shape), tile[0], context, segment)
        return layout, -(-math.prod(shape) // block), block
    if segment:
        raise ValueError("images are coded in waves, not segments")
    wave = WavefrontLayout(shape, tile, context)  # type: ignore[arg-type]
    return wave, math.prod(wave.grid), block


def chain_plan(model: object, budget: int, seed: int, version: int) -> ChainPlan:
    """The block plans of a chain file of ``version``: each block in its spread order (version
    9) or in ``seeded_order(b, seed)`` (versions 6 and 7)."""
    from ardm.coding.container import SPREAD_VERSIONS

    return ChainPlan(
        model.tracker.L(),  # type: ignore[attr-defined]
        int(model.D),  # type: ignore[attr-defined]
        budget,
        seed,
        spread=version in SPREAD_VERSIONS,
        tile=tuple(int(v) for v in model.shape),  # type: ignore[attr-defined]
    )


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
    if len(tile) == 1 and math.prod(shape) > MAX_CHAIN_VALUES:
        raise exc(
            f"{math.prod(shape):,} values is more than this coder takes ({MAX_CHAIN_VALUES:,}): "
            "at about a thousand values per second it would take hours; split the file or "
            "use zstd/xz"
        )
    if len(tile) == 3 and math.prod(shape) > MAX_WAVE_VALUES:
        raise exc(
            f"an image of {shape[1]}x{shape[2]} pixels is more than this coder takes "
            f"({MAX_WAVE_VALUES:,} values): cut it into parts, or use JPEG-XL lossless"
        )


def compress_chain(
    model: object,
    x: torch.Tensor,
    *,
    budget: int,
    segment_bytes: int | None = None,
    seed: int | None = None,
    context: int | None = None,
    version: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """One file of format version 9 (``version=7``: each block in a seeded order): a sequence ``x (n,)`` as chains of blocks in segments of
    about ``segment_bytes`` values (0: one chain; ``None``: :func:`default_segment_bytes`),
    or an image ``x (C, H, W)`` in waves of
    blocks; ``budget`` calls per block (clamped to its size), order seed ``seed`` (default:
    the model's), ``context`` known values before a block (default: :func:`coder_context`);
    ``progress(values)`` as they are coded."""
    from ardm.coding.container import (
        CHAIN_VERSION,
        CHAIN_WRITE_VERSIONS,
        FINGERPRINT_BYTES,
        Header,
        data_crc32,
        pack,
        pack_stream,
        write_varint,
    )
    from ardm.errors import DataError

    portable, D, _ = _chain_parts(model)
    version = CHAIN_VERSION if version is None else int(version)
    if version not in CHAIN_WRITE_VERSIONS:
        raise ValueError(f"chains are written as format versions {CHAIN_WRITE_VERSIONS}")
    K = int(model.K)  # type: ignore[attr-defined]
    shape = tuple(int(v) for v in x.shape)
    if x.numel() == 0:
        raise DataError("empty input: there is nothing to compress")
    _check_shape(model, shape, DataError)
    values = x.reshape(-1).long().cpu()
    if values.min() < 0 or values.max() >= K:
        raise DataError(f"data values must lie in [0, {K})")
    seed = int(model.order_seed if seed is None else seed)  # type: ignore[attr-defined]
    context = coder_context(model) if context is None else int(context)
    if segment_bytes is None:
        segment_bytes = default_segment_bytes(math.prod(shape))
    segment = segment_blocks(D, context, segment_bytes) if len(shape) == 1 else 0
    layout, blocks, most = file_layout(model, shape, segment, context)
    if segment >= blocks:
        layout, blocks, most = file_layout(model, shape, 0, context)
    budget = max(1, min(int(budget), most))
    plan = chain_plan(model, budget, seed, version)
    logits, rows = portable_rows(portable)
    crc = data_crc32(values.numpy(), K)
    stream = encode_chain(values, layout, plan, logits, rows, initial=crc, progress=progress)
    header = Header(
        kind=model.kind,  # type: ignore[attr-defined]
        budget=budget,
        seed=seed,
        fingerprint=bytes(portable.fingerprint())[:FINGERPRINT_BYTES],  # type: ignore[attr-defined]
        K=K,
        shape=shape,
        version=version,
    )
    segment = layout.segment if isinstance(layout, ChainLayout) else 0
    # a payload has at least blocks - 1 bytes (pack_stream): a short file cannot declare a
    # long decode
    fields = write_varint(segment) + write_varint(context)
    return pack(header, fields + pack_stream(stream, blocks))


def decompress_chain(
    model: object, header: object, body: bytes, *, progress: Callable[[int], None] | None = None
) -> torch.Tensor:
    """The data of a version-9, -7 or -6 file (its parsed ``header`` and payload ``body``), checked
    against the checksum the stream carries; anything wrong is a one-line FormatError."""
    from ardm.coding.container import (
        CHAIN_WRITE_VERSIONS,
        FINGERPRINT_BYTES,
        data_crc32,
        read_varint,
        unpack_stream,
    )
    from ardm.errors import FormatError

    portable, _, context = _chain_parts(model)
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
    if header.version in CHAIN_WRITE_VERSIONS:  # type: ignore[attr-defined]  # the context field
        context, pos = read_varint(body, pos, "context")
    try:
        layout, blocks, most = file_layout(model, tuple(shape), 0, context)
        if segment:
            if segment >= blocks:
                raise ValueError(f"segments of {segment} blocks in a file of {blocks}")
            layout, blocks, most = file_layout(model, tuple(shape), segment, context)
    except ValueError as e:
        raise FormatError(f"corrupt payload: {e}") from None
    if not 1 <= header.budget <= most:  # type: ignore[attr-defined]
        raise FormatError(f"corrupt header: budget {header.budget} outside [1, {most}]")  # type: ignore[attr-defined]
    plan = chain_plan(model, int(header.budget), int(header.seed), int(header.version))  # type: ignore[attr-defined]
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
