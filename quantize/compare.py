"""``python -m quantize.compare``: FP32 vs PTQ vs QAT-uniform vs QAT-uncertainty, on the same held-out data.

Runs (or reuses, when already finished in ``--out``) the three quantizations of
one recipe, then evaluates the **converted** models and the FP32 student on the
same held-out images at the model's own size:

* SAD, MSE, Grad, Conn, IoU against ground truth, overall and in the boundary
  and high-uncertainty bands (teacher ``b``, top 10 % per image);
* max abs error, MSE and PSNR against the FP32 student, in the same bands.

Writes ``report.json`` and prints the table.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError
from facemat.io import write_json_atomic
from quantize.recipes import RECIPES, check_recipe

RUNS = ("ptq", "qat-uniform", "qat-uncertainty")


@dataclass(frozen=True)
class CompareSettings:
    student: str
    teacher: str
    recipe: str
    out: str
    data: str = "synth"
    eval_data: str | None = None
    eval_count: int = 64
    qat_steps: int = 300
    calib: int = 64
    size: int = 128
    seed: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        check_recipe(self.recipe)
        for flag, path in (("--student", self.student), ("--teacher", self.teacher)):
            if not Path(path).is_file():
                raise ConfigError(f"{flag}: {path} is not a file")
        if self.eval_data is not None and not Path(self.eval_data).is_dir():
            raise ConfigError(f"--eval-data: {self.eval_data} is not a folder")
        if self.eval_count < 1:
            raise ConfigError(f"--eval-count must be >= 1, got {self.eval_count}")
        if self.qat_steps < 1:
            raise ConfigError(f"--qat-steps must be >= 1, got {self.qat_steps}")


def _finished(folder: Path, student_sha: str) -> bool:
    recipe = folder / "recipe.json"
    if not (folder / "model.pt2").is_file() or not recipe.is_file():
        return False
    try:
        return json.loads(recipe.read_text()).get("source_checkpoint_sha256") == student_sha
    except json.JSONDecodeError:
        return False


def _eval_set(s: CompareSettings, size: int):
    if s.eval_data is not None:
        from facemat.data.folder import MattingFolder

        data = MattingFolder(s.eval_data, size=size)
        return torch.utils.data.Subset(data, range(min(len(data), s.eval_count))), s.eval_data
    from facemat.data.synth import SynthDataset

    return SynthDataset(s.eval_count, seed=s.seed + 1000, size=size, split="test"), (
        f"synth split 'test', seed {s.seed + 1000}, {s.eval_count} images at {size}x{size}")


def run_compare(s: CompareSettings) -> dict[str, Any]:
    """Quantize three ways (reusing finished runs) and evaluate; returns the report."""
    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.evaluation import BandScores
    from quantize.core import load_quantized
    from quantize.ptq import PTQSettings, run_ptq
    from quantize.qat import QATSettings, run_qat

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    student_sha = file_sha256(s.student)
    walls: dict[str, float | None] = {}
    for name in RUNS:
        folder = out / name
        if _finished(folder, student_sha):
            print(f"quantize.compare: {name}: already done in {folder}, reusing", file=sys.stderr)
        elif name == "ptq":
            run_ptq(PTQSettings(student=s.student, recipe=s.recipe, out=str(folder), data=s.data, calib=s.calib,
                                size=s.size, seed=s.seed, workers=s.workers))
        else:
            run_qat(QATSettings(student=s.student, teacher=s.teacher, recipe=s.recipe, out=str(folder),
                                data=s.data, weighting=name.split("-")[1], steps=s.qat_steps, size=s.size,
                                seed=s.seed, workers=s.workers))
        walls[name] = json.loads((folder / "recipe.json").read_text()).get("wall_s")

    student, _ = load_checkpoint(s.student, expect="student")
    teacher, _ = load_checkpoint(s.teacher, expect="teacher")
    models = {"fp32": student, **{name: load_quantized(out / name).module() for name in RUNS}}
    size = student.config.size
    data, data_desc = _eval_set(s, size)
    scores = {name: BandScores() for name in models}
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(len(data)):
            item = data[i]
            x = item["image"][None]
            gt = item["alpha"][0].numpy()
            b = teacher(x)[1][0, 0].numpy()
            ref = student(x)[0, 0].numpy()
            for name, model in models.items():
                pred = model(x)[0, 0].numpy()
                scores[name].add(pred, gt, b=b, ref=None if name == "fp32" else ref)
    report = {
        "recipe": s.recipe,
        "student": s.student,
        "student_sha256": student_sha,
        "teacher": s.teacher,
        "eval_data": data_desc,
        "eval_images": len(data),
        "eval_size": size,
        "note": "quantized rows are the converted models (convert_pt2e, re-exported at batch 1), not fake-quant",
        "rows": {name: sc.summary() for name, sc in scores.items()},
        "wall_s": walls,
        "eval_wall_s": time.perf_counter() - t0,
        "settings": asdict(s),
    }
    write_json_atomic(out / "report.json", report)
    return report


def format_report(report: dict[str, Any]) -> str:
    from facemat.evaluation import REFERENCE_KEYS, format_band_table

    gt = {name: row["gt"] for name, row in report["rows"].items()}
    ref = {name: row["ref"] for name, row in report["rows"].items() if "ref" in row}
    walls = ", ".join(f"{k} {v:.0f} s" for k, v in report["wall_s"].items() if v is not None)
    return "\n".join([
        f"recipe {report['recipe']}: {report['eval_images']} held-out images ({report['eval_data']})",
        "against ground truth (means over images; SAD, Grad, Conn /1000):",
        format_band_table(gt),
        "against the FP32 student:",
        format_band_table(ref, REFERENCE_KEYS),
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
    parser.add_argument("--out", required=True, help="folder for ptq/, qat-uniform/, qat-uncertainty/, report.json")
    parser.add_argument("--data", default="synth", help="training/calibration data: 'synth' or a folder")
    parser.add_argument("--eval-data", help="held-out folder (default: generated synth 'test' split)")
    parser.add_argument("--eval-count", type=int, default=64, help="held-out images (default 64)")
    parser.add_argument("--qat-steps", type=int, default=300)
    parser.add_argument("--calib", type=int, default=64, help="PTQ calibration images")
    parser.add_argument("--size", type=int, default=128, help="QAT/calibration resolution")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    report = run_compare(CompareSettings(student=a.student, teacher=a.teacher, recipe=a.recipe, out=a.out,
                                         data=a.data, eval_data=a.eval_data, eval_count=a.eval_count,
                                         qat_steps=a.qat_steps, calib=a.calib, size=a.size, seed=a.seed,
                                         workers=a.workers))
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
