"""``python -m training.ablation``: the distillation ablation, uncertainty vs uniform vs no KD, on several seeds.

For each arm (``--kd uncertainty|uniform|none``) and seed it runs
``python -m training.distill`` into ``OUT/<arm>-seed<S>/`` (a finished run is
reused when its ``config.json`` matches; an interrupted one resumes), then
``python -m training.evaluate`` with the teacher on every ``--eval`` folder.
``OUT/report.json`` and the printed table give, per arm and folder, the mean and
sample standard deviation over seeds of SAD and IoU overall and SAD in the
teacher's high-uncertainty band (top 10 % of ``b``), beside the ``mesh-oval``
baseline.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from facemat.cli import ArgumentParser, add_debug_flag, parse_seeds, run_main
from facemat.errors import ConfigError
from facemat.io import write_json_atomic

ARMS = ("uncertainty", "uniform", "none")


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise ConfigError(f"{' '.join(cmd[:3])} failed with exit code {proc.returncode} (see its message above)")


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def ablate(teacher: str, out: str, evals: Sequence[str], seeds: Sequence[int], arms: Sequence[str],
           distill_args: Sequence[str]) -> dict[str, Any]:
    """Train and evaluate every arm x seed; returns the report (also written to ``OUT/report.json``)."""
    root = Path(out)
    py = sys.executable
    per_run: dict[str, dict[str, Any]] = {}
    for arm in arms:
        for seed in seeds:
            run = root / f"{arm}-seed{seed}"
            cmd = [py, "-m", "training.distill", "--kd", arm, "--seed", str(seed), "--out", str(run),
                   *(["--teacher", teacher] if arm != "none" else []), *distill_args]
            if (run / "last.pt").exists() and not (run / "best.pt").exists():
                cmd.append("--resume")
            done = run / "metrics.jsonl"
            if not (done.exists() and '"kind": "done"' in done.read_text()):
                _run(cmd)
            report = run / "eval.json"
            if not report.exists():
                _run([py, "-m", "training.evaluate", "--checkpoint", str(run / "best.pt"), "--teacher", teacher,
                      "--data", evals[0], *(["--also", *evals[1:]] if len(evals) > 1 else []),
                      "--json", str(report)])
            per_run[f"{arm}-seed{seed}"] = json.loads(report.read_text())
    rows: dict[str, dict[str, Any]] = {}
    for arm in arms:
        reports = [per_run[f"{arm}-seed{s}"] for s in seeds]
        for i, folder in enumerate(evals):
            sets = [r if i == 0 else r["also"][i - 1] for r in reports]
            rows.setdefault(arm, {})[folder] = {
                "sad": _stats([s["bands"]["overall"]["sad"] for s in sets]),
                "iou": _stats([s["bands"]["overall"]["iou"] for s in sets]),
                "sad_uncertainty_band": _stats([s["bands"]["uncertainty"]["sad"] for s in sets]),
                "iou_occluded": _stats([s["splits"]["model"]["occluded"]["iou"] for s in sets
                                        if "occluded" in s["splits"]["model"]] or [float("nan")]),
                "mesh_oval_iou": sets[0]["splits"].get("mesh-oval", {}).get("all", {}).get("iou"),
            }
    result = {"teacher": teacher, "seeds": list(seeds), "arms": list(arms), "eval": list(evals),
              "distill_args": list(distill_args), "rows": rows}
    write_json_atomic(root / "report.json", result)
    return result


def format_report(result: dict[str, Any]) -> str:
    lines = []
    for folder in result["eval"]:
        lines.append(f"{folder} (mean ± sd over seeds {result['seeds']})")
        lines.append(f"{'arm':<13}{'SAD':>16}{'IoU':>16}{'SAD u-band':>16}{'IoU occluded':>16}")
        for arm, per in result["rows"].items():
            r = per[folder]
            cells = [f"{r[k]['mean']:.4f}±{r[k]['sd']:.4f}" for k in ("sad", "iou", "sad_uncertainty_band",
                                                                        "iou_occluded")]
            lines.append(f"{arm:<13}" + "".join(f"{c:>16}" for c in cells))
        base = next(iter(result["rows"].values()))[folder]["mesh_oval_iou"]
        if base is not None:
            lines.append(f"{'mesh-oval':<13}{'':>16}{base:>16.4f}")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m training.ablation",
        description="Distil one student per KD arm (uncertainty, uniform, none) and seed from the same teacher, "
        "evaluate each on the given folders, and report mean ± sd over seeds, overall and in the teacher's "
        "high-uncertainty band, beside the mesh-oval baseline. Extra arguments after -- go to training.distill.",
    )
    parser.add_argument("--teacher", required=True, help="teacher checkpoint")
    parser.add_argument("--out", required=True, help="folder for the runs and report.json")
    parser.add_argument("--eval", nargs="+", required=True, metavar="DIR", help="dataset folders to evaluate on")
    parser.add_argument("--seeds", default="1,2", help="comma-separated seeds (default 1,2)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated KD arms (default {','.join(ARMS)})")
    add_debug_flag(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    seeds = list(parse_seeds(args.seeds))
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms or not seeds:
        raise ConfigError(f"--arms must be a comma-separated subset of {', '.join(ARMS)} and --seeds non-empty")
    for folder in args.eval:
        if not Path(folder).is_dir():
            raise ConfigError(f"--eval: {folder} is not a folder")
    if not Path(args.teacher).is_file():
        raise ConfigError(f"--teacher: {args.teacher} is not a file")
    print(format_report(ablate(args.teacher, args.out, args.eval, seeds, arms, extra)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
