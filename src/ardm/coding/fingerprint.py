"""Model identity in files: the resolved config as fingerprinted, with the compatibility table
of settings added after the first release (left out while they keep their old value, so
older files still decode)."""

from __future__ import annotations

from typing import Any

# Model settings added after the first release, with the value every earlier model had. Left
# out of fingerprints while they keep that value, so files compressed with earlier versions
# of the same model still decode.
_LATER_MODEL_SETTINGS = {
    "process": "oa",
    "output": "categorical",
    "mixtures": 30,
    "branching": 4,
    "parametrisation": "data",
    "d3pm_steps": 1000,
}


# Model settings added later still, for every process, with the value all earlier models had.
_LATER_SETTINGS_ANY_PROCESS = {"output_bias": "zero", "context": 0}
"""(``context`` is also in :data:`_LATER_SETTINGS_RAW`.)"""


# Model settings added after every process had shipped models (so also left out of the raw
# configs that the Upscale and D3PM identities hash) while they keep their old value.
_LATER_SETTINGS_RAW = {"context": 0}


# Training settings added later (every config's ``train`` section is hashed too), left out of
# every identity while they keep the value all earlier models had.
_LATER_TRAIN_SETTINGS = {"cooldown": 0.0, "policy_budget": 0, "spread_order": False, "init": ""}


def _stable_train(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the later training settings at their old value left out."""
    train = config.get("train")
    if not isinstance(train, dict):
        return config
    return {**config, "train": _without_defaults(train, _LATER_TRAIN_SETTINGS)}


def raw_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as the Upscale and D3PM identities hash it: the settings added
    since they shipped (:data:`_LATER_SETTINGS_RAW`, :data:`_LATER_TRAIN_SETTINGS`) left out
    while at their old value."""
    config = _stable_train(config)
    model = config.get("model")
    if not isinstance(model, dict):
        return config
    return {**config, "model": _without_defaults(model, _LATER_SETTINGS_RAW)}


def _without_defaults(model: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``model`` without the settings that have their value in ``defaults``."""
    return {k: v for k, v in model.items() if k not in defaults or v != defaults[k]}


def stable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as fingerprinted: later settings at their old value left out."""
    config = _stable_train(config)
    model = config.get("model")
    if not isinstance(model, dict):
        return config
    model = _without_defaults(model, _LATER_SETTINGS_ANY_PROCESS)
    config = {**config, "model": model}
    if model.get("process", "oa") != "oa":
        return config
    if model.get("output", "categorical") != "categorical":
        return config
    kept = {k: v for k, v in model.items() if k not in _LATER_MODEL_SETTINGS}
    if model.get("net") != "wavenet":
        kept.pop("wavenet", None)  # the audio network's settings mean nothing to other nets
    return {**config, "model": kept}
