"""Policies and the DP over budgets (paper Sec. 3.1, App. A.2): checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ardm.core import policy as policy_module
from ardm.core.policy import (
    naive_policy,
    optimal_policies,
    optimal_policy,
    policy_cost,
    policy_costs,
    reference_dp,
    split_budget,
    step_bounds,
)


def fast_dp(L: np.ndarray, budget: int) -> tuple[np.ndarray, float]:
    return optimal_policy(L, budget, presorted=True)


DPS = {"fast": fast_dp, "reference": reference_dp}


def direct_cost(L: np.ndarray, policy: np.ndarray) -> float:
    """The cost summed variable by variable: position ``u`` pays ``L`` at its step's start."""
    return sum(L[left] for left, right in step_bounds(policy, len(L)) for _ in range(left, right))


def brute_force(L: np.ndarray, budget: int) -> float:
    """Least cost over every policy: ``0`` plus any at most ``budget - 1`` of ``{1..D-1}``."""
    D = len(L)
    return min(
        direct_cost(L, np.array([0, *inner]))
        for m in range(min(budget, D))
        for inner in itertools.combinations(range(1, D), m)
    )


def random_L(rng: np.random.Generator, D: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        L = rng.random(D)
    elif kind == "ties":  # few distinct values: many equal slopes and tied policies
        L = rng.integers(0, 3, D).astype(np.float64)
    elif kind == "heavy":  # a wide dynamic range
        L = rng.exponential(size=D) ** 4
    else:  # a smooth decreasing curve plus noise, like a trained model's L_t
        L = 8 * np.exp(-np.linspace(0, 5, D)) + 0.1 * rng.random(D)
    return np.sort(L)[::-1].copy()


def assert_valid(policy: np.ndarray, D: int, budget: int) -> None:
    assert policy.dtype == np.int64
    assert policy[0] == 0 and policy[-1] < D
    assert np.all(np.diff(policy) > 0)
    assert 1 <= len(policy) <= budget


# ---------------------------------------------------------------------------- hand example
@pytest.mark.parametrize("name", sorted(DPS))
def test_hand_example(name: str) -> None:
    # the official unit test: B = 2 picks [0, 2], i.e. 2 * 5 + 3 * 3 = 19
    L = np.array([5, 4, 3, 2.85, 2.80])
    costs = [DPS[name](L, b)[1] for b in range(1, 6)]
    np.testing.assert_allclose(costs, [25, 19, 18, 17.7, 17.65], rtol=1e-12)
    np.testing.assert_array_equal(DPS[name](L, 2)[0], [0, 2])


# ---------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("D", range(1, 9))
@pytest.mark.parametrize("kind", ["uniform", "ties", "heavy"])
def test_fast_dp_equals_brute_force(D: int, kind: str) -> None:
    rng = np.random.default_rng(D)
    for _ in range(3):
        L = random_L(rng, D, kind)
        for budget in range(1, D + 1):
            policy, cost = fast_dp(L, budget)
            best = brute_force(L, budget)
            assert cost == pytest.approx(best, rel=1e-12, abs=1e-12)
            assert direct_cost(L, policy) == pytest.approx(best, rel=1e-12, abs=1e-12)
            assert_valid(policy, D, budget)


@pytest.mark.parametrize("D", range(1, 9))
def test_reference_dp_equals_brute_force_on_unsorted_L(D: int) -> None:
    rng = np.random.default_rng(100 + D)
    for _ in range(3):
        L = rng.random(D) * rng.integers(1, 4, D)  # unsorted; merging past a dip pays off
        for budget in range(1, D + 1):
            policy, cost = reference_dp(L, budget)
            best = brute_force(L, budget)
            assert cost == pytest.approx(best, rel=1e-12, abs=1e-12)
            assert direct_cost(L, policy) == pytest.approx(best, rel=1e-12, abs=1e-12)
            assert_valid(policy, D, budget)


# ---------------------------------------------------------------------------- fast vs reference
values = st.one_of(
    st.floats(0, 10, allow_nan=False),
    st.integers(0, 3).map(float),  # ties
    st.floats(1e-6, 1e3),  # a wide dynamic range
)


@settings(max_examples=60, deadline=None)
@given(D=st.integers(1, 200), data=st.data())
def test_fast_dp_equals_reference(D: int, data: st.DataObject) -> None:
    L = np.array(data.draw(st.lists(values, min_size=D, max_size=D), label="L"))
    L = np.sort(L)[::-1].copy()
    if D <= 40:
        budgets = list(range(1, D + 1))
    else:
        budgets = data.draw(st.lists(st.integers(1, D), min_size=1, max_size=3), label="budgets")
    fast = optimal_policies(L, budgets, presorted=True)
    for budget in budgets:
        policy, cost = fast[budget]
        _, expected = reference_dp(L, budget)
        assert cost == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert policy_cost(L, policy) == pytest.approx(cost, rel=1e-9, abs=1e-12)
        assert_valid(policy, D, budget)


@pytest.mark.parametrize("kind", ["uniform", "ties", "heavy", "smooth"])
@pytest.mark.parametrize("max_hull_passes", [0, 1, 3])
def test_divide_and_conquer_fallback_equals_reference(kind: str, max_hull_passes: int) -> None:
    # A layer whose hull needs more passes falls back to divide and conquer; with a low cap
    # both methods run, layer after layer, each feeding the other's next layer.
    rng = np.random.default_rng(7)
    for D in (1, 2, 3, 17, 90):
        L = random_L(rng, D, kind)
        cost_D, argmins = policy_module._fast_table(L, D, max_hull_passes=max_hull_passes)
        expected = [reference_dp(L, b)[1] for b in range(1, D + 1)]
        np.testing.assert_allclose(cost_D, expected, rtol=1e-12, atol=1e-12)
        for budget in (1, (D + 1) // 2, D):
            policy = policy_module._extract_policy(argmins, budget)
            assert policy_cost(L, policy) == pytest.approx(cost_D[budget - 1], rel=1e-12)


@pytest.mark.parametrize("kind", ["uniform", "ties", "heavy"])
@pytest.mark.parametrize("max_hull_passes", [0, 64])
def test_every_argmin_walks_back_to_an_optimal_prefix_policy(
    kind: str, max_hull_passes: int
) -> None:
    # C[k, t] is the least cost of the first t steps with at most k calls, for every t, so
    # walking the argmins back from any t (not only D) must give an optimal policy of L[:t].
    rng = np.random.default_rng(11)
    for D in (1, 4, 13):
        L = random_L(rng, D, kind)
        _, argmins = policy_module._fast_table(L, D, max_hull_passes=max_hull_passes)
        assert np.all(argmins <= np.arange(D + 1))
        for k in range(1, D + 1):
            for t in range(1, D + 1):
                path, s = [], t
                for layer in range(k - 1, -1, -1):
                    s = int(argmins[layer, s])
                    path.append(s)
                policy = np.unique(path)
                policy = policy[policy < t]  # an empty last step [t, t) is no boundary
                expected = reference_dp(L[:t], min(k, t))[1]
                assert policy_cost(L[:t], policy) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def envelope_on_grid(x: np.ndarray, y: np.ndarray, idx: np.ndarray, D: int) -> np.ndarray:
    """``min_{s in idx} y_s - t x_s`` on integer and half-integer ``t in [0, D]``."""
    t = np.linspace(0, D, 2 * D + 1)[:, None]
    return (y[idx][None, :] - t * x[idx][None, :]).min(axis=1)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_lower_hull_keeps_the_envelope(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 30), label="n")
    x = np.sort(np.array(data.draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))))
    y = np.array(data.draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), float)
    idx = np.arange(n)
    hull = policy_module._lower_hull(idx, x.astype(float), y, 10**6)
    assert hull is not None and set(hull) <= set(idx)
    np.testing.assert_array_equal(envelope_on_grid(x, y, hull, 10), envelope_on_grid(x, y, idx, 10))
    xs, ys = x[hull], y[hull]
    cross = (xs[1:-1] - xs[:-2]) * (ys[2:] - ys[:-2]) - (ys[1:-1] - ys[:-2]) * (xs[2:] - xs[:-2])
    # strictly convex, except that the first and last points may sit above a neighbour
    # with the same x (their crossing with it is at infinity)
    at_end = np.zeros(len(cross), dtype=bool)
    if len(cross):
        at_end[[0, -1]] = True
    assert np.all((cross > 0) | (at_end & (xs[:-2] == xs[2:])))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_lines_that_pass_the_check_never_dip_below_the_guess(data: st.DataObject) -> None:
    # any increasing guess starting at 0, even a non-convex one with equal slopes
    D = data.draw(st.integers(1, 25), label="D")
    L = np.sort(np.array(data.draw(st.lists(st.integers(0, 4), min_size=D, max_size=D))))[::-1]
    y = np.array(data.draw(st.lists(st.integers(-6, 6), min_size=D, max_size=D)), float)
    inner = data.draw(st.sets(st.integers(1, max(D - 1, 1)), max_size=D), label="guess")
    guess = np.array(sorted({0} | {g for g in inner if g < D}), dtype=np.intp)
    x = -L.astype(float)
    keep = policy_module._lines_not_dominated(x, y, L.astype(float), guess)
    assert np.all(keep[guess])
    passed = np.flatnonzero(~keep)
    for s in passed:
        lowest = envelope_on_grid(x, y, guess, D)
        assert np.all(envelope_on_grid(x, y, np.array([s]), D) >= lowest)


