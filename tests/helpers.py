"""Helpers the tests share: a model with real BatchNorm statistics, small dataset folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def warm_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Give BatchNorm non-trivial running statistics (three training-mode batches at the
    model's own size), so BN folding in quantization and every exporter is really exercised.
    Returns the model in eval mode."""
    size = model.config.size
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, size, size))
    return model.eval()


def write_disc_folder(root: Path, count: int, size: int = 64, seed: int = 0) -> Path:
    """A folder in the on-disk layout: noisy backgrounds with a skin-toned disc (alpha 1)
    partly covered by a darker bar (alpha 0), soft edges from a small blur."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "alphas").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        alpha = np.zeros((size, size), np.float32)
        c = rng.integers(size // 3, 2 * size // 3, 2)
        cv2.circle(alpha, (int(c[0]), int(c[1])), int(rng.integers(size // 6, size // 3)), 1.0, -1)
        alpha = cv2.GaussianBlur(alpha, (5, 5), 1.0)
        tone = np.array([120, 160, 210]) * rng.uniform(0.5, 1.1)
        img = (img * (1 - alpha[..., None]) + tone * alpha[..., None]).astype(np.uint8)
        y0 = int(rng.integers(0, size - 8))
        img[y0:y0 + 6] = (40, 40, 40)
        alpha[y0:y0 + 6] = 0.0
        cv2.imwrite(str(root / "images" / f"s{i:03d}.png"), img)
        cv2.imwrite(str(root / "alphas" / f"s{i:03d}.png"), np.round(alpha * 255).astype(np.uint8))
    return root
