"""Contrastive pretraining, top to bottom: data -> two augmented views -> learner -> SGD step.

``pretrain(cfg, out_dir)`` writes into ``out_dir``: ``config.yaml`` (resolved), ``checkpoint.pt``
(a plain dict, written atomically at the end of every epoch), ``metrics.csv``, TensorBoard events,
``loss.png`` and, at the end, ``encoder.safetensors``. ``pretrain(..., resume=True)`` continues from
the last checkpoint; every random draw is seeded from (seed, epoch), so a killed-and-resumed run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import Config, config_from_dict, save_config
from .contrast import ContrastiveLearner
from .errors import ConfigError, SkelclError
from .formats import load_dataset
from .store import SkeletonDataset

CHECKPOINT = "checkpoint.pt"
ENCODER_FILE = "encoder.safetensors"


class TrainingDiverged(SkelclError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    return dev


def load_data(cfg: Config) -> SkeletonDataset:
    """The dataset a config names, preprocessed as it says."""
    d = cfg.data
    return load_dataset(d.dataset, root=d.root, pre=d.preprocess or None, skip_bad=d.skip_bad, **d.options)


def train_indices(ds: SkeletonDataset, protocol: str | None) -> np.ndarray:
    """Indices used for unsupervised pretraining: the protocol's training split (all samples if ``all``)."""
    if not protocol or protocol == "all":
        return np.arange(len(ds))
    return ds.split(protocol)[0]


