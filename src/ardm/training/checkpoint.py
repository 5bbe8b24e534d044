"""Checkpoints: weights-only torch files written atomically, with the resolved config and L_t.

A training checkpoint (``ckpt.pt``) holds the model, its EMA copy, the optimiser, the step,
the data sampler and RNG states; it loads with ``weights_only=True`` (no pickle code runs).
:func:`model_from_state` rebuilds the model (:class:`~ardm.models.ardm.ARDM` or a subclass)
from a loaded checkpoint alone, with EMA weights; ``ardm.training.pretrained.load_model``
finds the checkpoint of a run folder.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ardm.config import Config, from_dict
from ardm.errors import CheckpointError, first_line
from ardm.filesystem import atomic_write_bytes
from ardm.models.ardm import ARDM
from ardm.models.build import build_model

FORMAT = "ardm-checkpoint-1"


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> None:
    """Save a checkpoint dict (tensors, numbers, strings, lists, dicts only) atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; errors become :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ardm checkpoint")
    return state


def model_from_state(state: dict[str, Any], *, ema: bool = True) -> ARDM:
    """Rebuild the model of a loaded checkpoint (EMA weights by default)."""
    missing = [k for k in ("config", "model", "tracker") if k not in state]
    if missing:
        raise CheckpointError(f"incomplete ardm checkpoint: no {', '.join(missing)}")
    if not isinstance(state["config"], dict):
        raise CheckpointError("the checkpoint's config is not a table")
    cfg = from_dict(Config, state["config"])
    model = build_model(cfg)
    weights = state["ema"] if ema and "ema" in state else state["model"]
    try:
        model.net.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint weights do not match its config: {first_line(e)}"
        ) from None
    model.tracker.load_state_dict(state["tracker"])
    model.order_seed = int(state.get("order_seed", 0))
    return model.eval()
