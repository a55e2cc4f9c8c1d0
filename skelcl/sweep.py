"""Sweeps: the paper's ablations as grids of runs, resumable and parallel.

A sweep spec (YAML; bundled ones in ``configs/sweeps/``) names a base config and what to vary::

    base: sbu                       # a bundled config name or a path (relative to the spec or cwd)
    set: {optim.epochs: 100}        # applied to every point (dotted keys; list items as augment.0)
    axes:                           # the grid: the cartesian product of the values, in this order
      model.layers: [1, 2, 3]
      model.hidden: [64, 128, 256]
    # or: points: [{contrast.paradigm: queue, K: 64, contrast.queue_size: 64}, ...]
    labels: [K]                     # point keys that only label points (not config keys)
    seeds: [0]
    folds: [fold1, fold2, fold3, fold4, fold5]   # each sets data.protocol; averaged in the table
    eval: {representations: [cae, last_q], protocols: [linear, knn]}
    figure: [line, curves]          # line | heatmap | matrix | curves (default: from the axes)
    x: model.hidden                 # the x axis of a line plot (default: the first shown axis)
    x_scale: log                    # linear | log | category (default: log when values span >= 20x)
    show: [model.layers]            # the axes shown in the table and figures (default: those that vary)
    baselines: true                 # linear probe of a randomly initialised encoder per run

Each (point, seed, fold) is one run (pretraining, then the linear probe and kNN for every listed
representation, then the random-encoder baseline) in its own folder
``OUT/<point slug>/<fold>-seed<seed>/``. A run is finished when its ``results.json`` exists, so a
killed sweep resumes where it stopped: finished runs are skipped and a run killed mid-pretraining
continues from its last checkpoint. Runs are ordered seed-major, then fold, then point, so a sweep
cut short still has a complete first (seed, fold) slice. ``jobs > 1`` runs them in that many
spawned processes, each limited to ``max(1, cores // jobs)`` torch threads.

The table (``table.md``, ``table.csv``) is rebuilt from every run's ``results.json``: one row per
point (and evaluated representation) with every axis value, top-1 / top-5 of the linear probe as
mean +- std, kNN top-1, the random-encoder top-1, the final loss, finished runs and wall time. With
several seeds, folds are averaged per seed first and the std is over seeds; with a single seed the
std is over folds (population std, as ``skelcl reproduce``). Figures: ``accuracy.png`` (a line plot
for one axis, bars for categorical values, a heatmap for two, the augmentation-pair matrix with row
means) and ``loss_curves.png`` (each point's pretraining loss, averaged over its runs).
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import yaml

from .config import (CONFIG_DIR, config_diff, config_from_dict, diff_summary, find_file, load_config, load_yaml, merge,
                     resolve_config_path, split_override)
from .errors import ConfigError, SkelclError
from .report import bounded_slug, wrapped_title
from .store import atomic_write

SPEC_DIR = CONFIG_DIR / "sweeps"
SPEC_KEYS = ("name", "description", "base", "set", "axes", "points", "labels", "show", "x", "x_scale", "seeds",
             "folds", "figure", "eval", "baselines")
FIGURES = ("line", "heatmap", "matrix", "curves")
X_SCALES = ("linear", "log", "category")
REPRESENTATION_AXIS = "probe.representation"
RESULTS = "results.json"


# --- values, keys, slugs -------------------------------------------------------------------------------
def format_value(v: Any) -> str:
    """A short readable form of an axis value: ``0.999``, ``reverse+shear``, ``shear(amplitude=0.5)``."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(format_value(i) for i in v) if v else "none"
    if isinstance(v, dict):
        if len(v) == 1:
            (k, p), = v.items()
            if isinstance(p, dict):
                return f"{k}(" + ",".join(f"{a}={format_value(b)}" for a, b in p.items()) + ")"
        return ",".join(f"{a}={format_value(b)}" for a, b in v.items())
    return str(v)


def short_key(key: str, keys: Sequence[str] = ()) -> str:
    """``model.hidden`` -> ``hidden`` unless another key in ``keys`` ends the same; ``augment.0`` stays."""
    parts = key.split(".")
    if len(parts) == 1 or parts[-1].isdigit():
        return key
    last = parts[-1]
    if sum(1 for k in keys if k.split(".")[-1] == last) > 1:
        return key
    return last


def point_slug(point: dict[str, Any], keys: Sequence[str]) -> str:
    """A stable folder name from a point's axis values, e.g. ``layers=2_hidden=128``."""
    if not point:
        return "base"
    text = "_".join(f"{short_key(k, keys)}={format_value(point[k]) if point[k] is not None else 'none'}"
                    for k in keys if k in point)
    return bounded_slug(text, "base")


def set_dotted(data: dict[str, Any], key: str, value: Any, where: str = "sweep") -> None:
    """Set ``data[a][b]... = value`` for ``key = "a.b..."``; integer parts index lists (``augment.0``).

    A mapping merges into an existing mapping (as ``--set`` does); anything else replaces.
    """
    parts = key.split(".")
    if not key or any(p == "" for p in parts):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key")
    node: Any = data
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not p.isdigit():
                raise ConfigError(f"{where}: {'.'.join(parts[:i])} is a list; {key!r} needs an index there")
            idx = int(p)
            if idx > len(node):
                raise ConfigError(f"{where}: {key!r}: index {idx} is past the end of a list of {len(node)}")
            if last:
                if idx == len(node):
                    node.append(copy.deepcopy(value))
                else:
                    node[idx] = copy.deepcopy(value)
                return
            node = node[idx]
        elif isinstance(node, dict):
            if last:
                if isinstance(value, dict) and isinstance(node.get(p), dict):
                    node[p] = merge(node[p], copy.deepcopy(value))
                else:
                    node[p] = copy.deepcopy(value)
                return
            if p not in node or node[p] is None:
                node[p] = {}
            node = node[p]
        else:
            raise ConfigError(f"{where}: {key!r}: {'.'.join(parts[:i])} holds {node!r}, not a mapping or list")


# --- the spec ---------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A parsed sweep spec (see the module docstring for the YAML)."""

    name: str
    base: str
    points: list[dict[str, Any]]
    axis_keys: list[str]
    path: Path | None = None
    description: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    grid: bool = True
    labels: list[str] = field(default_factory=list)
    show: list[str] | None = None
    x: str | None = None
    x_scale: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    folds: list[str] | None = None
    figures: list[str] = field(default_factory=list)
    representations: list[str] | None = None
    protocols: list[str] = field(default_factory=lambda: ["linear", "knn"])
    baselines: bool = True


