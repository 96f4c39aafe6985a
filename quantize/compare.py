"""``python -m quantize.compare``: FP32 vs PTQ vs QAT-uniform vs QAT-uncertainty, on the same held-out data.

Runs (or reuses, when already finished in ``--out``) the three quantizations of
one recipe once per training seed (``OUT/seed-S/{ptq,qat-uniform,qat-uncertainty}``),
then evaluates the **converted** models and the FP32 student on the same
held-out images at the model's own size:

* SAD, MSE, Grad, Conn, IoU against ground truth, overall and in the boundary
  and high-uncertainty bands (teacher ``b``, top 10 % per image);
* max abs error, MSE and PSNR against the FP32 student, in the same bands.

With ``--clips DIR`` (``python -m facemat.data.synth --frames 8``) the same
models also run on every clip frame: flicker on still clips, dtSSD on moving
clips and per-frame IoU, with and without the temporal filter, and per arm how
much flicker and dtSSD int8 adds over FP32.

A single QAT run moves SAD by about as much as the arms differ from each other,
so each arm is reported as the mean and sample standard deviation over the
seeds, and the issue's acceptance tests are computed from those means
(``checks``). Writes ``report.json`` and prints the table.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from facemat.cli import ArgumentParser, add_debug_flag, finite_float, parse_seeds, run_main
from facemat.errors import ConfigError
from facemat.io import write_json_atomic
from quantize.qat import KD_SOURCES
from quantize.recipes import RECIPES, check_recipe

ARMS = ("ptq", "qat-uniform", "qat-uncertainty")

# The bar for an int8 student: SAD within these fractions of FP32.
OVERALL_LIMIT = 0.02
BAND_LIMIT = 0.05


@dataclass(frozen=True)
class CompareSettings:
    student: str
    teacher: str
    recipe: str
    out: str
    data: str = "synth"
    eval_data: str | None = None
    eval_count: int = 64
    eval_seed: int = 1001
    qat_steps: int = 300
    kd_from: str = "teacher"
    calib: int = 64
    size: int = 128
    seeds: tuple[int, ...] = (1, 2, 3)
    workers: int = 1
    clips: str | None = None
    clip_limit: int | None = None

    def __post_init__(self) -> None:
        if self.clips is not None and not Path(self.clips).is_dir():
            raise ConfigError(f"--clips: {self.clips} is not a folder (python -m facemat.data.synth --frames 8)")
        if self.clip_limit is not None and self.clip_limit < 1:
            raise ConfigError(f"--clip-limit must be >= 1, got {self.clip_limit}")
        check_recipe(self.recipe)
        for flag, path in (("--student", self.student), ("--teacher", self.teacher)):
            if not Path(path).is_file():
                raise ConfigError(f"{flag}: {path} is not a file")
        if self.eval_data is not None and not Path(self.eval_data).is_dir():
            raise ConfigError(f"--eval-data: {self.eval_data} is not a folder")
        if self.eval_count < 1:
            raise ConfigError(f"--eval-count must be >= 1, got {self.eval_count}")
        if self.kd_from not in KD_SOURCES:
            raise ConfigError(f"--kd-from must be one of {', '.join(KD_SOURCES)}, got {self.kd_from!r}")
        if self.qat_steps < 1:
            raise ConfigError(f"--qat-steps must be >= 1, got {self.qat_steps}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"--seeds must be distinct integers >= 0, at least one, got {list(self.seeds)}")


def _run_settings(s: CompareSettings, arm: str, seed: int, folder: Path):
    from quantize.ptq import PTQSettings
    from quantize.qat import QATSettings

    if arm == "ptq":
        return PTQSettings(student=s.student, recipe=s.recipe, out=str(folder), data=s.data, calib=s.calib,
                           size=s.size, seed=seed, workers=s.workers)
    return QATSettings(student=s.student, teacher=s.teacher, recipe=s.recipe, out=str(folder), data=s.data,
                       weighting=arm.split("-")[1], kd_from=s.kd_from, steps=s.qat_steps, size=s.size, seed=seed,
                       workers=s.workers)


def _finished(folder: Path, student_sha: str, teacher_sha: str, settings) -> bool:
    """A run in ``folder`` that quantized this student with these settings (and, for QAT, this teacher)."""
    try:
        recipe = json.loads((folder / "recipe.json").read_text())
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    wanted = {k: v for k, v in asdict(settings).items() if k not in ("out", "workers")}
    same_teacher = recipe.get("teacher_sha256") in (None, teacher_sha)  # None: the run used no teacher
    return ((folder / "model.pt2").is_file() and recipe.get("source_checkpoint_sha256") == student_sha
            and same_teacher and all(config.get(k) == v for k, v in wanted.items()))


def _eval_set(s: CompareSettings, size: int):
    if s.eval_data is not None:
        from facemat.data.folder import MattingFolder

        data = MattingFolder(s.eval_data, size=size)
        return torch.utils.data.Subset(data, range(min(len(data), s.eval_count))), s.eval_data
    from facemat.data.synth import SynthDataset

    return SynthDataset(s.eval_count, seed=s.eval_seed, size=size, split="test"), (
        f"synth split 'test', seed {s.eval_seed}, {s.eval_count} images at {size}x{size}")


def _aggregate(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and sample standard deviation over seeds of every ``{kind: {band: {metric: value}}}`` entry."""
    mean: dict[str, Any] = {}
    sd: dict[str, Any] = {}
    for kind, bands in runs[0].items():
        for band, metrics in bands.items():
            for k in metrics:
                values = np.array([r[kind][band][k] for r in runs], dtype=float)
                mean.setdefault(kind, {}).setdefault(band, {})[k] = float(values.mean())
                sd.setdefault(kind, {}).setdefault(band, {})[k] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, sd


