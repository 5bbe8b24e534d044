"""Frozen integer layers: a conv or linear with its bias and output rescale, and the range
record (calibration) that fixes every activation's scale."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ardm.portable.ops import ExactConv, limbs
from ardm.portable.quant import NARROW, WIDE, Rescale, quantize_values, quantize_weight


def narrow_scale(amax: float) -> float:
    """The scale of an 8-bit tensor whose calibrated magnitude is ``amax``."""
    return amax / NARROW if amax > 0 else 1.0


def wide_scale(amax: float) -> float:
    """The scale of a wide (14-bit) tensor whose calibrated magnitude is ``amax``."""
    return amax / WIDE if amax > 0 else 1.0


@dataclass(frozen=True)
class IntLayer:
    """``clamp(rescale(conv(a) + bias), out_bound)``: an integer conv2d, or a linear layer on
    ``(B, I, 1, 1)``; ``bias`` ``(1, O, 1, 1)`` is in accumulator units. Inputs and outputs
    are float32 tensors holding integers; the accumulator and rescale run exactly in float64."""

    conv: ExactConv
    bias: torch.Tensor
    rescale: Rescale
    out_bound: int

    def __call__(self, a: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """The layer on ``a``; ``add`` (integers in output units, broadcasting) is added
        before the clamp (``floor(v) + add = floor(v + add)`` for integers)."""
        offset, scales = self._epilogue
        y = offset if add is None else offset + add.to(torch.float64)
        for (term, _), scale in zip(self.conv.terms(a), scales, strict=True):
            y = torch.addcmul(y, term, scale)  # (B, O, H', W') float64, exact
        return y.floor_().clamp_(-self.out_bound, self.out_bound).to(torch.float32)

    @functools.cached_property
    def _epilogue(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``floor((acc + bias) M / 2^s + 1/2)`` as ``floor(sum_j y_j scale_j + offset)`` with
        ``scale_j = M 2^(shift_j - s)`` and ``offset = (bias M + 2^(s-1)) 2^-s``: every product
        and partial sum is a multiple of ``2^-s`` below ``2^(53 - s)``, so exact."""
        m, s = self.rescale.multiplier.to(torch.float64), self.rescale.shift
        offset = (self.bias * m + float(1 << (s - 1))) * 2.0**-s  # (1, O, 1, 1)
        shifts = [shift for _, _, shift in limbs(torch.zeros(1), self.conv.a_bound)]
        return offset, [m * 2.0 ** (shift - s) for shift in shifts]

    @classmethod
    def freeze(
        cls,
        module: nn.Conv2d | nn.Linear,
        *,
        in_scale: float,
        in_bound: int,
        out_scale: float | torch.Tensor,
        out_bound: int,
        w_bits: int = 8,
    ) -> IntLayer:
        """The integer form of ``module`` from inputs of ``in_scale`` to outputs of ``out_scale``
        (one value, or one per output channel)."""
        w = module.weight.detach()
        stride, padding = 1, 0
        if isinstance(module, nn.Conv2d):
            stride, padding = int(module.stride[0]), int(module.padding[0])  # type: ignore[arg-type]
        else:
            w = w[:, :, None, None]  # (O, I, 1, 1)
        q, s_w = quantize_weight(w, bits=w_bits)  # (O, I, kh, kw), (O,)
        acc_scale = in_scale * s_w  # (O,)
        bias = module.bias if module.bias is not None else torch.zeros(w.shape[0])
        b = quantize_values(bias, acc_scale)  # (O,)
        w_bound = (1 << (w_bits - 1)) - 1
        conv = ExactConv(q.to(torch.float32), w_bound, in_bound, stride, padding)
        ratio = acc_scale / torch.as_tensor(out_scale, dtype=torch.float64)  # (O,)
        bound = conv.acc_bound + int(b.abs().max())
        rescale = Rescale.from_ratio(ratio, in_bound=bound, shape=(1, -1, 1, 1), float64=True)
        return cls(conv, b.view(1, -1, 1, 1).to(torch.float64), rescale, out_bound)


class Ranges:
    """Calibrated magnitudes of a float network's activations, per module.

    ``ranges[name + "<"]`` is the largest ``|input|`` seen by module ``name`` (its first
    argument), ``ranges[name + ">"]`` the largest ``|output|``, and ``channels(name)`` the
    largest ``|output|`` per channel (axis 1).
    """

    def __init__(self) -> None:
        self.amax: dict[str, float] = {}
        self.per_channel: dict[str, torch.Tensor] = {}

    def __getitem__(self, key: str) -> float:
        return self.amax[key]

    def channels(self, name: str) -> torch.Tensor:
        """Per-channel output magnitudes ``(O,)`` of module ``name``."""
        return self.per_channel[name]

    def _note(self, key: str, value: torch.Tensor) -> None:
        self.amax[key] = max(self.amax.get(key, 0.0), float(value.detach().abs().max()))

    def _note_channels(self, name: str, out: torch.Tensor) -> None:
        dims = [d for d in range(out.dim()) if d != 1]
        c = out.detach().abs().amax(dim=dims).double()  # (O,)
        old = self.per_channel.get(name)
        self.per_channel[name] = c if old is None else torch.maximum(old, c)

    @contextmanager
    def recording(self, net: nn.Module) -> Iterator[None]:
        """Record the ranges of every named submodule of ``net`` while inside."""
        handles = []
        for name, module in net.named_modules():
            if name:
                handles.append(module.register_forward_pre_hook(self._pre(name)))
                handles.append(module.register_forward_hook(self._post(name)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[object, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
                self._note(name + "<", args[0])

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: tuple[object, ...], out: object) -> None:
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                self._note(name + ">", out)
                if out.dim() >= 2:
                    self._note_channels(name, out)

        return hook
