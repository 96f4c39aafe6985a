"""Shared command-line plumbing: flags built from a settings dataclass, error reporting, ``--debug``.

Settings are declared once, as dataclass fields; :func:`flag` attaches the help
text (and choices) to a field, :func:`add_settings_args` turns those fields into
``--kebab-case`` flags with the field's type and default, and
:func:`settings_from_args` builds the dataclass back from the parsed flags.

User mistakes (``FaceMatError``, argparse usage errors) and failed file
operations (an ``OSError`` naming its file: read-only folder, disk full) print
one line, ``error: <message>``, on stderr and exit with code 2, without a
traceback unless ``--debug`` is given. Ctrl-C exits with 130. Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import sys
from typing import Any, Callable, Sequence

from facemat.errors import ConfigError, FaceMatError
from facemat.safety import LIMITS_HELP, finite_float

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


def flag(default: Any = dataclasses.MISSING, *, help: str, choices: Sequence[Any] | None = None,
         required: bool = False) -> Any:
    """A settings field that is also a command-line flag.

    Args:
        default: the field's default (omit for a required setting).
        help: the flag's help text; ``%(default)s`` works as in argparse.
        choices: allowed values, checked by the parser as well as by the dataclass.
        required: the flag must be given even though the field has a default
            (a field without a default is always required).
    """
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "required": required})


_TYPES = {"int": int, "float": finite_float, "str": str}


def add_settings_args(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Add a ``--name`` flag for every field of dataclass ``cls`` declared with :func:`flag`.

    The flag's type comes from the field's annotation (``int``, ``float``,
    ``str``, ``X | None``; ``bool`` becomes a ``store_true`` switch), its default
    from the field. Fields without :func:`flag` metadata, and those in ``skip``,
    are not flags.
    """
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or f.name in skip:
            continue
        name = "--" + f.name.replace("_", "-")
        annotation = str(f.type).split("|")[0].strip()
        kwargs: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name}
        if annotation == "bool":
            parser.add_argument(name, action="store_true", **kwargs)
            continue
        kwargs["type"] = _TYPES[annotation]
        if f.metadata["choices"] is not None:
            kwargs["choices"] = f.metadata["choices"]
        if f.default is dataclasses.MISSING or f.metadata["required"]:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        parser.add_argument(name, **kwargs)


def settings_from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """``cls(**parsed flags, **extra)``: every field :func:`add_settings_args` made a flag, plus ``extra``."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**given, **extra})


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


def parse_seeds(spec: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``; names the flag on a bad list."""
    try:
        return tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers like 1,2,3, got {spec!r}") from None
