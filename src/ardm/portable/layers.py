"""Frozen integer layers: a conv or linear with its bias and output rescale, and the range
record (calibration) that fixes every activation's scale."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ardm.portable.ops import EXACT_LIMIT, ExactConv
from ardm.portable.quant import NARROW, WIDE, Rescale, quantize_values, quantize_weight


def narrow_scale(amax: float) -> float:
    """The scale of an 8-bit tensor whose calibrated magnitude is ``amax``."""
    return amax / NARROW if amax > 0 else 1.0


def wide_scale(amax: float) -> float:
    """The scale of a wide (14-bit) tensor whose calibrated magnitude is ``amax``."""
    return amax / WIDE if amax > 0 else 1.0


def _per_channel(c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A per-output-channel constant ``(1, O, 1, 1)`` viewed to broadcast against ``y (B, O,
    ...)``."""
    return c if c.dim() == y.dim() else c.view((1, -1) + (1,) * (y.dim() - 2))


@dataclass(frozen=True)
class IntLayer:
    """``clamp(rescale(conv(a) + bias), out_bound)``: an integer conv2d, or a linear layer on
    ``(B, I, 1, 1)``; ``bias`` ``(1, O, 1, 1)`` is in accumulator units. Inputs and outputs
    are float32 tensors holding integers; the accumulator and rescale run exactly in float64."""

    conv: ExactConv
    bias: torch.Tensor
    rescale: Rescale
    out_bound: int

    def __call__(
        self, a: torch.Tensor, add: torch.Tensor | None = None, *, up2: bool = False
    ) -> torch.Tensor:
        """The layer on ``a``; ``add`` (integers in output units, broadcasting) is added
        before the clamp (``floor(v) + add = floor(v + add)`` for integers). ``up2``: on ``a``
        upsampled x2 by nearest neighbour (:meth:`ExactConv.up2_terms`, the same integers)."""
        terms = self.conv.up2_terms(a) if up2 else self.conv.terms(a)
        return self.finish(terms, add)

    def at(self, a: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The layer's output ``(B, O, m)`` at the output pixels ``pixels`` ``(m,)`` (flat ``y W'
        + x``) only (:meth:`ExactConv.terms_at`): the same integers as the whole output there."""
        return self.finish(self.conv.terms_at(a, pixels), None)

    def finish(
        self, terms: list[tuple[torch.Tensor, int]], add: torch.Tensor | None
    ) -> torch.Tensor:
        """The layer's epilogue on its accumulator ``sum_j y_j 2^shift_j`` given as ``terms``
        ``[(y_j (B, O, ...), shift_j)]`` (exact float32 or float64 integers): the rescale, the
        bias, ``add`` and the clamp, as float32 integers."""
        fast = self._float32_epilogue
        if fast is not None and len(terms) == 1 and terms[0][0].dtype == torch.float32:
            # (acc + bias + 2^(k-1)) 2^-k = acc 2^-k + (bias + 2^(k-1)) 2^-k: each term and
            # the sum exact (below 2^24 before the power of two), in place on the fresh product
            y = terms[0][0]  # (B, O, ...) float32
            scaled_offset, power = (_per_channel(c, y) for c in fast)
            y = torch.addcmul(scaled_offset, y, power, out=y).floor_()
            y = y if add is None else y.add_(add)
            return y.clamp_(-self.out_bound, self.out_bound)
        y = self._sum_terms(terms, add).floor_()  # (B, O, ...) float64 integers
        if self.out_bound < EXACT_LIMIT:
            # to float32 before the clamp: a value beyond 2^24 that rounds stays beyond the
            # bound (rounding is monotonic), so the clamp gives the same integers
            return y.to(torch.float32).clamp_(-self.out_bound, self.out_bound)
        return y.clamp_(-self.out_bound, self.out_bound).to(torch.float32)

    def unrounded(self, a: torch.Tensor) -> torch.Tensor:
        """``(conv(a) + bias) M 2^-s + 1/2`` float64 (exact): the output before its floor and
        clamp, for a caller that fuses them with what follows."""
        return self._sum_terms(self.conv.terms(a), None)

    def _sum_terms(
        self, terms: list[tuple[torch.Tensor, int]], add: torch.Tensor | None
    ) -> torch.Tensor:
        """``offset (+ add) + sum_j y_j scale 2^shift_j`` in float64, exact (:attr:`_epilogue`)."""
        offset, scale = (_per_channel(c, terms[0][0]) for c in self._epilogue)
        start = offset if add is None else offset + add.to(torch.float64)
        y: torch.Tensor | None = None
        for term, shift in terms:  # one fresh float64 tensor, the later terms added in place
            factor = scale if shift == 0 else scale * 2.0**shift
            if y is None or y.shape != term.shape:
                y = torch.addcmul(start if y is None else y, term, factor)  # exact
            else:
                y.addcmul_(term, factor)  # (B, O, ...) float64, exact
        assert y is not None
        return y

    def unrounded_acc(self, acc: torch.Tensor) -> torch.Tensor:
        """:meth:`unrounded` from the accumulator ``acc`` (float64 integers, overwritten)."""
        offset, scale = self._epilogue
        return torch.addcmul(offset, acc, scale, out=acc)

    def rows(self, start: int, stop: int) -> IntLayer:
        """This layer with only the output channels ``[start, stop)`` (the same integers on
        those channels: each output channel is its own weights, bias and rescale)."""
        m = self.rescale.multiplier
        if m.numel() > 1:
            m = m[:, start:stop]  # (1, O', 1, 1)
        conv = dataclasses.replace(self.conv, weight=self.conv.weight[start:stop])
        rescale = dataclasses.replace(self.rescale, multiplier=m)
        return IntLayer(conv, self.bias[:, start:stop], rescale, self.out_bound)

    @functools.cached_property
    def _float32_epilogue(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Where every multiplier is ``2^(shift - k)`` (weights frozen with ``pow2``) and
        ``acc + bias + 2^(k-1)`` stays below ``2^24``: ``((bias + 2^(k-1)) 2^-k, 2^-k)`` in
        float32, with which the rescale is one exact float32 multiply-add and a floor; else
        None."""
        m, s = self.rescale.multiplier.reshape(-1), self.rescale.shift
        if bool((m <= 0).any()) or bool((m & (m - 1)).any()) or self.conv.a_bound > 256:
            return None
        k = s - torch.log2(m.to(torch.float64)).round().to(torch.int64)  # (O,)
        if bool((k < 1).any()):
            return None
        offset = self.bias.reshape(-1).to(torch.int64) + (1 << (k - 1))  # (O,)
        if self.conv.acc_bound + int(offset.abs().max()) >= 1 << 24:
            return None
        shape = (1, -1, 1, 1)
        power = 2.0 ** -k.to(torch.float64)  # (O,) exact
        return (offset * power).float().view(shape), power.float().view(shape)

    @functools.cached_property
    def _epilogue(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``floor((acc + bias) M / 2^s + 1/2)`` as ``floor(sum_j y_j scale 2^shift_j +
        offset)`` for the terms ``(y_j, shift_j)`` of the accumulator, with ``scale = M 2^-s``
        and ``offset = (bias M + 2^(s-1)) 2^-s``: every product and partial sum is a multiple
        of ``2^-s`` below ``2^(53 - s)``, so exact."""
        m, s = self.rescale.multiplier.to(torch.float64), self.rescale.shift
        offset = (self.bias * m + float(1 << (s - 1))) * 2.0**-s  # (1, O, 1, 1)
        return offset, m * 2.0**-s

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
        pow2: bool = False,
    ) -> IntLayer:
        """The integer form of ``module`` from inputs of ``in_scale`` to outputs of ``out_scale``
        (one value, or one per output channel).

        ``pow2``: give each output channel the weight scale that makes its rescale a power of
        two, ``2^-k`` (the channel's weights then span 64..127 rather than 127: about half a
        bit less precise), which allows the exact float32 epilogue.
        """
        w = module.weight.detach()
        stride, padding = 1, 0
        if isinstance(module, nn.Conv2d):
            stride, padding = int(module.stride[0]), int(module.padding[0])  # type: ignore[arg-type]
        else:
            w = w[:, :, None, None]  # (O, I, 1, 1)
        q, s_w = quantize_weight(w, bits=w_bits)  # (O, I, kh, kw), (O,)
        if pow2:
            q, s_w = _pow2_weights(w, s_w, in_scale=in_scale, out_scale=out_scale, bits=w_bits)
        acc_scale = in_scale * s_w  # (O,)
        bias = module.bias if module.bias is not None else torch.zeros(w.shape[0])
        b = quantize_values(bias, acc_scale)  # (O,)
        w_bound = (1 << (w_bits - 1)) - 1
        conv = ExactConv(q.to(torch.float32), w_bound, in_bound, stride, padding)
        ratio = acc_scale / torch.as_tensor(out_scale, dtype=torch.float64)  # (O,)
        bound = conv.acc_bound + int(b.abs().max())
        rescale = Rescale.from_ratio(ratio, in_bound=bound, shape=(1, -1, 1, 1), float64=True)
        return cls(conv, b.view(1, -1, 1, 1).to(torch.float64), rescale, out_bound)


def _pow2_weights(
    w: torch.Tensor,
    s_w: torch.Tensor,
    *,
    in_scale: float,
    out_scale: float | torch.Tensor,
    bits: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(O, ...)`` quantised with scales ``s_w' >= s_w`` such that ``in_scale s_w' /
    out_scale = 2^-k``, ``k >= 1`` (the plain ``(q, s_w)`` where some channel needs ``k < 1``)."""
    out = torch.as_tensor(out_scale, dtype=torch.float64).expand(w.shape[0])  # (O,)
    need = in_scale * s_w / out  # (O,) the smallest ratio without clipping
    k = torch.floor(-torch.log2(need)).clamp(max=60)  # (O,) 2^-k >= need
    if bool((k < 1).any()):
        return quantize_weight(w, bits=bits)
    scale = 2.0**-k * out / in_scale  # (O,)
    top = (1 << (bits - 1)) - 1
    shape = (-1,) + (1,) * (w.dim() - 1)
    q = torch.round(w.detach().double().cpu() / scale.view(shape)).clamp(-top, top)
    return q.to(torch.int64), scale


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