def resolve_spec_path(spec: str | Path) -> Path:
    """A spec file path, or the name of a bundled spec (``sbu-momentum`` -> configs/sweeps/sbu-momentum.yaml)."""
    found = find_file(spec, SPEC_DIR)
    if found:
        return found
    raise ConfigError(f"sweep spec {str(spec)!r} not found (a YAML file, or one of the bundled specs: "
                      f"{', '.join(s for s, _ in list_specs())}; `skelcl sweep --list` describes them)")


def _first_comment(text: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip()
        if s:
            break
    return ""


def list_specs() -> list[tuple[str, str]]:
    """Bundled specs as (name, first comment line)."""
    return [(p.stem, _first_comment(p.read_text())) for p in sorted(SPEC_DIR.glob("*.yaml"))]


def _need(ok: bool, where: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {msg}")


def _str_list(v: Any, where: str, what: str) -> list[str]:
    if isinstance(v, str):
        v = [s.strip() for s in v.split(",") if s.strip()]
    _need(isinstance(v, list) and all(isinstance(s, str) for s in v) and len(v) > 0, where,
          f"{what} must be a non-empty list of names, got {v!r}")
    return list(v)


def parse_spec(data: dict[str, Any], path: Path | None = None, name: str | None = None) -> SweepSpec:
    """Validate a spec mapping (as read from YAML) and expand its points."""
    where = str(path) if path else "sweep spec"
    _need(isinstance(data, dict), where, "expected a mapping at the top level")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    _need(not unknown, where, f"unknown key(s) {unknown}; known: {', '.join(SPEC_KEYS)}")
    base = data.get("base")
    _need(isinstance(base, str) and base != "", where, "needs `base:` (a bundled config name such as sbu, or a path)")
    sets = data.get("set") or {}
    _need(isinstance(sets, dict), where, f"`set:` must map dotted keys to values, got {sets!r}")
    labels = _str_list(data["labels"], where, "labels") if data.get("labels") else []
    axes = data.get("axes")
    plist = data.get("points")
    _need(not (axes and plist), where, "give `axes:` (a grid) or `points:` (a list), not both")
    points: list[dict[str, Any]]
    keys: list[str] = []
    if axes:
        _need(isinstance(axes, dict), where, f"`axes:` must map dotted keys to lists of values, got {axes!r}")
        for k, vals in axes.items():
            _need(isinstance(k, str), where, f"axis name {k!r} must be a string")
            _need(isinstance(vals, list) and len(vals) > 0, where, f"axis {k!r} must be a non-empty list of values")
            strs = [json.dumps(v, sort_keys=True, default=str) for v in vals]
            _need(len(set(strs)) == len(strs), where, f"axis {k!r} repeats a value")
        keys = list(axes)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*axes.values())]
    elif plist is not None:
        _need(isinstance(plist, list) and plist and all(isinstance(p, dict) for p in plist), where,
              "`points:` must be a non-empty list of mappings {dotted.key: value}")
        points = [dict(p) for p in plist]
        for p in points:
            keys += [k for k in p if k not in keys]
    else:
        points = [{}]
    for k in list(keys) + list(sets):
        _need(isinstance(k, str) and k != "", where, f"key {k!r} must be a dotted config key")
    clash = sorted(set(keys) & set(sets))
    _need(not clash, where, f"{clash} are both in `set:` and varied by the sweep")
    bad_labels = sorted(set(labels) - set(keys))
    _need(not bad_labels, where, f"labels {bad_labels} are not keys of any point")
    slugs = [point_slug(p, keys) for p in points]
    dup = sorted({s for s in slugs if slugs.count(s) > 1})
    _need(not dup, where, f"two points have the same values: {dup}")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    _need(isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                    for s in seeds), where,
          f"`seeds:` must be a list of integers >= 0, got {seeds!r}")
    _need(len(set(seeds)) == len(seeds), where, "`seeds:` repeats a seed")
    folds = _str_list(data["folds"], where, "folds") if data.get("folds") is not None else None
    if folds:
        _need(len(set(folds)) == len(folds), where, "`folds:` repeats a fold")
        _need("data.protocol" not in keys and "data.protocol" not in sets, where,
              "`folds:` sets data.protocol; do not also vary or set data.protocol")
    fig = data.get("figure") or []
    figures = [fig] if isinstance(fig, str) else fig
    _need(isinstance(figures, list) and all(f in FIGURES for f in figures), where,
          f"`figure:` must be one or more of {', '.join(FIGURES)}, got {fig!r}")
    ev = data.get("eval") or {}
    _need(isinstance(ev, dict) and not (set(ev) - {"representations", "protocols"}), where,
          f"`eval:` takes representations and protocols, got {ev!r}")
    reps = None
    if ev.get("representations") is not None:
        from .probe import REPRESENTATIONS

        reps = _str_list(ev["representations"], where, "eval.representations")
        bad = [r for r in reps if r not in REPRESENTATIONS]
        _need(not bad, where, f"unknown representation(s) {bad}; known: {', '.join(REPRESENTATIONS)}")
        _need(REPRESENTATION_AXIS not in keys and REPRESENTATION_AXIS not in sets, where,
              "eval.representations evaluates each run with several representations; do not also vary "
              f"{REPRESENTATION_AXIS}")
    protocols = _str_list(ev.get("protocols", ["linear", "knn"]), where, "eval.protocols")
    _need("linear" in protocols and set(protocols) <= {"linear", "knn"}, where,
          f"eval.protocols must include linear and may add knn, got {protocols!r}")
    all_keys = keys + ([REPRESENTATION_AXIS] if reps else [])
    show = _str_list(data["show"], where, "show") if data.get("show") is not None else None
    if show:
        bad = [k for k in show if k not in all_keys]
        _need(not bad, where, f"show: {bad} are not sweep axes ({', '.join(all_keys) or 'none'})")
    x = data.get("x")
    _need(x is None or x in all_keys, where, f"x: {x!r} is not a sweep axis ({', '.join(all_keys) or 'none'})")
    x_scale = data.get("x_scale")
    _need(x_scale is None or x_scale in X_SCALES, where, f"x_scale must be one of {', '.join(X_SCALES)}")
    baselines = data.get("baselines", True)
    _need(isinstance(baselines, bool), where, f"baselines must be true or false, got {baselines!r}")
    desc = data.get("description") or (_first_comment(path.read_text()) if path else "")
    nm = data.get("name") or name or (path.stem if path else "sweep")
    _need(isinstance(nm, str) and re.fullmatch(r"[A-Za-z0-9._+=-]+", nm) is not None, where,
          f"name {nm!r} must be a plain word (letters, digits, . _ + = -)")
    return SweepSpec(name=nm, base=base, points=points, axis_keys=keys, path=path, description=str(desc),
                     set=dict(sets), grid=bool(axes), labels=labels, show=show, x=x, x_scale=x_scale,
                     seeds=list(seeds), folds=folds, figures=list(figures), representations=reps,
                     protocols=protocols, baselines=baselines)


