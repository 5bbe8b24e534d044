"""A resumable, infinite sampler of random training batches.

Randomness never lives in a long-running generator whose state must be saved: the order of
epoch ``e`` comes from a generator seeded by ``(seed, e)``, and the crops / augmentation of
batch ``i`` from one seeded by ``(seed, i)``. The state is therefore three integers
(epoch, position in it, batches drawn), and restoring it continues the exact same sequence.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from ardm.data.registry import DataSpec
from ardm.errors import DataError

_EPOCH_STREAM = 0  # generator streams: permutation of an epoch ...
_BATCH_STREAM = 1  # ... and the crops / augmentation of one batch


def seeded_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """A CPU generator determined by ``(seed, stream, index)``, well mixed by SeedSequence."""
    entropy = [seed % 2**64, stream, index]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) & (2**63 - 1))


@functools.lru_cache(maxsize=8)
def _dihedral_maps(H: int, W: int, *, rotate: bool) -> torch.Tensor:
    """Source-pixel index maps ``(M, H*W)``: [identity, flip] x (rotations by k*90 deg, k=0..3
    if ``rotate``); output pixel ``p`` of transform ``m`` reads input pixel ``maps[m, p]``."""
    grid = torch.arange(H * W).view(H, W)  # (H, W)
    maps = []
    for flipped in (grid, grid.flip(-1)):
        for k in range(4 if rotate else 1):
            maps.append(torch.rot90(flipped, k, dims=(0, 1)).reshape(-1))  # (H*W,)
    return torch.stack(maps)  # (M, H*W)


def augment_images(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (p = 1/2) and, for square images, a random rotation by k*90
    degrees, k ~ U{0..3}, independently per image: one gather for the whole batch."""
    B, C, H, W = x.shape
    flip = torch.randint(0, 2, (B,), generator=generator)  # (B,)
    k = torch.randint(0, 4, (B,), generator=generator)  # (B,)
    rotate = H == W
    maps = _dihedral_maps(H, W, rotate=rotate)  # (M, H*W)
    choice = flip * 4 + k if rotate else flip  # (B,)
    index = maps[choice].unsqueeze(1).expand(B, C, H * W)  # (B, C, H*W)
    return x.reshape(B, C, H * W).gather(2, index).view(B, C, H, W)


class BatchSampler:
    """Infinite iterator of ``int64`` batches ``(batch_size, *spec.shape)``.

    - Images ``(N, C, H, W)``: epochs of random permutations, reshuffled every epoch; a batch
      that crosses an epoch boundary is completed from the next epoch (every example is seen
      once per epoch). ``augment=True`` applies :func:`augment_images`.
    - Audio ``(N, L)`` fixed-length clips: epochs exactly as images, never augmented.
    - Text (a 1-D stream): each row is a random crop of ``spec.shape[0]`` consecutive tokens.

    ``state_dict()`` / ``load_state_dict()`` save and restore the position exactly.
    """

    def __init__(
        self,
        data: torch.Tensor,
        spec: DataSpec,
        batch_size: int,
        *,
        seed: int,
        augment: bool = False,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1; got {batch_size}")
        if spec.kind in ("image", "audio"):
            what = "images" if spec.kind == "image" else "clips"
            if data.dim() != 1 + len(spec.shape) or tuple(data.shape[1:]) != spec.shape:
                raise DataError(
                    f"{spec.name}: expected {what} (N, *{spec.shape}); got {tuple(data.shape)}"
                )
            if data.shape[0] == 0:
                raise DataError(f"{spec.name}: no {what} to sample from")
            if augment and spec.kind != "image":
                raise DataError(f"{spec.name}: augmentation is defined for images only")
        else:
            if data.dim() != 1:
                raise DataError(f"{spec.name}: a text stream must be 1-D; got {tuple(data.shape)}")
            if data.numel() < spec.shape[0]:
                raise DataError(
                    f"{spec.name}: stream of {data.numel()} tokens is shorter than "
                    f"seq_len={spec.shape[0]}"
                )
            if augment:
                raise DataError(f"{spec.name}: augmentation is defined for images only")
        self.data = data
        self.spec = spec
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # images, audio: current epoch
        self.position = 0  # images, audio: examples of the current epoch already drawn
        self.step = 0  # batches drawn so far
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.int64)

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> torch.Tensor:
        g = seeded_generator(self.seed, _BATCH_STREAM, self.step)
        if self.spec.kind in ("image", "audio"):
            x = self.data[self._next_indices()]  # (B, C, H, W) or (B, L)
            if self.augment:
                x = augment_images(x, generator=g)  # cheaper on uint8 than on int64
            x = x.long()
        else:
            T = self.spec.shape[0]
            starts = torch.randint(0, self.data.numel() - T + 1, (self.batch_size,), generator=g)
            x = self.data[starts[:, None] + torch.arange(T)].long()  # (B, T)
        self.step += 1
        return x

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            g = seeded_generator(self.seed, _EPOCH_STREAM, epoch)
            self._perm = torch.randperm(self.data.shape[0], generator=g)  # (N,)
            self._perm_epoch = epoch
        return self._perm

    def _next_indices(self) -> torch.Tensor:
        N, parts, need = self.data.shape[0], [], self.batch_size
        while need > 0:
            take = self._permutation(self.epoch)[self.position : self.position + need]
            parts.append(take)
            need -= take.numel()
            self.position += take.numel()
            if self.position == N:
                self.epoch, self.position = self.epoch + 1, 0
        return torch.cat(parts)  # (B,)

    def state_dict(self) -> dict[str, Any]:
        """The position in the batch sequence: plain ints, strings and lists (no data)."""
        return {
            "kind": self.spec.kind,
            "shape": list(self.spec.shape),
            "num_items": int(self.data.shape[0]),
            "batch_size": self.batch_size,
            "augment": self.augment,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the sampler that produced ``state`` stopped.

        The data, shape, batch size and augmentation must be those of that sampler; its seed
        is adopted.
        """
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        if missing:
            raise DataError(f"sampler state lacks {', '.join(missing)}")
        for key in ("kind", "shape", "num_items", "batch_size", "augment"):
            got = list(state[key]) if key == "shape" else state[key]
            if got != mine[key]:
                raise DataError(
                    f"sampler state does not match: {key} is {state.get(key)!r} in the state, "
                    f"{mine[key]!r} here"
                )
        if not 0 <= int(state["position"]) < max(1, mine["num_items"]):
            raise DataError(f"sampler state has position {state['position']} out of range")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.step = int(state["step"])
        self._perm_epoch = -1
