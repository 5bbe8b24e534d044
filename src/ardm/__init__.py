"""ardm: Autoregressive Diffusion Models in PyTorch.

``ardm.load("mnist")`` gives a shipped model; see :mod:`ardm.models.ardm` for the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ardm.models.ardm import ARDM


def load(name: str, *, device: Any = "cpu") -> ARDM:
    """A model shipped with ardm, a run folder, a checkpoint or a weights file, by name or path."""
    from ardm.training.pretrained import load_model

    return load_model(name, device=device)
