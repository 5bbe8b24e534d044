"""The portable state format: safetensors + JSON structure, whitelisted classes, checksummed."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import ardm
from ardm.errors import FormatError
from ardm.portable.model import PortableModel, freeze, portable_from_bytes
from ardm.portable.quant import Rescale
from ardm.portable.state import STATE_KEY, _metadata, dump_state, load_state, state_digest


def test_round_trip_of_plain_values_and_nested_objects() -> None:
    r = Rescale.__new__(Rescale)
    r.__dict__.update({"multiplier": torch.tensor([3, 5]), "shift": 7, "float64": True})
    value = {
        "a": [1, 2.5, float("inf"), None, True, "s", (4, (5,))],
        3: r,
        "t": torch.arange(6, dtype=torch.int16).view(2, 3),
        "e": torch.zeros(0, dtype=torch.float32),
    }
    wrapped = PortableModel.__new__(PortableModel)
    wrapped.__dict__.update({"net": value})
    back = load_state(dump_state(wrapped)).net
    assert back["a"] == value["a"] and isinstance(back["a"][6], tuple)
    assert isinstance(back[3], Rescale) and back[3].shift == 7
    assert torch.equal(back[3].multiplier, r.multiplier)
    assert torch.equal(back["t"], value["t"]) and back["t"].dtype == torch.int16
    assert back["e"].shape == (0,)


def _forged(structure: object, tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    tensors = tensors or {}
    text = json.dumps(structure)
    meta = {"format": "ardm-portable-1", STATE_KEY: text, "sha256": state_digest(text, tensors)}
    return bytes(st_save(tensors, metadata=meta))


@pytest.mark.parametrize(
    "structure",
    [
        {"t": "obj", "c": "builtins:dict", "d": {}},
        {"t": "obj", "c": "os:system", "d": {}},
        {"t": "obj", "c": "ardm.portable.state:_Reader", "d": {}},
        {"t": "obj", "c": "ardm.portable.model:PortablePending", "d": {}},
        {"t": "pickle", "v": "x"},
        {"t": "tensor", "k": "missing"},
        {"t": "obj", "c": "ardm.portable.layers:IntLayer", "d": {"_epilogue": 1}},
    ],
)
def test_refuses_classes_outside_the_whitelist_and_bad_nodes(structure: object) -> None:
    with pytest.raises(FormatError) as e:
        load_state(_forged(structure))
    assert "\n" not in str(e.value)


def test_refuses_damaged_edited_and_foreign_bytes() -> None:
    good = dump_state(PortableModel.__new__(PortableModel))
    with pytest.raises(FormatError, match="not a portable state"):
        load_state(b"garbage")
    unused = _forged(None, {"x": torch.zeros(2)})
    with pytest.raises(FormatError, match="unused tensor"):
        load_state(unused)
    meta = _metadata(good)
    edited = bytes(st_save({}, metadata={**meta, STATE_KEY: meta[STATE_KEY] + " "}))
    with pytest.raises(FormatError, match="SHA-256"):
        load_state(edited)
    with pytest.raises(FormatError, match="not a portable model"):
        portable_from_bytes(_forged({"t": "list", "v": [1, 2]}))
    assert st_load(good) == {}


def test_frozen_unet_gives_identical_pmf_after_loading() -> None:
    m = ardm.load("mnist")
    g = torch.Generator().manual_seed(0)
    items = torch.randint(0, 256, (4, 1, 28, 28), generator=g)
    pm = freeze(m, items, passes=1)
    back = portable_from_bytes(pm.to_bytes())
    x = torch.randint(0, 256, (2, 1, 28, 28), generator=g)
    known = torch.rand(2, 1, 28, 28, generator=g) < 0.5
    t = known.flatten(1).sum(1)
    assert torch.equal(pm.pmf(x, known, t), back.pmf(x, known, t))
    assert back.fingerprint() == pm.fingerprint()
    assert back.float_fingerprint == m.fingerprint().hex()


def test_load_attaches_the_portable_form_of_exactly_its_weights() -> None:
    from ardm.errors import CheckpointError
    from ardm.training.pretrained import attach_portable, portable_file, shipped_path

    m = ardm.load("fashion-mnist")
    assert m.portable is not None and m.portable.float_fingerprint == m.fingerprint().hex()
    with pytest.raises(CheckpointError, match="other weights"):
        attach_portable(m, portable_file(shipped_path("mnist")))
    assert ardm.load("english").portable is not None  # every shipped kind has one


def test_integer_valued_tensors_are_stored_packed_and_come_back_in_their_own_dtype() -> None:
    value = {
        "w": torch.tensor([[-127.0, 3.0], [0.0, 127.0]]),  # float32 integers: int8
        "table": torch.arange(-40000, 40000, 7, dtype=torch.float64),  # int32
        "idx": torch.tensor([1, 2, 300], dtype=torch.int64),  # int16
        "scale": torch.tensor([0.5, 1.25]),  # not integers: kept
    }
    wrapped = PortableModel.__new__(PortableModel)
    wrapped.__dict__.update({"net": value})
    data = dump_state(wrapped)
    stored = st_load(data)
    assert stored["net.w"].dtype == torch.int8 and stored["net.idx"].dtype == torch.int16
    assert stored["net.table"].dtype == torch.int32 and stored["net.scale"].dtype == torch.float32
    back = load_state(data).net
    for key, t in value.items():
        assert back[key].dtype == t.dtype and torch.equal(back[key], t)
    meta = _metadata(data)
    forged = {**meta, "packed": json.dumps({"net.scale": "torch.float64"})}
    with pytest.raises(FormatError, match="packed"):
        load_state(bytes(st_save(stored, metadata=forged)))
