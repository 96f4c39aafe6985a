"""Shared command-line plumbing: error reporting and the ``--debug`` flag.

User mistakes (``FaceMatError``, argparse usage errors) and failed file
operations (an ``OSError`` naming its file: read-only folder, disk full) print
one line, ``error: <message>``, on stderr and exit with code 2, without a
traceback unless ``--debug`` is given. Ctrl-C exits with 130. Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from typing import Callable, Sequence

from facemat.errors import ConfigError, FaceMatError
from facemat.safety import LIMITS_HELP, finite_float  # noqa: F401 - finite_float is the float type for flags

# Library loggers whose warnings are known noise on this toolchain (torchao's
# optional CUDA kernels that a CPU wheel cannot load; torch's pytree deprecation
# notice triggered by torchao). Silenced so a user error stays one line.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
# Write errors that mean "no room here": disk full, quota exceeded, file-size limit.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors (unknown choice, bad type, missing flag)
    raise ``ConfigError``, so :func:`run_main` prints them as one line like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")

    def format_help(self) -> str:
        """argparse's help, ending with the input limits every command enforces (facemat.safety)."""
        return f"{super().format_help().rstrip()}\n\n{LIMITS_HELP}\n"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (show full tracebacks) to ``parser``."""
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def one_line(message: str) -> str:
    """``message`` with line breaks and other control characters escaped, so it stays one line.

    A file name may hold a newline; printed raw it would forge a second ``error:`` line.
    """
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in message)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and turn user errors into a one-line message and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if not debug:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        rc = main(args)
    except FaceMatError as exc:
        if debug:
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file the command had to read or write: name it and say why (no space, read-only, ...).
        if debug or exc.filename is None:
            raise
        hint = "; free some space or choose another output" if exc.errno in _NO_ROOM else ""
        print(f"error: {one_line(str(exc.filename))}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
