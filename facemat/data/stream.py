"""The training data stream: a deterministic map from step to batch, for every trainer.

Batch ``s`` on rank ``r`` holds the stream indices ``s*B*W + r*B + j`` (``B``
per-rank batch, ``W`` world size). The generator renders index ``g`` on
demand; a folder maps ``g`` to a per-epoch permutation and seeds its
augmentation by ``(seed, epoch, index)``. Resuming therefore only needs the
step counter to restore the data position. Used by ``training`` and ``quantize``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from facemat.errors import ConfigError

# Data made on the fly (see facemat.data.real.SOURCES): the procedural generator,
# real training faces with generated occluders, half of each, that mix with a tenth
# of face-free crops (alpha 0), or face-free crops alone.
GENERATED = ("synth", "real", "mix", "mix-empty", "empty")

# The generator is an endless stream; any index below this renders a new face.
SYNTH_STREAM_LENGTH = 2**31 - 1


class StreamDataset(torch.utils.data.Dataset):
    """Maps a global stream index to a sample of the underlying dataset.

    For the generator the stream index is the sample index; when ``crop`` is
    smaller than the rendered size, a random ``crop x crop`` window (seeded by
    ``(seed, g)``) is cut out, so the net trains cheaply at the pixel scale it
    will run at. For a folder of ``N`` training items, index ``g`` is item
    ``perm_e[g % N]`` of epoch ``e = g // N``, with a per-epoch permutation
    seeded by ``(seed, e)`` (the folder loader does its own scale-and-crop).
    """

    def __init__(self, base: torch.utils.data.Dataset, indices: list[int] | None, seed: int, crop: int | None = None):
        self.base = base
        self.indices = indices  # None: the generator, every index is valid
        self.seed = seed
        self.crop = crop

    def __len__(self) -> int:
        return SYNTH_STREAM_LENGTH

    def __getitem__(self, g: int) -> dict[str, Any]:
        if self.indices is None:
            item = self.base[g]
            h, w = item["image"].shape[-2:]
            if self.crop is None or (h, w) == (self.crop, self.crop):
                return item
            rng = np.random.default_rng([self.seed, g, 1])
            y, x = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
            window = (slice(None), slice(y, y + self.crop), slice(x, x + self.crop))
            return {**item, "image": item["image"][window].contiguous(), "alpha": item["alpha"][window].contiguous()}
        n = len(self.indices)
        epoch, pos = divmod(g, n)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        self.base.set_epoch(epoch)  # this process's copy; read synchronously below
        return self.base[self.indices[perm[pos]]]


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields the index lists of steps ``start .. total-1`` for one rank."""

    def __init__(self, batch: int, world: int, rank: int, start: int, total: int):
        self.batch, self.world, self.rank, self.start, self.total = batch, world, rank, start, total

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self):
        for step in range(self.start, self.total):
            first = step * self.batch * self.world + self.rank * self.batch
            yield list(range(first, first + self.batch))


def build_datasets(
    data: str,
    size: int,
    seed: int,
    render_size: int = 256,
    val_data: str | None = None,
    val_count: int = 32,
) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, str]:
    """The training stream and the held-out validation set, plus a description.

    Args:
        data: one of :data:`GENERATED` (made on the fly) or a dataset folder.
        size: training crop size (the folder loader scales and crops to it).
        seed: seed of the render, the crops, the epoch permutations and augmentation.
        render_size: synth only: faces are rendered at this size, then cropped to ``size``.
        val_data: a validation folder, or None (synth ``val`` split, or the
            last samples of the ``data`` folder, held out).
        val_count: synth validation samples; at most this many held out of a folder.

    Raises:
        ConfigError: a folder too small to hold one sample out.
    """
    if data in GENERATED:
        from facemat.data.real import SourceDataset

        render = SourceDataset(data, SYNTH_STREAM_LENGTH, seed=seed, size=render_size, split="train")
        train = StreamDataset(render, None, seed, crop=size)
        val = SourceDataset(data, val_count, seed=seed, size=render_size, split="val")
        return train, val, (f"{data} (on the fly, {size}x{size} crops of {render_size}x{render_size} "
                            f"renders); val: {data} split 'val', {val_count} full {render_size}x{render_size} "
                            "samples")

    from facemat.data.folder import MattingFolder

    folder = MattingFolder(data, size=size, augment=True, seed=seed)
    if val_data is not None:
        val = MattingFolder(val_data, size=size)
        train_idx = list(range(len(folder)))
        where = f"{val_data} ({len(val)} samples)"
    else:
        n = len(folder)
        n_val = min(val_count, max(1, n // 10))
        if n - n_val < 1:
            raise ConfigError(f"--data: {data} holds {n} sample(s); need at least 2 to hold one out for validation")
        train_idx = list(range(n - n_val))
        val = torch.utils.data.Subset(MattingFolder(data, size=size), list(range(n - n_val, n)))
        where = f"last {n_val} samples of {data} (held out)"
    return StreamDataset(folder, train_idx, seed), val, f"{data} ({len(train_idx)} training samples); val: {where}"
