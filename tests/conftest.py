"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

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


@pytest.fixture
def folder_holder() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Start another process that holds a run folder (``skelcl.store.hold_folder``) until it is killed;
    every process started is killed at the end of the test."""
    started: list[subprocess.Popen] = []
    code = ("import sys, time\nfrom skelcl.store import hold_folder\n"
            "with hold_folder(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)\n")

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
