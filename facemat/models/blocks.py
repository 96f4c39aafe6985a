"""Building blocks made only of ops every mobile target lowers well.

Conv, depthwise conv, BatchNorm (folded at export), ReLU, add, concat and
bilinear resize with ``align_corners=False``. No hard-swish, no instance norm,
no ``align_corners=True``: those break or slow down Core ML / XNNPACK / LiteRT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling, ``N x C x H x W -> N x C x 2H x 2W``.

    A fixed ``scale_factor`` (not ``size=tensor.shape``) keeps the graph static
    for ``torch.jit.trace`` based converters as well as ``torch.export``.
    """
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution, BatchNorm and an optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (maybe strided), 1x1 project.

    The residual add is used when the block keeps shape.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            ConvBNReLU(cin, hidden, kernel=1),
            ConvBNReLU(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            ConvBNReLU(hidden, cout, kernel=1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class EncoderStage(nn.Sequential):
    """One resolution level: a strided block then ``depth - 1`` residual blocks."""

    def __init__(self, cin: int, cout: int, depth: int, expand: int):
        blocks = [InvertedResidual(cin, cout, stride=2, expand=expand)]
        blocks += [InvertedResidual(cout, cout, stride=1, expand=expand) for _ in range(depth - 1)]
        super().__init__(*blocks)


class UpStage(nn.Module):
    """Decoder step: upsample 2x, concat the skip, 1x1 fuse, 3x3 depthwise."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.fuse = ConvBNReLU(cin + cskip, cout, kernel=1)
        self.spatial = ConvBNReLU(cout, cout, kernel=3, groups=cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([upsample2x(x), skip], dim=1)
        return self.spatial(self.fuse(x))
