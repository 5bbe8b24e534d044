"""Prefix-known training: a block of variables given the variables before it.

A file longer than the model's window is coded as a chain of blocks (:mod:`ardm.coding.chain`):
each block is the last variables of a window whose first ``context`` variables (at least) are
already known, the bytes before it. Order-agnostic training alone rarely shows the network
that situation (a uniform order puts a whole prefix first with probability ``1 / C(D, c)``), so
a model with ``model.context = c > 0`` draws each training example from a mixture:

- ``OA_SHARE``: a plain order-agnostic example (``t ~ U{0..D-1}``, uniform order);
- ``CODING_SHARE``: the coding case, the first ``c`` variables known first (in random order),
  then ``t ~ U{c..D-1}``: the block of ``D - c`` variables, ``t - c`` of them known;
- the rest: a known prefix of ``c' ~ U{c..D-1}`` variables (a file's last, shorter block).

A prefix-known example's context is, with probability ``PAD_SHARE``, replaced by the byte
``PAD`` (a newline) throughout: what stands before a file's first byte when it is coded.

The bound is the OA-ARDM one-step bound unchanged: with ``c'`` known first and ``t >= c'``,
the ``D - t`` unknown variables are equally likely to come next, so ``(D - c') * ll / (D - t)``
is unbiased for ``log p(block | prefix)`` and ``-ll / ((D - t) ln 2)`` estimates the block's
bits per variable, the same unit as the OA bound's bits per dimension.
"""

from __future__ import annotations

import torch

from ardm.core.orders import orders_given_first

OA_SHARE = 0.15
CODING_SHARE = 0.70
PAD_SHARE = 0.15
PAD = 10
"""The byte that stands for "before the file": ``\\n`` (documents start after a blank line)."""


def context_examples(
    x: torch.Tensor, context: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw the mixture for a batch ``x (B, D)``: returns ``(x, t, sigma)``, ``x`` with padded
    contexts where drawn (a copy), ``t (B,)`` known variables and ``sigma (B, D)`` orders."""
    B, D = x.shape
    if not 0 < context < D:
        raise ValueError(f"context must lie in (0, {D}), got {context}")
    u = torch.rand(B, generator=generator)  # (B,) which kind of example
    longer = context + torch.floor(torch.rand(B, generator=generator) * (D - context)).long()
    prefix = torch.where(u < OA_SHARE + CODING_SHARE, context, longer)  # (B,)
    prefix = torch.where(u < OA_SHARE, 0, prefix)  # (B,) known prefix c'
    t = prefix + torch.floor(torch.rand(B, generator=generator) * (D - prefix)).long()  # (B,)
    positions = torch.arange(D)[None, :]  # (1, D)
    given = positions < prefix[:, None]  # (B, D)
    sigma = orders_given_first(given, generator=generator)  # (B, D)
    pad = (torch.rand(B, generator=generator) < PAD_SHARE) & (prefix > 0)  # (B,)
    x = torch.where(given & pad[:, None].to(x.device), torch.full_like(x, PAD), x)  # (B, D)
    return x, t.to(x.device), sigma.to(x.device)


def prefix_orders(
    t: torch.Tensor, D: int, context: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Orders ``(B, D)`` for slots ``t (B,)``: the first ``context`` variables first where
    ``t >= context`` (the coding case), uniform elsewhere."""
    positions = torch.arange(D)[None, :]  # (1, D)
    given = (positions < context) & (t.cpu() >= context)[:, None]  # (B, D)
    return orders_given_first(given, generator=generator).to(t.device)  # (B, D)
