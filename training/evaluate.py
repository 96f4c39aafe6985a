"""``python -m training.evaluate``: matting metrics of any checkpoint on any dataset folder.

Reports SAD, MSE, Grad, Conn and IoU (facemat.metrics) as the mean over images:

* overall;
* in the boundary band (a dilated band around the ground truth's soft and
  0.5-crossing pixels);
* in the high-uncertainty band (top 10 % of the teacher's ``b`` per image), when
  a teacher is known: ``--teacher``, or the checkpoint itself if it is one.

With a teacher it also reports whether its uncertainty means something: the
Spearman rank correlation between ``b`` and the teacher's own absolute error,
per image (mean and median) and pooled over all pixels.

Beside the model it always scores the ``mesh-oval`` baseline on the same images:
MediaPipe Face Mesh run in LiteRT on each image, its face-oval landmarks filled as
a polygon (:mod:`facemat.pretrained.facemesh`), the face mask a filter app already
has. Both are reported over all images and split into occluded and unoccluded
ones when the folder's ``meta.jsonl`` says which (the generators write it), with
the model's IoU gain over the baseline, and again by occluder kind and by
photographed face (``face NAME``) when ``meta.jsonl`` lists them, so a report
says which occluders the matte still misses. ``--also DIR`` evaluates more folders in
the same run (e.g. the synth test faces and the real-face generalization set).

``--clips DIR`` scores clip folders (``python -m facemat.data.synth --frames 8``):
per-frame IoU and SAD, flicker on still clips (each frame's alpha warped back
onto frame 0 with the clip's recorded camera transforms) and dtSSD on moving
clips, for the model and the ``mesh-oval`` baseline, each also after the
temporal filter an app runs (:mod:`facemat.temporal`), with the issue's checks:
the filtered model flickers no more than the baseline, loses at most 0.01
per-frame IoU, and has a lower dtSSD than the model alone.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facemat.cli import ArgumentParser, add_debug_flag, finite_float, run_main
from facemat.errors import ConfigError, DataError, check_size
from facemat.io import write_json_atomic
from facemat.safety import refuse_overwrite

from facemat.evaluation import MATTING_KEYS as METRICS
from facemat.temporal import DEFAULT as DEFAULT_FILTER
from facemat.temporal import TemporalConfig, parse_config

POOLED_PIXELS = 2_000_000  # pooled Spearman subsamples to this many pixels


@dataclass(frozen=True)
class EvaluateSettings:
    checkpoint: str
    data: str | None
    teacher: str | None = None
    json_out: str | None = None
    size: int | None = None
    batch: int = 8
    limit: int | None = None
    band_width: int = 8
    uncertainty_top: float = 0.10
    also: tuple[str, ...] = ()
    baseline: bool = True
    clips: tuple[str, ...] = ()
    filter: TemporalConfig = DEFAULT_FILTER

    def __post_init__(self) -> None:
        if self.data is None and not self.clips:
            raise ConfigError("give --data DIR, --clips DIR, or both")
        if self.data is None and self.also:
            raise ConfigError("--also needs --data (the first image folder)")
        for c in self.clips:
            if not Path(c).is_dir():
                raise ConfigError(f"--clips: {c} is not a folder")
        for extra in self.also:
            if not Path(extra).is_dir():
                raise ConfigError(f"--also: {extra} is not a folder")
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"--checkpoint: {self.checkpoint} is not a file")
        if self.teacher is not None and not Path(self.teacher).is_file():
            raise ConfigError(f"--teacher: {self.teacher} is not a file")
        if self.size is not None:
            check_size(self.size)
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if not 0 < self.uncertainty_top < 1:
            raise ConfigError(f"--uncertainty-top must be in (0, 1), got {self.uncertainty_top}")
        refuse_overwrite({"--json": self.json_out}, {"--checkpoint": self.checkpoint, "--teacher": self.teacher})


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")  # undefined for a constant input
    return float(spearmanr(x, y).statistic)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


@torch.no_grad()
def evaluate(settings: EvaluateSettings) -> dict[str, Any]:
    """Evaluate ``settings.checkpoint`` on ``settings.data`` (and ``settings.also``); returns the report dict.

    The report's top level is the first folder's; ``also`` lists the others' reports
    in the same form.
    """
    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.models import model_kind

    model, ckpt = load_checkpoint(settings.checkpoint)
    kind = model_kind(ckpt["model"]["arch"])
    teacher = None
    if settings.teacher is not None:
        teacher, _ = load_checkpoint(settings.teacher, expect="teacher")
    elif kind == "teacher":
        teacher = model
    from facemat.data.folder import MattingFolder

    from facemat.data.clips import scan_clips

    # Check every folder before the baseline starts LiteRT (which logs a line of its own).
    folders = [(folder, MattingFolder(folder, size=settings.size))
               for folder in ((settings.data, *settings.also) if settings.data else ())]
    for c in settings.clips:
        scan_clips(c)
    from facemat.pretrained.facemesh import load_baseline

    mesh = load_baseline() if settings.baseline else None
    head = {
        "checkpoint": str(settings.checkpoint),
        "checkpoint_sha256": file_sha256(settings.checkpoint),
        "arch": ckpt["model"]["arch"],
        "kind": kind,
    }
    reports = [{**head, **_evaluate_folder(model, teacher, mesh, folder, data, settings)}
               for folder, data in folders]
    report = reports[0] if reports else dict(head)
    if settings.also:
        report["also"] = reports[1:]
    if settings.clips:
        report["clips"] = [_evaluate_clips(model, mesh, folder, settings) for folder in settings.clips]
    return report


def _evaluate_clips(model, mesh, folder: str, settings: EvaluateSettings) -> dict[str, Any]:
    """Per-frame, flicker and dtSSD scores of the model and mesh-oval on one clip folder, raw and filtered."""
    from tqdm import tqdm

    from facemat.data.clips import read_clip, scan_clips
    from facemat.evaluation import clip_predictions, score_clips, temporal_checks

    def predict(x: np.ndarray) -> np.ndarray:
        out = model(torch.from_numpy(x))
        return (out[0] if isinstance(out, tuple) else out).numpy()[:, 0]

    ids = scan_clips(folder)
    if settings.limit is not None:
        ids = ids[: settings.limit]
    size = settings.size or int(model.config.size)
    clips, outputs = [], {"model": [], "mesh-oval": []}
    for cid in tqdm(ids, desc=f"evaluate {folder}", file=sys.stderr, disable=len(ids) <= 4):
        clip = read_clip(folder, cid)
        alphas = clip_predictions(predict, clip, size)
        if not np.isfinite(alphas).all():
            raise DataError(f"{settings.checkpoint}: the model outputs NaN or infinite alpha values; "
                            "its weights are broken (diverged training?): evaluate another checkpoint")
        clips.append(clip)
        outputs["model"].append(alphas)
        if mesh is not None and not isinstance(mesh, str):
            outputs["mesh-oval"].append(clip_predictions(lambda x: np.stack([mesh.oval_chw(im) for im in x]), clip))
    if not outputs["mesh-oval"]:
        del outputs["mesh-oval"]
    rows = score_clips(clips, outputs, filtered=tuple(outputs), config=settings.filter)
    frames = int(sum(len(c.images) for c in clips))
    report: dict[str, Any] = {"data": str(folder), "clips": len(clips), "frames": frames, "model_size": size,
                              "filter": settings.filter.to_dict(), "rows": rows,
                              "checks": temporal_checks(rows, "model")}
    if isinstance(mesh, str):
        report["baseline_error"] = mesh
    return report


def _evaluate_folder(model, teacher, mesh, folder: str, data, settings: EvaluateSettings) -> dict[str, Any]:
    from tqdm import tqdm

    from facemat.evaluation import BandScores, GroupScores, SplitScores, read_groups, read_occlusion

    n = len(data) if settings.limit is None else min(settings.limit, len(data))
    occlusion = read_occlusion(folder, data.ids[:n])
    tags = read_groups(folder, data.ids[:n])
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(n)), batch_size=settings.batch)

    scores = BandScores(band_width=settings.band_width, top=settings.uncertainty_top)
    splits = {"model": SplitScores()}
    if mesh is not None and not isinstance(mesh, str):
        splits["mesh-oval"] = SplitScores()
    groups = {name: GroupScores() for name in splits}
    rho_images: list[float] = []
    pooled_b: list[np.ndarray] = []
    pooled_err: list[np.ndarray] = []
    rng = np.random.default_rng(0)
    per_img_pixels = max(1, POOLED_PIXELS // max(1, n))
    face_free = 0  # images whose ground truth is empty (facemat.data.empty)
    for batch in tqdm(loader, desc=f"evaluate {folder}", file=sys.stderr, disable=n <= settings.batch):
        out = model(batch["image"])
        pred = (out[0] if isinstance(out, tuple) else out).numpy()[:, 0]
        if not np.isfinite(pred).all():  # every metric would be NaN: refuse rather than report them
            raise DataError(f"{settings.checkpoint}: the model outputs NaN or infinite alpha values; "
                            "its weights are broken (diverged training?): evaluate another checkpoint")
        gt = batch["alpha"].numpy()[:, 0]
        t_alpha = t_b = None
        if teacher is not None:
            t_out = out if teacher is model else teacher(batch["image"])
            t_alpha, t_b = t_out[0].numpy()[:, 0], t_out[1].numpy()[:, 0]
        for i in range(len(pred)):
            occluded = None if occlusion is None else occlusion[batch["id"][i]]
            face_free += int(not gt[i].any())
            scores.add(pred[i], gt[i], b=None if t_b is None else t_b[i])
            image_tags = [] if tags is None else tags[batch["id"][i]]
            groups["model"].add_values(splits["model"].add(pred[i], gt[i], occluded), image_tags)
            if "mesh-oval" in splits:
                oval = splits["mesh-oval"].add(mesh.oval_chw(batch["image"][i].numpy()), gt[i], occluded)
                groups["mesh-oval"].add_values(oval, image_tags)
            if t_b is not None:
                err = np.abs(t_alpha[i] - gt[i]).ravel()
                b = t_b[i].ravel()
                rho_images.append(_spearman(b, err))
                pick = rng.choice(b.size, size=min(b.size, per_img_pixels), replace=False)
                pooled_b.append(b[pick])
                pooled_err.append(err[pick])

    report: dict[str, Any] = {
        "data": str(folder),
        "images": n,
        "size": settings.size,
        "teacher": settings.teacher if settings.teacher else ("self" if teacher is not None else None),
        "bands": scores.summary()["gt"],
        "band_definitions": {
            "boundary": f"facemat.metrics.boundary_band(gt, width={settings.band_width})",
            "uncertainty": f"top {settings.uncertainty_top:.0%} of the teacher's b per image",
        },
        "splits": {name: sc.summary() for name, sc in splits.items()},
        "occlusion_split": occlusion is not None,
        "face_free_images": face_free,
    }
    if tags is not None:
        report["groups"] = {name: sc.summary() for name, sc in groups.items()}
    if isinstance(mesh, str):
        report["baseline_error"] = mesh
    if rho_images:
        finite = [r for r in rho_images if not math.isnan(r)]
        report["uncertainty_error_spearman"] = {
            "per_image_mean": _mean(rho_images),
            "per_image_median": float(np.median(finite)) if finite else float("nan"),
            "pooled": _spearman(np.concatenate(pooled_b), np.concatenate(pooled_err)),
            "images": len(finite),
        }
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report (and each ``also`` folder's and clip folder's) as plain-text tables."""
    parts = [_format_one(r) for r in [report, *report.get("also", [])] if "bands" in r]
    parts += [format_clips(report, c) for c in report.get("clips", [])]
    return "\n\n".join(parts)


