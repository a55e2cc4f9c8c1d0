"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """Where the real third-party data lives: $SKELCL_SHARED_DATA or ../shared/data beside the repo."""
    env = os.environ.get("SKELCL_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (read its PROVENANCE.txt files); skips the test when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set SKELCL_SHARED_DATA)")
    return path
