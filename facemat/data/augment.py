"""Train-time augmentation of image/alpha pairs, deterministic given an RNG.

Geometric operations (flip, scale-and-crop, resize) and blur are applied to the
image and the alpha alike, with the same parameters and interpolation, so the two
stay pixel-aligned. Blur is applied to both because a blurred capture (defocus,
motion) blurs the face's coverage too: the true matte of a blurred scene is soft
where the sharp one was hard. Photometric operations (colour jitter, noise, JPEG
re-encoding) change only the image: they do not move the face.

All functions take and return float32 arrays: images ``H x W x 3`` RGB in [0, 1],
alphas ``H x W`` in [0, 1]. Randomness comes only from the ``np.random.Generator``
passed in, so the same generator state gives the same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facemat.errors import ConfigError

__all__ = [
    "AugmentConfig",
    "GEOMETRIC_ONLY",
    "add_noise",
    "augment_pair",
    "color_jitter",
    "gaussian_blur",
    "hflip",
    "jpeg_reencode",
    "random_scale_crop",
    "resize_pair",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings. A probability of 0 switches an operation off.

    Attributes:
        flip_p: probability of a horizontal flip.
        scale: range of the zoom factor over the smallest scale that covers the
            crop (>= 1, so the crop never leaves the image and needs no padding).
        jitter_p: probability of colour jitter.
        brightness, contrast, saturation: maximum relative change (0.2 = +-20 %).
        hue: maximum hue shift as a fraction of the colour circle.
        blur_p: probability of a Gaussian blur of image and alpha.
        blur_sigma: range of the blur's standard deviation in pixels.
        noise_p: probability of additive Gaussian noise.
        noise_std: range of the noise's standard deviation (image units, [0, 1]).
        jpeg_p: probability of a JPEG re-encode.
        jpeg_quality: inclusive range of JPEG quality (1..100).
    """

    flip_p: float = 0.5
    scale: tuple[float, float] = (1.0, 1.4)
    jitter_p: float = 0.8
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.03
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.6)
    noise_p: float = 0.3
    noise_std: tuple[float, float] = (0.005, 0.03)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "blur_p", "noise_p", "jpeg_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment {name} must be a probability in [0, 1], got {value}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"augment {name} must be in [0, 1), got {value}")
        if not 0.0 <= self.hue <= 0.5:
            raise ConfigError(f"augment hue must be in [0, 0.5], got {self.hue}")
        lo, hi = self.scale
        if not 1.0 <= lo <= hi:
            raise ConfigError(f"augment scale must be a range (lo, hi) with 1 <= lo <= hi, got {self.scale}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ConfigError(f"augment blur_sigma must be a range with 0 < lo <= hi, got {self.blur_sigma}")
        lo, hi = self.noise_std
        if not 0.0 <= lo <= hi:
            raise ConfigError(f"augment noise_std must be a range with 0 <= lo <= hi, got {self.noise_std}")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ConfigError(
                f"augment jpeg_quality must be a range with 1 <= lo <= hi <= 100, got {self.jpeg_quality}"
            )


#: Flip and scale-and-crop only: no blur or photometric change. For tests and for
#: checking alignment.
GEOMETRIC_ONLY = AugmentConfig(jitter_p=0.0, blur_p=0.0, noise_p=0.0, jpeg_p=0.0)


def _resize(array: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize to ``hw`` = (H, W): area averaging when shrinking (no aliasing), else bilinear."""
    h, w = hw
    shrink = h < array.shape[0] or w < array.shape[1]
    return cv2.resize(array, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_pair(image: np.ndarray, alpha: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize image ``H x W x 3`` and alpha ``H x W`` to ``hw`` (aspect not kept), alike."""
    return _resize(image, hw), np.clip(_resize(alpha, hw), 0.0, 1.0)


def hflip(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and alpha left-right."""
    return image[:, ::-1].copy(), alpha[:, ::-1].copy()


def random_scale_crop(
    image: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    out_hw: tuple[int, int],
    scale: tuple[float, float] = (1.0, 1.4),
) -> tuple[np.ndarray, np.ndarray]:
    """Scale image and alpha by a random factor (aspect kept) and crop ``out_hw`` at random.

    The factor is ``uniform(scale) * s0`` where ``s0`` is the smallest factor at
    which the image covers ``out_hw``; the crop offset is uniform. Both arrays get
    the same resize and integer crop, so they stay aligned.

    Args:
        image: ``H x W x 3`` float32 RGB in [0, 1].
        alpha: ``H x W`` float32 in [0, 1].
        rng: source of randomness (two or three draws).
        out_hw: output (height, width).
        scale: zoom range, ``1 <= lo <= hi``.

    Returns:
        ``(image out_h x out_w x 3, alpha out_h x out_w)``, float32 in [0, 1].
    """
    out_h, out_w = out_hw
    h, w = alpha.shape
    factor = max(out_h / h, out_w / w) * float(rng.uniform(scale[0], scale[1]))
    # max() guards against rounding a covering size just below the crop.
    new_h, new_w = max(out_h, round(h * factor)), max(out_w, round(w * factor))
    if (new_h, new_w) != (h, w):
        image, alpha = resize_pair(image, alpha, (new_h, new_w))
    y0 = int(rng.integers(0, new_h - out_h + 1))
    x0 = int(rng.integers(0, new_w - out_w + 1))
    return image[y0 : y0 + out_h, x0 : x0 + out_w].copy(), alpha[y0 : y0 + out_h, x0 : x0 + out_w].copy()


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.03,
) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change of an RGB image.

    Args:
        image: ``H x W x 3`` float32 RGB in [0, 1].
        rng: source of randomness (four draws).
        brightness, contrast, saturation: maximum relative change.
        hue: maximum hue shift as a fraction of the colour circle.

    Returns:
        ``H x W x 3`` float32 RGB in [0, 1].
    """
    b = 1.0 + rng.uniform(-brightness, brightness)
    c = 1.0 + rng.uniform(-contrast, contrast)
    s = 1.0 + rng.uniform(-saturation, saturation)
    h = rng.uniform(-hue, hue) * 360.0
    out = image * np.float32(b)
    mean = out.mean()
    out = (out - mean) * np.float32(c) + mean
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360), S and V in [0, 1]
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(h), 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(s), 0.0, 1.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0).astype(np.float32)


def gaussian_blur(image: np.ndarray, alpha: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Blur image and alpha with the same Gaussian (``sigma`` in pixels, reflected border)."""
    return (
        cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101),
        cv2.GaussianBlur(alpha, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101),
    )


def add_noise(image: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Add per-pixel Gaussian noise of standard deviation ``std`` and clip to [0, 1]."""
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def jpeg_reencode(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip an RGB image through 8-bit JPEG at ``quality`` (1..100), as a phone camera would."""
    bgr = cv2.cvtColor(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok, "OpenCV failed to encode a JPEG"
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)


def augment_pair(
    image: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    out_hw: tuple[int, int],
    config: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the full train-time augmentation chain.

    Order: flip, scale-and-crop (both), blur (both), colour jitter, noise, JPEG
    (image only): the capture order of a camera, which blurs the scene, adds
    sensor noise, then compresses.

    Args:
        image: ``H x W x 3`` float32 RGB in [0, 1].
        alpha: ``H x W`` float32 in [0, 1].
        rng: the only source of randomness; same state, same output.
        out_hw: output (height, width).
        config: which operations and how strong.

    Returns:
        ``(image out_h x out_w x 3, alpha out_h x out_w)``, float32 in [0, 1].
    """
    if rng.random() < config.flip_p:
        image, alpha = hflip(image, alpha)
    image, alpha = random_scale_crop(image, alpha, rng, out_hw, config.scale)
    if rng.random() < config.blur_p:
        image, alpha = gaussian_blur(image, alpha, float(rng.uniform(*config.blur_sigma)))
    if rng.random() < config.jitter_p:
        image = color_jitter(image, rng, config.brightness, config.contrast, config.saturation, config.hue)
    if rng.random() < config.noise_p:
        image = add_noise(image, rng, float(rng.uniform(*config.noise_std)))
    if rng.random() < config.jpeg_p:
        image = jpeg_reencode(image, int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    return image.astype(np.float32, copy=False), np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=False)
