"""``python -m facemat.demo``: a face filter that respects occluders, on an image or a video.

For every frame: find the faces (BlazeFace, MediaPipe's face detector, by
default; OpenCV's Haar cascade only when BlazeFace's model cannot be had, or
the whole frame with ``--whole-frame``), turn each into the model's crop with
the crop contract of :mod:`facemat.crop` (square, margin, roll, resize), matte
it with the chosen model, paste the alpha back with a feathered edge, and apply
the effect only where alpha says "visible face skin"::

    out = alpha * effect(frame) + (1 - alpha) * frame

Hands, hair and every other occluder have alpha 0, so the effect does not paint
over them. In a video, faces are tracked (:mod:`facemat.track`): found, then
followed with a smoothed crop, so the crop does not jitter; frames where a face
is lost are reported on stderr. The output is a side-by-side
``input | alpha (grey) | result`` image (for an image input) or an ``mp4v``
video (for a video input), written atomically, with the resolved settings in
``<out>.json`` beside it.

On video the frame's alpha goes through the temporal filter an app runs after
the model (:mod:`facemat.temporal`; ``--no-filter`` turns it off), and the
demo prints the flicker of its own output alphas, with and without the filter.
The input may also be one clip folder (``clips/<id>`` written by
``python -m facemat.data.synth --frames 8``): a still clip's alphas are warped
back onto its first frame with its recorded camera transforms before the
spread is measured, and the ground truth's own figure is printed beside them.

The model runs through the same code the bench uses: an exported artifact is
looked up in the ``manifest.json`` of its folder, its sha256 checked, and
loaded with ``targets.<target>.load_runner`` via ``bench.worker``; a checkpoint
runs as the bench's FP32 reference (PyTorch eager). Those modules are imported
inside the functions that need them: this command is the one place in
``facemat`` that drives the export and bench stages (like the pipeline), and
importing ``facemat`` stays free of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from facemat.cli import ArgumentParser, add_debug_flag, finite_float, run_main
from facemat.crop import DEFAULT as DEFAULT_CROP
from facemat.crop import Crop, CropSpec, crop_for, extract, paste
from facemat.errors import CheckpointError, ConfigError, DataError
from facemat.finder import DETECTORS, load_finder
from facemat.io import atomic_path, write_bytes_atomic, write_json_atomic
from facemat.safety import check_frame_pixels, check_image_pixels
from facemat.temporal import DEFAULT as DEFAULT_FILTER
from facemat.temporal import TemporalConfig, TemporalFilter, parse_config

BUNDLED_STUDENT = Path(__file__).resolve().parent / "weights" / "student.pt"
"""The shipped ``student`` (256 x 256 input; distilled from :data:`BUNDLED_TEACHER` on procedural faces and
real photos with generated occluders; see docs/pretrained.md and docs/results.md)."""
BUNDLED_TEACHER = Path(__file__).resolve().parent / "weights" / "teacher.pt"
"""The shipped ``teacher-selfie`` (alpha and uncertainty ``b``), started from MediaPipe's selfie segmenter."""

