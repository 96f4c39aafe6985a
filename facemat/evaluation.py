"""Per-image matting scores, aggregated over a dataset, overall and per evaluation band.

Used by ``training.evaluate``, ``quantize.compare`` and ``bench.run``, so every
stage reports the same numbers the same way: each metric is computed per image
(``facemat.metrics``) and averaged over images.

Rules of the means: a NaN per-image value is left out; PSNR leaves out
identical images (infinite PSNR) and is infinite only when every image was
identical; ``max_abs`` is the worst image (0.0 when none was scored); a band in
which no image was scored is absent from :meth:`BandScores.summary`.

Bands (docs/design.md, "Metrics and bands"):

* ``overall``: every pixel;
* ``boundary``: ``boundary_band(gt, width)``, around soft and 0.5-crossing pixels;
* ``uncertainty``: the top ``top`` fraction of the teacher's ``b`` in each image
  (only when ``b`` is given).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from facemat.metrics import boundary_band, matting_metrics, reference_metrics, uncertainty_band

MATTING_KEYS = ("sad", "mse", "grad", "conn", "iou")
REFERENCE_KEYS = ("max_abs", "mse", "psnr")


class BandScores:
    """Accumulates per-image metrics and reports their means per band.

    Args:
        band_width: half-width in pixels of the boundary band.
        top: fraction of pixels in the high-uncertainty band.
        matting: compute the (slower) ground-truth metrics; off when only the
            agreement with a reference is wanted.
    """

    def __init__(self, band_width: int = 8, top: float = 0.10, matting: bool = True):
        self.band_width = band_width
        self.top = top
        self.matting = matting
        self.gt_scores: dict[str, dict[str, list[float]]] = {}
        self.ref_scores: dict[str, dict[str, list[float]]] = {}
        self.images = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, b: np.ndarray | None = None, ref: np.ndarray | None = None) -> None:
        """Score one image.

        Args:
            pred: predicted alpha, ``H x W`` float in [0, 1].
            gt: ground-truth alpha, ``H x W`` float in [0, 1].
            b: teacher Laplace scale ``H x W`` (> 0) for the uncertainty band, or None.
            ref: reference alpha (the FP32 model's) ``H x W`` to compare against, or None.
        """
        bands: dict[str, np.ndarray | None] = {"overall": None, "boundary": boundary_band(gt, width=self.band_width)}
        if b is not None:
            bands["uncertainty"] = uncertainty_band(b, top=self.top)
        for name, mask in bands.items():
            if self.matting:
                for k, v in matting_metrics(pred, gt, mask=mask).items():
                    self.gt_scores.setdefault(name, {}).setdefault(k, []).append(v)
            if ref is not None:
                for k, v in reference_metrics(pred, ref, mask=mask).items():
                    self.ref_scores.setdefault(name, {}).setdefault(k, []).append(v)
        self.images += 1

    @staticmethod
    def _means(scores: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for band, metrics in scores.items():
            out[band] = {}
            for k, values in metrics.items():
                finite = [v for v in values if not math.isnan(v)]
                if k == "psnr":
                    # Mean PSNR over images, with identical images (inf) left out; max_abs is the worst image.
                    finite = [v for v in finite if math.isfinite(v)]
                    out[band][k] = float(np.mean(finite)) if finite else float("inf")
                elif k == "max_abs":
                    out[band][k] = float(np.max(finite)) if finite else 0.0
                else:
                    out[band][k] = float(np.mean(finite)) if finite else float("nan")
        return out

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{"gt": {band: {metric: mean}}, "ref": {...}}``; ``ref`` only when references were given."""
        result = {"gt": self._means(self.gt_scores)} if self.matting else {}
        if self.ref_scores:
            result["ref"] = self._means(self.ref_scores)
        return result


def format_band_table(rows: dict[str, dict[str, dict[str, float]]], keys: tuple[str, ...] = MATTING_KEYS) -> str:
    """Rows ``{row name: {band: {metric: value}}}`` as a text table, one line per row and band."""
    lines = [f"{'model':<22}{'band':<13}" + "".join(f"{k:>10}" for k in keys)]
    for name, bands in rows.items():
        for band, values in bands.items():
            lines.append(f"{name:<22}{band:<13}" + "".join(f"{values.get(k, float('nan')):>10.4f}" for k in keys))
    return "\n".join(lines)


# ------------------------------------------------------------- occlusion split

OCCLUDED_MIN = 0.01
"""An image counts as occluded when occluders hide at least this fraction of its face skin."""


def read_occlusion(root: str, ids: list[str]) -> dict[str, bool] | None:
    """Which images of a dataset folder are occluded, from its ``meta.jsonl``.

    The generators (``python -m facemat.data.synth``, any ``--source``) record
    each sample's ``occluded_fraction``. Returns ``{id: occluded}`` for every id,
    or None when the folder has no ``meta.jsonl`` or it does not cover every id
    (a user's folder: no split is reported then).
    """
    found: dict[str, bool] = {}
    for i, row in _meta_rows(root).items():
        try:
            found[i] = float(row["occluded_fraction"]) >= OCCLUDED_MIN
        except (ValueError, KeyError, TypeError):
            continue  # a foreign line: that id stays unknown
    if not all(i in found for i in ids):
        return None
    return {i: found[i] for i in ids}


def read_groups(root: str, ids: list[str]) -> dict[str, list[str]] | None:
    """The named groups each image of a dataset folder belongs to, from its ``meta.jsonl``.

    One group per occluder kind the generator put on the image (``hand``,
    ``glasses``, ...), ``no occluder`` for an image without any, and ``face NAME``
    for an image made from a real photo (``--source real|real-holdout``). An
    image may be in several groups. None when the folder has no ``meta.jsonl``
    or a row lacks the ``occluders`` list (a user's folder: no breakdown then).
    """
    rows = _meta_rows(root)
    found: dict[str, list[str]] = {}
    for i in ids:
        row = rows.get(i)
        kinds = None if row is None else row.get("occluders")
        if not isinstance(kinds, list):
            return None
        groups = list(dict.fromkeys(str(k) for k in kinds)) or ["no occluder"]
        if isinstance(row.get("face"), str):
            groups.append(f"face {row['face']}")
        found[i] = groups
    return found


def _meta_rows(root: str) -> dict[str, dict]:
    """``{id: row}`` of a folder's ``meta.jsonl`` ({} when absent); torn or foreign lines are skipped."""
    path = Path(root) / "meta.jsonl"
    if not path.is_file():
        return {}
    rows: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            rows[str(row["id"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


class GroupScores:
    """Overall matting scores of one model over named groups of images; an image may be in several.

    ``add(pred, gt, groups)`` scores one image and returns its metrics;
    ``add_values(values, groups)`` files metrics already computed; ``summary()``
    -> ``{group: {metric: mean, "images": n}}`` in the order groups were first
    seen (a group without images is absent).
    """

    def __init__(self) -> None:
        # group -> metric -> per-image values (overall band only: no boundary or uncertainty masks needed)
        self.scores: dict[str, dict[str, list[float]]] = {}
        self.images: dict[str, int] = {}

    def add(self, pred: np.ndarray, gt: np.ndarray, groups: list[str]) -> dict[str, float]:
        values = matting_metrics(pred, gt)
        self.add_values(values, groups)
        return values

    def add_values(self, values: dict[str, float], groups: list[str]) -> None:
        for name in groups:
            for k, v in values.items():
                self.scores.setdefault(name, {}).setdefault(k, []).append(v)
            self.images[name] = self.images.get(name, 0) + 1

    def summary(self) -> dict[str, dict[str, float]]:
        means = BandScores._means(self.scores)  # the same NaN rule as every band's means
        return {name: {**means[name], "images": n} for name, n in self.images.items()}


class SplitScores(GroupScores):
    """Overall matting scores of one model, over all images and split into occluded / unoccluded.

    ``add(pred, gt, occluded)``; ``summary()`` -> ``{"all": {...}, "occluded": {...},
    "unoccluded": {...}}`` (metric means; a group without images is left out).
    """

    GROUPS = ("all", "occluded", "unoccluded")

    def add(self, pred: np.ndarray, gt: np.ndarray, occluded: bool | None) -> dict[str, float]:  # type: ignore[override]
        groups = ["all"] + ([] if occluded is None else ["occluded" if occluded else "unoccluded"])
        return super().add(pred, gt, groups)

    def summary(self) -> dict[str, dict[str, float]]:
        found = super().summary()
        return {name: found[name] for name in self.GROUPS if name in found}


# ------------------------------------------------------------- clips: temporal stability

TEMPORAL_KEYS = ("flicker", "dtssd", "iou", "sad")
"""What clip tables show: flicker x 1000 (still clips), dtSSD x 100 (moving clips), per-frame IoU and SAD."""

IOU_LOSS_MAX = 0.01
"""The most per-frame IoU a stabilising path may give up (the issue's bar)."""


class ClipScores:
    """Per-frame matting scores, flicker and dtSSD of one model over clips, by motion.

    ``add(pred, clip)`` scores one clip (``pred``: ``T x H x W`` alphas for
    ``clip.images``); ``summary()`` -> ``{"still": {...}, "moving": {...}, "all": {...}}``
    (a group without clips is left out) with the means of:

    * ``iou``, ``sad``, ``mse``: per frame, averaged over every frame;
    * ``dtssd``: per clip (:func:`facemat.metrics.dtssd`), averaged over clips;
    * ``flicker``: per still clip with camera transforms, after warping every
      frame back onto frame 0 (:func:`facemat.data.clips.align_to_first`) and
      counting only the pixels all frames see (:func:`facemat.metrics.flicker`, x 1000).
    """

    GROUPS = ("still", "moving", "all")
    FRAME_KEYS = ("iou", "sad", "mse")

    def __init__(self) -> None:
        self.frame_scores: dict[str, dict[str, list[float]]] = {}
        self.clip_scores: dict[str, dict[str, list[float]]] = {}
        self.clips = dict.fromkeys(self.GROUPS, 0)
        self.frames = dict.fromkeys(self.GROUPS, 0)

    def add(self, pred: np.ndarray, clip) -> None:
        from facemat.data.clips import align_to_first
        from facemat.metrics import dtssd, flicker, iou, mse, sad

        pred = np.asarray(pred, np.float32)
        gt = clip.alphas
        if pred.shape != gt.shape:
            raise ValueError(f"clip {clip.id}: predictions of shape {pred.shape} for ground truth of {gt.shape}")
        per_clip = {"dtssd": dtssd(pred, gt)}
        if clip.motion == "still" and clip.cameras is not None:
            aligned, valid = align_to_first(pred, clip.cameras)
            per_clip["flicker"] = flicker(aligned, valid)
        per_frame = {k: [fn(pred[t], gt[t]) for t in range(len(pred))]
                     for k, fn in (("iou", iou), ("sad", sad), ("mse", mse))}
        for group in (clip.motion, "all"):
            for k, values in per_frame.items():
                self.frame_scores.setdefault(group, {}).setdefault(k, []).extend(values)
            for k, v in per_clip.items():
                self.clip_scores.setdefault(group, {}).setdefault(k, []).append(v)
            self.clips[group] += 1
            self.frames[group] += len(pred)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for group in self.GROUPS:
            if not self.clips[group]:
                continue
            means = BandScores._means({"x": {**self.frame_scores.get(group, {}), **self.clip_scores.get(group, {})}})
            out[group] = {**means["x"], "clips": self.clips[group], "frames": self.frames[group]}
        return out


def score_clips(clips: list, outputs: dict[str, list[np.ndarray]], filtered: tuple[str, ...] = (),
                config=None) -> dict[str, dict[str, dict[str, float]]]:
    """:class:`ClipScores` summaries of several models on the same clips, with and without the temporal filter.

    Args:
        clips: :class:`facemat.data.clips.ClipData` items.
        outputs: model name -> per clip ``T x H x W`` alphas (in ``clips`` order).
        filtered: names of ``outputs`` to score again after :func:`facemat.temporal.filter_sequence`,
            as ``"<name>+filter"``.
        config: the filter's :class:`facemat.temporal.TemporalConfig` (its default when None).

    Returns:
        ``{row name: summary}``: every model, each filtered one, and ``ground-truth``
        (the ground truth scored as a prediction: its flicker is what warping
        alone leaves, the floor of the measurement).
    """
    from facemat.temporal import filter_sequence

    rows: dict[str, ClipScores] = {}
    for name, preds in outputs.items():
        if len(preds) != len(clips):
            raise ValueError(f"{name}: outputs for {len(preds)} clips, {len(clips)} clips given")
        rows[name] = ClipScores()
        for clip, pred in zip(clips, preds):
            rows[name].add(pred, clip)
        if name in filtered:
            rows[f"{name}+filter"] = ClipScores()
            for clip, pred in zip(clips, preds):
                rows[f"{name}+filter"].add(filter_sequence(clip.images, pred, config), clip)
    rows["ground-truth"] = ClipScores()
    for clip in clips:
        rows["ground-truth"].add(clip.alphas, clip)
    return {name: sc.summary() for name, sc in rows.items()}


def temporal_checks(rows: dict[str, dict[str, dict[str, float]]], model: str,
                    baseline: str = "mesh-oval") -> list[dict[str, object]]:
    """The issue's bar for a stable path, computed from measured rows (nothing here is tuned to pass).

    ``model`` and ``model+filter`` must be rows; ``baseline`` may be missing
    (then its check is left out).
    """
    raw, filt = rows.get(model, {}), rows.get(f"{model}+filter", {})
    base = rows.get(baseline, {})
    checks: list[dict[str, object]] = []

    def get(row, group, key):
        return row.get(group, {}).get(key)

    f_filt, f_raw, f_base = get(filt, "still", "flicker"), get(raw, "still", "flicker"), get(base, "still", "flicker")
    if f_filt is not None and f_base is not None:
        checks.append({"check": f"{model}+filter flicker <= {baseline} flicker (still clips)",
                       "measured": f"{f_filt:.2f} vs {f_base:.2f} (without the filter {f_raw:.2f})",
                       "ok": bool(f_filt <= f_base)})
    for group, where in (("still", "still clips"), ("all", "all frames")):
        i_raw, i_filt = get(raw, group, "iou"), get(filt, group, "iou")
        if i_raw is not None and i_filt is not None:
            checks.append({"check": f"{model}+filter loses at most {IOU_LOSS_MAX} per-frame IoU ({where})",
                           "measured": f"{i_filt:.4f} vs {i_raw:.4f} ({i_filt - i_raw:+.4f})",
                           "ok": bool(i_raw - i_filt <= IOU_LOSS_MAX)})
    d_raw, d_filt = get(raw, "moving", "dtssd"), get(filt, "moving", "dtssd")
    if d_raw is not None and d_filt is not None:
        checks.append({"check": f"{model}+filter dtSSD below {model}'s (moving clips)",
                       "measured": f"{100 * d_filt:.3f} vs {100 * d_raw:.3f} (x100)",
                       "ok": bool(d_filt < d_raw)})
    return checks


def format_clip_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Clip rows as text: flicker on still clips, dtSSD on moving clips, per-frame IoU and SAD over all frames."""
    head = (f"{'model':<26}{'flicker still':>14}{'dtSSD moving':>14}{'dtSSD still':>13}{'IoU all':>10}"
            f"{'IoU still':>11}{'IoU moving':>12}{'SAD all':>10}")
    lines = [head]

    def cell(row, group, key, scale=1.0, width=10, fmt=".4f"):
        v = row.get(group, {}).get(key)
        return f"{'-':>{width}}" if v is None else f"{v * scale:>{width}{fmt}}"

    for name, row in rows.items():
        lines.append(f"{name:<26}" + cell(row, "still", "flicker", 1, 14, ".2f")
                     + cell(row, "moving", "dtssd", 100, 14, ".3f") + cell(row, "still", "dtssd", 100, 13, ".3f")
                     + cell(row, "all", "iou") + cell(row, "still", "iou", width=11)
                     + cell(row, "moving", "iou", width=12) + cell(row, "all", "sad"))
    counts = next(iter(rows.values()), {})
    lines.append(f"flicker: mean per-pixel std over the aligned frames x 1000; dtSSD x 100; IoU at 0.5 and SAD/1000 "
                 f"per frame; {counts.get('still', {}).get('clips', 0)} still and "
                 f"{counts.get('moving', {}).get('clips', 0)} moving clips. ground-truth: the floor that warping "
                 "frames back leaves.")
    return "\n".join(lines)


def clip_inputs(clip, size: int | None = None) -> np.ndarray:
    """A clip's frames as model inputs: ``T x 3 x S x S`` float32 RGB in [0, 1].

    Frames of another size than ``size`` are resized to it (area when shrinking,
    else bilinear); None keeps the clip's size.
    """
    import cv2

    images = clip.images
    h, w = images.shape[1:3]
    if size is not None and (h, w) != (size, size):
        interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
        images = np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)  # T x H x W x 3 -> T x 3 x H x W


def clip_outputs(alphas: np.ndarray, clip) -> np.ndarray:
    """Model alphas ``T x S x S`` back at the clip's own size (bilinear): ``T x H x W`` float32."""
    import cv2

    alphas = np.asarray(alphas, np.float32)
    h, w = clip.alphas.shape[1:]
    if alphas.shape[1:] != (h, w):
        alphas = np.stack([cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR) for a in alphas])
    return alphas


def clip_predictions(predict, clip, size: int | None = None) -> np.ndarray:
    """A model's alphas for every frame of a clip, at the clip's own size.

    Args:
        predict: ``images N x 3 x S x S float32 RGB in [0, 1] -> alphas N x S x S``.
        clip: a :class:`facemat.data.clips.ClipData`.
        size: the model's input side S (:func:`clip_inputs`); None: the clip's size.

    Returns:
        ``T x H x W`` float32 alphas.
    """
    x = clip_inputs(clip, size)
    return clip_outputs(np.asarray(predict(x), np.float32).reshape(len(x), x.shape[2], x.shape[3]), clip)
