"""The entropy coder: rANS from ``constriction``, one call per policy step.

This is the only module that imports ``constriction``. ANS is a stack: the encoder pushes
the policy steps in *reverse* order, and within a step :meth:`Encoder.push_step` pushes the
symbols so that :meth:`Decoder.pop_step` returns them in forward order. The decoder walks
the policy forwards with exactly the same probability rows.

Probabilities. Every row handed to the coder is smoothed in float64 (paper Sec. 4, App.
``get_safe_probs``), ``p = (1 - eps*K) * softmax + eps`` with ``eps = min(2e-5, 1/(128 K))``,
so no symbol has zero mass and a badly predicted value costs at most ``-log2(eps)`` bits.
The price is at most ``-log2(1 - eps*K)`` bits per symbol: 0.0074 for ``K = 256``, 0.0011
for ``K = 27`` and never more than ``-log2(1 - 1/128) = 0.0113``. ``constriction`` then
quantises each row to integer frequencies (24-bit precision, ``perfect=False``, set once in
:data:`_CATEGORICAL`); the result depends only on the float64 values, so identical rows on
both sides give identical frequencies.

Payload bytes. ``constriction`` gives the compressed stack as ``uint32`` words; the payload
is those words in little-endian order with the trailing zero bytes of the last word removed
(that word is the top of the stack and never zero, so at most 3 bytes go and the last
payload byte is never zero). :class:`Decoder` pads back to whole words and refuses a payload
that ends in a zero byte.

Initial state (format version 4). An :class:`Encoder` may start from a 32-bit word
``initial`` instead of the empty stack: the stack is then that one word, and the symbols are
pushed on top of it. A decoder that pops every symbol with the same rows is left with exactly
that word (:meth:`Decoder.remaining`), so the word travels in the payload and is checked for
free. The codec puts the data's CRC-32 there. Why: an empty coder starts at state 0, and the
first symbols pushed pack badly, so the stack ends up about 17-27 bits longer than
``-sum log2 p`` (byte rounding included; measured with the shipped MNIST model, budget 20:
21.2 bits on average); started from a word of at least ``2**24`` the stack is that word's
bits plus ``-sum log2 p``, rounded up to bytes (there: 3.7 bits on average). So a 32-bit
checksum costs about 18 bits less inside the stream than in a 4-byte field (MNIST: 2.3
bytes less per file). The one thing given up: from the empty state (or a word below
``2**24``) the first 0s pushed can be free. ``initial = 0`` is the empty coder
(``constriction`` refuses a zero word on top of the stack; the empty stack is the state 0).
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from ardm.errors import FormatError, first_line

PRECISION_BITS = 24
"""Fixed-point precision of ``constriction``'s default categorical model."""

MAX_K = 1 << 20
"""Largest alphabet the coder accepts (well below ``2**PRECISION_BITS``)."""

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
"""The one categorical model family used for every symbol (lazy, ``perfect=False``)."""


def smoothing_eps(K: int) -> float:
    """The probability floor ``eps`` for ``K`` classes: ``min(2e-5, 1/(128 K))``, so ``eps*K < 1/128``."""
    return min(2e-5, 1.0 / (128 * K))


def smoothing_cost_bits(K: int) -> float:
    """Worst-case extra bits per symbol caused by the smoothing: ``-log2(1 - eps*K)``."""
    return -math.log2(1.0 - smoothing_eps(K) * K)


def smooth(probs: np.ndarray) -> np.ndarray:
    """``(1 - eps*K) * probs + eps`` in place on a float64 array ``(..., K)``; returns it."""
    K = probs.shape[-1]
    eps = smoothing_eps(K)
    probs *= 1.0 - eps * K
    probs += eps
    return probs


def _check_rows(probs: np.ndarray, n: int) -> np.ndarray:
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError(f"expected probabilities of shape ({n}, K), got {probs.shape}")
    if not 2 <= probs.shape[1] <= MAX_K:
        raise ValueError(f"K must lie in [2, {MAX_K}], got {probs.shape[1]}")
    return np.ascontiguousarray(probs, dtype=np.float64)