def load_spec(spec: str | Path | dict[str, Any]) -> SweepSpec:
    """Read and validate a spec: a YAML path, a bundled spec name, or an already loaded mapping."""
    if isinstance(spec, dict):
        return parse_spec(spec)
    path = resolve_spec_path(spec)
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_spec(data, path)


# --- tasks --------------------------------------------------------------------------------------------------
@dataclass
class Task:
    """One (point, seed, fold): a run folder and the resolved config dict it runs with."""

    point_index: int
    point: dict[str, Any]
    slug: str
    seed: int
    fold: str | None
    dir: Path
    config: dict[str, Any]
    representations: list[str]
    protocols: list[str]
    baselines: bool

    @property
    def run_name(self) -> str:
        return f"{self.fold}-seed{self.seed}" if self.fold else f"seed{self.seed}"

    @property
    def results_path(self) -> Path:
        return self.dir / RESULTS

    def describe(self) -> str:
        return f"{self.slug}/{self.run_name}"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_sets(overrides: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", ...]`` -> ``{"optim.lr": 0.1}`` (values parsed as YAML)."""
    return dict(split_override(text) for text in overrides)


def _base_path(spec: SweepSpec) -> Path:
    if spec.path is not None and not Path(spec.base).is_absolute():
        rel = spec.path.parent / spec.base
        if rel.is_file():
            return rel
    return resolve_config_path(spec.base)


def _check_protocol(cfg: Any, where: str) -> None:
    from .formats import FORMATS, _ensure_registered

    _ensure_registered()
    info = FORMATS.get(cfg.data.dataset)
    if info is None:
        raise ConfigError(f"{where}: unknown dataset format {cfg.data.dataset!r}; known: {', '.join(sorted(FORMATS))}")
    p = cfg.data.protocol
    if info.protocols and p not in info.protocols and p != "all":
        raise ConfigError(f"{where}: dataset {cfg.data.dataset!r} has no protocol {p!r}; "
                          f"known: {', '.join(info.protocols)}")


def build_tasks(spec: SweepSpec, out_dir: str | Path, overrides: Sequence[str] = (), root: str | None = None,
                seeds: Sequence[int] | None = None, folds: Sequence[str] | None = None,
                limit_epochs: int | None = None, jobs: int = 1) -> list[Task]:
    """Every run of the sweep, resolved and validated, in run order (seed, fold, point).

    Args:
        overrides: ``KEY=VALUE`` applied to every point after the spec's ``set:`` (not to axis keys).
        root: the dataset folder (``data.root``).
        seeds, folds: run only these (subsets or replacements of the spec's).
        limit_epochs: a cheap pass: ``optim.epochs`` becomes this and the lr milestones and
            ``optim.warmup`` scale with it (a milestone that lands on the last epoch or beyond is dropped:
            the schedule would never reach it).
        jobs: parallel processes; sets ``train.threads = max(1, cores // jobs)`` unless the config sets it.
    """
    out = Path(out_dir)
    cli = parse_sets(overrides)
    clash = sorted(set(cli) & set(spec.axis_keys))
    if clash:
        raise ConfigError(f"--set {', '.join(clash)}: varied by the sweep; edit the spec instead")
    if spec.folds and "data.protocol" in cli:
        raise ConfigError("--set data.protocol: the spec's folds set it; use --folds instead")
    if root:
        cli["data.root"] = root
    base = load_config(_base_path(spec)).to_dict()
    seeds = list(spec.seeds if seeds is None else seeds)
    run_folds: list[str | None] = list(folds) if folds else (list(spec.folds) if spec.folds else [None])
    if folds and not spec.folds and "data.protocol" in spec.axis_keys:
        raise ConfigError("--folds: this spec varies data.protocol as an axis; it has no folds")
    threads = max(1, _cores() // max(1, jobs))
    where = str(spec.path or spec.name)
    tasks: list[Task] = []
    resolved: list[dict[str, Any]] = []
    for i, point in enumerate(spec.points):
        d = copy.deepcopy(base)
        for k, v in spec.set.items():
            set_dotted(d, k, v, f"{where}: set")
        for k, v in cli.items():
            set_dotted(d, k, v, "--set")
        slug = point_slug(point, spec.axis_keys)
        for k, v in point.items():
            if k not in spec.labels:
                set_dotted(d, k, v, f"{where}: point {slug}")
        if limit_epochs is not None:
            if limit_epochs < 1:
                raise ConfigError(f"--limit-epochs must be >= 1, got {limit_epochs}")
            full = d["optim"]["epochs"]
            warm = d["optim"].get("warmup", 0)
            if warm:  # at least one warm-up epoch and one after it (none in a one-epoch pass)
                warm = d["optim"]["warmup"] = min(limit_epochs - 1, max(1, round(warm * limit_epochs / full)))
            scaled = {max(warm + 1, round(m * limit_epochs / full)) for m in d["optim"]["milestones"] if m < full}
            d["optim"]["milestones"] = sorted(m for m in scaled if m < limit_epochs)  # (the end: never reached)
            d["optim"]["epochs"] = limit_epochs
        if not d["train"].get("threads"):
            d["train"]["threads"] = threads
        resolved.append(d)
        try:
            config_from_dict(d)
        except ConfigError as exc:
            raise ConfigError(f"{where}: point {slug}: {exc}") from None
    for seed in seeds:
        for fold in run_folds:
            for i, point in enumerate(spec.points):
                d = copy.deepcopy(resolved[i])
                slug = point_slug(point, spec.axis_keys)
                if fold is not None:
                    d["data"]["protocol"] = fold
                d["train"]["seed"] = seed
                d["probe"]["seed"] = seed
                d["name"] = f"{spec.name}-{slug}"
                cfg = config_from_dict(d)
                _check_protocol(cfg, f"{where}: point {slug}")
                reps = spec.representations or [cfg.probe.representation]
                if cfg.contrast.paradigm != "queue":
                    bad = [r for r in reps if r in ("k", "cae+", "last_k")]
                    if bad:
                        raise ConfigError(f"{where}: point {slug}: representation(s) {bad} need the key encoder "
                                          f"of the queue paradigm, not {cfg.contrast.paradigm!r}")
                t = Task(i, dict(point), slug, seed, fold, out / slug, cfg.to_dict(), list(reps),
                         list(spec.protocols), spec.baselines)
                t.dir = out / slug / t.run_name
                tasks.append(t)
    return tasks


def read_results(task: Task) -> dict[str, Any] | None:
    """A finished run's results (None when absent or unreadable)."""
    try:
        return json.loads(task.results_path.read_text())
    except (OSError, ValueError):
        return None


def task_status(task: Task) -> str:
    """``done`` (results.json), ``partial`` (a checkpoint, killed mid-way) or ``todo``."""
    if read_results(task) is not None:
        return "done"
    return "partial" if (task.dir / "checkpoint.pt").exists() else "todo"


def check_finished(tasks: Sequence[Task]) -> None:
    """Refuse to reuse a finished run (or a checkpoint) made with a different config."""
    from .train import config_conflicts, read_checkpoint

    for t in tasks:
        res = read_results(t)
        old = res.get("config") if res else None
        what = "finished run"
        if old is None and (t.dir / "checkpoint.pt").exists():
            try:
                old = read_checkpoint(t.dir, config_only=True)["config"]
            except ConfigError:  # an unreadable checkpoint is simply retrained
                old = None
            what = "checkpoint"
        if old is None:
            continue
        diff = config_conflicts(old, config_from_dict(t.config))
        if diff:
            raise ConfigError(f"{t.dir}: this {what} was made with a different config ({diff_summary(diff)}). "
                              "Use another --out, or delete the folder to redo it.")


# --- running ----------------------------------------------------------------------------------------------------
def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    from .experiment import write_json

    with atomic_write(path) as tmp:
        write_json(tmp, data)


def _random_rep(rep: str) -> str:
    """The representation of an untrained encoder to compare ``rep`` with (it has no key encoder)."""
    return "cae" if rep in ("cae", "cae+", "k") else "last_q"


def run_task(task: Task, progress: bool = False) -> dict[str, Any]:
    """Pretrain (resuming a checkpoint), evaluate each representation, write results.json; return it.

    A run whose loss diverges is finished too (``status: diverged``): running it again would diverge again.
    """
    import torch

    from .config import ProbeConfig
    from .experiment import evaluate_model, labelled_split, provenance, random_encoder, test_copy_mask
    from .train import TrainingDiverged, pretrain, resolve_device

    done = read_results(task)
    if done is not None:
        return done
    cfg = config_from_dict(task.config)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    meta = {"sweep_point": task.point, "slug": task.slug, "seed": task.seed, "fold": task.fold,
            "representations": task.representations}
    t0 = time.perf_counter()
    resume = (task.dir / "checkpoint.pt").exists()
    done_before = len(read_curve(task.dir / "metrics.csv")[0]) if resume and read_curve(task.dir / "metrics.csv") \
        else 0
    try:
        pre = pretrain(cfg, task.dir, resume=resume, progress=progress)
    except TrainingDiverged as exc:
        res = {"status": "diverged", "error": str(exc), "sweep": meta, "seconds": time.perf_counter() - t0,
               **provenance(cfg)}
        _write_json_atomic(task.results_path, res)
        return res
    cfg, ds = pre.config, pre.dataset
    device = resolve_device(cfg.train.device)
    t1 = time.perf_counter()
    reps: dict[str, Any] = {}
    copies = test_copy_mask(ds, cfg.data.protocol, labelled_split(ds, cfg.data.protocol)[1])  # once per run
    for rep in task.representations:
        probe: ProbeConfig = replace(cfg.probe, representation=rep)
        r = evaluate_model(pre.learner, ds, cfg.data.protocol, probe, task.protocols, device=device, copies=copies,
                           augment=cfg.augment)
        reps[rep] = {k: r[k] for k in ("linear", "knn", "feature_dim") if k in r}
    first = reps[task.representations[0]]
    res: dict[str, Any] = {"status": "ok", "sweep": meta, "dataset": ds.name, "protocol": cfg.data.protocol,
                           "representation": task.representations[0], **first, "representations": reps,
                           "final_loss": pre.metrics[-1]["loss"] if pre.metrics else None,
                           "pretrain_seconds": t1 - t0}
    if task.baselines:
        input_dim = int(np.prod(ds.x.shape[2:]))
        rnd_enc = random_encoder(cfg, input_dim, int(ds.x.shape[2]))
        by_rep: dict[str, Any] = {}
        for rr in dict.fromkeys(_random_rep(r) for r in task.representations):
            rnd = evaluate_model(rnd_enc, ds, cfg.data.protocol, replace(cfg.probe, representation=rr), ("linear",),
                                 device=device, copies=copies)
            by_rep[rr] = {"linear": rnd["linear"]}
        res["baselines"] = {"random_encoder": by_rep[_random_rep(task.representations[0])],
                            "random_encoder_by_representation": by_rep}
    # wall time of the whole run: this invocation plus the epochs trained before a kill
    res["seconds"] = time.perf_counter() - t0 + sum(float(r.get("time_s", 0.0)) for r in pre.metrics[:done_before])
    res["resumed_at_epoch"] = done_before
    res.update(provenance(cfg))
    _write_json_atomic(task.results_path, res)
    (task.dir / "error.txt").unlink(missing_ok=True)  # from an earlier failed attempt
    return res


def _worker(task: Task) -> tuple[str, dict[str, Any] | str]:
    """Process-pool entry point: never raises, so one broken run does not stop the others."""
    try:
        return "ok", run_task(task)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent and written beside the run
        msg = f"{type(exc).__name__}: {exc}" if isinstance(exc, SkelclError) else traceback.format_exc()
        try:
            task.dir.mkdir(parents=True, exist_ok=True)
            (task.dir / "error.txt").write_text(msg)
        except OSError:
            pass
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "error", msg


@dataclass
class SweepResult:
    """What :func:`run_sweep` did and wrote."""

    spec: SweepSpec
    tasks: list[Task]
    ran: list[Task]
    skipped: list[Task]
    failed: dict[str, str]
    rows: list[dict[str, Any]]
    table: str
    files: dict[str, Path]
    seconds: float


def run_sweep(spec: SweepSpec | str | Path | dict[str, Any], out_dir: str | Path, overrides: Sequence[str] = (),
              root: str | None = None, jobs: int = 1, seeds: Sequence[int] | None = None,
              folds: Sequence[str] | None = None, limit_epochs: int | None = None, table_only: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None,
              from_csv: str | Path | None = None) -> SweepResult:
    """Run every unfinished run of a sweep (``jobs`` at a time), then write the table and figures.

    ``from_csv``: run nothing; rebuild the table and figures from a saved ``table.csv`` instead of the
    runs' results (``seeds`` / ``folds`` still say what the figures' titles report).
    """
    sp = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    say = log or (print if progress else (lambda s: None))
    out = Path(out_dir)
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    tasks = build_tasks(sp, out, overrides, root=root, seeds=seeds, folds=folds, limit_epochs=limit_epochs,
                        jobs=jobs)
    t0 = time.perf_counter()
    todo: list[Task] = []
    skipped: list[Task] = []
    if from_csv is None:  # from a CSV nothing runs, so no run folder is read
        check_finished(tasks)
        todo = [t for t in tasks if read_results(t) is None]
        skipped = [t for t in tasks if t not in todo]
    failed: dict[str, str] = {}
    ran: list[Task] = []
    if not table_only and todo:
        out.mkdir(parents=True, exist_ok=True)
        if sp.path is not None:
            (out / "spec.yaml").write_text(sp.path.read_text())
        say(f"sweep {sp.name}: {len(tasks)} runs ({len(sp.points)} points x {len(set(t.seed for t in tasks))} "
            f"seed(s) x {len(set(t.fold for t in tasks))} fold(s)); {len(skipped)} finished, {len(todo)} to run, "
            f"{jobs} at a time")

        def report(i: int, t: Task, status: str, payload: Any) -> None:
            if status == "ok":
                ran.append(t)
                r = payload
                if r.get("status") == "diverged":
                    say(f"[{i}/{len(todo)}] {t.describe()}: diverged")
                else:
                    say(f"[{i}/{len(todo)}] {t.describe()}: linear top-1 {r['linear']['top1']:.1f}, "
                        f"loss {r['final_loss']:.3f}, {r['seconds']:.0f} s")
            else:
                failed[t.describe()] = payload
                say(f"[{i}/{len(todo)}] {t.describe()}: FAILED ({str(payload).strip().splitlines()[-1]}); "
                    f"see {t.dir / 'error.txt'}")

        if jobs == 1 or len(todo) == 1:
            for i, t in enumerate(todo, 1):
                report(i, t, *_worker(t))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                futs = {pool.submit(_worker, t): t for t in todo}
                try:
                    for i, f in enumerate(as_completed(futs), 1):
                        report(i, futs[f], *f.result())
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    rows = collect_rows(sp, tasks) if from_csv is None else rows_from_csv(sp, from_csv)
    files = write_outputs(sp, rows, tasks, out)
    table = markdown(sp, rows, tasks)
    return SweepResult(sp, tasks, ran, skipped, failed, rows, table, files, time.perf_counter() - t0)


# --- the table ----------------------------------------------------------------------------------------------------
def aggregate(values: dict[tuple[int, str | None], float]) -> tuple[float, float, int]:
    """Mean +- std of one metric over (seed, fold) runs.

    Folds are averaged per seed, then mean and population std over seeds; with one seed the std is
    over folds. Returns (mean, std, runs); nan when there is nothing (std nan for a single run).
    """
    vals = {k: v for k, v in values.items() if v is not None and np.isfinite(v)}
    if not vals:
        return math.nan, math.nan, 0
    by_seed: dict[int, list[float]] = {}
    for (seed, _), v in vals.items():
        by_seed.setdefault(seed, []).append(float(v))
    if len(by_seed) > 1:
        means = np.array([np.mean(v) for v in by_seed.values()])
        return float(means.mean()), float(means.std()), len(vals)
    arr = np.array(list(vals.values()), dtype=float)
    return float(arr.mean()), float(arr.std()) if len(arr) > 1 else math.nan, len(vals)


def display_axes(spec: SweepSpec) -> list[str]:
    """The axes the table and figures show: ``show:``, else those whose value varies (+ representation)."""
    if spec.show is not None:
        return list(spec.show)
    keys = [k for k in spec.axis_keys
            if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in spec.points}) > 1]
    if spec.representations and len(spec.representations) > 1:
        keys.append(REPRESENTATION_AXIS)
    return keys


