"""Budgets and policies: which steps share a network call (paper Sec. 3.1, App. A.2).

A ``policy`` is an increasing array of left step boundaries ``[0, pi_1, ..., pi_{B-1}]``;
``D`` is implicit, so the last step is ``[pi_{B-1}, D)``. One network call at ``t = l``
generates the ``r - l`` variables of the step ``[l, r)`` in parallel. By eq. 3 each of them
costs ``L[l]`` in expectation, so a policy costs

    cost(policy) = sum over steps [l, r) of (r - l) * L[l]      (bits per dim)

and with one call per variable (``budget = D``) this is ``sum(L)``, the model's bpd.

The best policy for a budget ``B`` is a shortest path with at most ``B`` edges: with the
transition cost ``N[s, t] = (t - s) * L[s]`` for ``t > s`` (``0`` for ``t = s``, ``inf`` for
``s > t``), the table

    C[0, 0] = 0,   C[0, t] = inf (t > 0),   C[k, t] = min_s C[k-1, s] + N[s, t]

is the least cost of the first ``t`` steps with at most ``k`` calls ("at most" because the
empty step ``N[t, t] = 0`` is allowed), ``C[B, D]`` is the expected cost of the best policy
and walking ``argmin`` back from ``t = D`` recovers it. :func:`reference_dp` fills the table
as written, in ``O(B * D^2)`` time and ``O(D^2)`` memory, for any ``L``.

Sorting. Before the DP, ``L`` is sorted non-increasing. For a calibrated model ``L_t`` does
not increase with ``t`` (eq. 4: more known variables cannot make the next one harder), so
sorting only removes the noise of the running estimate of ``L_t``; unsorted, the DP would
exploit that noise (start a long step exactly where a noisy ``L_t`` dips) and promise a bpd
the model cannot deliver. Sorting is also what makes the fast DP possible.

Fast DP (:func:`optimal_policy`). Layer ``k`` is a lower envelope of lines: each ``s``
defines ``f_s(t) = C[k-1, s] + (t - s) * L[s]``, a line in ``t`` with slope ``L[s]``, and
``C[k, t] = min_{s <= t} f_s(t)``. With ``L`` non-increasing the constraint ``s <= t`` can
be dropped: ``C[k-1, s] >= C[k-1, t] + (s - t) * L[s]`` for ``s > t`` (cut any policy for
the first ``s`` steps at ``t``; each later position ``u`` costs at least ``L[u] >= L[s]``),
so a line ``s > t`` is never below the empty step ``f_t(t) = C[k-1, t]``. Each layer then

1. guesses the envelope's lines: the previous layer's envelope lines (always with ``s = 0``);
2. checks every line against the guess, at once: a line that is not above the guess's
   polyline (in the dual plane of points ``(-L[s], C[k-1, s] - s * L[s])``), or beyond its
   last line and below that line at ``t = D``, is added. Lines that pass stay dominated
   however many lines are added, so one check suffices;
3. takes the lower convex hull of the guessed and added lines by repeated NumPy passes
   that drop every other point of each run of points on or above their neighbours' chord;
4. reads each integer ``t``'s line off the hull's breakpoints (a histogram and a cumsum).

That is ``O(D)`` NumPy work per layer, a few dozen passes over arrays of size ``D``. If the
hull passes do not converge quickly (an adversarial ``L``), the layer falls back to divide
and conquer over ``t``, which rests on the quadrangle inequality of ``N`` for sorted ``L``:
for ``a <= b <= c <= d``, ``N[a, d] + N[b, c] - N[a, c] - N[b, d] = (d - c) * (L[a] - L[b])
>= 0``. It gives (a) within a layer, an argmin monotone in ``t``, and (b) exchanging the
tails of two optimal paths where they cross, an argmin of layer ``k`` at or above any argmin
of layer ``k-1``; searching level by level between known argmins costs ``O(D log D)`` per
layer. The argmins of all layers are kept as ``int16`` (``int32`` for ``D >= 32768``),
``2 * B * (D + 1)`` bytes, to walk the best path back for every budget.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "monotone_losses",
    "naive_policy",
    "optimal_policies",
    "optimal_policy",
    "policy_cost",
    "policy_costs",
    "reference_dp",
    "split_budget",
    "step_bounds",
]

Policy = npt.NDArray[np.int64]


# ---------------------------------------------------------------------------- L_t fits
LOSS_FITS = ("sort", "isotonic")


def monotone_losses(L: npt.ArrayLike, fit: str = "sort") -> npt.NDArray[np.float64]:
    """A non-increasing ``L`` for the DP from a noisy estimate ``(D,)`` (bits per dim).

    * ``"sort"`` (the paper): the values sorted non-increasing. Every value is kept, but the
      noisiest estimates (late steps, where few variables are averaged) move to the front, so
      the head is too high and the DP's expected costs for small budgets are pessimistic.
    * ``"isotonic"``: the least-squares non-increasing fit (pool adjacent violators): each run
      of steps that violates monotonicity is replaced by its mean. Same sum (the model's bpd),
      same length, and it equals ``"sort"`` when ``L`` already is non-increasing.
    """
    y = _as_losses(L)
    if fit == "sort":
        return np.sort(y)[::-1].copy()
    if fit != "isotonic":
        raise ValueError(f"unknown fit {fit!r}; expected one of {', '.join(LOSS_FITS)}")
    means: list[float] = []  # pooled blocks, non-increasing after every merge
    sizes: list[int] = []
    for v in y.tolist():
        means.append(v)
        sizes.append(1)
        while len(means) > 1 and means[-2] < means[-1]:  # a violation: pool the two blocks
            n = sizes[-2] + sizes[-1]
            m = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / n
            means[-2:], sizes[-2:] = [m], [n]
    return np.repeat(np.array(means), np.array(sizes))


# ---------------------------------------------------------------------------- policies
def naive_policy(D: int, budget: int) -> Policy:
    """Evenly spaced steps: ``round(linspace(0, D, B + 1))[:-1]``, ``(B,)`` int64.

    For ``1 <= budget <= D`` the boundaries are distinct, so the policy makes exactly
    ``budget`` calls.
    """
    D = _check_D(D)
    budget = _check_budget(budget, D)
    bounds = np.round(np.linspace(0, D, budget + 1)[:-1]).astype(np.int64)  # (B,)
    return np.unique(bounds)


def step_bounds(policy: npt.ArrayLike, D: int) -> list[tuple[int, int]]:
    """The steps ``[(l, r), ...]`` of a policy over ``D`` variables, in generation order."""
    p = _as_policy(policy, _check_D(D))
    right = np.append(p[1:], D)  # (B,)
    return [(int(left), int(r)) for left, r in zip(p, right, strict=True)]


def policy_cost(L: npt.ArrayLike, policy: npt.ArrayLike) -> float:
    """Expected cost of a policy in bits per dim: ``sum over steps of (r - l) * L[l]``.

    Use it to re-score any policy, e.g. one planned on training ``L`` with validation ``L``.
    """
    losses = _as_losses(L)
    D = losses.size
    p = _as_policy(policy, D)
    right = np.append(p[1:], D)  # (B,)
    return float(np.sum((right - p) * losses[p]))


# ---------------------------------------------------------------------------- the DP
def optimal_policy(
    L: npt.ArrayLike, budget: int, *, presorted: bool = False
) -> tuple[Policy, float]:
    """The policy with at most ``budget`` calls of least expected cost, and that cost (bpd).

    ``L`` is sorted non-increasing first (see the module docstring for why); pass
    ``presorted=True`` if it already is (it is then checked, not sorted). The policy refers
    to the sorted ``L``. Empty steps cost nothing, so when the DP finds that some calls do
    not help (ties in ``L``), their duplicate boundaries are removed and the policy has
    fewer than ``budget`` steps; its cost is unchanged.
    """
    return optimal_policies(L, [budget], presorted=presorted)[operator.index(budget)]


def optimal_policies(
    L: npt.ArrayLike, budgets: Sequence[int], *, presorted: bool = False
) -> dict[int, tuple[Policy, float]]:
    """:func:`optimal_policy` for several budgets, sharing the DP layers ``k = 1..max(B)``.

    Returns ``{budget: (policy, expected cost in bpd)}``. Time is ``O(max(B) * D)`` NumPy
    work (D = 3072 with budgets 1..100 takes tens of milliseconds; D = 16000 with budget
    1000 about a second, see ``benchmarks/policy_dp.py``); memory ``2 * max(B) * (D + 1)``
    bytes of argmins (twice that for ``D >= 32768``).
    """
    losses = _sorted_losses(L, presorted=presorted)
    D = losses.size
    wanted = [_check_budget(b, D) for b in budgets]
    if not wanted:
        raise ValueError("budgets must name at least one budget")
    cost_D, argmins = _fast_table(losses, max(wanted))
    return {b: (_extract_policy(argmins, b), float(cost_D[b - 1])) for b in wanted}


def policy_costs(
    L: npt.ArrayLike, budget: int, *, presorted: bool = False
) -> npt.NDArray[np.float64]:
    """The DP's whole cost curve: entry ``B - 1`` is the least expected cost (bpd) with at
    most ``B`` calls, for ``B = 1..budget``, ``(budget,)`` float64.

    One run of the fast DP (the layers ``k = 1..budget`` it fills anyway); entry ``B - 1``
    equals ``optimal_policy(L, B)[1]``. ``L`` is sorted as in :func:`optimal_policy`.
    """
    losses = _sorted_losses(L, presorted=presorted)
    budget = _check_budget(budget, losses.size)
    cost_D, _ = _fast_table(losses, budget)
    return cost_D


def split_budget(costs: Sequence[npt.ArrayLike], budget: int) -> list[int]:
    """Split ``budget`` calls over independent chains (e.g. the stages of an Upscale ARDM).

    ``costs[s][B - 1]`` is chain ``s``'s expected cost with ``B`` calls (its cost curve, e.g.
    from :func:`policy_costs`); chain ``s`` may get ``B_s`` in ``1..len(costs[s])``. Returns
    ``[B_0, ..., B_{S-1}]`` with ``sum = budget`` and the least ``sum_s costs[s][B_s - 1]``
    (ties go to the smallest ``B_s`` of the later chains). Exact: a DP over the chains,
    ``F_s(b) = min_k F_{s-1}(b - k) + costs[s][k - 1]``, ``O(budget * sum_s len(costs[s]))``.
    """
    curves = [np.asarray(c, dtype=np.float64) for c in costs]
    if not curves:
        raise ValueError("split_budget needs the cost curve of at least one chain")
    for s, c in enumerate(curves):
        if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
            raise ValueError(
                f"costs[{s}] must be a non-empty 1-D finite array (cost with 1, 2, ... calls)"
            )
    budget = operator.index(budget)
    total = sum(c.size for c in curves)
    if not len(curves) <= budget <= total:
        raise ValueError(
            f"budget must be between {len(curves)} (one call per chain) and {total} "
            f"(the longest cost curves), got {budget}"
        )
    F = np.full(budget + 1, np.inf)  # (budget+1,) least cost of chains 0..s with b calls
    n = min(curves[0].size, budget)
    F[1 : n + 1] = curves[0][:n]
    choices = []  # per chain s >= 1: (budget+1,) its number of calls on the best split
    for c in curves[1:]:
        G = np.full(budget + 1, np.inf)
        arg = np.zeros(budget + 1, dtype=np.int64)
        for k in range(1, min(c.size, budget) + 1):
            cand = np.full(budget + 1, np.inf)
            cand[k:] = F[: budget + 1 - k] + c[k - 1]
            better = cand < G
            G = np.where(better, cand, G)
            arg = np.where(better, k, arg)
        F = G
        choices.append(arg)
    split, b = [], budget
    for arg in reversed(choices):
        k = int(arg[b])
        split.append(k)
        b -= k
    split.append(b)
    return split[::-1]


def reference_dp(L: npt.ArrayLike, budget: int) -> tuple[Policy, float]:
    """The paper's table DP, exactly as written: ``O(budget * D^2)`` time, ``O(D^2)`` memory.

    No sorting, so it is optimal for any ``L`` (unsorted too); it exists to check
    :func:`optimal_policy`. Ties go to the smallest ``s``. Returns ``(policy, C[B, D])``.
    """
    losses = _as_losses(L)
    D = losses.size
    budget = _check_budget(budget, D)
    s = np.arange(D + 1)[:, None]  # (D+1, 1)
    t = np.arange(D + 1)[None, :]  # (1, D+1)
    L_ext = np.append(losses, 0.0)[:, None]  # (D+1, 1); L[D] is never used
    N = np.where(t > s, (t - s) * L_ext, np.where(t == s, 0.0, np.inf))  # (D+1, D+1)
    C = np.full(D + 1, np.inf)  # (D+1,) layer k = 0
    C[0] = 0.0
    argmins = np.empty((budget, D + 1), dtype=np.int64)  # (B, D+1)
    columns = np.arange(D + 1)
    for k in range(budget):
        total = C[:, None] + N  # (D+1, D+1): rows s, columns t
        argmins[k] = np.argmin(total, axis=0)
        C = total[argmins[k], columns]  # (D+1,)
    return _extract_policy(argmins, budget), float(C[D])


# ---------------------------------------------------------------------------- fast DP
_MAX_HULL_PASSES = 64  # beyond this many pruning passes a layer falls back to divide and conquer


def _fast_table(
    L: npt.NDArray[np.float64], K: int, *, max_hull_passes: int = _MAX_HULL_PASSES
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.integer]]:
    """Layers ``k = 1..K`` for non-increasing ``L``: ``C[k, D]`` ``(K,)``, argmins ``(K, D+1)``."""
    D = L.size
    L_ext = np.append(L, 0.0)  # (D+1,); s = D is the empty step at t = D, slope unused
    t_all = np.arange(D + 1)  # (D+1,)
    C = t_all * L[0]  # (D+1,) layer 1: one step [0, t)
    arg = np.zeros(D + 1, dtype=np.intp)  # (D+1,)
    lines = np.zeros(1, dtype=np.intp)  # lines on layer 1's envelope: s = 0 only
    argmins = np.zeros((K, D + 1), dtype=np.int16 if D < 2**15 else np.int32)  # (K, D+1)
    cost_D = np.empty(K)  # (K,)
    cost_D[0] = C[D]
    plan: _Plan | None = None
    for k in range(1, K):
        layer = _envelope_layer(C, L_ext, lines, t_all, max_hull_passes)
        if layer is None:
            plan = plan or _Plan(D)
            C, arg = _dc_layer(C, arg, L_ext, plan)
            lines = np.unique(arg[:D])  # a guess for the next layer; contains arg[0] = 0
        else:
            C, arg, lines = layer
        argmins[k] = arg
        cost_D[k] = C[D]
    return cost_D, argmins


def _envelope_layer(
    C_prev: npt.NDArray[np.float64],
    L_ext: npt.NDArray[np.float64],
    guess: npt.NDArray[np.intp],
    t_all: npt.NDArray[np.intp],
    max_hull_passes: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp], npt.NDArray[np.intp]] | None:
    """Layer ``k`` from the lower envelope of the lines ``f_s(t) = C_prev[s] + (t - s) L[s]``.

    Returns ``(C[k], argmins, envelope lines)``, or ``None`` if the hull does not converge.
    """
    D = t_all.size - 1
    L = L_ext[:D]
    x = -L  # (D,) dual points (x_s, y_s), sorted by x; f_s(t) = y_s - t * x_s
    y = C_prev[:D] - t_all[:D] * L  # (D,)
    candidates = _lines_not_dominated(x, y, L, guess)  # (D,) bool
    hull = _lower_hull(np.flatnonzero(candidates), x, y, max_hull_passes)
    if hull is None:
        return None
    s = _envelope_line(hull, x, y, D)  # (D+1,)
    s = np.minimum(s, t_all)  # a line s > t is never below the empty step s = t
    vals = C_prev[s] + (t_all - s) * L_ext[s]  # (D+1,)
    empty = C_prev < vals  # rounding only: the envelope already holds the empty step's value
    return np.where(empty, C_prev, vals), np.where(empty, t_all, s), hull


def _lines_not_dominated(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    L: npt.NDArray[np.float64],
    guess: npt.NDArray[np.intp],
) -> npt.NDArray[np.bool_]:
    """The guessed lines and every line that may dip below their envelope on ``t in [0, D]``.

    ``guess`` is increasing and starts at 0. A line passes if its dual point is on or above
    the segment between the guessed points around it, or, right of the last guessed point
    (smaller slope), if it is not below that line at ``t = D``.
    """
    D = x.size
    seg = np.repeat(np.arange(guess.size), np.diff(np.append(guess, D)))  # (D,) segment of s
    xg, yg = x[guess], y[guess]  # (n,) segment i runs from guessed point i to i+1
    dx = np.append(np.diff(xg), 1.0)  # (n,) the last "segment" is checked at t = D below
    dy = np.append(np.diff(yg), 0.0)  # (n,)
    below = (y - yg[seg]) * dx[seg] < dy[seg] * (x - xg[seg])  # (D,) strictly below
    vertical = dx == 0  # equal slopes: below means below both ends
    if vertical.any():
        floor = np.where(vertical[:-1], np.minimum(yg[:-1], yg[1:]), -np.inf)  # (n-1,)
        below |= y < np.append(floor, -np.inf)[seg]
    last = guess[-1]
    D_f = float(D)
    below[last:] = y[last:] + D_f * L[last:] < y[last] + D_f * L[last]
    below[guess] = True
    return below


def _lower_hull(
    idx: npt.NDArray[np.intp],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    max_passes: int,
) -> npt.NDArray[np.intp] | None:
    """Vertices of the lower convex hull of the points ``idx`` (sorted by ``x``).

    Each pass drops points on or above the chord of their neighbours, every other one of a
    run so that each dropped point's neighbours stay; the first and last points stay (with
    equal ``x`` they may sit above their neighbour: their crossing is then at infinity).
    ``None`` if more than ``max_passes`` passes would be needed.
    """
    xs, ys = x[idx], y[idx]
    passes = 0
    while idx.size > 2:
        cross = (xs[1:-1] - xs[:-2]) * (ys[2:] - ys[:-2]) - (ys[1:-1] - ys[:-2]) * (
            xs[2:] - xs[:-2]
        )  # (n-2,) > 0 where the middle point is strictly below its neighbours' chord
        drop = cross <= 0
        # three points on one vertical (equal slopes): keep the middle one if it is lowest
        drop &= ~((xs[:-2] == xs[2:]) & (ys[1:-1] < np.minimum(ys[:-2], ys[2:])))
        if not drop.any():
            break
        if passes == max_passes:
            return None
        passes += 1
        pos = np.arange(drop.size)
        last_kept = np.maximum.accumulate(np.where(drop, -1, pos))  # (n-2,)
        keep = np.ones(idx.size, dtype=bool)
        keep[1:-1] = ~(drop & ((pos - last_kept) % 2 == 1))  # 1st, 3rd, ... of each run
        idx, xs, ys = idx[keep], xs[keep], ys[keep]
    return idx


def _envelope_line(
    hull: npt.NDArray[np.intp], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], D: int
) -> npt.NDArray[np.intp]:
    """For each integer ``t in [0, D]``, the hull line lowest at ``t`` ``(D+1,)``."""
    if hull.size == 1:
        return np.full(D + 1, hull[0], dtype=np.intp)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # line hull[j+1] is lower than hull[j] for t above their crossing
        crossing = (y[hull[1:]] - y[hull[:-1]]) / (x[hull[1:]] - x[hull[:-1]])  # (H-1,)
    first_t = np.nan_to_num(np.floor(crossing) + 1, nan=0.0)  # first integer t past it
    first_t = np.clip(first_t, 0, D + 1).astype(np.intp)
    j = np.cumsum(np.bincount(first_t, minlength=D + 2))[: D + 1]  # (D+1,) crossings passed
    return hull[j]


class _Plan:
    """Which ``t`` each divide-and-conquer level visits; depends on ``D`` only."""

    def __init__(self, D: int) -> None:
        self.D = D
        self.H = 1 << max(D - 1, 0).bit_length()  # smallest power of two >= D
        self.coarse: dict[int, npt.NDArray[np.intp]] = {}
        self.levels: dict[int, tuple[npt.NDArray[np.intp], ...]] = {}
        h = self.H
        while h >= 1:
            self.coarse[h] = np.append(np.arange(h, D, h), D)  # multiples of h, and D
            t = np.arange(h, D, 2 * h)  # odd multiples of h below D
            self.levels[h] = (t, t - h, np.minimum(t + h, D))  # (t, left, right neighbour)
            h //= 2


def _dc_layer(
    C_prev: npt.NDArray[np.float64],
    arg_prev: npt.NDArray[np.intp],
    L_ext: npt.NDArray[np.float64],
    plan: _Plan,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp]]:
    """Divide and conquer over ``t`` (the fallback): ``C[k, t]`` and first argmins, all ``t``."""
    D = plan.D
    C = np.empty(D + 1)  # (D+1,)
    arg = np.empty(D + 1, dtype=np.intp)  # (D+1,)
    C[0], arg[0] = C_prev[0], 0
    # Coarse level: every G-th t, searched over [arg_prev[t], t] (by (b)). G is about
    # the mean length of the last step, so this level has about D candidates.
    mean_last_step = (D * (D + 1) / 2 - float(arg_prev.sum())) / (D + 1)
    G = 1
    while mean_last_step > G and plan.H > G:
        G *= 2
    t = plan.coarse[G]
    _row_minima(C_prev, L_ext, t, arg_prev[t], t, C, arg)
    h = G // 2
    while h >= 1:  # halve the stride: search between the neighbours' argmins (by (a))
        t, left, right = plan.levels[h]
        if t.size:
            hi = np.minimum(arg[right], t)
            lo = np.minimum(np.maximum(arg[left], arg_prev[t]), hi)
            _row_minima(C_prev, L_ext, t, lo, hi, C, arg)
        h //= 2
    return C, arg


def _row_minima(
    C_prev: npt.NDArray[np.float64],
    L_ext: npt.NDArray[np.float64],
    t: npt.NDArray[np.intp],
    lo: npt.NDArray[np.intp],
    hi: npt.NDArray[np.intp],
    C: npt.NDArray[np.float64],
    arg: npt.NDArray[np.intp],
) -> None:
    """Set ``C[t_i], arg[t_i]`` to the min and first argmin over ``s in [lo_i, hi_i]`` of
    ``C_prev[s] + (t_i - s) * L[s]``, for all rows ``i`` at once."""
    n = hi - lo  # (R,) number of candidates minus one
    single = n == 0
    one = np.flatnonzero(single)
    if one.size:  # most rows at the fine levels have a single candidate
        t1, s1 = t[one], lo[one]
        C[t1] = C_prev[s1] + (t1 - s1) * L_ext[s1]
        arg[t1] = s1
        if one.size == t.size:
            return
        many = np.flatnonzero(~single)
        t, lo, n = t[many], lo[many], n[many]
    count = n + 1  # (R,)
    end = np.cumsum(count)  # (R,)
    row = np.repeat(np.arange(t.size), count)  # (M,) row of each candidate
    s = np.arange(end[-1]) + (lo - end + count)[row]  # (M,) candidate s
    vals = C_prev[s] + (t[row] - s) * L_ext[s]  # (M,)
    best = np.full(t.size, np.inf)  # (R,)
    np.minimum.at(best, row, vals)
    hit = np.flatnonzero(vals == best[row])  # candidates attaining their row's minimum
    hit_row = row[hit]
    first = np.ones(hit.size, dtype=bool)
    np.not_equal(hit_row[1:], hit_row[:-1], out=first[1:])  # first hit of each row
    C[t] = best
    arg[t] = s[hit[first]]


def _extract_policy(argmins: npt.NDArray[np.integer], budget: int) -> Policy:
    """Walk the argmins back from ``t = D`` through layers ``budget..1``; drop empty steps."""
    D = argmins.shape[1] - 1
    t, path = D, []
    for k in range(budget - 1, -1, -1):
        t = int(argmins[k, t])
        path.append(t)
    policy = np.unique(np.asarray(path, dtype=np.int64))  # sorted; layer 1 gives 0
    return policy[policy < D]  # an empty last step [D, D) is no boundary


# ---------------------------------------------------------------------------- checks
def _check_D(D: int) -> int:
    D = operator.index(D)
    if D < 1:
        raise ValueError(f"D must be at least 1, got {D}")
    return D


def _check_budget(budget: int, D: int) -> int:
    budget = operator.index(budget)
    if not 1 <= budget <= D:
        raise ValueError(f"budget must be between 1 and D={D} network calls, got {budget}")
    return budget


def _as_losses(L: npt.ArrayLike) -> npt.NDArray[np.float64]:
    losses = np.asarray(L, dtype=np.float64)
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(
            f"L must be a non-empty 1-D array of per-step losses, got shape {losses.shape}"
        )
    if not np.all(np.isfinite(losses)):
        raise ValueError("L must be finite")
    return losses


def _sorted_losses(L: npt.ArrayLike, *, presorted: bool) -> npt.NDArray[np.float64]:
    losses = _as_losses(L)
    if not presorted:
        return np.sort(losses)[::-1].copy()
    if np.any(np.diff(losses) > 0):
        raise ValueError("presorted=True but L is not non-increasing; pass presorted=False to sort")
    return losses


def _as_policy(policy: npt.ArrayLike, D: int) -> Policy:
    p = np.asarray(policy)
    if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(
            f"a policy must be a non-empty 1-D integer array, got shape {p.shape} dtype {p.dtype}"
        )
    p = p.astype(np.int64)
    if p[0] != 0 or p[-1] >= D or np.any(np.diff(p) <= 0):
        raise ValueError(
            f"a policy must be strictly increasing step boundaries starting at 0 and below D={D}"
        )
    return p