WORD_BITS = 32
"""Bits of one word of the compressed stack, and of an :class:`Encoder`'s initial state."""


class Encoder:
    """A stack of coded symbols for one item; push the policy steps in reverse order.

    ``initial`` (``0 <= initial < 2**32``) is the stack's one word before anything is pushed,
    left over for :meth:`Decoder.remaining` after the last pop; 0 (default) is the empty stack.
    """

    def __init__(self, initial: int = 0) -> None:
        initial = int(initial)
        if not 0 <= initial < 1 << WORD_BITS:
            raise ValueError(f"initial state must lie in [0, 2**{WORD_BITS}), got {initial}")
        words = np.array([initial] if initial else [], dtype=np.uint32)  # (0,) or (1,)
        self._coder = constriction.stream.stack.AnsCoder(words)

    def push_step(self, symbols: np.ndarray, probs: np.ndarray) -> None:
        """Push one step: ``symbols (n,)`` with rows ``probs (n, K)`` (float64, smoothed).

        A later :meth:`Decoder.pop_step` with the same rows returns ``symbols`` in order.
        """
        symbols = np.ascontiguousarray(symbols, dtype=np.int32)  # (n,)
        if symbols.ndim != 1:
            raise ValueError(f"expected symbols of shape (n,), got {symbols.shape}")
        n = symbols.shape[0]
        if n == 0:
            return
        probs = _check_rows(probs, n)  # (n, K)
        if symbols.min() < 0 or symbols.max() >= probs.shape[1]:
            raise ValueError(f"symbols must lie in [0, {probs.shape[1]})")
        self._coder.encode_reverse(symbols, _CATEGORICAL, probs)

    @property
    def num_bits(self) -> int:
        """Current size of the stack in bits (not rounded up to bytes)."""
        return int(self._coder.num_valid_bits())

    def get_bytes(self) -> bytes:
        """The payload: little-endian words, trailing zero bytes of the last word removed."""
        words = self._coder.get_compressed().astype("<u4", copy=False)  # (W,)
        return words.tobytes().rstrip(b"\x00")


class Decoder:
    """Pops the symbols of one item's payload, policy step by policy step (forward order)."""

    def __init__(self, payload: bytes) -> None:
        if payload and payload[-1] == 0:
            raise FormatError(
                "corrupt payload: it ends in a zero byte, which the coder never writes"
            )
        padded = payload + b"\x00" * (-len(payload) % 4)
        words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)  # (W,) native order
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except (ValueError, RuntimeError) as e:
            raise FormatError(f"corrupt payload: {first_line(e)}") from None

    def pop_step(self, probs: np.ndarray) -> np.ndarray:
        """Pop ``n`` symbols with rows ``probs (n, K)``: ``(n,)`` int64, in the pushed order."""
        n = probs.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        probs = _check_rows(probs, n)
        try:
            symbols = self._coder.decode(_CATEGORICAL, probs)  # (n,) int32
        except (ValueError, KeyError, RuntimeError, AssertionError) as e:
            raise FormatError(f"corrupt payload: {first_line(e)}") from None
        return np.asarray(symbols, dtype=np.int64)

    def finished(self) -> bool:
        """True iff every bit of the payload was consumed and the coder is back at the empty
        state (format versions 2 and 3, whose encoder starts empty)."""
        return bool(self._coder.is_empty())

    def remaining(self) -> int | None:
        """What is left on the stack: the encoder's ``initial`` once every symbol is popped.

        The value of the remaining stack if it is at most one word (0 when empty, as after
        :meth:`finished`); ``None`` if more is left (a payload that was not fully consumed).
        """
        if self._coder.num_words() > 1:  # the length of get_compressed(), without the copy
            return None
        words = self._coder.get_compressed()  # (0,) or (1,) uint32
        return int(words[0]) if len(words) else 0

    @property
    def bits_left(self) -> int:
        """Bits still on the stack (0 when :meth:`finished`)."""
        return int(self._coder.num_valid_bits())