def _checks(rows: dict[str, Any], runs: dict[str, dict[int, Any]]) -> list[dict[str, Any]]:
    """The issue's acceptance tests, computed from the measured means (nothing here is tuned to pass)."""

    def sad(name: str, band: str) -> float:
        return rows[name]["gt"][band]["sad"]

    def pct(name: str, band: str) -> float:
        return 100.0 * (sad(name, band) / sad("fp32", band) - 1.0)

    checks = []
    for arm in ARMS:
        for band, limit in (("overall", OVERALL_LIMIT), ("uncertainty", BAND_LIMIT)):
            checks.append({"check": f"{arm}: SAD {band} within {100 * limit:.0f} % of FP32",
                           "measured": f"{pct(arm, band):+.2f} %", "ok": pct(arm, band) <= 100 * limit})
    for band in ("overall", "uncertainty"):
        for arm in ARMS[1:]:
            checks.append({"check": f"{arm} beats PTQ ({band} SAD)",
                           "measured": f"{sad(arm, band):.4f} vs {sad('ptq', band):.4f}",
                           "ok": sad(arm, band) < sad("ptq", band)})
    wins = sum(runs["qat-uncertainty"][seed]["gt"]["uncertainty"]["sad"]
               <= runs["qat-uniform"][seed]["gt"]["uncertainty"]["sad"] for seed in runs["qat-uniform"])
    checks.append({"check": "qat-uncertainty no worse than qat-uniform (uncertainty-band SAD)",
                   "measured": f"{sad('qat-uncertainty', 'uncertainty'):.4f} vs {sad('qat-uniform', 'uncertainty'):.4f}"
                               f" (no worse in {wins} of {len(runs['qat-uniform'])} seeds)",
                   "ok": sad("qat-uncertainty", "uncertainty") <= sad("qat-uniform", "uncertainty")})
    return checks


