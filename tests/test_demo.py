"""The shipped models load (checksums verified) and the demo's compression table round-trips."""

from __future__ import annotations

import pytest

from ardm.checkpoint import load_model
from ardm.demo import compression_rows
from ardm.pretrained import shipped_names


def test_shipped_models_are_present() -> None:
    assert {"mnist", "fashion-mnist", "english"} <= set(shipped_names())


@pytest.mark.parametrize(("name", "items"), [("mnist", 2), ("english", 1)])
def test_demo_compression_rows(name: str, items: int) -> None:
    model = load_model(name)
    rows = compression_rows(model, name, items=items, budgets=(3,))
    ours = rows[0]
    assert ours["codec"].startswith(f"ardm {name}, 3 calls")
    assert 0 < ours["bpd"] < 8
    classical = {r["codec"] for r in rows[1:]}
    expected = {"PNG", "WebP lossless"} if model.kind == "image" else {"xz", "bzip2"}
    assert expected <= classical
