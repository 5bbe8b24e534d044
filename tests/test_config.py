"""Presets and type-checked overrides."""

from __future__ import annotations

import pytest

from ardm.config import Config, from_dict, load_config, preset_names, to_dict
from ardm.errors import ConfigError


def test_every_preset_loads() -> None:
    names = preset_names()
    assert {"mnist-tiny", "english-tiny", "mnist-full", "english-full"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert from_dict(Config, to_dict(cfg)) == cfg


def test_overrides_are_typed() -> None:
    cfg = load_config(
        "mnist-tiny", ["train.lr=3e-4", "model.unet.ch_mult=[1, 2, 2]", "data.augment=true"]
    )
    assert cfg.train.lr == 3e-4 and cfg.model.unet.ch_mult == (1, 2, 2) and cfg.data.augment
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0  # ints promote to float


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "unknown setting train.lrr"),
        ("train.steps=1.5", "must be an integer"),
        ("data.augment=3", "true or false"),
        ("train", "section.key=value"),
        ("model.unet=3", "is a table"),
        ("model.transformer.heads=3", "dim"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("english-tiny", [override])


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")
