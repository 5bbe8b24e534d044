"""``build_model``: the untrained model for a config (network, process and data from it)."""

from __future__ import annotations

from typing import Any

from ardm.errors import ConfigError
from ardm.models.ardm import ARDM


def build_model(cfg: Any) -> Any:
    """An untrained model for a :class:`ardm.config.Config` (network, process and data from it).

    ``model.process`` picks the class: :class:`ARDM` (or its discretised-logistic variant for
    ``model.output = "dmol"``), :class:`ardm.upscale_model.UpscaleARDM` or
    :class:`ardm.d3pm.D3PMAbsorbing`; all share the training interface (``loss``,
    ``bound_bpd``, ``estimate_L``, ``tracker``, ``with_net``, ``fingerprint``).
    """
    from ardm.config import to_dict
    from ardm.core.upscale import num_stages
    from ardm.data import dataset_spec
    from ardm.nets.build import build_net

    mc = cfg.model
    if mc.output != "categorical" and mc.process != "oa":  # checked here: overrides come one by one
        raise ConfigError(
            f"model.output={mc.output!r} is only for model.process='oa'; "
            f"set model.output='categorical' for process {mc.process!r}"
        )
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    stages, out_classes = 1, spec.K
    if mc.process == "upscale":
        stages = num_stages(spec.K, mc.branching)
        if mc.parametrisation == "direct":
            out_classes = stages * mc.branching
    elif mc.output == "dmol":
        out_classes = 3 * mc.mixtures
    net = build_net(
        mc.net,
        K=spec.K,
        shape=spec.shape,
        transformer=mc.transformer,
        unet=mc.unet,
        wavenet=mc.wavenet,
        stages=stages,
        out_classes=out_classes,
    )
    model: Any
    if mc.process == "upscale":
        from ardm.models.upscale import UpscaleARDM

        model = UpscaleARDM(
            net,
            kind=spec.kind,
            K=spec.K,
            branching=mc.branching,
            parametrisation=mc.parametrisation,
            ce_weight=mc.ce_weight,
        )
    elif mc.process == "d3pm":
        from ardm.models.d3pm import D3PMAbsorbing

        model = D3PMAbsorbing(net, kind=spec.kind, steps=mc.d3pm_steps, ce_weight=mc.ce_weight)
    elif mc.output == "dmol":
        from ardm.models.dmol import DMoLARDM

        model = DMoLARDM(net, kind=spec.kind, ce_weight=mc.ce_weight, mixtures=mc.mixtures)
    else:
        model = ARDM(net, kind=spec.kind, ce_weight=mc.ce_weight)
    model.config = to_dict(cfg)
    return model