# per-row metrics of a sweep table (CSV columns <metric>_mean / _std)
METRICS = ("top1", "top5", "knn_top1", "random_top1", "final_loss", "seconds", "top1_without_copies")


def _metric(res: dict[str, Any], rep: str, *path: str) -> float | None:
    node: Any = res.get("representations", {}).get(rep, res) if path[0] in ("linear", "knn") else res
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def collect_rows(spec: SweepSpec, tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """One row per (point, representation): axis values and aggregated metrics from the runs' results.json."""
    reps = spec.representations or [None]
    by_point: dict[int, list[tuple[Task, dict[str, Any] | None]]] = {}
    for t in tasks:
        by_point.setdefault(t.point_index, []).append((t, read_results(t)))
    rows = []
    for pi, point in enumerate(spec.points):
        runs = by_point.get(pi, [])
        for rep in reps:
            r_name = rep or (runs[0][0].representations[0] if runs else "cae")
            values = dict(point)
            if spec.representations:
                values[REPRESENTATION_AXIS] = rep
            m: dict[str, dict[tuple[int, str | None], float | None]] = {
                k: {} for k in METRICS}
            diverged = 0
            copies = False
            curves = []
            for t, res in runs:
                if res is None:
                    continue
                key = (t.seed, t.fold)
                if res.get("status") == "diverged":
                    diverged += 1
                    continue
                m["top1"][key] = _metric(res, r_name, "linear", "top1")
                m["top5"][key] = _metric(res, r_name, "linear", "top5")
                # a split without test copies has no such figure: its top-1 is already the figure
                wo = _metric(res, r_name, "linear", "top1_without_copies")
                m["top1_without_copies"][key] = wo if wo is not None else m["top1"][key]
                copies = copies or wo is not None
                m["knn_top1"][key] = _metric(res, r_name, "knn", "top1")
                m["random_top1"][key] = _metric(res, r_name, "baselines", "random_encoder_by_representation",
                                                _random_rep(r_name), "linear", "top1")
                if m["random_top1"][key] is None:
                    m["random_top1"][key] = _metric(res, r_name, "baselines", "random_encoder", "linear", "top1")
                m["final_loss"][key] = _metric(res, r_name, "final_loss")
                m["seconds"][key] = _metric(res, r_name, "seconds")
                curves.append(t.dir / "metrics.csv")
            finished = sum(1 for _, r in runs if r is not None)
            row: dict[str, Any] = {"point_index": pi, "slug": point_slug(point, spec.axis_keys), "values": values,
                                   "runs": finished, "expected": len(runs), "diverged": diverged,
                                   "curves": curves}
            for k, v in m.items():
                row[k] = aggregate(v)
            if not copies:
                row["top1_without_copies"] = (math.nan, math.nan, 0)
            secs = [v for v in m["seconds"].values() if v is not None]
            row["seconds_total"] = float(sum(secs))
            rows.append(row)
    return rows


def _pm(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.1f}" + (f" ± {std:.1f}" if np.isfinite(std) else "")


def _shape(spec: SweepSpec, tasks: Sequence[Task] | None) -> tuple[int, int]:
    """(seeds, folds) actually run (``--seeds`` / ``--folds`` may narrow the spec's)."""
    if tasks:
        return len({t.seed for t in tasks}), len({t.fold for t in tasks})
    return len(spec.seeds), len(spec.folds or [None])


def markdown(spec: SweepSpec, rows: Sequence[dict[str, Any]], tasks: Sequence[Task] | None = None) -> str:
    """The sweep table as GitHub markdown (with a note on how mean and std were taken)."""
    from .report import markdown_table

    axes = display_axes(spec)
    has_knn = any(np.isfinite(r["knn_top1"][0]) for r in rows)
    has_rnd = any(np.isfinite(r["random_top1"][0]) for r in rows)
    has_wo = any(np.isfinite(r.get("top1_without_copies", (math.nan,))[0]) for r in rows)
    header = (axes or ["point"]) + ["top-1 %", "top-5 %"] + (["kNN top-1 %"] if has_knn else []) + \
        (["random enc. top-1 %"] if has_rnd else []) + (["top-1 % without test copies"] if has_wo else []) + \
        ["final loss", "runs", "s / run"]
    body = []
    for r in rows:
        cells: list[object] = [format_value(r["values"].get(a)) for a in axes] if axes else [r["slug"]]
        if r["diverged"] and not r["top1"][2]:
            cells += ["diverged", "—"]
        else:
            cells += [_pm(*r["top1"][:2]), _pm(*r["top5"][:2])]
        if has_knn:
            cells.append(_pm(*r["knn_top1"][:2]))
        if has_rnd:
            cells.append(_pm(*r["random_top1"][:2]))
        if has_wo:
            cells.append(_pm(*r["top1_without_copies"][:2]))
        fl = r["final_loss"][0]
        runs = f"{r['runs']}/{r['expected']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        cells += [f"{fl:.3f}" if np.isfinite(fl) else "—", runs,
                  f"{r['seconds'][0]:.0f}" if np.isfinite(r["seconds"][0]) else "—"]
        body.append(cells)
    n_seeds, n_folds = _shape(spec, tasks)
    how = ("folds averaged per seed, then mean ± std over seeds" if n_seeds > 1
           else "mean ± std over folds" if n_folds > 1 else "one run per point")
    note = (f"\n\n{spec.name}: linear-probe top-1 / top-5 % (final epoch, no selection on test); {how}. "
            f"runs: finished / expected; s / run: mean wall time of one run (pretraining + evaluation).")
    if has_wo:
        note += (" Some test splits hold exact copies of training sequences; \"without test copies\" scores "
                 "the other test sequences (a split without copies counts as it is).")
    return markdown_table(header, body) + note


