"""Experiments built from the library: evaluate a checkpoint, pretrain+evaluate (`run`), the demo,
and the paper's tables (`reproduce`). Each writes a ``results.json`` with every figure, the config,
the seed and the git commit, so a number can always be traced back to how it was made.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import __version__
from .config import Config, ProbeConfig, apply_overrides, config_from_dict, load_config, merge
from .contrast import ContrastiveLearner
from .encoder import SequenceEncoder, build_encoder
from .errors import ConfigError
from .probe import (confusion, encode, knn_eval, linear_eval, logistic_baseline, semi_epochs, semi_supervised_eval,
                    supervised_baseline, topk_accuracy)
from .report import bounded_slug, markdown_table, plot_confusion, plot_tsne
from .store import SkeletonDataset, atomic_write
from .train import (apply_threads, check_resume, distinct_runs, load_checkpoint, load_data, pretrain,
                    read_checkpoint, resolve_device)

PROTOCOLS = ("linear", "knn", "semi")
COPIES_NOTE = ("test sequences whose input is an exact copy of a training sequence's (SkeletonDataset.test_copies); "
               "top1_without_copies is the top-1 on the other test sequences")


def test_copy_mask(ds: SkeletonDataset, protocol: str, test_idx: np.ndarray) -> np.ndarray:
    """(len(test_idx),) bool: which of these test sequences copy a training sequence exactly."""
    return np.isin(test_idx, ds.test_copies(protocol))


def copies_record(ds: SkeletonDataset, test_idx: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The ``test_copies`` entry of a results.json: how many, of how many, and which (first 20 names)."""
    names = ds.meta.get("name")
    which = test_idx[mask][:20]
    return {"count": int(mask.sum()), "test": int(len(test_idx)), "note": COPIES_NOTE,
            "names": [str(names[i]) for i in which] if names is not None else [int(i) for i in which]}


def copies_footnote(copies: dict[str, Any]) -> str:
    """The line under a table whose last column leaves out the test copies (``copies_record``)."""
    return (f"{copies['count']} of the {copies['test']} test sequences are exact copies of training sequences "
            f"(first: {', '.join(map(str, copies['names'][:3]))}); the last column leaves them out.")


def add_without_copies(r: dict[str, Any], labels: np.ndarray, mask: np.ndarray) -> None:
    """Add ``top1_without_copies`` (and ``num_without_copies``) to a probe result that has ``pred``,
    scoring only the test sequences that are not copies of training sequences."""
    if "pred" not in r or not mask.any() or mask.all():
        return
    keep = ~mask
    r["top1_without_copies"] = float((np.asarray(r["pred"])[keep] == np.asarray(labels)[keep]).mean() * 100.0)
    r["num_without_copies"] = int(keep.sum())


def git_commit() -> str | None:
    """The commit of the skelcl source tree, if it is a git checkout."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(cfg: Config | None) -> dict[str, Any]:
    return {
        "skelcl_version": __version__,
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "seed": cfg.train.seed if cfg else None,
        "config": cfg.to_dict() if cfg else None,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(_jsonable(data), indent=2))
    return p


def _strip(res: dict[str, Any]) -> dict[str, Any]:
    """Drop bulky arrays (predictions, classifier weights) from a probe result for results.json."""
    return {k: v for k, v in res.items() if k not in ("pred", "scores", "classifier", "neighbors")}


def labelled_split(ds: SkeletonDataset, protocol: str) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(train, test, skipped) indices of a protocol's split with the unlabelled samples (label -1)
    left out, and how many were left out of each side.

    Pretraining may use unlabelled sequences (``data.protocol: all``, or label -1 in a split);
    evaluation needs labels on both sides. Raises ConfigError, saying what is missing, where there
    is no split or no labelled sequence on a side.
    """
    if protocol == "all" or protocol not in ds.protocols:
        known = ", ".join(ds.protocols) or "none"
        raise ConfigError(f"evaluation needs a labelled train/test split; dataset {ds.name!r} has no protocol "
                          f"{protocol!r} (known: {known}). `skelcl embed` writes the embeddings without one; "
                          "an npz file gives its split as train_idx / test_idx.")
    tr, te = ds.split(protocol)
    labels = np.asarray(ds.labels)
    keep = {side: idx[labels[idx] >= 0] for side, idx in (("train", tr), ("test", te))}
    skipped = {side: int(len(idx) - len(keep[side])) for side, idx in (("train", tr), ("test", te))}
    for side, idx in keep.items():
        if len(idx) == 0:
            raise ConfigError(f"evaluation needs labels: the {side} split of {ds.name!r} {protocol} has no labelled "
                              f"sequence ({skipped[side]} with label -1, unknown)")
    return keep["train"], keep["test"], skipped


