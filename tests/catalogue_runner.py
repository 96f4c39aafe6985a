"""Run several bad-input catalogue cases in one Python process (``python -m tests.catalogue_runner SPEC``).

Each case is its command's real entry point, exactly what ``python -m MODULE ARGS`` runs
(``facemat.cli.run_main(MODULE.main, ARGS)``), with stdout and stderr captured at the file-descriptor
level so lines that C libraries print (FFmpeg, OpenCV) count too. Sharing the process saves one
torch import per case. SPEC is a JSON list of ``{"name", "module", "argv"}``; the results
(``{name: {"returncode", "stdout", "stderr"}}``) are written to SPEC + ".out".
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback


def run_one(module: str, argv: list[str]) -> dict:
    """Run one command with fd 1 and 2 redirected to temporary files; returns its exit code and output."""
    from facemat.cli import run_main

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            rc = run_main(importlib.import_module(module).main, argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is what the catalogue must see
            traceback.print_exc()
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
    return {"returncode": rc, "stdout": texts[0], "stderr": texts[1]}


def main(spec_path: str) -> None:
    cases = json.loads(open(spec_path).read())
    results = {c["name"]: run_one(c["module"], c["argv"]) for c in cases}
    with open(spec_path + ".out", "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
