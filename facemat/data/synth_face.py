"""The face scene of the procedural generator: background, body, head, face skin.

A head is an ellipsoid in *face units* (1 unit = half the face width at the
ears; x right, y down, z towards the camera; the eyes lie near y = 0, the chin
near y = 1.3). Features are placed on its surface in frontal coordinates and
projected with the head pose (yaw, pitch, roll, scale, position), so turning the
head shifts the features, narrows the far side and slides the far cheek onto the
head's silhouette. Shading is Lambert plus a small specular term from one
directional light, evaluated at half resolution.

What is face (alpha 1) follows docs/design.md, "The task": skin from hairline to chin and
between the ears, with eyes, brows, nose and lips on it. Ears, neck, hair and
clothing are drawn in the same scene with alpha 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from facemat.data.synth_draw import (
    SHIFT,
    blend_over,
    blur,
    catmull_rom,
    color,
    disc,
    ellipse_pts,
    fill_poly,
    fix,
    line,
    linear_gradient,
    polyline,
    smooth_noise,
)

# Monk Skin Tone scale (Google, 2022), very light to very dark, sRGB in [0, 1].
# The same palette colours faces and hands.
SKIN_TONES = (
    np.array(
        [
            [246, 237, 228],
            [243, 231, 219],
            [247, 234, 208],
            [234, 218, 186],
            [215, 189, 150],
            [160, 126, 86],
            [130, 92, 67],
            [96, 65, 52],
            [58, 49, 42],
            [41, 36, 32],
        ],
        dtype=np.float32,
    )
    / 255.0
)

HAIR_COLOURS = (
    np.array(
        [
            [20, 17, 15],  # black
            [45, 32, 25],  # dark brown
            [85, 60, 40],  # brown
            [130, 95, 60],  # light brown
            [190, 155, 100],  # dark blond
            [225, 200, 150],  # blond
            [140, 60, 30],  # red
            [150, 150, 150],  # grey
            [225, 225, 220],  # white
            [120, 40, 140],  # dyed purple
            [40, 80, 150],  # dyed blue
        ],
        dtype=np.float32,
    )
    / 255.0
)
_HAIR_P = np.array([0.22, 0.2, 0.14, 0.1, 0.08, 0.07, 0.05, 0.05, 0.03, 0.03, 0.03])

IRIS_COLOURS = (
    np.array(
        [[60, 35, 20], [95, 60, 30], [40, 25, 15], [70, 110, 150], [80, 110, 70], [110, 100, 60], [110, 115, 120]],
        dtype=np.float32,
    )
    / 255.0
)


def skin_tone(rng: np.random.Generator, index: int | None = None) -> tuple[int, np.ndarray]:
    """A palette index and a slightly jittered RGB tone in [0, 1]."""
    i = int(rng.integers(len(SKIN_TONES))) if index is None else index
    tone = SKIN_TONES[i] * rng.uniform(0.94, 1.04) + rng.uniform(-0.012, 0.012, 3)
    return i, np.clip(tone, 0.0, 1.0).astype(np.float32)


def random_colour(
    rng: np.random.Generator, sat: tuple[float, float] = (0.1, 0.9), val: tuple[float, float] = (0.15, 0.95)
) -> np.ndarray:
    """A random RGB colour in [0, 1], drawn in HSV."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


