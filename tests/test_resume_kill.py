"""kill -9 in the middle of `skelcl pretrain`, then `--resume`: the same final weights as a run never killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _write_npz(path: Path, n: int = 64, t: int = 12, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, t, 1, 5, 3)) * 0.3, axis=1).astype(np.float32)
    y = np.arange(n) % 4
    np.savez(path, x=x, y=y)


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    sets = ["data.dataset=npz", f"data.root={data}", "data.protocol=all", "data.options.layout=custom:5:0",
            "model.hidden=16", "contrast.queue_size=32", "contrast.normalize=true", "contrast.temperature=0.2",
            "optim.epochs=40", "optim.batch_size=16", "optim.lr=0.05", "train.tensorboard=false",
            "train.device=cpu", "train.threads=1"]
    args = [sys.executable, "-m", "skelcl", "pretrain", "synthetic", "--out", str(out), "--quiet"]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def _epoch(out: Path) -> int:
    try:
        return int(torch.load(out / "checkpoint.pt", weights_only=True)["epoch"])
    except Exception:  # not written yet, or caught mid-rename
        return 0


def test_kill9_then_resume_gives_identical_weights(tmp_path):
    data = tmp_path / "d.npz"
    _write_npz(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_cmd(data, full), check=True, env=env, capture_output=True, timeout=300)

    proc = subprocess.Popen(_cmd(data, cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _epoch(cut) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    killed_at = _epoch(cut)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < killed_at < 40, f"the run should be killed mid-way (epoch {killed_at})"

    r = subprocess.run([sys.executable, "-m", "skelcl", "pretrain", "--resume", str(cut), "--quiet"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 40
    for k in a["learner"]:
        assert torch.equal(a["learner"][k], b["learner"][k]), k
