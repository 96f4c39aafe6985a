"""Shared fixtures: small dataset folders written by the tests themselves (helpers in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_disc_folder


@pytest.fixture()
def disc_folder(tmp_path: Path) -> Path:
    return write_disc_folder(tmp_path / "discs", count=12)
