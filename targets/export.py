"""``python -m targets.export``: build artifacts per target x precision, check parity, write the manifest.

Each artifact is built into ``<out>/.staging/``, verified (delegation, op set,
weight precision, I/O spec), run in its own runtime on generated faces where this
OS can run it and compared with the eager FP32 student, and only then moved into
``<out>/`` and recorded in ``<out>/manifest.json``. An artifact that fails parity
never replaces a good one, and the manifest keeps every other entry.

Re-running an export whose artifact is already in the manifest with the same
source hash and options is a no-op (``--force`` rebuilds).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError, FaceMatError, check_size
from targets.common import TARGETS, ExportError, ExportJob, IOSpec, RuntimeUnavailable, Source

EXTENSIONS = {"executorch": ".pte", "coreml": ".mlpackage", "tflite": ".tflite", "onnx": ".onnx"}
DELEGATES = ("xnnpack", "coreml")


def target_module(target: str):
    """The module implementing ``target`` (imported lazily: back-ends are heavy)."""
    if target not in TARGETS:
        raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    return importlib.import_module(f"targets.{target}")


def precisions(target: str, delegate: str | None = None) -> dict[str, str]:
    """precision -> the source it needs (``checkpoint`` or a quantize recipe) for ``target``."""
    mod = target_module(target)
    if target == "executorch":
        return mod.PRECISIONS_BY_DELEGATE[delegate or "xnnpack"]
    return mod.PRECISIONS


@dataclass(frozen=True)
class ExportSettings:
    """Resolved settings of one ``targets.export`` run (saved as ``export-config.json``)."""

    out: str = "artifacts"
    target: str | None = None
    precision: str | None = None
    checkpoint: str | None = None
    quantized: tuple[str, ...] = ()
    all: bool = False
    delegate: str | None = None
    size: int | None = None
    layout: str = "NCHW"
    coreml_input: str = "tensor"
    min_deployment: str | None = None
    allow_portable: bool = False
    bundle: bool = False
    parity_images: int = 16
    calib_images: int = 32
    force: bool = False

    def __post_init__(self) -> None:
        if self.target is not None and self.target not in TARGETS:
            raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if not self.all and (self.target is None or self.precision is None):
            raise ConfigError("give --target and --precision for one artifact, or --all for every artifact the "
                              "inputs allow (optionally with --target to limit it to one target)")
        if self.all and self.precision is not None:
            raise ConfigError(f"--precision {self.precision!r} with --all: --all exports every precision; "
                              "drop one of them")
        if self.checkpoint is None and not self.quantized:
            raise ConfigError("nothing to export: give --checkpoint STUDENT.pt and/or --quantized DIR")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ConfigError(f"--checkpoint: {self.checkpoint} is not a file")
        for q in self.quantized:
            if not Path(q).is_dir():
                raise ConfigError(f"--quantized: {q} is not a folder (a quantize.qat / quantize.ptq output)")
        if self.delegate is not None and self.delegate not in DELEGATES:
            raise ConfigError(f"--delegate must be one of {', '.join(DELEGATES)}, got {self.delegate!r}")
        if self.delegate is not None and self.target not in (None, "executorch"):
            raise ConfigError("--delegate applies to --target executorch only")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"--layout must be NCHW or NHWC, got {self.layout!r}")
        if self.coreml_input not in ("tensor", "image"):
            raise ConfigError(f"--coreml-input must be tensor or image, got {self.coreml_input!r}")
        if self.size is not None:
            check_size(self.size, "--size")
        if self.parity_images < 1:
            raise ConfigError(f"--parity-images must be >= 1, got {self.parity_images}")
        if self.calib_images < 1:
            raise ConfigError(f"--calib-images must be >= 1, got {self.calib_images}")


@dataclass(frozen=True)
class Plan:
    """One artifact of the matrix: what to build, from which source."""

    target: str
    precision: str
    delegate: str | None
    source_key: str  # "checkpoint" or a recipe name
    layout: str
    input_kind: str

    @property
    def id(self) -> str:
        parts = [self.target]
        if self.target == "executorch":
            parts.append(self.delegate or "xnnpack")
        parts.append(self.precision)
        if self.layout == "NHWC":
            parts.append("nhwc")
        if self.input_kind == "image":
            parts.append("image")
        return "-".join(parts)

    @property
    def filename(self) -> str:
        return self.id + EXTENSIONS[self.target]


def plan_matrix(s: ExportSettings, available: set[str]) -> list[Plan]:
    """The artifacts to build. ``available``: ``"checkpoint"`` and/or the recipes of the quantized inputs."""
    targets = [s.target] if s.target else list(TARGETS)
    plans: list[Plan] = []
    for t in targets:
        delegates: list[str | None] = [None]
        if t == "executorch":
            delegates = [s.delegate] if s.delegate else (list(DELEGATES) if s.all else ["xnnpack"])
        for d in delegates:
            table = precisions(t, d)
            wanted = list(table) if s.all else [s.precision]
            for p in wanted:
                if p not in table:
                    raise ConfigError(f"--precision {p!r} is not offered for {t}"
                                      f"{' with the ' + d + ' delegate' if d else ''}; choose from {', '.join(table)}")
                need = table[p]
                if need not in available:
                    if s.all:
                        continue
                    what = "--checkpoint STUDENT.pt" if need == "checkpoint" else \
                        f"--quantized DIR made with the {need!r} recipe (python -m quantize.qat --recipe {need})"
                    raise ConfigError(f"{t} {p} is built from {what}; it was not given")
                layout = s.layout if t in ("tflite", "onnx", "executorch") else "NCHW"
                kind = s.coreml_input if t == "coreml" else "tensor"
                plans.append(Plan(t, p, d if t == "executorch" else None, need, layout, kind))
    if not plans:
        raise ConfigError("the given inputs allow no artifact for this selection "
                          f"(have: {', '.join(sorted(available))})")
    return plans


def _load_sources(s: ExportSettings) -> dict[str, Source]:
    from targets.source import from_checkpoint, from_quantized

    sources: dict[str, Source] = {}
    if s.checkpoint:
        sources["checkpoint"] = from_checkpoint(s.checkpoint)
    for q in s.quantized:
        src = from_quantized(q, checkpoint=s.checkpoint)
        if src.recipe in sources:
            raise ConfigError(f"--quantized: two folders with recipe {src.recipe!r} "
                              f"({sources[src.recipe].path.parent} and {q}); give one per recipe")
        sources[src.recipe] = src
    if s.size is not None:
        for key, src in list(sources.items()):
            if src.size == s.size:
                continue
            if src.kind == "quantized":
                raise ConfigError(f"--size {s.size}: the {key} quantized model is fixed at {src.size}x{src.size}; "
                                  "re-run quantize with that size, or drop --size")
            step = getattr(src.model, "input_multiple", 32)  # 64 for a student that pools its input 2x
            if s.size % step or s.size < 2 * step:
                raise ConfigError(f"--size {s.size}: this student needs a multiple of {step} of at least {2 * step}; "
                                  "pick another --size, or drop it to use the model's own")
            sources[key] = Source(kind=src.kind, path=src.path, sha256=src.sha256, model=src.model, size=s.size)
    return sources


def _entry_key(plan: Plan, src: Source, s: ExportSettings) -> dict[str, Any]:
    """What makes an existing artifact up to date."""
    from facemat.crop import DEFAULT as crop

    return {"source_sha256": src.sha256, "size": src.size, "layout": plan.layout, "input_kind": plan.input_kind,
            "min_deployment": s.min_deployment, "bundle": s.bundle and plan.target == "executorch",
            "allow_portable": s.allow_portable, "crop": crop.to_manifest()}


def _place(staged: Path, final: Path) -> None:
    """Move a verified artifact (file or folder) over the old one."""
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)


class _References:
    """Eager FP32 and int8-program outputs on the parity images, computed once per source."""

    def __init__(self, count: int):
        self.count = count
        self._data: dict[int, Any] = {}
        self._out: dict[tuple[str, int], np.ndarray] = {}

    def data(self, size: int):
        from targets.parity import parity_images

        if size not in self._data:
            self._data[size] = parity_images(size, self.count)
        return self._data[size]

    def fp32(self, src: Source) -> np.ndarray:
        from targets.parity import torch_outputs

        key = ("fp32:" + src.sha256 if src.kind == "checkpoint" else "fp32-of:" + src.sha256, src.size)
        if key not in self._out:
            self._out[key] = torch_outputs(src.model, self.data(src.size).images)
        return self._out[key]

    def program(self, src: Source) -> np.ndarray | None:
        from targets.parity import torch_outputs

        if src.program is None:
            return None
        key = ("prog:" + src.sha256, src.size)
        if key not in self._out:
            self._out[key] = torch_outputs(src.program.module(), self.data(src.size).images)
        return self._out[key]


def calibration_images(size: int, count: int) -> list[np.ndarray]:
    """Generated faces of the ``calib`` split (never the parity split) for runtime-side int8 calibration."""
    from facemat.data.synth import SynthDataset

    ds = SynthDataset(count, seed=2025, size=size, split="calib")
    return [ds[i]["image"].numpy()[None] for i in range(count)]  # each 1 x 3 x S x S float32


def _source_record(src: Source) -> dict[str, Any]:
    rec = {"kind": src.kind, "path": str(src.path), "sha256": src.sha256, "size": src.size}
    if src.recipe_info is not None:
        info = src.recipe_info
        rec.update(recipe=src.recipe, method=info.get("method"), weighting=info.get("weighting"),
                   kd_from=info.get("kd_from"),
                   float_checkpoint=info.get("source_checkpoint"),
                   float_checkpoint_sha256=info.get("source_checkpoint_sha256"))
    return rec


def export_one(plan: Plan, src: Source, s: ExportSettings, refs: _References, out: Path) -> dict[str, Any]:
    """Build, verify, run and compare one artifact; returns its manifest entry (artifact moved into place)."""
    from facemat.crop import DEFAULT as crop
    from targets.manifest import artifact_bytes, artifact_sha256, now
    from targets.parity import check, measure, parity_limits

    mod = target_module(plan.target)
    staging = out / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    io = IOSpec.from_model(src.model, layout=plan.layout, input_kind=plan.input_kind)
    if io.size != src.size:
        raise ExportError(f"{src.path}: built for input size {src.size}, but its FP32 model declares {io.size}")
    options: dict[str, Any] = {"allow_portable": s.allow_portable}
    if s.min_deployment:
        options["min_deployment"] = s.min_deployment
    if plan.target == "onnx" and plan.precision == "int8":
        options["calib_images"] = calibration_images(src.size, s.calib_images)
    data = refs.data(src.size)
    if plan.target == "executorch" and s.bundle:
        n = min(4, len(data))
        expected = refs.program(src) if src.program is not None else refs.fp32(src)
        options["bundle_inputs"] = [data.images[i][None] for i in range(n)]
        options["bundle_expected"] = [expected[i][None, None] for i in range(n)]
    job = ExportJob(target=plan.target, precision=plan.precision, path=staging / plan.filename, io=io,
                    delegate=plan.delegate, options=options)
    t0 = time.perf_counter()
    built = mod.build(job, src)
    build_s = time.perf_counter() - t0
    parity: dict[str, Any] | None = None
    if built.runs_here:
        runner = mod.load_runner(built.path, built.io)
        parity = measure(runner, refs.fp32(src), data, refs.program(src))
        limits = parity_limits(plan.precision, src.recipe_info)
        parity["thresholds"] = check(plan.precision, parity["vs_fp32"], parity.get("vs_program"), plan.id, limits)
        parity["passed"] = True
    final = out / plan.filename
    _place(built.path, final)
    extra = []
    for name in built.extra_files:
        _place(staging / name, out / name)
        extra.append({"path": name, "sha256": artifact_sha256(out / name)})
    inp, outs = io.to_manifest(built.dtype)
    return {
        "id": plan.id, "target": plan.target, "precision": plan.precision, "delegate": plan.delegate,
        "path": plan.filename, "sha256": artifact_sha256(final), "bytes": artifact_bytes(final),
        "input": inp, "outputs": outs, "crop": crop.to_manifest(), "source": _source_record(src),
        "converter": built.converter, "runtime": built.runtime,
        "runs_here": built.runs_here,
        "runtime_check": ("ran here: parity passed" if built.runs_here else built.not_run_reason),
        "parity": parity, "checks": built.checks, "extra_files": extra,
        "export_s": round(build_s, 2), "key": _entry_key(plan, src, s), "created": now(),
    }


def run_export(s: ExportSettings) -> dict[str, Any]:
    """Export every planned artifact; returns the manifest. Raises ExportError listing failures (others are kept)."""
    from facemat.io import ensure_writable_dir, write_json_atomic
    from targets.manifest import NAME, read_manifest, update_manifest, verify_entry

    out = ensure_writable_dir(s.out)
    manifest_path = out / NAME
    existing = read_manifest(manifest_path)["artifacts"]
    sources = _load_sources(s)
    plans = plan_matrix(s, set(sources))
    refs = _References(s.parity_images)
    failures: list[str] = []
    for i, plan in enumerate(plans, 1):
        src = sources[plan.source_key]
        head = f"targets.export: [{i}/{len(plans)}] {plan.id}"
        old = existing.get(plan.id)
        if old and not s.force and old.get("key") == _entry_key(plan, src, s):
            try:
                verify_entry(out, old)
                print(f"{head}: up to date, skipped (--force rebuilds)", file=sys.stderr)
                continue
            except FaceMatError:
                pass
        print(f"{head}: building from {src.kind} {src.path}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            entry = export_one(plan, src, s, refs, out)
        except RuntimeUnavailable as exc:
            failures.append(f"{plan.id}: {exc}")
            print(f"{head}: FAILED: {exc}", file=sys.stderr)
            continue
        except (ExportError, ConfigError) as exc:
            failures.append(f"{plan.id}: {exc}")
            print(f"{head}: FAILED: {exc}", file=sys.stderr)
            if not s.all:
                break
            continue
        update_manifest(manifest_path, {plan.id: entry})
        par = entry["parity"]
        if par:
            f = par["vs_fp32"]
            how = f"parity vs FP32 on {par['images']} faces: max abs {f['max_abs']:.2e}, MSE {f['mse']:.2e}"
        else:
            how = entry["runtime_check"]
        print(f"{head}: ok in {time.perf_counter() - t0:.1f} s, {entry['bytes'] / 1e6:.2f} MB; {how}", file=sys.stderr)
    shutil.rmtree(out / ".staging", ignore_errors=True)
    manifest = read_manifest(manifest_path)
    if failures:
        raise ExportError(f"{len(failures)} of {len(plans)} artifacts failed (the rest are in {manifest_path}): "
                          + "; ".join(failures))
    # Written once every artifact is in place: a failed or interrupted export leaves the previous settings.
    write_json_atomic(out / "export-config.json", {**asdict(s), "quantized": list(s.quantized),
                                                   "command": "targets.export"})
    print(f"targets.export: {len(plans)} artifacts in {manifest_path}", file=sys.stderr)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m targets.export",
        description="Export a FaceMat student to Core ML, ExecuTorch, TFLite and ONNX. Each artifact is verified, "
        "run in its own runtime on generated faces where this OS can (Core ML: macOS only) and compared with the "
        "eager FP32 model, then recorded in OUT/manifest.json with its sha256, I/O spec and parity figures.",
        epilog="Precisions: executorch (xnnpack) fp32 | int8 (needs --quantized from recipe xnnpack); executorch "
        "(--delegate coreml) fp16 | int8 (recipe coreml); coreml fp32 | fp16 | w8 | w8a8 (recipe coreml); "
        "tflite fp32 | fp16 | int8 (recipe litert); onnx fp32 | int8 (calibrated here from --checkpoint).",
    )
    parser.add_argument("--target", choices=TARGETS, help="one target (with --all: every precision of it)")
    parser.add_argument("--precision", help="fp32, fp16, int8, w8 or w8a8 (see below)")
    parser.add_argument("--checkpoint", help="FP32 student checkpoint (python -m training.distill)")
    parser.add_argument("--quantized", action="append", default=[], metavar="DIR",
                        help="a quantize.qat / quantize.ptq output folder; repeat for several recipes")
    parser.add_argument("--out", default="artifacts", help="artifact folder with manifest.json (default artifacts)")
    parser.add_argument("--all", action="store_true", help="export every target x precision the inputs allow")
    parser.add_argument("--delegate", choices=DELEGATES, help="ExecuTorch delegate (default xnnpack; --all: both)")
    parser.add_argument("--size", type=int, help="input side (default: the model's own; FP32 sources only)")
    parser.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW",
                        help="I/O layout for executorch, tflite and onnx (default NCHW)")
    parser.add_argument("--coreml-input", choices=("tensor", "image"), default="tensor",
                        help="Core ML input: a float tensor, or an RGB image (CVPixelBuffer in the app)")
    parser.add_argument("--min-deployment", help="Core ML minimum deployment target, e.g. iOS17")
    parser.add_argument("--allow-portable", action="store_true",
                        help="accept ExecuTorch ops left outside the delegate (reported, slow portable kernels)")
    parser.add_argument("--bundle", action="store_true",
                        help="also write ExecuTorch BundledPrograms (.bpte) with test inputs and expected outputs")
    parser.add_argument("--parity-images", type=int, default=16, help="generated faces for parity (default 16)")
    parser.add_argument("--calib-images", type=int, default=32, help="ONNX int8 calibration faces (default 32)")
    parser.add_argument("--force", action="store_true", help="rebuild artifacts that are up to date")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    settings = ExportSettings(
        out=a.out, target=a.target, precision=a.precision, checkpoint=a.checkpoint, quantized=tuple(a.quantized),
        all=a.all, delegate=a.delegate, size=a.size, layout=a.layout, coreml_input=a.coreml_input,
        min_deployment=a.min_deployment, allow_portable=a.allow_portable, bundle=a.bundle,
        parity_images=a.parity_images, calib_images=a.calib_images, force=a.force)
    try:
        run_export(settings)
    except BaseException:  # Ctrl-C, a full disk: drop the half-built artifact, keep everything placed
        shutil.rmtree(Path(settings.out) / ".staging", ignore_errors=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
