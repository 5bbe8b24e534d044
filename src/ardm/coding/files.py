"""Files of ``ardm compress`` / ``ardm decompress``: names, bytes in and out, many at once.

What an input may hold, and how an item is read from and written to its bytes, is the
model's modality (:mod:`ardm.modalities`); this module only names, reads and writes files.
Outputs are written atomically (:func:`ardm.filesystem.atomic_write_bytes`) and never over
an existing file unless ``force``; ``-`` means standard input / output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ardm.errors import DataError, FormatError
from ardm.modalities.modality import Modality

STDIO = "-"
"""The path that means standard input (for an input) or standard output (for an output)."""

SUFFIX = ".ardm"
"""Suffix of compressed files."""


# ---------------------------------------------------------------------------- many files
def decompress_files(
    model: Any,
    blobs: list[bytes],
    names: list[str],
    *,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Decompress several files, in the order of ``blobs``: files of format versions 5 and 8
    together, the others several at once on a pool of threads.

    Files of the integer coder (versions 5 and 8, :func:`ardm.coding.codec.batchable`) go to
    :func:`ardm.coding.codec.decompress_many`: files with the same version, budget and seed share one
    lockstep decode, every step one batched network call over all their tiles (the integer
    tables do not depend on the batch). Every other file is decoded by
    :func:`ardm.coding.codec.decompress` alone (its tiles spread over worker threads, each
    with one intra-op thread); for several of them the pool goes over the files instead: the
    torch thread count is set to 1 for the whole pool (so no call changes it under another),
    each file is decoded alone, single-threaded, as the codec's determinism rule asks. Every
    file is decoded; then the first :class:`FormatError` in the order of ``blobs``, if any,
    is raised, prefixed with the file's name. ``progress(values)``: a single file of format
    version 6 or 7 reports its decoded values.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ardm.coding import codec

    results: list[torch.Tensor | FormatError | None] = [None] * len(blobs)
    together = [i for i, blob in enumerate(blobs) if codec.batchable(blob)]
    if len(together) > 1:
        decoded = codec.decompress_many(model, [blobs[i] for i in together])
        for i, result in zip(together, decoded, strict=True):
            results[i] = result
    alone = [i for i, result in enumerate(results) if result is None]

    def one(i: int) -> torch.Tensor | FormatError:
        try:
            return codec.decompress(model, blobs[i], progress=progress)
        except FormatError as e:
            return e

    threads = torch.get_num_threads()
    if len(alone) <= 1 or threads == 1 or model.device.type != "cpu":
        for i in alone:  # one file: its tiles share the codec's pool
            results[i] = one(i)
    else:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=min(threads, len(alone))) as pool:
                for i, got in zip(alone, pool.map(one, alone), strict=True):
                    results[i] = got
        finally:
            torch.set_num_threads(threads)
    out: list[torch.Tensor] = []
    for name, ready in zip(names, results, strict=True):
        if isinstance(ready, FormatError):
            raise FormatError(f"{name}: {ready}") from None
        assert ready is not None
        out.append(ready)
    return out


# ---------------------------------------------------------------------------- names
def compressed_name(path: str, *, in_directory: bool) -> str:
    """Output file name for compressing ``path``: ``x.png`` -> ``x.png.ardm`` beside it, or
    ``x.ardm`` (the stem) in an output directory."""
    p = Path(path)
    return p.stem + SUFFIX if in_directory else p.name + SUFFIX


def decompressed_name(path: str, modality: Modality) -> str:
    """Output file name for decompressing ``path``: ``x.png.ardm`` and ``x.ardm`` -> ``x.png``
    (an image model) or ``x.txt`` (text; a text file keeps its own suffix: ``a.md.ardm`` ->
    ``a.md``); see :meth:`Modality.output_name`."""
    name = Path(path).name
    base = name[: -len(SUFFIX)] if name.endswith(SUFFIX) and len(name) > len(SUFFIX) else name
    return modality.output_name(base)


def display_name(path: str) -> str:
    """How an input is named in messages."""
    return "standard input" if path == STDIO else path


def check_stdio(inputs: list[str], output: str | None) -> None:
    """Standard input and output (``-``) serve a single input only."""
    if STDIO in inputs and len(inputs) > 1:
        raise DataError("'-' (standard input) works only as the single input")
    if output == STDIO and len(inputs) > 1:
        raise DataError("-o - (standard output) works only with a single input")


def output_paths(
    inputs: list[str],
    output: str | None,
    name: Callable[[str, bool], str],
    *,
    force: bool,
) -> list[str]:
    """One output path per input, checked before anything is coded.

    ``output`` is ``None`` (each output beside its input, ``name(input, False)``; standard
    output for standard input), ``-`` (standard output, one input only), a directory (an
    existing one, one ending in ``/``, or any path when there are several inputs; created;
    outputs ``name(input, True)`` inside it) or a file. Refuses ``-`` among several inputs,
    two inputs with the same output, and existing outputs unless ``force``.
    """
    check_stdio(inputs, output)
    if output is None:
        if inputs == [STDIO]:
            return [STDIO]
        outs = [str(Path(i).parent / name(i, False)) for i in inputs]
    elif output == STDIO:
        outs = [STDIO]
    elif len(inputs) > 1 or Path(output).is_dir() or output.endswith(("/", os.sep)):
        folder = Path(output)
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{output} is not a directory (with several inputs, -o names one)")
        if inputs == [STDIO]:
            raise DataError("standard input has no name: give -o a file name, not a directory")
        outs = [str(folder / name(i, True)) for i in inputs]
    else:
        outs = [output]
    seen: dict[str, str] = {}
    for i, o in zip(inputs, outs, strict=True):
        if o in seen:
            raise DataError(f"{seen[o]} and {i} would both be written to {o}")
        seen[o] = i
        check_writable(o, force=force)
    return outs


# ---------------------------------------------------------------------------- bytes in/out
def read_input(path: str) -> bytes:
    """The bytes of an input file, or of standard input for ``-``."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    if not p.is_file():
        raise DataError(f"{path}: not a file")
    try:
        return p.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def check_writable(path: str | Path, *, force: bool) -> None:
    """Refuse an output that exists (unless ``force``) or that is a directory."""
    if str(path) == STDIO:
        return
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p} is a directory")
    if p.exists() and not force:
        raise DataError(f"{p} exists; use --force to overwrite it")


def write_output(path: str | Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` atomically to ``path`` (``-``: standard output), never over an existing
    file unless ``force``."""
    from ardm.filesystem import atomic_write_bytes

    if str(path) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    check_writable(path, force=force)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise DataError(f"{path}: cannot write it ({e.strerror or e})") from None
