"""Integer tables of exp, sigmoid and sinusoids, the same on every machine.

libm's ``exp``, ``sin``, ``tanh`` and ``erf`` are not correctly rounded, so they may differ
in the last bit between platforms (and between torch's SIMD kernels). These tables are
computed with Python's :mod:`decimal` instead (software arithmetic: the same digits on every
machine): its ``exp`` and ``ln`` are correctly rounded at any precision, and sine/cosine below
are plain Taylor sums in ``Decimal``; the results are rounded (half to even) to integers.

The exp and sigmoid tables run along ``exp(-i / 2^f)`` for consecutive ``i``: one ``exp`` and
then a product per entry (:func:`_exp_steps`, at :data:`_STEP_PREC` digits, so that tens of
thousands of products stay far more accurate than the 40-digit ``exp`` of one entry), and the
sigmoid's negative half mirrors its positive half (``sigmoid(-z) = 1 - sigmoid(z)``, never
a tie for ``z != 0``). An entry could differ from its correctly rounded value only where the
exact value lies within ``10^-30`` of a half-integer; ``tests/portable/test_tables.py``
checks every table the networks use against the entry-by-entry ``exp``.
"""

from __future__ import annotations

import functools
from decimal import Context, Decimal, localcontext

import torch

_PREC = 40
_STEP_PREC = 70
_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def _context() -> Context:
    return Context(prec=_PREC)


def _round(value: Decimal) -> int:
    """Round half to even to an integer."""
    return int(value.to_integral_value(context=Context(prec=_PREC, rounding="ROUND_HALF_EVEN")))


def _exp_steps(*, frac_bits: int, start: int, count: int) -> list[Decimal]:
    """``exp(-(start + i) / 2^frac_bits)`` for ``i`` in ``[0, count)``: one ``exp`` and then one
    product per entry, at :data:`_STEP_PREC` digits (relative error below ``count 10^-69``)."""
    with localcontext(Context(prec=_STEP_PREC)):
        step = Decimal(1) / (Decimal(2) ** frac_bits)
        ratio = (-step).exp()
        value = (-(start * step)).exp()
        values = []
        for _ in range(count):
            values.append(value)
            value = value * ratio
    return values


@functools.lru_cache(maxsize=8)
def exp_table(*, frac_bits: int, span: int, out_bits: int) -> torch.Tensor:
    """``round(2^out_bits * exp(-i / 2^frac_bits))`` for ``i`` in ``[0, span * 2^frac_bits)``, int64."""
    return exp_range_table(frac_bits=frac_bits, start=0, count=span << frac_bits, out_bits=out_bits)


@functools.lru_cache(maxsize=8)
def sigmoid_table(*, frac_bits: int, span: int, out_bits: int) -> torch.Tensor:
    """``round(2^out_bits * sigmoid(z))`` for ``z = i / 2^frac_bits``, ``i`` in ``[-span 2^f, span 2^f)``.

    Entry ``j`` holds ``z = (j - span * 2^frac_bits) / 2^frac_bits``.
    """
    n = span << frac_bits
    one_int = 1 << out_bits
    with localcontext(Context(prec=_STEP_PREC)):
        one = Decimal(one_int)
        # z = i 2^-f >= 0: sigmoid(z) = 1 / (1 + exp(-z)); round(one - v) = one - round(v)
        # (v is never a half-integer: sigmoid(z) is irrational for rational z != 0)
        pos = [_round(one / (1 + e)) for e in _exp_steps(frac_bits=frac_bits, start=0, count=n + 1)]
    values = [one_int - pos[-i] for i in range(-n, 0)] + pos[:n]
    return torch.tensor(values, dtype=torch.int64)  # (2 * span * 2^f,)


def _sin_cos(angle: Decimal) -> tuple[Decimal, Decimal]:
    """``(sin, cos)`` of an angle by reduction to ``[-pi, pi]`` and Taylor sums (in context)."""
    two_pi = 2 * _PI
    a = angle - two_pi * (angle / two_pi).to_integral_value(rounding="ROUND_HALF_EVEN")
    sin, cos, term, n = Decimal(0), Decimal(0), Decimal(1), 0  # term = a^n / n!
    eps = Decimal(10) ** (-_PREC + 5)
    while abs(term) > eps or n < 2:
        if n % 4 == 0:
            cos += term
        elif n % 4 == 1:
            sin += term
        elif n % 4 == 2:
            cos -= term
        else:
            sin -= term
        n += 1
        term = term * a / n
    return sin, cos


@functools.lru_cache(maxsize=8)
def sinusoid_table(
    *, steps: int, dim: int, D: int, out_bits: int, max_period: int = 10000
) -> torch.Tensor:
    """The integer form of :func:`ardm.nets.embeddings.sinusoidal_embedding` of ``t * 1000 / D``.

    Row ``t`` (for ``t`` in ``[0, steps)``) is ``round((2^out_bits - 1) * [sin(s w_i), cos(s
    w_i)])`` with ``s = t * 1000 / D`` and ``w_i = max_period^(-i / (dim // 2 - 1))``; an odd
    ``dim`` gets a trailing zero column. Shape ``(steps, dim)`` int64.
    """
    half = dim // 2
    amp = (1 << out_bits) - 1
    rows = []
    with localcontext(_context()):
        log_period = Decimal(max_period).ln()
        freqs = [(-(log_period * i) / max(half - 1, 1)).exp() for i in range(half)]
        for t in range(steps):
            s = Decimal(t) * 1000 / D
            pairs = [_sin_cos(s * w) for w in freqs]
            row = [_round(amp * p[0]) for p in pairs] + [_round(amp * p[1]) for p in pairs]
            rows.append(row + [0] * (dim - 2 * half))
    return torch.tensor(rows, dtype=torch.int64)  # (steps, dim)


