"""Text: alphabets, the text8 normalisation, and the readers of the three text corpora.

Every corpus is loaded as one 1-D ``uint8`` stream of token ids (the whole split); models see
random crops of it (training) or consecutive chunks of it (:func:`text_chunks`, evaluation).

- ``english``: text8-style English (``english/{train,valid,test}.txt``), normalised with
  :func:`text8_normalise`; 27 symbols, space = 0, ``a``..``z`` = 1..26.
- ``shakespeare``: tiny-shakespeare (``tinyshakespeare/input.txt``), character level with
  the 65 characters of the file; first 90 % train, last 10 % valid (= test).
- ``english-bytes``: the same English files as raw UTF-8 bytes (``K = 256``, id = byte value:
  any text, and any other byte too).
- ``text8``: Mahoney's real text8 file (``text8/text8`` or ``text8``), already normalised,
  split 90 % / 5 % / 5 % (90M / 5M / 5M characters for the real 100M file).

The paper's code reserves id 0 and uses 1..27 (vocabulary 28); here the 27 symbols take ids
0..26 and the absorbing token of a text network is id ``K`` = 27.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from ardm.errors import DataError

TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"
"""The 27 symbols of text8: space = 0, ``a``..``z`` = 1..26."""

SHAKESPEARE_ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The sorted set of the 65 characters of tiny-shakespeare's ``input.txt`` (checked on load)."""

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_SPACE = ord(" ")

# Byte table of the text8 recipe before digits are spelled out: ASCII A-Z -> a-z, a-z and
# 0-9 kept, every other byte (punctuation, whitespace, every byte of a multi-byte UTF-8
# character) -> space. UTF-8 continuation bytes are >= 0x80, so a byte-wise map is safe.
_TEXT8_BYTE_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else c if (97 <= c <= 122 or 48 <= c <= 57) else _SPACE
    for c in range(256)
)

# Byte -> text8 id (255 = not a text8 symbol).
_TEXT8_ID_OF_BYTE = np.full(256, 255, dtype=np.uint8)
_TEXT8_ID_OF_BYTE[[ord(c) for c in TEXT8_ALPHABET]] = np.arange(27, dtype=np.uint8)


def _text8_normalise_bytes(raw: bytes) -> npt.NDArray[np.uint8]:
    """The text8 recipe on UTF-8 bytes, vectorised: returns the normalised ASCII bytes."""
    data = raw.translate(_TEXT8_BYTE_TABLE)
    for digit, word in enumerate(DIGIT_WORDS):
        data = data.replace(str(digit).encode(), f" {word} ".encode())
    arr = np.frombuffer(data, dtype=np.uint8)  # (n,)
    space = arr == _SPACE  # (n,)
    keep = np.ones(arr.shape, dtype=bool)
    keep[1:] = ~(space[1:] & space[:-1])  # drop a space that follows a space
    return arr[keep]


def text8_normalise(s: str) -> str:
    """Mahoney's text8 recipe (``wikifil.pl``) applied to ``s``.

    1. Lowercase ASCII ``A``-``Z`` (as ``wikifil.pl``; a non-ASCII letter such as ``é`` is
       not a-z and so becomes a space).
    2. Spell out each digit as a word surrounded by spaces: ``"1"`` -> ``" one "``.
    3. Every other character that is not ``a``-``z`` becomes a space.
    4. Collapse runs of spaces to one. Leading/trailing single spaces are kept (text8
       itself starts with a space).

    >>> text8_normalise("Hello, World 42!")
    'hello world four two '
    """
    return _text8_normalise_bytes(s.encode("utf-8")).tobytes().decode("ascii")


