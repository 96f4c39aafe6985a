"""Export-only rewrites, as thin wrappers around the unchanged model (style rule 5)."""

from __future__ import annotations

import torch
from torch import nn


class NHWC(nn.Module):
    """Takes ``1 x S x S x 3`` and returns ``1 x S x S x 1``: the layout TFLite and
    Android camera buffers use, so the runtime needs no TRANSPOSE at the edges of the app."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        alpha = self.model(image.permute(0, 3, 1, 2))  # N x 1 x S x S
        return alpha.permute(0, 2, 3, 1)


class Scale255(nn.Module):
    """Takes pixel values 0-255 (a Core ML image input) and feeds the model [0, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image * (1.0 / 255.0))