def write_csv(spec: SweepSpec, rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The table as CSV: one column per axis (readable values), then numeric metric columns."""
    axes = [k for k in spec.axis_keys] + ([REPRESENTATION_AXIS] if spec.representations else [])
    buf = io.StringIO()
    w = csv.writer(buf)
    metrics = METRICS
    w.writerow(["slug"] + axes + [f"{m}_{s}" for m in metrics for s in ("mean", "std")] +
               ["runs", "expected_runs", "diverged_runs", "seconds_total"])

    def num(v: float) -> str:
        return "" if not np.isfinite(v) else f"{v:.4f}"

    for r in rows:
        w.writerow([r["slug"]] + [format_value(r["values"].get(a)) for a in axes] +
                   [num(r[m][i]) for m in metrics for i in (0, 1)] +
                   [r["runs"], r["expected"], r["diverged"], f"{r['seconds_total']:.1f}"])
    with atomic_write(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def rows_from_csv(spec: SweepSpec, path: str | Path) -> list[dict[str, Any]]:
    """Rows of a table written by :func:`write_csv`, matched to the spec's points by slug.

    Lets the table and figures be rebuilt where only the CSV is kept (docs/sweeps holds CSVs, not
    runs). Loss curves are not in the CSV, so rows carry none. Raises ConfigError when the file is
    missing or is not this spec's table.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--from-csv: no such file {p}")
    with p.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    need = {"slug", "top1_mean", "top1_std"}
    if not table or not need <= set(table[0]):
        raise ConfigError(f"--from-csv: {p} is not a sweep table.csv (needs columns {sorted(need)})")
    slugs = {point_slug(pt, spec.axis_keys): i for i, pt in enumerate(spec.points)}
    reps = spec.representations or [None]

    def num(text: str | None) -> float:
        return float(text) if text not in (None, "") else math.nan

    def count(line: dict[str, str], key: str, default: int) -> int:
        return int(float(line[key])) if line.get(key) else default

    rows = []
    for line in table:
        pi = slugs.get(line["slug"])
        if pi is None:
            raise ConfigError(f"--from-csv: {p}: point {line['slug']!r} is not in spec {spec.name} "
                              f"(its points: {', '.join(slugs)})")
        values = dict(spec.points[pi])
        if spec.representations:
            rep = line.get(REPRESENTATION_AXIS)
            if rep not in reps:
                raise ConfigError(f"--from-csv: {p}: representation {rep!r} is not in spec {spec.name}")
            values[REPRESENTATION_AXIS] = rep
        runs = count(line, "runs", 0)
        row: dict[str, Any] = {"point_index": pi, "slug": line["slug"], "values": values, "runs": runs,
                               "expected": count(line, "expected_runs", runs),
                               "diverged": count(line, "diverged_runs", 0),
                               "curves": [], "seconds_total": num(line.get("seconds_total"))}
        for m in METRICS:
            row[m] = (num(line.get(f"{m}_mean")), num(line.get(f"{m}_std")), runs)
        rows.append(row)
    return rows


# --- figures --------------------------------------------------------------------------------------------------------
def _plt():
    from .report import _plt as plt

    return plt()


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None) and \
        any(v is not None for v in values)


