"""Contrastive pretraining, top to bottom: data -> two augmented views -> learner -> SGD step.

``pretrain(cfg, out_dir)`` writes into ``out_dir``: ``config.yaml`` (resolved), ``checkpoint.pt``
(a plain dict, written atomically at the end of every epoch), ``metrics.csv``, TensorBoard events,
``loss.png`` and, at the end, ``encoder.safetensors``. ``pretrain(..., resume=True)`` continues from
the last checkpoint; every random draw is seeded from (seed, epoch), so a killed-and-resumed run
ends with the same weights as an uninterrupted one.

Speed: the LSTM is the cost, everything around it is kept small. The training arrays stay in their
storage dtype (float16 halves the memory) and are never copied whole: each step gathers its batch by
index and converts it to float32 on the compute device (:class:`BatchSource`); both augmentations
are batched tensor ops on that device; one step (:meth:`Pretrainer.train_step`) has no per-sample
Python work and no DataLoader. ``bench/throughput.py`` times it against the bare LSTM step.

Scale-out: launched by ``torchrun`` (WORLD_SIZE > 1), :func:`pretrain` runs data-parallel (DDP): each
rank takes its slice of every global batch of the same seeded permutation (``optim.batch_size`` is the
global batch), the query encoder's gradients are averaged, keys are all-gathered before they enter
the queue (as MoCo does), so the key encoder and queue stay identical on every rank; rank 0 alone
logs and writes checkpoints, whose keys are plain (single-process runs load them).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .config import Config, config_diff, config_from_dict, diff_summary, save_config
from .contrast import ContrastiveLearner
from .errors import ConfigError, SkelclError, warn_unreached_milestones
from .formats import load_dataset
from .store import SkeletonDataset, atomic_write, hold_folder

CHECKPOINT = "checkpoint.pt"
ENCODER_FILE = "encoder.safetensors"


class TrainingDiverged(SkelclError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def diverged(what: str, value: float, at: str, checkpoint: Path, hint: str) -> TrainingDiverged:
    """The error of a run whose ``what`` (a loss) became ``value`` (NaN or inf) ``at`` ("epoch 3"),
    naming the kept ``checkpoint`` and what to try (``hint``)."""
    kept = checkpoint if checkpoint.exists() else "none yet"
    return TrainingDiverged(f"{what} became {value} at {at}; the last good checkpoint ({kept}) is kept. "
                            f"Try {hint}.")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    return dev


def apply_threads(cfg: Config) -> None:
    """Use ``cfg.train.threads`` CPU threads (0: torch's default). Evaluation applies it too: the
    float summation order depends on the thread count, and the lr-1.0 linear probe amplifies that
    into differences of up to ~1 point, so a checkpoint re-evaluated on another thread count would
    not reproduce its run's figure exactly."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)


def load_data(cfg: Config) -> SkeletonDataset:
    """The dataset a config names, preprocessed as it says."""
    d = cfg.data
    return load_dataset(d.dataset, root=d.root, pre=d.preprocess or None, skip_bad=d.skip_bad, **d.options)


PRETRAIN_ON = ("train", "all")


def train_indices(ds: SkeletonDataset, protocol: str | None, pretrain_on: str = "train") -> np.ndarray:
    """Indices used for unsupervised pretraining: the protocol's training split (all samples if the
    protocol is ``all``, or with ``pretrain_on="all"``, the transductive setting)."""
    if pretrain_on not in PRETRAIN_ON:
        raise ConfigError(f"data.pretrain_on must be one of {', '.join(PRETRAIN_ON)}, got {pretrain_on!r}")
    if not protocol or protocol == "all":
        return np.arange(len(ds))
    tr = ds.split(protocol)[0]  # also for "all": an unknown protocol is an error either way
    return np.arange(len(ds)) if pretrain_on == "all" else tr


def resolve_graph(cfg: Config, ds: SkeletonDataset) -> None:
    """Fill ``cfg.model.graph`` and ``cfg.model.joints`` from the dataset's layout for the graph
    encoder (in place; a no-op for other encoders or when they are set)."""
    if cfg.model.encoder != "gcn":
        return
    if not cfg.model.graph:
        if not ds.layout.bones:
            raise ConfigError(f"model.encoder: gcn needs bones; layout {ds.layout.name!r} has none "
                              "(give model.graph as [[child, parent], ...])")
        cfg.model.graph = [[int(a), int(b)] for a, b in ds.layout.bones]
    if not cfg.model.joints:
        cfg.model.joints = int(ds.layout.num_joints)


def absolute_paths(cfg: Config) -> None:
    """Make ``data.root`` and ``distill.teachers`` absolute (in place), so that the saved config
    still finds them when a run is resumed or evaluated from another working directory."""
    if cfg.data.root:
        cfg.data.root = str(Path(cfg.data.root).expanduser().resolve())
    cfg.distill.teachers = [str(Path(t).expanduser().resolve()) for t in cfg.distill.teachers]


def build_learner(cfg: Config, input_dim: int, num_samples: int, persons: int = 1) -> ContrastiveLearner:
    torch.manual_seed(cfg.train.seed)
    return ContrastiveLearner(input_dim, cfg.model, cfg.contrast, num_samples=num_samples, seed=cfg.train.seed,
                              persons=persons)


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def checkpoint_path(path: str | Path) -> Path:
    """A run folder's ``checkpoint.pt``, or ``path`` itself when it names a file."""
    p = Path(path)
    return p / CHECKPOINT if p.is_dir() else p


def distinct_runs(paths: Sequence[str | Path], role: str) -> dict[Path, str]:
    """Each run's resolved ``checkpoint.pt`` -> the spelling it was given as, refusing one run named
    twice (``runs/a`` and ``runs/a/checkpoint.pt`` are the same run); ``role`` names the list in the
    error ("an ensemble", "the teacher list")."""
    seen: dict[Path, str] = {}
    for p in paths:
        key = checkpoint_path(p).resolve()
        if key in seen:
            raise ConfigError(f"{p} is the same run as {seen[key]}; {role} counts each run once")
        seen[key] = str(p)
    return seen


_CHECKPOINT_KEYS = ("config", "learner", "input_dim", "num_samples")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    config_only: bool = False) -> dict[str, Any]:
    """The plain dict saved in a run's ``checkpoint.pt`` (``path``: the file or its run folder).

    Anything else is refused with one :class:`ConfigError` naming the file instead of a traceback
    from deep inside ``torch.load``: a missing file, a truncated or corrupt one (a copy cut short),
    the encoder's safetensors export, or another tool's ``.pt`` without a skelcl config.
    ``config_only``: the caller reads only ``["config"]``; the file is memory-mapped, so the weights
    are not read from disk.
    """
    p = checkpoint_path(path)
    if not p.is_file():
        raise ConfigError(f"no checkpoint at {p}")
    hint = ("; that is the encoder's safetensors export, give its run folder or checkpoint.pt"
            if p.suffix == ".safetensors" else "")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True, mmap=config_only)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... by cause
        why = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p} is not a readable skelcl checkpoint (truncated, corrupt or another "
                          f"format: {why}){hint}") from exc
    need = _CHECKPOINT_KEYS[:1] if config_only else _CHECKPOINT_KEYS
    missing = [k for k in need if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        what = f"keys {', '.join(map(str, sorted(ckpt)[:4]))}, ..." if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConfigError(f"{p} is not a skelcl checkpoint: it has no {', '.join(missing)} (it holds {what}){hint}")
    return ckpt


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[ContrastiveLearner, Config]:
    """Rebuild the learner and config from a checkpoint file or a run folder."""
    return learner_from_state(read_checkpoint(path, map_location))


def learner_from_state(ckpt: dict[str, Any]) -> tuple[ContrastiveLearner, Config]:
    """The learner (in eval mode) and config of a checkpoint dict already read (:func:`read_checkpoint`),
    for callers that also need its other entries (a distilled run's head)."""
    cfg = config_from_dict(ckpt["config"])
    learner = ContrastiveLearner(int(ckpt["input_dim"]), cfg.model, cfg.contrast,
                                 num_samples=int(ckpt["num_samples"]), seed=cfg.train.seed,
                                 persons=int(ckpt.get("persons", 1)))
    learner.load_state_dict(ckpt["learner"])
    learner.eval()
    return learner, cfg


def export_encoder(learner: ContrastiveLearner, cfg: Config, path: Path) -> None:
    """The query encoder's weights as safetensors, with the config in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in learner.encoder_q.state_dict().items()}
    meta = {"config": json.dumps(cfg.to_dict()), "input_dim": str(learner.encoder_q.input_dim)}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot_loss(path: Path, rows: list[dict[str, float]], title: str, recon_weight: float = 0.0) -> None:
    """loss.png: the loss per epoch; with ``contrast.reconstruct`` its two terms and their sum."""
    from .report import plot_loss_curve

    epochs, loss = [r["epoch"] for r in rows], [r["loss"] for r in rows]
    if recon_weight > 0 and all("recon" in r for r in rows):
        recon = [r["recon"] for r in rows]
        curves = {"total": (epochs, loss),
                  "InfoNCE": (epochs, [a - recon_weight * b for a, b in zip(loss, recon)]),
                  f"reconstruction MSE (weight {recon_weight:g})": (epochs, recon)}
        plot_loss_curve(epochs, loss, path, title=title, curves=curves, ylabel="loss")
        return
    plot_loss_curve(epochs, loss, path, title=title)


@dataclass
class PretrainResult:
    out_dir: Path
    learner: ContrastiveLearner
    config: Config
    metrics: list[dict[str, float]]
    dataset: SkeletonDataset


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def _rank_seed(seed: int, rank: int) -> int:
    """Per-rank augmentation seed: rank 0 keeps ``seed`` (single-process runs are unchanged)."""
    return (seed + rank * 0x9E3779B97F4A7C15) % (2**63 - 1)


# ------------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    """Where this process stands in a data-parallel run (a single process is rank 0 of 1).

    Attributes:
        rank: global rank; 0 logs and writes files.
        world: number of processes.
        local_rank: rank on this machine (picks the GPU).
        owned: this module initialised the process group, so it also destroys it.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched_world_size() -> int:
    """The number of processes a launcher (torchrun) asked for: WORLD_SIZE, 1 when unset or empty;
    a value that is not an integer raises ConfigError."""
    raw = os.environ.get("WORLD_SIZE", "1") or "1"
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={raw!r} is not a number of processes") from None


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Returns a single-process :class:`DistInfo` when WORLD_SIZE is unset or 1. Uses an existing
    process group as is. Backend: NCCL for CUDA tensors (gloo for CPU ones) when CUDA is used,
    else gloo.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = launched_world_size()
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun "
                              "(torchrun --nproc_per_node N -m skelcl pretrain ...)")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and not device_name.startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local)
    backend = "cpu:gloo,cuda:nccl" if use_cuda and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend)
    return DistInfo(rank, world, local, True)


