"""``python -m quantize.ptq``: calibration-only post-training quantization (the baseline).

Same quantizer, same BN folding and the same output format as ``quantize.qat``
(``model.pt2`` + ``recipe.json``), so ``targets.export`` takes either.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError, check_size
from facemat.io import ensure_writable_dir, write_json_atomic
from quantize.recipes import RECIPES, check_recipe


@dataclass(frozen=True)
class PTQSettings:
    student: str
    recipe: str
    out: str
    data: str = "synth"
    calib: int = 64
    batch: int = 8
    size: int = 128
    seed: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        check_recipe(self.recipe)
        if not Path(self.student).is_file():
            raise ConfigError(f"--student: {self.student} is not a file")
        if self.calib < 1:
            raise ConfigError(f"--calib must be >= 1 (calibration images), got {self.calib}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        check_size(self.size)
        if self.data != "synth" and not Path(self.data).is_dir():
            raise ConfigError(f"--data: {self.data} is not a folder (give a dataset folder or 'synth')")


def run_ptq(s: PTQSettings) -> Path:
    """Calibrate on ``s.calib`` images and convert; returns the saved ``model.pt2``."""
    from tqdm import tqdm

    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.data.stream import build_datasets
    from quantize.core import batches, check_sizes, convert_and_export, full_view, prepare, save_quantized
    from quantize.recipes import quantizer_description

    t0 = time.perf_counter()
    out = Path(s.out)
    student, ckpt = load_checkpoint(s.student, expect="student")  # a wrong file fails before anything is written
    check_sizes(student, s.size)  # before anything is written
    ensure_writable_dir(out)
    write_json_atomic(out / "config.json", {**s.__dict__, "command": "quantize.ptq"})
    print(f"quantize.ptq: recipe {s.recipe}; preparing (export + {s.recipe} quantizer)", file=sys.stderr)
    prepared = prepare(student, s.recipe, qat=False, size=s.size)
    train_set, _, _ = build_datasets(s.data, s.size, s.seed)
    n_batches = -(-s.calib // s.batch)
    with torch.no_grad():
        for b in tqdm(batches(full_view(train_set), s.batch, 0, n_batches, s.workers), total=n_batches,
                      desc=f"ptq-{s.recipe} calibrate", file=sys.stderr):
            prepared(b["image"])
    program = convert_and_export(prepared, student.config.size)
    recipe = {
        "recipe": s.recipe,
        "method": "ptq",
        "weighting": None,
        "quantizer": quantizer_description(s.recipe),
        "batchnorm": "folded into convolutions before export",
        "source_checkpoint": str(s.student),
        "source_checkpoint_sha256": file_sha256(s.student),
        "source_arch": ckpt["model"]["arch"],
        "source_config": ckpt["model"]["config"],
        "teacher_sha256": None,
        "input_size": student.config.size,
        "calibration_images": n_batches * s.batch,
        "wall_s": time.perf_counter() - t0,
    }
    path = save_quantized(out, program, recipe)
    print(f"quantize.ptq: saved {path} in {recipe['wall_s']:.0f} s", file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m quantize.ptq",
        description="Post-training (calibration-only) int8 quantization of a FaceMat student with a target's "
        "PT2E quantizer. Writes model.pt2, recipe.json and config.json to --out (same format as quantize.qat).",
    )
    parser.add_argument("--student", required=True, help="FP32 student checkpoint")
    parser.add_argument("--data", default="synth", help="'synth' or a dataset folder (calibration images)")
    parser.add_argument("--recipe", required=True, choices=RECIPES, help="target quantizer")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--calib", type=int, default=64, help="calibration images (default 64)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="calibration resolution (multiple of 32)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    run_ptq(PTQSettings(student=a.student, recipe=a.recipe, out=a.out, data=a.data, calib=a.calib, batch=a.batch,
                        size=a.size, seed=a.seed, workers=a.workers))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
