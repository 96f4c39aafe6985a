"""``python -m bench.run``: latency and matting accuracy of every artifact, per device, against FP32.

For each artifact in the manifest (sha256 checked first) and each thread
setting, a fresh worker process (:mod:`bench.worker`) loads it in its own
runtime, runs it on every bench image, and times ``invoke`` alone (warm-up
excluded; pre/post-processing excluded). The parent scores the outputs against
ground truth (SAD, MSE, Grad, Conn, IoU) and against the FP32 reference (max abs,
MSE, PSNR), overall, in the boundary band and, with ``--teacher``, in the
teacher's high-uncertainty band. Artifacts this platform cannot run (Core ML off
macOS) get a "not run here" row with the reason. Reports go to
``OUT/report.json``, ``report.md`` and ``report.html``.

With ``--clips DIR`` (``python -m facemat.data.synth --frames 8``) every artifact
also runs, in its own runtime, on every clip frame; the ``temporal`` section
reports flicker on still clips, dtSSD on moving clips and per-frame IoU for each
artifact, the FP32 reference and ``mesh-oval``, each also after the temporal
filter (:mod:`facemat.temporal`), with the issue's checks per model and the
filter's own latency measured beside Face Mesh's.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.rows import FORMAT, Row
from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import CheckpointError, ConfigError
from facemat.temporal import DEFAULT as DEFAULT_FILTER
from facemat.temporal import TemporalConfig, parse_config

BANDS = ("overall", "boundary", "uncertainty")


@dataclass(frozen=True)
class BenchSettings:
    """Resolved settings of one ``bench.run``."""

    manifest: str
    out: str
    device: str
    data: str = "synth"
    runs: int = 50
    warmup: int = 5
    threads: str = "1,all"
    limit: int = 16
    teacher: str | None = None
    checkpoint: str | None = None
    peers: str | None = None
    profile: bool = False
    pictures: int = 3
    only: tuple[str, ...] = ()
    seed: int = 7
    clips: str | None = None
    clip_limit: int = 32
    filter: TemporalConfig = DEFAULT_FILTER

    def __post_init__(self) -> None:
        if self.clips is not None and not Path(self.clips).is_dir():
            raise ConfigError(f"--clips: {self.clips} is not a folder (python -m facemat.data.synth --frames 8 "
                              "writes one)")
        if self.clip_limit < 1:
            raise ConfigError(f"--clip-limit must be >= 1, got {self.clip_limit}")
        if not Path(self.manifest).is_file():
            raise ConfigError(f"--manifest: {self.manifest} is not a file (run python -m targets.export first)")
        if self.data != "synth" and not Path(self.data).is_dir():
            raise ConfigError(f"--data: {self.data} is not a folder; give a dataset folder or 'synth'")
        if not self.device or any(c in self.device for c in "/\\ "):
            raise ConfigError(f"--device must be a short name without spaces or slashes, got {self.device!r}")
        for flag, v, lo in (("--runs", self.runs, 1), ("--warmup", self.warmup, 0), ("--limit", self.limit, 1),
                            ("--pictures", self.pictures, 0)):
            if v < lo:
                raise ConfigError(f"{flag} must be >= {lo}, got {v}")
        thread_list(self.threads)
        for flag, p in (("--teacher", self.teacher), ("--checkpoint", self.checkpoint)):
            if p is not None and not Path(p).is_file():
                raise ConfigError(f"{flag}: {p} is not a file")
        if self.peers is not None and not Path(self.peers).is_dir():
            raise ConfigError(f"--peers: {self.peers} is not a folder (python -m facemat.pretrained.fetch "
                              "--what models fills CACHE/mediapipe)")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_list(spec: str) -> list[int]:
    """``"1,all"`` -> ``[1, cores]`` (deduplicated, in order); more threads than cores is refused."""
    out: list[int] = []
    cores = available_cores()
    for part in spec.split(","):
        part = part.strip()
        if part == "all":
            n = cores
        elif part.isdigit() and int(part) >= 1:
            n = int(part)
        else:
            raise ConfigError(f"--threads must be a comma list of positive integers or 'all', got {spec!r}")
        if n > cores:
            raise ConfigError(f"--threads {n} is above the {cores} cores this machine gives the bench: the "
                              "latency would measure contention, not the runtime (use 'all' for every core)")
        if n not in out:
            out.append(n)
    return out


def cpu_model() -> str:
    """The CPU model from ``/proc/cpuinfo`` (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> dict[str, Any]:
    """What this machine is: CPU model, cores, OS."""
    return {"description": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()} "
                           f"{platform.machine()}", "os": platform.system(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def tool_versions() -> dict[str, str]:
    from targets.common import versions

    return versions("torch", "executorch", "ai-edge-litert", "onnxruntime", "coremltools", "litert-torch", "numpy")


def load_bench_data(s: BenchSettings, size: int
                    ) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any], list[bool] | None]:
    """``(images N x 3 x S x S float32 [0,1], alphas N x S x S, ids, description, occluded)``.

    ``occluded`` says per image whether occluders hide >= 1 % of the skin: from each
    synth test face's record, from a folder's ``meta.jsonl`` (the generators write
    it), or None when a folder does not say.
    """
    from facemat.evaluation import OCCLUDED_MIN, read_occlusion

    n = s.limit
    if s.data == "synth":
        from facemat.data.synth import render_sample

        samples = [render_sample(s.seed, i, size, "test") for i in range(n)]
        imgs = [x.image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0) for x in samples]
        alphas = [x.alpha.astype(np.float32) / np.float32(255.0) for x in samples]
        ids = ["synth-" + x.meta["id"] for x in samples]
        occluded = [x.meta["occluded_fraction"] >= OCCLUDED_MIN for x in samples]
        desc = {"kind": "synth", "path": None, "split": "test", "seed": s.seed}
    else:
        from facemat.data.folder import MattingFolder

        ds = MattingFolder(s.data, size=size)
        items = [ds[i] for i in range(min(n, len(ds)))]
        imgs = [item["image"].numpy() for item in items]
        alphas = [item["alpha"].numpy()[0] for item in items]
        ids = [str(item["id"]) for item in items]
        flags = read_occlusion(s.data, ids)
        occluded = None if flags is None else [flags[i] for i in ids]
        desc = {"kind": "folder", "path": str(s.data), "resized_to": size}
    desc.update(images=len(imgs), size=size)
    return np.stack(imgs).astype(np.float32), np.stack(alphas).astype(np.float32), ids, desc, occluded