@pytest.mark.parametrize("kind", ["uniform", "heavy", "smooth"])
def test_fast_dp_equals_reference_at_larger_D(kind: str) -> None:
    L = random_L(np.random.default_rng(3), 600, kind)
    fast = optimal_policies(L, [7, 60], presorted=True)
    for budget in (7, 60):
        assert fast[budget][1] == pytest.approx(reference_dp(L, budget)[1], rel=1e-10)


def test_int32_argmins_for_large_D() -> None:
    # D >= 2**15 stores argmins as int32; budget 2 is one split, checkable in closed form
    D = 40_000
    L = random_L(np.random.default_rng(4), D, "smooth")
    policy, cost = optimal_policy(L, 2, presorted=True)
    split_costs = np.arange(D) * L[0] + (D - np.arange(D)) * L  # split at m (m = 0: one step)
    assert cost == pytest.approx(split_costs.min(), rel=1e-12)
    assert policy_cost(L, policy) == pytest.approx(cost, rel=1e-12)


# ---------------------------------------------------------------------------- properties
def test_cost_is_sum_of_L_with_one_call_per_variable() -> None:
    rng = np.random.default_rng(5)
    for D in (1, 5, 64):
        L = random_L(rng, D, "uniform")
        for dp in DPS.values():
            _, cost = dp(L, D)
            assert cost == pytest.approx(L.sum(), rel=1e-12)
        assert policy_cost(L, naive_policy(D, D)) == pytest.approx(L.sum(), rel=1e-12)


