"""``python -m facemat.pipeline``: the whole chain in one command, cached stage by stage.

Stages, each in ``OUT/<stage>/`` and each run as its own command (the same
``python -m ...`` a user would type)::

    data              held-out test faces (synth) or a check of the user's folder
    teacher           python -m training.teacher (default: fine-tunes the shipped teacher)
    student           python -m training.distill (default: fine-tunes the shipped student)
    evaluate          python -m training.evaluate
    quantize-<recipe> python -m quantize.ptq | quantize.qat, one per recipe the targets need
    export            python -m targets.export, one call per target
    bench             python -m bench.run

Caching. A stage's *key* is a sha256 over the command lines it runs (paths
inside the run folder written relative to it, so a moved folder stays cached),
the fingerprints of user folders it reads, the digests of the stages it reads
and the code version. Nothing beside the argv is kept by hand, so a flag added
to a command is in the key the moment it is passed. A finished stage writes ``stage.json`` (key, output digests,
wall time) atomically as its last act. On a rerun a stage is skipped when its
key matches and every recorded output still has its digest; it is rerun from
scratch when the key changed (new settings or new inputs); and it is resumed
when ``pending.json`` shows it was interrupted under the same key (training
continues from ``last.pt``, export skips finished artifacts, the others redo
their one atomic write). Downstream keys include upstream digests, so a change
reruns exactly the stages it affects.

Safety. One pipeline per folder: ``OUT/.lock`` is held with ``flock`` for the
whole run and a second pipeline on the same folder stops with an error. Every
stage writes its files atomically, and the children die with the pipeline
(``PR_SET_PDEATHSIG``), so a SIGKILL never leaves a writer running or a file
half-written.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError, DataError, FaceMatError
from facemat.io import ensure_writable_dir, file_sha256, write_json_atomic

TARGETS = ("coreml", "executorch", "tflite", "onnx")
# The quantize recipes each target's int8 artifacts are built from (ONNX int8 is
# calibrated by the exporter itself from the FP32 checkpoint).
TARGET_RECIPES = {"coreml": ("coreml",), "executorch": ("xnnpack", "coreml"), "tflite": ("litert",), "onnx": ()}
RECIPE_ORDER = ("xnnpack", "coreml", "litert")

# Files the pipeline itself keeps in a stage folder; never part of its outputs.
OWN_FILES = {"stage.json", "pending.json", "log.txt"}


class PipelineError(FaceMatError):
    """A stage failed, or the run folder is locked or unusable."""


@dataclass(frozen=True)
class Budget:
    """How much work each stage does. ``small`` is the README default (15 min on 2 CPU cores)."""

    test_count: int
    train_steps: int
    batch: int
    val_count: int
    val_every: int
    ckpt_every: int
    workers: int
    quantize: str  # ptq | qat
    calib: int
    qat_steps: int
    parity_images: int
    calib_images: int
    bench_runs: int
    bench_warmup: int
    bench_limit: int
    threads: str
    teacher_steps: int | None = None  # default: train_steps
    # --init shipped: fine-tune the shipped models (whole --ft-size images, a gentle learning rate).
    ft_teacher_steps: int = 100
    ft_steps: int = 300
    ft_size: int = 256
    ft_teacher_lr: float = 5e-5
    ft_lr: float = 3e-4


BUDGETS: dict[str, Budget] = {
    # Seconds of everything: checks that the chain runs; the model learns nothing useful.
    "tiny": Budget(test_count=4, train_steps=3, batch=2, val_count=2, val_every=3, ckpt_every=1, workers=0,
                   quantize="ptq", calib=4, qat_steps=4, parity_images=2, calib_images=4, bench_runs=3,
                   bench_warmup=1, bench_limit=2, threads="1", ft_teacher_steps=3, ft_steps=3, ft_size=128),
    # The embedded default: a usable student on 2 CPU cores within 15 minutes for the whole chain.
    "small": Budget(test_count=32, train_steps=800, teacher_steps=400, batch=8, val_count=16, val_every=250,
                    ckpt_every=50, workers=1, quantize="ptq", calib=32, qat_steps=100, parity_images=8,
                    calib_images=16, bench_runs=30, bench_warmup=5, bench_limit=16, threads="1",
                    ft_teacher_steps=100, ft_steps=300),
    # Real training (a GPU or many cores): what the GPU figures in docs/results.md used, plus QAT.
    "full": Budget(test_count=200, train_steps=2000, batch=32, val_count=64, val_every=250, ckpt_every=100,
                   workers=4, quantize="qat", calib=64, qat_steps=300, parity_images=16, calib_images=32,
                   bench_runs=100, bench_warmup=10, bench_limit=32, threads="1,all",
                   ft_teacher_steps=500, ft_steps=1500),
}


def default_device_name() -> str:
    """A short device name for the bench report, e.g. ``x86_64-2c``."""
    return f"{platform.machine() or 'cpu'}-{os.cpu_count() or 1}c"


@dataclass(frozen=True)
class PipelineSettings:
    """Resolved settings of one ``facemat.pipeline`` run (saved as ``OUT/pipeline.json``)."""

    out: str
    budget: str = "small"
    targets: tuple[str, ...] = TARGETS
    data: str = "mix-empty"
    init: str = "shipped"
    test_data: str = "synth"
    quantize: str | None = None  # None: the budget's
    weighting: str = "uncertainty"
    nproc: int = 1
    device: str = "auto"
    seed: int = 0
    peers: str | None = None
    bench_device: str = field(default_factory=default_device_name)
    threads: str | None = None  # None: the budget's
    until: str | None = None

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise ConfigError(f"--budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if not self.targets:
            raise ConfigError(f"--targets must name at least one of {', '.join(TARGETS)}")
        for t in self.targets:
            if t not in TARGETS:
                raise ConfigError(f"--targets: unknown target {t!r}; choose from {', '.join(TARGETS)}")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"--targets lists a target twice: {','.join(self.targets)}")
        from facemat.data.stream import GENERATED

        if self.data not in GENERATED and not Path(self.data).is_dir():
            raise ConfigError(f"--data: {self.data} is not a folder (give a dataset folder or one of "
                              f"{', '.join(GENERATED)})")
        if self.test_data != "synth" and not Path(self.test_data).is_dir():
            raise ConfigError(f"--test-data: {self.test_data} is not a folder (give a dataset folder or 'synth')")
        if self.init not in INITS:
            raise ConfigError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.peers is not None and not Path(self.peers).is_dir():
            raise ConfigError(f"--peers: {self.peers} is not a folder "
                              "(python -m facemat.pretrained.fetch --what models fills CACHE/mediapipe)")
        if self.quantize not in (None, "ptq", "qat"):
            raise ConfigError(f"--quantize must be ptq or qat, got {self.quantize!r}")
        if self.weighting not in ("uncertainty", "uniform"):
            raise ConfigError(f"--weighting must be uncertainty or uniform, got {self.weighting!r}")
        if not isinstance(self.nproc, int) or self.nproc < 1:
            raise ConfigError(f"--nproc must be an integer >= 1, got {self.nproc!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if not self.bench_device or any(c in self.bench_device for c in "/\\ "):
            raise ConfigError(f"--bench-device must be a short name without spaces or slashes, got {self.bench_device!r}")
        if self.threads is not None:
            from bench.run import thread_list

            thread_list(self.threads)  # fail now, not after training
        if self.until is not None and self.until not in STAGE_ORDER:
            raise ConfigError(f"--until must be one of {', '.join(STAGE_ORDER)}, got {self.until!r}")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out: {out} exists and is not a folder")

    @property
    def plan(self) -> Budget:
        return BUDGETS[self.budget]

    @property
    def method(self) -> str:
        return self.quantize or self.plan.quantize

    @property
    def recipes(self) -> tuple[str, ...]:
        wanted = {r for t in self.targets for r in TARGET_RECIPES[t]}
        return tuple(r for r in RECIPE_ORDER if r in wanted)


STAGE_ORDER = ("data", "teacher", "student", "evaluate", "quantize", "export", "bench")
INITS = ("shipped", "scratch")


def shipped_models() -> dict[str, tuple[Path, str]]:
    """``teacher`` and ``student`` -> (path of the shipped checkpoint, its architecture).

    Raises:
        CheckpointError: a shipped file is missing or damaged (a broken install).
    """
    from facemat.checkpoint import read_checkpoint
    from facemat.demo import BUNDLED_STUDENT, BUNDLED_TEACHER

    return {kind: (path, str(read_checkpoint(path)["model"]["arch"]))
            for kind, path in (("teacher", BUNDLED_TEACHER), ("student", BUNDLED_STUDENT))}


# ----------------------------------------------------------------- digests


def folder_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative POSIX path -> hex), the pipeline's own files excepted."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel not in OWN_FILES and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            out[rel] = file_sha256(p)
    return out


def folder_fingerprint(folder: Path) -> str:
    """A cheap identity of a user's dataset folder: names, sizes and modification times."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def digest_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------- stages


