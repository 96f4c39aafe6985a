"""Exceptions for user mistakes and bad inputs.

Every message says what was wrong (naming the file or flag) and what to do.
CLIs turn these into a one-line ``error: ...`` on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FaceMatError(Exception):
    """Base class for errors caused by user input, not by a bug."""


class ConfigError(FaceMatError, ValueError):
    """A flag or setting has a value outside what is allowed."""


class DataError(FaceMatError):
    """A dataset folder or file is missing, empty, corrupt or inconsistent."""


class CheckpointError(FaceMatError):
    """A checkpoint is missing, truncated, not a checkpoint, or does not match."""


def check_size(value: int, flag: str = "--size") -> None:
    """Raise ``ConfigError`` unless ``value`` is a positive multiple of 32 (the nets downsample by 32)."""
    if value <= 0 or value % 32:
        raise ConfigError(f"{flag} must be a positive multiple of 32, got {value}")
