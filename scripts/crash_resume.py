"""Kill ``python -m facemat.pipeline`` with SIGKILL at random moments, resume it each time, and check it.

    python scripts/crash_resume.py --out runs/crash --budget small --kills 10 [--seed S] [--targets ...]

What it does:

1. Starts an uninterrupted *reference* pipeline in ``OUT/reference`` and, at
   the same time, the *victim* in ``OUT/victim`` (two pipelines in different
   folders at once must not interfere).
2. Kills the victim ``--kills`` times, spread over the chain in order (kill
   ``i`` of ``K`` aims at stage ``i * S // K`` of ``S``, so long chains get one
   kill per stage and ten kills hit most stages twice): it waits until that
   stage is running, then a random time
   (seeded, up to about the stage's usual length; the seed is printed)
   before SIGKILL. Only the pipeline process is
   killed: its children must die with it (``PR_SET_PDEATHSIG``), and the
   script checks that none survives.
3. After every kill it checks every file that exists: each checkpoint loads
   (``weights_only``), each ``.pt2`` loads, each finished stage's outputs match
   the digests in its ``stage.json``, each manifest entry matches its sha256,
   and each report and JSON file parses.
4. Resumes the victim to the end and compares its evaluation and bench
   accuracy with the reference's: equal within 1e-4 relative (latencies are
   timings and are not compared).

Exit code 0 when every check passed; 1 with the failures listed otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Longest random wait after a stage starts (seconds), a little under that stage's
# usual length here, so the kill lands inside the stage it aims at.
MAX_WAIT = {
    "tiny": {"data": 1, "teacher": 6, "student": 3, "evaluate": 3, "quantize": 8, "export": 8, "bench": 6},
    "small": {"data": 2, "teacher": 120, "student": 200, "evaluate": 6, "quantize": 15, "export": 15, "bench": 15},
    "full": {"data": 10, "teacher": 600, "student": 600, "evaluate": 30, "quantize": 60, "export": 60, "bench": 60},
}


# The two pipelines run side by side: one compute thread each, or torch's
# spinning OpenMP threads oversubscribe the cores (measured: 3-7 s per teacher
# step instead of 0.3 on this 2-core machine). Both runs use the same setting,
# so their results stay comparable.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pipeline_cmd(out: Path, a: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "facemat.pipeline", "--out", str(out), "--budget", a.budget,
            "--targets", a.targets, "--bench-device", "crashtest"]


def running_stage(out: Path, name: str) -> bool:
    return (out / name / "pending.json").exists()


def finished(out: Path) -> bool:
    return (out / "pipeline.json").exists()


def check_files(out: Path) -> list[str]:
    """Every file that exists now is valid; returns the problems found."""
    from bench.report import load_report
    from facemat.checkpoint import read_checkpoint
    from facemat.pipeline import folder_digests
    from quantize.core import load_quantized
    from targets.manifest import read_manifest, verify_entry

    problems: list[str] = []
    visible = [p for p in out.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(out).parts)]
    for p in visible:
        try:
            if p.suffix == ".pt":
                read_checkpoint(p)
            elif p.suffix == ".pt2":
                load_quantized(p)  # registers the quantized ops, then torch.export.load
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".jsonl":
                for line in p.read_text().splitlines():
                    json.loads(line)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            problems.append(f"{p}: {type(exc).__name__}: {str(exc)[:200]}")
    for rec_path in out.glob("*/stage.json"):
        rec = json.loads(rec_path.read_text())
        if folder_digests(rec_path.parent) != rec["outputs"]:
            problems.append(f"{rec_path.parent}: outputs differ from its stage.json")
    manifest = out / "export" / "manifest.json"
    if manifest.exists():
        for entry in read_manifest(manifest)["artifacts"].values():
            try:
                verify_entry(manifest.parent, entry)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{entry.get('id')}: {exc}")
    report = out / "bench" / "report.json"
    if report.exists():
        try:
            load_report(report)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{report}: {exc}")
    return problems


def accuracy(out: Path) -> dict[str, float]:
    """Every accuracy figure of the evaluation and the bench report, flattened."""
    flat: dict[str, float] = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            flat[prefix] = float(obj)

    walk("evaluate", {k: v for k, v in json.loads((out / "evaluate" / "report.json").read_text()).items()
                      if k not in ("wall_s", "settings", "checkpoint", "teacher")})
    for row in json.loads((out / "bench" / "report.json").read_text())["rows"]:
        walk(f"bench.{row['artifact']}.{row.get('threads')}", row.get("accuracy") or {})
    return flat


def compare(ref: dict[str, float], got: dict[str, float], rel: float = 1e-4) -> list[str]:
    problems = [f"{k}: only in one run" for k in sorted(set(ref) ^ set(got))]
    for k in sorted(set(ref) & set(got)):
        a, b = ref[k], got[k]
        if not (a == b or abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)):
            problems.append(f"{k}: reference {a:.6g}, resumed {b:.6g}")
    return problems


def become_subreaper() -> None:
    """Orphans of the killed pipeline get reparented to this script (not to PID 1), which reaps them."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def live_members(sid: int) -> list[str]:
    """Processes of session ``sid`` that are still running; its orphaned zombies are reaped, not counted."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid, _pgrp, session = text.rsplit(")", 1)[1].split()[:4]
        if int(session) != sid:
            continue
        if state != "Z":
            alive.append(text.split(")")[0] + ")")
        elif int(ppid) == os.getpid():  # reparented to us (subreaper): reap it
            try:
                os.waitpid(int(stat.parent.name), os.WNOHANG)
            except ChildProcessError:
                pass
    return alive


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the reference and the victim runs (emptied first)")
    ap.add_argument("--budget", default="small", choices=tuple(MAX_WAIT))
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--targets", default="onnx", help="pipeline --targets (default onnx, the cheapest chain)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: from the clock)")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else int(time.time()) % 100000
    print(f"crash_resume: seed {seed} (rerun with --seed {seed}); budget {a.budget}; {a.kills} kills", flush=True)
    rng = random.Random(seed)
    become_subreaper()
    out = Path(a.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    ref_dir, victim = out / "reference", out / "victim"
    ref_log = open(out / "reference.log", "wb")
    ref = subprocess.Popen(pipeline_cmd(ref_dir, a), cwd=ROOT, stdout=ref_log, stderr=subprocess.STDOUT, env=ENV)

    from facemat.pipeline import PipelineSettings, build_stages

    stages = [st.name for st in build_stages(PipelineSettings(out=str(victim), budget=a.budget,
                                                              targets=tuple(a.targets.split(","))), victim)]
    failures: list[str] = []
    kills = 0
    t_start = time.monotonic()
    for i in range(a.kills):
        stage = stages[i * len(stages) // a.kills]  # spread over the chain, in order (a finished stage never reruns)
        log = open(out / f"victim-{i}.log", "wb")
        proc = subprocess.Popen(pipeline_cmd(victim, a), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=ENV)
        # Wait for the aimed-at stage (or any later one) to be running, then a random moment.
        while proc.poll() is None and not running_stage(victim, stage):
            if (victim / stage / "stage.json").exists():
                break  # already done in an earlier life: kill wherever the run is now
            time.sleep(0.05)
        wait = rng.uniform(0.0, MAX_WAIT[a.budget][stage.split("-")[0]])
        deadline = time.monotonic() + wait
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is not None:
            print(f"kill {i + 1}: the run finished before the kill (aimed at {stage}); "
                  f"exit {proc.returncode}", flush=True)
            if proc.returncode != 0:
                failures.append(f"life {i}: pipeline exited {proc.returncode} (see {log.name})")
            break
        now = [p.parent.name for p in victim.glob("*/pending.json")]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        survivors: list[str] = []
        for _ in range(50):  # children get SIGKILL from the kernel (PR_SET_PDEATHSIG); give them 5 s
            survivors = live_members(proc.pid)
            if not survivors:
                break
            time.sleep(0.1)
        if survivors:
            failures.append(f"kill {i + 1}: children of the pipeline survived it: {', '.join(survivors)}")
            os.killpg(proc.pid, signal.SIGKILL)
        problems = check_files(victim)
        failures += [f"after kill {i + 1}: {p}" for p in problems]
        print(f"kill {i + 1}/{a.kills}: SIGKILL {wait:.1f} s after {stage} started (running: "
              f"{', '.join(now) or 'between stages'}); files valid: {'yes' if not problems else 'NO'}", flush=True)

    log = open(out / "victim-final.log", "wb")
    final = subprocess.run(pipeline_cmd(victim, a), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    if final.returncode != 0:
        failures.append(f"the final resume exited {final.returncode} (see victim-final.log)")
    ref.wait()
    if ref.returncode != 0:
        failures.append(f"the reference run exited {ref.returncode} (see reference.log)")
    failures += [f"final: {p}" for p in check_files(victim)]
    if not failures:
        ref_acc, got_acc = accuracy(ref_dir), accuracy(victim)
        diffs = compare(ref_acc, got_acc)
        failures += [f"report: {d}" for d in diffs]
        print(f"compared {len(ref_acc)} accuracy figures with the uninterrupted reference: "
              f"{len(diffs)} differ", flush=True)
    wall = time.monotonic() - t_start
    if failures:
        print(f"crash_resume: FAILED after {kills} kills ({wall:.0f} s), seed {seed}:", flush=True)
        for f in failures:
            print(f"  {f}")
        return 1
    print(f"crash_resume: OK: {kills} kills, every resume completed, every file valid after each kill, "
          f"final report equals the reference; {wall:.0f} s; seed {seed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