def split_features(model: torch.nn.Module, ds: SkeletonDataset, protocol: str, probe: ProbeConfig,
                   device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frozen features (the probe's representation and readout options) of a protocol's train and
    test splits, labelled sequences only: (f_train, y_train, f_test, y_test)."""
    tr, te, _ = labelled_split(ds, protocol)
    f_tr, f_te = (encode(model, ds.x, ds.lengths, probe.representation, device=device, index=idx,
                         person_symmetric=probe.person_symmetric, both_directions=probe.both_directions)
                  for idx in (tr, te))
    return f_tr, ds.labels[tr], f_te, ds.labels[te]


def evaluate_model(model: torch.nn.Module, ds: SkeletonDataset, protocol: str, probe: ProbeConfig,
                   protocols: Sequence[str] = ("linear",), fractions: Sequence[float] = (0.01, 0.1, 0.5),
                   out_dir: str | Path | None = None, plots: bool = False, progress: bool = False,
                   device: torch.device | None = None, title: str = "",
                   copies: np.ndarray | None = None, augment: Any = None) -> dict[str, Any]:
    """Evaluate frozen (or, for ``semi``, fine-tuned) representations on one data protocol.

    ``augment``: the run's pretraining augmentation spec (``cfg.augment``); ``semi`` fine-tunes on it
    when ``probe.finetune_augment`` is set.

    ``copies``: the protocol's :func:`test_copy_mask` (one bool per test sequence), when the caller
    already has it; computing it hashes every sequence, so callers that evaluate the same protocol
    several times (a run and its baselines, a reproduce cell's representations) pass it once.
    """
    for p in protocols:
        if p not in PROTOCOLS:
            raise ConfigError(f"unknown evaluation protocol {p!r}; known: {', '.join(PROTOCOLS)}")
    res: dict[str, Any] = {"dataset": ds.name, "protocol": protocol, "representation": probe.representation}
    if "semi" in protocols:  # a bad fraction or missing epochs fail before any probe runs
        for frac in fractions:
            semi_epochs(frac, probe.finetune_epochs, probe.finetune_lr)
        if probe.finetune_augment and not augment:
            raise ConfigError("probe.finetune_augment is set but no augmentation was given to fine-tune with")
    tr, te, skipped = labelled_split(ds, protocol)
    if any(skipped.values()):
        res["unlabelled_skipped"] = skipped  # label -1: pretraining may use them, the probes cannot
    if copies is None:
        copies = test_copy_mask(ds, protocol, te)
    elif len(copies) != len(te):
        raise ValueError(f"copies has {len(copies)} entries for {len(te)} test sequences of {protocol!r}")
    if copies.any():
        res["test_copies"] = copies_record(ds, te, copies)
    t0 = time.perf_counter()
    needs_feats = any(p in ("linear", "knn") for p in protocols)
    if needs_feats:
        f_tr, y_tr, f_te, y_te = split_features(model, ds, protocol, probe, device)
        res["feature_dim"] = int(f_tr.shape[1])
        res["encode_seconds"] = time.perf_counter() - t0
    if "linear" in protocols:
        lin = linear_eval(f_tr, y_tr, f_te, y_te, probe, num_classes=ds.num_classes, progress=progress,
                          device=device)
        add_without_copies(lin, y_te, copies)
        res["linear"] = _strip(lin)
        # counts, rows = true class, columns = predicted (the figures behind confusion.png)
        res["linear"]["confusion"] = confusion(lin["pred"], y_te, ds.num_classes).tolist()
        pred, keep = np.asarray(lin["pred"]), ~copies
        if copies.any():
            res["linear"]["confusion_without_copies"] = confusion(pred[keep], y_te[keep], ds.num_classes).tolist()
        res["class_names"] = list(ds.class_names)
        if plots and out_dir is not None:
            out = Path(out_dir)
            plot_confusion(y_te, lin["pred"], out / "confusion.png", ds.class_names,
                           title=f"{title or ds.name} linear probe")
            if copies.any() and keep.any():
                plot_confusion(y_te[keep], pred[keep], out / "confusion-without-copies.png",
                               ds.class_names, title=f"{title or ds.name} linear probe, without the "
                                                     f"{int(copies.sum())} test copies")
            plot_tsne(f_te, y_te, out / "tsne.png", ds.class_names,
                      title=f"t-SNE of {probe.representation.upper()} features ({title or ds.name}, test split)",
                      marked=copies, marked_label="copy of a training sequence")
    if "knn" in protocols:
        kn = knn_eval(f_tr, y_tr, f_te, y_te, k=probe.knn_k, num_classes=ds.num_classes)
        add_without_copies(kn, y_te, copies)
        res["knn"] = _strip(kn)
    if "semi" in protocols:
        res["semi"] = {}
        for frac in fractions:
            r = semi_supervised_eval(model, ds.x, ds.lengths, ds.labels, tr, te, frac, cfg=probe,
                                     num_classes=ds.num_classes, epochs=probe.finetune_epochs,
                                     lr=probe.finetune_lr, seed=probe.seed, device=device,
                                     augment=augment if probe.finetune_augment else None,
                                     progress=progress)
            add_without_copies(r["step2"], ds.labels[te], copies)
            add_without_copies(r["step1"], ds.labels[te], copies)
            if "top1_without_copies" in r["step2"]:
                r["top1_without_copies"] = r["step2"]["top1_without_copies"]
            res["semi"][f"{frac:g}"] = _strip(r)
    res["seconds"] = time.perf_counter() - t0
    return res


def check_input_shape(model: torch.nn.Module, ds: SkeletonDataset, where: str = "checkpoint") -> None:
    """Refuse data whose frames do not have the encoder's M * V * C inputs, with both shapes named
    (a checkpoint trained on 25-joint NTU cannot read 15-joint SBU)."""
    enc = getattr(model, "encoder_q", model)
    want = int(getattr(enc, "input_dim", 0))
    m, v, c = ds.x.shape[2:]
    if want and want != m * v * c:
        raise ConfigError(f"{where}: the encoder takes {want} inputs per frame; {ds.name} gives M x V x C = "
                          f"{m} x {v} x {c} = {m * v * c} (persons x joints x coords). Use data with the "
                          "layout and data.preprocess.persons the encoder was trained with.")


def _load_for(path: str | Path, dataset: str | None, root: str | None, data_protocol: str | None,
              overrides: Sequence[str]) -> tuple[ContrastiveLearner, Config, SkeletonDataset, torch.device]:
    """A checkpoint, its config with data overrides applied, the data it names, and the device."""
    learner, cfg = load_checkpoint(path)
    data = {k: v for k, v in (("dataset", dataset), ("root", root), ("protocol", data_protocol)) if v}
    cfg = config_from_dict(apply_overrides(merge(cfg.to_dict(), {"data": data}), overrides))
    if not root and cfg.data.root and not Path(cfg.data.root).expanduser().exists():  # a run from another machine
        raise ConfigError(f"{path}: the run read its data from {cfg.data.root}, which is not here; give --root PATH "
                          f"(this machine's copy of the {cfg.data.dataset} data)")
    device = resolve_device(cfg.train.device)
    apply_threads(cfg)
    ds = load_data(cfg)
    check_input_shape(learner, ds, str(path))
    return learner, cfg, ds, device


def embed_checkpoint(path: str | Path, out_file: str | Path, dataset: str | None = None, root: str | None = None,
                     data_protocol: str | None = None, overrides: Sequence[str] = (),
                     progress: bool = True, tsne: str | Path | None = None) -> dict[str, Any]:
    """``skelcl embed``: the frozen encoder's action embedding of every sequence, saved as one .npz.

    The representation and readout options are the run's ``probe`` settings (``--set
    probe.representation=cae`` changes them), so the file holds exactly what the linear probe sees,
    before its standardisation. The .npz (no pickles) has ``features`` (N, E) float32, ``labels``
    (N,), ``lengths`` (N,), ``class_names``, each per-sample meta array as ``meta_<key>`` (name,
    subject, view, ...), each protocol's ``<protocol>_train`` / ``<protocol>_test`` indices, and
    ``info``, a JSON string (representation, dataset, checkpoint, config, git commit).

    ``tsne``: also draw a t-SNE of every embedding to this PNG, coloured by class (unlabelled grey).
    Returns that info dict, with ``features_shape`` and ``file`` (and ``tsne``).
    """
    out = Path(out_file)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: embeddings are written as .npz; give a file name ending in .npz")
    learner, cfg, ds, device = _load_for(path, dataset, root, data_protocol, overrides)
    t0 = time.perf_counter()
    probe = cfg.probe
    feats = encode(learner.to(device), ds.x, ds.lengths, probe.representation, device=device, progress=progress,
                   person_symmetric=probe.person_symmetric, both_directions=probe.both_directions)
    info = {"representation": probe.representation, "person_symmetric": probe.person_symmetric,
            "both_directions": probe.both_directions, "dataset": ds.name, "checkpoint": str(path),
            "features_shape": list(feats.shape), "encode_seconds": time.perf_counter() - t0, **provenance(cfg)}
    arrays: dict[str, np.ndarray] = {"features": feats.astype(np.float32), "labels": np.asarray(ds.labels),
                                     "lengths": np.asarray(ds.lengths),
                                     "class_names": np.asarray(ds.class_names, dtype=str)}
    for k, v in ds.meta.items():
        v = np.asarray(v)
        arrays[f"meta_{k}"] = v.astype(str) if v.dtype == object else v
    for name, (tr, te) in ds.protocols.items():
        arrays[f"{name}_train"], arrays[f"{name}_test"] = np.asarray(tr), np.asarray(te)
    arrays["info"] = np.asarray(json.dumps(_jsonable(info)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, ".npz") as tmp:
        np.savez(tmp, **arrays)
    done = {**info, "file": str(out)}
    if tsne is not None:
        done["tsne"] = str(plot_tsne(feats, np.asarray(ds.labels), tsne, ds.class_names,
                                     title=f"t-SNE of {probe.representation.upper()} embeddings ({ds.name}, "
                                           f"{len(feats)} sequences)"))
    return done


def _run_dir(path: str | Path) -> Path:
    return Path(path) if Path(path).is_dir() else Path(path).parent


# overrides that set how the work runs, not what it computes: left out of evaluation folder names
_RUNTIME_ONLY = frozenset({"train.threads", "train.tensorboard"})


def evaluation_dir(path: str | Path, label: str, settings: Sequence[str] = ()) -> Path:
    """Default output folder of a re-evaluation: ``RUN/evaluations/<label>[__<settings>]``.

    A run's own ``results.json`` and plots hold the figures it was made with; re-probing it (another
    representation, another split) must not overwrite them. The folder name is deterministic (the
    protocol and the ``--set``/data settings, readable), so the same evaluation lands in the same
    place; names longer than 120 characters are cut and keep a short hash of the whole. Settings
    of how the work runs, not what it computes (``train.threads``, ``train.tensorboard``), are left
    out of the name.
    """
    settings = [s for s in settings if s.split("=", 1)[0].strip() not in _RUNTIME_ONLY]
    name = bounded_slug("__".join([label, *settings]), "evaluation", fill="_", keep=",")
    return _run_dir(path) / "evaluations" / name


def _root_tag(root: str | Path) -> str:
    """``<folder name>-<6 hex of the absolute path>``: readable, and two data folders that share a
    name (``a/nucla``, ``b/nucla``) get different evaluation folders."""
    full = str(Path(root).expanduser().resolve())
    return f"{Path(full).name}-{hashlib.sha1(full.encode()).hexdigest()[:6]}"


def evaluate_checkpoint(path: str | Path, protocols: Sequence[str] = ("linear",), dataset: str | None = None,
                        root: str | None = None, data_protocol: str | None = None,
                        overrides: Sequence[str] = (), out_dir: str | Path | None = None,
                        fractions: Sequence[float] = (0.01, 0.1, 0.5), progress: bool = True) -> dict[str, Any]:
    """``skelcl evaluate``: load a run's checkpoint and evaluate it on (by default) its own data.

    Writes ``results.json`` (and the t-SNE / confusion PNGs) to ``out_dir``, by default
    :func:`evaluation_dir` inside the run folder, never over the run's own files. The returned dict
    names that folder in ``out_dir``.
    """
    learner, cfg, ds, device = _load_for(path, dataset, root, data_protocol, overrides)
    if out_dir is None:
        data = [f"{k}={v}" for k, v in (("dataset", dataset), ("root", _root_tag(root) if root else None),
                                        ("split", data_protocol)) if v]
        out_dir = evaluation_dir(path, "+".join(protocols), [*data, *overrides])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = evaluate_model(learner.to(device), ds, cfg.data.protocol, cfg.probe, protocols, fractions,
                         out_dir=out, plots=True, progress=progress, device=device, title=cfg.name,
                         augment=cfg.augment)
    res.update(provenance(cfg))
    res["checkpoint"] = str(path)
    res["out_dir"] = str(out)
    write_json(out / "results.json", res)
    return res


@dataclass
class Member:
    """One run of a multi-run evaluation: its config (overrides applied), its dataset view, and its
    frozen features of the labelled split, train (N_tr, E) and test (N_te, E), in the run's own
    preprocessing and readout."""

    path: str
    cfg: Config
    ds: SkeletonDataset
    device: torch.device
    f_tr: np.ndarray
    y_tr: np.ndarray
    f_te: np.ndarray
    y_te: np.ndarray
    copies: np.ndarray


def member_features(paths: Sequence[str | Path], overrides: Sequence[str] = (), what: str = "an ensemble"
                    ) -> Iterator[Member]:
    """Each run's frozen features of its labelled split, one run at a time (for ensembles and
    side-by-side probes). Every run keeps its own preprocessing, encoder and readout; ``overrides``
    apply to all of them. Runs with the same data settings share one read of the dataset. A run whose
    test split is not the first run's (checked on the labels) is refused with a :class:`ConfigError`."""
    distinct_runs(paths, what)
    for path in paths:  # a missing or unreadable run fails before any other is encoded and probed
        read_checkpoint(path, config_only=True)
    y_ref: np.ndarray | None = None
    datasets: dict[str, SkeletonDataset] = {}
    for path in paths:
        learner, cfg = load_checkpoint(path)
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), overrides))
        key = json.dumps(_jsonable(cfg.to_dict()["data"]), sort_keys=True)
        if key not in datasets:
            datasets[key] = load_data(cfg)
        ds = datasets[key]
        check_input_shape(learner, ds, str(path))
        device = resolve_device(cfg.train.device)
        apply_threads(cfg)
        f_tr, y_tr, f_te, y_te = split_features(learner.to(device), ds, cfg.data.protocol, cfg.probe, device)
        if y_ref is None:
            y_ref = y_te
        elif y_te.shape != y_ref.shape or not np.array_equal(y_te, y_ref):
            raise ConfigError(f"{path}: its test split ({ds.name} {cfg.data.protocol}, {len(y_te)} sequences) "
                              f"differs from the first run's; ensemble runs of the same data and split")
        copies = test_copy_mask(ds, cfg.data.protocol, labelled_split(ds, cfg.data.protocol)[1])
        yield Member(str(path), cfg, ds, device, f_tr, y_tr, f_te, y_te, copies)


