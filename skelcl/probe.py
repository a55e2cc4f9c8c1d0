"""Evaluation protocols: frozen features, linear / kNN probes, semi-supervised and supervised baselines.

What the paper measures (Sec. IV-B2, V-D, V-E) and how it is done here:

* :func:`encode` turns sequences into frozen features with a trained learner (or a bare encoder, for
  the random-encoder baseline), with no augmentation, in eval mode. Representations of Table IX:
  ``cae`` (query TAP, the paper's CAE), ``cae+`` (query TAP ++ key TAP), ``k`` (key TAP), ``last_q`` /
  ``last_k`` (last valid hidden state of the query / key encoder); beyond the paper, ``cae_max``
  (query TAP ++ the temporal maximum of the same hidden states: the states' peaks, which an average
  blurs). TAP is taken before any projection head, as MoCo-style linear probes do.
* :func:`linear_eval` is the paper's linear protocol: a linear classifier (init N(0, 0.01^2), bias 0)
  trained on frozen features with SGD (Nesterov 0.9, lr 1.0, wd 0, batch 32, 90 epochs, lr x0.5 at
  15/35/60/75), all read from :class:`~skelcl.config.ProbeConfig`. It reports the FINAL epoch's test
  accuracy; the best test epoch (what the released code reports: model selection on the test set) is
  returned too, labelled as such.
* :func:`knn_eval` (cosine kNN), :func:`logistic_baseline` (raw coordinates), :func:`balanced_subset`,
  :func:`finetune` / :func:`semi_supervised_eval` (Table X), :func:`supervised_baseline` (Tables III, V).

Accuracies are percentages (0-100). All randomness comes from explicit seeds: the same seed gives the
same numbers on the same device (CUDA kernels may differ from CPU in the last bits), and the global
torch RNG state is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import swap_two_persons, time_reversed
from .config import ProbeConfig
from .encoder import SequenceEncoder, build_encoder
from .errors import ConfigError, warn_unreached_milestones

REPRESENTATIONS: tuple[str, ...] = ("cae", "cae+", "k", "last_q", "last_k", "cae_max")
QUERY_REPRESENTATIONS: tuple[str, ...] = ("cae", "cae_max", "last_q")  # a bare encoder serves these
KNN_WEIGHTINGS: tuple[str, ...] = ("similarity", "distance", "uniform")
BEST_EPOCH_NOTE = "selected on test, for comparison with the released code only"
# Released code: fine-tuning epochs per labelled fraction (NOTES.md, "Evaluation").
RELEASED_SEMI_EPOCHS: dict[float, int] = {0.01: 35, 0.1: 15, 0.5: 10}

ArrayLike = np.ndarray | torch.Tensor


class ProbeError(ConfigError, ValueError):
    """An evaluation request that cannot be served (unknown representation, missing key encoder...).

    A :class:`ConfigError` (the CLI prints it as one line) and a :class:`ValueError`.
    """


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def default_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"auto"`` -> CUDA if available else CPU; anything else is passed to torch.device."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs (dropout, RNN init) inside the block and restore them afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _np(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _feats(a: ArrayLike, what: str) -> torch.Tensor:
    """(N, D) float32 CPU tensor from numpy / torch."""
    t = torch.as_tensor(_np(a), dtype=torch.float32)
    if t.ndim != 2:
        raise ValueError(f"{what} must be (N, D) features, got shape {tuple(t.shape)}")
    return t


def _labels(a: ArrayLike, n: int, num_classes: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(_np(a).astype(np.int64))
    if y.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), got range "
                         f"[{int(y.min())}, {int(y.max())}] (unknown labels, -1, cannot be evaluated)")
    return y


def _num_classes(labels: ArrayLike, num_classes: int | None) -> int:
    return int(num_classes) if num_classes is not None else int(_np(labels).max()) + 1


def _progress(it: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, leave=False)


def topk_accuracy(scores: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k accuracies in percent, one per k; k is clipped to the number of classes.

    Args:
        scores: (N, C) logits, probabilities or votes (higher = more likely).
        labels: (N,) int class ids.
    Returns:
        ``[acc@k for k in ks]``, each in 0-100 (0.0 for N = 0).
    """
    s = torch.as_tensor(_np(scores)) if not isinstance(scores, torch.Tensor) else scores.detach()
    y = torch.as_tensor(_np(labels)).to(s.device).long()
    if s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be (N, C) with N = len(labels); got {tuple(s.shape)} and {tuple(y.shape)}")
    n = s.shape[0]
    if n == 0:
        return [0.0 for _ in ks]
    kmax = min(max(ks), s.shape[1])
    top = s.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top == y[:, None]
    return [float(hit[:, :min(k, kmax)].any(1).float().mean()) * 100.0 for k in ks]


