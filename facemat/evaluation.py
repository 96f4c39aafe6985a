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
    path = Path(root) / "meta.jsonl"
    if not path.is_file():
        return None
    found: dict[str, bool] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            found[str(row["id"])] = float(row["occluded_fraction"]) >= OCCLUDED_MIN
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: that id stays unknown
    if not all(i in found for i in ids):
        return None
    return {i: found[i] for i in ids}


class SplitScores:
    """Overall matting scores of one model, over all images and split into occluded / unoccluded.

    ``add(pred, gt, occluded)``; ``summary()`` -> ``{"all": {...}, "occluded": {...},
    "unoccluded": {...}}`` (metric means; a group without images is left out).
    """

    GROUPS = ("all", "occluded", "unoccluded")

    def __init__(self) -> None:
        # group -> metric -> per-image values (overall band only: no boundary or uncertainty masks needed)
        self.scores: dict[str, dict[str, list[float]]] = {}
        self.images = dict.fromkeys(self.GROUPS, 0)

    def add(self, pred: np.ndarray, gt: np.ndarray, occluded: bool | None) -> None:
        values = matting_metrics(pred, gt)
        for name in ["all"] + ([] if occluded is None else ["occluded" if occluded else "unoccluded"]):
            for k, v in values.items():
                self.scores.setdefault(name, {}).setdefault(k, []).append(v)
            self.images[name] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        means = BandScores._means(self.scores)  # the same NaN rule as every band's means
        return {name: {**means[name], "images": self.images[name]} for name in self.GROUPS if self.images[name]}