def run_compare(s: CompareSettings) -> dict[str, Any]:
    """Quantize three ways per seed (reusing finished runs) and evaluate; returns the report."""
    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.evaluation import BandScores
    from quantize.core import load_quantized
    from quantize.ptq import run_ptq
    from quantize.qat import run_qat

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    student_sha = file_sha256(s.student)
    teacher_sha = file_sha256(s.teacher)
    walls: dict[str, float | None] = {}
    total = len(s.seeds) * len(ARMS)
    for i, (seed, arm) in enumerate(((seed, arm) for seed in s.seeds for arm in ARMS), start=1):
        folder = out / f"seed-{seed}" / arm
        settings = _run_settings(s, arm, seed, folder)
        if _finished(folder, student_sha, teacher_sha, settings):
            print(f"quantize.compare: [{i}/{total}] {arm} seed {seed}: already done in {folder}, reusing",
                  file=sys.stderr)
        else:
            print(f"quantize.compare: [{i}/{total}] {arm} seed {seed}", file=sys.stderr)
            (run_ptq if arm == "ptq" else run_qat)(settings)
        walls[f"seed-{seed}/{arm}"] = json.loads((folder / "recipe.json").read_text()).get("wall_s")

    student, _ = load_checkpoint(s.student, expect="student")
    teacher, _ = load_checkpoint(s.teacher, expect="teacher")
    models = {"fp32": student}
    for seed in s.seeds:
        for arm in ARMS:
            models[f"seed-{seed}/{arm}"] = load_quantized(out / f"seed-{seed}" / arm).module()
    size = student.config.size
    data, data_desc = _eval_set(s, size)
    scores = {name: BandScores() for name in models}
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in tqdm(range(len(data)), desc="quantize.compare: evaluate", file=sys.stderr):
            item = data[i]
            x = item["image"][None]
            gt = item["alpha"][0].numpy()
            b = teacher(x)[1][0, 0].numpy()
            ref = student(x)[0, 0].numpy()
            for name, model in models.items():
                pred = model(x)[0, 0].numpy()
                scores[name].add(pred, gt, b=b, ref=None if name == "fp32" else ref)
    temporal = _temporal(s, models, size) if s.clips else None
    runs = {arm: {seed: scores[f"seed-{seed}/{arm}"].summary() for seed in s.seeds} for arm in ARMS}
    rows: dict[str, Any] = {"fp32": scores["fp32"].summary()}
    sds: dict[str, Any] = {}
    for arm in ARMS:
        rows[arm], sds[arm] = _aggregate(list(runs[arm].values()))
    report = {
        "recipe": s.recipe,
        "student": s.student,
        "student_sha256": student_sha,
        "teacher": s.teacher,
        "eval_data": data_desc,
        "eval_images": len(data),
        "eval_size": size,
        "seeds": list(s.seeds),
        "note": "quantized rows are the converted models (convert_pt2e, re-exported at batch 1), not fake-quant; "
                "each quantized row is the mean over the seeds, 'sd' its sample standard deviation",
        "rows": rows,
        "sd": sds,
        "runs": {arm: {str(seed): summary for seed, summary in per_seed.items()} for arm, per_seed in runs.items()},
        "checks": _checks(rows, runs),
        "temporal": temporal,
        "wall_s": walls,
        "eval_wall_s": time.perf_counter() - t0,
        "settings": asdict(s),
    }
    write_json_atomic(out / "report.json", report)
    return report


def _temporal(s: CompareSettings, models: dict[str, Any], size: int) -> dict[str, Any]:
    """Clip scores of FP32 and every quantized model (raw and filtered), each arm as the mean over its seeds."""
    from facemat.data.clips import load_clips
    from facemat.evaluation import clip_predictions, score_clips

    clips = load_clips(s.clips, s.clip_limit)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    with torch.no_grad():
        for clip in tqdm(clips, desc="quantize.compare: clips", file=sys.stderr):
            for name, model in models.items():
                # One frame at a time: the converted programs were re-exported at batch 1.
                outputs[name].append(clip_predictions(
                    lambda x: np.concatenate([model(torch.from_numpy(f[None]))[:, 0].numpy() for f in x]), clip, size))
    per_model = score_clips(clips, outputs, filtered=tuple(outputs))
    rows: dict[str, Any] = {"fp32": per_model["fp32"], "fp32+filter": per_model["fp32+filter"],
                            "ground-truth": per_model["ground-truth"]}
    for arm in ARMS:
        for suffix in ("", "+filter"):
            seeds = [per_model[f"seed-{seed}/{arm}{suffix}"] for seed in s.seeds]
            rows[arm + suffix] = {group: {k: float(np.mean([r[group][k] for r in seeds])) for k in seeds[0][group]}
                                  for group in seeds[0]}
    added = {}
    for arm in ARMS:
        for suffix in ("", "+filter"):
            q, f = rows[arm + suffix], rows["fp32" + suffix]
            added[arm + suffix] = {"flicker": q["still"]["flicker"] - f["still"]["flicker"],
                                   "dtssd": q["moving"]["dtssd"] - f["moving"]["dtssd"],
                                   "iou": q["all"]["iou"] - f["all"]["iou"]}
    return {"data": str(s.clips), "clips": len(clips), "rows": rows, "int8_minus_fp32": added,
            "per_model": per_model, "note": "each arm's rows are the mean over its seeds"}


def format_temporal(temporal: dict[str, Any]) -> list[str]:
    from facemat.evaluation import format_clip_table

    lines = [f"temporal stability on {temporal['clips']} clips ({temporal['data']}), quantized rows mean over seeds:",
             format_clip_table(temporal["rows"]), "what int8 adds over FP32 (same filter setting):"]
    for name, d in temporal["int8_minus_fp32"].items():
        verdict = "adds flicker" if d["flicker"] > 0 else "no added flicker"
        lines.append(f"  {name:<22} flicker {d['flicker']:+.2f}, dtSSD x100 {100 * d['dtssd']:+.3f}, "
                     f"IoU {d['iou']:+.4f}: {verdict}")
    return lines