def baseline_scores(images: np.ndarray, gts: np.ndarray, occluded: list[bool] | None,
                    models: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each model's overall scores beside the ``mesh-oval`` baseline's, all / occluded / unoccluded.

    Args:
        images: ``N x 3 x S x S`` float32 RGB in [0, 1]; gts: ``N x S x S`` ground truth.
        occluded: per-image flags, or None (then only ``all``).
        models: name -> alphas ``N x S x S``.

    Returns:
        ``{"mesh-oval": {group: {metric: mean, "images": n}}, "<model>": {...}, ...}``, or
        ``{"error": reason}`` when Face Mesh cannot be had (no network for its first fetch).
    """
    from facemat.evaluation import SplitScores
    from facemat.pretrained.facemesh import load_baseline

    mesh = load_baseline()
    if isinstance(mesh, str):  # report the reason, do not lose the bench
        return {"error": mesh}
    splits = {"mesh-oval": SplitScores(), **{name: SplitScores() for name in models}}
    for i in range(len(images)):
        flag = None if occluded is None else occluded[i]
        splits["mesh-oval"].add(mesh.oval_chw(images[i]), gts[i], flag)
        for name, outs in models.items():
            splits[name].add(outs[i], gts[i], flag)
    return {name: sc.summary() for name, sc in splits.items()}


def score(outs: np.ndarray, ref: np.ndarray, gts: np.ndarray, bvals: np.ndarray | None) -> dict[str, Any]:
    """Per-band means over images (:class:`facemat.evaluation.BandScores`) against ground truth and FP32.

    Args:
        outs: artifact alphas ``N x S x S``; ref: the FP32 reference's; gts: ground truth.
        bvals: the teacher's ``b`` per image ``N x S x S``, or None (no uncertainty band).

    Returns:
        ``{"gt": {band: {metric: mean} | None}, "fp32": {...}}`` for every band of
        :data:`BANDS`; a band with no scored image (no teacher) is None.
    """
    from facemat.evaluation import BandScores

    scores = BandScores()
    for i in range(len(outs)):
        scores.add(outs[i], gts[i], None if bvals is None else bvals[i], ref=ref[i])
    summary = scores.summary()
    # report.json names the agreement with the reference "fp32"; BandScores calls it "ref".
    return {kind: {band: summary.get(key, {}).get(band) for band in BANDS}
            for kind, key in (("gt", "gt"), ("fp32", "ref"))}


def _filter_latency(size: int, runs: int, warmup: int, config: TemporalConfig) -> dict[str, Any]:
    """The temporal filter's reference implementation (NumPy + OpenCV, 1 thread) on ``size`` x ``size`` frames."""
    import cv2

    from bench.worker import time_invoke
    from facemat.temporal import TemporalFilter

    rng = np.random.default_rng(0)
    frames = [(rng.random((size, size, 3), dtype=np.float32), rng.random((size, size), dtype=np.float32))
              for _ in range(2)]
    filt = TemporalFilter(config)
    filt(*frames[0])
    step = iter(range(1 << 62))
    old = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return time_invoke(lambda _: filt(*frames[next(step) % 2]), None, runs, warmup)
    finally:
        cv2.setNumThreads(old)


def temporal_scores(s: BenchSettings, size: int, model, entries: dict[str, Any], root: Path, tmp: Path,
                    usable: list[str]) -> dict[str, Any]:
    """The ``temporal`` section: every usable artifact, the FP32 reference and mesh-oval on the clips.

    Args:
        usable: artifact ids whose image run succeeded (they run again on the clip frames, untimed).
    """
    from facemat.data.clips import load_clips
    from facemat.evaluation import clip_inputs, clip_outputs, score_clips, temporal_checks
    from facemat.inference import reference_outputs
    from facemat.pretrained.facemesh import load_baseline

    clips = load_clips(s.clips, s.clip_limit)
    inputs = [clip_inputs(c, size) for c in clips]
    frames = np.concatenate(inputs)
    bounds = np.cumsum([0] + [len(x) for x in inputs])

    def split(outs: np.ndarray) -> list[np.ndarray]:
        return [clip_outputs(outs[bounds[i]:bounds[i + 1]], c) for i, c in enumerate(clips)]

    outputs: dict[str, list[np.ndarray]] = {"fp32-reference": split(reference_outputs(model, frames)[0])}
    np.save(tmp / "clip-frames.npy", frames)
    failed = {}
    for aid in usable:
        e = entries[aid]
        spec = {"key": f"clips-{aid}", "kind": "artifact", "entry": e, "root": str(root), "target": e["target"],
                "path": str(root / e["path"]), "threads": 1, "images": str(tmp / "clip-frames.npy"),
                "outputs": str(tmp / f"clip-out-{aid}.npy"), "time": False, "precision": e["precision"]}
        res = _run_worker(spec, tmp)
        if res["status"] == "ok" and Path(spec["outputs"]).is_file():
            outputs[aid] = split(np.load(spec["outputs"]))
        else:
            failed[aid] = res.get("reason") or res["status"]
    mesh = load_baseline()
    latency: dict[str, Any] = {"filter": _filter_latency(size, s.runs, s.warmup, s.filter)}
    if not isinstance(mesh, str):
        outputs["mesh-oval"] = [np.stack([mesh.oval_chw(im.transpose(2, 0, 1)) for im in c.images]) for c in clips]
        from bench.peers import PeerRunner
        from bench.worker import time_invoke

        peer = PeerRunner(mesh.path, 1)  # as the peer rows time it: LiteRT with its default delegate
        latency["face_mesh"] = time_invoke(peer.invoke, peer.prepare(peer.example()), s.runs, s.warmup)
    rows = score_clips(clips, outputs, filtered=tuple(outputs), config=s.filter)
    return {
        "data": {"path": str(s.clips), "clips": len(clips), "frames": int(len(frames)), "model_size": size},
        "filter": s.filter.to_dict(),
        "rows": rows,
        "checks": {name: temporal_checks(rows, name) for name in outputs if name != "mesh-oval"},
        "failed": failed,
        "baseline_error": mesh if isinstance(mesh, str) else None,
        "latency_ms": latency,
        "latency_what": "filter: facemat.temporal's NumPy/OpenCV reference on one frame, 1 thread; face_mesh: "
                        "face_landmark.tflite invoke in LiteRT with its default delegate, 1 thread, as the peer rows "
                        "time it; both in the bench's own process",
    }


def _run_worker(spec: dict[str, Any], tmp: Path, timeout: float = 900) -> dict[str, Any]:
    spec_path = tmp / f"spec-{spec['key']}.json"
    spec["result"] = str(tmp / f"result-{spec['key']}.json")
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"] or os.cpu_count())}
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.worker", str(spec_path)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}
    if not Path(spec["result"]).is_file():
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        return {"status": "failed", "reason": f"worker exited with {proc.returncode}: {' | '.join(tail)[:400]}"}
    return json.loads(Path(spec["result"]).read_text())


def _reference_latency(model, image: np.ndarray, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """PyTorch eager FP32 latency on CPU at ``threads`` (the reference's cost, for scale)."""
    import torch

    from bench.worker import time_invoke

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.from_numpy(image[None])
    try:
        with torch.no_grad():
            return time_invoke(model, x, runs, warmup)
    finally:
        torch.set_num_threads(old)


def _teacher_b(path: str, images: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    import torch

    from facemat.checkpoint import file_sha256, load_checkpoint

    teacher, _ = load_checkpoint(path, expect="teacher")
    bs = []
    with torch.no_grad():
        for x in images:
            bs.append(teacher(torch.from_numpy(x[None]))[1].numpy()[0, 0])
    return np.stack(bs), {"checkpoint": str(path), "sha256": file_sha256(path)}


def _reference_checkpoint(s: BenchSettings, entries: dict[str, Any]) -> str:
    if s.checkpoint:
        return s.checkpoint
    hashes = set()
    for e in entries.values():
        src = e.get("source", {})
        path, sha = (src.get("path"), src.get("sha256")) if src.get("kind") == "checkpoint" else \
            (src.get("float_checkpoint"), src.get("float_checkpoint_sha256"))
        if path:
            hashes.add((path, sha))
    if not hashes:
        raise ConfigError("the manifest names no FP32 checkpoint; pass --checkpoint STUDENT.pt")
    if len({h for _, h in hashes}) > 1:
        raise ConfigError("the manifest's artifacts come from different FP32 checkpoints "
                          f"({', '.join(sorted(p for p, _ in hashes))}); pass --checkpoint to choose the reference")
    path, sha = sorted(hashes)[0]
    if not Path(path).is_file():
        raise ConfigError(f"the FP32 reference {path} (from the manifest) is not a file here; pass --checkpoint")
    from facemat.checkpoint import file_sha256

    if sha and file_sha256(path) != sha:
        raise CheckpointError(f"{path}: sha256 differs from the one the manifest recorded; pass the right --checkpoint")
    return path


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """int8 / fp32 latency and SAD per runtime (target + delegate) and thread count, from one run."""
    out = []
    by = {(r["target"], r.get("delegate"), r["precision"], r["threads"]): r for r in rows
          if r["kind"] == "artifact" and r["status"] == "ok"}
    for (t, d, p, th), r8 in by.items():
        if p not in ("int8", "w8a8"):
            continue
        rf = by.get((t, d, "fp32", th))
        if rf is None:
            continue
        sad8 = r8["accuracy"]["gt"]["overall"]["sad"] if r8.get("accuracy") else None
        sadf = rf["accuracy"]["gt"]["overall"]["sad"] if rf.get("accuracy") else None
        out.append({"runtime": t + (f" ({d})" if d else ""), "threads": th, "int8": r8["artifact"],
                    "fp32": rf["artifact"],
                    "latency_int8_over_fp32": r8["latency_ms"]["median"] / rf["latency_ms"]["median"],
                    "sad_int8_over_fp32": (sad8 / sadf) if sad8 is not None and sadf else None})
    return out


def _peer_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    peers = [r for r in rows if r["kind"] == "peer" and r["status"] == "ok"]
    students = [r for r in rows if r["kind"] == "artifact" and r["status"] == "ok" and r["target"] == "tflite"]
    for p in peers:
        for st in students:
            if st["threads"] != p["threads"]:
                continue
            out.append({"name": p["artifact"].removeprefix("peer:"), "input": p.get("input"), "threads": p["threads"],
                        "latency_ms": p["latency_ms"], "student": st["artifact"],
                        "student_latency_ms": st["latency_ms"],
                        "student_over_peer": st["latency_ms"]["median"] / p["latency_ms"]["median"]})
    return out


def run_bench(s: BenchSettings) -> dict[str, Any]:
    """Measure every artifact of the manifest; write and return the report."""
    from tqdm import tqdm

    from bench.report import write_reports
    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.inference import reference_outputs
    from facemat.io import ensure_writable_dir
    from targets.common import IOSpec
    from targets.manifest import now, read_manifest, verify_entry

    manifest_path = Path(s.manifest)
    root = manifest_path.parent
    entries = read_manifest(manifest_path)["artifacts"]
    if s.only:
        missing = [a for a in s.only if a not in entries]
        if missing:
            raise ConfigError(f"--only: {', '.join(missing)} not in {manifest_path} (has: {', '.join(entries)})")
        entries = {k: v for k, v in entries.items() if k in s.only}
    if not entries:
        raise ConfigError(f"{manifest_path} lists no artifacts; run python -m targets.export first")
    for e in entries.values():  # refuse before measuring anything
        verify_entry(root, e)
    ensure_writable_dir(s.out)
    ref_path = _reference_checkpoint(s, entries)
    model, _ = load_checkpoint(ref_path, expect="student")
    sizes = {IOSpec.from_manifest(e).size for e in entries.values()}
    if len(sizes) != 1:
        raise ConfigError(f"the manifest mixes input sizes {sorted(sizes)}; bench one size at a time with --only")
    size = sizes.pop()
    images, gts, ids, data_desc, occluded = load_bench_data(s, size)
    ref_out, ref_where = reference_outputs(model, images)
    bvals, teacher_info = (None, None)
    if s.teacher:
        bvals, teacher_info = _teacher_b(s.teacher, images)
    threads = thread_list(s.threads)
    t_start = time.perf_counter()
    rows: list[Row] = []
    pictures_out: dict[str, np.ndarray] = {}
    model_outs: dict[str, np.ndarray] = {"fp32-reference": ref_out}
    ref_acc = score(ref_out, ref_out, gts, bvals)
    import torch

    for th in threads:
        rows.append(Row("fp32-reference", "reference", "pytorch", "fp32", None,
                        f"pytorch {torch.__version__} (eager, CPU)", th, "ok", None, "measured", s.device,
                        Path(ref_path).stat().st_size, _reference_latency(model, images[0], th, s.runs, s.warmup),
                        None, accuracy=ref_acc))
    jobs = [(aid, e, th) for aid, e in entries.items() for th in threads]
    peer_files = {}
    if s.peers:
        from bench.peers import find_peers

        peer_files = find_peers(s.peers)
        if not peer_files:
            raise ConfigError(f"--peers {s.peers}: no face_landmark.tflite or face_detection_short_range.tflite there")
    with tempfile.TemporaryDirectory(prefix="facemat-bench-") as tmpd:
        tmp = Path(tmpd)
        np.save(tmp / "images.npy", images)
        bar = tqdm(total=len(jobs) + len(peer_files) * len(threads), desc="bench", file=sys.stderr)
        for aid, e, th in jobs:
            bar.set_postfix_str(f"{aid} @{th}t")
            key = f"{aid}-{th}"
            spec = {"key": key, "kind": "artifact", "entry": e, "root": str(root), "target": e["target"],
                    "path": str(root / e["path"]),
                    "threads": th, "images": str(tmp / "images.npy"), "outputs": str(tmp / f"out-{key}.npy"),
                    "runs": s.runs, "warmup": s.warmup, "profile": s.profile, "precision": e["precision"]}
            res = _run_worker(spec, tmp)
            row = Row(aid, "artifact", e["target"], e["precision"], e.get("delegate"), _runtime_name(e), th,
                      res["status"], res.get("reason"), "measured", s.device, e.get("bytes"),
                      res.get("latency_ms"), res.get("peak_mem_mb"), profile=res.get("profile"))
            if res["status"] == "ok" and Path(spec["outputs"]).is_file():
                outs = np.load(spec["outputs"])
                row.accuracy = score(outs, ref_out, gts, bvals)
                if th == threads[0]:
                    pictures_out[aid] = outs[: s.pictures]
                    model_outs[aid] = outs
            rows.append(row)
            bar.update()
        for name, path in peer_files.items():
            for th in threads:
                bar.set_postfix_str(f"peer {name} @{th}t")
                spec = {"key": f"peer-{name}-{th}", "kind": "peer", "path": str(path), "threads": th,
                        "runs": s.runs, "warmup": s.warmup}
                res = _run_worker(spec, tmp)
                rows.append(Row(f"peer:{name}", "peer", "tflite", "peer", None, _runtime_name({"target": "tflite"}),
                                th, res["status"], res.get("reason"), "measured", s.device, path.stat().st_size,
                                res.get("latency_ms"), res.get("peak_mem_mb"), input=res.get("input")))
                bar.update()
        bar.close()
        temporal = None
        if s.clips:
            usable = [aid for aid in entries if any(r.artifact == aid and r.status == "ok" for r in rows)]
            temporal = temporal_scores(s, size, model, entries, root, tmp, usable)
    row_dicts = [r.to_dict() for r in rows]
    baseline = baseline_scores(images, gts, occluded, model_outs)
    report = {
        "format": FORMAT,
        "device": {"name": s.device, **device_description()},
        "date": now(),
        "tools": tool_versions(),
        "manifest": str(manifest_path),
        "data": data_desc,
        "reference": {"name": "fp32-reference", "runtime": f"pytorch {torch.__version__}", "device": ref_where,
                      "checkpoint": ref_path, "sha256": file_sha256(ref_path)},
        "teacher": teacher_info,
        "timing": {"runs": s.runs, "warmup": s.warmup,
                   "what": "invoke only: pre/post-processing (layout change, int8 I/O (de)quantization, "
                           "image decoding, resizing) excluded; each artifact x threads in a fresh process"},
        "settings": {**asdict(s), "only": list(s.only), "filter": s.filter.to_dict()},
        "rows": row_dicts,
        "ratios": _ratios(row_dicts),
        "peers": _peer_ratios(row_dicts),
        "baseline": baseline,
        "temporal": temporal,
        "notes": _notes(row_dicts, ref_where),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    pictures = _pictures(images, gts, ref_out, bvals, ids, pictures_out, s.pictures)
    write_reports(Path(s.out), report, pictures)
    return report


def _runtime_name(e: dict[str, Any]) -> str:
    from targets.common import versions

    t = e["target"]
    if t == "executorch":
        return f"executorch {versions('executorch')['executorch']}"
    if t == "tflite":
        return f"ai-edge-litert {versions('ai-edge-litert')['ai-edge-litert']}"
    if t == "onnx":
        return f"onnxruntime {versions('onnxruntime')['onnxruntime']} (CPU EP)"
    if t == "coreml":
        return f"coremltools {versions('coremltools')['coremltools']} (Core ML)"
    return t


def _notes(rows: list[dict[str, Any]], ref_where: str) -> list[str]:
    notes = [f"FP32 reference outputs computed with PyTorch on {ref_where}; its latency row is eager PyTorch on CPU."]
    if any(r["status"] == "not run here" for r in rows):
        notes.append("Rows marked 'not run here' need a runtime this platform lacks; run bench.run on that "
                     "platform, or import phone measurements with python -m bench.ingest.")
    if any(r["status"] == "failed" for r in rows):
        notes.append("Some rows failed: see their reason.")
    return notes


def _pictures(images, gts, ref_out, bvals, ids, outs: dict[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    pics = []
    for i in range(min(n, len(images))):
        pics.append({"id": ids[i], "input": (images[i].transpose(1, 2, 0) * 255).round().astype(np.uint8),
                     "gt": gts[i], "fp32": ref_out[i], "uncertainty": None if bvals is None else bvals[i],
                     "artifacts": {aid: o[i] for aid, o in outs.items() if i < len(o)}})
    return pics


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m bench.run",
        description="Measure every artifact of a manifest on this device: latency (median, p90, min of --runs after "
        "--warmup; invoke only), peak memory, file size, and matting accuracy against ground truth and against the "
        "FP32 reference, overall and in the boundary and uncertainty bands. Writes OUT/report.json, report.md and "
        "report.html.",
    )
    parser.add_argument("--manifest", default="artifacts/manifest.json", help="targets.export manifest")
    parser.add_argument("--data", default="synth", help="'synth' (generated test faces) or a dataset folder")
    parser.add_argument("--device", required=True, help="a short name for this device, e.g. laptop-x86, pixel8")
    parser.add_argument("--out", help="report folder (default reports/DEVICE)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per artifact x threads (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    parser.add_argument("--threads", default="1,all", help="comma list of thread counts, 'all' = every core")
    parser.add_argument("--limit", type=int, default=16, help="images scored per artifact (default 16)")
    parser.add_argument("--teacher", help="teacher checkpoint: adds the high-uncertainty band and map")
    parser.add_argument("--checkpoint", help="FP32 reference checkpoint (default: the one the manifest names)")
    parser.add_argument("--peers", help="folder with MediaPipe face_landmark.tflite etc., timed side by side")
    parser.add_argument("--profile", action="store_true", help="per-op latency breakdown where the runtime allows")
    parser.add_argument("--pictures", type=int, default=3, help="images shown in report.html (default 3)")
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="bench only this artifact id")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synth test faces (default 7)")
    parser.add_argument("--clips", help="clip folder (python -m facemat.data.synth --frames 8): flicker, dtSSD and "
                        "per-frame IoU of every artifact in its runtime, with and without the temporal filter")
    parser.add_argument("--clip-limit", type=int, default=32, help="clips scored from --clips (default 32)")
    parser.add_argument("--filter", default="", metavar="k_min=..,d0=..,d1=..,radius=..",
                        help="temporal filter settings (default: facemat.temporal's)")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    s = BenchSettings(manifest=a.manifest, out=a.out or f"reports/{a.device}", device=a.device, data=a.data,
                      runs=a.runs, warmup=a.warmup, threads=a.threads, limit=a.limit, teacher=a.teacher,
                      checkpoint=a.checkpoint, peers=a.peers, profile=a.profile, pictures=a.pictures,
                      only=tuple(a.only), seed=a.seed, clips=a.clips, clip_limit=a.clip_limit,
                      filter=parse_config(a.filter))
    report = run_bench(s)
    from bench.markdown import baseline_lines, temporal_lines

    print("\n".join(baseline_lines(report.get("baseline"))))
    if report.get("temporal"):
        print("\n".join(temporal_lines(report["temporal"])))
    print(f"bench.run: {len(report['rows'])} rows in {s.out}/report.json, report.md, report.html", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
