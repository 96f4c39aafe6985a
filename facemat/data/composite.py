"""Layered alpha compositing shared by the generator and the real-data compositor.

Ground truth is the visible face-skin coverage after all occluders: the face's
own soft alpha times the product of ``(1 - alpha_k)`` over every occluder ``k``
in front. The image is composited with the same alphas, back to front, so image
and ground truth agree exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def composite_layers(
    base_rgb: np.ndarray,
    skin_alpha: np.ndarray,
    occluders: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Composite occluders over a face scene and compute the ground-truth alpha.

    Args:
        base_rgb: ``H x W x 3`` float32 RGB in [0, 1]: the face already over its
            background (a photo, or the generator's rendered head and scene).
        skin_alpha: ``H x W`` float32 in [0, 1]: face-skin coverage of ``base_rgb``
            (its own soft edge included).
        occluders: back-to-front list of ``(rgb H x W x 3, alpha H x W)`` float32
            layers in [0, 1], all in front of the face.

    Returns:
        ``(image, gt_alpha)``: ``H x W x 3`` float32 RGB and ``H x W`` float32
        visible face-skin alpha, both in [0, 1].
    """
    image = base_rgb.astype(np.float32, copy=True)
    gt = skin_alpha.astype(np.float32, copy=True)
    for rgb, alpha in occluders:
        a = alpha[..., None]
        image = rgb * a + image * (1.0 - a)
        gt = gt * (1.0 - alpha)
    return np.clip(image, 0.0, 1.0).astype(np.float32), np.clip(gt, 0.0, 1.0).astype(np.float32)
