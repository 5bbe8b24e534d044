"""Upscale ARDMs: exact likelihood by hand, the bound's mean, normalisation, policies, sampling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ardm.core.policy import monotone_losses, policy_cost, policy_costs
from ardm.core.upscale import num_stages
from ardm.models.process import Sampling
from ardm.models.upscale import UpscaleARDM
from ardm.nets.build import build_net
from ardm.nets.transformer import TransformerConfig
from ardm.nets.unet import UNetConfig
from tests.conftest import perturb

CASES = [  # (K, b, parametrisation): powers of b and not
    pytest.param(8, 2, "data", id="K8-b2-data"),
    pytest.param(8, 2, "direct", id="K8-b2-direct"),
    pytest.param(10, 4, "data", id="K10-b4-data"),
    pytest.param(10, 4, "direct", id="K10-b4-direct"),
]


def make_model(
    K: int = 8, b: int = 2, parametrisation: str = "data", *, L: int = 3, seed: int = 0
) -> UpscaleARDM:
    torch.manual_seed(seed)
    S = num_stages(K, b)
    net = build_net(
        "transformer",
        K=K,
        shape=(L,),
        transformer=TransformerConfig(dim=16, depth=1, heads=2, time_cond=True),
        stages=S,
        out_classes=K if parametrisation == "data" else S * b,
    )
    perturb(net, scale=0.5, seed=seed)
    return UpscaleARDM(net, kind="text", K=K, branching=b, parametrisation=parametrisation).eval()


def make_image_model(K: int = 10, b: int = 4, parametrisation: str = "direct") -> UpscaleARDM:
    torch.manual_seed(0)
    S = num_stages(K, b)
    cfg = UNetConfig(ch=8, ch_mult=(1,), num_res_blocks=1, value_emb_dim=4, groups=4)
    net = build_net(
        "unet",
        K=K,
        shape=(1, 2, 2),
        unet=cfg,
        stages=S,
        out_classes=K if parametrisation == "data" else S * b,
    )
    perturb(net, scale=0.3)
    return UpscaleARDM(net, kind="image", K=K, branching=b, parametrisation=parametrisation).eval()


def all_values(K: int, D: int) -> torch.Tensor:
    """Every data point in ``{0..K-1}^D``: ``(K^D, D)``."""
    return torch.tensor(list(itertools.product(range(K), repeat=D)))


def digit_prob_by_hand(model: UpscaleARDM, out: torch.Tensor, x_k: int, s: int) -> float:
    """p(stage-s digit of x_k) from one position's raw net output ``out``, from the definitions."""
    K, b, S = model.K, model.b, model.S
    past = x_k // b ** (S - s) * b ** (S - s)  # x^(s)
    nxt = x_k // b ** (S - s - 1) * b ** (S - s - 1)  # x^(s+1)
    if model.parametrisation == "data":
        p = torch.softmax(out.double(), dim=-1)  # over the K final values
        den = sum(float(p[v]) for v in range(past, min(past + b ** (S - s), K)))
        num = sum(float(p[v]) for v in range(nxt, min(nxt + b ** (S - s - 1), K)))
        return num / den
    logits = out.double()[s * b : (s + 1) * b]  # this stage's b digit logits
    valid = [d for d in range(b) if past + d * b ** (S - s - 1) < K]
    d_x = (x_k // b ** (S - s - 1)) % b
    return math.exp(float(logits[d_x]) - float(torch.logsumexp(logits[valid], dim=0)))


# ---------------------------------------------------------------------------- exact likelihood
@pytest.mark.parametrize(("K", "b", "parametrisation"), CASES)
def test_exact_nll_is_the_product_of_per_stage_chain_rules(
    K: int, b: int, parametrisation: str
) -> None:
    model = make_model(K, b, parametrisation)
    D, S = model.D, model.S
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, K, (3, D), generator=g)
    sigmas = torch.stack([torch.randperm(D, generator=g) for _ in range(S)])  # (S, D)
    got = model.exact_nll_bpd(x, sigmas=sigmas, batch_size=5)
    for n in range(3):
        stage_nats = []
        for s in range(S):
            nats = 0.0
            for t in range(D):  # step t refines the position k with sigma_s[k] == t
                known = sigmas[s] < t
                unit_past, unit_next = b ** (S - s), b ** (S - s - 1)
                x_cur = torch.where(
                    known, x[n] // unit_next * unit_next, x[n] // unit_past * unit_past
                )
                with torch.no_grad():
                    out = model.net(x_cur[None], known[None], torch.tensor([s * D + t]))[0]
                k = int((sigmas[s] == t).nonzero())
                nats -= math.log(digit_prob_by_hand(model, out[k], int(x[n, k]), s))
            stage_nats.append(nats)
        assert float(got[n]) == pytest.approx(sum(stage_nats) / (D * math.log(2)), rel=1e-5)
    # the default orders come from the order seed, one per stage
    default = torch.stack([model.exact_nll_bpd(x[:1])] * 2)
    assert torch.equal(default[0], default[1])


