"""Occluders of the procedural generator, each with its own exact soft alpha.

Every occluder is a :class:`~facemat.data.synth_draw.Layer` (colour and alpha,
cropped to its box) placed in front of the face. Hands are the hard case: skin
from the same palette as faces (sometimes the very same tone) that is *not* face.
Hair strands, fringes, tinted lenses, smoke, steam, fire, drinking glasses and
motion blur give fractional alpha; frames, masks, microphones, phones and cups
are opaque textured solids.

``sample_occluders`` picks which ones a sample gets (none, one or several),
renders them and returns them back to front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from facemat.data.synth_draw import (
    AA,
    SHIFT,
    Layer,
    bezier,
    blur,
    catmull_rom,
    color,
    disc,
    ellipse_pts,
    fill_poly,
    fix,
    line,
    polyline,
    rot,
    smooth_noise,
)
from facemat.data.synth_face import SKIN_TONES, Scene, random_colour, skin_tone

KINDS = ("fringe", "strands", "glasses", "mask", "hand", "phone", "cup", "microphone", "smoke", "fire")
"""Every occluder kind, in the order they stack (back to front) when several meet."""

# Chance that a sample gets each kind (independently; at most MAX_OCCLUDERS kept).
PROBS = {
    "fringe": 0.13,
    "strands": 0.22,
    "glasses": 0.2,
    "mask": 0.07,
    "hand": 0.4,
    "phone": 0.07,
    "cup": 0.07,
    "microphone": 0.06,
    "smoke": 0.1,
    "fire": 0.025,
}
MAX_OCCLUDERS = 4
MOTION_BLUR_P = 0.3
SHADOW_P = 0.4
_BLURRABLE = ("hand", "phone", "cup", "microphone")


@dataclass
class Occluder:
    """One rendered occluder.

    Attributes:
        kind: one of :data:`KINDS`.
        layer: colour and alpha in [0, 1], cropped to its box.
        motion_blur: blur length in pixels (0 when sharp).
        shadow: optional soft shadow the occluder casts on what lies behind it
            (alpha = how much it darkens). It changes the image only: a shadowed
            face is still face.
    """

    kind: str
    layer: Layer
    motion_blur: float = 0.0
    shadow: Layer | None = None


def _canvas(size: int, fill) -> np.ndarray:
    """A full-frame uint8 colour canvas of one colour (cv2 fills it ten times faster than numpy)."""
    c = np.empty((size, size, 3), np.uint8)
    cv2.rectangle(c, (0, 0), (size - 1, size - 1), color(fill), -1)
    return c


def _mask(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def _target(rng: np.random.Generator, sc: Scene) -> np.ndarray:
    """An image point on the face that an object should cover."""
    g = sc.geom
    spots = np.array(
        [
            [0.0, g["mouth_y"]],
            [0.0, g["chin_y"] - 0.15],
            [-0.55, 0.35],
            [0.55, 0.35],
            [-g["ex"], g["ey"]],
            [g["ex"], g["ey"]],
            [0.0, g["nose_y"]],
            [0.0, -0.6],
            [rng.uniform(-0.8, 0.8), rng.uniform(-0.7, 1.1)],
        ]
    )
    p = np.array([0.2, 0.12, 0.12, 0.12, 0.08, 0.08, 0.08, 0.05, 0.15])
    return sc.pose.project(spots[rng.choice(len(spots), p=p)][None])[0]


def _frame(
    origin: np.ndarray, direction: float, scale: float, mirror: float = 1.0
) -> Callable[[np.ndarray], np.ndarray]:
    """Map a local frame (units, "up" = -y) to image pixels: -y points along ``direction``."""
    r = rot(direction + np.pi / 2) * scale
    m = np.array([mirror, 1.0])

    def to_img(pts: np.ndarray) -> np.ndarray:
        return origin + (np.asarray(pts, np.float64) * m) @ r.T

    return to_img


def _arm_direction(rng: np.random.Generator) -> float:
    """Direction (radians, image coordinates) from the hand towards where the arm leaves."""
    r = rng.random()
    if r < 0.7:  # from below
        return np.pi / 2 + rng.uniform(-1.0, 1.0)
    side = 0.0 if r < 0.85 else np.pi
    return side + rng.uniform(-0.5, 0.6)


# --------------------------------------------------------------------------- hands


def hand(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """A hand and forearm in a skin tone from the face palette, over the face."""
    if rng.random() < 0.5:
        tone = np.clip(sc.tone * rng.uniform(0.97, 1.03), 0, 1)
    else:
        near = int(np.clip(sc.tone_index + rng.integers(-2, 3), 0, len(SKIN_TONES) - 1))
        _, tone = skin_tone(rng, near if rng.random() < 0.7 else None)
    gain = rng.uniform(0.8, 1.05)
    base = np.clip(tone * gain, 0, 1)

    pw = rng.uniform(0.95, 1.2)
    ph = pw * rng.uniform(0.95, 1.12)
    mode = rng.choice(4, p=[0.4, 0.3, 0.15, 0.15])  # open, relaxed, fist, pointing
    fx = pw * np.array([-0.36, -0.12, 0.12, 0.36])
    fw = pw * 0.235 * np.array([1.0, 1.03, 0.96, 0.82])
    fl = ph * np.array([0.9, 1.0, 0.94, 0.74]) * rng.uniform(0.9, 1.1)
    spread = rng.uniform(0.0, 0.16) if mode == 0 else rng.uniform(0.0, 0.05)
    if mode == 1:
        fl = fl * rng.uniform(0.7, 1.0, 4)
    elif mode == 2:
        fl = fl * rng.uniform(0.28, 0.38, 4)
    elif mode == 3:
        fl = fl * np.array([1.0, 0.35, 0.33, 0.32])
    curl = rng.uniform(-0.05, 0.25)

    arm_dir = _arm_direction(rng)
    finger_dir = arm_dir + np.pi + rng.uniform(-0.35, 0.35)
    scale = sc.pose.s * rng.uniform(0.85, 1.1)
    tgt = _target(rng, sc)
    fdir = np.array([np.cos(finger_dir), np.sin(finger_dir)])
    centre = tgt - fdir * scale * ph * rng.uniform(-0.2, 1.1)
    mirror = rng.choice([-1.0, 1.0])
    to_img = _frame(centre, finger_dir, scale, mirror)

    m = _mask(size)
    edge = np.clip(base * 0.72, 0, 1)
    c = _canvas(size, edge)

    # Forearm, with a sleeve sometimes.
    wrist = np.array([0.0, ph * 0.35])
    far = np.array([0.0, ph * 0.35 + 6.0])
    arm_w = pw * rng.uniform(0.78, 0.9) * scale
    line(m, to_img(wrist), to_img(far), 1.0, arm_w)
    line(c, to_img(wrist), to_img(far), base * 0.85, arm_w * 0.8)
    line(c, to_img(wrist + [pw * 0.08, 0]), to_img(far + [pw * 0.08, 0]), base * 0.95, arm_w * 0.4)

    # Palm: a rounded box, narrower at the wrist.
    t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    cx, sx = np.cos(t), np.sin(t)
    px = 0.5 * pw * np.sign(cx) * np.abs(cx) ** 0.55
    py = 0.5 * ph * np.sign(sx) * np.abs(sx) ** 0.7
    px *= 1.0 - 0.12 * np.clip(py / ph + 0.5, 0, 1)
    palm = np.stack([px, py], -1)
    fill_poly(m, to_img(palm), 1.0)
    fill_poly(c, to_img(palm), base * 0.86)
    fill_poly(c, to_img(palm * 0.72 + [pw * 0.04, 0.0]), base * 0.95)

    # Fingers: two phalanx capsules each, drawn dark-mid-light for a rounded look.
    back = rng.random() < 0.5
    order = [3, 2, 1, 0] if rng.random() < 0.5 else [0, 1, 2, 3]
    for i in order:
        a0 = spread * (i - 1.5)
        p0 = np.array([fx[i], -0.5 * ph + 0.05 * ph])
        d0 = np.array([np.sin(a0), -np.cos(a0)])
        p1 = p0 + d0 * fl[i] * 0.55
        a1 = a0 + curl
        d1 = np.array([np.sin(a1), -np.cos(a1)])
        p2 = p1 + d1 * fl[i] * 0.45
        w = fw[i] * scale
        for seg in ((p0, p1), (p1, p2)):
            line(m, to_img(seg[0]), to_img(seg[1]), 1.0, w)
        for k, (wf, cf) in enumerate(((1.0, 0.74), (0.72, 0.88), (0.32, 1.0))):
            off = np.array([fw[i] * 0.08 * k, 0.0])
            line(c, to_img(p0 + off), to_img(p1 + off), base * cf, w * wf)
            line(c, to_img(p1 + off), to_img(p2 + off), base * cf, w * wf)
        line(
            c,
            to_img(p1 - d0 * 0.01 - [fw[i] * 0.3, 0]),
            to_img(p1 + [fw[i] * 0.3, 0]),
            base * 0.7,
            max(1, 0.01 * scale),
        )
        if back and fl[i] > 0.4 * ph:
            nail_c = p2 - d1 * fw[i] * 0.42
            nail = to_img(ellipse_pts(nail_c, (fw[i] * 0.3, fw[i] * 0.42), a1, 12))
            fill_poly(c, nail, np.clip(base * np.array([1.08, 0.98, 0.98]) + 0.06, 0, 1))

    # Thumb.
    if mode == 2:
        t0 = np.array([-0.45 * pw, 0.0])
        t_dirs = (np.pi / 2 - 0.3, np.pi / 2 - 0.1)
        tl = pw * 0.55
    else:
        t0 = np.array([-0.42 * pw, 0.2 * ph])
        ang = rng.uniform(0.5, 1.1)
        t_dirs = (-ang, -ang + rng.uniform(0.1, 0.4))
        tl = fl.max() * rng.uniform(0.65, 0.8) if mode != 3 else fl[0] * 0.55
    tw = fw[1] * 1.15 * scale
    q0 = t0
    for k, a in enumerate(t_dirs):
        q1 = q0 + np.array([np.sin(a), -np.cos(a)]) * tl * 0.5
        line(m, to_img(q0), to_img(q1), 1.0, tw * (1.0 - 0.1 * k))
        line(c, to_img(q0), to_img(q1), base * 0.74, tw * (1.0 - 0.1 * k))
        line(c, to_img(q0 + [0.04, 0]), to_img(q1 + [0.04, 0]), base * 0.9, tw * 0.6)
        line(c, to_img(q0 + [0.08, 0]), to_img(q1 + [0.08, 0]), base * 1.0, tw * 0.25)
        q0 = q1

    if rng.random() < 0.45:  # sleeve
        s0 = np.array([0.0, ph * 0.5 + rng.uniform(0.4, 2.0)])
        sleeve = sc.clothing if rng.random() < 0.6 else random_colour(rng)
        line(m, to_img(s0), to_img(far), 1.0, arm_w * 1.3)
        line(c, to_img(s0), to_img(far), sleeve * 0.8, arm_w * 1.3)
        line(c, to_img(s0 + [0.1, 0]), to_img(far + [0.1, 0]), sleeve, arm_w * 0.7)
    layer = Layer.from_canvases(c, m)
    if layer.rgb.size:
        layer.rgb = cv2.GaussianBlur(layer.rgb, (3, 3), 0)
    return layer


# --------------------------------------------------------------------------- hair


def _hairline_y(sc: Scene, x: np.ndarray) -> np.ndarray:
    hl = sc.hairline
    return np.interp(x, hl[:, 0], hl[:, 1])


def _draw_curves(
    m: np.ndarray, c: np.ndarray, curves: np.ndarray, alphas: np.ndarray, colours: np.ndarray, thick: np.ndarray
) -> None:
    """Draw ``(K, N, 2)`` image-space curves: alpha into ``m``, colour into ``c``, batched by value."""
    fixed = fix(curves)
    a_q = np.round(alphas * 8) / 8  # a few alpha levels, one OpenCV call each
    for t in np.unique(thick):
        for a in np.unique(a_q[thick == t]):
            sel = (a_q == a) & (thick == t)
            cv2.polylines(m, list(fixed[sel]), False, color(a), int(t), AA, SHIFT)
        for g in range(len(colours)):
            sel = (np.arange(len(curves)) % len(colours) == g) & (thick == t)
            if sel.any():
                cv2.polylines(c, list(fixed[sel]), False, color(colours[g]), int(t), AA, SHIFT)


def strands(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """Loose single hairs, about one pixel wide, each with alpha below one."""
    n = int(rng.integers(6, 26))
    m = _mask(size)
    c = _canvas(size, sc.hair)
    if rng.random() < 0.3:  # blown in from one side
        side = rng.choice([-1.0, 1.0])
        root = np.stack([np.full(n, side * rng.uniform(0.95, 1.15)), rng.uniform(-0.8, 0.3, n)], -1)
        end = root + np.stack([-side * rng.uniform(0.6, 1.8, n), rng.uniform(-0.1, 0.9, n)], -1)
    else:  # falling from the hairline
        x = rng.uniform(-0.85, 0.85, n)
        root = np.stack([x, _hairline_y(sc, x) + rng.uniform(-0.15, 0.05, n)], -1)
        end = root + np.stack([rng.uniform(-0.7, 0.7, n), rng.uniform(0.5, 1.9, n)], -1)
    sway = rng.normal(0.0, 0.25, (n, 2, 2))
    p1 = root + (end - root) * 0.33 + sway[:, 0]
    p2 = root + (end - root) * 0.66 + sway[:, 1]
    curves = bezier(root[:, None], p1[:, None], p2[:, None], end[:, None], 18)  # (n, 18, 2)
    img = sc.pose.project(curves.reshape(-1, 2), lift=0.05).reshape(n, 18, 2)
    thick = 1 + (rng.random(n) < 0.15).astype(int)
    colours = np.clip(sc.hair * rng.uniform(0.7, 1.4, (3, 1)), 0, 1)
    _draw_curves(m, c, img, rng.uniform(0.3, 0.9, n), colours, thick)
    return Layer.from_canvases(c, m)


def fringe(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """Bangs: tapered clumps hanging from the hairline, plus a few stray hairs."""
    m = _mask(size)
    c = _canvas(size, sc.hair)
    ey = sc.geom["ey"]
    lo, hi = (-0.9, 0.9) if rng.random() < 0.6 else sorted(rng.uniform(-0.9, 0.9, 2) + [-0.3, 0.3])
    sweep = rng.uniform(-0.4, 0.4)
    depth = ey - 0.25 + rng.uniform(-0.15, 0.25)
    n = int(rng.integers(16, 36))
    xs = np.sort(rng.uniform(lo, hi, n))
    root = np.stack([xs, _hairline_y(sc, xs) - 0.1], -1)
    tip = np.stack([xs + sweep * rng.uniform(0.6, 1.4, n), depth + rng.uniform(-0.2, 0.12, n)], -1)
    mid = root + (tip - root) * 0.5 + np.stack([rng.normal(0, 0.05, n), np.zeros(n)], -1)
    k = 10
    centre = bezier(root[:, None], mid[:, None], mid[:, None], tip[:, None], k)  # (n, k, 2)
    tangent = np.gradient(centre, axis=1)
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
    half = rng.uniform(0.035, 0.08, (n, 1, 1)) * ((1.0 - np.linspace(0, 1, k)) ** 0.8)[None, :, None]
    poly = np.concatenate([centre + normal * half, (centre - normal * half)[:, ::-1]], axis=1)  # (n, 2k, 2)
    fixed = fix(sc.pose.project(poly.reshape(-1, 2), lift=0.06).reshape(n, 2 * k, 2))
    shades = [color(np.clip(sc.hair * g, 0, 1)) for g in rng.uniform(0.6, 1.35, 4)]
    for i in range(n):  # one call per clump: a batch would fill overlaps even-odd
        cv2.fillPoly(m, [fixed[i]], (255.0,), AA, SHIFT)
        cv2.fillPoly(c, [fixed[i]], shades[i % 4], AA, SHIFT)
    # Stray hairs beyond the clumps.
    ns = int(rng.integers(3, 12))
    x = rng.uniform(lo, hi, ns)
    r0 = np.stack([x, _hairline_y(sc, x)], -1)
    r3 = r0 + np.stack([sweep + rng.uniform(-0.3, 0.3, ns), depth - r0[:, 1] + rng.uniform(0.0, 0.35, ns)], -1)
    r1 = r0 + (r3 - r0) * 0.3 + rng.normal(0, 0.08, (ns, 2))
    r2 = r0 + (r3 - r0) * 0.7
    curves = bezier(r0[:, None], r1[:, None], r2[:, None], r3[:, None], 14)
    img = sc.pose.project(curves.reshape(-1, 2), lift=0.06).reshape(ns, 14, 2)
    _draw_curves(m, c, img, rng.uniform(0.35, 0.85, ns), sc.hair[None], np.ones(ns, int))
    return Layer.from_canvases(c, m)


# --------------------------------------------------------------------------- on the face


def glasses(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """Glasses: opaque frames, semi-transparent tinted lenses with a reflection."""
    pose, g = sc.pose, sc.geom
    ex, ey = g["ex"] + rng.uniform(-0.02, 0.04), g["ey"] + rng.uniform(-0.02, 0.04)
    lw, lh = rng.uniform(0.2, 0.29), rng.uniform(0.13, 0.22)
    expo = rng.uniform(0.35, 1.0)  # 1: ellipse, small: rectangle with round corners
    sun = rng.random() < 0.4
    if sun:
        tint = random_colour(rng, sat=(0.0, 0.6), val=(0.03, 0.35))
        a_lens = rng.uniform(0.55, 0.92)
    else:
        tint = random_colour(rng, sat=(0.0, 0.35), val=(0.6, 1.0))
        a_lens = rng.uniform(0.12, 0.4)
    frame_col = random_colour(rng, val=(0.02, 0.7)) if rng.random() < 0.7 else np.array([0.75, 0.65, 0.35])
    thick = max(1.0, pose.s * rng.uniform(0.015, 0.055))
    z_plane = pose.depth(np.array(ex), np.array(ey)) + 0.22

    def lift_for(pts: np.ndarray) -> np.ndarray:
        return z_plane - pose.depth(pts[:, 0], pts[:, 1])

    lens_m = _mask(size)
    frame_m = _mask(size)
    hl_m = _mask(size)
    t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    lenses = []
    for sign in (-1.0, 1.0):
        ct, st = np.cos(t), np.sin(t)
        pts = np.stack(
            [sign * ex + lw * np.sign(ct) * np.abs(ct) ** expo, ey + lh * np.sign(st) * np.abs(st) ** expo], -1
        )
        img = pose.project(pts, lift=lift_for(pts))
        lenses.append((pts, img))
        fill_poly(lens_m, img, 1.0)
        # A reflection streak across the lens.
        ctr = img.mean(0)
        d = rot(rng.uniform(-0.8, -0.4)) @ np.array([1.0, 0.0])
        w = pose.s * lw * rng.uniform(0.15, 0.4)
        band = np.array([ctr - d * 40 - [0, w], ctr + d * 40 - [0, w], ctr + d * 40 + [0, w], ctr - d * 40 + [0, w]])
        fill_poly(hl_m, band + rng.uniform(-0.3, 0.3, 2) * pose.s * lw, 1.0)
    refl = rng.uniform(0.1, 0.35)
    # Frame: rims, bridge, and the temple arm on the side that shows.
    for _, img in lenses:
        polyline(frame_m, img, 1.0, thick, closed=True)
    bridge = catmull_rom(
        np.array([[-ex + lw * 0.75, ey - lh * 0.5], [0.0, ey - lh * 0.75], [ex - lw * 0.75, ey - lh * 0.5]]),
        4,
        closed=False,
    )
    polyline(frame_m, pose.project(bridge, lift=lift_for(bridge) - 0.02), 1.0, thick)
    for sign in (-1.0, 1.0):
        if -sign * np.sin(pose.yaw) < -0.15:
            continue
        arm = np.array([[sign * (ex + lw), ey - lh * 0.4], [sign * 1.02, ey - 0.02]])
        arm_img = pose.project(arm, lift=np.array([z_plane - pose.depth(arm[0, 0], arm[0, 1]), -0.05]))
        line(frame_m, arm_img[0], arm_img[1], 1.0, thick)
    # Alpha and colour, worked out inside the glasses' box only.
    x, y, w, h = cv2.boundingRect(cv2.max(lens_m, frame_m))
    box = (slice(y, y + h), slice(x, x + w))
    lens = lens_m[box].astype(np.float32) * (1.0 / 255.0)
    hl = cv2.min(hl_m, lens_m)[box].astype(np.float32) * (refl / 255.0)
    frame = frame_m[box].astype(np.float32) * (1.0 / 255.0)
    a = lens * a_lens
    a += (1.0 - a) * hl
    alpha = np.maximum(a, frame)
    safe = np.maximum(alpha, 1e-3)
    w_hl = (hl / np.maximum(a, 1e-3))[..., None]
    rgb = tint.astype(np.float32) * (1.0 - w_hl) + np.clip(tint * 0.3 + 0.7, 0, 1).astype(np.float32) * w_hl
    fc = np.broadcast_to(frame_col.astype(np.float32), rgb.shape)
    if rng.random() < 0.3:  # tortoiseshell / textured frame
        tex = smooth_noise(rng, size, 40)[box][..., None] * 0.5 + 0.5
        fc = fc * (0.6 + 0.8 * tex)
    wf = (frame / safe)[..., None]
    rgb = rgb * (1.0 - wf) + fc * wf
    return Layer(np.clip(rgb, 0, 1).astype(np.float32), alpha.astype(np.float32), y, x)


def face_mask(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """A surgical or cloth face mask from the nose bridge to under the chin, with ear loops."""
    pose, g = sc.pose, sc.geom
    top = g["nose_y"] - rng.uniform(0.2, 0.35)
    chin = g["chin_y"]
    ctrl = np.array(
        [
            [-0.97, top + 0.12],
            [-0.5, top + 0.05],
            [0.0, top - 0.03],
            [0.5, top + 0.05],
            [0.97, top + 0.12],
            [0.95, top + 0.55],
            [0.7, chin - 0.2],
            [0.3, chin + 0.1],
            [0.0, chin + 0.15],
            [-0.3, chin + 0.1],
            [-0.7, chin - 0.2],
            [-0.95, top + 0.55],
        ]
    )
    outline = catmull_rom(ctrl, 5)
    nose_bump = 0.22 * np.exp(-((outline[:, 0] / 0.2) ** 2)) * np.clip(1 - (outline[:, 1] - top) / 0.6, 0, 1)
    img = pose.project(outline, lift=0.04 + nose_bump, clamp=True)
    col = [
        np.array([0.55, 0.75, 0.9]),
        np.array([0.95, 0.95, 0.95]),
        np.array([0.08, 0.08, 0.1]),
        random_colour(rng),
    ][int(rng.choice(4, p=[0.35, 0.25, 0.2, 0.2]))]
    col = np.clip(col * rng.uniform(0.8, 1.05), 0, 1)
    m = _mask(size)
    c = _canvas(size, col)
    fill_poly(m, img, 1.0)
    # Shading across the mask and pleats.
    lx = sc.light[0]
    for k in range(6):
        xk = -0.95 + k * 0.38
        band = np.array([[xk, top - 0.1], [xk + 0.38, top - 0.1], [xk + 0.38, chin + 0.3], [xk, chin + 0.3]])
        shade = 0.82 + 0.18 * np.clip(0.5 + 0.5 * lx * (xk + 0.19), 0, 1)
        fill_poly(c, pose.project(band, lift=0.04), col * shade)
    c = cv2.GaussianBlur(c, (0, 0), max(0.8, pose.s * 0.08))
    if rng.random() < 0.65:
        for k in range(3):
            yk = top + 0.25 + k * (chin - top - 0.2) / 3.5
            pleat = np.stack([np.linspace(-0.85, 0.85, 12), np.full(12, yk)], -1)
            polyline(c, pose.project(pleat, lift=0.05), col * 0.75, max(1, pose.s * 0.015))
    else:
        seam = np.stack([np.zeros(6), np.linspace(top, chin + 0.12, 6)], -1)
        polyline(c, pose.project(seam, lift=0.05 + 0.22 * np.clip(1 - (seam[:, 1] - top) / 0.6, 0, 1)), col * 0.7, 1)
    # Ear loops.
    for sign in (-1.0, 1.0):
        if -sign * np.sin(pose.yaw) < -0.2:
            continue
        loop = np.array(
            [[sign * 0.97, top + 0.14], [sign * 1.12, -0.05], [sign * 1.12, 0.35], [sign * 0.95, top + 0.5]]
        )
        loop_img = pose.project(catmull_rom(loop, 5, closed=False), lift=0.02, clamp=True)
        lt = max(1.0, pose.s * 0.02)
        polyline(m, loop_img, 1.0, lt)
        polyline(c, loop_img, col * 0.9, lt)
    return Layer.from_canvases(c, m)


# --------------------------------------------------------------------------- objects


def microphone(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """A handheld microphone: mesh ball, metal ring, dark handle running out of the frame."""
    pose, g = sc.pose, sc.geom
    ball = pose.project(np.array([[rng.uniform(-0.4, 0.4), g["mouth_y"] + rng.uniform(-0.05, 0.45)]]))[0]
    r = pose.s * rng.uniform(0.22, 0.32)
    down = np.pi / 2 + rng.uniform(-0.7, 0.7)
    d = np.array([np.cos(down), np.sin(down)])
    metal = np.array([0.5, 0.5, 0.52]) * rng.uniform(0.5, 1.6)
    m = _mask(size)
    c = _canvas(size, metal)
    disc(c, ball, r, np.clip(metal * 0.9, 0, 1))
    disc(c, ball - r * 0.3, r * 0.55, np.clip(metal * 1.15, 0, 1))
    gap = max(2.0, r / 4)
    for k in np.arange(-r, r + gap, gap):
        line(c, ball + [k, -r], ball + [k + 0.3 * r, r], np.clip(metal * 0.45, 0, 1), 1)
        line(c, ball + [-r, k], ball + [r, k - 0.3 * r], np.clip(metal * 0.45, 0, 1), 1)
    disc(m, ball, r, 1.0)
    handle_col = random_colour(rng, sat=(0.0, 0.5), val=(0.03, 0.3))
    far = ball + d * size * 1.5
    line(m, ball + d * r * 0.8, far, 1.0, r * 0.95)
    line(c, ball + d * r * 0.8, far, handle_col, r * 0.95)
    line(c, ball + d * r * 0.8 + [r * 0.15, 0], far + [r * 0.15, 0], np.clip(handle_col + 0.12, 0, 1), max(1, r * 0.2))
    line(m, ball + d * r * 0.75, ball + d * r * 1.05, 1.0, r * 1.15)
    line(c, ball + d * r * 0.75, ball + d * r * 1.05, np.clip(metal * 1.1, 0, 1), r * 1.15)
    return Layer.from_canvases(c, m)


def phone(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """A phone: rounded slab with camera bump or a glossy screen, at the ear or in front."""
    pose = sc.pose
    at_ear = rng.random() < 0.45
    if at_ear:
        side = rng.choice([-1.0, 1.0])
        ctr = pose.project(np.array([[side * rng.uniform(0.55, 0.9), rng.uniform(0.2, 0.6)]]))[0]
        ang = pose.roll + side * rng.uniform(0.3, 0.9)
    else:
        ctr = pose.project(np.array([[rng.uniform(-0.5, 0.5), rng.uniform(0.5, 1.4)]]))[0]
        ang = pose.roll + rng.uniform(-0.5, 0.5)
    w, h = pose.s * rng.uniform(0.7, 0.9), pose.s * rng.uniform(1.45, 1.8)
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ct, st = np.cos(t), np.sin(t)
    body = np.stack([0.5 * w * np.sign(ct) * np.abs(ct) ** 0.2, 0.5 * h * np.sign(st) * np.abs(st) ** 0.2], -1)
    r = rot(ang)
    to_img = lambda p: ctr + np.asarray(p) @ r.T  # noqa: E731
    case = random_colour(rng)
    m = _mask(size)
    c = _canvas(size, case * 0.7)
    fill_poly(m, to_img(body), 1.0)
    fill_poly(c, to_img(body * 0.96), case)
    if rng.random() < 0.5:  # back: camera module
        mod = np.array([[-0.45, -0.47], [-0.05, -0.47], [-0.05, -0.2], [-0.45, -0.2]]) * [w, h]
        fill_poly(c, to_img(mod), np.clip(case * 0.6, 0, 1))
        for u, v in ((-0.34, -0.42), (-0.16, -0.42), (-0.25, -0.27))[: int(rng.integers(1, 4))]:
            p = to_img(np.array([u * w, v * h]))
            disc(c, p, w * 0.08, (0.15, 0.15, 0.17))
            disc(c, p, w * 0.05, (0.02, 0.02, 0.03))
    else:  # front: a dark glossy screen with a reflection
        fill_poly(c, to_img(body * [0.9, 0.93]), (0.04, 0.04, 0.06))
        refl = np.array([[-0.45, -0.1], [0.45, -0.4], [0.45, -0.2], [-0.45, 0.1]]) * [w, h]
        fill_poly(c, to_img(refl), (0.2, 0.22, 0.26))
    return Layer.from_canvases(c, m)


def cup(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """A mug, paper cup or drinking glass at the mouth; the glass is semi-transparent."""
    pose, g = sc.pose, sc.geom
    kind = rng.choice(3, p=[0.45, 0.3, 0.25])  # mug, paper cup, glass
    tw = pose.s * rng.uniform(0.7, 1.0)
    bw = tw * (rng.uniform(0.9, 1.0) if kind == 0 else rng.uniform(0.65, 0.85))
    h = tw * rng.uniform(1.0, 1.5)
    tilt = pose.roll + rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 0.7)
    rim = pose.project(np.array([[rng.uniform(-0.3, 0.3), g["mouth_y"] + rng.uniform(-0.1, 0.35)]]))[0]
    r = rot(tilt)
    # Local frame: rim centre at the origin, body hanging down (+y).
    to_img = lambda p: rim + np.asarray(p) @ r.T  # noqa: E731
    body = np.array([[-tw / 2, 0.0], [tw / 2, 0.0], [bw / 2, h], [-bw / 2, h]])
    bottom = ellipse_pts(np.array([0.0, h]), (bw / 2, bw * 0.1), 0.0, 12, 0.0, np.pi)
    body_poly = np.concatenate([body[:2], bottom])
    rim_e = ellipse_pts(np.array([0.0, 0.0]), (tw / 2, tw * 0.12), 0.0, 24)
    col = random_colour(rng)
    m = _mask(size)
    c = _canvas(size, col * 0.7)
    fill_poly(m, to_img(body_poly), 1.0)
    fill_poly(m, to_img(rim_e), 1.0)
    fill_poly(c, to_img(body_poly * [0.75, 1.0]), col * 0.88)
    fill_poly(c, to_img(body_poly * [0.35, 1.0] + [-tw * 0.12, 0]), np.clip(col * 1.05 + 0.04, 0, 1))
    if kind != 2:
        if rng.random() < 0.5:  # stripes or a logo
            for _ in range(int(rng.integers(1, 4))):
                yk = h * rng.uniform(0.2, 0.85)
                line(c, to_img([-tw / 2, yk]), to_img([tw / 2, yk]), random_colour(rng), max(1, h * 0.06))
        else:
            disc(c, to_img([0.0, h * 0.45]), tw * 0.18, random_colour(rng))
    fill_poly(c, to_img(rim_e * 0.9), (0.25, 0.15, 0.1) if kind != 2 else np.clip(col * 0.6, 0, 1))
    polyline(c, to_img(rim_e), np.clip(col * 1.2 + 0.1, 0, 1), max(1, tw * 0.04), closed=True)
    if kind == 0:  # handle
        side = rng.choice([-1.0, 1.0])
        handle = ellipse_pts(np.array([side * tw * 0.55, h * 0.45]), (tw * 0.22, h * 0.28), 0.0, 20)
        hw = max(1.0, tw * 0.09)
        polyline(m, to_img(handle), 1.0, hw, closed=True)
        polyline(c, to_img(handle), col * 0.85, hw, closed=True)
    layer = Layer.from_canvases(c, m)
    if kind == 2 and layer.alpha.size:  # glass: see-through body, opaque-ish rim
        rim_m = _mask(size)
        polyline(rim_m, to_img(rim_e), 1.0, max(1, tw * 0.05), closed=True)
        rim_a = rim_m[layer.box].astype(np.float32) * (1.0 / 255.0)
        layer.alpha = np.maximum(layer.alpha * rng.uniform(0.2, 0.5), rim_a * 0.9)
    return layer


# --------------------------------------------------------------------------- volumes


def _plume(rng: np.random.Generator, sc: Scene, size: int, max_alpha: float) -> np.ndarray:
    """A rising, turbulent plume alpha ``size x size`` in [0, max_alpha], smooth by construction."""
    low = max(16, size // 4)
    f = low / size
    pose, g = sc.pose, sc.geom
    src = pose.project(np.array([[rng.uniform(-0.6, 0.6), rng.uniform(g["mouth_y"], g["chin_y"] + 0.6)]]))[0] * f
    up = -np.pi / 2 + rng.uniform(-0.6, 0.6)
    d = np.array([np.cos(up), np.sin(up)])
    k = 7
    step = pose.s * f * rng.uniform(0.3, 0.5)
    sig0 = pose.s * f * rng.uniform(0.2, 0.4)
    yy, xx = np.mgrid[0:low, 0:low].astype(np.float32)
    env = np.zeros((low, low), np.float32)
    for i in range(k):
        ctr = src + d * step * i + rng.normal(0, step * 0.4, 2)
        sig = sig0 * (1.0 + 0.35 * i)
        env = np.maximum(env, np.exp(-((xx - ctr[0]) ** 2 + (yy - ctr[1]) ** 2) / (2 * sig * sig)) * (1.0 - 0.08 * i))
    turb = 0.55 + 0.45 * smooth_noise(rng, low, 5) + 0.25 * smooth_noise(rng, low, 11)
    a = np.clip(env * turb * 1.3, 0.0, 1.0) * max_alpha
    a = cv2.resize(a.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    a[a < 1.0 / 255.0] = 0.0
    return a


def _volume_layer(a: np.ndarray, rgb: np.ndarray) -> Layer:
    u8 = (a > 0).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(u8)
    box = (slice(y, y + h), slice(x, x + w))
    return Layer(np.ascontiguousarray(rgb[box], np.float32), np.ascontiguousarray(a[box]), y, x)


def smoke(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """Smoke or steam: low, smooth alpha (peak 0.3 to 0.6), white to grey."""
    a = _plume(rng, sc, size, rng.uniform(0.3, 0.6))
    col = np.clip(np.array([0.85, 0.86, 0.9]) * rng.uniform(0.7, 1.1) + rng.uniform(-0.05, 0.05, 3), 0, 1).astype(
        np.float32
    )
    rgb = np.broadcast_to(col, (size, size, 3))
    return _volume_layer(a, rgb)


def fire(rng: np.random.Generator, sc: Scene, size: int) -> Layer:
    """Flames: red at the thin edge, yellow where dense; alpha up to about 0.8."""
    a = _plume(rng, sc, size, rng.uniform(0.5, 0.85))
    t = (a / max(float(a.max()), 1e-3))[..., None]
    rgb = np.concatenate([np.ones_like(t), 0.25 + 0.7 * t, 0.05 + 0.4 * t * t], -1).astype(np.float32)
    return _volume_layer(a, rgb)


RENDERERS: dict[str, Callable[[np.random.Generator, Scene, int], Layer]] = {
    "fringe": fringe,
    "strands": strands,
    "glasses": glasses,
    "mask": face_mask,
    "hand": hand,
    "phone": phone,
    "cup": cup,
    "microphone": microphone,
    "smoke": smoke,
    "fire": fire,
}


def sample_occluders(rng: np.random.Generator, sc: Scene, size: int) -> list[Occluder]:
    """Choose and render this sample's occluders, back to front (possibly none)."""
    draws = rng.random(len(KINDS))
    chosen = [k for k, u in zip(KINDS, draws) if u < PROBS[k]]
    if len(chosen) > MAX_OCCLUDERS:
        keep = np.sort(rng.choice(len(chosen), MAX_OCCLUDERS, replace=False))
        chosen = [chosen[i] for i in keep]
    # Objects held in front of the face stack in random order among themselves.
    held = [k for k in chosen if k in _BLURRABLE]
    order = rng.permutation(len(held))
    it = iter([held[i] for i in order])
    chosen = [next(it) if k in _BLURRABLE else k for k in chosen]
    out = []
    for kind in chosen:
        layer = RENDERERS[kind](rng, sc, size)
        blur_len = 0.0
        if kind in _BLURRABLE and rng.random() < MOTION_BLUR_P:
            blur_len = float(rng.uniform(4.0, 14.0) * size / 256)
            layer = layer.motion_blur(blur_len, rng.uniform(0, np.pi), size)
        shadow = None
        if kind in _BLURRABLE and rng.random() < SHADOW_P:
            shadow = _cast_shadow(rng, sc, layer, size)
        if not layer.empty():
            out.append(Occluder(kind, layer, blur_len, shadow))
    return out


def _cast_shadow(rng: np.random.Generator, sc: Scene, layer: Layer, size: int) -> Layer | None:
    """A blurred, shifted copy of the occluder's alpha, away from the light, as a dark layer."""
    if layer.empty():
        return None
    s = sc.pose.s
    off = -sc.light[:2] * s * rng.uniform(0.1, 0.35)  # (dx, dy) in pixels
    sigma = s * rng.uniform(0.04, 0.12)
    pad = int(3 * sigma) + 1
    h, w = layer.alpha.shape
    a = np.pad(layer.alpha, pad) * np.float32(rng.uniform(0.25, 0.55))
    a = blur(a, sigma)
    y0 = layer.y0 - pad + int(round(off[1]))
    x0 = layer.x0 - pad + int(round(off[0]))
    # Clip to the frame.
    cy0, cx0 = max(0, -y0), max(0, -x0)
    cy1, cx1 = min(a.shape[0], size - y0), min(a.shape[1], size - x0)
    if cy1 <= cy0 or cx1 <= cx0:
        return None
    a = np.ascontiguousarray(a[cy0:cy1, cx0:cx1])
    return Layer(np.zeros(a.shape + (3,), np.float32), a, y0 + cy0, x0 + cx0)
