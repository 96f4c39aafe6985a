"""Crash safety in CI: ``scripts/crash_resume.py`` with the tiny budget and three SIGKILLs.

The script runs an uninterrupted pipeline and, in another folder at the same
time, one it kills and resumes; after every kill every file must be valid, and
the resumed run's accuracy figures must equal the uninterrupted run's. The kill
moments come from a fixed seed, printed (pytest shows it on failure), so a
failure reproduces with ``python scripts/crash_resume.py ... --seed SEED``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


# Kill moments drawn from fixed seeds (in the test id): every CI run kills at the same places.
@pytest.mark.parametrize("seed", [926])
def test_three_kills_resume_to_the_uninterrupted_result(tmp_path: Path, seed: int):
    print(f"crash_resume seed {seed}")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "crash_resume.py"), "--out", str(tmp_path / "crash"),
                           "--budget", "tiny", "--kills", "3", "--targets", "onnx", "--seed", str(seed)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "crash_resume: OK: 3 kills" in proc.stdout, proc.stdout
    assert proc.stdout.count("files valid: yes") == 3