@pytest.mark.parametrize(("K", "b", "parametrisation"), CASES)
def test_bound_mean_over_all_orders_stages_and_steps_equals_mean_exact_nll(
    K: int, b: int, parametrisation: str
) -> None:
    model = make_model(K, b, parametrisation)
    D, S = model.D, model.S
    x = torch.tensor([[K - 1, 0, K // 2], [3, 5, 1]])
    orders = torch.tensor(list(itertools.permutations(range(D))))  # (D!, D)
    for item in x:
        jobs = [(t, sigma) for t in range(S * D) for sigma in orders]
        t = torch.tensor([j[0] for j in jobs])
        sigma = torch.stack([j[1] for j in jobs])
        with torch.no_grad():
            terms = model.bound_terms(item.expand(len(jobs), D), t, sigma)
        bound = terms.bpd.double().mean()
        exact = torch.cat(
            [model.exact_nll_bpd(item[None], sigmas=o.expand(S, D)) for o in orders]
        ).mean()
        assert float(bound) == pytest.approx(float(exact), rel=1e-5)
        # the tracker's slots: the mean L_t per slot summed over all S * D slots
        L = terms.L_t.double().view(S * D, len(orders)).mean(1)
        assert float(L.sum()) == pytest.approx(float(exact), rel=1e-5)


@pytest.mark.parametrize(("K", "b", "parametrisation"), [*CASES, (5, 2, "direct"), (5, 2, "data")])
def test_model_is_normalised_over_every_value(K: int, b: int, parametrisation: str) -> None:
    model = make_model(K, b, parametrisation, L=2)
    D, S = model.D, model.S
    x = all_values(K, D)  # (K^D, D)
    g = torch.Generator().manual_seed(2)
    sigmas = torch.stack([torch.randperm(D, generator=g) for _ in range(S)])
    for policies in (None, [np.array([0])] * S):  # one variable per step; one call per stage
        nll = model.exact_nll_bpd(x, sigmas=sigmas, policies=policies, batch_size=512)
        p = torch.exp2(-nll * D)  # (K^D,)
        assert bool((p <= 1).all())
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("K", "b", "parametrisation"), CASES)
def test_no_mass_outside_the_children_of_the_coarse_value(
    K: int, b: int, parametrisation: str
) -> None:
    model = make_model(K, b, parametrisation)
    S, D = model.S, model.D
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, K, (16, D), generator=g)
    for s in range(S):
        unit = b ** (S - s)
        x_cur = x // unit * unit  # x^(s)
        known = torch.zeros_like(x, dtype=torch.bool)
        with torch.no_grad():
            lp = model.stage_log_probs(x_cur, known, s, 0)  # (16, D, b)
        assert lp.shape == (16, D, b) and lp.dtype == torch.float32
        child = x_cur[..., None] + torch.arange(b) * b ** (S - s - 1)  # (16, D, b)
        assert bool((lp[child >= K] == float("-inf")).all())
        assert bool(torch.isfinite(lp[child < K]).all())
        torch.testing.assert_close(lp.exp().sum(-1), torch.ones(16, D))


def test_direct_parametrisation_masks_digits_beyond_K() -> None:
    # K = 10, b = 4: stage 0 chooses 0, 4, 8 (12 would pass K); from 8, stage 1 allows 8, 9
    model = make_model(10, 4, "direct")
    x_cur = torch.tensor([[0, 8, 4]])
    known = torch.zeros(1, 3, dtype=torch.bool)
    with torch.no_grad():
        p0 = model.stage_log_probs(torch.zeros_like(x_cur), known, 0, 0).exp()[0]
        p1 = model.stage_log_probs(x_cur, known, 1, torch.tensor([0])).exp()[0]
    assert bool((p0[:, 3] == 0).all()) and bool((p0[:, :3] > 0).all())
    assert bool((p1[1, 2:] == 0).all()) and bool((p1[1, :2] > 0).all())
    assert bool((p1[0] > 0).all()) and bool((p1[2] > 0).all())


def test_validation_errors() -> None:
    net = build_net("transformer", K=8, shape=(3,), stages=3, out_classes=8)
    with pytest.raises(ValueError, match="out_classes = S \\* b = 6"):
        UpscaleARDM(net, kind="text", K=8, branching=2, parametrisation="direct")
    with pytest.raises(ValueError, match="parametrisation"):
        UpscaleARDM(net, kind="text", K=8, branching=2, parametrisation="bits")
    with pytest.raises(ValueError, match="stages=3"):
        UpscaleARDM(net, kind="text", K=8, branching=8)
    with pytest.raises(ValueError, match="K=8"):
        UpscaleARDM(net, kind="text", K=7, branching=2)
    wide = build_net("transformer", K=8, shape=(3,), stages=3, out_classes=6)
    with pytest.raises(ValueError, match="out_classes = K = 8"):
        UpscaleARDM(wide, kind="text", K=8, branching=2, parametrisation="data")
    model = UpscaleARDM(net, kind="text", K=8, branching=2)
    with pytest.raises(ValueError, match="joint budget"):
        model.stage_policies(2, mode="joint")
    with pytest.raises(ValueError, match="budget mode"):
        model.stage_policies(2, mode="global")
    with pytest.raises(ValueError, match="3 policies"):
        model.expected_bpd([np.array([0])])


# ---------------------------------------------------------------------------- training
def test_loss_trains_and_fills_the_tracker() -> None:
    model = make_model(8, 2, "data", L=4).train()
    x = torch.tensor([[0, 7, 3, 5]]).repeat(16, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    first = None
    for i in range(40):
        out = model.loss(x, antithetic=i % 2 == 0, generator=g)
        assert torch.isfinite(out.loss)
        assert bool(((out.t >= 0) & (out.t < model.S * model.D)).all())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.tracker.update(out.t, out.terms.L_t)
        first = first if first is not None else float(out.loss.detach())
    assert float(out.loss.detach()) < 0.5 * first
    assert model.tracker.D == model.S * model.D
    L = model.estimate_L(x, passes=2, batch_size=5, generator=g)
    assert L.shape == (model.S * model.D,) and np.all(np.isfinite(L))
    bound = model.eval().bound_bpd(x[:2], passes=2, generator=g)
    assert bound.shape == (2,) and bool(torch.isfinite(bound).all())


# ---------------------------------------------------------------------------- policies
def test_stage_policies_spend_the_budget() -> None:
    model = make_model(8, 2, "data", L=6)
    S, D = model.S, model.D
    rng = np.random.default_rng(0)
    model.tracker.set_all(rng.random(S * D) * np.repeat([3.0, 2.0, 1.0], D))  # distinct L
    for budget in range(1, D + 1):
        per_stage = model.stage_policies(budget, mode="per-stage")
        assert [len(p) for p in per_stage] == [budget] * S
        assert all(p[0] == 0 and np.all(np.diff(p) > 0) for p in per_stage)
    # the split is the best one for the isotonic fit of each stage's L (see stage_policies)
    iso = [monotone_losses(L, "isotonic") for L in model.tracker.L().reshape(S, D)]
    curves = [policy_costs(L, D, presorted=True) for L in iso]
    sorted_L = model.stage_L()
    for budget in range(S, S * D + 1):
        joint = model.stage_policies(budget, mode="joint")
        assert sum(len(p) for p in joint) == budget
        chosen = sum(curves[s][len(p) - 1] for s, p in enumerate(joint))
        best = min(
            sum(curves[s][k - 1] for s, k in enumerate(split))
            for split in itertools.product(range(1, D + 1), repeat=S)
            if sum(split) == budget
        )
        assert chosen == pytest.approx(best, rel=1e-12)
        # each stage's own policy is the DP on its sorted L for its share of the calls
        for s, p in enumerate(joint):
            own = model.stage_policies(len(p), mode="per-stage")[s]
            assert policy_cost(sorted_L[s], p) == pytest.approx(
                policy_cost(sorted_L[s], own), rel=1e-12
            )
        naive = model.stage_policies(budget, mode="joint", naive=True)
        assert sum(len(p) for p in naive) == budget
        assert chosen <= sum(curves[s][len(p) - 1] for s, p in enumerate(naive)) + 1e-12
    assert sum(len(p) for p in model.stage_policies(10 * S * D, mode="joint")) == S * D
    given = model.stage_policies(2, mode="per-stage", start=4)
    assert all(list(p) == [4, 5] for p in given)
    assert model.expected_bpd(given) == pytest.approx(sum(sorted_L[:, 4:].sum(1)))


# ---------------------------------------------------------------------------- sampling
def record(model: UpscaleARDM, n: int, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:  # type: ignore[no-untyped-def]
    masks: list[torch.Tensor] = []
    x = model.generate(n, Sampling(on_step=lambda xs, step: masks.append(step.clone()), **kwargs))
    return x, masks


@settings(max_examples=12, deadline=None)
@given(
    budget=st.integers(1, 8),
    mode=st.sampled_from(["per-stage", "joint"]),
    naive=st.booleans(),
    n_given=st.integers(0, 4),
    seed=st.integers(0, 100),
)
def test_sampling_fills_every_digit_once_within_budget(
    budget: int, mode: str, naive: bool, n_given: int, seed: int
) -> None:
    model = make_image_model(10, 4, "direct")  # S = 2, D = 4
    S, D = model.S, model.D
    budget = max(budget, S) if mode == "joint" else budget
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 10, (3, *model.shape), generator=g)
    known = torch.zeros(model.shape, dtype=torch.bool)
    known.view(-1)[torch.randperm(D, generator=g)[:n_given]] = True
    x, masks = record(
        model, 3, budget=budget, mode=mode, naive=naive, given=values, known=known, generator=g
    )
    assert x.shape == (3, *model.shape)
    assert int(x.min()) >= 0 and int(x.max()) < 10
    assert torch.equal(x[:, known], values[:, known])
    calls = len(masks)
    assert calls <= (S * budget if mode == "per-stage" else budget) or n_given == D
    if masks:  # each stage writes every variable not given exactly once
        written = torch.stack(masks).long().sum(0)
        assert torch.equal(written, S * (~known).long().expand_as(written))


def test_sequential_sampling_takes_S_times_D_calls_and_complete_keeps_known() -> None:
    model = make_model(8, 2, "data", L=3)
    x, masks = record(model, 2, generator=torch.Generator().manual_seed(0))
    assert len(masks) == model.S * model.D and x.shape == (2, 3)
    prefix = torch.tensor([[7, 1, 0]])
    known = torch.tensor([True, True, False])
    g = torch.Generator().manual_seed(0)
    out = model.complete(prefix, known, budget=1, mode="per-stage", generator=g)
    assert torch.equal(out[0, :2], prefix[0, :2])
    with pytest.raises(ValueError, match="same number"):
        mask = torch.tensor([[True, False, False], [False, False, False]])
        model.complete(torch.zeros(2, 3, dtype=torch.long), mask)


def test_samples_follow_the_model() -> None:
    """With D = 1 every sample's probability is known exactly: compare frequencies."""
    model = make_model(5, 2, "direct", L=1)
    x = model.sample(3000, generator=torch.Generator().manual_seed(0))[:, 0]
    p = torch.exp2(-model.exact_nll_bpd(torch.arange(5)[:, None]))
    freq = torch.bincount(x, minlength=5).double() / len(x)
    torch.testing.assert_close(freq, p.double(), atol=0.03, rtol=0)


# ---------------------------------------------------------------------------- identity
def test_with_net_and_fingerprint() -> None:
    a = make_model(8, 2, "data")
    other = make_model(8, 2, "data", seed=1)
    b = a.with_net(other.net)
    assert b.net is other.net and a.net is not other.net and b.tracker is a.tracker
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == make_model(8, 2, "data").fingerprint()
    assert a.device == torch.device("cpu")