def confusion(pred: ArrayLike, labels: ArrayLike, n: int) -> np.ndarray:
    """(n, n) confusion matrix; rows are true classes, columns predictions (sklearn convention)."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(_np(labels), _np(pred), labels=np.arange(n))


# --------------------------------------------------------------------------------------------
# frozen features
# --------------------------------------------------------------------------------------------
def _encoders(model: nn.Module, representation: str) -> tuple[SequenceEncoder, SequenceEncoder | None]:
    """(query encoder, key encoder or None) needed for ``representation``."""
    if representation not in REPRESENTATIONS:
        raise ProbeError(f"unknown representation {representation!r}; known: {', '.join(REPRESENTATIONS)}")
    needs_key = representation not in QUERY_REPRESENTATIONS
    if hasattr(model, "encoder_q"):
        enc_q = model.encoder_q
        enc_k = getattr(model, "encoder_k", None)
        if needs_key and enc_k is None:
            paradigm = getattr(getattr(model, "cfg", None), "paradigm", "?")
            raise ProbeError(f"representation {representation!r} needs the key encoder, which only the "
                             f"'queue' paradigm has (this learner: {paradigm!r}); use 'cae' or 'last_q'")
        return enc_q, enc_k
    if isinstance(model, nn.Module):
        if needs_key:
            raise ProbeError(f"representation {representation!r} needs a key encoder; a bare encoder "
                             f"only serves {', '.join(map(repr, QUERY_REPRESENTATIONS))}")
        return model, None  # type: ignore[return-value]
    raise TypeError(f"expected a ContrastiveLearner or a SequenceEncoder, got {type(model).__name__}")


def _read_by(enc_q: nn.Module, enc_k: nn.Module | None, representation: str) -> list[nn.Module]:
    """The encoders that ``representation``'s features pass through."""
    use = [enc_q] if representation in ("cae", "last_q", "cae_max") else \
        [enc_k] if representation in ("k", "last_k") else [enc_q, enc_k]
    return [m for m in use if m is not None]