EFFECTS = ("tint", "smooth", "cartoon")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTS = (".mp4",)
_VIDEO_IN_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DemoSettings:
    """Resolved settings of one ``facemat.demo`` run.

    Attributes:
        input: an image or a video file.
        out: the side-by-side output: ``.png/.jpg/.jpeg/.bmp`` for an image
            input, ``.mp4`` for a video input.
        effect: one of :data:`EFFECTS`.
        artifact: an exported artifact listed in the ``manifest.json`` of its folder.
        checkpoint: a student checkpoint (``.pt``); exactly one of ``artifact`` and
            ``checkpoint`` is given.
        whole_frame: treat every frame as one face crop instead of detecting faces.
        margin: extra context around a detected face box, as a fraction of its
            side on each side (the crop side is ``box * (1 + 2 * margin)``);
            None: the crop contract's (the artifact's manifest, else
            :data:`facemat.crop.DEFAULT`).
        max_frames: stop a video after this many frames (None: all).
        detector: one of :data:`facemat.finder.DETECTORS`.
        example: the input is the built-in example picture (``input`` is then its name).
        filter: the temporal filter's settings on video, or None for no filter.
    """

    input: str
    out: str
    effect: str = "tint"
    artifact: str | None = None
    checkpoint: str | None = None
    whole_frame: bool = False
    margin: float | None = None
    max_frames: int | None = None
    detector: str = "blazeface"
    example: bool = False
    filter: TemporalConfig | None = DEFAULT_FILTER

    def __post_init__(self) -> None:
        if self.effect not in EFFECTS:
            raise ConfigError(f"--effect must be one of {', '.join(EFFECTS)}, got {self.effect!r}")
        if (self.artifact is None) == (self.checkpoint is None):
            which = "both" if self.artifact is not None else "neither"
            raise ConfigError(f"give exactly one of --artifact and --checkpoint ({which} given); the bundled "
                              f"student is --checkpoint {_display(BUNDLED_STUDENT)}")
        if not self.example and not Path(self.input).exists():
            raise DataError(f"--input {self.input}: no such file")
        if not self.example and not Path(self.input).is_file() and not _is_clip(self.input):
            raise DataError(f"--input {self.input}: not a file or a clip folder (give an image, a video, or a "
                            "clip folder with images/<t>.png)")
        for flag, p in (("--artifact", self.artifact), ("--checkpoint", self.checkpoint)):
            if p is not None and not Path(p).exists():
                raise ConfigError(f"{flag} {p}: no such file")
        if self.margin is not None and not 0.0 <= self.margin <= 2.0:
            raise ConfigError(f"--margin must be between 0 and 2 (a fraction of the face box), got {self.margin}")
        if self.detector not in DETECTORS:
            raise ConfigError(f"--detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be >= 1, got {self.max_frames}")
        _check_out(self.out, self.input)


