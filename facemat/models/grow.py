"""Grow a trained FaceMat net into a wider or deeper one that computes the same function.

A wider student learns more on unseen faces, but trained from random weights
it needs thousands of CPU steps to catch up with the student it replaces.
:func:`grow` starts it from that student instead (Net2Net-style, Chen et al.,
ICLR 2016, with zero fan-in instead of duplicated units):

* every weight of the small net is copied into the leading slice of the big
  net's tensor (its output channels first, then its input channels; the
  decoder's concatenations map each part to its own slice);
* the big net's new output channels keep their fresh random weights, so they
  compute new features from the start;
* the weights that carry those new channels into an old channel are zero, so
  at step 0 the old channels, and the output, are exactly the small net's;
  their gradients are not zero, so training starts using the new features at once;
* a new block at the end of a stage is a residual block whose last BatchNorm
  scale and shift are zero: an identity until trained.

Only :class:`~facemat.models.matting.MatteNetConfig` nets of one class and one
head grow; every width, depth and the expansion ratio must be at least the
small net's (``check_growable`` says which one is not).
"""

from __future__ import annotations

import torch
from torch import nn

from facemat.errors import ConfigError
from facemat.models.matting import MatteNetConfig, _MatteNet

__all__ = ["check_growable", "grow"]


def check_growable(small: MatteNetConfig, big: MatteNetConfig) -> None:
    """Raise ``ConfigError`` unless a net of config ``small`` can grow into config ``big``."""
    for name in ("head", "low_res", "size"):
        if getattr(small, name) != getattr(big, name):
            raise ConfigError(f"cannot grow: {name} differs ({getattr(small, name)!r} vs {getattr(big, name)!r})")
    for name in ("stem", "expand", "refine", "widths", "depths", "decoder"):
        a, b = getattr(small, name), getattr(big, name)
        pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
        if any(x > y for x, y in pairs):
            raise ConfigError(f"cannot grow: {name} {a} is larger than the target's {b}; "
                              "every width, depth and the expansion must be at least the initial net's")


def _input_parts(cfg: MatteNetConfig) -> dict[str, tuple[int, ...]]:
    """Convolutions whose input is a concatenation: module name -> the parts' channel counts."""
    skips = (cfg.widths[2], cfg.widths[1], cfg.widths[0], cfg.stem)
    cins = (cfg.widths[3],) + cfg.decoder[:3]
    parts = {f"decoder.ups.{i}.fuse.0": (cins[i], skips[i]) for i in range(4)}
    parts["refiner.fine.0.0"] = (cfg.decoder[-1], 3)
    return parts


def _input_index(small_parts: tuple[int, ...], big_parts: tuple[int, ...]) -> torch.Tensor:
    """Where each input channel of the small conv sits among the big conv's inputs."""
    index, offset = [], 0
    for s, b in zip(small_parts, big_parts):
        index.extend(range(offset, offset + s))
        offset += b
    return torch.tensor(index, dtype=torch.long)


@torch.no_grad()
def grow(small: _MatteNet, big: _MatteNet) -> _MatteNet:
    """Copy ``small``'s weights into ``big`` (in place) so that ``big`` computes ``small``'s outputs.

    Both are built by ``facemat.models.build_model``; ``big``'s config must be
    at least ``small``'s everywhere (:func:`check_growable`). Returns ``big``.

    Raises:
        ConfigError: different model classes or heads, or a dimension of
            ``big`` smaller than ``small``'s.
    """
    if type(small) is not type(big):
        raise ConfigError(f"cannot grow a {type(small).__name__} into a {type(big).__name__}")
    check_growable(small.config, big.config)
    small_mods = dict(small.named_modules())
    small_parts, big_parts = _input_parts(small.config), _input_parts(big.config)
    for name, mod in big.named_modules():
        old = small_mods.get(name)
        if isinstance(mod, nn.Conv2d) and isinstance(old, nn.Conv2d):
            _grow_conv(old, mod, small_parts.get(name), big_parts.get(name))
        elif isinstance(mod, nn.BatchNorm2d) and isinstance(old, nn.BatchNorm2d):
            n = old.num_features
            for t in ("weight", "bias", "running_mean", "running_var"):
                getattr(mod, t)[:n] = getattr(old, t)
            mod.num_batches_tracked.copy_(old.num_batches_tracked)
    # New residual blocks (a deeper stage) start as identities.
    for i, (a, b) in enumerate(zip(small.config.depths, big.config.depths)):
        for j in range(a, b):
            last_bn = big.encoder.stages[i][j].block[2][1]
            last_bn.weight.zero_()
            last_bn.bias.zero_()
    return big


def _grow_conv(old: nn.Conv2d, new: nn.Conv2d, old_parts: tuple[int, ...] | None,
               new_parts: tuple[int, ...] | None) -> None:
    """Copy one convolution (see :func:`grow`); ``*_parts``: its concatenated inputs, if any."""
    w_old, w_new = old.weight, new.weight
    out_old = w_old.shape[0]
    if old.groups > 1:  # depthwise: one input channel per output channel
        if old.groups != old.in_channels or new.groups != new.in_channels:
            raise ConfigError("cannot grow a grouped convolution that is not depthwise")
        w_new[:out_old] = w_old
    else:
        cols = _input_index(old_parts, new_parts) if old_parts else torch.arange(w_old.shape[1])
        w_new[:out_old] = 0.0  # new inputs do not reach an old output at step 0
        w_new[:out_old, cols] = w_old
    if old.bias is not None:
        new.bias[:out_old] = old.bias
