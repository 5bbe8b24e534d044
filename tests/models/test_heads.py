"""``model.output_bias = "marginal"``: training starts from the data's class/digit frequencies."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ardm.config import load_config
from ardm.core.upscale import digit
from ardm.errors import ConfigError
from ardm.models.ardm import ARDM
from ardm.models.dmol import DMoLARDM
from ardm.models.heads import log_frequencies
from ardm.models.upscale import UpscaleARDM
from ardm.nets.build import build_net
from ardm.nets.transformer import TransformerConfig
from ardm.nets.unet import UNetConfig
from ardm.nets.wavenet import WaveNet, WaveNetConfig
from ardm.training.pretrained import load_model
from ardm.training.train import train

WAVENET = WaveNetConfig(channels=8, blocks=2, dilation_cycle=2, value_emb_dim=4)


def test_log_frequencies_are_smoothed_log_probabilities() -> None:
    lf = log_frequencies(torch.tensor([0, 0, 0, 2]), 4)
    assert torch.allclose(lf.exp().sum(), torch.tensor(1.0))
    expected = torch.tensor([3.5, 0.5, 1.5, 0.5]) / 6.0
    assert torch.allclose(lf, expected.log())


@pytest.mark.parametrize("parametrisation", ["direct", "data"])
def test_upscale_wavenet_starts_at_the_marginal(parametrisation: str) -> None:
    K, b, L = 64, 4, 12
    torch.manual_seed(0)
    S = 3
    out = S * b if parametrisation == "direct" else K
    net = WaveNet(WAVENET, K=K, length=L, stages=S, out_classes=out)
    model = UpscaleARDM(net, kind="audio", K=K, branching=b, parametrisation=parametrisation)
    data = (torch.randn(50, L) * 6 + 32).round().clamp(0, K - 1).long()  # peaked around 32
    bias = model.marginal_logits(data)
    assert bias.shape == (out,)
    net.set_output_bias(bias)
    # conv_out's weights start at zero, so the net outputs exactly the bias everywhere: every
    # stage's digit distribution is the data's digit frequency (data parametrisation: the
    # value frequencies summed over the values that share the known coarser digits).
    x = data[:2]
    for s in range(S):
        stage = torch.full((2,), s)
        known = torch.zeros(2, L, dtype=torch.bool)
        lp = model._digit_log_probs(x, known, stage, torch.zeros(2, dtype=torch.long))
        if parametrisation == "direct":
            expected = log_frequencies(digit(data, s, b=b, S=S), b).log_softmax(-1)
            assert torch.allclose(lp, expected.expand_as(lp), atol=1e-5)
        assert torch.allclose(lp.exp().sum(-1), torch.ones(2, L), atol=1e-5)
    if parametrisation == "data":
        lp0 = model._digit_log_probs(x, known, torch.zeros(2, dtype=torch.long), known.sum(1))
        freq = log_frequencies(data, K).exp()  # (K,)
        top = freq.view(b, K // b).sum(1)  # the first digit is the top one: x // (K / b)
        assert torch.allclose(lp0[0, 0].exp(), top, atol=1e-5)


def test_ardm_unet_and_transformer_heads_get_the_bias() -> None:
    torch.manual_seed(0)
    unet = build_net(
        "unet",
        K=16,
        shape=(3, 8, 8),
        unet=UNetConfig(ch=8, ch_mult=(1,), num_res_blocks=1, groups=4),
    )
    model = ARDM(unet, kind="image")
    data = torch.randint(0, 4, (10, 3, 8, 8))  # only classes 0-3 occur
    bias = model.marginal_logits(data)
    unet.set_output_bias(bias)
    assert torch.equal(unet.conv_out.bias, bias.repeat(3))  # type: ignore[attr-defined]
    assert bias[:4].min() > bias[4:].max()
    tr = build_net("transformer", K=5, shape=(6,), transformer=TransformerConfig(dim=16, depth=1))
    tr.set_output_bias(torch.arange(5.0))  # type: ignore[operator]
    assert torch.equal(tr.head.bias, torch.arange(5.0))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="shape"):
        tr.set_output_bias(torch.zeros(4))  # type: ignore[operator]


def test_dmol_refuses_a_marginal_bias() -> None:
    net = WaveNet(WAVENET, K=256, length=8, out_classes=6)
    with pytest.raises(ConfigError, match="categorical"):
        DMoLARDM(net, mixtures=2).marginal_logits(torch.zeros(3, 8, dtype=torch.long))


def test_config_rejects_an_unknown_output_bias() -> None:
    with pytest.raises(ConfigError, match="output_bias"):
        load_config("mnist-tiny", ["model.output_bias='data'"])


def test_training_sets_the_marginal_bias_before_the_first_step(tmp_path: Path) -> None:
    cfg = load_config(
        "mnist-tiny",
        [
            "model.unet.ch=8",
            "model.unet.ch_mult=[1]",
            "model.unet.num_res_blocks=1",
            "model.unet.value_emb_dim=4",
            "model.unet.groups=4",
            "model.output_bias='marginal'",
            "train.batch_size=4",
            "train.eval_every=0",
            "train.calibrate_passes=0",
            "train.steps=1",
            "train.lr=1e-12",
        ],
    )
    train(cfg, tmp_path, progress=False)
    model = load_model(tmp_path)
    bias = model.net.conv_out.bias[:256].detach()
    # MNIST pixels are mostly 0: the marginal puts well over half of its mass there, where a
    # zero bias would give 1/256.
    assert bias.softmax(-1)[0] > 0.5
    assert math.isfinite(float(bias.min()))


@pytest.mark.parametrize("process", ["upscale", "oa-dmol", "oa"])
def test_output_bias_zero_stays_out_of_the_fingerprint(process: str) -> None:
    """Models saved before ``output_bias`` existed keep their fingerprint (their compressed
    files still decode); a model trained with a marginal bias gets another one."""
    from ardm.coding.fingerprint import stable_config

    model = {"net": "wavenet", "process": process.removesuffix("-dmol"), "output_bias": "zero"}
    if process == "oa-dmol":
        model["output"] = "dmol"
    config = {"model": model, "train": {"lr": 1e-3}}
    older = {"model": {k: v for k, v in model.items() if k != "output_bias"}, "train": {"lr": 1e-3}}
    assert stable_config(config) == stable_config(older)
    marginal = {"model": {**model, "output_bias": "marginal"}, "train": {"lr": 1e-3}}
    assert stable_config(marginal) != stable_config(older)


def test_a_cooldown_of_zero_stays_out_of_the_fingerprint() -> None:
    """``train.cooldown`` came after models shipped: at 0 it leaves their fingerprints alone."""
    from ardm.coding.fingerprint import raw_config, stable_config

    older = {"model": {"net": "unet"}, "train": {"lr": 1e-3}}
    zero = {"model": {"net": "unet"}, "train": {"lr": 1e-3, "cooldown": 0.0}}
    cooled = {"model": {"net": "unet"}, "train": {"lr": 1e-3, "cooldown": 0.3}}
    for stable in (stable_config, raw_config):
        assert stable(zero) == stable(older)
        assert stable(cooled) != stable(older)