def combine_scores(logits: Sequence[np.ndarray], y: np.ndarray, copies: np.ndarray) -> dict[str, dict[str, Any]]:
    """Several linear probes' test scores (R x (N, C) logits, one per run) combined two ways.

    ``ensemble``: their softmaxes averaged (R networks at test time). ``logit_average``: their logits
    averaged, which is still one linear classifier, on the runs' features side by side
    (:func:`skelcl.probe.combined_classifier`). Each gets top-1/top-5 on labels ``y`` (N,) and, when
    ``copies`` (N,) bool marks any test sequence that copies a training one, top-1 without those.
    """
    probs = np.mean([torch.softmax(torch.as_tensor(s), 1).numpy() for s in logits], 0)
    res: dict[str, dict[str, Any]] = {}
    for name, scores, rule in (("ensemble", probs, "mean of the members' softmax"),
                               ("logit_average", np.mean(logits, 0), "mean of the members' logits: one linear "
                                                                     "classifier on their features side by side")):
        top1, top5 = topk_accuracy(scores, y, (1, 5))
        res[name] = {"top1": top1, "top5": top5, "rule": rule}
        if copies.any():
            comb = {"pred": scores.argmax(1)}
            add_without_copies(comb, y, copies)
            res[name]["top1_without_copies"] = comb.get("top1_without_copies", float("nan"))
    return res