@dataclass(frozen=True)
class Pose:
    """Head pose: where face units land in the image.

    Attributes:
        cx, cy: image position (pixels) of the face-unit origin (between the eyes).
        s: pixels per face unit.
        roll, yaw, pitch: radians; yaw > 0 turns the face to the viewer's right.
        A, B, C: head ellipsoid semi-axes (x, y, z) in face units.
    """

    cx: float
    cy: float
    s: float
    roll: float
    yaw: float
    pitch: float
    A: float = 1.08
    B: float = 1.5
    C: float = 1.1

    def __post_init__(self) -> None:
        # Matrices once per pose: projections run dozens of times per sample.
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        # [x, y, z] @ M = (x1, y2): yaw about the vertical axis, then pitch, then drop z.
        m = np.array([[cy, sy * sp], [0.0, cp], [sy, -cy * sp]])
        # camera-plane (x, y) @ S + t = pixels: roll, scale, shift.
        sm = self.s * np.array([[cr, sr], [-sr, cr]])
        put = object.__setattr__
        put(self, "_yaw_cs", (cy, sy))
        put(self, "_m", m)
        put(self, "_sm", sm)
        put(self, "_msm", m @ sm)
        put(self, "_t", np.array([self.cx, self.cy]))
        put(self, "_sm_inv", np.array([[cr, -sr], [sr, cr]]) / self.s)
        put(self, "_ia2", 1.0 / self.A**2)
        put(self, "_ib2", 1.0 / self.B**2)
        put(self, "_silw", math.hypot(self.A * cy, self.C * sy))

    def depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height ``z`` of the head surface over frontal point ``(x, y)`` (0 off the head)."""
        return self.C * np.sqrt(np.maximum(1.0 - (x * x) * self._ia2 - (y * y) * self._ib2, 0.0))

    @property
    def silhouette_w(self) -> float:
        """Half-width of the yawed head's outline at y = 0, face units."""
        return self._silw

    def _xyz(self, pts: np.ndarray, lift: float | np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        xyz = np.empty((len(pts), 3))
        xyz[:, :2] = pts
        xyz[:, 2] = self.depth(pts[:, 0], pts[:, 1]) + lift
        return xyz

    def camera(self, pts: np.ndarray, lift: float | np.ndarray = 0.0, clamp: bool = False) -> np.ndarray:
        """Frontal surface points ``(N, 2)`` to the camera plane ``(N, 2)``, face units.

        ``lift`` raises points off the surface (nose, glasses). With ``clamp``, points
        that face away from the camera slide onto the head's silhouette: what an
        outline does when the head turns.
        """
        xyz = self._xyz(pts, lift)
        cam = xyz @ self._m
        if clamp:
            cyw, syw = self._yaw_cs
            nz = xyz[:, 0] * (-syw * self._ia2) + xyz[:, 2] * (cyw / self.C**2)
            hidden = nz < 0
            if hidden.any():
                x1 = cam[hidden, 0]
                sil = self._silw * np.sqrt(np.maximum(1.0 - xyz[hidden, 1] ** 2 * self._ib2, 0.0))
                cam[hidden, 0] = np.sign(x1) * np.maximum(np.abs(x1), sil)
        return cam

    def to_image(self, cam: np.ndarray) -> np.ndarray:
        """Camera-plane points ``(..., 2)`` (face units) to image pixels ``(..., 2)``."""
        return cam @ self._sm + self._t

    def project(self, pts: np.ndarray, lift: float | np.ndarray = 0.0, clamp: bool = False) -> np.ndarray:
        """Frontal surface points ``(N, 2)`` to image pixels ``(N, 2)``."""
        if clamp:
            return self.to_image(self.camera(pts, lift, clamp))
        return self._xyz(pts, lift) @ self._msm + self._t

    def from_image(self, xy: np.ndarray) -> np.ndarray:
        """Image pixels ``(..., 2)`` to camera-plane face units ``(..., 2)``."""
        return (xy - self._t) @ self._sm_inv


@dataclass
class Scene:
    """A rendered head in its scene, before occluders.

    Attributes:
        rgb: ``H x W x 3`` uint8.
        skin: ``H x W`` float32 face-skin alpha in [0, 1] (soft edge included).
        pose: the head pose.
        tone_index, tone: skin palette index and RGB.
        hair: hair RGB.
        light: unit light direction (camera coordinates, z to the camera).
        hairline: frontal face-unit points ``(N, 2)`` of the hairline, left to right.
        clothing: clothing RGB (sleeves reuse it).
        geom: frontal face-unit landmarks: ``ex``, ``ey`` (eye centres at
            ``(+-ex, ey)``), ``ew``, ``eh``, ``nose_y``, ``mouth_y``, ``mw``, ``chin_y``.
        parts: named full-frame ``uint8`` masks of non-face regions (ears, neck),
            kept for checks.
    """

    rgb: np.ndarray
    skin: np.ndarray
    pose: Pose
    tone_index: int
    tone: np.ndarray
    hair: np.ndarray
    light: np.ndarray
    hairline: np.ndarray
    clothing: np.ndarray
    geom: dict[str, float] = field(default_factory=dict)
    parts: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------- background


def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size x size x 3`` uint8 clutter: gradient, shapes, skin-coloured blobs, noise, blur."""
    c0, c1 = random_colour(rng), random_colour(rng)
    low = max(16, size // 4)
    bg = linear_gradient(low, c0, c1, rng.uniform(0, 2 * np.pi))
    bg += rng.uniform(0.02, 0.12) * smooth_noise(rng, low, int(rng.integers(4, 20)))[..., None]
    img = cv2.resize(_u8(bg), (size, size), interpolation=cv2.INTER_LINEAR)
    n = int(rng.integers(2, 12))
    for _ in range(n):
        kind = rng.integers(6)
        col = random_colour(rng)
        p = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.03, 0.35) * size
        if kind == 0:
            disc(img, p, r, col)
        elif kind == 1:
            corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * rng.uniform(0.3, 1.0, 2) * r
            a = rng.uniform(0, np.pi)
            rm = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            fill_poly(img, p + corners @ rm.T, col)
        elif kind == 2:
            line(img, p, p + rng.uniform(-1, 1, 2) * size * 0.6, col, rng.uniform(1, max(1.5, 0.05 * size)))
        elif kind == 3:
            fill_poly(img, p + rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)) * r, col)
        elif kind == 4:  # stripes
            a = rng.uniform(0, np.pi)
            d = np.array([np.cos(a), np.sin(a)])
            nrm = np.array([-d[1], d[0]])
            gap = rng.uniform(0.02, 0.08) * size
            ks = np.arange(-int(size / gap) - 2, int(size / gap) + 2)[:, None]
            q = size / 2 + nrm * ks * gap  # (K, 2)
            # Aliased lines: a quarter of the cost, and the background may be blurred below.
            cv2.polylines(
                img,
                list(fix(np.stack([q - d * size, q + d * size], 1))),
                False,
                color(col),
                max(1, int(rng.uniform(1, max(1.5, 0.5 * gap)))),
                cv2.LINE_8,
                SHIFT,
            )
        else:  # skin-coloured blob: skin that is not the face
            _, tone = skin_tone(rng)
            fill_poly(
                img,
                ellipse_pts(p, (r, r * rng.uniform(0.4, 1.0)), rng.uniform(0, np.pi), 24),
                tone * rng.uniform(0.6, 1.0),
            )
    if rng.random() < 0.45:
        img = blur(img, rng.uniform(0.6, 3.0) * size / 256)
    return img


# --------------------------------------------------------------------------- shading


def _shade_fields(
    rng: np.random.Generator, pose: Pose, size: int, tone: np.ndarray, feats: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Face, side (neck/ear) and Lambert fields at quarter resolution, plus the light.

    They are smooth, so they are evaluated on a coarse grid and upsampled by the
    caller. Returns face ``h x w x 3``, side ``h x w x 3``, shade ``h x w`` (all
    float32) and the unit light direction ``(3,)``.
    """
    low = max(32, size // 5)
    g = (np.arange(low, dtype=np.float32) + 0.5) * (size / low) - 0.5
    xy = np.stack(np.meshgrid(g, g), axis=-1)
    cam = pose.from_image(xy).astype(np.float32)  # low x low x 2, face units
    cx_, cy_ = cam[..., 0], cam[..., 1]
    u, v = cx_ / pose.silhouette_w, (cy_ + 0.05) / pose.B
    r2 = u * u + v * v
    inside = r2 < 1.0
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, None))
    r = np.sqrt(np.maximum(r2, 1e-6))
    nx = np.where(inside, u, u / r)
    ny = np.where(inside, v, v / r)
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.7, 0.5), rng.uniform(0.45, 1.0)])
    light /= np.linalg.norm(light)
    lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    amb = rng.uniform(0.35, 0.7)
    shade = rng.uniform(0.95, 1.15) * (amb + (1.0 - amb) * lam)
    # Local darkening: eye sockets, under the nose, under the lower lip.
    dark = np.ones_like(shade)
    for cxy, sig, k in feats["dark"]:
        dark -= k * np.exp(-((cx_ - cxy[0]) ** 2 + (cy_ - cxy[1]) ** 2) / (sig * sig))
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    spec = rng.uniform(0.0, 0.14) * np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0, 1) ** rng.uniform(8, 30)
    blush = np.zeros_like(shade)
    for cxy in feats["cheeks"]:
        blush += np.exp(-((cx_ - cxy[0]) ** 2 + (cy_ - cxy[1]) ** 2) / 0.08)
    tint = 1.0 + rng.uniform(0.0, 0.12) * blush[..., None] * np.array([0.4, -0.3, -0.3], np.float32)
    texture = 1.0 + rng.uniform(0.0, 0.03) * smooth_noise(rng, low, int(rng.integers(16, 32)))
    face = (shade * dark * texture)[..., None] * tone * tint + spec[..., None]
    # Neck and ears: in the head's shadow, darkest just under the jaw.
    below = np.clip((cy_ - feats["chin_y"] + 0.1) / 0.6, 0.0, 1.0)
    side = (shade * texture * (rng.uniform(0.62, 0.8) + 0.18 * below))[..., None] * tone
    return face.astype(np.float32), side.astype(np.float32), shade.astype(np.float32), light