def _broadcast_object(obj: Any, dist_info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (files may exist on rank 0's machine only)."""
    if not dist_info.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(dist_info: DistInfo) -> None:
    if dist_info.active:
        import torch.distributed as dist

        dist.barrier()


def _fingerprint(learner: ContrastiveLearner) -> float:
    """A float64 checksum of the weights, the key encoder and the queue/bank: equal on ranks in sync.

    BatchNorm statistics are left out (each rank keeps its own, as DDP does by default here).
    """
    total = torch.zeros((), dtype=torch.float64)
    tensors = [p for p in learner.parameters()]
    if learner.queue is not None:
        tensors.append(learner.queue.keys)
    if getattr(learner, "bank", None) is not None:
        tensors.append(learner.bank)
    for i, t in enumerate(tensors):
        total += t.detach().double().sum().cpu() * (1 + i % 7)
    return float(total)


# ------------------------------------------------------------------------------------- data


class BatchSource:
    """The training sequences, kept in their storage dtype, gathered by index one batch at a time.

    Nothing is copied up front: ``ds.x`` (N, T, M, V, C) is used in place (a float16 array, or a
    memory map, stays as it is) and the training rows are picked per batch. On CUDA, a training set
    that fits in a fraction of free GPU memory is copied there once (storage dtype); otherwise each
    batch is gathered into pinned host memory and copied without blocking. Either way the float32
    conversion happens per batch on the compute device.

    Args:
        ds: the dataset.
        rows: (n,) dataset rows of the training samples; position i of a batch index means row rows[i].
        device: compute device.
        gpu_fraction: move the training set to CUDA when it needs less than this share of free memory.
    """

    def __init__(self, ds: SkeletonDataset, rows: np.ndarray, device: torch.device,
                 gpu_fraction: float = 0.4) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self.n = int(rows.shape[0])
        self.device = device
        self.sample_shape = tuple(ds.x.shape[1:])
        identity = self.n == len(ds) and bool(np.array_equal(rows, np.arange(self.n)))
        self.rows: torch.Tensor | None = None if identity else torch.from_numpy(rows)
        lengths = np.asarray(ds.lengths)
        self.lengths = torch.from_numpy(np.ascontiguousarray(lengths if identity else lengths[rows]).astype(np.int64))
        self.lengths = self.lengths.to(device)
        x = ds.x
        self._np: np.ndarray | None = None
        self.x: torch.Tensor | None = None
        self.on_device = False
        if device.type == "cuda":
            nbytes = self.n * int(np.prod(self.sample_shape)) * x.dtype.itemsize
            free = torch.cuda.mem_get_info(device)[0]
            if nbytes < gpu_fraction * free:
                self.x = self._to_device(x, rows, device)
                self.rows = None
                self.on_device = True
        if not self.on_device:
            try:
                if not x.flags.writeable:
                    raise ValueError("read-only")
                self.x = torch.from_numpy(x)  # shares memory: no copy
            except (ValueError, TypeError):  # read-only memory map or negative strides: gather in numpy
                self._np = x
        self.pin = device.type == "cuda" and not self.on_device

    @staticmethod
    def _to_device(x: np.ndarray, rows: np.ndarray, device: torch.device, chunk: int = 4096) -> torch.Tensor:
        out = torch.empty((len(rows), *x.shape[1:]), dtype=torch.from_numpy(x[:0]).dtype, device=device)
        for s in range(0, len(rows), chunk):
            out[s:s + chunk] = torch.from_numpy(np.take(x, rows[s:s + chunk], axis=0)).to(device)
        return out

    def __len__(self) -> int:
        return self.n

    def get(self, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``sel`` (B,) of training positions -> x (B, T, M, V, C) float32, lengths (B,), sel,
        all on the compute device."""
        dev = self.device
        sel_d = sel.to(dev, non_blocking=True) if dev.type != "cpu" else sel
        if self.on_device:
            assert self.x is not None
            xb = self.x.index_select(0, sel_d)
        else:
            rows = sel if self.rows is None else self.rows[sel]
            if self.x is not None:
                host = torch.empty((rows.shape[0], *self.sample_shape), dtype=self.x.dtype, pin_memory=self.pin)
                torch.index_select(self.x, 0, rows, out=host)
            else:
                assert self._np is not None
                host = torch.from_numpy(np.take(self._np, rows.numpy(), axis=0))
                if self.pin:
                    host = host.pin_memory()
            xb = host.to(dev, non_blocking=True) if dev.type != "cpu" else host
        return xb.float(), self.lengths.index_select(0, sel_d), sel_d


def cross_view_probability(cfg: Config) -> float:
    """``contrast.cross_view`` checked: a probability in [0, 1], with explicit keys (not the memory
    bank), and > 0 where ``contrast.cross_view_both`` asks for a second positive. Raises ConfigError."""
    p = float(cfg.contrast.cross_view)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"contrast.cross_view is a probability in [0, 1], got {p}")
    if p and cfg.contrast.paradigm == "memory_bank":
        raise ConfigError("contrast.cross_view needs explicit keys: use paradigm queue or end_to_end")
    if cfg.contrast.cross_view_both and not p:
        raise ConfigError("contrast.cross_view_both needs contrast.cross_view > 0 (the other camera's "
                          "recordings are its second positive)")
    return p


def partner_positions(partners: tuple[torch.Tensor, torch.Tensor], sel: torch.Tensor, prob: float,
                      gen: torch.Generator) -> torch.Tensor:
    """(B,) training positions of the keys of positions ``sel`` (B,): with probability ``prob`` a
    random other camera's recording of the same performance (``partners``: :func:`partner_table`),
    else the query's own sequence."""
    table, counts = partners
    cnt = counts[sel]
    pick = (torch.rand(sel.shape, generator=gen) * cnt.clamp(min=1)).long()
    other = table[sel, pick.clamp(max=table.shape[1] - 1)]
    use = (torch.rand(sel.shape, generator=gen) < prob) & (cnt > 0)
    return torch.where(use, other, sel)


def partner_table(ds: SkeletonDataset, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """For each training position, the other training positions that record the same performance.

    Args:
        ds: a dataset whose ``meta["instance"]`` names each sample's performance (one id shared by
            the cameras that filmed it at once).
        rows: (n,) dataset rows of the training samples.

    Returns:
        table (n, P) int64 of partner positions (padded with the position itself) and counts (n,)
        int64 (0 where a sample has no partner among the training samples).
    """
    if "instance" not in ds.meta:
        raise ConfigError(f"contrast.cross_view needs a multi-view dataset whose samples name their "
                          f"performance (meta 'instance': nucla, ntu60, ntu120); {ds.name!r} has none "
                          "(--set contrast.cross_view=0 for single-sequence positives)")
    inst = np.asarray(ds.meta["instance"])[rows]
    groups: dict[str, list[int]] = {}
    for pos, key in enumerate(inst.tolist()):
        groups.setdefault(key, []).append(pos)
    width = max(1, max(len(g) for g in groups.values()) - 1)
    table = np.tile(np.arange(len(rows), dtype=np.int64)[:, None], (1, width))
    counts = np.zeros(len(rows), dtype=np.int64)
    for g in groups.values():
        for pos in g:
            others = [o for o in g if o != pos]
            table[pos, :len(others)] = others
            counts[pos] = len(others)
    return torch.from_numpy(table), torch.from_numpy(counts)


def group_ids(ds: SkeletonDataset, rows: np.ndarray) -> torch.Tensor:
    """(n,) int64 performance id of each training position: samples with the same
    ``meta["instance"]`` (cameras filming one performance) share an id; without that metadata each
    sample is its own group."""
    if "instance" not in ds.meta:
        return torch.arange(len(rows), dtype=torch.long)
    _, codes = np.unique(np.asarray(ds.meta["instance"])[rows], return_inverse=True)
    return torch.from_numpy(codes.astype(np.int64))


# --------------------------------------------------------------------------------- training


class _NonFinite(Exception):
    def __init__(self, step: int, value: float) -> None:
        super().__init__(step, value)
        self.step, self.value = step, value


def build_optimizer(cfg: Config, learner: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with momentum and weight decay (paper IV-B1), or AdamW (``optim.optimizer``), and the
    schedule of ``cfg.optim``. ``learner``: any module; its trainable parameters are optimised."""
    params = [p for p in learner.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if cfg.optim.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    elif cfg.optim.optimizer == "sgd":
        kw = dict(lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        try:  # one fused kernel per step (2-3x faster than foreach on the CPU)
            opt = torch.optim.SGD(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):  # a device or PyTorch without fused SGD
            opt = torch.optim.SGD(params, **kw)
    else:
        raise ConfigError(f"optim.optimizer must be sgd or adamw, got {cfg.optim.optimizer!r}")
    return opt, build_schedule(cfg, opt)


SCHEDULES = ("step", "cosine")


def build_schedule(cfg: Config, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The epoch-wise lr schedule of ``cfg.optim`` (stepped once per epoch): the paper's steps, or a
    cosine decay; either after ``optim.warmup`` epochs of linear warm-up."""
    o = cfg.optim
    if o.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}")
    if o.epochs < 1:
        raise ConfigError(f"optim.epochs must be at least 1, got {o.epochs}")
    if not 0 <= o.warmup < o.epochs:
        raise ConfigError(f"optim.warmup must be in [0, optim.epochs={o.epochs}), got {o.warmup}")
    if o.schedule == "step" and o.warmup and any(m <= o.warmup for m in o.milestones):
        raise ConfigError(f"optim.milestones {list(o.milestones)} must come after the {o.warmup} warm-up epochs "
                          "(optim.warmup)")
    if o.schedule == "step":
        warn_unreached_milestones("optim", o.milestones, o.epochs)
    lrs = torch.optim.lr_scheduler
    if o.schedule == "cosine":
        main: lrs.LRScheduler = lrs.CosineAnnealingLR(opt, T_max=o.epochs - o.warmup)
    else:
        main = lrs.MultiStepLR(opt, milestones=[m - o.warmup for m in o.milestones], gamma=o.gamma)
    if o.warmup == 0:
        return main
    warm = lrs.LinearLR(opt, start_factor=1.0 / (o.warmup + 1), total_iters=o.warmup)
    return lrs.SequentialLR(opt, [warm, main], milestones=[o.warmup])


def checkpoint_dict(cfg: Config, epoch: int, input_dim: int, num_samples: int, learner: ContrastiveLearner,
                    opt: torch.optim.Optimizer, sched: Any, metrics: list[dict[str, float]],
                    world_size: int = 1) -> dict[str, Any]:
    """A run's ``checkpoint.pt``: a plain dict that :func:`load_checkpoint` rebuilds the learner from
    and a resume continues from (pretraining and :mod:`skelcl.distill` alike)."""
    return {
        "config": cfg.to_dict(), "epoch": epoch, "input_dim": input_dim, "num_samples": num_samples,
        "persons": int(learner.encoder_q.persons),
        "learner": learner.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "metrics": metrics,
        "skelcl_version": __import__("skelcl").__version__, "world_size": world_size,
    }


class Pretrainer:
    """Everything one pretraining process holds, and its step.

    :func:`pretrain` drives it epoch by epoch; ``bench/throughput.py`` calls the very same
    :meth:`train_step`. A step: gather the batch by index -> two augmentations on the compute device
    -> learner (query forward, momentum update, key forward, InfoNCE, enqueue) -> backward (DDP
    averages gradients across ranks) -> SGD step.

    Args:
        cfg: the resolved config.
        ds: the dataset; its ``cfg.data.protocol`` training split is used.
        device: compute device (default: ``cfg.train.device`` resolved; under DDP, the local GPU).
        dist_info: this process's rank (default: single process).
        checkpoint: a checkpoint dict to continue from (weights, optimiser, schedule).
    """

    def __init__(self, cfg: Config, ds: SkeletonDataset, device: torch.device | None = None,
                 dist_info: DistInfo | None = None, checkpoint: dict[str, Any] | None = None) -> None:
        from .augment import build_augment

        self.cfg = cfg
        self.dist = dist_info or DistInfo()
        world = self.dist.world
        if device is None:
            device = resolve_device(cfg.train.device)
            if device.type == "cuda" and self.dist.active:
                device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        idx_train = train_indices(ds, cfg.data.protocol, cfg.data.pretrain_on)
        n = len(idx_train)
        if n < 2:
            raise ConfigError(f"pretraining needs at least 2 training sequences, got {n}")
        bs = min(cfg.optim.batch_size, n)
        if bs % world:
            fit = bs // world * world or world
            raise ConfigError(f"optim.batch_size={bs} is the global batch and must be divisible by the "
                              f"number of processes ({world}); set e.g. optim.batch_size={fit}")
        self.n = n
        self.batch_size = bs  # global
        self.local_batch_size = bs // world
        self.steps = n // bs  # the last partial batch is dropped: every step sees a full batch
        self.data = BatchSource(ds, idx_train, device)
        self.input_dim = int(np.prod(ds.x.shape[2:]))

        resolve_graph(cfg, ds)
        self.learner = build_learner(cfg, self.input_dim, n, persons=int(ds.x.shape[2])).to(device)
        self.augment = build_augment(cfg.augment, joint_names=ds.layout.joints)
        self.cross_view = cross_view_probability(cfg)
        self.partners = partner_table(ds, idx_train) if self.cross_view else None
        self.groups = group_ids(ds, idx_train).to(device) if cfg.contrast.exclude_group else None
        self.opt, self.sched = build_optimizer(cfg, self.learner)
        self.start_epoch = 0
        self.metrics: list[dict[str, float]] = []
        if checkpoint is not None:
            check_resumed_data(checkpoint, n, self.input_dim, cfg.data.root)
            self.learner.load_state_dict(checkpoint["learner"])
            self.opt.load_state_dict(checkpoint["optimizer"])
            self.sched.load_state_dict(checkpoint["scheduler"])
            self.metrics = list(checkpoint["metrics"])
            self.start_epoch = int(checkpoint["epoch"])
        self.model: torch.nn.Module = self.learner
        if self.dist.active:
            import inspect

            from torch.nn.parallel import DistributedDataParallel as DDP

            # buffers (queue, memory bank) are not broadcast each step: every rank enqueues the same
            # all-gathered keys, so they stay identical (and 16 MB per step would be wasted)
            no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                       else {"broadcast_buffers": False})  # torch >= 2.13 renamed it
            self.model = DDP(self.learner, device_ids=[device.index] if device.type == "cuda" else None,
                             gradient_as_bucket_view=True, **no_sync)

        gen_device = device if device.type == "cuda" else torch.device("cpu")
        self.aug_gen = torch.Generator(device=gen_device)
        self.perm_gen = torch.Generator()
        self.autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                         if cfg.train.amp == "bf16" else torch.autocast(device_type=device.type, enabled=False))
        # a NaN check reads the loss back: every step on the CPU (free), every 25 steps on a GPU
        self.check_every = 1 if device.type == "cpu" else 25
        self.loss_sum = torch.zeros((), device=device)
        self.recon_sum = torch.zeros((), device=device)  # contrast.reconstruct: the decoder's error

    # --- epochs and batches --------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> torch.Tensor:
        """Seed every draw of ``epoch`` (0-based) and return its permutation (n,) of training positions."""
        es = _epoch_seed(self.cfg.train.seed, epoch)
        self.perm_gen.manual_seed(es)
        self.aug_gen.manual_seed(_rank_seed(es, self.dist.rank))
        torch.manual_seed(es)  # memory-bank negative draws (same on every rank)
        self.loss_sum = torch.zeros((), device=self.device)
        self.recon_sum = torch.zeros((), device=self.device)
        self.learner.set_epoch(epoch)
        return torch.randperm(self.n, generator=self.perm_gen)

    def batch_indices(self, order: torch.Tensor, b: int) -> torch.Tensor:
        """This rank's share of global batch ``b`` of ``order`` (a contiguous slice)."""
        start = b * self.batch_size + self.dist.rank * self.local_batch_size
        return order[start:start + self.local_batch_size]

    # --- one step ------------------------------------------------------------------------
    def step(self, sel: torch.Tensor) -> torch.Tensor:
        """One SGD step on training positions ``sel`` (B,); returns the loss averaged over all ranks."""
        xb, lb, sel_d = self.data.get(sel)
        xkb, lkb = xb, lb
        second: tuple[torch.Tensor, torch.Tensor] | None = None  # cross_view_both: the partner's view
        if self.partners is not None:
            both = self.cfg.contrast.cross_view_both
            xpb, lpb, _ = self.data.get(self.key_positions(sel, 1.0 if both else self.cross_view))
            if both:
                second = (xpb, lpb)
            else:
                xkb, lkb = xpb, lpb
        with self.autocast:
            xq = self.augment(xb, lb, self.aug_gen)
            xk = self.augment(xkb, lkb, self.aug_gen)
            extra = {} if second is None else {"xk2": self.augment(*second, self.aug_gen), "lengths_k2": second[1]}
            groups = self.groups[sel_d] if self.groups is not None else None
            loss = self.model(xq, xk, lb, index=sel_d, lengths_k=lkb, groups=groups, **extra)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        loss = loss.detach().float()
        if self.dist.active:
            import torch.distributed as dist

            dist.all_reduce(loss)  # every rank sees the same value, so all stop together on NaN
            loss = loss / self.dist.world
        return loss

    def key_positions(self, sel: torch.Tensor, prob: float) -> torch.Tensor:
        """(B,) training positions of the keys (:func:`partner_positions`)."""
        assert self.partners is not None
        return partner_positions(self.partners, sel, prob, self.perm_gen)

    def train_step(self, order: torch.Tensor, b: int) -> torch.Tensor:
        """Step ``b`` of an epoch as :func:`pretrain` runs it: step, accumulate, NaN check.

        Raises:
            _NonFinite: the loss is NaN or inf (checked every ``check_every`` steps).
        """
        loss = self.step(self.batch_indices(order, b))
        self.loss_sum += loss
        if self.learner.last_recon is not None:
            self.recon_sum += self.learner.last_recon.float()
        if (b + 1) % self.check_every == 0 or b == self.steps - 1:
            if not bool(torch.isfinite(self.loss_sum)):
                value = float(loss) if not bool(torch.isfinite(loss)) else float(self.loss_sum)
                raise _NonFinite(b + 1, value)
        return loss

    @torch.no_grad()
    def fill_queue(self) -> None:
        """Released code: one pass filling the queue with keys of the random key encoder."""
        lr = self.learner
        if lr.queue is None or lr.encoder_k is None or lr.head_k is None:
            return
        from .contrast import _gather_all

        self.aug_gen.manual_seed(_rank_seed(_epoch_seed(self.cfg.train.seed, -1), self.dist.rank))
        order = torch.arange(self.n)
        for b in range(min(self.steps, math.ceil(self.cfg.contrast.queue_size / self.batch_size))):
            xb, lb, _ = self.data.get(self.batch_indices(order, b))
            k = lr._embed(lr.encoder_k, lr.head_k, self.augment(xb, lb, self.aug_gen), lb)
            lr.queue.enqueue(_gather_all(k))

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """The checkpoint: a plain dict with plain (un-wrapped) learner keys."""
        return checkpoint_dict(self.cfg, epoch, self.input_dim, self.n, self.learner, self.opt, self.sched,
                               self.metrics, self.dist.world)

    def rank_fingerprints(self) -> list[float]:
        """:func:`_fingerprint` of every rank (one value when single-process)."""
        fp = _fingerprint(self.learner)
        if not self.dist.active:
            return [fp]
        import torch.distributed as dist

        out: list[Any] = [None] * self.dist.world
        dist.all_gather_object(out, fp)
        return [float(v) for v in out]


def _load_resume(out: Path, dist_info: DistInfo) -> dict[str, Any]:
    """Rank 0 reads ``out/checkpoint.pt``; every rank gets it (or the same error)."""
    payload: Any = None
    if dist_info.main:
        path = out / CHECKPOINT
        if not path.exists():
            payload = f"--resume: no checkpoint in {out}"
        else:
            try:
                payload = read_checkpoint(path)
            except ConfigError as exc:
                payload = f"--resume: {exc}"
    payload = _broadcast_object(payload, dist_info)
    if isinstance(payload, str):
        raise ConfigError(payload)
    return payload


def resumed_config(saved: dict[str, Any], data_root: str | None = None, device: str | None = None,
                   teachers: Sequence[str | Path] | None = None) -> Config:
    """The config a resumed run continues with: its saved one, moved to where its data lies now
    (``data_root``), onto another device (``device``) and, for a distillation, to where its teachers
    lie now (``teachers``: as many as it was started with, in the same order; :func:`skelcl.distill.distill`
    checks that they give the same targets); nothing else changes."""
    cfg = config_from_dict(saved)
    if data_root is not None:
        cfg.data.root = str(data_root)
    if device is not None:
        cfg.train.device = str(device)
    if teachers:
        if len(teachers) != len(cfg.distill.teachers):
            raise ConfigError(f"--resume: the run was started with {len(cfg.distill.teachers)} teachers, "
                              f"{len(teachers)} given; give where each of them lies now, in the same order")
        cfg.distill.teachers = [str(t) for t in teachers]  # made absolute with the rest (absolute_paths)
    return cfg


def config_conflicts(saved: dict[str, Any], cfg: Config, dataset: SkeletonDataset | None = None,
                     moved_teachers: bool = False) -> list[str]:
    """Settings (``key: saved -> asked``) in which ``cfg`` asks for something else than a run's
    ``saved`` config, after filling in what a run fills in itself (absolute paths; the graph encoder's
    bones, from ``dataset``'s layout or, without it, where left unset, the saved run's) and leaving out
    what only moves a run (:data:`skelcl.config.NEUTRAL_KEYS`; with ``moved_teachers``, for a resume,
    also a distillation's teachers where as many are given: moved ones, which
    :func:`skelcl.distill.distill` checks by their targets)."""
    asked = config_from_dict(cfg.to_dict())
    absolute_paths(asked)
    was = saved.get("distill", {}).get("teachers") or []
    if moved_teachers and len(asked.distill.teachers) == len(was):
        asked.distill.teachers = list(was)
    model = saved.get("model", {})
    if dataset is not None:
        resolve_graph(asked, dataset)
    elif asked.model.encoder == "gcn":  # without the data, bones left to the layout take the run's
        asked.model.graph = asked.model.graph or model.get("graph") or []
        asked.model.joints = asked.model.joints or model.get("joints") or 0
    was_graph = model.get("graph") or []
    if not asked.model.bone_input and _edges(asked.model.graph) == _edges(was_graph):
        asked.model.graph = was_graph  # the same graph with its pairs written the other way round
    return config_diff(saved, asked.to_dict())


def _edges(graph: Sequence[Sequence[int]]) -> set[frozenset[int]]:
    """A bone list as undirected edges: what the graph convolution reads (``model.bone_input`` also
    reads which end is the parent)."""
    return {frozenset(int(j) for j in e) for e in graph}


def check_resume(cfg: Config, out: str | Path, dataset: SkeletonDataset | None = None) -> None:
    """Refuse to continue the run in ``out`` under another config than it was started with.

    A resumed run trains on with its saved config, so a call that asks for other settings (an
    edited ``--set``, another preprocessing) would otherwise get the old run under its new name,
    or train the old model on differently prepared data. What only moves a run (``data.root``,
    device, threads; :data:`skelcl.config.NEUTRAL_KEYS`) may differ, and a distillation's teachers
    where as many are given (moved: the resume passes them on and compares their targets;
    :func:`config_conflicts`).
    """
    path = Path(out) / CHECKPOINT
    if not path.exists():
        return
    diff = config_conflicts(read_checkpoint(path, config_only=True)["config"], cfg, dataset, moved_teachers=True)
    if diff:
        raise ConfigError(f"--resume: the run in {out} was started with another config "
                          f"({diff_summary(diff)}; saved -> asked). "
                          "Resume it with its own settings, or give another --out for a new run.")


def check_resumed_data(ckpt: dict[str, Any], num_samples: int, input_dim: int, root: str | None) -> None:
    """Refuse to continue a run on other data than it was started on: the number of pretraining
    sequences and the values per frame (M V C) must be the checkpoint's. Catches ``--root`` pointed at
    another dataset or another release of it, which would otherwise fail inside ``load_state_dict``
    or, worse, train on."""
    was = (int(ckpt.get("num_samples", num_samples)), int(ckpt.get("input_dim", input_dim)))
    if was != (num_samples, input_dim):
        raise ConfigError(f"--resume: the run was started on {was[0]} pretraining sequences of {was[1]} values a "
                          f"frame; the data at {root or 'the embedded default'} gives {num_samples} of {input_dim}. "
                          "Point --root at the data it was started on, or give another --out for a new run.")


def _distilling(cfg: Config, out: Path, resume: bool) -> bool:
    """Whether the run (``cfg``, or on resume the saved run's config) distils teachers."""
    if resume and (out / CHECKPOINT).exists():
        saved = read_checkpoint(out / CHECKPOINT, config_only=True)["config"]
        return bool(saved.get("distill", {}).get("teachers"))
    return bool(cfg.distill.teachers)


def pretrain(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
             dataset: SkeletonDataset | None = None, stop_after: int | None = None,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None, data_root: str | None = None,
             device: str | None = None, teachers: Sequence[str | Path] | None = None) -> PretrainResult:
    """Run (or resume) contrastive pretraining, data-parallel when launched by torchrun; with
    ``distill.teachers`` set, the run distils them instead (:func:`skelcl.distill.distill`).

    Args:
        cfg: the resolved config.
        out_dir: run folder (created).
        resume: continue from ``out_dir/checkpoint.pt`` (its config wins over ``cfg``).
        progress: show a tqdm bar per epoch (rank 0 only).
        dataset: an already loaded dataset (else ``cfg.data`` is read).
        stop_after: stop after this many epochs in total (for tests and time-boxed runs).
        on_epoch: called on rank 0 with (epoch, metrics row) after each checkpoint.
        data_root, device: on resume only, where the run's data lies now and the device to go on with
            (a run moved to another machine); see :func:`resumed_config`.
        teachers: on resuming a distillation only, where its teachers lie now (:func:`resumed_config`).
    """
    if _distilling(cfg, Path(out_dir), resume):
        from .distill import distill

        return distill(cfg, out_dir, resume=resume, progress=progress, dataset=dataset, stop_after=stop_after,
                       on_epoch=on_epoch, data_root=data_root, device=device, teachers=teachers)
    dist_info = init_distributed(device if resume and device is not None else cfg.train.device)
    try:
        with hold_folder(out_dir) if dist_info.main else contextlib.nullcontext():  # rank 0 alone writes it
            return _pretrain(cfg, Path(out_dir), resume, progress, dataset, stop_after, on_epoch, dist_info,
                             (data_root, device))
    finally:
        if dist_info.owned:
            import gc

            import torch.distributed as dist

            gc.collect()  # free the DDP reducer (and its gloo work) while the group still exists
            if dist.is_initialized():
                dist.destroy_process_group()


def _pretrain(cfg: Config, out: Path, resume: bool, progress: bool, dataset: SkeletonDataset | None,
              stop_after: int | None, on_epoch: Callable[[int, dict[str, float]], None] | None,
              dist_info: DistInfo, moved: tuple[str | None, str | None] = (None, None)) -> PretrainResult:
    main = dist_info.main
    progress = progress and main
    ckpt_path = out / CHECKPOINT
    ckpt: dict[str, Any] | None = None  # (rank 0's folder: made by pretrain's hold_folder)
    if resume:
        ckpt = _load_resume(out, dist_info)
        cfg = resumed_config(ckpt["config"], *moved)
    apply_threads(cfg)
    if dataset is not None:
        ds = dataset
    else:  # rank 0 first: it writes the reader's cache, the other ranks then read it
        if not main:
            _barrier(dist_info)
        ds = load_data(cfg)
        if main:
            _barrier(dist_info)
    resolve_graph(cfg, ds)
    absolute_paths(cfg)
    if main:
        save_config(cfg, out / "config.yaml")
    tr = Pretrainer(cfg, ds, dist_info=dist_info, checkpoint=ckpt)
    learner, metrics = tr.learner, tr.metrics
    start_epoch, steps, bs = tr.start_epoch, tr.steps, tr.batch_size
    if progress and dist_info.active:
        print(f"data-parallel: {dist_info.world} processes, global batch {bs} "
              f"({tr.local_batch_size} per process), device {tr.device}", flush=True)

    writer = None
    if cfg.train.tensorboard and main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch)
        except Exception:  # tensorboard is optional at run time
            writer = None

    if cfg.contrast.fill_queue and start_epoch == 0:
        tr.fill_queue()

    total = cfg.optim.epochs if stop_after is None else min(cfg.optim.epochs, stop_after)
    for epoch in range(start_epoch, total):
        learner.train()
        order = tr.begin_epoch(epoch)
        lr = tr.opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
                       dynamic_ncols=True)
        try:
            for b in range(steps):
                loss = tr.train_step(order, b)
                if bar is not None and (b % 10 == 0 or b == steps - 1):
                    el = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}", seq_s=f"{(b + 1) * bs / el:.0f}")
                    bar.update(b + 1 - bar.n)
        except _NonFinite as bad:
            where = f"step {bad.step}" if tr.check_every == 1 else f"by step {bad.step}"
            raise diverged("loss", bad.value, f"epoch {epoch + 1}, {where}", ckpt_path,
                           "a lower optim.lr, a higher contrast.temperature, or contrast.normalize=true") from None
        finally:
            if bar is not None:
                bar.close()
        tr.sched.step()
        mean_loss = float(tr.loss_sum.item() / steps)
        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": mean_loss, "lr": lr,
               "seq_per_s": steps * bs / elapsed, "time_s": elapsed}
        if cfg.contrast.reconstruct > 0:  # the mean decoder error (unweighted), over all ranks as ``loss`` is
            recon_sum = tr.recon_sum.clone()
            if dist_info.active:
                torch.distributed.all_reduce(recon_sum)
                recon_sum /= dist_info.world
            row["recon"] = float(recon_sum.item() / steps)
        metrics.append(row)
        state = tr.state_dict(epoch + 1)
        if dist_info.active:  # a cheap check that every rank holds the same weights, keys and queue
            fps = tr.rank_fingerprints()
            state["rank_fingerprints"] = fps
            if main and any(not math.isclose(f, fps[0], rel_tol=1e-9, abs_tol=1e-9) for f in fps):
                import warnings

                warnings.warn(f"data-parallel ranks out of sync after epoch {epoch + 1}: weight checksums {fps}",
                              RuntimeWarning, stacklevel=2)
        if main:
            _atomic_save(state, ckpt_path)
            _write_metrics(out / "metrics.csv", metrics)
            if writer is not None:
                for k in ("loss", "lr", "seq_per_s", "recon"):
                    if k in row:
                        writer.add_scalar(f"pretrain/{k}", row[k], epoch + 1)
                writer.flush()
            if progress:
                rec = f"  recon {row['recon']:.4f}" if "recon" in row else ""
                print(f"epoch {epoch + 1:3d}/{cfg.optim.epochs}  loss {row['loss']:.4f}{rec}  lr {lr:.4g}  "
                      f"{row['seq_per_s']:.0f} seq/s  {elapsed:.1f}s", flush=True)
            if on_epoch is not None:
                on_epoch(epoch + 1, row)

    if writer is not None:
        writer.close()
    if main and metrics:
        what = "InfoNCE + reconstruction" if cfg.contrast.reconstruct > 0 else "contrastive loss"
        _plot_loss(out / "loss.png", metrics, f"{cfg.name}: {what}", cfg.contrast.reconstruct)
    if main and metrics and int(metrics[-1]["epoch"]) >= cfg.optim.epochs:
        export_encoder(learner, cfg, out / ENCODER_FILE)
    _barrier(dist_info)  # no rank leaves before rank 0 has written its files
    tr.model = learner  # drop the DDP wrapper before the process group goes
    learner.eval()
    return PretrainResult(out, learner, cfg, metrics, ds)