def _crowded(pos: np.ndarray) -> bool:
    """Whether some neighbouring tick positions are closer than 4% of the axis (labels would overlap)."""
    pos = np.sort(pos)
    span = pos[-1] - pos[0]
    return len(pos) > 2 and span > 0 and float(np.diff(pos).min()) < 0.04 * span


def _auto_scale(xs: Sequence[float]) -> str:
    """``log`` for positive values spanning >= 20x, ``linear`` otherwise; when ticks would overlap on
    that axis (0.06 beside 0.07 on 0.06-0.5), log if that spaces them out, else ``category``."""
    v = np.array(sorted(float(x) for x in xs))
    positive = len(v) > 2 and bool((v > 0).all())
    scale = "log" if positive and v[-1] / v[0] >= 20 else "linear"
    if not _crowded(np.log(v) if scale == "log" else v):
        return scale
    if positive and scale == "linear" and not _crowded(np.log(v)):
        return "log"
    return "category"


def _ordered_unique(values: Iterable[Any]) -> list[Any]:
    seen, out = set(), []
    for v in values:
        k = json.dumps(v, sort_keys=True, default=str)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _label(values: dict[str, Any], axes: Sequence[str], all_keys: Sequence[str]) -> str:
    return ", ".join(f"{short_key(a, all_keys)}={format_value(values.get(a))}" for a in axes) or "all"