def format_report(report: dict[str, Any]) -> str:
    from facemat.evaluation import REFERENCE_KEYS, format_band_table

    rows, sds = report["rows"], report.get("sd", {})
    n = len(report.get("seeds", [1]))
    head = f"{'model':<18}" + "".join(f"{band + ' SAD':>24}" for band in ("overall", "boundary", "uncertainty"))
    summary = [head]
    for name, row in rows.items():
        cells = []
        for band in ("overall", "boundary", "uncertainty"):
            value = row["gt"][band]["sad"]
            change = 100.0 * (value / rows["fp32"]["gt"][band]["sad"] - 1.0)
            spread = f" ±{sds[name]['gt'][band]['sad']:.4f}" if name in sds and n > 1 else ""
            cells.append(f"{value:.4f}{spread} ({change:+.1f}%)" if name != "fp32" else f"{value:.4f}")
        summary.append(f"{name:<18}" + "".join(f"{c:>24}" for c in cells))
    gt = {name: row["gt"] for name, row in rows.items()}
    ref = {name: row["ref"] for name, row in rows.items() if "ref" in row}
    walls = ", ".join(f"{k} {v:.0f} s" for k, v in report["wall_s"].items() if v is not None)
    checks = [f"  [{'met' if c['ok'] else 'NOT met'}] {c['check']}: {c['measured']}" for c in report.get("checks", [])]
    return "\n".join([
        f"recipe {report['recipe']}: {report['eval_images']} held-out images ({report['eval_data']}); "
        f"quantized rows: mean over {n} seed(s) {report.get('seeds')}" + (" ± sample sd" if n > 1 else ""),
        "SAD/1000 against ground truth (change from FP32):",
        *summary,
        "all metrics against ground truth (means; SAD, Grad, Conn /1000):",
        format_band_table(gt),
        "against the FP32 student:",
        format_band_table(ref, REFERENCE_KEYS),
        "acceptance checks:",
        *checks,
        *(format_temporal(report["temporal"]) if report.get("temporal") else []),
        f"wall time: {walls}",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m quantize.compare",
        description="Run PTQ, plain QAT and uncertainty-aware QAT for one recipe (reusing finished runs in "
        "--out) and compare the converted int8 models with the FP32 student on the same held-out images, "
        "overall and in the boundary and high-uncertainty bands. Writes report.json.",
    )
    parser.add_argument("--student", required=True, help="FP32 student checkpoint")
    parser.add_argument("--teacher", required=True, help="teacher checkpoint (uncertainty weights and band)")
    parser.add_argument("--recipe", required=True, choices=RECIPES)
    parser.add_argument("--out", required=True,
                        help="folder for seed-S/{ptq,qat-uniform,qat-uncertainty}/ and report.json")
    parser.add_argument("--data", default="synth", help="training/calibration data: 'synth' or a folder")
    parser.add_argument("--eval-data", help="held-out folder (default: generated synth 'test' split)")
    parser.add_argument("--eval-count", type=int, default=64, help="held-out images (default 64)")
    parser.add_argument("--eval-seed", type=int, default=1001,
                        help="seed of the generated held-out faces when --eval-data is not given (default 1001)")
    parser.add_argument("--qat-steps", type=int, default=300)
    parser.add_argument("--kd-from", default="teacher", choices=KD_SOURCES,
                        help="QAT distillation target for both QAT arms: the teacher (default) or the FP32 student")
    parser.add_argument("--calib", type=int, default=64, help="PTQ calibration images")
    parser.add_argument("--size", type=int, default=128, help="QAT/calibration resolution")
    parser.add_argument("--seeds", default="1,2,3",
                        help="training seeds: each arm runs once per seed and is reported as mean ± sd (default 1,2,3)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clips", help="clip folder (python -m facemat.data.synth --frames 8): flicker, dtSSD and "
                        "per-frame IoU of FP32 and every int8 model, with and without the temporal filter")
    parser.add_argument("--clip-limit", type=int, help="use only the first N clips")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    report = run_compare(CompareSettings(student=a.student, teacher=a.teacher, recipe=a.recipe, out=a.out,
                                         data=a.data, eval_data=a.eval_data, eval_count=a.eval_count,
                                         eval_seed=a.eval_seed, qat_steps=a.qat_steps, kd_from=a.kd_from, calib=a.calib, size=a.size,
                                         seeds=parse_seeds(a.seeds), workers=a.workers, clips=a.clips,
                                         clip_limit=a.clip_limit))
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
