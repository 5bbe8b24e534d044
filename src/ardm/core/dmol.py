"""Discretised logistic mixture (DMoL) over ``K`` ordered classes (PixelCNN++ style).

Used for 16-bit audio (paper Sec. 5.3: 30 components), where ``K = 65536`` makes a softmax
impractical. Parameters are ``(..., 3M)``: ``M`` mixture logits, ``M`` means ``mu`` (on the
``[-1, 1]`` scale) and ``M`` log-scales ``log s``.

Bins. Class ``k`` is centred on ``c_k = -1 + 2k/(K-1)`` and covers ``[c_k - h, c_k + h)`` with
``h = 1/(K-1)``; the edge bins take the tails: class 0 is ``(-inf, c_0 + h)``, class ``K-1``
is ``[c_{K-1} - h, inf)``. With ``F`` the logistic CDF of one component,

    p(k) = sum_m w_m [F_m(c_k + h) - F_m(c_k - h)],   w = softmax(logits).

Numerics (float32 throughout, every sum a log-sum-exp):

* The mass of an interval ``[c - H, c + H)`` under one logistic is computed as
  ``log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log sigmoid(-b) + log(1 - exp(-(a - b)))``
  with ``a = (c - mu)/s + H/s``, ``b = (c - mu)/s - H/s``. Each term is stable: ``log sigmoid``
  is ``-softplus``, and ``log(1 - exp(-d))`` is ``log(-expm1(-d))`` for ``d < ln 2``, else
  ``log1p(-exp(-d))``. The width ``d = 2H/s`` is formed directly, not as ``a - b``, so a bin
  of width ``3e-5`` (``K = 2^16``) keeps full relative precision; a difference of two CDFs
  in float32 would lose most digits there. Open ends use ``a = +inf`` / ``b = -inf``, whose
  terms are exactly 0.
* ``c - mu`` is formed from the centre as a float32 pair ``hi + lo`` (computed in float64):
  ``(hi - mu) + lo``. Rounding the centre alone to float32 would shift it by up to
  ``6e-8``, 0.2 % of a 16-bit bin, and leave gaps and overlaps between bins worth ~1e-5 of
  probability; with the pair the error is relative to ``c - mu`` itself, so sharp components
  stay normalised to ~1e-6 and a far tail bin's log-probability is accurate to ~1e-7 of
  itself.
* Log-scales are clamped below at ``log(2/(K-1)) - 4`` (a component may put all but ~1e-11
  of its mass in one bin, e.g. digital silence, but is no sharper; ``-15.1`` for ``K = 2^16``,
  ``-9.5`` for ``K = 256``). This bounds the gradients ``~1/s`` with respect to the means.

Because interval masses telescope, the mass of a block of classes ``[lo, hi)`` is the same
formula on the block's interval; :func:`dmol_byte_log_probs` uses this to factor a 16-bit
distribution into a 256-way high byte and a 256-way low byte given the high byte.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BYTE = 256


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for small and large ``d``; 0 at ``inf``."""
    small = d < math.log(2.0)
    d_small = torch.where(small, d, torch.ones_like(d))
    d_large = torch.where(small, torch.ones_like(d), d)
    return torch.where(small, torch.log(-torch.expm1(-d_small)), torch.log1p(-torch.exp(-d_large)))