def _display(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it (shorter messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _check_out(out: str, input_path: str) -> None:
    """Refuse an ``--out`` that cannot be written, before any work is done."""
    p = Path(out)
    ext = p.suffix.lower()
    if ext not in IMAGE_EXTS + VIDEO_EXTS:
        raise ConfigError(f"--out {out}: unsupported extension {p.suffix or '(none)'!r}; an image input writes "
                          f"{', '.join(IMAGE_EXTS)}, a video input writes {', '.join(VIDEO_EXTS)}")
    if p.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name")
    if p.exists() and Path(input_path).exists() and p.resolve() == Path(input_path).resolve():
        raise ConfigError(f"--out {out}: is the input file; write the result elsewhere")
    parent = p.parent if str(p.parent) else Path(".")
    existing = parent
    while not existing.exists():  # atomic_path creates the missing folders
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: folder {existing} is not writable; choose another --out")


# --------------------------------------------------------------------------- the model


@dataclass
class Matter:
    """A loaded matting model.

    Attributes:
        runner: ``runner(image)`` with image ``1 x 3 x S x S`` float32 RGB in [0, 1]
            returns alpha ``1 x 1 x S x S`` float32 in [0, 1] (a ``targets.common.Runner``).
        size: S, the model's fixed input size.
        info: what it is (artifact id, target, precision, sha256; or the checkpoint).
        crop: the crop contract its inputs must follow (an artifact's manifest record;
            :data:`facemat.crop.DEFAULT` for a checkpoint or a manifest without one).
    """

    runner: Callable[[np.ndarray], np.ndarray]
    size: int
    info: dict[str, Any]
    crop: CropSpec = DEFAULT_CROP


def load_matter(artifact: str | None = None, checkpoint: str | None = None) -> Matter:
    """Load an exported artifact (via its manifest) or a student checkpoint, as the bench does.

    Raises:
        CheckpointError: the artifact is not in a manifest beside it, or its bytes
            no longer match the manifest's sha256; the checkpoint is not a student.
        targets.common.RuntimeUnavailable: the artifact cannot run on this OS (Core ML off macOS).
    """
    if (artifact is None) == (checkpoint is None):
        raise ConfigError("give exactly one of artifact and checkpoint")
    if checkpoint is not None:
        return _load_checkpoint(checkpoint)
    return _load_artifact(artifact)


def _load_checkpoint(path: str) -> Matter:
    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.inference import reference_outputs

    model, _ = load_checkpoint(path, expect="student")  # as bench.run loads its FP32 reference

    def runner(image: np.ndarray) -> np.ndarray:
        alpha, _ = reference_outputs(model, image)  # N x S x S
        return alpha[:, None]  # N x 1 x S x S

    return Matter(runner, int(model.config.size), {"kind": "checkpoint", "path": str(path), "arch": model.arch,
                                                    "sha256": file_sha256(path), "runtime": "pytorch eager fp32"})


def _load_artifact(path: str) -> Matter:
    import platform

    from targets import open_artifact
    from targets.common import IOSpec, RuntimeUnavailable
    from targets.manifest import NAME, read_manifest, verify_entry

    art = Path(path)
    root = art.resolve().parent
    manifest = root / NAME
    if not manifest.is_file():
        raise CheckpointError(f"--artifact {path}: no {NAME} in {root}; the demo runs artifacts written by "
                              "python -m targets.export, whose manifest records their sha256 and I/O spec")
    entries = read_manifest(manifest)["artifacts"]
    entry = next((e for e in entries.values() if (root / e["path"]).resolve() == art.resolve()), None)
    if entry is None:
        raise CheckpointError(f"--artifact {path}: not listed in {manifest} (it lists {', '.join(entries) or 'none'})")
    entry = {"id": entry.get("id", art.name), **entry}
    verify_entry(root, entry)
    size = IOSpec.from_manifest(entry).size
    try:
        runner = open_artifact(entry, root)
    except RuntimeUnavailable as exc:
        where = f"{platform.system()} {platform.machine()}"
        reason = str(exc).removeprefix(f"{root / entry['path']}: ")
        if "coreml" in (entry["target"], entry.get("delegate")):
            reason = f"Core ML artifacts run only on macOS/iOS ({reason})"
        raise RuntimeUnavailable(f"--artifact {path}: cannot run on this OS ({where}): {reason}; pick an artifact "
                                 "that the manifest marks runs_here: true, or use --checkpoint") from None
    crop = DEFAULT_CROP
    info = {"kind": "artifact", "path": str(path), "id": entry["id"], "target": entry["target"],
            "precision": entry.get("precision"), "delegate": entry.get("delegate"), "sha256": entry["sha256"],
            "manifest": str(manifest), "crop_from": "default: the manifest entry has no crop record"}
    if "crop" in entry:
        crop = CropSpec.from_manifest(entry["crop"], f"{manifest} entry {entry['id']!r}")
        info["crop_from"] = "manifest"
    return Matter(runner, size, info, crop)


# --------------------------------------------------------------------------- effects


def _odd(v: float, lo: int = 3) -> int:
    n = max(lo, round(v))
    return n if n % 2 else n + 1


# A cool blue that no skin has: where the tint leaks onto a hand, it shows.
TINT_RGB = np.array([70.0, 150.0, 255.0], np.float32)


def effect_tint(rgb: np.ndarray) -> np.ndarray:
    """Colour tint that keeps the shading: luminance times a blue, blended 65 % over the image.

    Args:
        rgb: ``H x W x 3`` uint8 RGB.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    lum = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None] / 255.0  # H x W x 1
    tinted = np.minimum(lum * TINT_RGB * 1.3, 255.0)
    return np.clip(0.35 * rgb.astype(np.float32) + 0.65 * tinted + 0.5, 0, 255).astype(np.uint8)


def effect_smooth(rgb: np.ndarray) -> np.ndarray:
    """Beauty smoothing: two edge-preserving bilateral passes, then a soft 15 % lift toward white.

    The lift makes the effect visible on skin that is already smooth (generated
    faces have little texture for the bilateral filter to remove).
    """
    s = max(rgb.shape[:2]) / 256.0
    d = _odd(9 * s, 5)
    out = cv2.bilateralFilter(rgb, d, 40, 4 * s + 3)
    out = cv2.bilateralFilter(out, d, 40, 4 * s + 3)
    out = out.astype(np.float32)
    return np.clip(out + (255.0 - out) * 0.15 + 0.5, 0, 255).astype(np.uint8)


def effect_cartoon(rgb: np.ndarray) -> np.ndarray:
    """Cartoon: bilateral flattening, lightness posterized to 6 bands, colours 1.5x more saturated, dark edge lines.

    Posterizing lightness in Lab rather than each RGB channel keeps skin one hue
    instead of breaking it into pink and yellow patches.
    """
    s = max(rgb.shape[:2]) / 256.0
    flat = cv2.bilateralFilter(rgb, _odd(9 * s, 5), 75, 75)
    flat = cv2.bilateralFilter(flat, _odd(9 * s, 5), 75, 75)
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB)
    lab[..., 0] = np.minimum((lab[..., 0] // 40) * 40 + 30, 255)  # 6 bands: 30, 70, ..., 230
    ab = (lab[..., 1:].astype(np.float32) - 128.0) * 1.5 + 128.0  # a, b are offset by 128 in 8-bit Lab
    lab[..., 1:] = np.clip(ab + 0.5, 0, 255).astype(np.uint8)
    poster = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    grey = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), _odd(5 * s))
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, _odd(9 * s), 5)
    return poster * (edges[..., None] // 255)  # edge pixels black


EFFECT_FNS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tint": effect_tint, "smooth": effect_smooth, "cartoon": effect_cartoon}


def composite(frame: np.ndarray, alpha: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """``alpha * filtered + (1 - alpha) * frame``, rounded.

    Args:
        frame, filtered: ``H x W x 3`` uint8.
        alpha: ``H x W`` float in [0, 1] (1 = visible face skin).

    Returns:
        ``H x W x 3`` uint8.
    """
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0)[..., None]
    out = a * filtered.astype(np.float32) + (1.0 - a) * frame.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- faces


def crop_spec(matter: Matter, margin: float | None = None) -> CropSpec:
    """The crop contract for ``matter``; ``margin`` (``--margin``) overrides its scale as ``1 + 2 * margin``."""
    if margin is None:
        return matter.crop
    return dataclasses.replace(matter.crop, scale=1.0 + 2.0 * margin)


def find_crops(rgb: np.ndarray, finder: Any, spec: CropSpec) -> list[Crop]:
    """Every face of ``rgb`` that ``finder`` finds, as a crop of the contract ``spec``."""
    return [crop_for(d.box, spec, d.roll()) for d in finder(rgb)]


# --------------------------------------------------------------------------- one frame


def matte_region(matter: Matter, crop: np.ndarray) -> np.ndarray:
    """Alpha of an ``h x w x 3`` uint8 RGB crop, resized to the model's input and back: ``h x w`` float32."""
    h, w = crop.shape[:2]
    s = matter.size
    interp = cv2.INTER_AREA if max(h, w) > s else cv2.INTER_LINEAR
    x = cv2.resize(crop, (s, s), interpolation=interp) if (h, w) != (s, s) else crop
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)  # 1 x 3 x S x S
    alpha = np.asarray(matter.runner(x), np.float32).reshape(s, s)
    alpha = np.clip(alpha, 0.0, 1.0)
    return cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR) if (h, w) != (s, s) else alpha


