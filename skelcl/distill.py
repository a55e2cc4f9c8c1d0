"""Distillation: one encoder (the student) learns to reproduce the frozen features of several
pretrained encoders (the teachers), so that an ensemble's representation fits in one network.

Why: on N-UCLA the strongest representation we measured is an ensemble of separately pretrained
encoders (docs/RESULTS.md, fifteenth round), which needs every member at inference and gives no
single embedding. Distillation stays unsupervised: the teachers are self-supervised and their
targets are computed on the run's unlabelled pretraining sequences only; labels reach the probe
alone.

A step: a batch of pretraining sequences (B, T, M, V, C) -> the run's augmentation (one view) ->
the student's probe representation (``probe.representation``: ``cae``, ``cae_max`` or ``last_q``)
(B, E) -> a linear head (B, D) -> mean squared error against the targets (B, D). With
``distill.contrast`` > 0 the same forward pass also feeds the run's InfoNCE (a second augmented
view, or another camera's recording with ``contrast.cross_view``, through the momentum key encoder,
against the queue), added with that weight. With ``distill.mixup`` the augmented batch is mixed with
itself shifted by one, and so are its targets (:func:`mix_batch`). With ``distill.consistent`` the
teachers also run on that very input each step and the target moves by the change in their
features (:func:`teachers_on`). With ``distill.relation`` a KL term asks the student's readout to
keep the teachers' neighbourhoods: each sequence's softmax over its similarities to the others
(:func:`relation_targets`, :func:`relation_loss`, against a memory bank of the student's readouts).
With ``distill.dense`` a second linear head also asks the student's hidden states for the teachers'
hidden states step by step, both resampled onto one time grid (:func:`state_grid`,
:func:`teacher_states`).

Targets (:func:`teacher_targets`): each teacher's frozen features of the raw sequence (its own
data config and probe readout, as its linear probe reads it), standardised per dimension, scaled so
that every teacher carries the same total variance and the mean dimension unit variance, then
concatenated. With ``distill.group_mean`` each target is averaged over the recordings of the same
performance by the other cameras (``meta["instance"]``), a view-invariant target. With
``distill.whiten`` their spectrum is then flattened (:func:`flatten_spectrum`).

The run folder is a pretraining run's (``checkpoint.pt`` in the format of
:func:`skelcl.train.load_checkpoint`, so ``skelcl evaluate`` reads it; the key encoder holds a copy
of the student, or with ``distill.ema`` the running average of its weights, which replaces the
student after the last epoch; ``metrics.csv``, ``loss.png``, ``encoder.safetensors``), and a killed
run resumes from its last epoch. Single process (no torchrun): the teachers' features are computed
once, up front (with ``distill.consistent``, again on each batch).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .config import Config, apply_overrides, config_from_dict, save_config, split_override
from .errors import ConfigError, SkelclError
from .probe import batch_features, encode, query_readout, recompute_bn
from .store import SkeletonDataset, hold_folder
from .train import (CHECKPOINT, ENCODER_FILE, BatchSource, DistInfo, PretrainResult,
                    _atomic_save, _epoch_seed, _load_resume, _write_metrics, absolute_paths, apply_threads,
                    build_learner, build_optimizer, check_resumed_data, checkpoint_dict, checkpoint_path,
                    cross_view_probability, distinct_runs, export_encoder, diverged, group_ids, launched_world_size,
                    learner_from_state, load_checkpoint, load_data, partner_positions, partner_table, read_checkpoint,
                    resolve_device, resolve_graph, resumed_config, train_indices)

STUDENT_READOUTS = ("cae", "cae_max", "last_q")


def check_teachers(teachers: Sequence[str | Path], out_dir: str | Path | None = None) -> list[Path]:
    """The teachers' checkpoint files (resolved), refusing a missing one, the same one twice, or
    the run's own folder; raises ConfigError with one line."""
    if not teachers:
        raise ConfigError("distillation needs at least one teacher (distill.teachers: run folders or checkpoints)")
    own = checkpoint_path(out_dir).resolve() if out_dir is not None else None
    runs = distinct_runs(teachers, "the teacher list")
    for f, t in runs.items():
        if not f.exists():
            raise ConfigError(f"teacher {t}: no checkpoint at {f}")
        if f == own:
            raise ConfigError(f"teacher {t} is this run's own folder; a student cannot teach itself")
    return list(runs)


def _rows_in(tds: SkeletonDataset, ds: SkeletonDataset, rows: np.ndarray, teacher: str) -> np.ndarray:
    """Rows of ``tds`` (a teacher's view of the data) holding the sequences ``ds[rows]``, matched by name."""
    a, b = tds.meta.get("name"), ds.meta.get("name")
    if a is None or b is None:
        if len(tds) != len(ds):
            raise ConfigError(f"teacher {teacher}: its data has {len(tds)} sequences, this run's {len(ds)}, and "
                              "the sequences carry no names to match them by")
        return rows
    pos = {n: i for i, n in enumerate(np.asarray(a).tolist())}
    want = np.asarray(b)[rows].tolist()
    missing = [n for n in want if n not in pos]
    if missing:
        raise ConfigError(f"teacher {teacher}: {len(missing)} of this run's {len(want)} pretraining sequences "
                          f"are not in its data (first: {missing[0]!r}); teach with encoders pretrained on the "
                          "same dataset")
    return np.array([pos[n] for n in want], dtype=np.int64)