def _normal_cdf(z: Decimal) -> Decimal:
    """``Phi(z) = (1 + erf(z / sqrt 2)) / 2`` in context; ``erf`` by its series of positive
    terms, ``erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1))`` (no
    cancellation, converges for every ``x``)."""
    x = abs(z) / Decimal(2).sqrt()
    term, total, n = x, x, 0
    eps = Decimal(10) ** (-_PREC + 5)
    while term > eps * total:
        n += 1
        term = term * 2 * x * x / (2 * n + 1)
        total += term
    erf = 2 / _PI.sqrt() * (-(x * x)).exp() * total
    half = (1 + erf) / 2
    return half if z >= 0 else 1 - half


@functools.lru_cache(maxsize=8)
def normal_cdf_table(*, frac_bits: int, span: int, out_bits: int) -> torch.Tensor:
    """``round(2^out_bits * Phi(z))`` (the standard normal CDF, GELU's gate) for ``z = i /
    2^frac_bits``, ``i`` in ``[-span 2^f, span 2^f)``; entry ``j`` holds ``z = (j - span *
    2^frac_bits) / 2^frac_bits``. Int64, ``(2 * span * 2^f,)``.

    Beyond ``|z| = 9`` the value is 0 or ``2^out_bits`` exactly after rounding (``2^40
    Phi(-9) < 10^-7``), so the series is summed only inside that range (``out_bits <= 40``).
    """
    if out_bits > 40:
        raise ValueError(f"normal_cdf_table supports out_bits <= 40, got {out_bits}")
    one_int = 1 << out_bits
    with localcontext(_context()):
        one = Decimal(2) ** out_bits
        step = Decimal(1) / (Decimal(2) ** frac_bits)
        n = span << frac_bits
        cut = 9 << frac_bits
        values = []
        for i in range(-n, n):
            if abs(i) > cut:
                values.append(0 if i < 0 else one_int)
            else:
                values.append(_round(one * _normal_cdf(i * step)))
    return torch.tensor(values, dtype=torch.int64)  # (2 * span * 2^f,)


@functools.lru_cache(maxsize=8)
def rotary_table(
    *, positions: int, head_dim: int, out_bits: int, base: int = 10000
) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer form of :func:`ardm.nets.embeddings.rotary_cos_sin` for positions
    ``0 .. positions - 1``: ``(round(2^out_bits cos(p w_i)), round(2^out_bits sin(p w_i)))``
    with ``w_i = base^(-2 i / head_dim)``, each ``(positions, head_dim // 2)`` int64."""
    half = head_dim // 2
    amp = Decimal(2) ** out_bits
    cos_rows, sin_rows = [], []
    with localcontext(_context()):
        log_base = Decimal(base).ln()
        freqs = [(-(log_base * 2 * i) / head_dim).exp() for i in range(half)]
        for p in range(positions):
            pairs = [_sin_cos(Decimal(p) * w) for w in freqs]
            sin_rows.append([_round(amp * s) for s, _ in pairs])
            cos_rows.append([_round(amp * c) for _, c in pairs])
    return torch.tensor(cos_rows, dtype=torch.int64), torch.tensor(sin_rows, dtype=torch.int64)


@functools.lru_cache(maxsize=8)
def tanh_table(*, frac_bits: int, span: int, out_bits: int) -> torch.Tensor:
    """``round(2^out_bits * tanh(z))`` for ``z = i / 2^frac_bits``, ``i`` in ``[-span 2^f, span 2^f)``.

    Entry ``j`` holds ``z = (j - span * 2^frac_bits) / 2^frac_bits``; ``tanh(z) = 1 - 2 /
    (exp(2 z) + 1)`` in ``Decimal``.
    """
    with localcontext(_context()):
        one = Decimal(2) ** out_bits
        step = Decimal(1) / (Decimal(2) ** frac_bits)
        n = span << frac_bits
        values = [_round(one - 2 * one / (1 + (2 * i * step).exp())) for i in range(-n, n)]
    return torch.tensor(values, dtype=torch.int64)  # (2 * span * 2^f,)


@functools.lru_cache(maxsize=8)
def exp_range_table(*, frac_bits: int, start: int, count: int, out_bits: int) -> torch.Tensor:
    """``round(2^out_bits * exp(-(start + i) / 2^frac_bits))`` for ``i`` in ``[0, count)``,
    int64; ``start`` may be negative (values above ``2^out_bits``)."""
    with localcontext(Context(prec=_STEP_PREC)):
        one = Decimal(2) ** out_bits
        values = [
            _round(one * e) for e in _exp_steps(frac_bits=frac_bits, start=start, count=count)
        ]
    return torch.tensor(values, dtype=torch.int64)  # (count,)