def build_learner(cfg: Config, input_dim: int, num_samples: int) -> ContrastiveLearner:
    torch.manual_seed(cfg.train.seed)
    return ContrastiveLearner(input_dim, cfg.model, cfg.contrast, num_samples=num_samples, seed=cfg.train.seed)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[ContrastiveLearner, Config]:
    """Rebuild the learner and config from a checkpoint file or a run folder."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.exists():
        raise ConfigError(f"no checkpoint at {p}")
    ckpt = torch.load(p, map_location=map_location, weights_only=True)
    cfg = config_from_dict(ckpt["config"])
    learner = ContrastiveLearner(int(ckpt["input_dim"]), cfg.model, cfg.contrast,
                                 num_samples=int(ckpt["num_samples"]), seed=cfg.train.seed)
    learner.load_state_dict(ckpt["learner"])
    learner.eval()
    return learner, cfg


def export_encoder(learner: ContrastiveLearner, cfg: Config, path: Path) -> None:
    """The query encoder's weights as safetensors, with the config in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in learner.encoder_q.state_dict().items()}
    meta = {"config": json.dumps(cfg.to_dict()), "input_dim": str(learner.encoder_q.input_dim)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _plot_loss(path: Path, rows: list[dict[str, float]], title: str) -> None:
    from .report import plot_loss_curve

    plot_loss_curve([r["epoch"] for r in rows], [r["loss"] for r in rows], path, title=title)


@dataclass
class PretrainResult:
    out_dir: Path
    learner: ContrastiveLearner
    config: Config
    metrics: list[dict[str, float]]
    dataset: SkeletonDataset


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def pretrain(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
             dataset: SkeletonDataset | None = None, stop_after: int | None = None,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> PretrainResult:
    """Run (or resume) contrastive pretraining.

    Args:
        cfg: the resolved config.
        out_dir: run folder (created).
        resume: continue from ``out_dir/checkpoint.pt`` (its config wins over ``cfg``).
        progress: show a tqdm bar per epoch.
        dataset: an already loaded dataset (else ``cfg.data`` is read).
        stop_after: stop after this many epochs in total (for tests and time-boxed runs).
        on_epoch: called with (epoch, metrics row) after each checkpoint.
    """
    from .augment import build_augment

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    ckpt: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.exists():
            raise ConfigError(f"--resume: no checkpoint in {out}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        cfg = config_from_dict(ckpt["config"])
    save_config(cfg, out / "config.yaml")

    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    ds = dataset if dataset is not None else load_data(cfg)
    idx_train = train_indices(ds, cfg.data.protocol)
    n = len(idx_train)
    bs = cfg.optim.batch_size
    if n < 2:
        raise ConfigError(f"pretraining needs at least 2 training sequences, got {n}")
    bs = min(bs, n)
    steps = n // bs  # the last partial batch is dropped: every step sees a full batch

    # Data stay in their storage dtype; each batch is gathered by index and converted to float32.
    X = torch.from_numpy(np.ascontiguousarray(ds.x[idx_train]))
    L = torch.from_numpy(ds.lengths[idx_train].astype(np.int64))
    if device.type == "cuda":
        X, L = X.to(device), L.to(device)
    input_dim = int(np.prod(ds.x.shape[2:]))

    learner = build_learner(cfg, input_dim, n).to(device)
    augment = build_augment(cfg.augment)
    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                          weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.optim.milestones),
                                                 gamma=cfg.optim.gamma)
    metrics: list[dict[str, float]] = []
    start_epoch = 0
    if ckpt is not None:
        learner.load_state_dict(ckpt["learner"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        metrics = list(ckpt["metrics"])
        start_epoch = int(ckpt["epoch"])

    writer = None
    if cfg.train.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch)
        except Exception:  # tensorboard is optional at run time
            writer = None

    gen_device = device if device.type == "cuda" else torch.device("cpu")
    aug_gen = torch.Generator(device=gen_device)
    perm_gen = torch.Generator()
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if cfg.train.amp == "bf16" else torch.autocast(device_type=device.type, enabled=False))

    def batch(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sel_d = sel.to(X.device)
        xb = X[sel_d].to(device, non_blocking=True).float()
        return xb, L[sel_d].to(device, non_blocking=True)

    if cfg.contrast.fill_queue and start_epoch == 0 and learner.queue is not None:
        with torch.no_grad():  # released code: one pass filling the queue with keys of the random encoder
            aug_gen.manual_seed(_epoch_seed(cfg.train.seed, -1))
            for b in range(min(steps, math.ceil(cfg.contrast.queue_size / bs))):
                xb, lb = batch(torch.arange(b * bs, (b + 1) * bs))
                k = learner._embed(learner.encoder_k, learner.head_k, augment(xb, lb, aug_gen), lb)
                learner.queue.enqueue(k)

    total = cfg.optim.epochs if stop_after is None else min(cfg.optim.epochs, stop_after)
    for epoch in range(start_epoch, total):
        learner.train()
        es = _epoch_seed(cfg.train.seed, epoch)
        perm_gen.manual_seed(es)
        aug_gen.manual_seed(es)
        torch.manual_seed(es)  # memory-bank negative draws
        perm = torch.randperm(n, generator=perm_gen)
        lr = opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
                       dynamic_ncols=True)
        for b in range(steps):
            sel = perm[b * bs:(b + 1) * bs]
            xb, lb = batch(sel)
            with autocast:
                xq = augment(xb, lb, aug_gen)
                xk = augment(xb, lb, aug_gen)
                loss = learner(xq, xk, lb, index=sel)
            if not torch.isfinite(loss):
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {b + 1}; the last good checkpoint "
                    f"({ckpt_path if ckpt_path.exists() else 'none yet'}) is kept. Try a lower optim.lr, a higher "
                    f"contrast.temperature, or contrast.normalize=true.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            if bar is not None and (b % 10 == 0 or b == steps - 1):
                el = time.perf_counter() - t0
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}", seq_s=f"{(b + 1) * bs / el:.0f}")
                bar.update(b + 1 - bar.n)
        if bar is not None:
            bar.close()
        sched.step()
        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": float(loss_sum.item() / steps), "lr": lr,
               "seq_per_s": steps * bs / elapsed, "time_s": elapsed}
        metrics.append(row)
        state = {
            "config": cfg.to_dict(), "epoch": epoch + 1, "input_dim": input_dim, "num_samples": n,
            "learner": learner.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "metrics": metrics, "skelcl_version": __import__("skelcl").__version__,
        }
        _atomic_save(state, ckpt_path)
        _write_metrics(out / "metrics.csv", metrics)
        if writer is not None:
            for k in ("loss", "lr", "seq_per_s"):
                writer.add_scalar(f"pretrain/{k}", row[k], epoch + 1)
            writer.flush()
        if progress:
            print(f"epoch {epoch + 1:3d}/{cfg.optim.epochs}  loss {row['loss']:.4f}  lr {lr:.4g}  "
                  f"{row['seq_per_s']:.0f} seq/s  {elapsed:.1f}s", flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)

    if writer is not None:
        writer.close()
    if metrics:
        _plot_loss(out / "loss.png", metrics, f"{cfg.name}: contrastive loss")
    if metrics and int(metrics[-1]["epoch"]) >= cfg.optim.epochs:
        export_encoder(learner, cfg, out / ENCODER_FILE)
    learner.eval()
    return PretrainResult(out, learner, cfg, metrics, ds)
