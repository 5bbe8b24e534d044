"""Text: UTF-8 over a model's alphabet, read strictly, and text with holes to fill in.

A text file is read as UTF-8 whose every character is in the model's alphabet
(:meth:`ardm.data.TextAlphabet.encode`), or refused with a one-line :class:`DataError`; the
bytes are read as they are (no newline translation), so a file that decodes writes back
byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ardm.data.text import TextAlphabet, text_chunks
from ardm.errors import DataError
from ardm.modalities.image import IMAGE_SUFFIXES
from ardm.modalities.modality import MAX_VALUES, Modality


def read_text(data: bytes, alphabet: TextAlphabet, *, name: str) -> torch.Tensor:
    """UTF-8 bytes -> ``(n,)`` uint8 ids; every character must be in ``alphabet``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{name}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "this model codes text"
        ) from None
    if not text:
        raise DataError(f"{name}: empty file; there is nothing to compress")
    if len(text) > MAX_VALUES:
        raise DataError(f"{name}: {len(text)} characters is too long (at most {MAX_VALUES})")
    try:
        return alphabet.encode(text)  # (n,)
    except DataError as e:
        raise DataError(f"{name}: {e}; this model codes only {_accepts(alphabet)}") from None


def _accepts(alphabet: TextAlphabet) -> str:
    symbols = alphabet.symbols
    if len(symbols) <= 40:
        shown = repr(symbols)
    else:
        shown = repr(symbols[:20]) + "..." + repr(symbols[-10:])
    newline = "" if "\n" in symbols else ", no newline (a trailing newline is refused too)"
    return f"the {alphabet.K} characters {shown}{newline}"


def text_bytes(x: torch.Tensor, alphabet: TextAlphabet) -> bytes:
    """The UTF-8 bytes of ids ``x (n,)``."""
    return alphabet.decode(x).encode("utf-8")


@dataclass(frozen=True)
class TextFiles(Modality):
    """What every text modality shares: text files of items of ``length`` values."""

    length: int

    kind: ClassVar[str] = "text"
    unit: ClassVar[str] = "bpc"
    suffix: ClassVar[str] = ".txt"
    binary: ClassVar[bool] = False

    def output_name(self, base: str) -> str:
        """A text file keeps its own suffix (``a.md``); ``x`` and images' names get ``.txt``."""
        suffix = Path(base).suffix.lower()
        if suffix and suffix not in IMAGE_SUFFIXES and suffix != ".ardm":
            return base
        return (Path(base).stem if suffix else base) + ".txt"

    def items(self, data: torch.Tensor) -> torch.Tensor:
        """A split's stream ``(n,)`` cut into consecutive items ``(N, length)``."""
        return text_chunks(data, self.length)


@dataclass(frozen=True)
class TextModality(TextFiles):
    """Text over ``alphabet``, in items of ``length`` characters."""

    alphabet: TextAlphabet = field(kw_only=True)

    def read(self, data: bytes, *, name: str) -> torch.Tensor:
        return read_text(data, self.alphabet, name=name)  # (n,)

    def write(self, x: torch.Tensor) -> bytes:
        return text_bytes(x, self.alphabet)

    def save_samples(self, x: torch.Tensor, output: str | None, *, calls: int) -> str:
        """Samples one per line, into ``output`` or (without one) as the line to print."""
        text = "\n".join(self.alphabet.decode(row) for row in x.cpu())
        if not output:
            return text
        Path(output).write_text(text + "\n")
        return f"wrote {x.shape[0]} samples ({calls} network calls each) to {output}"

    def hole_mask(self, text: str, *, hole: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids ``(L,)`` of ``text`` padded with holes to ``L = length``, and ``known (L,)``:
        False at each ``hole`` (whose id, the alphabet's first symbol's, is never looked at)."""
        length = self.length
        if len(text) > length:
            raise DataError(f"text has {len(text)} characters; the model takes at most {length}")
        text = text + hole * (length - len(text))
        known = torch.tensor([c != hole for c in text])  # (L,)
        filled = "".join(c if c != hole else self.alphabet.symbols[0] for c in text)
        return self.alphabet.encode(filled).long(), known  # (L,), (L,)


@dataclass(frozen=True)
class ByteTextModality(TextFiles):
    """Any file as raw bytes (``K = 256``, id = byte value), in items of ``length`` bytes: a
    byte-level text model codes UTF-8 text of any alphabet, and any other byte too."""

    def read(self, data: bytes, *, name: str) -> torch.Tensor:
        if not data:
            raise DataError(f"{name}: empty file; there is nothing to compress")
        if len(data) > MAX_VALUES:
            raise DataError(f"{name}: {len(data)} bytes is too long (at most {MAX_VALUES})")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)  # (n,)

    def write(self, x: torch.Tensor) -> bytes:
        return bytes(x.to(torch.uint8).cpu().numpy().tobytes())

    def save_samples(self, x: torch.Tensor, output: str | None, *, calls: int) -> str:
        """Samples one per line (invalid UTF-8 shown as U+FFFD), into ``output`` or printed."""
        rows = [self.write(row).decode("utf-8", errors="replace") for row in x.cpu()]
        text = "\n".join(row.replace("\n", " ") for row in rows)
        if not output:
            return text
        Path(output).write_text(text + "\n")
        return f"wrote {x.shape[0]} samples ({calls} network calls each) to {output}"

    def hole_mask(self, text: str, *, hole: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Bytes ``(L,)`` of ``text`` (UTF-8) padded with holes to ``L = length``, and ``known``:
        False at each byte of a ``hole`` character."""
        pieces = [b"\0" * len(c.encode()) if c == hole else c.encode() for c in text]
        known_parts = [[c != hole] * len(c.encode()) for c in text]
        data = b"".join(pieces)
        known_list = [k for part in known_parts for k in part]
        if len(data) > self.length:
            raise DataError(f"text has {len(data)} bytes; the model takes at most {self.length}")
        pad = self.length - len(data)
        x = torch.tensor(list(data) + [0] * pad, dtype=torch.long)  # (L,)
        known = torch.tensor(known_list + [False] * pad)  # (L,)
        return x, known