def _up(field_: np.ndarray, size: int) -> np.ndarray:
    """A coarse float field in [0, 1] to a full-size uint8 canvas."""
    return cv2.resize(_u8(field_), (size, size), interpolation=cv2.INTER_LINEAR)


def _u8(field_: np.ndarray) -> np.ndarray:
    return (np.clip(field_, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- features


_EYE_T = np.linspace(0.0, np.pi, 12)
_EYE_COS, _EYE_SIN = np.cos(_EYE_T), np.sin(_EYE_T)


def _draw_eye(
    img: np.ndarray, rng: np.random.Generator, pose: Pose, c: np.ndarray, ew: float, eh: float, sign: float, p: dict
) -> None:
    """One eye: white and iris clipped to the lids, lash line, lower lid, fold."""
    s = pose.s
    xs = c[0] + ew * _EYE_COS
    slant = p["eye_tilt"] * sign * _EYE_COS
    upper = np.stack([xs, c[1] - eh * _EYE_SIN**0.8 - slant], -1)
    if p["closed"]:
        closed = np.stack([xs, c[1] + 0.3 * eh * _EYE_SIN - slant], -1)
        polyline(img, pose.project(closed, lift=-0.03), p["lash"], max(1, 0.025 * s))
        return
    lower = np.stack([xs, c[1] + 0.7 * eh * _EYE_SIN**1.2 - slant], -1)[::-1]
    fold = upper[2:-2] - [0.0, 0.45 * eh + 0.02]
    iris = [[c[0] + p["gaze"][0] * ew, c[1] + p["gaze"][1] * eh]]
    pts = pose.project(np.concatenate([upper, lower, fold, iris]), lift=-0.03)  # one projection for all
    up_img, lo_img, fold_img, iris_c = pts[:12], pts[12:24], pts[24:32], pts[32]
    outline = pts[:24]
    x0, y0 = np.floor(outline.min(0)).astype(int) - 2
    x1, y1 = np.ceil(outline.max(0)).astype(int) + 3
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    # The eyeball is drawn in a small patch, then kept only inside the lids.
    off = np.array([x0, y0], np.float64)
    patch = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    cv2.rectangle(patch, (0, 0), (x1 - x0, y1 - y0), color(p["white"]), -1)
    iris_c = iris_c - off
    ri = 1.25 * eh * s
    disc(patch, iris_c, ri, p["iris"])
    disc(patch, iris_c, ri * 0.78, p["iris"] * 0.7)
    disc(patch, iris_c, ri * 0.45, (0.03, 0.03, 0.03))
    disc(patch, iris_c + np.array([-0.3, -0.35]) * ri, max(0.6, ri * 0.18), (0.97, 0.97, 0.97))
    m = np.zeros(patch.shape[:2], np.uint8)
    fill_poly(m, outline - off, 1.0)
    mf = m.astype(np.float32) * np.float32(1.0 / 255.0)
    roi = img[y0:y1, x0:x1]
    roi[:] = cv2.blendLinear(patch, roi, mf, 1.0 - mf)
    # Lids: a dark lash line, a thin lower lid, a fold above.
    polyline(img, up_img, p["lash"], max(1.0, 0.03 * s))
    polyline(img, lo_img, p["lid"], max(1.0, 0.012 * s))
    polyline(img, fold_img, p["fold"], max(1.0, 0.012 * s))


def _brow(pose: Pose, sign: float, ey: float, thick: float, arch: float) -> np.ndarray:
    ctrl = np.array([[0.14, ey - 0.2], [0.36, ey - 0.26 - arch], [0.58, ey - 0.24 - 0.5 * arch], [0.66, ey - 0.16]])
    ctrl[:, 0] *= sign
    mid = catmull_rom(ctrl, 5, closed=False)
    n = len(mid)
    half = thick * np.linspace(1.0, 0.35, n)
    top = mid - np.stack([np.zeros(n), half], -1)
    bot = mid + np.stack([np.zeros(n), half], -1)
    return pose.project(np.concatenate([top, bot[::-1]]), lift=0.02)


def _random_pose(rng: np.random.Generator, size: int) -> Pose:
    """Scale, position and head rotation of one sample (CelebA-like framing)."""
    return Pose(
        cx=size * (0.5 + rng.uniform(-0.08, 0.08)),
        cy=size * rng.uniform(0.42, 0.54),
        s=size * rng.uniform(0.19, 0.27),
        roll=float(np.clip(rng.normal(0.0, 0.17), -0.5, 0.5)),
        yaw=float(rng.uniform(-0.62, 0.62) * rng.uniform(0.3, 1.0) ** 0.5),
        pitch=float(rng.uniform(-0.15, 0.15)),
        A=1.08,
        B=1.5,
        C=rng.uniform(1.0, 1.2),
    )


def _random_geometry(rng: np.random.Generator) -> dict[str, float]:
    """Frontal landmarks in face units, in human proportions (eyes one eye-width apart, ...)."""
    return {
        "ey": rng.uniform(-0.1, 0.02),
        "ex": rng.uniform(0.36, 0.44),
        "ew": rng.uniform(0.16, 0.21),
        "eh": rng.uniform(0.055, 0.09),
        "nose_y": rng.uniform(0.38, 0.48),
        "mouth_y": rng.uniform(0.68, 0.8),
        "mw": rng.uniform(0.26, 0.36),
        "chin_y": rng.uniform(1.22, 1.38),
    }


def _face_outline(rng: np.random.Generator, chin_y: float) -> np.ndarray:
    """Closed frontal outline ``(N, 2)`` of the face region: forehead, cheeks, jaw, chin."""
    jaw = rng.uniform(0.72, 0.95)
    cheek = rng.uniform(0.95, 1.0)
    chin_w = rng.uniform(0.18, 0.36)
    # Right half, top to chin; the top lies just inside the head ellipsoid so the
    # hair cap always covers it.
    top_t = np.array([-0.5, -0.33, -0.2]) * np.pi
    top = 0.96 * np.stack([1.08 * np.cos(top_t), 1.5 * np.sin(top_t)], -1)
    right = np.concatenate(
        [
            top,
            [
                [1.0, -0.45],
                [cheek, 0.05],
                [0.97 * cheek, 0.4],
                [0.9 * jaw + 0.05, 0.72],
                [0.62 * jaw + 0.05, 1.05],
                [chin_w + 0.1, chin_y - 0.08],
                [chin_w * 0.5, chin_y - 0.005],
            ],
        ]
    )
    right[1:, 0] *= rng.uniform(0.97, 1.03, len(right) - 1)
    left = right[1:][::-1] * np.array([-1.0, 1.0])
    left[:, 0] *= rng.uniform(0.97, 1.03, len(left))  # a little asymmetry
    return catmull_rom(np.concatenate([right, [[0.0, chin_y]], left]), 6)


def _shading_spots(rng: np.random.Generator, pose: Pose, g: dict[str, float]) -> dict:
    """Where the shading darkens (eye sockets, under nose and lip) and blushes (cheeks)."""
    ex, ey = g["ex"], g["ey"]
    pts = np.array(
        [[-ex, ey], [ex, ey], [0.0, g["nose_y"] + 0.06], [0.0, g["mouth_y"] + 0.13], [-0.55, 0.35], [0.55, 0.35]]
    )
    cam = pose.camera(pts)
    dark = [(cam[k], 0.2, rng.uniform(0.06, 0.18)) for k in range(2)]
    dark.append((cam[2], 0.09, rng.uniform(0.1, 0.25)))
    dark.append((cam[3], 0.08, rng.uniform(0.05, 0.15)))
    return {"dark": dark, "cheeks": [cam[4], cam[5]], "chin_y": g["chin_y"]}


def _draw_neck(rng: np.random.Generator, pose: Pose, neck_m: np.ndarray) -> tuple[np.ndarray, float]:
    """Neck column under the jaw, into ``neck_m``. Returns its image outline and half-width."""
    nw = rng.uniform(0.48, 0.66)
    top = pose.camera(np.array([[-nw, 0.75], [nw, 0.75]]), lift=-0.55)
    flare = rng.uniform(1.0, 1.2)
    neck_cam = np.concatenate([top, [[top[1, 0] + nw * (flare - 1), 6.0], [top[0, 0] - nw * (flare - 1), 6.0]]])
    neck_img = pose.to_image(neck_cam)
    # The neck stays upright when the head rolls: undo most of the roll below the jaw.
    neck_img[2:, 0] -= (neck_img[2:, 1] - pose.cy) * np.sin(pose.roll) * 0.8
    fill_poly(neck_m, neck_img, 1.0)
    return neck_img, nw


def _draw_ears(rng: np.random.Generator, pose: Pose, tone: np.ndarray, ears_m: np.ndarray, side_c: np.ndarray) -> None:
    """Ears just outside the face outline (behind it in depth); one the head hides is skipped."""
    ear_col = tone * rng.uniform(0.75, 0.95) * np.array([1.03, 0.94, 0.92], np.float32)
    for sign in (-1.0, 1.0):
        nz = -sign / pose.A * np.sin(pose.yaw)  # how much this side turns to the camera
        if nz < -0.35:
            continue
        ctr = pose.camera(np.array([[sign * 1.0, 0.1]]), clamp=True)[0]
        ctr[0] += sign * 0.08
        wide = 0.12 + 0.22 * max(0.0, nz)
        ear_img = pose.to_image(ellipse_pts(ctr, (wide, rng.uniform(0.3, 0.37)), sign * 0.12, 20))
        fill_poly(ears_m, ear_img, 1.0)
        fill_poly(side_c, ear_img, ear_col)
        inner = ellipse_pts(ctr + [sign * 0.02, 0.02], (wide * 0.55, 0.22), sign * 0.12, 12, -0.5 * np.pi, 0.6 * np.pi)
        if sign < 0:
            inner[:, 0] = 2 * (ctr[0] + sign * 0.02) - inner[:, 0]
        polyline(side_c, pose.to_image(inner), ear_col * 0.7, max(1, 0.03 * pose.s))


def _draw_clothing(
    rng: np.random.Generator, pose: Pose, size: int, shade_lo: np.ndarray, neck_img: np.ndarray, nw: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shoulders with a neckline, flat colour, sometimes striped. Returns colour, canvas, mask."""
    s = pose.s
    cloth = random_colour(rng)
    cloth_m = np.zeros((size, size), np.uint8)
    cloth_c = _up(cloth * (0.7 + 0.35 * shade_lo[..., None] / max(1e-3, float(shade_lo.max()))), size)
    neck_base = pose.to_image(np.array([[0.0, rng.uniform(1.9, 2.4)]]))[0]
    neck_base[0] = neck_img[2:, 0].mean()
    sw = s * rng.uniform(2.4, 3.2)
    dip = s * rng.uniform(0.0, 0.5)
    shoulder = np.array(
        [
            [-nw * s * 1.2, -dip * 0.2],
            [0.0, dip],
            [nw * s * 1.2, -dip * 0.2],
            [sw * 0.7, s * 0.25],
            [sw, s * 0.8],
            [sw * 1.3, size * 2.0],
            [-sw * 1.3, size * 2.0],
            [-sw, s * 0.8],
            [-sw * 0.7, s * 0.25],
        ]
    )
    fill_poly(cloth_m, catmull_rom(shoulder, 5) + neck_base, 1.0)
    if rng.random() < 0.35:
        gap = s * rng.uniform(0.12, 0.35)
        c2 = color(random_colour(rng))
        for yy in np.arange(neck_base[1] - 2 * s, size + gap, gap):
            cv2.line(cloth_c, (0, int(yy)), (size, int(yy)), c2, max(1, int(gap * 0.4)))
    return cloth, cloth_c, cloth_m


@dataclass
class _Hair:
    style: int  # 0 short, 1 medium, 2 long, 3 buzz cut
    hairline: np.ndarray  # frontal (N, 2), left to right
    vol: float  # volume beyond the head at the sides, face units
    vol_top: float  # ... and on top
    side_end: float  # how far down the sides reach (frontal y)
    spread: float  # how far long hair fans out


def _random_hair(rng: np.random.Generator) -> _Hair:
    style = int(rng.choice(4, p=[0.35, 0.3, 0.28, 0.07]))
    hl = rng.uniform(-1.12, -0.78) if style != 3 else rng.uniform(-1.3, -1.1)
    part = rng.uniform(-0.25, 0.25)
    hx = np.array([-0.98, -0.85, -0.5, 0.0, 0.5, 0.85, 0.98])
    hy = np.array([-0.3, -0.68, hl + 0.08, hl, hl + 0.08, -0.68, -0.3])
    hy[1:-1] += rng.uniform(-0.06, 0.06, 5) + part * np.array([0.15, 0.08, 0.0, -0.08, -0.15])
    vol = rng.uniform(0.04, 0.28) if style != 3 else rng.uniform(0.0, 0.04)
    side_end = (rng.uniform(-0.2, 0.1), rng.uniform(0.4, 1.0), rng.uniform(1.6, 3.2), -0.25)[style]
    return _Hair(
        style=style,
        hairline=catmull_rom(np.stack([hx, hy], -1), 6, closed=False),
        vol=vol,
        vol_top=vol * rng.uniform(0.8, 1.6),
        side_end=side_end,
        spread=(0.0, rng.uniform(0.0, 0.15), rng.uniform(0.1, 0.7), 0.0)[style],
    )


def _draw_hair(
    rng: np.random.Generator,
    pose: Pose,
    size: int,
    hair: np.ndarray,
    h: _Hair,
    shade_lo: np.ndarray,
    face_f: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hair: a textured colour canvas, the cap mask (over the head and sides) and the back-hair mask."""
    hair_f = hair[None, None, :] * (0.45 + 0.7 * shade_lo[..., None])
    hair_c = _up(hair_f, size)
    silw, vol, side_end, spread = pose.silhouette_w, h.vol, h.side_end, h.spread
    t = np.linspace(np.pi, 2 * np.pi, 25)  # over the top; the outline is centred on the camera-plane origin
    outer_top = np.stack([(silw + vol) * np.cos(t), -0.05 + (pose.B + h.vol_top) * np.sin(t)], -1)
    r_side = np.array([[silw + vol + spread * 0.5, side_end * 0.5], [silw + vol * 0.6 + spread, side_end]])
    l_side = r_side * [-1.0, 1.0]
    inner_r = pose.camera(np.array([[1.0, -0.3], [0.99, min(side_end, 0.6)]]), clamp=True)
    inner_l = pose.camera(np.array([[-1.0, -0.3], [-0.99, min(side_end, 0.6)]]), clamp=True)
    if side_end > 0.6:
        inner_r = np.concatenate([inner_r, [[inner_r[-1, 0] + 0.05, side_end]]])
        inner_l = np.concatenate([inner_l, [[inner_l[-1, 0] - 0.05, side_end]]])
    hairline_cam = pose.camera(h.hairline, clamp=True)
    # One polygon: down the left side, over the top, down the right side, then
    # back up the inner edge, along the hairline and down the left inner edge.
    cap_cam = np.concatenate([l_side[::-1], outer_top, r_side, inner_r[::-1], hairline_cam[::-1][1:-1], inner_l])
    cap_m = np.zeros((size, size), np.uint8)
    fill_poly(cap_m, pose.to_image(cap_cam), 1.0)
    if h.style == 3:  # buzz cut: the scalp shows through
        hair_c = _up(hair_f * 0.4 + face_f * 0.6, size)
    elif rng.random() < 0.12:  # bun on top
        bun = ellipse_pts(np.array([rng.uniform(-0.3, 0.3), -pose.B - h.vol_top - 0.1]), (0.4, 0.3), 0.0, 20)
        fill_poly(cap_m, pose.to_image(bun), 1.0)
    back_m = np.zeros((size, size), np.uint8)
    if h.style == 2:  # long hair also hangs behind the neck
        back = np.array([l_side[1], l_side[0], [-silw, -0.5], [silw, -0.5], r_side[0], r_side[1]])
        fill_poly(back_m, pose.to_image(back), 1.0)
    # Strand texture: arcs that follow the head's outline, and falling curves for long hair.
    n_arcs = 36
    rr = rng.uniform(0.55, 1.12, (n_arcs, 1))
    t0 = rng.uniform(np.pi * 0.95, np.pi * 1.9, (n_arcs, 1))
    tt = t0 + rng.uniform(0.3, 1.0, (n_arcs, 1)) * np.linspace(0.0, 1.0, 10)
    arcs = np.stack([(silw + vol) * rr * np.cos(tt), -0.05 + (pose.B + h.vol_top) * rr * np.sin(tt)], -1)
    if side_end > 0.3:
        k = 22
        sx = rng.choice([-1.0, 1.0], (k, 1)) * (silw + rng.uniform(-0.1, vol + spread, (k, 1)))
        ramp = np.linspace(0.0, 1.0, 10)
        falls = np.stack(
            [
                sx + (rng.uniform(-0.1, 0.1, (k, 1)) + np.sign(sx) * spread * 0.5) * ramp,
                np.broadcast_to(-0.4 + (side_end + 0.4) * ramp, (k, 10)),
            ],
            -1,
        )
        arcs = np.concatenate([arcs, falls])
    arcs_img = pose.to_image(arcs)  # (K, 10, 2)
    groups = rng.integers(0, 3, len(arcs_img))
    gains = (0.45, 0.8, 1.5) if h.style != 3 else (0.75, 0.85, 0.95)  # a buzz cut has no sheen
    for gi, gain in enumerate(gains):
        sel = arcs_img[groups == gi]
        if len(sel):
            polyline(hair_c, sel, np.clip(hair * gain + (0.04 if gi == 2 else 0.0), 0, 1), 1)
    return hair_c, cap_m, back_m


def _local_shade(shade_lo: np.ndarray, pose: Pose, size: int) -> float:
    """The Lambert term at the face centre: feature colours follow the face's brightness."""
    lo = shade_lo.shape[0]
    i = int(np.clip(pose.cy * lo / size, 0, lo - 1))
    j = int(np.clip(pose.cx * lo / size, 0, lo - 1))
    return float(np.clip(shade_lo[i, j], 0.4, 1.2))


def _draw_eyes_and_brows(
    rng: np.random.Generator,
    img: np.ndarray,
    pose: Pose,
    g: dict,
    tone: np.ndarray,
    tone_index: int,
    hair: np.ndarray,
    local: float,
) -> None:
    lash = np.clip(hair * 0.35, 0, 0.25) if hair.mean() > 0.3 else hair * 0.6
    brow_col = np.clip(hair * rng.uniform(0.45, 0.8) * 0.85 + tone * 0.15, 0, 1)
    if hair.mean() > 0.55:
        brow_col = np.clip(brow_col * 0.6, 0, 1)
    brow_thick = rng.uniform(0.025, 0.05)
    arch = rng.uniform(0.0, 0.07)
    look = {
        "eye_tilt": rng.uniform(-0.02, 0.05),
        "lash": lash,
        "closed": rng.random() < 0.06,
        "gaze": (rng.uniform(-0.35, 0.35), rng.uniform(-0.2, 0.2)),
        "iris": IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))] * (1.0 if tone_index < 5 else 0.7),
        "white": np.array([0.92, 0.89, 0.86]) * min(1.0, local * 0.95),
        "lid": tone * local * 0.72,
        "fold": tone * local * 0.78,
    }
    for sign in (-1.0, 1.0):
        fill_poly(img, _brow(pose, sign, g["ey"], brow_thick, arch), brow_col)
        _draw_eye(img, rng, pose, np.array([sign * g["ex"], g["ey"]]), g["ew"], g["eh"], sign, look)