def format_clips(report: dict[str, Any], clips: dict[str, Any]) -> str:
    from facemat.evaluation import format_clip_table

    f = clips["filter"]
    lines = [f"{report['arch']} ({report['kind']}) on clips {clips['data']}: {clips['clips']} clips, "
             f"{clips['frames']} frames; filter k_min {f['k_min']:g}, d0 {f['d0']:g}, d1 {f['d1']:g}, "
             f"radius {f['radius']}", format_clip_table(clips["rows"])]
    if "baseline_error" in clips:
        lines.append(clips["baseline_error"])
    lines += [f"  [{'met' if c['ok'] else 'NOT met'}] {c['check']}: {c['measured']}" for c in clips["checks"]]
    return "\n".join(lines)


def _format_one(report: dict[str, Any]) -> str:
    lines = [f"{report['arch']} ({report['kind']}) on {report['data']}: {report['images']} images",
             f"{'band':<12}" + "".join(f"{m:>10}" for m in METRICS)]
    for band, values in report["bands"].items():
        lines.append(f"{band:<12}" + "".join(f"{values[m]:>10.4f}" for m in METRICS))
    if "uncertainty_error_spearman" in report:
        s = report["uncertainty_error_spearman"]
        lines.append(f"teacher b vs |error| Spearman: per image mean {s['per_image_mean']:.3f}, "
                     f"median {s['per_image_median']:.3f}; pooled {s['pooled']:.3f}")
    lines.append("")
    lines.append(f"{'vs baseline':<12}{'images':>8}" + "".join(f"{m:>10}" for m in ("sad", "iou"))
                 + f"{'mesh-oval':>12}{'IoU gain':>10}")
    splits = report["splits"]
    base = splits.get("mesh-oval", {})
    for group, values in splits["model"].items():
        b = base.get(group)
        tail = f"{b['iou']:>12.4f}{values['iou'] - b['iou']:>+10.4f}" if b else f"{'-':>12}{'-':>10}"
        lines.append(f"{group:<12}{values['images']:>8}{values['sad']:>10.4f}{values['iou']:>10.4f}" + tail)
    if "groups" in report:
        lines.append("")
        lines.append(_format_groups(report["groups"]))
    if "baseline_error" in report:
        lines.append(report["baseline_error"])
    elif not report["occlusion_split"]:
        lines.append("(no meta.jsonl with occluded_fraction for every image: no occluded/unoccluded split)")
    free = report.get("face_free_images", 0)
    if free == report["images"]:
        lines.append("No image here holds a face (every alpha is 0): IoU is the share of images left clean "
                     "(no pixel at alpha >= 0.5), SAD the matte painted; mesh-oval always draws its oval.")
    elif free:
        lines.append(f"{free} of these images hold no face (alpha 0 everywhere): IoU counts 1 for each left "
                     "clean, 0 for each with any pixel at alpha >= 0.5.")
    lines.append("SAD, Grad, Conn are /1000 per image; MSE raw; IoU at alpha >= 0.5; means over images. "
                 "mesh-oval: MediaPipe Face Mesh's face oval filled as a polygon (no occlusion handling).")
    return "\n".join(lines)