def test_cost_is_non_increasing_in_budget() -> None:
    rng = np.random.default_rng(6)
    D = 50
    L = random_L(rng, D, "smooth")
    fast = optimal_policies(L, range(1, D + 1), presorted=True)
    costs = np.array([fast[b][1] for b in range(1, D + 1)])
    assert np.all(np.diff(costs) <= 1e-12)
    unsorted = rng.random(D)
    ref = np.array([reference_dp(unsorted, b)[1] for b in range(1, D + 1)])
    assert np.all(np.diff(ref) <= 1e-12)
    assert ref[-1] <= unsorted.sum() + 1e-12  # unsorted L: merging past a dip can beat sum(L)


def test_optimal_policy_beats_naive_policy() -> None:
    L = random_L(np.random.default_rng(8), 300, "smooth")
    for budget in (1, 2, 10, 50, 300):
        _, cost = optimal_policy(L, budget, presorted=True)
        assert cost <= policy_cost(L, naive_policy(300, budget)) + 1e-12


def test_constant_L_any_policy_costs_the_same() -> None:
    L = np.full(12, 0.5)
    for budget in range(1, 13):
        policy, cost = optimal_policy(L, budget)
        assert cost == pytest.approx(6.0)
        assert_valid(policy, 12, budget)  # empty steps removed: possibly fewer than B steps