def _draw_nose(
    rng: np.random.Generator, img: np.ndarray, pose: Pose, g: dict, tone: np.ndarray, local: float, light: np.ndarray
) -> None:
    """A shadow along the bridge on the side away from the light, the wings, nostrils and tip."""
    s, ey, nose_y = pose.s, g["ey"], g["nose_y"]
    away = -1.0 if light[0] > 0 else 1.0
    bridge_y = np.linspace(ey + 0.05, nose_y - 0.06, 8)
    bridge = np.stack([away * np.linspace(0.09, 0.12, 8), bridge_y], -1)
    lift = 0.28 * np.clip((bridge_y - ey) / (nose_y - ey), 0, 1) * 0.6
    polyline(img, pose.project(bridge, lift=lift), tone * local * 0.8, max(1, 0.035 * s))
    nw = rng.uniform(0.15, 0.22)
    for sign in (-1.0, 1.0):
        ala = np.array(
            [
                [sign * nw * 0.95, nose_y - 0.09],
                [sign * nw * 1.05, nose_y - 0.02],
                [sign * nw * 0.8, nose_y + 0.04],
                [sign * 0.05, nose_y + 0.05],
            ]
        )
        wing = pose.project(catmull_rom(ala, 4, closed=False), lift=0.12)
        polyline(img, wing, tone * local * 0.68, max(1, 0.022 * s))
        nostril = ellipse_pts(np.array([sign * 0.085, nose_y + 0.03]), (0.05, 0.022), sign * 0.25, 12)
        fill_poly(img, pose.project(nostril, lift=0.16), tone * local * 0.35)
    tip = pose.project(ellipse_pts(np.array([0.0, nose_y - 0.04]), (0.07, 0.05), 0.0, 12), lift=0.28)
    tx, ty = np.clip(tip.mean(0).astype(int), 0, img.shape[0] - 1)
    fill_poly(img, tip, np.clip(img[ty, tx].astype(np.float32) / 255.0 * 1.06, 0, 1))