def plot_lines(rows: Sequence[dict[str, Any]], x_axis: str, series_axes: Sequence[str], path: str | Path,
               title: str, x_scale: str | None = None, all_keys: Sequence[str] = (),
               baseline: float | None = None) -> Path:
    """Linear top-1 vs one axis, one series per combination of the other axes; error bars = std.

    With a single series the kNN top-1 is drawn too (dashed; lines only, not bars).

    Numeric x: a line (log x when the values span >= 20x, or as ``x_scale`` says; ``category`` spaces
    the values evenly). Categorical x: grouped bars. A point without a value for x (e.g. the
    no-head point of the projection-head sweep) is drawn as a horizontal dashed line.
    """
    plt = _plt()
    xs = _ordered_unique(r["values"].get(x_axis) for r in rows if r["values"].get(x_axis) is not None)
    numeric = _numeric(xs)
    if x_scale is None:
        x_scale = _auto_scale(xs) if numeric else "category"
    if numeric and x_scale != "category":
        xs = sorted(xs)
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(_label(r["values"], series_axes, all_keys), []).append(r)
    wide = 3.5 if len(series) > 3 else 0.0  # room for a legend outside the axes
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(xs) + 2.5) + wide, 4.2), dpi=110)
    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    bars = x_scale == "category" and not numeric
    width = 0.8 / max(1, len(series))
    keyed = [json.dumps(v, sort_keys=True, default=str) for v in xs]
    for si, (name, rs) in enumerate(series.items()):
        color = cmap(si % cmap.N)
        pts = [(keyed.index(json.dumps(r["values"].get(x_axis), sort_keys=True, default=str)), r) for r in rs
               if r["values"].get(x_axis) is not None]
        flat = [r for r in rs if r["values"].get(x_axis) is None]
        label = name if series_axes else None
        for r in flat:
            m = r["top1"][0]
            if np.isfinite(m):
                ax.axhline(m, ls="--", color=color, label=f"{label or 'point'} (no {short_key(x_axis, all_keys)})")
        pts = [(i, r) for i, r in pts if np.isfinite(r["top1"][0])]
        if not pts:
            continue
        pts.sort(key=lambda p: p[0])
        mean = np.array([r["top1"][0] for _, r in pts])
        std = np.nan_to_num(np.array([r["top1"][1] for _, r in pts]))
        knn = np.array([r["knn_top1"][0] for _, r in pts])
        if len(series) == 1 and np.isfinite(knn).all():
            label = "linear probe"
        if bars:
            pos = np.array([i for i, _ in pts]) + (si - (len(series) - 1) / 2) * width
            ax.bar(pos, mean, width=width * 0.95, yerr=std, capsize=3, color=color, label=label)
            if len(series) <= 3:
                for p, m, sd in zip(pos, mean, std):
                    ax.text(p, m + sd + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
        else:
            xv = np.array([xs[i] if x_scale != "category" else i for i, _ in pts], dtype=float)
            ax.errorbar(xv, mean, yerr=std, marker="o", capsize=3, color=color, label=label)
            if label == "linear probe":
                ax.plot(xv, knn, marker="s", ls="--", color="tab:orange", alpha=0.8, label="kNN")
            if len(series) <= 3:
                for xx, m in zip(xv, mean):
                    ax.annotate(f"{m:.1f}", (xx, m), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=7)
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(baseline, ls=":", color="gray", label="random encoder")
    if bars or x_scale == "category":
        ax.set_xticks(range(len(xs)), [format_value(v) for v in xs], rotation=30 if len(xs) > 5 else 0,
                      ha="right" if len(xs) > 5 else "center", fontsize=8)
    else:
        if x_scale == "log":
            ax.set_xscale("log")
        ax.set_xticks([float(v) for v in xs], [format_value(v) for v in xs], fontsize=8)
        ax.minorticks_off()
    ax.set_xlabel(x_axis)
    ax.set_ylabel("top-1 %")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y" if bars else "both")
    handles = ax.get_legend_handles_labels()[0]
    if len(handles) > 4:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    elif handles:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_heatmap(rows: Sequence[dict[str, Any]], row_axis: str, col_axis: str, path: str | Path, title: str,
                 facet_axes: Sequence[str] = (), row_means: bool = False, all_keys: Sequence[str] = ()) -> Path:
    """Top-1 as a heatmap of two axes, values annotated; one panel per combination of ``facet_axes``.

    ``row_means`` adds a last column with each row's mean (the paper's augmentation-pair matrix, Fig. 10).
    """
    plt = _plt()
    rv = _ordered_unique(r["values"].get(row_axis) for r in rows)
    cv = _ordered_unique(r["values"].get(col_axis) for r in rows)
    if _numeric(rv):
        rv = sorted(rv)
    if _numeric(cv):
        cv = sorted(cv)
    facets: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        facets.setdefault(_label(r["values"], facet_axes, all_keys), []).append(r)
    key = lambda v: json.dumps(v, sort_keys=True, default=str)  # noqa: E731
    rk, ck = [key(v) for v in rv], [key(v) for v in cv]
    ncol = len(cv) + (1 if row_means else 0)
    fig, axs = plt.subplots(1, len(facets), figsize=(len(facets) * (1.6 + 0.75 * ncol), 1.4 + 0.5 * len(rv)),
                            dpi=110, squeeze=False)
    mats = []
    for name, rs in facets.items():
        mat = np.full((len(rv), len(cv)), np.nan)
        sd = np.full_like(mat, np.nan)
        for r in rs:
            i, j = rk.index(key(r["values"].get(row_axis))), ck.index(key(r["values"].get(col_axis)))
            mat[i, j], sd[i, j] = r["top1"][0], r["top1"][1]
        mats.append((name, mat, sd))
    finite = np.concatenate([m[np.isfinite(m)] for _, m, _ in mats]) if mats else np.array([])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    for ax, (name, mat, sd) in zip(axs[0], mats):
        show = mat
        if row_means:
            with np.errstate(all="ignore"):
                means = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in mat])
            show = np.concatenate([mat, means[:, None]], axis=1)
        im = ax.imshow(np.ma.masked_invalid(show), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        small = len(rv) * ncol <= 64
        for i in range(show.shape[0]):
            for j in range(show.shape[1]):
                v = show[i, j]
                if not np.isfinite(v):
                    ax.text(j, i, "—", ha="center", va="center", fontsize=7, color="gray")
                    continue
                txt = f"{v:.1f}"
                if small and j < len(cv) and np.isfinite(sd[i, j]):
                    txt += f"\n±{sd[i, j]:.1f}"
                frac = (v - vmin) / (vmax - vmin + 1e-9)
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="black" if frac > 0.6 else "white", fontweight="bold" if j == len(cv) else None)
        if row_means:
            ax.axvline(len(cv) - 0.5, color="white", lw=3)
        ax.set_xticks(range(ncol), [format_value(v) for v in cv] + (["mean"] if row_means else []),
                      rotation=30 if ncol > 5 else 0, ha="right" if ncol > 5 else "center", fontsize=8)
        ax.set_yticks(range(len(rv)), [format_value(v) for v in rv], fontsize=8)
        ax.set_xlabel(col_axis)
        ax.set_ylabel(row_axis)
        ax.set_title(name if facet_axes else title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, label="top-1 %")
    if facet_axes:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def read_curve(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, losses) from a run's metrics.csv."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return (np.array([float(r["epoch"]) for r in rows]), np.array([float(r["loss"]) for r in rows]))
    except (OSError, KeyError, ValueError):
        return None