def evaluate_ensemble(paths: Sequence[str | Path], out_dir: str | Path | None = None,
                      overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Linear probes of several pretrained encoders on the same data split, their softmax averaged.

    Each run keeps its own preprocessing, encoder and probe settings (a position stream and a
    velocity stream, say); ``overrides`` apply to every run (``probe.weight_decay=0.01``). All runs
    must cover the same test sequences in the same order, which is checked on the labels. Members
    with the same data settings share one read of the dataset.
    Returns (and writes to ``out_dir/ensemble.json``; by default :func:`evaluation_dir` of the first
    run, named after the other members) each member's top-1/top-5 and the ensemble's. Beside it,
    ``logit_average``: the members' logits averaged instead of their softmaxes, which is still one
    linear classifier, on the members' features side by side (:func:`skelcl.probe.combined_classifier`).
    """
    if len(paths) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    members: list[dict[str, Any]] = []
    logits: list[np.ndarray] = []
    cfg0: Config | None = None
    y_ref: np.ndarray | None = None
    copies_any: np.ndarray | None = None
    for m in member_features(paths, overrides):
        cfg0 = cfg0 or m.cfg
        y_ref = m.y_te
        lin = linear_eval(m.f_tr, m.y_tr, m.f_te, m.y_te, m.cfg.probe, num_classes=m.ds.num_classes, device=m.device)
        add_without_copies(lin, m.y_te, m.copies)
        # a test sequence any member has seen as a training input is left out of the ensemble's figure
        copies_any = m.copies if copies_any is None else copies_any | m.copies
        logits.append(np.asarray(lin["scores"]))
        last = m
        members.append({"run": m.path, "dataset": m.ds.name, "protocol": m.cfg.data.protocol,
                        "representation": m.cfg.probe.representation, "top1": lin["top1"], "top5": lin["top5"],
                        **{k: lin[k] for k in ("top1_without_copies",) if k in lin}})
    assert y_ref is not None and cfg0 is not None and copies_any is not None
    res: dict[str, Any] = {"dataset": members[0]["dataset"], "protocol": members[0]["protocol"], "members": members}
    res.update(combine_scores(logits, y_ref, copies_any))
    if copies_any.any():
        res["test_copies"] = copies_record(last.ds, labelled_split(last.ds, last.cfg.data.protocol)[1], copies_any)
    res.update(provenance(cfg0))
    res.pop("config")
    res["overrides"] = list(overrides)
    out = Path(out_dir) if out_dir else evaluation_dir(paths[0], "ensemble", [str(_run_dir(p)) for p in paths[1:]]
                                                        + list(overrides))
    res["out_dir"] = str(out)
    write_json(out / "ensemble.json", res)
    return res


def random_encoder(cfg: Config, input_dim: int, persons: int = 1) -> SequenceEncoder:
    """An untrained encoder of the same architecture (the baseline every trained encoder must beat)."""
    torch.manual_seed(cfg.train.seed)
    return build_encoder(input_dim, cfg.model, persons=persons)


def run(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
        baselines: bool = True, protocols: Sequence[str] = ("linear", "knn"),
        dataset: SkeletonDataset | None = None) -> dict[str, Any]:
    """``skelcl run``: pretrain, then evaluate; with ``baselines`` the random encoder and raw input too."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    resume = resume and (out / "checkpoint.pt").exists()
    if protocols or resume:
        dataset = dataset if dataset is not None else load_data(cfg)
    if protocols:  # an evaluation that cannot run should fail before the pretraining, not after
        labelled_split(dataset, cfg.data.protocol)
    if resume:  # the run goes on with its saved config: refuse one that asks for other settings
        check_resume(cfg, out, dataset)
    pre = pretrain(cfg, out, resume=resume, progress=progress, dataset=dataset, data_root=cfg.data.root,
                   device=cfg.train.device, teachers=cfg.distill.teachers)
    cfg = pre.config
    ds = pre.dataset
    device = resolve_device(cfg.train.device)
    t1 = time.perf_counter()
    tr, te, _ = labelled_split(ds, cfg.data.protocol)
    copies = test_copy_mask(ds, cfg.data.protocol, te)  # once for the run and its baselines
    res = evaluate_model(pre.learner, ds, cfg.data.protocol, cfg.probe, protocols, out_dir=out, plots=True,
                         progress=False, device=device, title=cfg.name, copies=copies, augment=cfg.augment)
    res["pretrain_seconds"] = t1 - t0
    res["final_loss"] = pre.metrics[-1]["loss"] if pre.metrics else None
    if baselines:
        input_dim = int(np.prod(ds.x.shape[2:]))
        # a bare encoder has no key encoder: key readouts fall back to their query counterparts
        rep = cfg.probe.representation
        rnd_probe = replace(cfg.probe, representation={"cae+": "cae", "k": "cae", "last_k": "last_q"}.get(rep, rep))
        rnd_protocols = ("linear", "knn") if "knn" in protocols else ("linear",)
        rnd = evaluate_model(random_encoder(cfg, input_dim, int(ds.x.shape[2])), ds, cfg.data.protocol, rnd_probe,
                             rnd_protocols, device=device, copies=copies)
        raw = logistic_baseline(ds.x[tr].reshape(len(tr), -1), ds.labels[tr], ds.x[te].reshape(len(te), -1),
                                ds.labels[te], seed=cfg.train.seed)
        add_without_copies(raw, ds.labels[te], copies)
        res["baselines"] = {"random_encoder": {p: rnd[p] for p in rnd_protocols},
                            "raw_input_logistic": _strip(raw)}
    res["seconds"] = time.perf_counter() - t0
    res.update(provenance(cfg))
    write_json(out / "results.json", res)
    return res


def probe_spread_rows(lin: dict[str, Any], what: str = "one probe") -> list[list[object]]:
    """Table rows showing how far a single probe of a ``probe.restarts`` > 1 evaluation varied
    (none for a single probe): the averaged classifier's figure alone hides that spread."""
    single = lin.get("restarts_top1") or []
    if len(single) < 2:
        return []
    return [[f"{what} of the {len(single)} averaged: mean (min-max)",
             f"{np.mean(single):.1f} ({min(single):.1f}-{max(single):.1f})", ""]]


def format_run_summary(res: dict[str, Any]) -> str:
    """A small table: trained encoder vs random encoder vs raw input; with a column of top-1 on the
    test sequences that are not copies of training sequences when the split has such copies."""
    copies = res.get("test_copies")
    entries: list[tuple[str, dict[str, Any] | None, list[list[object]]]] = []
    lin = res.get("linear")
    if lin:
        entries.append(("trained encoder (linear probe)", lin, probe_spread_rows(lin, "  one probe")))
    if "knn" in res:
        entries.append((f"trained encoder (kNN, k={res['knn'].get('k', '')})", res["knn"], []))
    b = res.get("baselines", {})
    if "random_encoder" in b:
        entries.append(("random encoder (linear probe)", b["random_encoder"]["linear"], []))
        if "knn" in b["random_encoder"]:
            r = b["random_encoder"]["knn"]
            entries.append((f"random encoder (kNN, k={r.get('k', '')})", r, []))
    if "raw_input_logistic" in b:
        entries.append(("raw coordinates (logistic regression)", b["raw_input_logistic"], []))
    header = ["representation", "top-1 %", "top-5 %"]
    if copies:
        header.append(f"top-1 % without the {copies['count']} copies")
    rows: list[list[object]] = []
    for name, r, extra in entries:
        assert r is not None
        row: list[object] = [name, r["top1"], r.get("top5", float("nan"))]
        if copies:
            row.append(r.get("top1_without_copies", "—"))
        rows.append(row)
        rows += [e + [""] * (len(header) - len(e)) for e in extra]
    table = markdown_table(header, rows)
    if copies:
        table += "\n\n" + copies_footnote(copies)
    skipped = res.get("unlabelled_skipped")
    if skipped:
        table += (f"\n\n{skipped['train']} training and {skipped['test']} test sequences are unlabelled (-1): "
                  "left out of the probes (pretraining used them where its split holds them).")
    return table


def demo(out_dir: str | Path = "runs/demo", overrides: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
    """The README's main job: pretrain on the embedded synthetic set and evaluate, in a few minutes on a CPU."""
    cfg = load_config("synthetic", list(overrides))
    res = run(cfg, out_dir, progress=progress)
    return res


__all__ = ["demo", "embed_checkpoint", "check_input_shape", "labelled_split", "evaluate_checkpoint",
           "evaluate_ensemble", "evaluation_dir", "evaluate_model", "run", "format_run_summary", "write_json",
           "test_copy_mask", "copies_record", "copies_footnote", "add_without_copies",
           "provenance", "random_encoder", "ContrastiveLearner"]
