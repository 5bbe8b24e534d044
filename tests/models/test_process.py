"""One interface for every process (OA-ARDM, mixture OA-ARDM, Upscale ARDM, D3PM): the same
calls with the same defaults work on each, a process without an order refuses what needs one
in one line, fingerprints keep their bytes, and no caller asks for the model's class."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ardm.coding import codec
from ardm.coding.fingerprint import stable_config
from ardm.config import load_config, to_dict
from ardm.errors import DataError
from ardm.evaluation import EvalOptions, evaluate
from ardm.generation import fill_in, generate
from ardm.models.ardm import ARDM
from ardm.models.build import build_model
from ardm.models.d3pm import D3PMAbsorbing
from ardm.models.dmol import DMoLARDM
from ardm.models.heads import CategoricalHead, MixtureHead
from ardm.models.process import Process
from ardm.models.upscale import UpscaleARDM
from ardm.nets.build import build_net
from ardm.nets.transformer import TransformerConfig
from ardm.nets.wavenet import WaveNet, WaveNetConfig
from tests.conftest import perturb

K, L = 8, 6
SRC = Path(__file__).resolve().parents[2] / "src" / "ardm"


def _net(stages: int = 1, out_classes: int | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=16, depth=1, heads=2, time_cond=True)
    net = build_net(
        "transformer", K=K, shape=(L,), transformer=cfg, stages=stages, out_classes=out_classes
    )
    return perturb(net, scale=0.3)


def _model(name: str) -> Process:
    if name == "oa":
        return ARDM(_net(), kind="text").eval()
    if name == "dmol":
        wavenet = WaveNetConfig(channels=8, blocks=2, dilation_cycle=2, value_emb_dim=4)
        return DMoLARDM(perturb(WaveNet(wavenet, K=K, length=L, out_classes=9)), mixtures=3).eval()
    if name == "upscale":
        return UpscaleARDM(_net(stages=3), kind="text", K=K, branching=2).eval()
    return D3PMAbsorbing(_net(), kind="text", steps=12).eval()


PROCESSES = ["oa", "dmol", "upscale", "d3pm"]


@pytest.mark.parametrize("name", PROCESSES)
def test_sample_takes_budget_and_mode_on_every_process(name: str) -> None:
    model = _model(name)
    for mode in ("joint", "per-stage"):
        g = torch.Generator().manual_seed(0)
        x = model.sample(3, budget=4, mode=mode, generator=g)
        assert x.shape == (3, L) and int(x.min()) >= 0 and int(x.max()) < K
        assert 1 <= model.last_sample_calls <= (4 if mode == "joint" else 4 * model.S)
    default = model.sample(2, generator=torch.Generator().manual_seed(1))
    again = model.sample(2, mode="joint", generator=torch.Generator().manual_seed(1))
    assert torch.equal(default, again)  # "joint" is every process's default
    x, calls = generate(model, 2, budget=5, naive=False, temperature=1.0, generator=None)
    assert x.shape == (2, L) and 1 <= calls <= 5
    with pytest.raises(ValueError, match="budget mode"):
        model.sample(1, budget=4, mode="each")


@pytest.mark.parametrize("name", PROCESSES)
def test_training_interface_is_shared(name: str) -> None:
    model = _model(name)
    x = torch.randint(0, K, (4, L), generator=torch.Generator().manual_seed(0))
    out = model.train().loss(x, antithetic=True, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(out.loss) and out.terms.bpd.shape == (4,)
    model.eval()
    L_t = model.estimate_L(x, batch_size=5, generator=torch.Generator().manual_seed(2))
    assert L_t.shape == (model.tracker.D,) and np.all(np.isfinite(L_t))
    other = model.with_net(model.net)
    assert other.tracker is model.tracker and other.fingerprint() == model.fingerprint()
    assert len(model.fingerprint()) == 32


@pytest.mark.parametrize("name", ["oa", "dmol", "upscale"])
def test_ardms_complete_plan_and_code_with_the_same_calls(name: str) -> None:
    model = _model(name)
    x = torch.randint(0, K, (2, L), generator=torch.Generator().manual_seed(0))
    known = torch.arange(L) < 2
    out = fill_in(model, x, known, budget=model.S + 2, generator=torch.Generator())
    assert torch.equal(out[:, :2], x[:, :2])
    fewest, most = model.budget_range()
    assert (fewest, most) == (model.S, model.S * model.D)
    policies = model.stage_policies(fewest + 1)
    assert len(policies) == model.S == len(model.coding_stages(fewest + 1, 0))
    nll = model.exact_nll_bpd(x, policies=policies)
    assert nll.shape == (2,) and bool(torch.isfinite(nll).all())
    assert model.expected_bpd(policies) > 0
    blob = codec.compress(model, x[0], budget=fewest + 1)
    assert torch.equal(codec.decompress(model, blob), x[0])  # type: ignore[arg-type]


def test_d3pm_refuses_what_needs_an_order_in_one_line() -> None:
    model = _model("d3pm")
    x = torch.zeros(1, L, dtype=torch.long)
    calls: list[Any] = [
        lambda: model.stage_policies(4),
        lambda: model.expected_bpd([np.arange(L)]),
        lambda: model.exact_nll_bpd(x),
        lambda: model.budget_range(),
        lambda: model.coding_stages(4, 0),
        lambda: model.complete(x, torch.arange(L) < 2, budget=3),
        lambda: codec.compress(model, x[0], budget=4),
    ]
    for call in calls:
        with pytest.raises(DataError, match="D3PM") as e:
            call()
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", PROCESSES)
def test_evaluate_needs_no_class(name: str) -> None:
    model = _model(name)
    items = torch.randint(0, K, (3, L), generator=torch.Generator().manual_seed(0))
    rows = evaluate(model, items, EvalOptions(passes=1, exact_items=1, budgets=(4,)))
    methods = [r.method for r in rows]
    assert methods[0] == "bound"
    if name == "d3pm":
        assert methods[1:] == ["d3pm"] * 5
    else:
        assert methods[1:] == ["exact", "dp", "naive"]
        assert rows[2].calls <= 4
    assert evaluate(model, items, passes=1, exact_items=1, budgets=(4,), naive=False)[0].items == 3


def test_build_model_takes_the_typed_config() -> None:
    for overrides in (
        [],
        ["model.process='upscale'", "model.branching=16"],
        ["model.process='d3pm'"],
    ):
        cfg = load_config("mnist-tiny", overrides)
        model = build_model(cfg)
        assert model.cfg is cfg and model.config == to_dict(cfg)
    assert isinstance(model.head, CategoricalHead)


def _legacy_fingerprint(
    model: Process, head: bytes, config: dict[str, Any], L_bytes: bytes
) -> bytes:
    """The fingerprint as each process wrote it before the shared :meth:`Process.fingerprint`."""
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(head)
    h.update(str(model.order_seed).encode())
    h.update(L_bytes)
    for name, tensor in sorted(model.net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.digest()


def test_fingerprints_keep_every_process_bytes() -> None:
    for overrides in (
        [],
        ["model.process='upscale'", "model.branching=16"],
        ["model.process='d3pm'", "model.d3pm_steps=20"],
    ):
        model = build_model(load_config("mnist-tiny", overrides))
        model.tracker.set_all(np.linspace(1.0, 2.0, model.tracker.D))
        # the config as it was before model.context and the later train settings
        before = {k: v for k, v in model.config["model"].items() if k != "context"}
        later = ("cooldown", "policy_budget", "spread_order", "init")
        train = {k: v for k, v in model.config["train"].items() if k not in later}
        legacy = {**model.config, "model": before, "train": train}
        if isinstance(model, UpscaleARDM):
            tag = f"upscale b={model.b} S={model.S} data".encode()
            want = _legacy_fingerprint(model, tag, legacy, model.stage_L().tobytes())
        elif isinstance(model, D3PMAbsorbing):
            tag = f"d3pm-absorbing T={model.T}".encode()
            want = _legacy_fingerprint(model, tag, legacy, model.tracker.sorted_L().tobytes())
        else:
            config = stable_config(legacy)
            want = _legacy_fingerprint(model, b"", config, model.tracker.sorted_L().tobytes())
        assert model.fingerprint() == want


def test_mixture_is_an_ardm_with_a_mixture_head() -> None:
    model = _model("dmol")
    assert type(model.head) is MixtureHead and model.head.out_classes == 9
    assert model.kind == "audio" and model.mixtures == 3


@pytest.mark.parametrize(
    "path",
    ["generation.py", "evaluation.py", "cli/commands.py", "coding/codec.py", "coding/stages.py"],
)
def test_no_caller_asks_for_the_model_class(path: str) -> None:
    """The callers import no process class and test none with ``isinstance``."""
    tree = ast.parse((SRC / path).read_text())
    classes = {"ARDM", "UpscaleARDM", "D3PMAbsorbing", "DMoLARDM"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert not node.module.startswith(
                ("ardm.models.ardm", "ardm.models.upscale", "ardm.models.d3pm", "ardm.models.dmol")
            ), f"{path} imports {node.module}"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            assert not names & classes, f"{path}: isinstance on {names & classes}"
    source = (SRC / path).read_text()
    assert "_is_mixture" not in source and "_codes_byte_pairs" not in source