def process_frame(rgb: np.ndarray, matter: Matter, effect: str, finder: Any = None,
                  spec: CropSpec | None = None, crops: list[Crop] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Matte and filter every face of one frame.

    Args:
        rgb: ``H x W x 3`` uint8 RGB.
        matter: the model.
        effect: one of :data:`EFFECTS`.
        finder: a face finder (:mod:`facemat.finder`), or None to treat the whole
            frame as one face crop (resized to the model's square input; non-square
            frames are stretched).
        spec: the crop contract (default: ``matter.crop``).
        crops: the faces' crops when already known (a tracked video); ``finder`` is then not run.

    Returns:
        ``(alpha H x W float32 in [0, 1], result H x W x 3 uint8, number of faces)``;
        with no face, alpha is 0 and the result equals the input.
    """
    spec = matter.crop if spec is None else spec
    height, width = rgb.shape[:2]
    fn = EFFECT_FNS[effect]
    if crops is None and finder is None:
        alpha = matte_region(matter, rgb)
        return alpha, composite(rgb, alpha, fn(rgb)), 1
    if crops is None:
        crops = find_crops(rgb, finder, spec)
    alpha_full = np.zeros((height, width), np.float32)
    result = rgb.copy()
    for c in crops:
        x0, y0, x1, y1 = c.bounds(height, width)
        if x1 <= x0 or y1 <= y0:
            continue
        x = np.ascontiguousarray(extract(rgb, c, matter.size).transpose(2, 0, 1)[None], dtype=np.float32)
        out = np.asarray(matter.runner(x / np.float32(255.0)), np.float32).reshape(matter.size, matter.size)
        alpha = paste(out, c, height, width, spec.feather)[y0:y1, x0:x1]
        # The effect runs on the frame around the face (full resolution); overlapping
        # crops composite onto what the earlier ones left.
        region = result[y0:y1, x0:x1]
        result[y0:y1, x0:x1] = composite(region, alpha, fn(region))
        np.maximum(alpha_full[y0:y1, x0:x1], alpha, out=alpha_full[y0:y1, x0:x1])
    return alpha_full, result, len(crops)


def side_by_side(rgb: np.ndarray, alpha: np.ndarray, result: np.ndarray) -> np.ndarray:
    """``input | alpha (grey) | result``: ``H x 3W x 3`` uint8 RGB."""
    grey = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.hstack([rgb, cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), result])


# --------------------------------------------------------------------------- the command


def _is_clip(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "images").is_dir()


def _input_kind(path: str) -> str:
    """``"image"`` or ``"video"`` (a clip folder plays as a video): by extension, else by what OpenCV can open."""
    if _is_clip(path):
        return "video"
    ext = Path(path).suffix.lower()
    if ext in _VIDEO_IN_EXTS:
        return "video"
    if ext in IMAGE_EXTS + (".tif", ".tiff", ".webp"):
        return "image"
    if cv2.haveImageReader(path):
        return "image"
    return "video"


def _read_image(path: str) -> np.ndarray:
    check_image_pixels(path, what=f"--input {path}")  # from the header, before decoding
    data = np.fromfile(path, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise DataError(f"--input {path}: cannot read it as an image (empty, corrupt or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run_demo(s: DemoSettings) -> dict[str, Any]:
    """Run the demo; write ``s.out`` and ``s.out + ".json"``; return that summary.

    Raises:
        DataError: unreadable input. ConfigError: output type does not fit the input.
        CheckpointError, RuntimeUnavailable: see :func:`load_matter`.
    """
    kind = "image" if s.example else _input_kind(s.input)
    want = IMAGE_EXTS if kind == "image" else VIDEO_EXTS
    if Path(s.out).suffix.lower() not in want:
        article = "an" if kind == "image" else "a"
        raise ConfigError(f"--out {s.out}: {article} {kind} input writes {', '.join(want)}, not {Path(s.out).suffix!r}")
    example: dict[str, Any] | None = None
    if s.example:
        from facemat.data.example import example_picture

        frame, example = example_picture()
    else:
        frame = _read_image(s.input) if kind == "image" else None
    clip = None
    if not s.example and _is_clip(s.input):
        from facemat.data.clips import read_clip_folder

        clip = read_clip_folder(s.input)  # checked before loading the model
    elif kind == "video":
        _probe_video(s.input)  # refuse an unreadable input before loading the model
    matter = load_matter(s.artifact, s.checkpoint)
    spec = crop_spec(matter, s.margin)
    finder, fallback = (None, None) if s.whole_frame else load_finder(s.detector)
    if fallback:
        print(f"facemat.demo: {fallback}; it misses many faces that a hand covers", file=sys.stderr)
    tracker = None
    if kind == "image":
        alpha, result, faces = process_frame(frame, matter, s.effect, finder, spec)
        if faces == 0:
            print(f"facemat.demo: no face found in {s.input}; the result equals the input. If the image is "
                  "already a face crop, pass --whole-frame", file=sys.stderr)
        ok, buf = cv2.imencode(Path(s.out).suffix.lower(), cv2.cvtColor(side_by_side(frame, alpha, result),
                                                                           cv2.COLOR_RGB2BGR))
        assert ok, "cv2.imencode failed on a supported extension"
        _write(s.out, lambda: write_bytes_atomic(s.out, buf.tobytes()))
        frames = [faces]
        stability = None
    else:
        if finder is not None:
            from facemat.track import FaceTracker

            tracker = FaceTracker(finder, spec, 30.0 if clip is not None else _video_fps(s.input))
        frames, stability = _run_video(s, matter, finder, spec, tracker, clip)
    summary = {"settings": asdict(s), "input_kind": "clip" if clip is not None else kind, "model": matter.info,
               "model_input_size": matter.size,
               "frames": len(frames), "faces_per_frame": frames,
               "frames_without_face": sum(1 for f in frames if f == 0),
               "finder": None if finder is None else {**finder.info, "fallback": fallback},
               "crop": None if finder is None else spec.to_manifest()}
    if tracker is not None:
        summary["tracking"] = {**asdict(tracker.settings), "whole_frame_searches": tracker.searches,
                               "frames_with_a_lost_face": [i for i, n in enumerate(tracker.lost) if n]}
    if example is not None:
        summary["example"] = example
    if stability is not None:
        summary["flicker"] = stability
    _write(s.out + ".json", lambda: write_json_atomic(s.out + ".json", summary))
    return summary


def _write(path: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError as exc:
        raise ConfigError(f"--out {path}: cannot write it ({exc.strerror or exc}); choose another --out") from None


def _open_video(path: str) -> cv2.VideoCapture:
    """Open ``path``; refuse frames above the pixel limit (from the stream header) before decoding one.

    FFmpeg's own log lines are silenced, so a corrupt file gives the one error line.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when OpenCV first opens a video
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise DataError(f"--input {path}: cannot open it as a video or read it as an image")
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        check_frame_pixels(width, height, f"--input {path}")
    except DataError:
        cap.release()
        raise
    return cap


def _probe_video(path: str) -> None:
    cap = _open_video(path)
    try:
        if not cap.read()[0]:
            raise DataError(f"--input {path}: no frame could be read (empty or corrupt video)")
    finally:
        cap.release()


def _frames(cap: cv2.VideoCapture, limit: int | None) -> Iterator[np.ndarray]:
    """The capture's frames as ``H x W x 3`` uint8 RGB, at most ``limit`` of them."""
    n = 0
    while limit is None or n < limit:
        ok, bgr = cap.read()
        if not ok:
            return
        n += 1
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _video_fps(path: str) -> float:
    cap = _open_video(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if np.isfinite(fps) and 0 < fps <= 1000 else 25.0


def _spans(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    out: list[str] = []
    for i in frames:
        if out and i == last + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
        last = i
    return ", ".join(out)


class _Spread:
    """Per-pixel mean and spread of the alphas of a stream, accumulated frame by frame (float64)."""

    def __init__(self) -> None:
        self.n, self.sum, self.sq = 0, 0.0, 0.0
        self.kept: list[np.ndarray] = []

    def add(self, alpha: np.ndarray, keep: bool) -> None:
        a = alpha.astype(np.float64)
        self.n, self.sum, self.sq = self.n + 1, self.sum + a, self.sq + a * a
        if keep:
            self.kept.append(alpha.astype(np.float32))

    def flicker(self) -> float | None:
        """Mean per-pixel population std x 1000 over every frame (no alignment); None below 2 frames."""
        if self.n < 2:
            return None
        var = np.maximum(self.sq / self.n - (self.sum / self.n) ** 2, 0.0)
        return float(1000.0 * np.sqrt(var).mean())


def _stability(raw: _Spread, filtered: _Spread | None, clip) -> dict[str, Any] | None:
    """The flicker of the output alphas (and without the filter): aligned on a still clip, else over the frames."""
    from facemat.metrics import dtssd, flicker

    out: dict[str, Any] = {}
    if clip is not None and clip.motion == "still" and clip.cameras is not None and len(raw.kept) == len(clip.images):
        from facemat.data.clips import align_to_first

        def aligned(seq):
            a, valid = align_to_first(np.stack(seq), clip.cameras)
            return flicker(a, valid)

        out["how"] = "still clip: alphas warped back onto frame 0 with its camera transforms (x 1000)"
        out["ground_truth"] = aligned(list(clip.alphas))
        out["unfiltered"] = aligned(raw.kept)
        if filtered is not None:
            out["filtered"] = aligned(filtered.kept)
    else:
        out["how"] = "per-pixel std over all frames without alignment (x 1000): meaningful for a camera held still"
        out["unfiltered"] = raw.flicker()
        if filtered is not None:
            out["filtered"] = filtered.flicker()
        if out["unfiltered"] is None:
            return None
    if clip is not None and len(raw.kept) == len(clip.images) and clip.alphas.shape[1:] == raw.kept[0].shape:
        out["dtssd_unfiltered"] = dtssd(np.stack(raw.kept), clip.alphas)
        if filtered is not None:
            out["dtssd_filtered"] = dtssd(np.stack(filtered.kept), clip.alphas)
    return out


def _clip_frames(clip, limit: int | None) -> Iterator[np.ndarray]:
    for image in clip.images[:limit]:
        yield np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _run_video(s: DemoSettings, matter: Matter, finder: Any, spec: CropSpec, tracker: Any = None, clip=None
               ) -> tuple[list[int], dict[str, Any] | None]:
    """Filter every frame of ``s.input`` (a video, or ``clip``'s frames) into ``s.out`` (mp4v).

    With a ``tracker`` (:class:`facemat.track.FaceTracker`), faces are found and then
    followed with a smoothed crop; frames where a face was lost are reported on stderr.
    With ``s.filter``, each frame's alpha goes through the temporal filter.

    Returns:
        The face count per frame, and the flicker of the output alphas (see :func:`_stability`).
    """
    from tqdm import tqdm

    cap = _open_video(s.input) if clip is None else None
    try:
        if cap is not None:
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            if s.max_frames is not None and total is not None:
                total = min(total, s.max_frames)
            frames = _frames(cap, s.max_frames)
        else:
            fps, total, frames = 30.0, len(clip.images[:s.max_frames]), _clip_frames(clip, s.max_frames)
        first = next(frames, None)
        if first is None:
            raise DataError(f"--input {s.input}: no frame could be read (empty or corrupt video)")
        height, width = first.shape[:2]
        faces: list[int] = []
        # Apps run the filter on each frame's alpha after the model; with it on, the effect is applied to
        # the whole frame and composited with the filtered alpha.
        filt = TemporalFilter(s.filter) if s.filter is not None else None
        raw, smooth = _Spread(), _Spread() if filt is not None else None

        def write() -> None:
            with atomic_path(s.out, suffix=Path(s.out).suffix) as tmp:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (3 * width, height))
                if not writer.isOpened():
                    raise ConfigError(f"--out {s.out}: OpenCV cannot write an mp4v video here")
                try:
                    for rgb in tqdm(itertools.chain([first], frames), total=total, desc="facemat.demo",
                                    unit="frame", file=sys.stderr):
                        crops = None if tracker is None else [t.crop for t in tracker(rgb)]
                        alpha, result, n = process_frame(rgb, matter, s.effect, finder, spec, crops)
                        raw.add(alpha, keep=clip is not None)
                        if filt is not None:
                            alpha = filt(rgb, alpha)
                            result = composite(rgb, alpha, EFFECT_FNS[s.effect](rgb))
                            smooth.add(alpha, keep=clip is not None)
                        faces.append(n)
                        writer.write(cv2.cvtColor(side_by_side(rgb, alpha, result), cv2.COLOR_RGB2BGR))
                finally:
                    writer.release()

        _write(s.out, write)
    finally:
        if cap is not None:
            cap.release()
    lost = [] if tracker is None else [i for i, n in enumerate(tracker.lost) if n]
    if lost:
        print(f"facemat.demo: a face was lost in {len(lost)} of {len(faces)} frames ({_spans(lost)}): its last "
              f"crop was held for up to {tracker.settings.hold} frames, then it was left unfiltered until found "
              "again", file=sys.stderr)
    missing = [i for i, n in enumerate(faces) if n == 0]
    if missing:
        print(f"facemat.demo: no face found in {len(missing)} of {len(faces)} frames (first: frame {missing[0]}); "
              "those frames are left unfiltered. For a video of face crops, pass --whole-frame", file=sys.stderr)
    return faces, _stability(raw, smooth, clip)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m facemat.demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Apply a face effect only to visible face skin, leaving hands, hair and other occluders\n"
        "untouched: find faces, matte each face crop with a FaceMat model, composite\n"
        "alpha * effect + (1 - alpha) * input, and write input | alpha | result side by side\n"
        "(an image for an image input, an mp4v video for a video input), written atomically.",
        epilog=f"""faces:
  By default faces are found with BlazeFace, MediaPipe's face detector (short
  range; --detector blazeface-full for faces far away or small in the frame),
  run in LiteRT on the whole frame and on zoomed windows of it, low-scoring
  faces confirmed by the full-range model; the models come from the mediapipe
  wheel into the cache of python -m facemat.pretrained.fetch.
  OpenCV's Haar cascade is used when those models cannot be had (the output
  says so) or with --detector haar. Each detection becomes the model's crop by the
  crop contract (facemat/crop.py; an artifact's manifest records it): a square
  of {DEFAULT_CROP.scale:g} x the box (--margin m makes it 1 + 2m), moved up by {DEFAULT_CROP.shift_up:g} of its side,
  turned upright along the eye line, resized to the model's input; the alpha
  goes back with a feathered edge. In a video each face is tracked between
  detections with a smoothed crop; frames where a face is lost or none is found
  are reported on stderr. Images that are already face crops should use
  --whole-frame: the whole frame is one crop (non-square frames are stretched).

model:
  --checkpoint {_display(BUNDLED_STUDENT)}  is the bundled student (procedural
  faces and real package photos with generated occluders; rough on faces it never
  saw, see docs/results.md). --artifact takes a
  file exported by python -m targets.export; it must be listed, with a matching
  sha256, in the manifest.json of its folder, and runs in its own runtime (Core ML
  artifacts run only on macOS).

examples:
  python -m facemat.demo --input face.png --checkpoint {_display(BUNDLED_STUDENT)} \\
      --effect tint --whole-frame --out face-tint.png
  python -m facemat.demo --example --out demo.jpg          # the README's first example""",
    )
    parser.add_argument("--input", metavar="IMAGE|VIDEO|CLIP",
                        help="an image (.png, .jpg, ...), a video, or a clip folder (clips/<id> of python -m "
                        "facemat.data.synth --frames 8: played as a video, its flicker measured)")
    parser.add_argument("--example", action="store_true",
                        help="instead of --input: the README's example, matplotlib's Grace Hopper portrait (fetched "
                        "into the cache) with a generated hand over the face; the bundled student unless "
                        "--artifact or --checkpoint is given")
    parser.add_argument("--artifact", metavar="PATH", help="an exported artifact listed in its folder's manifest.json")
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help=f"a student checkpoint, e.g. the bundled {_display(BUNDLED_STUDENT)}")
    parser.add_argument("--effect", default="tint", metavar="|".join(EFFECTS),
                        help="tint: blue colour tint; smooth: bilateral smoothing with a soft lift; cartoon: "
                        "posterized colours with edge lines (default tint)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help=f"side-by-side output: {', '.join(IMAGE_EXTS)} for an image, .mp4 for a video; "
                        "the settings go to FILE.json")
    parser.add_argument("--whole-frame", action="store_true",
                        help="no face detection: each frame is one face crop (for already-cropped faces)")
    parser.add_argument("--detector", default="blazeface", metavar="|".join(DETECTORS),
                        help="face finder: blazeface (short range, default), blazeface-full (far or small faces), "
                        "haar (OpenCV's cascade)")
    parser.add_argument("--margin", type=finite_float, default=None,
                        help="context added on each side of a detected face box, as a fraction of its side "
                        f"(default: the crop contract's, {(DEFAULT_CROP.scale - 1) / 2:g}, or the artifact's manifest)")
    parser.add_argument("--max-frames", type=int, help="stop a video after this many frames")
    parser.add_argument("--no-filter", action="store_true",
                        help="video: no temporal filter after the model (default: facemat.temporal's filter)")
    parser.add_argument("--filter", default="", metavar="k_min=..,d0=..,d1=..,radius=..",
                        help="video: the temporal filter's settings (default: facemat.temporal's)")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    if a.example == (a.input is not None):
        raise ConfigError("give exactly one of --input and --example" + (" (both given)" if a.example else
                                                                          " (the following arguments are required: "
                                                                          "--input)"))
    checkpoint = a.checkpoint
    if a.example and a.artifact is None and a.checkpoint is None:
        checkpoint = str(BUNDLED_STUDENT)
    s = DemoSettings(input=a.input or "example", out=a.out, effect=a.effect, artifact=a.artifact,
                     checkpoint=checkpoint, whole_frame=a.whole_frame, margin=a.margin, max_frames=a.max_frames,
                     detector=a.detector, example=a.example,
                     filter=None if a.no_filter else parse_config(a.filter))
    summary = run_demo(s)
    f = summary.get("flicker")
    if f:
        said = f"{f['filtered']:.2f} with the temporal filter, {f['unfiltered']:.2f} without" if "filtered" in f \
            else f"{f['unfiltered']:.2f} (no filter)"
        gt = f" (ground truth {f['ground_truth']:.2f})" if "ground_truth" in f else ""
        print(f"facemat.demo: flicker of the output alphas: {said}{gt}; {f['how']}")
    faces = summary["faces_per_frame"]
    print(f"facemat.demo: {s.out} ({summary['frames']} frame(s), {sum(faces)} face crop(s), "
          f"{summary['model'].get('id') or summary['model']['path']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
