"""``build_model``: the untrained model for a config (network, process and data from it)."""

from __future__ import annotations

from ardm.config import Config
from ardm.data import dataset_spec
from ardm.errors import ConfigError
from ardm.models.ardm import ARDM
from ardm.models.d3pm import D3PMAbsorbing
from ardm.models.process import Process
from ardm.models.upscale import UpscaleARDM
from ardm.nets.build import build_net

PROCESSES: dict[str, type[ARDM] | type[D3PMAbsorbing]] = {
    "oa": ARDM,
    "upscale": UpscaleARDM,
    "d3pm": D3PMAbsorbing,
}
"""``model.process`` -> the class whose ``from_config`` builds it."""


def build_model(cfg: Config) -> Process:
    """An untrained model for a :class:`ardm.config.Config` (network, process and data from it).

    ``model.process`` picks the process (:data:`PROCESSES`), whose head for the config
    (``config_head``: a softmax, a discretised logistic mixture or upscale digits) sets the
    network's outputs; every process has the same interface
    (:class:`ardm.models.process.Process`).
    """
    mc = cfg.model
    if mc.output != "categorical" and mc.process != "oa":  # checked here: overrides come one by one
        raise ConfigError(
            f"model.output={mc.output!r} is only for model.process='oa'; "
            f"set model.output='categorical' for process {mc.process!r}"
        )
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    process = PROCESSES[mc.process]
    head = process.config_head(spec.K, mc)  # the net's outputs per variable and its stages
    net = build_net(
        mc.net,
        K=spec.K,
        shape=spec.shape,
        transformer=mc.transformer,
        unet=mc.unet,
        wavenet=mc.wavenet,
        stages=head.S,
        out_classes=head.out_classes,
    )
    return process.from_config(net, cfg, kind=spec.kind)
