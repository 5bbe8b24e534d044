"""The generative processes around a network: OA-ARDM, Upscale ARDM, D3PM-absorbing.

Every process has one interface (:class:`~ardm.models.process.Process`); ``build_model(cfg)``
picks the process from a config, ``ardm.load(name)`` gives a trained one.
"""

from ardm.models.ardm import ARDM
from ardm.models.build import build_model
from ardm.models.d3pm import D3PMAbsorbing
from ardm.models.process import Process
from ardm.models.upscale import UpscaleARDM

__all__ = ["ARDM", "D3PMAbsorbing", "Process", "UpscaleARDM", "build_model"]