def _batch(x: ArrayLike, lengths: ArrayLike, idx: np.ndarray, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather samples ``idx`` of (N, T, M, V, C) ``x`` as float32 on ``device`` (per batch: no full copy)."""
    if isinstance(x, torch.Tensor):
        xb = x[torch.as_tensor(idx, device=x.device)].to(device=device, dtype=torch.float32)
    else:
        xb = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)).to(device)
    lb = torch.as_tensor(_np(lengths)[idx], dtype=torch.long).to(device)
    return xb, lb


@contextlib.contextmanager
def _frozen_on(modules: Sequence[nn.Module], device: torch.device) -> Iterator[None]:
    """Eval mode on ``device`` inside the block; each module's device and train flag restored after."""
    state = [(m, m.training, next(m.parameters()).device if any(True for _ in m.parameters()) else None)
             for m in modules]
    try:
        for m, _, _ in state:
            m.to(device).eval()
        yield
    finally:
        for m, training, dev in state:
            if dev is not None:
                m.to(dev)
            m.train(training)


def query_readout(out: Any, representation: str) -> torch.Tensor:
    """(B, E) features of a query-encoder output (an ``EncoderOutput``) for ``cae``, ``last_q`` or
    ``cae_max`` (which is (B, 2E): TAP then temporal max)."""
    if representation == "cae":
        return out.pooled
    if representation == "last_q":
        return out.last
    if representation == "cae_max":
        return torch.cat([out.pooled, out.peak], 1)
    raise ValueError(f"{representation!r} is not a query-encoder readout")


def _features(enc_q: nn.Module, enc_k: nn.Module | None, representation: str, xb: torch.Tensor,
              lb: torch.Tensor) -> torch.Tensor:
    """(B, E) features of one batch for a representation name."""
    if representation in ("cae", "last_q", "cae_max"):
        return query_readout(enc_q(xb, lb), representation)
    if representation == "k":
        return enc_k(xb, lb).pooled  # type: ignore[misc]
    if representation == "last_k":
        return enc_k(xb, lb).last  # type: ignore[misc]
    return torch.cat([enc_q(xb, lb).pooled, enc_k(xb, lb).pooled], 1)  # type: ignore[misc]


def batch_features(model: nn.Module, representation: str, xb: torch.Tensor, lb: torch.Tensor,
                   person_symmetric: bool = False, both_directions: bool = False) -> torch.Tensor:
    """:func:`encode`'s features of one batch already on the model's device: (B, T, M, V, C), (B,)
    -> (B, E). The caller sets eval mode and no_grad (a teacher run on each training batch)."""
    enc_q, enc_k = _encoders(model, representation)
    f = _features(enc_q, enc_k, representation, xb, lb)
    if person_symmetric and xb.dim() == 5 and xb.shape[2] >= 2:
        # one-person samples are left unswapped, so their average is their own feature
        f = (f + _features(enc_q, enc_k, representation, swap_two_persons(xb, lb), lb)) / 2
    if both_directions:
        f = torch.cat([f, _features(enc_q, enc_k, representation, time_reversed(xb, lb), lb)], 1)
    return f


def encode(learner_or_encoder: nn.Module, x: ArrayLike, lengths: ArrayLike, representation: str = "cae",
           batch_size: int = 256, device: str | torch.device | None = None,
           index: np.ndarray | None = None, progress: bool = False,
           person_symmetric: bool = False, both_directions: bool = False) -> np.ndarray:
    """Frozen features of sequences (no augmentation, eval mode, no gradient).

    Args:
        learner_or_encoder: a :class:`~skelcl.contrast.ContrastiveLearner` (anything with
            ``encoder_q`` / ``encoder_k``), or a bare :class:`SequenceEncoder` (``cae``/``last_q`` only).
        x: (N, T, M, V, C) numpy (float16 is fine) or tensor; converted per batch to float32.
        lengths: (N,) valid frame counts.
        representation: one of :data:`REPRESENTATIONS` (see the module docstring).
        index: optional sample indices into ``x``; features come back in this order. Avoids copying a
            subset of a large array.
        person_symmetric: for samples with two persons, average the features of the sequence and of
            the same sequence with persons 1 and 2 swapped, so the embedding does not depend on which
            actor the sensor listed first.
        both_directions: also encode each sequence played backwards (its valid frames reversed) and
            concatenate the two features, [forwards, backwards]: a unidirectional encoder trained
            with the reverse augmentation then reads the sequence both ways, as a bidirectional RNN
            would, without training one. Doubles E and the encoding cost.
    Returns:
        (len(index) or N, E) float32 array; E doubles for ``cae+`` and ``cae_max``, and again with
        ``both_directions``.
    Raises:
        ProbeError (a ValueError): unknown representation, or a key representation without a key encoder.
    """
    enc_q, enc_k = _encoders(learner_or_encoder, representation)
    dev = default_device(device)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    n_all = int(x.shape[0])
    if _np(lengths).shape != (n_all,):
        raise ValueError(f"lengths must have shape ({n_all},), got {_np(lengths).shape}")
    idx_all = np.arange(n_all) if index is None else np.asarray(index, dtype=np.int64)
    use = _read_by(enc_q, enc_k, representation)
    out: list[np.ndarray] = []
    with _frozen_on(use, dev), torch.no_grad():
        starts = range(0, len(idx_all), batch_size)
        for s in _progress(starts, progress, f"encode {representation}"):
            xb, lb = _batch(x, lengths, idx_all[s:s + batch_size], dev)
            f = batch_features(learner_or_encoder, representation, xb, lb, person_symmetric, both_directions)
            out.append(f.float().cpu().numpy())
    if not out:
        dim = getattr(enc_q, "output_dim", 0) * (2 if representation in ("cae+", "cae_max") else 1)
        return np.zeros((0, dim * (2 if both_directions else 1)), np.float32)
    return np.concatenate(out, 0)


def recompute_bn(learner_or_encoder: nn.Module, x: ArrayLike, lengths: ArrayLike, representation: str = "cae",
                 batch_size: int = 256, device: str | torch.device | None = None,
                 index: np.ndarray | None = None, progress: bool = False,
                 person_symmetric: bool = False, both_directions: bool = False) -> int:
    """Re-estimate the BatchNorm statistics of the encoder(s) behind ``representation`` from the
    sequences ``x[index]`` as :func:`encode` reads them (no augmentation), in place.

    Why: a weight average of several networks (a soup, an EMA) carries the average of their running
    statistics, which are not the statistics of the averaged network's own activations; and during
    training the statistics follow augmented batches, not the raw sequences that features are read
    from. As SWA's ``update_bn`` does, every BatchNorm's statistics are reset and set to the
    cumulative average over the batches (a mean of per-batch means and unbiased variances). Only the
    BatchNorm layers switch to train mode (dropout stays off), no weight changes, and the result does
    not depend on the statistics held before. Same arguments as :func:`encode`.

    Returns:
        the number of BatchNorm layers re-estimated (0: nothing to do; the model is unchanged).
    """
    enc_q, enc_k = _encoders(learner_or_encoder, representation)
    use = _read_by(enc_q, enc_k, representation)
    norms = [m for e in use for m in e.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    if not norms:
        return 0
    dev = default_device(device)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    idx_all = np.arange(int(x.shape[0])) if index is None else np.asarray(index, dtype=np.int64)
    if len(idx_all) < 2:
        raise ValueError(f"recompute_bn needs at least 2 sequences, got {len(idx_all)}")
    momenta = [m.momentum for m in norms]
    with _frozen_on(use, dev), torch.no_grad():
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the batches
                m.train()
            starts = list(range(0, len(idx_all), batch_size))
            if len(idx_all) - starts[-1] < 2 and len(starts) > 1:  # no batch of one: train-mode BN refuses it
                starts.pop()
            for i, s in enumerate(_progress(starts, progress, "BatchNorm statistics")):
                end = starts[i + 1] if i + 1 < len(starts) else len(idx_all)
                xb, lb = _batch(x, lengths, idx_all[s:end], dev)
                batch_features(learner_or_encoder, representation, xb, lb, person_symmetric, both_directions)
        finally:
            for m, mom in zip(norms, momenta):
                m.momentum = mom
    return len(norms)


# --------------------------------------------------------------------------------------------
# linear protocol
# --------------------------------------------------------------------------------------------
def _init_linear(dim_in: int, num_classes: int, gen: torch.Generator) -> nn.Linear:
    """nn.Linear with weight ~ N(0, 0.01^2) and zero bias (MoCo / AS-CAL linear-probe init)."""
    clf = nn.Linear(dim_in, num_classes)
    with torch.no_grad():
        clf.weight.copy_(torch.randn(num_classes, dim_in, generator=gen) * 0.01)
        clf.bias.zero_()
    return clf


def standardize(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-8
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Standardise with the TRAIN split's per-dimension mean/std (population std; constant dims -> std 1).

    Returns ([train, *others] standardised, mean (D,), std (D,)).
    """
    mean = train.mean(0) if train.shape[0] else torch.zeros(train.shape[1])
    std = train.std(0, unbiased=False) if train.shape[0] else torch.ones(train.shape[1])
    std = torch.where(std < eps, torch.ones_like(std), std)
    return [(t - mean) / std for t in (train, *others)], mean, std


def _fit_linear(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, cfg: ProbeConfig,
                num_classes: int, seed: int, dev: torch.device, progress: bool
                ) -> tuple[nn.Linear, list[float], list[float], list[float]]:
    """One seeded SGD run of the linear protocol: (classifier, train loss, test top-1, lr) per epoch."""
    gen = torch.Generator().manual_seed(int(seed))
    clf = _init_linear(xtr.shape[1], num_classes, gen).to(dev)
    nesterov = bool(cfg.nesterov and cfg.momentum > 0)
    opt = torch.optim.SGD(clf.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    n, bs = xtr.shape[0], int(cfg.batch_size)
    losses: list[float] = []
    test_top1: list[float] = []
    lrs: list[float] = []
    for _ in _progress(range(cfg.epochs), progress, "linear"):
        lrs.append(float(opt.param_groups[0]["lr"]))
        perm = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), device=dev)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            loss = F.cross_entropy(clf(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.shape[0]
        sched.step()
        with torch.no_grad():
            correct = (clf(xte).argmax(1) == yte).sum()
        losses.append(float(total) / n)
        test_top1.append(float(correct) * 100.0 / xte.shape[0])
    return clf, losses, test_top1, lrs


def linear_eval(train_feats: ArrayLike, train_labels: ArrayLike, test_feats: ArrayLike, test_labels: ArrayLike,
                cfg: ProbeConfig | None = None, num_classes: int | None = None, progress: bool = False,
                device: str | torch.device | None = None) -> dict[str, Any]:
    """The paper's linear evaluation protocol (IV-B2) on frozen features.

    A linear classifier (init N(0, 0.01^2), bias 0) is trained with SGD (``cfg.lr``, momentum
    ``cfg.momentum``, Nesterov ``cfg.nesterov``, ``cfg.weight_decay``), mini-batches of
    ``cfg.batch_size`` drawn by a seeded shuffle (the last, smaller batch is kept), for ``cfg.epochs``
    epochs with MultiStepLR(``cfg.milestones``, ``cfg.gamma``) stepped once per epoch. Full-tensor
    operations, no DataLoader. With ``cfg.standardize`` the features are standardised with the train
    split's statistics only.

    With ``cfg.restarts`` = R > 1, R such classifiers are trained from seeds ``cfg.seed + 1000 r``
    (r = 0 is the single run's) and their weights and biases averaged: still one linear classifier
    (its logits are the mean of the R runs' logits), with less of the lr-1.0 SGD's run-to-run spread.
    Each run's own final top-1 is reported in ``restarts_top1``.

    Args:
        train_feats, test_feats: (N_train, D), (N_test, D) features.
        train_labels, test_labels: (N_train,), (N_test,) ints in [0, num_classes).
        num_classes: C (default: max label + 1 over both splits).
    Returns:
        dict with ``top1``, ``top5`` (final epoch, test; top-5 means top-min(5, C), see ``k5``),
        ``best_epoch_top1`` / ``best_epoch`` / ``best_epoch_note`` (best test top-1 over epochs:
        selected on test, for comparison with the released code only), ``history`` (per epoch:
        ``train_loss``, ``test_top1``, ``lr``; means over the restarts), ``pred`` (N_test,) final
        predictions, ``classifier`` (numpy ``weight`` (C, D), ``bias`` (C,), and ``mean`` / ``std``
        when standardised), ``scores`` (N_test, C) final test logits, ``restarts_top1`` (R,),
        ``diverged`` (a non-finite loss was seen), sizes and ``seconds``.
    """
    cfg = cfg or ProbeConfig()
    t0 = time.perf_counter()
    dev = default_device(device)
    xtr, xte = _feats(train_feats, "train_feats"), _feats(test_feats, "test_feats")
    if xtr.shape[0] == 0 or xte.shape[0] == 0:
        raise ValueError("linear_eval needs non-empty train and test features")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train and test features differ in width: {xtr.shape[1]} vs {xte.shape[1]}")
    if num_classes is None:
        num_classes = int(max(_np(train_labels).max(), _np(test_labels).max())) + 1
    ytr = _labels(train_labels, xtr.shape[0], num_classes, "train_labels")
    yte = _labels(test_labels, xte.shape[0], num_classes, "test_labels")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ProbeError(f"probe epochs and batch_size must be >= 1, got {cfg.epochs}, {cfg.batch_size}")
    if cfg.restarts < 1:
        raise ProbeError(f"probe.restarts must be >= 1, got {cfg.restarts}")
    warn_unreached_milestones("probe", cfg.milestones, cfg.epochs)
    mean = std = None
    if cfg.standardize:
        (xtr, xte), mean, std = standardize(xtr, xte)
    xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)

    runs = [_fit_linear(xtr, ytr, xte, yte, cfg, num_classes, int(cfg.seed) + 1000 * r, dev, progress)
            for r in range(int(cfg.restarts))]
    with torch.no_grad():
        weight = torch.stack([clf.weight for clf, *_ in runs]).mean(0)
        bias = torch.stack([clf.bias for clf, *_ in runs]).mean(0)
        logits = xte @ weight.t() + bias if len(runs) > 1 else runs[0][0](xte)
        restarts_top1 = [float((clf(xte).argmax(1) == yte).float().mean()) * 100.0 for clf, *_ in runs]
    losses = np.mean([r[1] for r in runs], 0).tolist()
    test_top1 = np.mean([r[2] for r in runs], 0).tolist()
    top1, top5 = topk_accuracy(logits, yte, (1, 5))
    best = int(np.argmax(test_top1))
    classifier: dict[str, np.ndarray] = {"weight": weight.cpu().numpy(), "bias": bias.cpu().numpy()}
    if mean is not None and std is not None:
        classifier["mean"], classifier["std"] = mean.numpy(), std.numpy()
    return {
        "top1": top1,
        "top5": top5,
        "k5": min(5, num_classes),
        "best_epoch_top1": test_top1[best],
        "best_epoch": best + 1,
        "best_epoch_note": BEST_EPOCH_NOTE,
        "history": {"train_loss": losses, "test_top1": test_top1, "lr": runs[0][3]},
        "pred": logits.argmax(1).cpu().numpy(),
        "scores": logits.cpu().numpy(),
        "classifier": classifier,
        "standardize": bool(cfg.standardize),
        "restarts_top1": restarts_top1,
        "diverged": not all(math.isfinite(v) for r in runs for v in r[1]),
        "epochs": int(cfg.epochs),
        "num_classes": int(num_classes),
        "num_train": int(xtr.shape[0]),
        "num_test": int(xte.shape[0]),
        "feature_dim": int(xtr.shape[1]),
        "seconds": time.perf_counter() - t0,
    }


def combined_classifier(classifiers: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The one linear classifier whose logits are the mean of several probes' logits, each probe
    reading its own block of features (its ``classifier`` from :func:`linear_eval`, standardised or
    not), on those blocks side by side.

    Why: averaging R probes' logits, unlike averaging their softmaxes, keeps the protocol's form, a
    linear classifier on one (concatenated) representation: logits = x_cat @ weight.T + bias.
    Returns ``weight`` (C, sum D_r) and ``bias`` (C,), float64.
    """
    if not classifiers:
        raise ValueError("combined_classifier needs at least one classifier")
    r = len(classifiers)
    blocks, bias = [], 0.0
    for c in classifiers:
        w, b = np.asarray(c["weight"], np.float64), np.asarray(c["bias"], np.float64)
        if "std" in c:  # ((x - mean) / std) @ w.T + b
            w = w / np.asarray(c["std"], np.float64)
            b = b - w @ np.asarray(c["mean"], np.float64)
        blocks.append(w / r)
        bias = bias + b / r
    return {"weight": np.concatenate(blocks, 1), "bias": np.asarray(bias)}


# --------------------------------------------------------------------------------------------
# kNN and raw-input baselines
# --------------------------------------------------------------------------------------------
def knn_eval(train_feats: ArrayLike, train_labels: ArrayLike, test_feats: ArrayLike, test_labels: ArrayLike,
             k: int = 20, weighting: str = "similarity", temperature: float = 0.07,
             num_classes: int | None = None) -> dict[str, Any]:
    """Cosine k-nearest-neighbour classification of frozen features (no training).

    Neighbours come from scikit-learn's ``NearestNeighbors(metric="cosine")`` (brute force, exact);
    each neighbour votes for its class with a weight, and the class scores give top-1 / top-5:

    * ``similarity`` (default): weight exp(cos / temperature), the similarity-weighted vote of
      Wu et al. 2018 (InstDisc) used by most self-supervised papers' kNN monitors (temperature 0.07).
    * ``distance``: 1 / (1 - cos) as ``KNeighborsClassifier(weights="distance")``, including its rule
      that exact matches (distance 0), when present, take the whole vote.
    * ``uniform``: one vote each (``weights="uniform"``).

    Returns dict ``top1``, ``top5`` (top-min(5, C)), ``pred`` (N_test,), ``k`` (the k used, at most
    N_train), ``weighting``.
    """
    from sklearn.neighbors import NearestNeighbors

    if weighting not in KNN_WEIGHTINGS:
        raise ProbeError(f"unknown kNN weighting {weighting!r}; known: {', '.join(KNN_WEIGHTINGS)}")
    xtr, xte = _feats(train_feats, "train_feats").numpy(), _feats(test_feats, "test_feats").numpy()
    if xtr.shape[0] == 0 or xte.shape[0] == 0:
        raise ValueError("knn_eval needs non-empty train and test features")
    if num_classes is None:
        num_classes = int(max(_np(train_labels).max(), _np(test_labels).max())) + 1
    ytr = _labels(train_labels, xtr.shape[0], num_classes, "train_labels").numpy()
    yte = _labels(test_labels, xte.shape[0], num_classes, "test_labels").numpy()
    if int(k) < 1:
        raise ProbeError(f"kNN k (probe.knn_k) must be >= 1, got {k}")
    k = int(min(k, xtr.shape[0]))
    nn_ = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(xtr)
    dist, nbr = nn_.kneighbors(xte)  # (N_test, k), distance = 1 - cos
    dist = dist.astype(np.float64)
    if weighting == "similarity":
        w = np.exp((1.0 - dist) / temperature)
    elif weighting == "distance":
        with np.errstate(divide="ignore"):
            w = 1.0 / dist
        exact = dist <= 0
        rows = exact.any(1)
        w[rows] = exact[rows].astype(np.float64)
    else:
        w = np.ones_like(dist)
    votes = np.zeros((xte.shape[0], num_classes))
    np.add.at(votes, (np.repeat(np.arange(xte.shape[0]), k), ytr[nbr].ravel()), w.ravel())
    top1, top5 = topk_accuracy(torch.from_numpy(votes), torch.from_numpy(yte), (1, 5))
    return {"top1": top1, "top5": top5, "k5": min(5, num_classes), "pred": votes.argmax(1), "k": k,
            "weighting": weighting, "temperature": temperature if weighting == "similarity" else None}


def logistic_baseline(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
                      max_iter: int = 1000, C: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Raw-coordinate reference: flatten each sample, standardise (train statistics), logistic regression.

    The "raw input" line printed beside trained encoders: an encoder that does not beat it has learned
    nothing a linear model could not read off the coordinates.

    Args:
        train_x, test_x: (N, ...) samples, e.g. (N, T, M, V, C) arrays (float16 fine); any features.
        train_y, test_y: (N,) labels.
    Returns:
        dict ``top1``, ``top5`` (top-min(5, C) from predicted probabilities), ``pred``, ``converged``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr = _np(train_x).reshape(len(train_x), -1).astype(np.float32)
    xte = _np(test_x).reshape(len(test_x), -1).astype(np.float32)
    ytr, yte = _np(train_y).astype(np.int64), _np(test_y).astype(np.int64)
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(max_iter=max_iter, C=C, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(scaler.transform(xtr), ytr)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    proba = clf.predict_proba(scaler.transform(xte))  # columns = clf.classes_
    num_classes = int(max(ytr.max(), yte.max())) + 1
    scores = np.full((xte.shape[0], num_classes), -1.0)
    scores[:, clf.classes_] = proba
    top1, top5 = topk_accuracy(torch.from_numpy(scores), torch.from_numpy(yte), (1, 5))
    return {"top1": top1, "top5": top5, "k5": min(5, num_classes), "pred": clf.classes_[proba.argmax(1)],
            "converged": converged}


# --------------------------------------------------------------------------------------------
# semi-supervised (Table X) and supervised baselines (Tables III, V)
# --------------------------------------------------------------------------------------------
def balanced_subset(labels: ArrayLike, fraction: float, seed: int = 0) -> np.ndarray:
    """Class-balanced labelled subset: positions into ``labels``, sorted.

    Per class c with count_c samples, keep n_c = max(1, round_half_up(fraction * count_c)) (at most
    count_c), drawn uniformly at random: each class's samples are permuted once with a seeded numpy
    generator and the first n_c are kept, so for one seed the subsets are nested (1% in 10% in 50%).
    Negative labels (unknown) are never chosen. The released code instead took the first
    int(fraction * N / classes) samples per class in file order.
    """
    y = _np(labels).astype(np.int64)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ProbeError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c in np.unique(y[y >= 0]):
        idx = np.flatnonzero(y == c)
        n_c = min(len(idx), max(1, int(math.floor(fraction * len(idx) + 0.5))))
        chosen.append(idx[rng.permutation(len(idx))[:n_c]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _predict(encoder: SequenceEncoder, head: nn.Module, x: ArrayLike, lengths: ArrayLike, idx: np.ndarray,
             batch_size: int, device: torch.device) -> torch.Tensor:
    """(len(idx), C) logits of head(TAP(encoder(x[idx]))) in eval mode (CPU tensor)."""
    out: list[torch.Tensor] = []
    with _frozen_on([encoder, head], device), torch.no_grad():
        for s in range(0, len(idx), batch_size):
            xb, lb = _batch(x, lengths, idx[s:s + batch_size], device)
            out.append(head(encoder(xb, lb).pooled).float().cpu())
    return torch.cat(out, 0) if out else torch.zeros(0, getattr(head, "out_features", 0))


def _train_classifier(encoder: SequenceEncoder, head: nn.Module, x: ArrayLike, lengths: ArrayLike,
                      labels: np.ndarray, idx: np.ndarray, epochs: int, opt: torch.optim.Optimizer,
                      sched: Any, batch_size: int, seed: int, device: torch.device, augment: Any,
                      grad_clip: float | None, progress: bool, desc: str) -> list[dict[str, float]]:
    """Train encoder + head with cross entropy on samples ``idx``; returns per-epoch loss / train top-1."""
    aug = None
    if augment is not None:
        from .augment import build_augment
        aug = build_augment(augment)
    gen = torch.Generator().manual_seed(seed)
    gen_aug = torch.Generator().manual_seed(seed + 1)
    params = [p for p in list(encoder.parameters()) + list(head.parameters()) if p.requires_grad]
    y_all = torch.as_tensor(labels, dtype=torch.long)
    history: list[dict[str, float]] = []
    encoder.train()
    head.train()
    for epoch in _progress(range(epochs), progress, desc):
        perm = idx[torch.randperm(len(idx), generator=gen).numpy()]
        total = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for s in range(0, len(perm), batch_size):
            bidx = perm[s:s + batch_size]
            xb, lb = _batch(x, lengths, bidx, device)
            if aug is not None and len(aug):
                xb = aug(xb, lb, gen_aug)
            yb = y_all[bidx].to(device)
            logits = head(encoder(xb, lb).pooled)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            total += loss.detach() * len(bidx)
            correct += (logits.detach().argmax(1) == yb).sum()
        if sched is not None:
            sched.step()
        history.append({"epoch": epoch + 1, "loss": float(total) / max(1, len(perm)),
                        "train_top1": float(correct) * 100.0 / max(1, len(perm))})
    encoder.eval()
    head.eval()
    return history


def _check_arrays(x: ArrayLike, lengths: ArrayLike, labels: ArrayLike, *idx_sets: np.ndarray) -> None:
    n = int(x.shape[0])
    if x.ndim not in (3, 5):
        raise ValueError(f"x must be (N, T, M, V, C) (or (N, T, D)), got shape {tuple(x.shape)}")
    if _np(lengths).shape != (n,) or _np(labels).shape != (n,):
        raise ValueError(f"lengths and labels must have shape ({n},)")
    for ix in idx_sets:
        ix = np.asarray(ix)
        if ix.size and (ix.min() < 0 or ix.max() >= n):
            raise ValueError(f"sample indices must lie in [0, {n})")


def finetune(encoder: SequenceEncoder, x: ArrayLike, lengths: ArrayLike, labels: ArrayLike,
             train_idx: np.ndarray, num_classes: int, epochs: int, lr: float = 0.01, batch_size: int = 32,
             seed: int = 0, device: str | torch.device | None = None, augment: Any = None,
             momentum: float = 0.9, weight_decay: float = 0.0, milestones: Sequence[int] = (),
             gamma: float = 0.1, grad_clip: float | None = None, progress: bool = False,
             log: list[dict[str, float]] | None = None) -> tuple[SequenceEncoder, nn.Linear]:
    """Fine-tune a COPY of ``encoder`` plus a new linear head on the labelled samples ``train_idx``.

    Cross entropy on head(TAP(encoder(x))), SGD (momentum 0.9, ``weight_decay``), constant ``lr``
    unless ``milestones`` are given; optional training augmentation (an :func:`~skelcl.augment.build_augment`
    spec or Compose). The final model is returned (no selection on training or test accuracy).

    Args:
        encoder: left unchanged (deep-copied).
        x: (N, T, M, V, C) all samples; lengths (N,), labels (N,).
        train_idx: indices of the labelled samples used for training.
        log: if given, per-epoch ``{"epoch", "loss", "train_top1"}`` dicts are appended.
    Returns:
        (fine-tuned encoder copy, head nn.Linear(E, num_classes)), both in eval mode on ``device``.
    """
    _check_arrays(x, lengths, labels, train_idx)
    if epochs < 0 or batch_size < 1:
        raise ValueError("epochs must be >= 0 and batch_size >= 1")
    dev = default_device(device)
    enc = copy.deepcopy(encoder).to(dev)
    for p in enc.parameters():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed + 2)
    head = _init_linear(enc.output_dim, num_classes, gen).to(dev)
    opt = torch.optim.SGD(list(enc.parameters()) + list(head.parameters()), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma) if milestones else None
    with _seeded(seed, dev):
        hist = _train_classifier(enc, head, x, lengths, _np(labels), np.asarray(train_idx, np.int64), epochs,
                                 opt, sched, batch_size, seed, dev, augment, grad_clip, progress, "finetune")
    if log is not None:
        log.extend(hist)
    return enc, head


def _query_encoder(model: nn.Module) -> SequenceEncoder:
    return model.encoder_q if hasattr(model, "encoder_q") else model  # type: ignore[return-value]


def semi_epochs(fraction: float, epochs: int | None = None, lr: float = 0.01) -> int:
    """Fine-tuning epochs for a label ``fraction``: ``epochs``, or the released code's default for
    1% / 10% / 50% when None. Checked before any work, so a bad request fails at once."""
    if not 0.0 < fraction <= 1.0:
        raise ProbeError(f"label fraction must be in (0, 1], got {fraction}")
    if epochs is None:
        match = [e for f, e in RELEASED_SEMI_EPOCHS.items() if math.isclose(f, fraction)]
        if not match:
            raise ProbeError(f"no default fine-tuning epochs for label fraction {fraction} (the released code "
                             f"has {RELEASED_SEMI_EPOCHS}); set probe.finetune_epochs")
        epochs = match[0]
    if epochs < 1 or not lr > 0:
        raise ProbeError(f"fine-tuning needs epochs >= 1 and lr > 0 (got epochs {epochs}, lr {lr})")
    return int(epochs)


def semi_supervised_eval(learner_or_encoder: nn.Module, x: ArrayLike, lengths: ArrayLike, labels: ArrayLike,
                         train_idx: np.ndarray, test_idx: np.ndarray, fraction: float,
                         cfg: ProbeConfig | None = None, num_classes: int | None = None,
                         epochs: int | None = None, lr: float = 0.01, batch_size: int | None = None,
                         momentum: float = 0.9, weight_decay: float = 0.0, seed: int | None = None,
                         device: str | torch.device | None = None, augment: Any = None,
                         encode_batch_size: int = 256, progress: bool = False) -> dict[str, Any]:
    """The paper's semi-supervised protocol (V-E, Table X), in its two steps.

    1. Draw a class-balanced ``fraction`` of the training split (:func:`balanced_subset`, seeded),
       attach a linear head to (a copy of) the query encoder and fine-tune both on it (:func:`finetune`,
       SGD momentum 0.9, ``lr`` 0.01 and 35 / 15 / 10 epochs for 1% / 10% / 50% as the released code
       when ``epochs`` is None). Step-1 accuracy = that fine-tuned model on the test split.
    2. Freeze the fine-tuned encoder and train a linear classifier on the COMPLETE training split with
       the linear protocol (:func:`linear_eval`, ``cfg``) on its ``cfg.representation`` features and
       readout options (``cae``, the paper's TAP, when that representation needs the key encoder,
       which fine-tuning does not keep; ``step2["representation"]`` says which). This is the number
       the paper reports.

    The learner passed in is not modified. Returns dict with ``top1`` / ``top5`` (step 2, the paper's
    number), ``step1`` (``top1``, ``top5``, ``history``), ``step2`` (the full :func:`linear_eval`
    result), ``fraction``, ``labelled`` (count), ``labelled_idx``, ``epochs``, ``lr``, ``seed``.
    """
    cfg = cfg or ProbeConfig()
    train_idx = np.asarray(train_idx, np.int64)
    test_idx = np.asarray(test_idx, np.int64)
    _check_arrays(x, lengths, labels, train_idx, test_idx)
    y = _np(labels).astype(np.int64)
    num_classes = _num_classes(y[np.concatenate([train_idx, test_idx])], num_classes)
    seed = int(cfg.seed if seed is None else seed)
    epochs = semi_epochs(fraction, epochs, lr)
    bs = int(batch_size or cfg.batch_size)
    dev = default_device(device)

    labelled = train_idx[balanced_subset(y[train_idx], fraction, seed)]
    hist: list[dict[str, float]] = []
    enc, head = finetune(_query_encoder(learner_or_encoder), x, lengths, y, labelled, num_classes, epochs,
                         lr=lr, batch_size=bs, seed=seed, device=dev, augment=augment, momentum=momentum,
                         weight_decay=weight_decay, progress=progress, log=hist)
    logits = _predict(enc, head, x, lengths, test_idx, encode_batch_size, dev)
    s1_top1, s1_top5 = topk_accuracy(logits, y[test_idx], (1, 5))

    rep = cfg.representation if cfg.representation in QUERY_REPRESENTATIONS else "cae"
    ftr, fte = (encode(enc, x, lengths, rep, encode_batch_size, dev, index=idx,
                       person_symmetric=cfg.person_symmetric, both_directions=cfg.both_directions)
                for idx in (train_idx, test_idx))
    step2 = linear_eval(ftr, y[train_idx], fte, y[test_idx], cfg, num_classes, progress=progress, device=dev)
    step2["representation"] = rep
    return {
        "top1": step2["top1"],
        "top5": step2["top5"],
        "fraction": float(fraction),
        "labelled": int(len(labelled)),
        "labelled_idx": labelled,
        "epochs": int(epochs),
        "lr": float(lr),
        "seed": seed,
        "step1": {"top1": s1_top1, "top5": s1_top5, "history": hist,
                  "pred": logits.argmax(1).numpy(),
                  "note": "fine-tuned encoder + head on the labelled subset, final epoch"},
        "step2": step2,
    }


def supervised_baseline(cell: str, x: ArrayLike, lengths: ArrayLike, labels: ArrayLike, train_idx: np.ndarray,
                        test_idx: np.ndarray, hidden: int = 256, layers: int = 1, epochs: int = 60,
                        lr: float = 1e-3, optimizer: str = "adam", batch_size: int = 32, seed: int = 0,
                        weight_decay: float = 0.0, tap: str = "masked", grad_clip: float | None = 5.0,
                        num_classes: int | None = None, device: str | torch.device | None = None,
                        augment: Any = None, progress: bool = False, model: Any = None) -> dict[str, Any]:
    """Supervised baseline of Tables III / V: a one-layer RNN / GRU / LSTM (256 units) trained from scratch.

    ``model`` (a :class:`~skelcl.config.ModelConfig`): train that encoder instead (its cell, layers,
    frame features, input norm... as :func:`~skelcl.encoder.build_encoder` builds it for pretraining),
    so a config's encoder can be measured with every label; ``cell`` / ``hidden`` / ``layers`` /
    ``tap`` are then ignored.

    Classifier: a linear layer on the TAP of the hidden states (the representation AS-CAL's CAE uses,
    so the comparison isolates the training signal), valid frames only (``tap="masked"``; ``"all"``
    averages padding too as the released code's TAP does). The paper does not state the optimiser or
    schedule of these baselines; ours: Adam (``optimizer="adam"``, lr 1e-3) or SGD momentum 0.9
    (``"sgd"``), constant lr, gradient-norm clipping at ``grad_clip`` (plain RNNs diverge without it),
    ``epochs`` epochs, no augmentation unless given. Reported: the FINAL epoch's test top-1 / top-5.

    Returns dict ``top1``, ``top5``, ``pred``, ``history`` (per-epoch loss / train top-1), ``cell``,
    ``hidden``, ``layers``, ``optimizer``, ``epochs``, ``lr``, ``seconds``.
    """
    t0 = time.perf_counter()
    if model is None and cell not in ("rnn", "gru", "lstm"):
        raise ProbeError(f"unknown cell {cell!r}; known: rnn, gru, lstm")
    if optimizer not in ("adam", "sgd"):
        raise ProbeError(f"unknown optimizer {optimizer!r}; known: adam, sgd")
    train_idx = np.asarray(train_idx, np.int64)
    test_idx = np.asarray(test_idx, np.int64)
    _check_arrays(x, lengths, labels, train_idx, test_idx)
    y = _np(labels).astype(np.int64)
    num_classes = _num_classes(y[np.concatenate([train_idx, test_idx])], num_classes)
    dev = default_device(device)
    input_dim = int(np.prod(x.shape[2:]))
    with _seeded(seed, dev):
        if model is not None:
            enc = build_encoder(input_dim, model, persons=int(x.shape[2])).to(dev)
            kind = getattr(model, "encoder", "rnn")
            cell, hidden, layers, tap = (model.cell if kind == "rnn" else kind, model.hidden, model.layers,
                                         model.tap)
        else:
            enc = SequenceEncoder(input_dim, hidden=hidden, layers=layers, cell=cell, tap=tap).to(dev)
        head = _init_linear(enc.output_dim, num_classes, torch.Generator().manual_seed(seed + 2)).to(dev)
        params = list(enc.parameters()) + list(head.parameters())
        opt: torch.optim.Optimizer = (torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
                                      if optimizer == "adam" else
                                      torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay))
        hist = _train_classifier(enc, head, x, lengths, y, train_idx, epochs, opt, None, batch_size, seed, dev,
                                 augment, grad_clip, progress, f"supervised {cell}")
    logits = _predict(enc, head, x, lengths, test_idx, 256, dev)
    top1, top5 = topk_accuracy(logits, y[test_idx], (1, 5))
    return {"top1": top1, "top5": top5, "k5": min(5, num_classes), "pred": logits.argmax(1).numpy(),
            "history": hist, "cell": cell, "hidden": hidden, "layers": layers, "optimizer": optimizer,
            "epochs": int(epochs), "lr": float(lr), "tap": tap, "seconds": time.perf_counter() - t0}


__all__ = [
    "REPRESENTATIONS", "KNN_WEIGHTINGS", "BEST_EPOCH_NOTE", "RELEASED_SEMI_EPOCHS", "ProbeError",
    "default_device", "topk_accuracy", "confusion", "encode", "standardize", "linear_eval", "combined_classifier",
    "knn_eval",
    "logistic_baseline", "balanced_subset", "finetune", "semi_epochs", "semi_supervised_eval",
    "supervised_baseline",
]