def _draw_lips(rng: np.random.Generator, img: np.ndarray, pose: Pose, g: dict, tone: np.ndarray, local: float) -> None:
    """Upper lip with a cupid's bow, lower lip, mouth line; sometimes open (teeth), sometimes lipstick."""
    mouth_y, mw = g["mouth_y"], g["mw"]
    lip_base = tone * np.array([0.95, 0.62, 0.62]) + np.array([0.08, 0.0, 0.02])
    if rng.random() < 0.2:  # lipstick
        lip_base = np.array([rng.uniform(0.45, 0.9), rng.uniform(0.05, 0.3), rng.uniform(0.1, 0.35)])
    lip = np.clip(lip_base * local, 0, 1)
    curv = rng.uniform(-0.04, 0.03)
    ut, lt = rng.uniform(0.035, 0.07), rng.uniform(0.05, 0.1)
    xs = np.linspace(-mw, mw, 15)
    q = xs / mw
    mline = mouth_y + curv * q * q
    bow = (1 - q * q) ** 0.7 * (1 - 0.35 * np.exp(-((q / 0.15) ** 2)))
    top = np.stack([xs, mline - ut * bow - 0.006], -1)
    bot = np.stack([xs, mline + lt * (1 - q * q) ** 0.8], -1)
    gap = rng.uniform(0.02, 0.09) if rng.random() < 0.15 else 0.0
    mid = np.stack([xs, mline], -1)
    mid_lo = np.stack([xs, mline + gap * (1 - q * q)], -1)
    lift = 0.08
    if gap > 0:
        fill_poly(img, pose.project(np.concatenate([mid, mid_lo[::-1]]), lift), (0.18, 0.06, 0.06))
        teeth = np.stack([xs[3:-3], mline[3:-3] + gap * 0.45 * (1 - q[3:-3] ** 2)], -1)
        fill_poly(img, pose.project(np.concatenate([mid[3:-3], teeth[::-1]]), lift), (0.9, 0.88, 0.8))
        bot[:, 1] += gap * (1 - q * q)
    fill_poly(img, pose.project(np.concatenate([top, mid[::-1]]), lift), lip * 0.85)
    fill_poly(img, pose.project(np.concatenate([mid_lo, bot[::-1]]), lift), lip)
    polyline(img, pose.project(mid[1:-1], lift), lip * 0.5, max(1, 0.015 * pose.s))
    shine = np.stack([xs[5:-5], mline[5:-5] + lt * 0.5 + gap * 0.7], -1)
    polyline(img, pose.project(shine, lift + 0.01), np.clip(lip * 1.2 + 0.05, 0, 1), 1)