def test_sorting_before_the_dp() -> None:
    rng = np.random.default_rng(9)
    L = rng.random(40)
    sorted_L_ = np.sort(L)[::-1]
    for budget in (1, 3, 10, 40):
        policy, cost = optimal_policy(L, budget)
        expected_policy, expected = optimal_policy(sorted_L_, budget, presorted=True)
        assert cost == expected
        np.testing.assert_array_equal(policy, expected_policy)
        assert policy_cost(sorted_L_, policy) == pytest.approx(cost)


def test_optimal_policies_agree_with_optimal_policy() -> None:
    L = np.random.default_rng(10).random(70)
    budgets = [1, 2, 5, 5, 33, 70]
    together = optimal_policies(L, budgets)
    assert sorted(together) == [1, 2, 5, 33, 70]
    for budget in budgets:
        policy, cost = optimal_policy(L, budget)
        assert together[budget][1] == cost
        np.testing.assert_array_equal(together[budget][0], policy)


# ---------------------------------------------------------------------------- policies
@pytest.mark.parametrize(("D", "budget"), [(1, 1), (5, 2), (10, 3), (3072, 100), (7, 7)])
def test_naive_policy(D: int, budget: int) -> None:
    policy = naive_policy(D, budget)
    expected = np.round(np.linspace(0, D, budget + 1))[:-1].astype(np.int64)
    np.testing.assert_array_equal(policy, expected)
    assert_valid(policy, D, budget)
    assert len(policy) == budget
    L = np.random.default_rng(D).random(D)
    assert policy_cost(L, policy) == pytest.approx(direct_cost(L, policy), rel=1e-12)


def test_step_bounds() -> None:
    assert step_bounds(np.array([0, 2, 3]), 5) == [(0, 2), (2, 3), (3, 5)]
    assert step_bounds([0], 4) == [(0, 4)]
    bounds = step_bounds(naive_policy(10, 4), 10)
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    assert all(r1 == l2 for (_, r1), (l2, _) in itertools.pairwise(bounds))


def test_policy_cost_by_hand() -> None:
    L = np.array([5, 4, 3, 2.85, 2.80])
    assert policy_cost(L, [0, 2]) == pytest.approx(19.0)
    assert policy_cost(L, [0, 1, 2, 3, 4]) == pytest.approx(17.65)
    assert policy_cost(L, [0, 4]) == pytest.approx(4 * 5 + 2.80)


