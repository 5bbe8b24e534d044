"""Stage maps of Upscale ARDMs: round trips for every 8-bit value, the data parametrisation."""

from __future__ import annotations

import pytest
import torch

from ardm.core.upscale import coarsen, digit, num_stages, refine, stage_log_probs


@pytest.mark.parametrize(("b", "S"), [(2, 8), (4, 4), (16, 2), (256, 1)])
def test_every_8bit_value_round_trips(b: int, S: int) -> None:
    assert num_stages(256, b) == S
    x = torch.arange(256)
    assert torch.equal(coarsen(x, 0, b=b, S=S), torch.zeros_like(x))
    assert torch.equal(coarsen(x, S, b=b, S=S), x)
    for s in range(S):
        past = coarsen(x, s, b=b, S=S)
        d = digit(x, s, b=b, S=S)
        assert bool(((d >= 0) & (d < b)).all())
        assert torch.equal(refine(past, d, s, b=b, S=S), coarsen(x, s + 1, b=b, S=S))
        assert torch.equal(coarsen(coarsen(x, s + 1, b=b, S=S), s, b=b, S=S), past)


def test_num_stages_for_audio_and_odd_K() -> None:
    assert [num_stages(65536, b) for b in (256, 16, 4, 2)] == [2, 4, 8, 16]
    assert num_stages(27, 4) == 3 and num_stages(2, 2) == 1


@pytest.mark.parametrize(("K", "b"), [(256, 4), (256, 2), (27, 4), (10, 3)])
def test_data_parametrisation_matches_brute_force(K: int, b: int) -> None:
    S = num_stages(K, b)
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(K, generator=g).log_softmax(-1)  # (K,)
    values = torch.arange(K)
    for s in range(S):
        for x in values[:: max(1, K // 7)]:
            past = coarsen(x, s, b=b, S=S)
            got = stage_log_probs(theta[None], past[None], s, b=b, S=S)[0].exp()  # (b,)
            want = torch.zeros(b, dtype=theta.dtype)
            for v in range(K):  # brute force: values whose stage-s value is `past`
                if coarsen(torch.tensor(v), s, b=b, S=S) == past:
                    want[digit(torch.tensor(v), s, b=b, S=S)] += theta[v].exp()
            want = want / want.sum()
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            # zero mass outside the children of the coarse value that exist
            for d in range(b):
                if int(refine(past, torch.tensor(d), s, b=b, S=S)) >= K:
                    assert float(got[d]) == 0.0
