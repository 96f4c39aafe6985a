"""Run a float model on a batch of images: the FP32 reference every artifact is compared with."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def reference_outputs(model: nn.Module, images: np.ndarray) -> tuple[np.ndarray, str]:
    """The model's alpha for each image, on CUDA when available, else CPU.

    Args:
        model: a student (``forward(image) -> alpha``); it is returned to the CPU.
        images: ``N x 3 x S x S`` float32 RGB in [0, 1].

    Returns:
        ``(alphas N x S x S float32 in [0, 1], where)``; ``where`` names the
        device, e.g. ``"cpu"`` or ``"cuda (NVIDIA H100)"``.
    """
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = f"cuda ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else "cpu"
    m = model.to(dev).eval()
    outs = []
    with torch.no_grad():
        for x in images:
            outs.append(m(torch.from_numpy(x[None]).to(dev)).float().cpu().numpy()[0, 0])
    model.to("cpu")
    return np.stack(outs), where