@dataclass
class Stage:
    """One cached step: the commands it runs, the stages it reads, and the user folders it reads.

    Attributes:
        commands: argv lists after ``python`` (``["-m", module, flags...]``).
        deps: the stages whose outputs it reads.
        torchrun: the command runs under torchrun with ``--nproc`` processes.
        extra_key: fingerprints of inputs outside the run folder (a user's data).
    """

    name: str
    title: str
    commands: list[list[str]]
    deps: tuple[str, ...] = ()
    torchrun: bool = False
    extra_key: dict[str, Any] = field(default_factory=dict)

    def key_material(self, root: Path, nproc: int) -> dict[str, Any]:
        """What the stage's key covers besides its upstream digests and the code version."""
        return {"stage": self.name, "argv": [_relative_argv(cmd, root) for cmd in self.commands],
                "nproc": nproc if self.torchrun else 1, "extra": self.extra_key}


def _relative_argv(cmd: list[str], root: Path) -> list[str]:
    """``cmd`` with every path inside ``root`` written relative to it (``./teacher/best.pt``)."""
    prefix = str(root).rstrip(os.sep) + os.sep
    return ["./" + Path(a[len(prefix):]).as_posix() if a.startswith(prefix) else "." if a == str(root) else a
            for a in cmd]


def stage_key(stage: Stage, root: Path, nproc: int, upstream: dict[str, str]) -> str:
    """The stage's cache key: its argv and inputs, the digests of the stages it reads, the code version.

    Args:
        upstream: stage name -> the ``digest`` of its ``stage.json``, for every name in ``stage.deps``.
    """
    from facemat.checkpoint import code_version

    return digest_of({**stage.key_material(root, nproc), "deps": {d: upstream[d] for d in stage.deps},
                      "code_version": code_version()})