def render_face(rng: np.random.Generator, size: int, background: np.ndarray | None = None) -> Scene:
    """Render one head in a cluttered scene, without occluders.

    Args:
        rng: the sample's generator (the only source of randomness).
        size: image side in pixels.
        background: ``size x size x 3`` uint8 to draw the head over instead of
            the procedural clutter (which is still drawn from ``rng``, so the
            head is the same either way).

    Returns:
        The :class:`Scene`: uint8 image, face-skin alpha and what occluders need.
    """
    bg = render_background(rng, size)
    if background is not None:
        bg = np.array(background, dtype=np.uint8, copy=True)
    pose = _random_pose(rng, size)
    tone_index, tone = skin_tone(rng)
    hair_i = int(rng.choice(len(HAIR_COLOURS), p=_HAIR_P))
    hair = np.clip(HAIR_COLOURS[hair_i] * rng.uniform(0.85, 1.15), 0, 1)
    if tone_index >= 6 and hair_i >= 4 and rng.random() < 0.7:
        hair = HAIR_COLOURS[int(rng.integers(0, 2))].copy()
    g = _random_geometry(rng)
    outline = _face_outline(rng, g["chin_y"])
    face_f, side_f, shade_lo, light = _shade_fields(rng, pose, size, tone, _shading_spots(rng, pose, g))
    h = _random_hair(rng)

    # Masks (uint8, anti-aliased) and full-frame colour canvases.
    face_m = np.zeros((size, size), np.uint8)
    fill_poly(face_m, pose.project(outline, clamp=True), 1.0)
    face_c = _up(face_f, size)
    side_c = _up(side_f, size)  # neck and ears
    neck_m = np.zeros_like(face_m)
    ears_m = np.zeros_like(face_m)
    neck_img, nw = _draw_neck(rng, pose, neck_m)
    _draw_ears(rng, pose, tone, ears_m, side_c)
    cloth, cloth_c, cloth_m = _draw_clothing(rng, pose, size, shade_lo, neck_img, nw)
    hair_c, cap_m, back_m = _draw_hair(rng, pose, size, hair, h, shade_lo, face_f)

    # Features are drawn on the face canvas: they stay inside the face (alpha 1).
    local = _local_shade(shade_lo, pose, size)
    _draw_eyes_and_brows(rng, face_c, pose, g, tone, tone_index, hair, local)
    _draw_nose(rng, face_c, pose, g, tone, local, light)
    _draw_lips(rng, face_c, pose, g, tone, local)
    if rng.random() < 0.25:  # moles / freckles
        for _ in range(int(rng.integers(1, 12))):
            pt = np.array([[rng.uniform(-0.8, 0.8), rng.uniform(-0.6, 1.0)]])
            r = max(0.5, pose.s * rng.uniform(0.008, 0.02))
            disc(face_c, pose.project(pt)[0], r, tone * local * rng.uniform(0.5, 0.8))

    # Composite back to front; the face skin loses what the hair cap covers.
    img = bg
    for canvas, mask in ((hair_c, back_m), (side_c, neck_m), (cloth_c, cloth_m), (side_c, ears_m)):
        blend_over(img, canvas, mask)
    face_box, face_a = blend_over(img, face_c, face_m)
    cap_box, cap_a = blend_over(img, hair_c, cap_m)
    skin = np.zeros((size, size), np.float32)
    skin[face_box] = face_a
    skin[cap_box] *= 1.0 - cap_a
    return Scene(
        rgb=img,
        skin=skin,
        pose=pose,
        tone_index=tone_index,
        tone=tone,
        hair=hair.astype(np.float32),
        light=light,
        hairline=h.hairline,
        clothing=cloth,
        geom=g,
        parts={"ears": ears_m, "neck": neck_m, "hair": cap_m, "face": face_m},
    )