def mean_curve(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-epoch mean loss over runs (each epoch over the runs that reached it)."""
    sums: dict[float, list[float]] = {}
    for p in paths:
        c = read_curve(p)
        if c is None:
            continue
        for e, l in zip(*c):
            if np.isfinite(l):
                sums.setdefault(float(e), []).append(float(l))
    if not sums:
        return None
    es = np.array(sorted(sums))
    return es, np.array([np.mean(sums[e]) for e in es])


def plot_loss_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> Path:
    """Overlaid pretraining loss curves, one per point (paper Figs. 4 and 7)."""
    plt = _plt()
    n = len(curves)
    ncol = 1 if n <= 20 else 2 if n <= 40 else 3
    longest = max((len(k) for k in curves), default=10)
    fig, ax = plt.subplots(figsize=(5.5 + ncol * (0.6 + 0.06 * longest), 4.5), dpi=110)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    styles = ["-", "--", ":", "-."]
    for i, (name, (e, l)) in enumerate(curves.items()):
        ax.plot(e, l, color=cmap(i % cmap.N), ls=styles[(i // cmap.N) % len(styles)], lw=1.3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("InfoNCE loss (mean over runs)")
    ax.set_title(wrapped_title(title), fontsize=10)
    ax.grid(alpha=0.3)
    if n:
        ax.legend(fontsize=6 if n > 12 else 7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol,
                  frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _figure_kinds(spec: SweepSpec, axes: Sequence[str]) -> list[str]:
    kinds = [f for f in spec.figures if f != "curves"]
    if not kinds and axes:
        kinds = ["heatmap" if len(axes) == 2 and spec.grid else "line"]
    return kinds


def write_outputs(spec: SweepSpec, rows: Sequence[dict[str, Any]], tasks: Sequence[Task], out_dir: str | Path
                  ) -> dict[str, Path]:
    """table.md, table.csv, accuracy.png and loss_curves.png (figures only once some run has finished)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    md = out / "table.md"
    md.write_text(markdown(spec, rows, tasks) + "\n")
    files["table.md"] = md
    files["table.csv"] = write_csv(spec, rows, out / "table.csv")
    if not any(np.isfinite(r["top1"][0]) for r in rows):
        return files
    axes = display_axes(spec)
    all_keys = list(spec.axis_keys) + [REPRESENTATION_AXIS]
    n_seeds, n_folds = _shape(spec, tasks)
    folds = sorted({str(t.fold) for t in tasks if t.fold})
    title = f"{spec.name}: top-1 ({n_seeds} seed{'s' if n_seeds > 1 else ''}" + (
        f", {n_folds} folds" if n_folds > 1 else f", {folds[0]}" if folds else "") + ")"
    rnd = [r["random_top1"][0] for r in rows if np.isfinite(r["random_top1"][0])]
    same_model = len({json.dumps(t.config["model"], sort_keys=True) for t in tasks}) == 1
    one_kind = spec.representations is None or len({_random_rep(r) for r in spec.representations}) == 1
    baseline = float(np.mean(rnd)) if rnd and same_model and one_kind else None
    for kind in _figure_kinds(spec, axes):
        if kind in ("heatmap", "matrix") and len(axes) >= 2:
            facet = [a for a in axes if a not in axes[:2]]
            files["accuracy.png"] = plot_heatmap(rows, axes[0], axes[1], out / "accuracy.png", title, facet,
                                                 row_means=kind == "matrix", all_keys=all_keys)
        else:
            x = spec.x or (axes[0] if axes else None)
            if x is None:
                continue
            files["accuracy.png"] = plot_lines(rows, x, [a for a in axes if a != x], out / "accuracy.png", title,
                                               spec.x_scale, all_keys, baseline)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    point_axes = [a for a in axes if a != REPRESENTATION_AXIS]
    many = len(spec.points) > 12
    for r in rows:
        name = (", ".join(format_value(r["values"].get(a)) for a in point_axes) if many else
                _label(r["values"], point_axes, all_keys)) if point_axes else r["slug"]
        if name in curves:
            continue  # another representation of the same runs
        c = mean_curve(r["curves"])
        if c is not None:
            curves[name] = c
    if curves:
        files["loss_curves.png"] = plot_loss_curves(curves, out / "loss_curves.png",
                                                    f"{spec.name}: pretraining loss per point")
    return files


__all__ = ["SweepSpec", "Task", "SweepResult", "load_spec", "parse_spec", "list_specs", "resolve_spec_path",
           "build_tasks", "run_task", "run_sweep", "task_status", "check_finished", "collect_rows", "aggregate",
           "markdown", "write_csv", "rows_from_csv", "write_outputs", "plot_lines", "plot_heatmap", "plot_loss_curves",
           "point_slug", "format_value", "set_dotted", "config_diff", "display_axes"]
