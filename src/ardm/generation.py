"""Generation under a budget for any model: unconditional samples and completion of the unknown
variables (inpainting, text infill)."""

from __future__ import annotations

import torch

from ardm.models.process import Process


def generate(
    model: Process,
    n: int,
    *,
    budget: int | None,
    naive: bool,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, int]:
    """``n`` samples from any model, and the network calls each was given.

    ``budget`` calls in all (an Upscale ARDM splits them over its ``S`` stages by the joint
    DP; at least ``S``), default one variable per step; a D3PM's budget is its number of
    steps (default its training ``T``), and it reports the calls it made.
    """
    x = model.sample(n, budget=budget, naive=naive, temperature=temperature, generator=generator)
    return x, model.last_sample_calls


def fill_in(
    model: Process,
    x: torch.Tensor,
    known: torch.Tensor,
    *,
    budget: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Conditional generation: ``budget`` calls in all (an Upscale ARDM: the joint DP)."""
    return model.complete(x, known, budget=budget, generator=generator)
