"""The README's library block runs as written (documented calls keep working).

The block is executed with a small MNIST batch ``x`` and ``known_mask`` defined first, and
``ardm.load`` answering with an untrained ``mnist-tiny`` model so that the test stays fast: what
is checked is that every documented call exists with the documented arguments and returns.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import ardm
from ardm.config import load_config
from ardm.models import build_model

README = Path(__file__).resolve().parents[1] / "README.md"


def library_block() -> str:
    text = README.read_text()
    section = text[text.index("## Library") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "README has no python block under '## Library'"
    return match.group(1)


def test_readme_library_block_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = build_model(load_config("mnist-tiny")).eval()
    monkeypatch.setattr(ardm, "load", lambda name, **kw: tiny)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1, 1, 28, 28), generator=g)  # (B, 1, 28, 28)
    known_mask = torch.zeros(1, 28, 28, dtype=torch.bool)
    known_mask[:, :14] = True  # top half known
    scope: dict[str, object] = {"x": x, "known_mask": known_mask}
    exec(compile(library_block(), str(README), "exec"), scope)
    assert torch.equal(scope["filled"][:, :, :14], x[:, :, :14])  # type: ignore[index]
