"""The D3PM-absorbing baseline: its bound checked by hand and by enumeration, sampling, API."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from ardm.config import Config
from ardm.core.objective import LN2, masked_log_likelihood
from ardm.models.ardm import ARDM
from ardm.models.d3pm import D3PMAbsorbing, d3pm_bound
from tests.tiny_nets import IntegerNet, TinyAttnNet


class FixedNet(nn.Module):
    """Ignores all context: one fixed categorical per position (a factorised model)."""

    def __init__(self, probs: torch.Tensor) -> None:  # probs (*shape, K)
        super().__init__()
        self.K, self.shape = probs.shape[-1], tuple(probs.shape[:-1])
        self.logits = nn.Parameter(probs.log())

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], *self.logits.shape)  # (B, *shape, K)


class CopyNet(nn.Module):
    """Two binary positions. Alone: ``p_0(1) = 0.7``, ``p_1(1) = 0.4``; when the other position
    is known, 0.8 on its value."""

    K, shape = 2, (2,)

    def __init__(self) -> None:
        super().__init__()
        self.alone = nn.Parameter(torch.tensor([[0.3, 0.7], [0.6, 0.4]]).log())  # (2, K)

    def forward(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        other_x, other_known = x.flip(1), known.flip(1)  # (B, 2): the other position
        copy = torch.full((*x.shape, 2), 0.2).scatter(-1, other_x[..., None], 0.8).log()
        alone = self.alone.expand(x.shape[0], 2, 2)
        return torch.where(other_known[..., None], copy, alone)  # (B, 2, K)


def exact_bound_bpd(model: D3PMAbsorbing, x0: torch.Tensor, T: int) -> torch.Tensor:
    """The ``T``-step bound of one item ``x0`` ``shape``, per step ``(T,)``, by enumerating
    every absorption pattern with its probability ``a^n (1-a)^(D-n)``, ``a = t/T``."""
    D = model.D
    patterns = torch.tensor(list(itertools.product([False, True], repeat=D)))  # (P, D)
    P = patterns.shape[0]
    known = (~patterns).view(P, *model.shape)
    x = x0.expand(P, *model.shape)
    t_in = known.flatten(1).sum(1).clamp(max=D - 1)
    with torch.no_grad():
        nll = -masked_log_likelihood(model.log_probs(x, known, t_in), x, ~known).double()  # (P,)
    n = patterns.sum(1).double()  # (P,) absorbed count
    t = torch.arange(1, T + 1, dtype=torch.float64)[:, None]  # (T, 1)
    a = t / T
    prob = a**n * (1 - a) ** (D - n)  # (T, P)
    return (prob * nll).sum(1) / t[:, 0] / (D * LN2)  # (T,)


def _close(samples: torch.Tensor, exact: float, n_se: float = 5.0) -> None:
    samples = samples.detach()
    se = float(samples.std()) / math.sqrt(samples.numel())
    assert abs(float(samples.mean()) - exact) < n_se * se + 1e-5


def test_hand_checked_two_variable_bound() -> None:
    model = D3PMAbsorbing(CopyNet(), kind="text", steps=2)
    x0 = torch.tensor([1, 1])
    # t = 2: everything absorbed, each revealed w.p. 1/2, alone: (1/2)(-ln 0.7 - ln 0.4).
    term2 = 0.5 * -math.log(0.7 * 0.4)
    # t = 1 (weight 1/1): x_1 absorbs each position w.p. 1/2, four patterns w.p. 1/4 each:
    #   none -> 0;  only 0 -> -ln 0.8 (copies 1);  only 1 -> -ln 0.8;  both -> -ln 0.7 - ln 0.4.
    term1 = 0.25 * (0.0 + 2 * -math.log(0.8) - math.log(0.7 * 0.4))
    hand = (term1 + term2) / (2 * LN2)  # = (0.5 (-ln .8) + 0.75 (-ln .28)) / (2 ln 2)
    assert hand == pytest.approx(0.769170, abs=1e-6)
    exact = exact_bound_bpd(model, x0, 2)
    assert exact.tolist() == pytest.approx([term1 / (2 * LN2), term2 / (2 * LN2)], rel=1e-6)

    g = torch.Generator().manual_seed(0)
    xs = x0.expand(20000, 2)
    _close(model.nll_bound_bpd(xs, batch_size=40000, generator=g), hand)
    out = model.loss(xs, generator=g)
    _close(out.terms.bpd.double(), hand)
    assert set(out.t.tolist()) == {0, 1}
    L = model.estimate_L(x0[None], passes=500, generator=g)  # per-step terms
    assert L.tolist() == pytest.approx(exact.tolist(), abs=0.1)


@pytest.mark.parametrize("T", [1, 2, 7, 100])
def test_bound_is_exact_for_a_factorised_model(T: int) -> None:
    probs = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), -1)
    model = D3PMAbsorbing(FixedNet(probs), kind="text", steps=T)
    x0 = torch.tensor([2, 0, 3])
    exact_nll = -probs[torch.arange(3), x0].log().sum().item() / (3 * LN2)
    per_step = exact_bound_bpd(model, x0, T)
    assert per_step.sum().item() == pytest.approx(exact_nll, rel=1e-6)
    assert per_step.tolist() == pytest.approx([exact_nll / T] * T, rel=1e-6)  # L_t = nll / T
    g = torch.Generator().manual_seed(T)
    est = model.nll_bound_bpd(x0.expand(500, 3), steps=T, batch_size=4096, generator=g)
    _close(est, exact_nll)


@pytest.mark.parametrize("values", [[0, 0, 1, 1], [1, 1, 1, 1]])
def test_context_bound_is_above_ardm_and_tends_to_it(values: list[int]) -> None:
    # For items where context helps (smooth under the neighbour pull), the T-step bound
    # sits above the OA-ARDM bound and tightens to it as T grows (the continuous-time limit:
    # int_0^1 (1/s) Bin(n; D, s) ds = 1/n). Not a theorem for every item and net.
    net = IntegerNet(3, (4,), seed=2, pull=2)
    model = D3PMAbsorbing(net, kind="text", steps=10)
    x0 = torch.tensor(values)
    ardm = ARDM(net, kind="text")
    orders = torch.tensor(list(itertools.permutations(range(4))))  # (24, 4)
    ardm_bound = torch.stack([ardm.exact_nll_bpd(x0[None], sigma=s) for s in orders]).mean()
    bounds = [exact_bound_bpd(model, x0, T).sum().item() for T in (1, 2, 5, 20, 100, 10000)]
    assert all(b >= ardm_bound.item() - 1e-6 for b in bounds)
    assert bounds == sorted(bounds, reverse=True)  # finer steps, tighter bound (here)
    assert bounds[-1] == pytest.approx(ardm_bound.item(), rel=1e-3)
    g = torch.Generator().manual_seed(0)
    est = model.nll_bound_bpd(x0.expand(400, 4), passes=2, batch_size=4096, generator=g)
    _close(est, exact_bound_bpd(model, x0, 10).sum().item())


def test_nothing_absorbed_contributes_zero() -> None:
    terms = d3pm_bound(torch.zeros(3), torch.tensor([1, 5, 9]), 10, 4)
    assert terms.bpd.tolist() == [0.0] * 3 and terms.L_t.tolist() == [0.0] * 3


@pytest.mark.parametrize("steps", [1, 3, 50])
def test_sample_fills_every_position_within_steps(steps: int) -> None:
    model = D3PMAbsorbing(TinyAttnNet(5, 6), kind="text", steps=1000)
    masks: list[torch.Tensor] = []
    g = torch.Generator().manual_seed(steps)
    x = model.sample(4, budget=steps, generator=g, on_step=lambda xs, m: masks.append(m.clone()))
    assert x.shape == (4, 6) and int(x.min()) >= 0 and int(x.max()) < 5
    assert model.last_sample_calls == len(masks)
    assert 1 <= len(masks) <= min(steps, 4 * 6)
    if steps == 1:
        assert len(masks) == 1
    assert torch.equal(torch.stack(masks).long().sum(0), torch.ones(4, 6, dtype=torch.long))


def test_sample_follows_a_factorised_model() -> None:
    model = D3PMAbsorbing(FixedNet(torch.tensor([[0.2, 0.8]])), kind="text", steps=5)
    x = model.sample(4000, generator=torch.Generator().manual_seed(0))
    assert float(x.double().mean()) == pytest.approx(0.8, abs=0.03)


def test_with_net_shares_tracker_and_loss_is_differentiable() -> None:
    model = D3PMAbsorbing(TinyAttnNet(5, 6, seed=0), kind="text", steps=16, ce_weight=0.1)
    model.cfg = Config()
    other = model.with_net(TinyAttnNet(5, 6, seed=1))
    assert other.tracker is model.tracker and other.cfg is model.cfg
    assert other.net is not model.net and other.T == model.T
    assert model.fingerprint() != other.fingerprint() and len(model.fingerprint()) == 32

    x = torch.randint(0, 5, (16, 6), generator=torch.Generator().manual_seed(0))
    out = model.loss(x, antithetic=True, generator=torch.Generator().manual_seed(1))
    assert sorted(out.t.tolist()) == list(range(16))  # stratified: one per slot
    out.loss.backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(gr is not None and bool(torch.isfinite(gr).all()) for gr in grads)
    assert any(float(gr.abs().sum()) > 0 for gr in grads if gr is not None)
    assert torch.isfinite(out.loss)
    model.tracker.update(out.t, out.terms.L_t)
    assert other.tracker.seen.sum() == 16

    again = model.loss(x, antithetic=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.terms.bpd, out.terms.bpd)  # all randomness from the generator
    bpd = model.bound_bpd(x, passes=2, generator=torch.Generator().manual_seed(2))
    assert bpd.shape == (16,) and bpd.dtype == torch.float64
    assert model.estimate_L(x, generator=torch.Generator().manual_seed(3)).shape == (16,)
