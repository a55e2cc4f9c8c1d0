"""Data-parallel pretraining: 2 CPU processes (gloo) launched by torchrun, as a user would.

Checks that the loss falls, that every rank ends an epoch with the same weights, key encoder and
queue (checksums in the checkpoint), that a DDP run resumes a checkpoint and starts from scratch,
and that its checkpoint loads into, and continues in, a single process. Also the batch gather that
every rank uses: float16 storage, no copy of the dataset, float32 batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skelcl.config import load_config
from skelcl.layouts import get_layout
from skelcl.store import SkeletonDataset
from skelcl.train import BatchSource, load_checkpoint, pretrain

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is not available")


def _write_npz(path: Path, n: int = 128, t: int = 16, seed: int = 0) -> None:
    """Random-walk 'actions' of 4 classes with class-specific drift; 1 person x 15 joints (sbu15)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    drift = rng.normal(size=(4, 1, 1, 15, 3)) * 0.1
    x = np.cumsum(rng.normal(size=(n, t, 1, 15, 3)) * 0.3 + drift[labels], axis=1).astype(np.float32)
    lengths = rng.integers(t // 2, t + 1, size=n)
    for i, length in enumerate(lengths):
        x[i, length:] = 0
    np.savez(path, x=x, y=labels, lengths=lengths)


def _config_file(tmp: Path, epochs: int) -> Path:
    _write_npz(tmp / "tiny.npz")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(f"""name: tiny-ddp
data: {{dataset: npz, root: {tmp / 'tiny.npz'}, protocol: all, preprocess: {{frames: 16, persons: 1}}}}
model: {{hidden: 32}}
contrast: {{queue_size: 64, momentum: 0.99, temperature: 0.1, normalize: true}}
optim: {{lr: 0.05, epochs: {epochs}, milestones: [4], batch_size: 16}}
train: {{tensorboard: false, device: cpu, seed: 3}}
augment: [reverse, {{shear: {{amplitude: 0.3}}}}]
""")
    return cfg


def _torchrun(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "skelcl", "pretrain", *args, "--quiet"]
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "out of sync" not in out, out[-4000:]
    return out


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_two_process_run_resumes_trains_and_loads_in_one_process(tmp_path):
    cfg_file = _config_file(tmp_path, epochs=6)
    run = tmp_path / "run"
    # epochs 1-2 in this process, 3-6 resumed by 2 processes: DDP picks up a single-process checkpoint
    pretrain(load_config(cfg_file), run, progress=False, stop_after=2)
    _torchrun("--resume", str(run))
    ck = _ckpt(run)
    assert ck["epoch"] == 6 and ck["world_size"] == 2
    fps = ck["rank_fingerprints"]
    assert len(fps) == 2 and fps[0] == fps[1]  # weights, key encoder and queue equal on both ranks
    losses = [m["loss"] for m in ck["metrics"]]
    assert len(losses) == 6 and all(np.isfinite(losses))
    # epoch 1 contrasts against the random initial queue; compare with the first full-queue epoch
    assert losses[-1] < 0.75 * losses[1], losses
    assert losses[-1] < min(losses[1:4]), losses
    assert not any(k.startswith("module.") for k in ck["learner"])  # plain keys, no DDP wrapper

    # the DDP checkpoint is a single-process learner
    learner, cfg = load_checkpoint(run)
    from safetensors.torch import load_file

    enc = load_file(str(run / "encoder.safetensors"))
    torch.testing.assert_close(enc["rnn.weight_ih_l0"], learner.encoder_q.rnn.weight_ih_l0)

    # and continues in one process: one more epoch from the 2-process state (optimiser, queue, schedule)
    ck["config"]["optim"]["epochs"] = 7
    (tmp_path / "more").mkdir()
    torch.save(ck, tmp_path / "more" / "checkpoint.pt")
    res = pretrain(load_config(None), tmp_path / "more", resume=True, progress=False)
    assert [int(m["epoch"]) for m in res.metrics] == list(range(1, 8))
    assert np.isfinite(res.metrics[-1]["loss"]) and res.metrics[-1]["loss"] < 1.5 * losses[-1]


def test_two_process_run_from_scratch_keeps_ranks_in_sync(tmp_path):
    cfg_file = _config_file(tmp_path, epochs=2)
    run = tmp_path / "run"
    # memory bank: rank-local bank updates are all-gathered; fill_queue is a no-op there, so use the queue
    _torchrun(str(cfg_file), "--out", str(run), "--set", "contrast.fill_queue=true")
    ck = _ckpt(run)
    assert ck["epoch"] == 2 and ck["rank_fingerprints"][0] == ck["rank_fingerprints"][1]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.yaml", "encoder.safetensors",
                                                     "loss.png", "metrics.csv"]
    bank = tmp_path / "bank"
    _torchrun(str(cfg_file), "--out", str(bank), "--set", "contrast.paradigm=memory_bank")
    ck = _ckpt(bank)
    assert ck["rank_fingerprints"][0] == ck["rank_fingerprints"][1]
    assert all(np.isfinite(m["loss"]) for m in ck["metrics"])
    # the decoder of contrast.reconstruct trains on every rank; its logged error is the ranks' mean
    rec = tmp_path / "rec"
    _torchrun(str(cfg_file), "--out", str(rec), "--set", "contrast.reconstruct=1.0")
    ck = _ckpt(rec)
    assert ck["rank_fingerprints"][0] == ck["rank_fingerprints"][1]
    assert any(k.startswith("decoder.") for k in ck["learner"])
    assert all(0 < m["recon"] < m["loss"] for m in ck["metrics"])


def test_batches_are_gathered_from_float16_storage_without_copying_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8, 2, 15, 3)).astype(np.float16)
    ds = SkeletonDataset(x=x, lengths=rng.integers(1, 9, size=50).astype(np.int64),
                         labels=np.zeros(50, dtype=np.int64), layout=get_layout("sbu15"))
    rows = np.arange(50)[::-2].copy()  # training rows 49, 47, ..., 1
    src = BatchSource(ds, rows, torch.device("cpu"))
    assert src.x is not None and src.x.data_ptr() == x.ctypes.data  # the dataset's own memory
    sel = torch.tensor([0, 3, 24, 3])
    xb, lb, _ = src.get(sel)
    assert xb.dtype == torch.float32 and xb.shape == (4, 8, 2, 15, 3)
    np.testing.assert_array_equal(xb.numpy(), x[rows[sel.numpy()]].astype(np.float32))
    np.testing.assert_array_equal(lb.numpy(), ds.lengths[rows[sel.numpy()]])
    # a read-only memory map is gathered in numpy, with the same result
    ro = x.copy()
    ro.flags.writeable = False
    xb2, _, _ = BatchSource(ds.__class__(x=ro, lengths=ds.lengths, labels=ds.labels, layout=ds.layout),
                            rows, torch.device("cpu")).get(sel)
    torch.testing.assert_close(xb, xb2, rtol=0, atol=0)
