"""An OA-ARDM whose per-variable distribution is a discretised logistic mixture (audio).

The paper's OA-ARDM on 16-bit audio (Sec. 5.3) cannot afford a 65536-way softmax per sample;
the network instead outputs ``3M`` mixture parameters per variable (:mod:`ardm.core.dmol`).
That is :class:`ardm.models.ardm.ARDM` with a :class:`ardm.models.heads.MixtureHead`;
``DMoLARDM`` builds one and checks that the network has the outputs the mixture needs.
"""

from __future__ import annotations

from torch import nn

from ardm.config import Config
from ardm.models.ardm import ARDM
from ardm.models.heads import MAX_FULL_K, MixtureHead

__all__ = ["MAX_FULL_K", "DMoLARDM"]


class DMoLARDM(ARDM):
    """OA-ARDM with a ``mixtures``-component discretised logistic mixture per variable.

    ``net`` must have ``out_classes == 3 * mixtures`` (e.g. a
    :class:`~ardm.nets.wavenet.WaveNet` built with ``out_classes=3 * mixtures``).
    """

    head: MixtureHead

    def __init__(
        self,
        net: nn.Module,
        *,
        kind: str = "audio",
        mixtures: int = 30,
        ce_weight: float = 1e-4,
        order_seed: int = 0,
        config: Config | None = None,
    ) -> None:
        head = MixtureHead(int(net.K), mixtures)  # type: ignore[arg-type]
        out = getattr(net, "out_classes", None)
        if out != head.out_classes:
            raise ValueError(
                f"a {mixtures}-component DMoL needs a net with out_classes = 3 * {mixtures} = "
                f"{3 * mixtures}; this net has out_classes={out}"
            )
        super().__init__(
            net, kind=kind, head=head, ce_weight=ce_weight, order_seed=order_seed, config=config
        )

    @property
    def mixtures(self) -> int:
        return self.head.mixtures
