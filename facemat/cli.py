"""Shared command-line plumbing: error reporting and the ``--debug`` flag.

User mistakes (``FaceMatError``) print one line, ``error: <message>``, on stderr
and exit with code 2, without a traceback unless ``--debug`` is given. Ctrl-C
exits with 130. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from facemat.errors import FaceMatError


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (show full tracebacks) to ``parser``."""
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and turn user errors into a one-line message and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rc = main(args)
    except FaceMatError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