def _split(params: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(…, 3M)`` -> log weights, means, inverse scales, each ``(…, M)`` float32."""
    if params.shape[-1] % 3 != 0 or params.shape[-1] == 0:
        raise ValueError(f"DMoL params need a last axis of 3M, got {params.shape[-1]}")
    if K < 2:
        raise ValueError(f"DMoL needs K >= 2 classes, got {K}")
    logits, mu, log_s = params.float().chunk(3, dim=-1)  # (..., M) each
    log_s = log_s.clamp(min=log_scale_min(K))
    return torch.log_softmax(logits, dim=-1), mu, torch.exp(-log_s)


def log_scale_min(K: int) -> float:
    """The clamp on log-scales: ``log(bin width) - 4``."""
    return math.log(2.0 / (K - 1)) - 4.0


def _interval_log_mass(
    lo: torch.Tensor,
    n: int,
    K: int,
    log_w: torch.Tensor,
    mu: torch.Tensor,
    inv_s: torch.Tensor,
) -> torch.Tensor:
    """``log p(lo <= x < lo + n)`` of the mixture, ``lo (...)`` int64 -> ``(...)`` float32.

    The interval is ``[c_lo - h, c_{lo+n-1} + h)``, opened to ``-inf`` when ``lo = 0`` and to
    ``+inf`` when ``lo + n = K``. ``log_w, mu, inv_s`` are ``(..., M)``.
    """
    # Centre of the interval, -1 + (2 lo + n - 1) / (K - 1), as a float32 pair hi + lo
    # (from float64); hi - mu is exact near mu (Sterbenz), so z is accurate to float32
    # rounding of z itself, not of the centre: the error in a, b is ~1e-7 |a|.
    centre = (2 * lo + (n - 1) - (K - 1)).double() / (K - 1)  # (...) float64
    c_hi = centre.float()
    c_lo = (centre - c_hi.double()).float()  # (...) the rounding error of c_hi
    z = (c_hi[..., None] - mu) + c_lo[..., None]  # (..., M) centre - mu
    half = n / (K - 1)  # half width of the interval, H = n h
    a = (z + half) * inv_s  # (..., M) upper edge, standardised
    b = (z - half) * inv_s  # (..., M) lower edge, standardised
    d = (2.0 * half) * inv_s  # (..., M) a - b, formed directly
    at_bottom = (lo == 0)[..., None]  # (..., 1) open below: b = -inf
    at_top = (lo + n == K)[..., None]  # (..., 1) open above: a = +inf
    log_cdf_a = torch.where(at_top, 0.0, -F.softplus(-a))  # log sigmoid(a)
    log_sf_b = torch.where(at_bottom, 0.0, -F.softplus(b))  # log sigmoid(-b) = log(1 - F(b))
    gap = torch.where(at_top | at_bottom, 0.0, _log1mexp(d))  # log(1 - exp(-(a - b)))
    both = at_top & at_bottom  # the whole line: mass 1
    log_mass = torch.where(both, 0.0, log_cdf_a + log_sf_b + gap)  # (..., M)
    return torch.logsumexp(log_w + log_mass, dim=-1)  # (...)


def dmol_log_prob(params: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """``log p(x)`` (nats, float32) of classes ``x (...)`` in ``[0, K)``; ``params (..., 3M)``."""
    log_w, mu, inv_s = _split(params, K)
    return _interval_log_mass(x.long(), 1, K, log_w, mu, inv_s)


def dmol_log_probs_range(
    params: torch.Tensor, lo: int | torch.Tensor, hi: int | torch.Tensor, K: int
) -> torch.Tensor:
    """Log-probabilities ``(..., n)`` of the classes ``lo, lo+1, ..., hi-1``.

    ``lo`` and ``hi`` are ints or ``(...)`` integer tensors with the same ``n = hi - lo`` at
    every position; all classes must lie in ``[0, K)``.
    """
    log_w, mu, inv_s = _split(params, K)
    lo_t = torch.as_tensor(lo, device=params.device).long()
    hi_t = torch.as_tensor(hi, device=params.device).long()
    widths = torch.unique(hi_t - lo_t)
    if widths.numel() != 1 or int(widths[0]) < 1:
        raise ValueError(f"need one range width hi - lo >= 1 everywhere, got {widths.tolist()}")
    n = int(widths[0])
    if bool((lo_t < 0).any()) or bool((hi_t > K).any()):
        raise ValueError(f"class range must lie in [0, {K}]")
    lo_t = lo_t.expand(params.shape[:-1])  # (...)
    classes = lo_t[..., None] + torch.arange(n, device=params.device)  # (..., n)
    return _interval_log_mass(
        classes, 1, K, log_w[..., None, :], mu[..., None, :], inv_s[..., None, :]
    )  # (..., n)


def dmol_byte_log_probs(params: torch.Tensor, hi_byte: torch.Tensor | None = None) -> torch.Tensor:
    """A 16-bit DMoL (``K = 65536``) as two 256-way symbols: ``x = 256 hi + lo``.

    ``hi_byte=None``: ``log p(hi)`` ``(..., 256)``, the mass of each block of 256 classes.
    ``hi_byte (...)``: ``log p(lo | hi)`` ``(..., 256)``, the block's class log-probabilities
    normalised by their log-sum-exp. Mathematically ``log p(hi) + log p(lo | hi) =``
    :func:`dmol_log_prob`; numerically they agree to float32 rounding (~1e-7 of the
    log-probability), and each returned distribution sums to 1 to ~1e-6.
    """
    K = BYTE * BYTE
    if hi_byte is None:
        log_w, mu, inv_s = _split(params, K)
        lo = torch.arange(BYTE, device=params.device) * BYTE  # (256,)
        lo = lo.expand(*params.shape[:-1], BYTE)  # (..., 256)
        return _interval_log_mass(
            lo, BYTE, K, log_w[..., None, :], mu[..., None, :], inv_s[..., None, :]
        )  # (..., 256)
    hi = hi_byte.long()
    if bool((hi < 0).any()) or bool((hi >= BYTE).any()):
        raise ValueError("hi_byte must lie in [0, 256)")
    block = dmol_log_probs_range(params, hi * BYTE, hi * BYTE + BYTE, K)  # (..., 256)
    # Shift by the block's max first (exact): a block far in a tail has log-probabilities
    # near -1e4, where one float32 ulp of its log-sum-exp would be ~1e-3.
    block = block - block.max(dim=-1, keepdim=True).values
    return block - torch.logsumexp(block, dim=-1, keepdim=True)


def dmol_sample(
    params: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """One class ``(...)`` int64 per position from the mixture ``params (..., 3M)``.

    A component is drawn by Gumbel-max on ``logits / temperature``, a value from its logistic
    with scale ``s * temperature`` by inverse CDF, and the value is rounded to its bin
    (``temperature = 1``: exactly the distribution of :func:`dmol_log_prob`). The noise is
    drawn on the CPU in float64 from ``generator``, so a seed gives the same samples on any
    device.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if params.shape[-1] % 3 != 0 or params.shape[-1] == 0:
        raise ValueError(f"DMoL params need a last axis of 3M, got {params.shape[-1]}")
    logits, mu, log_s = params.double().chunk(3, dim=-1)  # (..., M) each
    log_s = log_s.clamp(min=log_scale_min(K))
    g = torch.rand(logits.shape, generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(g.clamp(1e-300, 1.0 - 1e-16))).to(params.device)
    m = (logits / temperature + gumbel).argmax(dim=-1, keepdim=True)  # (..., 1)
    mu_m = mu.gather(-1, m).squeeze(-1)  # (...)
    s_m = torch.exp(log_s.gather(-1, m).squeeze(-1)) * temperature  # (...)
    u = torch.rand(mu_m.shape, generator=generator, dtype=torch.float64).to(params.device)
    u = u.clamp(1e-300, 1.0 - 1e-16)
    y = mu_m + s_m * (torch.log(u) - torch.log1p(-u))  # (...) logistic sample
    k = torch.floor((y + 1.0) * ((K - 1) / 2.0) + 0.5)  # bin [c_k - h, c_k + h) -> k
    return k.clamp(0, K - 1).long()


def dmol_init_bias(M: int) -> torch.Tensor:
    """Offsets ``(3M,)`` added to a zero-initialised output so the mixture starts near uniform.

    Logits 0 (equal weights), means ``linspace(-1, 1, M)``, log-scales ``-log M`` (each
    component about as wide as the spacing of the means; paper Sec. 5.3).
    """
    if M < 1:
        raise ValueError(f"a mixture needs M >= 1 components, got {M}")
    means = torch.linspace(-1.0, 1.0, M) if M > 1 else torch.zeros(1)
    return torch.cat([torch.zeros(M), means, torch.full((M,), -math.log(M))])