class TextAlphabet:
    """A character-level vocabulary: symbol ``symbols[i]`` has id ``i``; ``K = len(symbols)``."""

    def __init__(self, symbols: str) -> None:
        if not symbols:
            raise DataError("an alphabet needs at least one symbol")
        if len(set(symbols)) != len(symbols):
            dups = sorted({c for c in symbols if symbols.count(c) > 1})
            raise DataError(f"alphabet has repeated symbols: {', '.join(map(repr, dups))}")
        if len(symbols) > 256:
            raise DataError(f"alphabet has {len(symbols)} symbols; at most 256 fit in uint8 ids")
        self.symbols = symbols
        self._codes = np.array([ord(c) for c in symbols], dtype=np.int64)  # (K,) code points
        self._id_of_code = np.full(int(self._codes.max()) + 1, -1, dtype=np.int64)
        self._id_of_code[self._codes] = np.arange(len(symbols))

    @property
    def K(self) -> int:
        """Number of symbols (classes)."""
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"TextAlphabet({self.symbols!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextAlphabet) and other.symbols == self.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def encode(self, s: str) -> torch.Tensor:
        """``s`` as a 1-D ``uint8`` tensor of ids; a :class:`DataError` lists foreign characters."""
        codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # (n,)
        ids = np.full(codes.shape, -1, dtype=np.int64)
        inside = codes < len(self._id_of_code)
        ids[inside] = self._id_of_code[codes[inside]]
        bad = ids < 0
        if bad.any():
            values, counts = np.unique(codes[bad], return_counts=True)
            order = np.argsort(-counts, kind="stable")[:5]
            shown = ", ".join(f"{chr(int(values[i]))!r} x{int(counts[i])}" for i in order)
            more = f" and {len(values) - len(order)} more" if len(values) > len(order) else ""
            raise DataError(
                f"{int(bad.sum())} characters outside the alphabet of {self.K} symbols "
                f"({len(values)} distinct): {shown}{more}"
            )
        return torch.from_numpy(ids.astype(np.uint8))

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The string of a 1-D sequence of ids (any integer dtype)."""
        arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
        arr = arr.reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.K):
            raise DataError(
                f"ids must lie in [0, {self.K}); got values in [{arr.min()}, {arr.max()}]"
            )
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le")


def text_chunks(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Consecutive non-overlapping chunks ``(N, seq_len)`` of a 1-D stream; the tail is dropped.

    This is the evaluation layout of the paper (consecutive 250-character chunks of text8).
    """
    if stream.dim() != 1:
        raise DataError(f"a text stream must be 1-D; got shape {tuple(stream.shape)}")
    if seq_len < 1:
        raise DataError(f"seq_len must be >= 1; got {seq_len}")
    n = stream.numel() // seq_len
    if n == 0:
        raise DataError(f"a stream of {stream.numel()} tokens has no chunk of {seq_len}")
    return stream[: n * seq_len].view(n, seq_len)  # (N, seq_len)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def read_english(path: Path) -> torch.Tensor:
    """A UTF-8 English text file, text8-normalised, as ``uint8`` ids over :data:`TEXT8_ALPHABET`."""
    normalised = _text8_normalise_bytes(_read_bytes(path))  # (n,) ASCII bytes
    return torch.from_numpy(_TEXT8_ID_OF_BYTE[normalised])  # (n,) uint8 in [0, 27)


def read_bytes(path: Path) -> torch.Tensor:
    """A file's raw bytes as ``uint8`` ids ``(n,)`` (byte ``v`` has id ``v``; ``K = 256``)."""
    return torch.from_numpy(np.frombuffer(_read_bytes(path), dtype=np.uint8).copy())


def read_shakespeare(path: Path, split: str) -> torch.Tensor:
    """tiny-shakespeare ids over :data:`SHAKESPEARE_ALPHABET`; the split is taken by position.

    ``train`` = the first 90 % (``n * 9 // 10`` characters, as nanoGPT/char-rnn), ``valid`` =
    the last 10 %. There is no separate test set: ``test`` is the same last 10 %.
    """
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start})") from None
    try:
        ids = TextAlphabet(SHAKESPEARE_ALPHABET).encode(text)  # (n,)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    n_train = len(ids) * 9 // 10
    return ids[:n_train].clone() if split == "train" else ids[n_train:].clone()


def text8_split_bounds(n: int, split: str) -> tuple[int, int]:
    """``[start, stop)`` of a text8 split in a file of ``n`` characters: 90 % / 5 % / 5 %.

    For the real 100,000,000-character file this is the standard 90M / 5M / 5M split.
    """
    n_train, n_valid = n * 9 // 10, n // 20
    bounds = {
        "train": (0, n_train),
        "valid": (n_train, n_train + n_valid),
        "test": (n_train + n_valid, n),
    }
    return bounds[split]


def read_text8(path: Path, split: str) -> torch.Tensor:
    """One split of the real text8 file (only that byte range is read) as ``uint8`` ids.

    The file must contain only ``a``-``z`` and spaces; one trailing newline is tolerated.
    """
    try:
        with path.open("rb") as f:
            n = f.seek(0, 2)
            if n > 0:
                f.seek(n - 1)
                n -= f.read(1) == b"\n"
            start, stop = text8_split_bounds(n, split)
            f.seek(start)
            raw = f.read(stop - start)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    ids = _TEXT8_ID_OF_BYTE[np.frombuffer(raw, dtype=np.uint8)]  # (stop - start,)
    bad = ids == 255
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path} is not a text8 file: {int(bad.sum())} bytes outside a-z and space in the "
            f"{split} split (first {raw[first : first + 1]!r} at offset {start + first})"
        )
    return torch.from_numpy(ids)
