"""The OA-ARDM estimator is unbiased for the order-averaged chain-rule NLL (by enumeration)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from ardm.core.objective import ardm_bound, masked_log_likelihood, policy_bound
from ardm.core.orders import known_mask, orders_given_first, random_orders, sample_t, step_mask
from ardm.core.policy import step_bounds
from tests.conftest import tiny_text_model


def _all_orders(D: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(D))))  # (D!, D)


def _bound_terms(model, x, sigma, t):  # type: ignore[no-untyped-def]
    n = sigma.shape[0]
    xs = x.expand(n, -1)
    known = known_mask(sigma, t)
    S = masked_log_likelihood(model.log_probs(xs, known, t), xs, ~known)
    return S


def test_estimator_mean_over_orders_and_t_equals_exact_nll() -> None:
    model = tiny_text_model(K=3, L=4)
    D = model.D
    sigmas = _all_orders(D)  # (24, 4)
    x = torch.tensor([[2, 0, 1, 1]])
    with torch.no_grad():
        exact = torch.stack([model.exact_nll_bpd(x, sigma=s)[0] for s in sigmas]).mean()
        estimates = []
        for t in range(D):
            tt = torch.full((len(sigmas),), t)
            S = _bound_terms(model, x, sigmas, tt)
            estimates.append(ardm_bound(S, tt, D).bpd.double())
        mean_estimate = torch.stack(estimates).mean()
        # the L_t terms sum to the bound as well
        L_sum = sum(
            ardm_bound(
                _bound_terms(model, x, sigmas, torch.full((len(sigmas),), t)),
                torch.full((len(sigmas),), t),
                D,
            )
            .L_t.double()
            .mean()
            for t in range(D)
        )
    assert exact > 0.05  # a real, non-trivial likelihood
    assert torch.allclose(mean_estimate, exact, rtol=1e-5, atol=1e-6)
    assert torch.allclose(L_sum, exact, rtol=1e-5, atol=1e-6)


def test_policy_bound_mean_equals_exact_policy_nll() -> None:
    model = tiny_text_model(K=3, L=4, seed=1)
    D, policy = model.D, np.array([0, 1, 3])
    sigmas = _all_orders(D)
    x = torch.tensor([[1, 1, 0, 2]])
    with torch.no_grad():
        exact = torch.stack(
            [model.exact_nll_bpd(x, sigma=s, policy=policy)[0] for s in sigmas]
        ).mean()
        terms = []
        for left, right in step_bounds(policy, D):
            lt = torch.full((len(sigmas),), left)
            S = _bound_terms(model, x, sigmas, lt)
            terms.append(policy_bound(S, lt, torch.full_like(lt, right), D, len(policy)).double())
        mean_estimate = torch.stack(terms).mean()
    assert torch.allclose(mean_estimate, exact, rtol=1e-5, atol=1e-6)


def test_weight_pairs_zero_indexed_t_with_one_over_D_minus_t() -> None:
    S = torch.tensor([-2.0, -2.0])
    t = torch.tensor([0, 3])
    terms = ardm_bound(S, t, 4)
    assert math.isclose(float(terms.bpd[0]), 4 * 2 / 4 / (4 * math.log(2)), rel_tol=1e-6)
    assert math.isclose(float(terms.bpd[1]), 4 * 2 / 1 / (4 * math.log(2)), rel_tol=1e-6)
    assert math.isclose(float(terms.ce_bpd[0]), 2 / (4 * math.log(2)), rel_tol=1e-6)


def test_orders_are_permutations_and_masks_count() -> None:
    g = torch.Generator().manual_seed(0)
    sigma = random_orders(50, 7, generator=g)
    assert torch.equal(sigma.sort(dim=1).values, torch.arange(7).expand(50, 7))
    t = sample_t(50, 7, generator=g)
    assert torch.equal(known_mask(sigma, t).sum(1), t)
    assert torch.equal(step_mask(sigma, 2, 5).sum(1), torch.full((50,), 3))


def test_antithetic_t_is_stratified_and_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    t = sample_t(8, 80, antithetic=True, generator=g)
    assert t.min() >= 0 and t.max() < 80
    assert sorted((t // 10).tolist()) == list(range(8))


def test_orders_given_first() -> None:
    given = torch.zeros(3, 6, dtype=torch.bool)
    given[:, [1, 4]] = True
    sigma = orders_given_first(given, generator=torch.Generator().manual_seed(0))
    assert bool((sigma[given] < 2).all()) and bool((sigma[~given] >= 2).all())
