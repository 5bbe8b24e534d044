"""Sampling, conditional generation, likelihood and the loss of the ARDM wrapper."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ardm.models.ardm import ARDM
from ardm.models.process import Sampling
from tests.conftest import tiny_image_model, tiny_text_model


def _steps_taken(model: ARDM, n: int, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:  # type: ignore[no-untyped-def]
    masks: list[torch.Tensor] = []
    x = model.sample(n, on_step=lambda xs, step: masks.append(step.clone()), **kwargs)
    return x, masks


@settings(max_examples=15, deadline=None)
@given(budget=st.integers(1, 12), naive=st.booleans(), seed=st.integers(0, 1000))
def test_sampling_fills_every_variable_once_within_budget(
    budget: int, naive: bool, seed: int
) -> None:
    model = tiny_text_model(K=5, L=12)
    x, masks = _steps_taken(
        model, 3, budget=budget, naive=naive, generator=torch.Generator().manual_seed(seed)
    )
    assert 1 <= len(masks) <= budget
    counts = torch.stack(masks).long().sum(0)  # (n, L): how often each variable was written
    assert torch.equal(counts, torch.ones_like(counts))
    assert x.shape == (3, 12) and int(x.min()) >= 0 and int(x.max()) < 5


def test_sequential_sampling_uses_D_calls(image_model: ARDM) -> None:
    x, masks = _steps_taken(image_model, 2)
    assert len(masks) == image_model.D
    assert x.shape == (2, *image_model.shape)


@settings(max_examples=10, deadline=None)
@given(budget=st.integers(1, 16), frac=st.floats(0.0, 1.0), seed=st.integers(0, 100))
def test_conditional_generation_keeps_known_variables(budget: int, frac: float, seed: int) -> None:
    model = tiny_image_model()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.K, (3, *model.shape), generator=g)
    known = torch.zeros(model.shape, dtype=torch.bool)
    k = int(frac * model.D)
    known.view(-1)[torch.randperm(model.D, generator=g)[:k]] = True
    masks: list[torch.Tensor] = []
    how = Sampling(
        budget=budget,
        given=x,
        known=known,
        generator=g,
        on_step=lambda xs, s: masks.append(s.clone()),
    )
    out = model.generate(3, how)
    assert torch.equal(out[:, known], x[:, known])
    assert len(masks) <= budget
    if masks:
        written = torch.stack(masks).long().sum(0)
        assert torch.equal(written, (~known).long().expand_as(written))
    else:
        assert k == model.D


def test_complete_text_prefix(text_model: ARDM) -> None:
    x = torch.tensor([[1, 2, 3, 0, 0, 0]])
    known = torch.tensor([True, True, True, False, False, False])
    out = text_model.complete(x, known, budget=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[0, :3], x[0, :3])


def test_conditional_rejects_unequal_counts(text_model: ARDM) -> None:
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 0] = True
    with pytest.raises(ValueError, match="same number"):
        text_model.complete(torch.zeros(2, 6, dtype=torch.long), mask)


def test_exact_nll_is_invariant_to_batching_and_matches_policy_D(image_model: ARDM) -> None:
    x = torch.randint(
        0, image_model.K, (3, *image_model.shape), generator=torch.Generator().manual_seed(0)
    )
    a = image_model.exact_nll_bpd(x, batch_size=7)
    b = image_model.exact_nll_bpd(x, batch_size=64, policy=np.arange(image_model.D))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    one_call = image_model.exact_nll_bpd(x, policy=np.array([0]))
    assert bool((one_call > 0).all())


def test_loss_is_finite_and_trains(text_model: ARDM) -> None:
    torch.manual_seed(0)
    x = torch.tensor([[0, 1, 2, 3, 4, 0]]).repeat(16, 1)
    model = text_model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(60):
        out = model.loss(x, generator=g)
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.tracker.update(out.t, out.terms.L_t)
        first = first if first is not None else float(out.loss.detach())
    assert float(out.loss.detach()) < 0.5 * first
    assert bool(model.tracker.seen.all())
    L = model.tracker.sorted_L()
    assert np.all(np.diff(L) <= 0)


def test_policy_for_budget_dp_not_worse_than_naive(text_model: ARDM) -> None:
    text_model.tracker.update(torch.arange(6), torch.tensor([0.9, 0.5, 0.4, 0.3, 0.2, 0.1]))
    for b in range(1, 7):
        dp = text_model.policy_for_budget(b)
        naive = text_model.policy_for_budget(b, naive=True)
        assert dp[0] == 0 and len(dp) <= b
        assert text_model.expected_bpd(dp) <= text_model.expected_bpd(naive) + 1e-12


class _FixedNet(torch.nn.Module):
    """A 'network' whose prediction is the same categorical everywhere."""

    def __init__(self, probs: torch.Tensor, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(probs.log())
        self.K, self.shape = len(probs), shape

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*x.shape, self.K)


@pytest.mark.parametrize("budget", [1, 5, 40])
def test_samples_follow_the_predicted_distribution(budget: int) -> None:
    probs = torch.tensor([0.6, 0.3, 0.1])
    model = ARDM(_FixedNet(probs, (40,)), kind="text")
    x = model.sample(200, budget=budget, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(x.flatten(), minlength=3).double() / x.numel()
    torch.testing.assert_close(freq, probs.double(), atol=0.02, rtol=0)


def test_an_oa_ardm_is_the_one_stage_case_of_an_upscale_ardm() -> None:
    """``S = 1``: per-stage policies, expected cost, exact NLL and sampling take the same
    arguments as an Upscale ARDM's and give the one-stage results."""
    model = tiny_text_model().eval()
    x = torch.randint(0, model.K, (3, *model.shape))
    model.tracker.set_all(np.linspace(2.0, 0.5, model.D))
    assert model.S == 1
    for budget in (1, 3, model.D):
        for naive in (False, True):
            (policy,) = model.stage_policies(budget, mode="joint", naive=naive)
            assert np.array_equal(policy, model.policy_for_budget(budget, naive=naive))
            assert model.stage_policies(budget, mode="per-stage", naive=naive)[0].tolist() == (
                policy.tolist()
            )
            assert model.expected_bpd([policy]) == model.expected_bpd(policy)
            assert torch.equal(
                model.exact_nll_bpd(x, policies=[policy]), model.exact_nll_bpd(x, policy=policy)
            )
    with pytest.raises(ValueError, match="1 policy"):
        model.exact_nll_bpd(x, policies=[np.arange(model.D)] * 2)
    with pytest.raises(ValueError, match="budget mode"):
        model.stage_policies(3, mode="each")
    a = model.sample(2, budget=3, mode="joint", generator=torch.Generator().manual_seed(0))
    b = model.sample(2, budget=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_a_context_model_reports_the_plain_oa_bound_and_trains_on_the_mixture() -> None:
    from ardm.nets.build import build_net
    from ardm.nets.transformer import TransformerConfig

    torch.manual_seed(0)
    net = build_net(
        "transformer", K=7, shape=(12,), transformer=TransformerConfig(dim=16, heads=2, depth=1)
    )
    with_context = ARDM(net, kind="text", context=5).eval()
    plain = ARDM(net, kind="text").eval()
    x = torch.randint(0, 7, (6, 12))
    a = with_context.bound_bpd(x, passes=2, generator=torch.Generator().manual_seed(3))
    b = plain.bound_bpd(x, passes=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    out = with_context.loss(x, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(out.loss) and out.t.shape == (6,)
    # only the plain OA examples reach the tracker: L stays the OA L_t the coder plans on
    assert out.tracked is not None and out.tracked.shape == (6,)
    tracker = copy.deepcopy(with_context.tracker)
    out.track(tracker)
    assert torch.equal(tracker.seen, torch.isin(torch.arange(12), out.t[out.tracked]))
    with pytest.raises(ValueError, match="context"):
        ARDM(net, kind="text", context=12)
    # trained for the coder's budget: the coding case at the DP policy's step starts
    with_context.tracker.set_all(np.linspace(3.0, 1.0, 12))
    out = with_context.loss(x, generator=torch.Generator().manual_seed(1), policy_budget=2)
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="policy_budget needs"):
        plain.loss(x, policy_budget=2)
    # and in the spread coder's order of the block
    g = torch.Generator().manual_seed(1)
    out = with_context.loss(x, generator=g, policy_budget=2, spread_order=True)
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="spread_order needs"):
        plain.loss(x, spread_order=True)
