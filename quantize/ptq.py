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

from facemat.cli import ArgumentParser, add_debug_flag, add_settings_args, flag, run_main, settings_from_args
from facemat.errors import ConfigError, check_size
from facemat.io import ensure_writable_dir, write_json_atomic
from quantize.recipes import RECIPES, check_recipe


@dataclass(frozen=True)
class PTQSettings:
    """Settings of ``python -m quantize.ptq``; each field is its ``--flag``."""

    student: str = flag(help="FP32 student checkpoint")
    recipe: str = flag(help="target quantizer", choices=RECIPES)
    out: str = flag(help="output folder")
    data: str = flag("synth", help="'synth', 'real', 'mix' (made on the fly) or a dataset folder (calibration images)")
    calib: int = flag(64, help="calibration images (default %(default)s)")
    batch: int = flag(8, help="calibration batch (default %(default)s)")
    size: int = flag(128, help="calibration resolution (multiple of 32)")
    seed: int = flag(1, help="seed of the calibration images")
    workers: int = flag(1, help="data-loading worker processes")

    def __post_init__(self) -> None:
        check_recipe(self.recipe)
        if not Path(self.student).is_file():
            raise ConfigError(f"--student: {self.student} is not a file")
        if self.calib < 1:
            raise ConfigError(f"--calib must be >= 1 (calibration images), got {self.calib}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        check_size(self.size)
        from facemat.data.stream import GENERATED

        if self.data not in GENERATED and not Path(self.data).is_dir():
            raise ConfigError(f"--data: {self.data} is not a folder (give a dataset folder or one of "
                              f"{', '.join(GENERATED)})")


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
    add_settings_args(parser, PTQSettings)
    add_debug_flag(parser)
    run_ptq(settings_from_args(PTQSettings, parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
