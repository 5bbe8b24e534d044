"""Prefix-known training examples (:mod:`ardm.core.context`)."""

from __future__ import annotations

import torch

from ardm.core.context import PAD, context_examples, prefix_orders


def test_the_mixture_puts_a_known_prefix_first_and_pads_only_the_context() -> None:
    D, c = 32, 20
    x = torch.randint(0, 256, (4000, D))
    g = torch.Generator().manual_seed(0)
    xp, t, sigma = context_examples(x, c, generator=g)
    assert sorted(sigma[0].tolist()) == list(range(D))
    # a known prefix of c' >= c: the first c' positions hold the ranks 0..c'-1
    whole = sigma.cummax(dim=1).values == torch.arange(D)[None, :]  # (B, D)
    prefix_known = whole[:, c - 1 : D - 1].any(dim=1)  # (B,)
    assert (t[prefix_known] < c).float().mean() < 0.01  # a few OA rows look prefix-known
    oa = 1 - prefix_known.float().mean().item()
    assert 0.12 < oa < 0.18  # about 15 % plain OA examples
    changed = xp != x
    assert (xp[changed] == PAD).all()  # padding only writes PAD ...
    known = sigma < t[:, None]
    assert not (changed & ~known).any()  # ... and only where values are known
    padded = changed.any(dim=1).float().mean().item()
    assert 0.05 < padded < 0.25
    assert (t >= 0).all() and (t < D).all()


def test_slots_from_the_context_on_get_prefix_first_orders() -> None:
    D, c = 16, 6
    t = torch.tensor([0, 5, 6, 15])
    sigma = prefix_orders(t, D, c, generator=torch.Generator().manual_seed(1))
    for row in (2, 3):
        assert sorted(sigma[row, :c].tolist()) == list(range(c))
    assert sorted(sigma[0].tolist()) == list(range(D))
