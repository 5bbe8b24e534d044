"""Generation under a budget for any model: unconditional samples and completion of the unknown
variables (inpainting, text infill)."""

from __future__ import annotations

import torch

from ardm.errors import DataError


def generate(model, n: int, *, budget: int | None, naive: bool, temperature: float, generator):  # type: ignore[no-untyped-def]
    """``n`` samples from any model kind, and the network calls each took.

    OA-ARDM: ``budget`` calls (default ``D``) under the DP (or naive) policy. Upscale ARDM:
    ``budget`` calls in total over its ``S`` stages, split by the joint DP (default ``S * D``).
    D3PM: ``budget`` steps (default its training ``T``).
    """
    from ardm.models.d3pm import D3PMAbsorbing

    if isinstance(model, D3PMAbsorbing):
        x = model.sample(n, steps=budget, temperature=temperature, generator=generator)
        return x, model.last_sample_calls
    if budget is not None and budget < model.S:
        raise DataError(f"this model has {model.S} stages: the budget must be at least {model.S}")
    most = model.S * model.D
    calls = min(budget or most, most)
    x = model.sample(
        n, budget=calls, mode="joint", naive=naive, temperature=temperature, generator=generator
    )
    return x, calls


def fill_in(model, x: torch.Tensor, known: torch.Tensor, *, budget: int | None, generator):  # type: ignore[no-untyped-def]
    """Conditional generation with any ARDM: ``budget`` calls in all (upscale: joint DP)."""
    from ardm.models.d3pm import D3PMAbsorbing

    if isinstance(model, D3PMAbsorbing):
        raise DataError("conditional generation is for ARDMs; the D3PM baseline does not do it")
    return model.complete(x, known, budget=budget, mode="joint", generator=generator)