@dataclass
class Teacher:
    """One frozen teacher: its learner (eval mode, no gradient), its config, its view of the data
    (``ds`` read with its own preprocessing; ``rows``: its rows of the run's pretraining sequences, in
    their order) and, once :func:`teacher_targets` has run, the affine map of its raw features onto
    its block of the targets, ``(f - mean) * scale``."""

    checkpoint: str
    learner: nn.Module
    cfg: Config
    ds: SkeletonDataset
    rows: np.ndarray
    mean: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    @property
    def record(self) -> dict[str, Any]:
        dim = 0 if self.mean is None else int(self.mean.shape[0])
        return {"checkpoint": self.checkpoint, "encoder": self.cfg.model.encoder,
                "readout": self.cfg.probe.representation, "dim": dim}

    def features(self, xb: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
        """(B, T, M, V, C), (B,) in this teacher's preprocessing -> its block of the targets (B, E_t)."""
        p = self.cfg.probe
        with torch.no_grad():
            f = batch_features(self.learner, p.representation, xb, lb, p.person_symmetric, p.both_directions)
        return (f.float() - self.mean) * self.scale  # type: ignore[operator]


def load_teachers(teachers: Sequence[str | Path], cfg: Config, ds: SkeletonDataset, rows: np.ndarray
                  ) -> list[Teacher]:
    """Each teacher's checkpoint and its view of the sequences ``ds[rows]`` (its own data config,
    read from this run's ``data.root``; teachers of one preprocessing share one copy)."""
    device = resolve_device(cfg.train.device)
    out: list[Teacher] = []
    views: dict[str, tuple[SkeletonDataset, np.ndarray]] = {}
    for t in teachers:
        learner, tcfg = load_checkpoint(t)
        if tcfg.data.dataset != cfg.data.dataset:
            raise ConfigError(f"teacher {t} was pretrained on {tcfg.data.dataset!r}, this run reads "
                              f"{cfg.data.dataset!r}")
        if tcfg.probe.representation not in STUDENT_READOUTS + ("cae+", "k", "last_k"):
            raise ConfigError(f"teacher {t}: unknown readout {tcfg.probe.representation!r}")
        tcfg.data = replace(tcfg.data, root=cfg.data.root)  # (an override string would turn None into 'None')
        key = json.dumps(tcfg.to_dict()["data"], sort_keys=True, default=str)
        if key not in views:
            tds = ds if tcfg.data == cfg.data else load_data(tcfg)
            views[key] = (tds, _rows_in(tds, ds, rows, str(t)))
        learner = learner.to(device).eval().requires_grad_(False)
        out.append(Teacher(str(t), learner, tcfg, *views[key]))
    return out


def teacher_targets(teachers: Sequence[str | Path | Teacher], cfg: Config, ds: SkeletonDataset, rows: np.ndarray,
                    progress: bool = False) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The distillation targets of the sequences ``ds[rows]``.

    Each teacher reads the data with its own data config (its preprocessing), from this run's
    ``data.root``, and its own probe readout; its features (n, E_t) are standardised per dimension
    and scaled by sqrt(D / (k E_t)) (k teachers, D = sum E_t), so each teacher carries the same
    weight and a dimension has unit variance on average. Given :class:`Teacher` objects (from
    :func:`load_teachers`), their ``mean`` and ``scale`` are set to that map.

    Returns:
        (n, D) float32 targets (before ``group_mean``) and one record per teacher (checkpoint,
        encoder, readout, width).
    """
    device = resolve_device(cfg.train.device)
    fresh = iter(load_teachers([t for t in teachers if not isinstance(t, Teacher)], cfg, ds, rows))
    loaded = [t if isinstance(t, Teacher) else next(fresh) for t in teachers]
    feats: list[np.ndarray] = []
    for t in loaded:
        p = t.cfg.probe
        feats.append(encode(t.learner, t.ds.x, t.ds.lengths, p.representation, device=device, index=t.rows,
                            person_symmetric=p.person_symmetric, both_directions=p.both_directions,
                            progress=progress))
    targets, maps = equal_weight(feats)
    for t, (mean, scale) in zip(loaded, maps):  # the same map, for features computed later (distill.consistent)
        t.mean = torch.from_numpy(mean).to(device)
        t.scale = torch.from_numpy(scale).to(device)
    return targets, [t.record for t in loaded]


def equal_weight(feats: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """k teachers' (n, E_t) features -> ((n, D) float32 targets, each teacher's (mean, scale)): each
    block standardised per dimension and scaled by sqrt(D / (k E_t)), so each teacher carries the
    same total variance and a dimension unit variance on average, then concatenated. The (E_t,)
    mean and float32 scale give the same map, ``(f - mean) * scale``, for features computed later."""
    stats = [(f.mean(0), f.std(0) + 1e-6) for f in feats]
    blocks = [((f - mean) / std) / np.sqrt(f.shape[1]) for f, (mean, std) in zip(feats, stats)]
    targets = np.concatenate(blocks, 1).astype(np.float32)
    overall = np.sqrt(targets.shape[1] / len(blocks))
    targets *= overall
    maps = [(mean, (overall / (std * np.sqrt(f.shape[1]))).astype(np.float32)) for f, (mean, std) in zip(feats, stats)]
    return targets, maps


def group_average(targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(n, D) -> (n, D): each row replaced by the mean of the rows of its group (``groups`` (n,))."""
    g = int(groups.max()) + 1 if len(groups) else 0
    sums = torch.zeros(g, targets.shape[1], dtype=targets.dtype).index_add_(0, groups, targets)
    counts = torch.zeros(g, dtype=targets.dtype).index_add_(0, groups, torch.ones_like(groups, dtype=targets.dtype))
    return sums[groups] / counts[groups, None]


TIME_MOVING = ("reverse", "crop")  # augmentations after which a state no longer sits at its frame's time


def state_lengths(encoder: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) frame counts -> (B,) valid hidden states of ``encoder``: one per frame for a recurrent
    encoder, ceil(len / s) through each strided block of a graph encoder (at least 1)."""
    cur = lengths
    for s in getattr(encoder, "strides", ()):
        cur = torch.div(cur + int(s) - 1, int(s), rounding_mode="floor")
    return cur.clamp(min=1)


def state_grid(states: torch.Tensor, valid: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T', E) states, of which the first ``valid`` (B,) are real -> (B, steps, E).

    Each sequence's valid states are linearly resampled onto ``steps`` evenly spaced points (the
    centres of ``steps`` equal slices of its valid span, as ``F.interpolate(align_corners=False)``
    places them), so that encoders of different temporal resolution line up step for step.
    Differentiable in ``states``; the padding past ``valid`` is never read."""
    b, _, e = states.shape
    v = valid.to(states.device, states.dtype).clamp(min=1)[:, None]  # (B, 1)
    j = torch.arange(steps, device=states.device, dtype=states.dtype)[None, :]  # (1, steps)
    pos = ((j + 0.5) * v / steps - 0.5).clamp(min=0)
    pos = torch.minimum(pos, v - 1)  # (B, steps) in [0, valid - 1]
    lo = pos.floor()
    w = (pos - lo)[..., None]
    lo = lo.long()
    hi = torch.minimum(lo + 1, (v - 1).long())
    take = lambda idx: states.gather(1, idx[..., None].expand(b, steps, e))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


def teacher_states(loaded: Sequence[Teacher], steps: int, device: torch.device, batch: int = 256,
                   progress: bool = False) -> np.ndarray:
    """The per-step targets of ``distill.dense``: each teacher's query-encoder hidden states of its
    raw sequences (``t.ds[t.rows]``, in the run's order) on a grid of ``steps`` points
    (:func:`state_grid`), standardised per dimension over every sequence and step and weighted
    as :func:`teacher_targets` weights the pooled features (:func:`equal_weight`), concatenated:
    (n, steps, D) float32."""
    blocks: list[np.ndarray] = []  # each teacher's (n * steps, E_t) states
    for t in loaded:
        enc = t.learner.encoder_q
        parts = []
        chunks = range(0, len(t.rows), batch)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="teacher states", leave=False, dynamic_ncols=True)
        with torch.no_grad():
            for s in chunks:
                rows = t.rows[s:s + batch]
                xb = torch.as_tensor(t.ds.x[rows]).to(device)
                lb = torch.as_tensor(t.ds.lengths[rows]).to(device)
                out = enc(xb, lb)
                parts.append(state_grid(out.states.float(), state_lengths(enc, lb), steps).cpu().numpy())
        f = np.concatenate(parts)  # (n, steps, E_t)
        blocks.append(f.reshape(-1, f.shape[-1]))
    targets, _ = equal_weight(blocks)
    return targets.reshape(-1, steps, targets.shape[1])