def _format_groups(groups: dict[str, dict[str, dict[str, float]]]) -> str:
    """IoU by occluder kind and by photographed face, beside mesh-oval's (images may be in several rows)."""
    base = groups.get("mesh-oval", {})
    lines = [f"{'by group':<16}{'images':>8}{'sad':>10}{'iou':>10}{'mesh-oval':>12}{'IoU gain':>10}"]
    # Occluder kinds A-Z, then the images without any, then the faces.
    order = sorted(groups["model"], key=lambda g: (g.startswith("face "), g == "no occluder", g))
    for name in order:
        values, b = groups["model"][name], base.get(name)
        tail = f"{b['iou']:>12.4f}{values['iou'] - b['iou']:>+10.4f}" if b else f"{'-':>12}{'-':>10}"
        lines.append(f"{name:<16}{values['images']:>8}{values['sad']:>10.4f}{values['iou']:>10.4f}" + tail)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m training.evaluate",
        description="Evaluate a FaceMat checkpoint (teacher or student) on a dataset folder "
        "(images/ + alphas/): SAD, MSE, Grad, Conn and IoU overall, in the boundary band and, with a teacher, "
        "in the high-uncertainty band; plus the teacher's uncertainty/error Spearman correlation.",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (.pt)")
    parser.add_argument("--data", help="dataset folder in the images/ + alphas/ layout")
    parser.add_argument("--also", nargs="+", default=[], metavar="DIR",
                        help="more dataset folders to evaluate in the same run (e.g. the real-face generalization "
                        "set beside the synth test faces); each gets its own table")
    parser.add_argument("--clips", nargs="+", default=[], metavar="DIR",
                        help="clip folders (python -m facemat.data.synth --frames 8): flicker on still clips, dtSSD "
                        "on moving clips and per-frame IoU, with and without the temporal filter")
    parser.add_argument("--filter", default="", metavar="k_min=..,d0=..,d1=..,radius=..",
                        help="temporal filter settings for --clips (default: facemat.temporal's)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the mesh-oval baseline (MediaPipe Face Mesh's face oval, fetched from the "
                        "mediapipe wheel on first use)")
    parser.add_argument("--teacher", help="teacher checkpoint for the high-uncertainty band and the correlation")
    parser.add_argument("--json", dest="json_out", help="also write the report as one JSON object here")
    parser.add_argument("--size", type=int, help="resize to SIZE x SIZE (a multiple of 32); default: native size")
    parser.add_argument("--batch", type=int, default=8, help="images per forward pass")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images (and N clips per clip folder)")
    parser.add_argument("--band-width", type=int, default=8, help="boundary band half-width in pixels")
    parser.add_argument("--uncertainty-top", type=finite_float, default=0.10, help="fraction of pixels in the uncertainty band")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    settings = EvaluateSettings(args.checkpoint, args.data, args.teacher, args.json_out, args.size, args.batch,
                                args.limit, args.band_width, args.uncertainty_top, tuple(args.also),
                                not args.no_baseline, tuple(args.clips), parse_config(args.filter))
    report = evaluate(settings)
    print(format_table(report))
    if settings.json_out:
        write_json_atomic(settings.json_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