def _py(module: str, *args: Any) -> list[str]:
    return ["-m", module, *[str(a) for a in args]]


def build_stages(s: PipelineSettings, root: Path) -> list[Stage]:
    """The stages of this run, in order (``--until`` cuts the list)."""
    b = s.plan
    d = {name: root / name for name in ("data", "teacher", "student", "evaluate", "export", "bench")}
    test_dir = d["data"] / "test" if s.test_data == "synth" else Path(s.test_data)
    teacher_ckpt, student_ckpt = d["teacher"] / "best.pt", d["student"] / "best.pt"
    train_common = ["--data", s.data, "--batch", b.batch, "--seed", s.seed, "--val-count", b.val_count,
                    "--val-every", b.val_every, "--ckpt-every", b.ckpt_every, "--workers", b.workers,
                    "--device", s.device, "--resume"]
    stages: list[Stage] = []
    from facemat.data.stream import GENERATED

    train_fingerprint = None if s.data in GENERATED else folder_fingerprint(Path(s.data))

    data_cmds = []
    if s.test_data == "synth":
        data_cmds.append(_py("facemat.data.synth", "--out", test_dir, "--count", b.test_count, "--seed", 7,
                             "--split", "test", "--preview", d["data"] / "test-preview.png"))
    stages.append(Stage("data", f"test faces ({b.test_count} generated)" if s.test_data == "synth"
                        else f"test data {s.test_data}", data_cmds,
                        extra_key={"data_fingerprint": train_fingerprint,
                                   "test_fingerprint": None if s.test_data == "synth"
                                   else folder_fingerprint(Path(s.test_data))}))

    if s.init == "shipped":
        # Fine-tune the shipped models: their architectures, whole images, a gentle learning rate.
        shipped = shipped_models()
        runs = {}
        for kind, steps, lr in (("teacher", b.ft_teacher_steps, b.ft_teacher_lr), ("student", b.ft_steps, b.ft_lr)):
            path, arch = shipped[kind]
            runs[kind] = (["--steps", steps, "--arch", arch, "--init", path, "--lr", lr, "--size", b.ft_size,
                           "--warmup", min(20, steps // 5)],
                          f"fine-tune the shipped {kind} ({arch}), {steps} steps",
                          {"data_fingerprint": train_fingerprint, "init_sha256": file_sha256(path)})
    else:
        teacher_steps = b.teacher_steps or b.train_steps
        runs = {"teacher": (["--steps", teacher_steps], f"train the teacher from scratch, {teacher_steps} steps",
                            {"data_fingerprint": train_fingerprint}),
                "student": (["--steps", b.train_steps], f"distil the student from scratch, {b.train_steps} steps",
                            {"data_fingerprint": train_fingerprint})}
    flags, title, key = runs["teacher"]
    stages.append(Stage("teacher", title, [_py("training.teacher", "--out", d["teacher"], *flags, *train_common)],
                        torchrun=True,  # not on "data": other test faces keep the models
                        extra_key=key))
    flags, title, key = runs["student"]
    stages.append(Stage("student", title,
                        [_py("training.distill", "--teacher", teacher_ckpt, "--out", d["student"], *flags,
                             *train_common)],
                        deps=("teacher",), torchrun=True, extra_key=key))
    stages.append(Stage("evaluate", "evaluate student and teacher on the test faces",
                        [_py("training.evaluate", "--checkpoint", student_ckpt, "--teacher", teacher_ckpt,
                             "--data", test_dir, "--json", d["evaluate"] / "report.json")],
                        deps=("data", "teacher", "student")))

    quant_dirs = {}
    for recipe in s.recipes:
        qdir = root / f"quantize-{recipe}"
        quant_dirs[recipe] = qdir
        if s.method == "qat":
            cmd = _py("quantize.qat", "--student", student_ckpt, "--teacher", teacher_ckpt, "--data", s.data,
                      "--recipe", recipe, "--out", qdir, "--weighting", s.weighting, "--kd-from", "teacher",
                      "--steps", b.qat_steps, "--calib", max(1, b.calib // 8), "--seed", s.seed, "--workers", b.workers)
            title = f"QAT {recipe} ({s.weighting} weights, distilled from the teacher, {b.qat_steps} steps)"
        else:
            cmd = _py("quantize.ptq", "--student", student_ckpt, "--data", s.data, "--recipe", recipe,
                      "--out", qdir, "--calib", b.calib, "--workers", b.workers)
            title = f"PTQ {recipe} ({b.calib} calibration images)"
        stages.append(Stage(f"quantize-{recipe}", title, [cmd], deps=("teacher", "student"),
                            extra_key={"data_fingerprint": train_fingerprint}))

    export_cmds = []
    for t in s.targets:
        quant = [a for r in TARGET_RECIPES[t] for a in ("--quantized", quant_dirs[r])]
        base = ["--target", t, "--checkpoint", student_ckpt, *quant, "--out", d["export"],
                "--parity-images", b.parity_images, "--calib-images", b.calib_images]
        export_cmds.append(_py("targets.export", "--all", *base, *(["--bundle"] if t == "executorch" else [])))
        if t == "tflite":  # Android apps feed NHWC bitmaps: ship the variant that needs no transpose
            export_cmds.append(_py("targets.export", "--all", *base, "--layout", "NHWC"))
    stages.append(Stage("export", f"export {', '.join(s.targets)}", export_cmds,
                        deps=("student", *(f"quantize-{r}" for r in s.recipes))))

    threads = s.threads or b.threads
    bench = _py("bench.run", "--manifest", d["export"] / "manifest.json", "--device", s.bench_device,
                "--out", d["bench"], "--data", test_dir, "--runs", b.bench_runs, "--warmup", b.bench_warmup,
                "--threads", threads, "--limit", b.bench_limit, "--teacher", teacher_ckpt,
                *(["--peers", s.peers] if s.peers else []))
    stages.append(Stage("bench", f"bench every artifact ({b.bench_runs} runs, threads {threads})", [bench],
                        deps=("data", "teacher", "export"),
                        extra_key={"peers": None if not s.peers else folder_fingerprint(Path(s.peers))}))

    if s.until is not None:  # keep every stage up to and including --until (quantize may have none)
        stages = [st for st in stages if STAGE_ORDER.index(st.name.split("-")[0]) <= STAGE_ORDER.index(s.until)]
    return stages


# ----------------------------------------------------------------- running


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the pipeline process dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # no glibc (not Linux): children then outlive a killed pipeline; nothing else to do
        pass


# Lines of the stage commands worth showing as progress (their own messages and
# tqdm bars); library chatter (absl, warnings) only goes to the log.
PROGRESS = re.compile(r"^(training|quantize|targets|bench|facemat)\.|^(ptq|qat)-|%\||^wrote |^(teacher|student):")


class Console:
    """Stage lines on stdout; the running command's latest line as a live status (TTY) or every 30 s."""

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.tty = stream.isatty()
        self.last_beat = 0.0

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        text = " ".join(text.split())
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\033[K" + text[:width])
            self.stream.flush()
        elif time.monotonic() - self.last_beat >= 30:
            self.last_beat = time.monotonic()
            self.line(text)


def run_command(argv: list[str], log_path: Path, console: Console, label: str, env: dict[str, str]) -> tuple[int, str]:
    """Run one child, teeing its output to ``log_path``; returns (exit code, its last error line)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, preexec_fn=_die_with_parent)
    last_error, buf = "", b""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 1.0)
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                buf += chunk
                parts = buf.replace(b"\r", b"\n").split(b"\n")
                buf = parts.pop()
                for raw in parts:
                    text = raw.decode("utf-8", "replace").strip()
                    if not text:
                        continue
                    if text.startswith(("error:", "Traceback")) or "Error" in text.split(":")[0]:
                        last_error = text
                    if PROGRESS.search(text):
                        console.status(f"  {label}: {text}")
        except KeyboardInterrupt:
            proc.wait()  # the child got the same SIGINT from the terminal
            raise
    rc = proc.wait()
    return rc, last_error


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RunLock:
    """``OUT/.lock`` held with ``flock`` for the life of the process (released by the kernel on any exit)."""

    def __init__(self, root: Path):
        self.path = root / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PipelineError(f"--out: {self.path.parent} is in use by another pipeline ({holder}); "
                                "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)


@dataclass
class StageResult:
    name: str
    state: str  # cached | ran | resumed
    wall_s: float


def run_stage(stage: Stage, root: Path, s: PipelineSettings, done: dict[str, dict], console: Console,
              index: int, total: int) -> StageResult:
    folder = root / stage.name
    key = stage_key(stage, root, s.nproc, {d: done[d]["digest"] for d in stage.deps})
    head = f"pipeline: [{index}/{total}] {stage.name}"
    record = _read_json(folder / "stage.json")
    if record and record.get("key") == key:
        current = folder_digests(folder)
        if current == record.get("outputs"):
            done[stage.name] = record
            console.line(f"{head}: cached ({stage.title}; ran in {record.get('wall_s', 0):.0f} s)")
            return StageResult(stage.name, "cached", 0.0)
        changed = sorted(set(current.items()) ^ set(record.get("outputs", {}).items()))
        console.line(f"{head}: outputs changed since it ran ({changed[0][0]}); rerunning")
    pending = _read_json(folder / "pending.json")
    resume = pending is not None and pending.get("key") == key and record is None
    if folder.exists() and not resume:
        shutil.rmtree(folder)  # stale: other settings or inputs; every file is rebuilt
    elif resume:
        for tmp in folder.rglob(".*.tmp*"):  # an atomic writer's temp file, orphaned by the interruption
            if tmp.is_file():
                tmp.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage.json").unlink(missing_ok=True)
    key_argv = stage.key_material(root, s.nproc)["argv"]
    write_json_atomic(folder / "pending.json", {"key": key, "argv": key_argv})
    console.line(f"{head}: {'resuming' if resume else 'running'}: {stage.title}")

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    for cmd in stage.commands:
        if stage.torchrun and s.nproc > 1:
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(s.nproc), *cmd[0:]]
        else:
            argv = [sys.executable, *cmd]
        rc, last_error = run_command(argv, folder / "log.txt", console, stage.name, env)
        if rc != 0:
            why = last_error or f"exit code {rc}"
            raise PipelineError(f"stage {stage.name} failed: {why} (full log: {folder / 'log.txt'}); "
                                "rerun the same command to resume after fixing it")
    from facemat.data.stream import GENERATED

    if stage.name == "data" and s.data not in GENERATED:
        _check_folder(s.data, "--data")
    if stage.name == "data" and s.test_data != "synth":
        _check_folder(s.test_data, "--test-data")
    wall = time.perf_counter() - t0
    outputs = folder_digests(folder)
    record = {"key": key, "stage": stage.name, "title": stage.title, "argv": key_argv,
              "outputs": outputs, "digest": digest_of({"key": key, "outputs": outputs}),
              "wall_s": round(wall, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(folder / "stage.json", record)
    (folder / "pending.json").unlink(missing_ok=True)
    done[stage.name] = record
    console.line(f"{head}: done in {wall:.0f} s")
    return StageResult(stage.name, "resumed" if resume else "ran", wall)


def _check_folder(path: str, flag: str) -> None:
    """Open every sample of a user's dataset folder once: bad files fail here, not mid-training."""
    from facemat.data.folder import MattingFolder

    try:
        folder = MattingFolder(path)
        for i in range(len(folder)):
            folder[i]
    except DataError as exc:
        raise DataError(f"{flag}: {exc}") from None


# ----------------------------------------------------------------- summary


def summary_lines(root: Path) -> list[str]:
    """The main bench table, condensed: one line per artifact x threads."""
    from bench.report import load_report

    report = load_report(root / "bench" / "report.json")
    header = f"{'artifact':<28} {'thr':>3} {'median ms':>10} {'SAD':>7} {'IoU':>6} {'MSE vs FP32':>12}  status"
    lines = [header, "-" * len(header)]
    for row in report["rows"]:
        lat = (row.get("latency_ms") or {}).get("median")
        acc = row.get("accuracy") or {}
        gt = (acc.get("gt") or {}).get("overall") or {}
        fp = (acc.get("fp32") or {}).get("overall") or {}

        def num(v: Any, fmt: str) -> str:
            width = int(fmt.split(".")[0])
            return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(width)

        lines.append(f"{row['artifact']:<28} {str(row.get('threads', '')):>3} {num(lat, '10.3f')} "
                     f"{num(gt.get('sad'), '7.3f')} {num(gt.get('iou'), '6.3f')} {num(fp.get('mse'), '12.2e')}  "
                     f"{row.get('status', '')}")
    base = report.get("baseline") or {}
    if "error" in base:
        lines.append(base["error"])
    elif "mesh-oval" in base:
        # What a filter app already has: Face Mesh's face oval as a mask (no occlusion handling).
        oval = base["mesh-oval"]
        lines.append(f"{'mesh-oval (baseline)':<28} {'':>3} {'':>10} {oval['all']['sad']:7.3f} "
                     f"{oval['all']['iou']:6.3f} {'':>12}  ok")
        for name, split in base.items():
            if name == "mesh-oval":
                continue
            gains = [f"{g} {split[g]['iou'] - oval[g]['iou']:+.3f} ({split[g]['images']} img)"
                     for g in ("all", "occluded", "unoccluded") if g in split and g in oval]
            lines.append(f"IoU over mesh-oval, {name}: " + ", ".join(gains))
    for peer in report.get("peers") or []:
        ratio = peer.get("student_over_peer")
        if isinstance(ratio, (int, float)):
            lines.append(f"{peer['student']} / {peer['name']} latency at {peer['threads']} thread(s): {ratio:.2f}")
    return lines


# ----------------------------------------------------------------- entry


def run_pipeline(s: PipelineSettings, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) every stage; returns ``pipeline.json``'s content."""
    console = console or Console()
    root = Path(s.out)
    t0 = time.perf_counter()
    ensure_writable_dir(root)
    with RunLock(root):
        stages = build_stages(s, root)
        done: dict[str, dict] = {}
        results = []
        for i, stage in enumerate(stages, 1):
            results.append(run_stage(stage, root, s, done, console, i, len(stages)))
        wall = time.perf_counter() - t0
        state = {"settings": {**asdict(s), "targets": list(s.targets)}, "budget": asdict(s.plan),
                 "stages": [asdict(r) for r in results], "wall_s": round(wall, 1),
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json_atomic(root / "pipeline.json", state)
    ran = sum(r.state != "cached" for r in results)
    console.line(f"pipeline: {len(results)} stages ({ran} run, {len(results) - ran} cached) in {wall:.0f} s")
    if (root / "bench" / "stage.json").exists() and any(r.name == "bench" for r in results):
        for line in summary_lines(root):
            console.line(line)
        console.line(f"report: {root / 'bench' / 'report.html'} (also report.md, report.json)")
    ev = _read_json(root / "evaluate" / "report.json")
    if ev is not None:
        console.line(f"evaluation of the FP32 student: {root / 'evaluate' / 'report.json'}")
    return state


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m facemat.pipeline",
        description="The whole FaceMat chain in one command: test data, teacher, distilled student, evaluation, "
        "quantization (one recipe per target), export of every artifact with parity checks, and the bench "
        "report. Each stage lives in OUT/<stage>/ and is cached by a hash of its settings and inputs: a rerun "
        "skips finished stages, resumes an interrupted one, and reruns only what changed settings affect.",
        epilog="Budgets: tiny = seconds per stage, checks the chain only (tests, CI); small = the default, "
        "the whole chain in under 15 minutes on 2 CPU cores; full = real training (GPU or many cores, QAT). "
        "Training stages run under torchrun with --nproc N.",
    )
    parser.add_argument("--out", required=True, help="run folder, e.g. runs/demo")
    parser.add_argument("--budget", default="small", choices=tuple(BUDGETS), help="how much work (default small)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma list of export targets (default {','.join(TARGETS)})")
    parser.add_argument("--data", default="mix-empty",
                        help="training data: 'mix-empty' (the default, what the shipped models were trained on: "
                        "procedural faces and real package photos with generated occluders, and a tenth face-free "
                        "crops with alpha 0), 'mix' (the same without face-free crops), 'synth', 'real', or your "
                        "dataset folder")
    parser.add_argument("--init", default="shipped", choices=INITS,
                        help="shipped (default): fine-tune the shipped teacher and student on --data; scratch: "
                        "train both from their architectures' own start (MediaPipe weights for teacher-selfie, "
                        "random otherwise)")
    parser.add_argument("--test-data", default="synth",
                        help="held-out folder for evaluation and bench (default: generated test faces, seed 7)")
    parser.add_argument("--quantize", choices=("ptq", "qat"), help="int8 method (default: ptq for tiny/small, qat for full)")
    parser.add_argument("--weighting", default="uncertainty", choices=("uncertainty", "uniform"),
                        help="QAT loss weighting (with --quantize qat)")
    parser.add_argument("--nproc", type=int, default=1, help="processes per training stage (torchrun DDP)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="training device")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--peers", help="folder with MediaPipe face_landmark.tflite etc. to bench side by side")
    parser.add_argument("--bench-device", default=default_device_name(),
                        help="device name in the bench report (default: machine-cores, e.g. x86_64-2c)")
    parser.add_argument("--threads", help="bench thread counts, e.g. 1,all (default: the budget's)")
    parser.add_argument("--until", choices=STAGE_ORDER, help="stop after this stage")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    targets = tuple(t.strip() for t in a.targets.split(",") if t.strip())
    s = PipelineSettings(out=a.out, budget=a.budget, targets=targets, data=a.data, init=a.init, test_data=a.test_data,
                         quantize=a.quantize, weighting=a.weighting, nproc=a.nproc, device=a.device, seed=a.seed,
                         peers=a.peers, bench_device=a.bench_device, threads=a.threads, until=a.until)
    run_pipeline(s)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