def flatten_spectrum(targets: torch.Tensor, alpha: float) -> torch.Tensor:
    """(n, D) -> (n, D): the targets' principal directions rescaled so that singular value s becomes
    s^(1 - alpha), then everything scaled back to the same total variance.

    Why: the student fits the targets' leading directions (about 82% of their variance on N-UCLA)
    and little of the rest, where part of the teachers' accuracy may lie. alpha 0 leaves the targets
    as they are, 1 whitens them (every direction of non-zero variance equal), 0.5 takes the square
    root of the spectrum. It is a fixed linear map of the targets (centred first; the mean is added
    back), so a batch's mixture of targets is still the map of the mixture. Directions below 1e-6 of
    the largest are left out (they carry no variance).
    """
    if alpha == 0.0:
        return targets
    t = targets.double()
    mean = t.mean(0, keepdim=True)
    u, s, vh = torch.linalg.svd(t - mean, full_matrices=False)
    keep = s > 1e-6 * s[0]
    u, s, vh = u[:, keep], s[keep], vh[keep]
    new = s ** (1.0 - alpha)
    new = new * torch.sqrt((s ** 2).sum() / (new ** 2).sum())  # the same total variance
    out = mean + (u * new) @ vh
    return out.to(targets.dtype)


def mix_batch(x: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup of a batch with itself shifted by one: row i becomes lam_i row_i + (1 - lam_i) row_(i+1).

    Args:
        x: (B, T, M, V, C) augmented sequences; lengths (B,); targets (B, D); lam (B,) in [0, 1].

    Returns:
        the mixed sequences (B, T, M, V, C), their lengths (B,) (the longer of the two, so that no
        frame of either is cut; padding is zero), and the mixed targets (B, D).
    """
    other = torch.roll(torch.arange(x.shape[0], device=x.device), -1)
    w = lam.to(x.dtype)
    xm = torch.lerp(x[other], x, w.view(-1, *([1] * (x.dim() - 1))))
    tm = torch.lerp(targets[other], targets, lam.to(targets.dtype)[:, None])
    return xm, torch.maximum(lengths, lengths[other]), tm


def target_sketch(targets: torch.Tensor) -> torch.Tensor:
    """(n, D) targets -> (n, 8): their projection onto 8 fixed random directions (seed 0), kept in the
    checkpoint so that a resume can tell whether its teachers still give the same targets."""
    g = torch.Generator().manual_seed(0)
    r = torch.randn(targets.shape[1], 8, generator=g) / max(targets.shape[1], 1) ** 0.5
    return targets.float().cpu() @ r


def relation_targets(targets: torch.Tensor, tau: float) -> torch.Tensor:
    """(n, D) targets -> (n, n) log-probabilities: row i is a log-softmax over j of cos(t_i, t_j) / tau,
    with j = i left out (its log-probability a large negative number, so that its probability is 0)."""
    t = nn.functional.normalize(targets.float(), dim=1)
    logits = t @ t.T / tau
    logits.fill_diagonal_(-1e9)
    return torch.log_softmax(logits, 1)


def relation_loss(z: torch.Tensor, sel: torch.Tensor, bank: torch.Tensor, log_pt: torch.Tensor, tau: float
                  ) -> torch.Tensor:
    """The relational term: KL(p_t || p_s), averaged over the batch.

    Args:
        z: (B, E) the student's readouts of the batch (any length; made unit length here).
        sel: (B,) the batch's positions among the n pretraining sequences.
        bank: (n, E) unit-length student readouts of every pretraining sequence (a memory bank).
        log_pt: (n, n) the teachers' log-probabilities, :func:`relation_targets`.
        tau: the student's temperature.
    """
    zn = nn.functional.normalize(z.float(), dim=1)
    logits = zn @ bank.T / tau
    logits[torch.arange(len(sel), device=logits.device), sel] = -1e9  # the sequence itself
    return nn.functional.kl_div(torch.log_softmax(logits, 1), log_pt[sel], log_target=True, reduction="batchmean")


def teachers_on(loaded: Sequence[Teacher], sources: dict[int, BatchSource | None], sel: torch.Tensor,
                seen: tuple[torch.Tensor, torch.Tensor], augment: Any, params: list[Any],
                lam: torch.Tensor | None) -> torch.Tensor:
    """The teachers' target blocks (B, D) of the input the student sees.

    Args:
        loaded: the teachers (their maps set by :func:`teacher_targets`).
        sources: per teacher view (``id(teacher.ds)``) its batches of the pretraining sequences, or
            None for the student's own preprocessing, whose batch is ``seen`` itself.
        sel: (B,) positions of the batch among the pretraining sequences.
        seen: the student's input (B, T, M, V, C) and lengths (B,), augmented and mixed.
        augment, params: the augmentation and its draws for this batch (``Compose.draw``).
        lam: (B,) mixup weights, or None.
    """
    batches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    out: list[torch.Tensor] = []
    for t in loaded:
        key = id(t.ds)
        if key not in batches:
            src = sources[key]
            if src is None:
                batches[key] = seen
            else:
                xt, lt, _ = src.get(sel)
                xt = augment.apply(xt, lt, params)
                if lam is not None:
                    xt, lt, _ = mix_batch(xt, lt, xt.new_zeros(len(lt), 0), lam)
                batches[key] = (xt, lt)
        out.append(t.features(*batches[key]))
    return torch.cat(out, 1)


def check_settings(cfg: Config) -> None:
    """Refuse distillation settings that are out of range or do not go together, before any
    training (a soup checks each student's settings before its trunk trains)."""
    rep = cfg.probe.representation
    if rep not in STUDENT_READOUTS:
        raise ConfigError(f"distillation trains the query encoder: probe.representation must be one of "
                          f"{', '.join(STUDENT_READOUTS)}, got {rep!r}")
    ema = float(cfg.distill.ema)
    if not 0.0 <= ema < 1.0:
        raise ConfigError(f"distill.ema is a decay in [0, 1) (0 = off), got {ema}")
    weight = float(cfg.distill.contrast)
    if not (weight >= 0.0 and np.isfinite(weight)):
        raise ConfigError(f"distill.contrast is a loss weight, >= 0 (0 = off), got {weight}")
    mixup = float(cfg.distill.mixup)
    if not (mixup >= 0.0 and np.isfinite(mixup)):
        raise ConfigError(f"distill.mixup is the Beta(a, a) concentration, > 0 (0 = off), got {mixup}")
    if mixup and weight:
        raise ConfigError("distill.mixup and distill.contrast: a mixed query has no positive key; set one of them")
    consistent = bool(cfg.distill.consistent)
    if consistent and weight:
        raise ConfigError("distill.consistent and distill.contrast: the InfoNCE views are drawn inside the learner; "
                          "set one of them")
    relation, rtau = float(cfg.distill.relation), float(cfg.distill.relation_tau)
    if not (relation >= 0.0 and np.isfinite(relation)):
        raise ConfigError(f"distill.relation is a loss weight, >= 0 (0 = off), got {relation}")
    if relation and not (rtau > 0.0 and np.isfinite(rtau)):
        raise ConfigError(f"distill.relation_tau is a softmax temperature, > 0, got {rtau}")
    if relation and (mixup or consistent):
        raise ConfigError(f"distill.relation compares each sequence's fixed target with the others': not with "
                          f"distill.{'mixup' if mixup else 'consistent'}, whose targets move; set one of them")
    whiten = float(cfg.distill.whiten)
    if not 0.0 <= whiten <= 1.0:
        raise ConfigError(f"distill.whiten is an exponent in [0, 1] (0 = the targets as they are, 1 = whitened), "
                          f"got {whiten}")
    if whiten and consistent:
        raise ConfigError("distill.whiten maps the fixed targets; distill.consistent moves them every step by the "
                          "teachers' own features: set one of them")
    if weight and ema:
        raise ConfigError("distill.contrast and distill.ema both need the key encoder's slot: set one of them")
    dense = float(cfg.distill.dense)
    if not (dense >= 0.0 and np.isfinite(dense)):
        raise ConfigError(f"distill.dense is a loss weight, >= 0 (0 = off), got {dense}")
    if dense and int(cfg.distill.dense_steps) < 1:
        raise ConfigError(f"distill.dense_steps is the number of points of the time grid, >= 1, "
                          f"got {cfg.distill.dense_steps}")
    if dense and (weight or mixup or consistent):
        other = "contrast" if weight else "mixup" if mixup else "consistent"
        raise ConfigError(f"distill.dense regresses the student's states onto the teachers' states of the raw "
                          f"sequence: not with distill.{other}; set one of them")
    if dense:
        from .augment import build_augment

        moving = [n for n in build_augment(cfg.augment).names if n in TIME_MOVING]
        if moving:
            raise ConfigError(f"distill.dense matches the student's states to the teachers' step by step: the "
                              f"augmentation must keep time in place, but it has {', '.join(moving)}; "
                              f"drop it from augment")
    if cfg.distill.soup_vary and int(cfg.distill.soup) < 2:
        raise ConfigError("distill.soup_vary gives the students of a soup their own settings: it needs "
                          f"distill.soup >= 2, got {cfg.distill.soup}")


def distill(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
            dataset: SkeletonDataset | None = None, stop_after: int | None = None,
            on_epoch: Callable[[int, dict[str, float]], None] | None = None, data_root: str | None = None,
            device: str | None = None, teachers: Sequence[str | Path] | None = None) -> PretrainResult:
    """Train ``cfg``'s encoder on ``cfg.data``'s pretraining split to reproduce ``cfg.distill.teachers``.

    Args:
        cfg: the resolved config (``optim`` drives the regression; ``augment`` the student's view).
        out_dir: run folder (created).
        resume: continue from ``out_dir/checkpoint.pt`` (its config wins over ``cfg``).
        progress: a tqdm bar per epoch and one line per epoch.
        dataset: an already loaded dataset (else ``cfg.data`` is read).
        stop_after: stop after this many epochs in total (tests, time-boxed runs).
        on_epoch: called with (epoch, metrics row) after each checkpoint.
        data_root, device: on resume only, where the data lies now and the device to go on with (the
            teachers read the data from there too).
        teachers: on resume only, where the run's teachers lie now (as many, in the same order). Their
            targets must be the ones the run was started with (:func:`target_sketch`), which also
            catches a teacher's checkpoint replaced since.
    """
    world = launched_world_size()
    if world > 1:  # every process would write the same run folder
        raise ConfigError(f"distillation runs in one process (WORLD_SIZE={world}): launch `skelcl distill` without "
                          "torchrun; it computes the teachers' targets once and trains one student")
    with hold_folder(out_dir):  # one process per run folder
        if int(cfg.distill.soup) > 1:  # (a soup's members resume on their own)
            return soup(cfg, out_dir, progress=progress, dataset=dataset, stop_after=stop_after,
                        data_root=data_root, device=device, teachers=teachers)
        return _distill(cfg, Path(out_dir), resume, progress, dataset, stop_after, on_epoch, data_root, device,
                        teachers)


def _distill(cfg: Config, out: Path, resume: bool, progress: bool, dataset: SkeletonDataset | None,
             stop_after: int | None, on_epoch: Callable[[int, dict[str, float]], None] | None,
             data_root: str | None, device: str | None, teachers: Sequence[str | Path] | None) -> PretrainResult:
    """:func:`distill` of one student, its folder held."""
    from .augment import build_augment

    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = _load_resume(out, DistInfo())
        cfg = resumed_config(ckpt["config"], data_root, device, teachers)
    teachers = check_teachers(cfg.distill.teachers, out)
    check_settings(cfg)
    rep = cfg.probe.representation
    ema, weight, mixup = float(cfg.distill.ema), float(cfg.distill.contrast), float(cfg.distill.mixup)
    consistent = bool(cfg.distill.consistent)
    relation, rtau = float(cfg.distill.relation), float(cfg.distill.relation_tau)
    whiten = float(cfg.distill.whiten)
    if (weight or ema) and cfg.contrast.paradigm != "queue":  # before the teachers' features are computed
        what = ("distill.contrast adds InfoNCE with a queue" if weight
                else "distill.ema keeps its average in the key encoder")
        raise ConfigError(f"{what}: needs contrast.paradigm queue, got {cfg.contrast.paradigm!r}")
    cross_view = cross_view_probability(cfg) if weight else 0.0
    if weight and cfg.contrast.cross_view_both:
        raise ConfigError("distill.contrast draws one key per query: contrast.cross_view_both is for pretraining")
    apply_threads(cfg)
    ds = dataset if dataset is not None else load_data(cfg)
    resolve_graph(cfg, ds)
    absolute_paths(cfg)
    save_config(cfg, out / "config.yaml")
    device = resolve_device(cfg.train.device)
    rows = train_indices(ds, cfg.data.protocol, cfg.data.pretrain_on)
    n = len(rows)
    if n < 2:
        raise ConfigError(f"distillation needs at least 2 pretraining sequences, got {n}")
    input_dim = int(np.prod(ds.x.shape[2:]))
    if ckpt is not None:  # before the teachers' targets are computed on it
        check_resumed_data(ckpt, n, input_dim, cfg.data.root)
    t0 = time.perf_counter()
    loaded: list[Teacher] = []
    if consistent:
        loaded = load_teachers(teachers, cfg, ds, rows)
        for t in loaded:
            if tuple(t.ds.x.shape[1:]) != tuple(ds.x.shape[1:]):
                raise ConfigError(f"distill.consistent: teacher {t.checkpoint} reads sequences of shape (T, M, V, C) "
                                  f"{tuple(t.ds.x.shape[1:])}, the student {tuple(ds.x.shape[1:])}; the augmentation "
                                  "draws cannot be shared")
    dense, grid_steps = float(cfg.distill.dense), int(cfg.distill.dense_steps)
    if dense and not loaded:
        loaded = load_teachers(teachers, cfg, ds, rows)
    tgt_np, record = teacher_targets(loaded or teachers, cfg, ds, rows, progress=progress)
    targets = torch.from_numpy(tgt_np)
    raw = targets.to(device) if consistent else None  # each teacher's features of the raw sequence
    dense_targets = torch.from_numpy(teacher_states(loaded, grid_steps, device, progress=progress)) if dense else None
    if cfg.distill.group_mean:
        groups = group_ids(ds, rows)
        targets = group_average(targets, groups)
        if dense_targets is not None:  # the cameras' recordings of one performance on one time grid
            shape = dense_targets.shape
            dense_targets = group_average(dense_targets.reshape(shape[0], -1), groups).reshape(shape)
    if dense_targets is not None:
        dense_targets = dense_targets.to(device)
    targets = flatten_spectrum(targets, whiten).to(device)
    sketch = target_sketch(targets)
    was = None if ckpt is None else ckpt["distill"].get("sketch")
    if was is not None and not torch.allclose(sketch, was, rtol=1e-3, atol=1e-2):
        gap = float((sketch - was).abs().max())
        raise ConfigError(f"--resume: the teachers give other targets than the run in {out} was started with "
                          f"(largest difference {gap:.3g}): a teacher's checkpoint was replaced, a moved teacher is "
                          "not the same run, or the data differ. Resume with the run's own teachers, or give "
                          "another --out for a new run.")
    if progress:
        print(f"targets: {len(teachers)} teachers, {tuple(targets.shape)} in {time.perf_counter() - t0:.0f}s",
              flush=True)

    learner = build_learner(cfg, input_dim, n, persons=int(ds.x.shape[2])).to(device)
    student = learner.encoder_q
    average = learner.encoder_k if ema else None  # the key encoder's slot holds the weight average
    data = BatchSource(ds, rows, device)
    sources = {id(t.ds): None if t.ds is ds else BatchSource(t.ds, t.rows, device) for t in loaded}
    partners = partner_table(ds, rows) if cross_view else None
    width = student.output_dim * (2 if rep == "cae_max" else 1)
    head = nn.Linear(width, targets.shape[1]).to(device)
    dense_head = nn.Linear(student.output_dim, dense_targets.shape[2]).to(device) if dense_targets is not None \
        else None
    trained = nn.ModuleList([student, head] + ([learner.head_q] if weight else []) +
                            ([dense_head] if dense_head is not None else []))
    opt, sched = build_optimizer(cfg, trained)
    augment = build_augment(cfg.augment, joint_names=ds.layout.joints)
    log_pt = bank = None
    if relation:
        log_pt = relation_targets(targets, rtau)
        if ckpt is not None:
            bank = ckpt["distill"]["bank"].to(device)
        else:  # the untrained student's readouts of the raw sequences
            bank = nn.functional.normalize(torch.from_numpy(encode(learner, ds.x, ds.lengths, rep, device=device,
                                                                   index=rows)), dim=1).to(device)
    bs = min(cfg.optim.batch_size, n)
    steps = n // bs
    metrics: list[dict[str, float]] = []
    start = 0
    if ckpt is not None:
        learner.load_state_dict(ckpt["learner"])
        head.load_state_dict(ckpt["distill"]["head"])
        if dense_head is not None:
            dense_head.load_state_dict(ckpt["distill"]["dense_head"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        metrics, start = list(ckpt["metrics"]), int(ckpt["epoch"])
    gen = torch.Generator(device=device if device.type == "cuda" else torch.device("cpu"))
    perm = torch.Generator()
    total = cfg.optim.epochs if stop_after is None else min(cfg.optim.epochs, stop_after)
    for epoch in range(start, total):
        es = _epoch_seed(cfg.train.seed, epoch)
        gen.manual_seed(es)
        perm.manual_seed(es)
        order = torch.randperm(n, generator=perm)
        mix_rng = np.random.default_rng(es)
        trained.train()
        lr = opt.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device)
        nce_sum = torch.zeros((), device=device)
        rel_sum = torch.zeros((), device=device)
        dense_sum = torch.zeros((), device=device)
        t1 = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"distill {epoch + 1}/{cfg.optim.epochs}", leave=False, dynamic_ncols=True)
        for b in range(steps):
            sel = order[b * bs:(b + 1) * bs]
            xb, lb, sel_d = data.get(sel)
            outs: list[Any] = []
            nce = None
            tb = targets[sel_d]
            if weight:  # one student pass serves both terms: the learner hands back its query output
                xkb, lkb = xb, lb
                if partners is not None:
                    xkb, lkb, _ = data.get(partner_positions(partners, sel, cross_view, perm))
                nce = learner(augment(xb, lb, gen), augment(xkb, lkb, gen), lb, lengths_k=lkb, outputs=outs)
            else:
                lam = None
                if mixup:
                    lam = torch.from_numpy(mix_rng.beta(mixup, mixup, size=len(sel)).astype(np.float32)).to(device)
                params = augment.draw(xb, lb, gen)
                seen = (augment.apply(xb, lb, params), lb)
                rb = raw[sel_d] if raw is not None else tb[:, :0]
                if lam is not None:  # the targets and the teachers' raw features mixed alike
                    xm, lm, both = mix_batch(*seen, torch.cat([tb, rb], 1), lam)
                    seen, tb, rb = (xm, lm), both[:, :tb.shape[1]], both[:, tb.shape[1]:]
                if raw is not None:  # target(raw) + T(seen) - T(raw)
                    tb = tb + teachers_on(loaded, sources, sel, seen, augment, params, lam) - rb
                outs.append(student(*seen))
            z = query_readout(outs[0], rep)
            loss = nn.functional.mse_loss(head(z).float(), tb)
            if log_pt is not None and bank is not None:
                rel = relation_loss(z, sel_d, bank, log_pt, rtau)
                rel_sum += rel.detach()
                loss = loss + relation * rel
            if dense_head is not None and dense_targets is not None:
                grid = state_grid(outs[0].states, state_lengths(student, seen[1]), grid_steps)
                per_step = nn.functional.mse_loss(dense_head(grid).float(), dense_targets[sel_d])
                dense_sum += per_step.detach()
                loss = loss + dense * per_step
            if nce is not None:
                nce_sum += nce.detach()
                loss = loss + weight * nce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bank is not None:  # after the backward pass, which reads the bank
                bank[sel_d] = nn.functional.normalize(z.detach().float(), dim=1)
            if average is not None:
                learner.momentum_update(ema)
            loss_sum += loss.detach()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        mean_loss = float(loss_sum.item() / steps)
        if not np.isfinite(mean_loss):
            raise diverged("distillation loss", mean_loss, f"epoch {epoch + 1}", out / CHECKPOINT, "a lower optim.lr")
        sched.step()
        elapsed = time.perf_counter() - t1
        row = {"epoch": epoch + 1, "loss": mean_loss, "lr": lr, "seq_per_s": steps * bs / elapsed,
               "time_s": elapsed}
        if weight:  # loss = MSE + weight * InfoNCE
            row["infonce"] = float(nce_sum.item() / steps)
        if relation:  # loss = MSE + relation * KL
            row["relation"] = float(rel_sum.item() / steps)
        if dense:  # loss = MSE + dense * per-step MSE
            row["dense"] = float(dense_sum.item() / steps)
        metrics.append(row)
        if average is None and learner.encoder_k is not None and not weight:  # key readouts read the student too
            learner.encoder_k.load_state_dict(student.state_dict())
        elif average is not None and epoch + 1 == cfg.optim.epochs:  # the average becomes the run's encoder
            student.load_state_dict(average.state_dict())
        state = checkpoint_dict(cfg, epoch + 1, input_dim, n, learner, opt, sched, metrics)
        state["distill"] = {"head": head.state_dict(), "teachers": record, "sketch": sketch}
        if dense_head is not None:
            state["distill"]["dense_head"] = dense_head.state_dict()
        if bank is not None:
            state["distill"]["bank"] = bank.cpu()
        _atomic_save(state, out / CHECKPOINT)
        _write_metrics(out / "metrics.csv", metrics)
        if progress:
            terms = f"distillation MSE {mean_loss:.4f}"
            if weight or relation or dense:
                extra = ([f"InfoNCE {row['infonce']:.4f} x {weight:g}"] if weight else []) + \
                    ([f"KL {row['relation']:.4f} x {relation:g}"] if relation else []) + \
                    ([f"per-step MSE {row['dense']:.4f} x {dense:g}"] if dense else [])
                terms = f"loss {mean_loss:.4f} ({' + '.join(extra)} + MSE)"
            print(f"epoch {epoch + 1:3d}/{cfg.optim.epochs}  {terms}  lr {lr:.4g}  "
                  f"{elapsed:.1f}s", flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics[-1])
    if metrics:
        from .report import plot_loss_curve

        who = f"{len(teachers)} teacher{'' if len(teachers) == 1 else 's'}"
        epochs, loss = [r["epoch"] for r in metrics], [r["loss"] for r in metrics]
        curves = None
        terms = {k: w for k, w in (("infonce", weight), ("relation", relation), ("dense", dense)) if w}
        if terms and all(k in r for r in metrics for k in terms):  # the terms beside their sum
            parts = {k: [r[k] for r in metrics] for k in terms}
            mse = [a - sum(w * parts[k][i] for k, w in terms.items()) for i, a in enumerate(loss)]
            names = {"infonce": "InfoNCE", "relation": "relational KL", "dense": "per-step MSE"}
            curves = {"total": (epochs, loss), "MSE to the teachers": (epochs, mse),
                      **{f"{names[k]} (weight {w:g})": (epochs, parts[k]) for k, w in terms.items()}}
        plot_loss_curve(epochs, loss, out / "loss.png", title=f"{cfg.name}: distillation ({who})", curves=curves,
                        ylabel="loss" if terms else f"MSE to the teachers{' (mixed sequences)' if mixup else ''}"
                        f"{' (teachers on the same input)' if consistent else ''}")
    if metrics and int(metrics[-1]["epoch"]) >= cfg.optim.epochs:
        if cfg.distill.recompute_bn:  # (again on a resumed finished run: the same statistics)
            _recalibrate(learner, cfg, ds, rows, device, progress)
            state = read_checkpoint(out)
            state["learner"] = learner.state_dict()
            _atomic_save(state, out / CHECKPOINT)
        export_encoder(learner, cfg, out / ENCODER_FILE)
    learner.eval()
    return PretrainResult(out, learner, cfg, metrics, ds)


def _recalibrate(learner: nn.Module, cfg: Config, ds: SkeletonDataset, rows: np.ndarray, device: torch.device,
                 progress: bool) -> None:
    """``distill.recompute_bn``: the student's BatchNorm statistics re-estimated from the raw
    sequences ``ds[rows]``, read as the probe reads them; the key encoder, where it mirrors the
    student, gets them too."""
    p = cfg.probe
    layers = recompute_bn(learner, ds.x, ds.lengths, p.representation, device=device, index=rows,
                          person_symmetric=p.person_symmetric, both_directions=p.both_directions)
    if learner.encoder_k is not None and not cfg.distill.contrast:
        learner.encoder_k.load_state_dict(learner.encoder_q.state_dict())
    if progress:
        print(f"BatchNorm statistics of {layers} layer(s) re-estimated on {len(rows)} raw sequences", flush=True)


SOUP_SEED_STEP = 100  # student j of a soup trains with train.seed + SOUP_SEED_STEP * j


SOUP_VARY_KEYS = ("augment", "distill.mixup", "optim.lr", "optim.weight_decay")


def soup_variations(cfg: Config) -> list[list[str]]:
    """``distill.soup_vary`` as one list of dotted overrides per student (K = ``distill.soup`` lists,
    empty where a student trains under the run's settings). Refused: more entries than students,
    entries that are not overrides, and keys other than :data:`SOUP_VARY_KEYS`: a student continues
    the trunk's checkpoint, so its encoder, data and schedule's shape must be the trunk's."""
    k, vary = int(cfg.distill.soup), cfg.distill.soup_vary
    if not isinstance(vary, list):
        raise ConfigError(f"distill.soup_vary must be a list (one entry per student), got {vary!r}")
    if len(vary) > k:
        raise ConfigError(f"distill.soup_vary has {len(vary)} entries for {k} students (distill.soup)")
    out: list[list[str]] = []
    for j in range(k):
        item = vary[j] if j < len(vary) else []
        items = [item] if isinstance(item, str) else item
        if not isinstance(items, list) or not all(isinstance(o, str) for o in items):
            raise ConfigError(f"distill.soup_vary[{j}] must be an override such as 'distill.mixup=0.4', a list of "
                              f"them, or '' for none; got {item!r}")
        items = [o.strip() for o in items if o.strip()]
        for o in items:
            key = split_override(o)[0]
            if key not in SOUP_VARY_KEYS:
                raise ConfigError(f"distill.soup_vary[{j}]: {key!r} cannot differ between a soup's students (they "
                                  f"continue one checkpoint); it may vary {', '.join(SOUP_VARY_KEYS)}")
        out.append(items)
    return out


def _scale_lrs(node: Any, factor: float) -> None:
    """Multiply every learning rate held in a scheduler's state (``base_lrs``, ``_last_lr``, nested
    schedulers' too) by ``factor``, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("base_lrs", "_last_lr") and isinstance(value, list):
                node[key] = [float(v) * factor for v in value]
            else:
                _scale_lrs(value, factor)
    elif isinstance(node, list):
        for value in node:
            _scale_lrs(value, factor)


def _retune(state: dict[str, Any], was: Config, now: Config) -> None:
    """Give a branched checkpoint ``now``'s lr and weight decay: the optimizer's state would otherwise
    bring back the trunk's on resume. The lr is scaled (every param group and the schedule by
    now / was), so the student's schedule keeps its shape at the new level."""
    factor = float(now.optim.lr) / float(was.optim.lr)
    for group in state["optimizer"]["param_groups"]:
        group["weight_decay"] = float(now.optim.weight_decay)
        for key in ("lr", "initial_lr"):
            if key in group:
                group[key] = float(group[key]) * factor
    if factor != 1.0:
        _scale_lrs(state["scheduler"], factor)


def _average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of several state dicts of one architecture (integer buffers such as
    BatchNorm's batch counter are the first one's)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in states[0].items():
        out[k] = (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point()
                  else v.clone())
    return out


def _averaged_checkpoint(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first checkpoint dict with its learner (and a distillation's head) replaced by the mean
    over ``states``: what a soup holds."""
    state = states[0]
    state["learner"] = _average_states([s["learner"] for s in states])
    if "distill" in state:
        state["distill"]["head"] = _average_states([s["distill"]["head"] for s in states])
        if "dense_head" in state["distill"]:
            state["distill"]["dense_head"] = _average_states([s["distill"]["dense_head"] for s in states])
    return state


def _member(cfg: Config, out: Path, stop_after: int | None, progress: bool, dataset: SkeletonDataset,
            data_root: str | None, device: str | None, teachers: Sequence[str | Path] | None) -> PretrainResult:
    """Train (or continue, after checking that its saved config is ``cfg``) one member of a soup."""
    from .train import check_resume

    if progress:
        print(f"soup: {out.name}", flush=True)
    resume = (out / CHECKPOINT).exists()
    if resume:
        check_resume(cfg, out, dataset)
    return distill(cfg, out, resume=resume, progress=progress, dataset=dataset, stop_after=stop_after,
                   data_root=data_root or cfg.data.root, device=device or cfg.train.device,
                   teachers=teachers or cfg.distill.teachers)


def _member_job(cfg: dict[str, Any], out: str, stop_after: int | None, dataset: SkeletonDataset,
                data_root: str | None, device: str | None, teachers: Sequence[str] | None, threads: int
                ) -> str | None:
    """One soup member in a worker process (:func:`_side_by_side`): None when it finished, else the
    error's text (the parent raises it; not every error class survives pickling)."""
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        _member(config_from_dict(cfg), Path(out), stop_after, False, dataset, data_root, device, teachers)
    except SkelclError as exc:
        return str(exc)
    except KeyboardInterrupt:
        return "interrupted"
    return None


def _side_by_side(members: Sequence[tuple[Config, Path]], workers: int, stop_after: int | None, branch: int,
                  progress: bool, dataset: SkeletonDataset, data_root: str | None, device: str | None,
                  teachers: Sequence[str | Path] | None) -> None:
    """Train the soup's members in ``workers`` processes at once (each resumes on its own, as in
    the sequential loop). Each process uses ``train.threads`` threads, or, when that is 0, an even
    share of the CPU's cores. The progress bar counts the members' epochs from their metrics.csv.
    The processes are started by spawn (CUDA cannot be forked), so a script that calls this must
    guard its entry point with ``if __name__ == "__main__":``."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    cfg0 = members[0][0]
    end = cfg0.optim.epochs if stop_after is None else min(stop_after, cfg0.optim.epochs)
    threads = int(cfg0.train.threads) or max(1, (os.cpu_count() or 1) // workers)
    names = [str(t) for t in teachers] if teachers else None
    total = len(members) * (end - branch)

    def done() -> int:  # the members' trained epochs after the branch
        n = 0
        for _, d in members:
            f = d / "metrics.csv"
            if f.exists():
                n += max(0, min(end, len(f.read_text().splitlines()) - 1) - branch)
        return n

    bar = None
    if progress:
        from tqdm import tqdm

        print(f"soup: {len(members)} students, {workers} side by side ({threads} thread(s) each)", flush=True)
        bar = tqdm(total=total, initial=done(), desc="soup students' epochs", dynamic_ncols=True)
    errors: list[str] = []
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_member_job, m.to_dict(), str(d), stop_after, dataset, data_root, device, names,
                               threads): d for m, d in members}
        try:
            pending = set(futures)
            while pending:
                finished, pending = cf.wait(pending, timeout=2.0)
                for f in finished:
                    msg = f.result()
                    if msg is not None:
                        errors.append(f"{futures[f].name}: {msg}")
                if bar is not None:
                    bar.n = done()
                    bar.refresh()
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        except cf.process.BrokenProcessPool as exc:
            raise SkelclError("soup: a student's process died before it finished (its error is printed above; "
                              "members resume from their last epoch). Called from a Python script? Put the call "
                              "under `if __name__ == \"__main__\":`, which processes started by spawn need, or "
                              "set distill.soup_workers=1") from exc
        finally:
            if bar is not None:
                bar.close()
    if errors:
        raise SkelclError("soup: " + "; ".join(errors))


def soup(cfg: Config, out_dir: str | Path, progress: bool = True, dataset: SkeletonDataset | None = None,
         stop_after: int | None = None, data_root: str | None = None, device: str | None = None,
         teachers: Sequence[str | Path] | None = None) -> PretrainResult:
    """``distill.soup`` = K >= 2: K students that share their first ``distill.soup_branch`` epochs,
    their weights averaged into the run's encoder (one network).

    Why: on N-UCLA, students of different seeds make different errors on the unseen camera (five
    students' softmax ensemble: 90.1 against 88.4 each) but cannot be averaged, having started
    apart. Students branched from one trunk can: their weight average is one encoder.

    Layout: ``OUT/trunk`` (a distillation stopped after ``soup_branch`` epochs), ``OUT/student-J``
    (a copy of the trunk's checkpoint under ``train.seed`` + 100 J, trained on to ``optim.epochs``;
    student 0 is exactly the plain run of the seed), and the run's own ``checkpoint.pt`` (student 0's,
    with the averaged learner and head, ``distill.soup_members`` naming the students),
    ``metrics.csv`` (student 0's), ``loss.png`` (every student's curve) and ``encoder.safetensors``.
    Every member resumes on its own, so a killed soup goes on where it stopped. With ``stop_after``,
    every member stops there and no average is made (the last member trained is returned). With
    ``distill.soup_workers`` > 1 the students after the trunk train that many at a time, each in its
    own process (:func:`_side_by_side`); they are the same students.
    """
    k, branch = int(cfg.distill.soup), int(cfg.distill.soup_branch)
    if not 1 <= branch < cfg.optim.epochs:
        raise ConfigError(f"distill.soup_branch (the students' shared epochs) must be in [1, optim.epochs="
                          f"{cfg.optim.epochs}), got {branch}")
    workers = int(cfg.distill.soup_workers)
    if workers < 1:
        raise ConfigError(f"distill.soup_workers (students trained side by side) must be at least 1, got {workers}")
    from .augment import build_augment
    from .train import check_resume

    vary = soup_variations(cfg)
    students = {j: config_from_dict(apply_overrides(cfg.to_dict(), o)) for j, o in enumerate(vary) if o}
    for j, student in students.items():  # each student's settings checked before the trunk trains
        if not (float(student.optim.lr) > 0 and float(student.optim.weight_decay) >= 0):
            raise ConfigError(f"distill.soup_vary[{j}]: optim.lr must be > 0 and optim.weight_decay >= 0")
        check_settings(student)
    out = Path(out_dir)
    ds = dataset if dataset is not None else load_data(cfg)
    for student in students.values():
        build_augment(student.augment, joint_names=ds.layout.joints)
    out.mkdir(parents=True, exist_ok=True)
    if (out / CHECKPOINT).exists():  # a finished soup: its average, unchanged
        check_resume(cfg, out, ds)
        state = read_checkpoint(out)
        if "soup_members" in state.get("distill", {}):
            learner, final = learner_from_state(state)
            return PretrainResult(out, learner, final, list(state["metrics"]), ds)
    base = config_from_dict(cfg.to_dict())
    resolve_graph(base, ds)
    absolute_paths(base)
    save_config(base, out / "config.yaml")  # what `skelcl distill --resume` reads if the soup is killed
    base.distill.soup, base.distill.soup_vary = 0, []  # (a varied soup's trunk and plain students are a plain soup's)
    base.distill.recompute_bn = False  # the students are the plain ones; the average is re-estimated
    args = dict(progress=progress, dataset=ds, data_root=data_root, device=device, teachers=teachers)
    trunk = out / "trunk"
    res = _member(base, trunk, branch if stop_after is None else min(branch, stop_after), **args)
    if stop_after is not None and stop_after <= branch:
        return res
    members: list[tuple[Config, Path]] = []
    for j in range(k):
        mcfg = config_from_dict(apply_overrides(base.to_dict(), vary[j]))
        mcfg.train.seed = int(cfg.train.seed) + SOUP_SEED_STEP * j
        d = out / f"student-{j}"
        if not (d / CHECKPOINT).exists():  # the branch: the trunk's checkpoint under this student's seed
            state = read_checkpoint(trunk)
            if int(state["epoch"]) != branch:
                raise ConfigError(f"{trunk} holds epoch {state['epoch']}, not the branch epoch {branch}: "
                                  "give another --out for a new soup")
            if vary[j]:
                state["config"] = apply_overrides(state["config"], vary[j])
                _retune(state, base, mcfg)
            state["config"]["train"]["seed"] = mcfg.train.seed
            d.mkdir(parents=True, exist_ok=True)
            _atomic_save(state, d / CHECKPOINT)
        members.append((mcfg, d))
    dirs = [d for _, d in members]
    if workers > 1:
        _side_by_side(members, workers, stop_after, branch, **args)
        if stop_after is not None and stop_after < cfg.optim.epochs:
            state = read_checkpoint(dirs[-1])
            learner, last = learner_from_state(state)
            return PretrainResult(dirs[-1], learner, last, list(state["metrics"]), ds)
    else:
        for mcfg, d in members:
            res = _member(mcfg, d, stop_after, **args)
        if stop_after is not None and stop_after < cfg.optim.epochs:
            return res
    states = [read_checkpoint(d) for d in dirs]
    state = _averaged_checkpoint(states)  # student 0's, config included
    if vary[0]:  # student 0 trained under other settings: the soup's are the run's, as its trunk holds them
        state["config"] = read_checkpoint(trunk, config_only=True)["config"]
    state["config"]["train"]["seed"] = int(cfg.train.seed)
    state["config"]["distill"]["soup"] = k
    state["config"]["distill"]["soup_vary"] = list(cfg.distill.soup_vary)
    state["distill"]["soup_members"] = [str(d) for d in dirs]
    state["config"]["distill"]["recompute_bn"] = bool(cfg.distill.recompute_bn)
    learner, final = learner_from_state(state)  # the averaged encoder, in eval mode
    if final.distill.recompute_bn:
        dev = resolve_device(device or final.train.device)
        _recalibrate(learner.to(dev), final, ds, train_indices(ds, final.data.protocol, final.data.pretrain_on), dev,
                     progress)
        learner = learner.cpu().eval()
        state["learner"] = learner.state_dict()
    save_config(final, out / "config.yaml")
    _atomic_save(state, out / CHECKPOINT)
    metrics = list(state["metrics"])
    _write_metrics(out / "metrics.csv", metrics)
    export_encoder(learner, final, out / ENCODER_FILE)
    from .report import plot_loss_curve

    curves = {f"student {j} (seed {int(cfg.train.seed) + SOUP_SEED_STEP * j}{''.join('; ' + o for o in vary[j])})":
              ([r["epoch"] for r in s["metrics"]], [r["loss"] for r in s["metrics"]]) for j, s in enumerate(states)}
    plot_loss_curve([r["epoch"] for r in metrics], [r["loss"] for r in metrics], out / "loss.png",
                    title=f"{final.name}: a soup of {k} students (branched at epoch {branch})", curves=curves,
                    ylabel="loss" if final.distill.contrast or final.distill.relation or final.distill.dense
                    else "MSE to the teachers",
                    marks={f"branch (epoch {branch})": branch})
    if progress:
        print(f"soup: the run's encoder is the average of {k} students' weights ({out / CHECKPOINT})", flush=True)
    return PretrainResult(out, learner, final, metrics, ds)


def average_runs(runs: Sequence[str | Path], out_dir: str | Path, progress: bool = True) -> Path:
    """A soup made by hand: the mean of the weights of two or more ``runs`` (run folders or their
    ``checkpoint.pt``), written as a run folder that ``skelcl evaluate`` reads (``checkpoint.pt`` with
    the first run's config and an ``averaged_from`` list, ``config.yaml``, ``metrics.csv``,
    ``encoder.safetensors``). For any subset of a soup's students (``OUT/student-J``), or other runs
    continued from one checkpoint under other seeds; :func:`soup` averages the same way.

    Refused, with the reason, before anything is written: fewer than two runs or one named twice, a
    run without a checkpoint, configs that differ beyond ``train.seed`` and what only moves a run
    (:data:`skelcl.config.NEUTRAL_KEYS`; :data:`SOUP_VARY_KEYS` may differ, as the students of a soup
    with ``distill.soup_vary`` do), weights of other names or shapes, and runs that do not share
    their first epoch. Two networks trained apart from their first step hold their features in
    unrelated units, so their average is no network (it would be evaluated as silent garbage).
    Returns ``out_dir``.
    """
    from .config import NEUTRAL_KEYS, config_diff, diff_summary

    named = distinct_runs(runs, "an average")
    if len(named) < 2:
        raise ConfigError(f"an average of weights needs at least two runs, got {len(named)}")
    out = Path(out_dir)
    paths = list(named.values())
    states = [read_checkpoint(p) for p in paths]
    first, head = states[0], paths[0]
    shapes = {k: tuple(v.shape) for k, v in first["learner"].items()}
    for p, s in zip(paths[1:], states[1:]):  # equal configs also mean both or neither distil (distill.teachers)
        diff = config_diff(first["config"], s["config"], ignore=NEUTRAL_KEYS + ("train.seed",) + SOUP_VARY_KEYS)
        if diff:
            raise ConfigError(f"{p} was trained with another config than {head} ({diff_summary(diff)}); "
                              "only runs that differ in their seed average into one network")
        if {k: tuple(v.shape) for k, v in s["learner"].items()} != shapes:
            raise ConfigError(f"{p} holds other weights (names or shapes) than {head}")
        m0, m = first.get("metrics") or [], s.get("metrics") or []
        if not m0 or not m or m0[0].get("loss") != m[0].get("loss"):
            raise ConfigError(f"{p} and {head} do not share their first epoch: networks trained apart from the "
                              "start do not average into one (their features are in unrelated units). Average "
                              "runs continued from one checkpoint, e.g. the students of a soup (distill.soup)")
    state = _averaged_checkpoint(states)
    state["averaged_from"] = [str(checkpoint_path(p).resolve()) for p in paths]
    learner, cfg = learner_from_state(state)
    with hold_folder(out):  # refused while another process writes it; checked for a run once held
        if (out / CHECKPOINT).exists():
            raise ConfigError(f"{out} already holds a run ({CHECKPOINT}); give another --out")
        save_config(cfg, out / "config.yaml")
        _write_metrics(out / "metrics.csv", list(state["metrics"]))  # non-empty: checked above
        export_encoder(learner, cfg, out / ENCODER_FILE)
        _atomic_save(state, out / CHECKPOINT)
    if progress:
        epochs = sorted({int(s.get("epoch", 0)) for s in states})
        print(f"the weights of {len(states)} runs (epoch {', '.join(map(str, epochs))}) averaged into "
              f"{out / CHECKPOINT}; evaluate it with: skelcl evaluate {out}", flush=True)
    return out