# ---------------------------------------------------------------------------- validation
def one_line_error(error: type[Exception], call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as e:
        call(*args, **kwargs)
    text = str(e.value)
    assert text and "\n" not in text, f"message is not one line: {text!r}"
    return text


def test_validation_errors() -> None:
    L = np.array([3.0, 2.0, 1.0])
    assert "budget" in one_line_error(ValueError, naive_policy, 5, 0)
    assert "budget" in one_line_error(ValueError, naive_policy, 5, 6)
    assert "D must" in one_line_error(ValueError, naive_policy, 0, 1)
    for bad in ([1, 2], [0, 2, 2], [0, 2, 1], [0, 3], [], [[0, 1]], [0.0, 1.0]):
        assert "policy" in one_line_error(ValueError, policy_cost, L, bad)
        assert "policy" in one_line_error(ValueError, step_bounds, bad, 3)
    for dp in (optimal_policy, reference_dp):
        assert "budget" in one_line_error(ValueError, dp, L, 0)
        assert "budget" in one_line_error(ValueError, dp, L, 4)
        one_line_error(TypeError, dp, L, 2.5)
        assert "L must" in one_line_error(ValueError, dp, [], 1)
        assert "L must" in one_line_error(ValueError, dp, [[1.0, 2.0]], 1)
        assert "L must" in one_line_error(ValueError, dp, [1.0, np.nan], 1)
    assert "non-increasing" in one_line_error(
        ValueError, optimal_policy, [1.0, 2.0], 1, presorted=True
    )
    assert "budgets" in one_line_error(ValueError, optimal_policies, L, [])
    assert "budget" in one_line_error(ValueError, optimal_policies, L, [1, 9])


# ---------------------------------------------------------------------------- joint budgets
def test_policy_costs_is_the_whole_cost_curve() -> None:
    rng = np.random.default_rng(12)
    for D in (1, 5, 40):
        L = rng.random(D)
        curve = policy_costs(L, D)
        assert curve.shape == (D,)
        np.testing.assert_array_equal(
            curve, [optimal_policies(L, [b])[b][1] for b in range(1, D + 1)]
        )
    np.testing.assert_allclose(
        policy_costs([5, 4, 3, 2.85, 2.80], 3, presorted=True), [25, 19, 18], rtol=1e-12
    )


def brute_force_split(costs: list[np.ndarray], budget: int) -> float:
    return min(
        sum(c[k - 1] for c, k in zip(costs, split, strict=True))
        for split in itertools.product(*(range(1, len(c) + 1) for c in costs))
        if sum(split) == budget
    )


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_split_budget_equals_brute_force(data: st.DataObject) -> None:
    S = data.draw(st.integers(1, 4), label="S")
    lengths = data.draw(st.lists(st.integers(1, 5), min_size=S, max_size=S), label="lengths")
    costs = [
        np.array(data.draw(st.lists(values, min_size=n, max_size=n), label="cost")) for n in lengths
    ]
    budget = data.draw(st.integers(S, sum(lengths)), label="budget")
    split = split_budget(costs, budget)
    assert len(split) == S and sum(split) == budget
    assert all(1 <= k <= len(c) for k, c in zip(split, costs, strict=True))
    got = sum(c[k - 1] for c, k in zip(costs, split, strict=True))
    assert got == pytest.approx(brute_force_split(costs, budget), rel=1e-12, abs=1e-12)


def test_split_budget_on_dp_cost_curves() -> None:
    rng = np.random.default_rng(13)
    stages = [random_L(rng, 6, "smooth") * scale for scale in (3.0, 1.0, 0.2)]
    curves = [policy_costs(L, 6, presorted=True) for L in stages]
    for budget in range(3, 19):
        split = split_budget(curves, budget)
        assert sum(split) == budget
        total = sum(
            optimal_policy(L, k, presorted=True)[1] for L, k in zip(stages, split, strict=True)
        )
        assert total == pytest.approx(brute_force_split(curves, budget), rel=1e-12)
    assert split_budget(curves, 3) == [1, 1, 1] and split_budget(curves, 18) == [6, 6, 6]


def test_split_budget_errors() -> None:
    assert "budget" in one_line_error(ValueError, split_budget, [[1.0], [2.0]], 1)
    assert "budget" in one_line_error(ValueError, split_budget, [[1.0], [2.0]], 3)
    assert "at least one" in one_line_error(ValueError, split_budget, [], 1)
    assert "costs[1]" in one_line_error(ValueError, split_budget, [[1.0], []], 2)
    assert "costs[0]" in one_line_error(ValueError, split_budget, [[np.inf]], 1)


def test_monotone_losses_sort_and_isotonic() -> None:
    from ardm.core.policy import monotone_losses

    assert monotone_losses([1.0, 3.0, 2.0], "sort").tolist() == [3.0, 2.0, 1.0]
    assert monotone_losses([1.0, 3.0, 2.0], "isotonic").tolist() == [2.0, 2.0, 2.0]
    assert monotone_losses([5.0, 1.0, 2.0], "isotonic").tolist() == [5.0, 1.5, 1.5]
    rng = np.random.default_rng(0)
    for _ in range(50):
        L = rng.random(12)
        fit = monotone_losses(L, "isotonic")
        assert np.all(np.diff(fit) <= 1e-12) and fit.sum() == pytest.approx(L.sum())
        # least squares among non-increasing sequences: no random non-increasing one is closer
        for _ in range(20):
            other = np.sort(fit + rng.normal(0, 0.05, 12))[::-1]
            assert ((fit - L) ** 2).sum() <= ((other - L) ** 2).sum() + 1e-12
        ordered = np.sort(L)[::-1]
        assert np.allclose(monotone_losses(ordered, "isotonic"), ordered)
    with pytest.raises(ValueError, match="unknown fit"):
        monotone_losses([1.0], "median")
