"""One command per paper table: SBU 5-fold (Table V) and N-UCLA cross-view.

For each fold (or test view) and seed: pretrain AS-CAL, linear-evaluate CAE and CAE+, and train the
three supervised baselines (one-layer RNN / GRU / LSTM, 256 units) from scratch. Finished
(fold, seed) cells are read back from their ``results.json``, so a killed reproduction resumes.
The table prints ours (mean +- std over seeds) beside the paper's numbers and the difference.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Config, diff_summary, load_config, replace_in
from .errors import ConfigError
from .experiment import (add_without_copies, copies_record, evaluate_model, labelled_split, provenance,
                         test_copy_mask, write_json)
from .probe import supervised_baseline
from .report import markdown_table
from .store import SkeletonDataset
from .train import check_resume, config_conflicts, load_data, pretrain, resolve_device

# Paper Table V (SBU, 5 folds). N-UCLA is not reported in the paper.
PAPER: dict[str, dict[str, list[float]]] = {
    "sbu": {
        "RNN (supervised)": [40.0, 42.3, 26.8, 27.8, 35.4],
        "GRU (supervised)": [40.0, 40.4, 28.6, 33.3, 40.0],
        "LSTM (supervised)": [49.1, 53.2, 37.5, 42.0, 53.8],
        "CAE": [52.7, 46.2, 41.1, 31.5, 41.5],
        "CAE+": [52.7, 50.0, 44.6, 37.0, 49.2],
    },
    "nucla": {},
}
SPLITS = {"sbu": ["fold1", "fold2", "fold3", "fold4", "fold5"], "nucla": ["xview", "view1", "view2"]}
CONFIGS = {("sbu", "ours"): "sbu", ("sbu", "paper"): "sbu-paper",
           ("nucla", "ours"): "nucla", ("nucla", "paper"): "nucla-paper"}
# representation behind each unsupervised row, read forwards only whatever the config's probe says;
# "CAE ++ max" (TAP ++ temporal max) is skelcl's, not the paper's
REPRESENTATION_ROWS = (("cae", "CAE"), ("cae+", "CAE+"), ("cae_max", "CAE ++ max"))
METHODS = ["RNN (supervised)", "GRU (supervised)", "LSTM (supervised)"] + [name for _, name in REPRESENTATION_ROWS]


def _cell(cfg: Config, ds: SkeletonDataset, split: str, seed: int, out: Path, progress: bool,
          supervised_epochs: int) -> dict[str, Any]:
    """One (split, seed): pretrain + the linear probes of REPRESENTATION_ROWS + supervised baselines."""
    res_path = out / "results.json"
    cfg = replace_in(cfg, data={"protocol": split}, train={"seed": seed}, probe={"seed": seed})
    if res_path.exists():  # a finished cell counts only if it was made with this config
        done = json.loads(res_path.read_text())
        diff = config_conflicts(done["config"], cfg, ds) if done.get("config") else []
        if diff:
            raise ConfigError(f"{out}: this finished cell was made with another config ({diff_summary(diff)}; "
                              "saved -> asked). Give another --out, or delete the folder to redo it.")
        return done
    t0 = time.perf_counter()
    resume = (out / "checkpoint.pt").exists()
    if resume:  # a cell killed mid-way goes on only under the settings it was started with
        check_resume(cfg, out, ds)
    pre = pretrain(cfg, out, resume=resume, progress=progress, dataset=ds, data_root=cfg.data.root,
                   device=cfg.train.device, teachers=cfg.distill.teachers)
    device = resolve_device(cfg.train.device)
    res: dict[str, Any] = {"split": split, "seed": seed, "pretrain_seconds": time.perf_counter() - t0,
                           "final_loss": pre.metrics[-1]["loss"], "top1": {}, "top5": {}}
    tr, te, _ = labelled_split(ds, split)
    copies = test_copy_mask(ds, split, te)  # once for the cell's probes and baselines
    for rep, name in REPRESENTATION_ROWS:
        r = evaluate_model(pre.learner, ds, split, replace(cfg.probe, representation=rep, both_directions=False),
                           ("linear",), device=device, copies=copies)
        res["top1"][name] = r["linear"]["top1"]
        res["top5"][name] = r["linear"]["top5"]
        res[f"best_epoch_top1_{name}"] = r["linear"]["best_epoch_top1"]
        if "top1_without_copies" in r["linear"]:
            res.setdefault("top1_without_copies", {})[name] = r["linear"]["top1_without_copies"]
    if copies.any():
        res["test_copies"] = copies_record(ds, te, copies)
    for cell in ("rnn", "gru", "lstm"):
        name = f"{cell.upper()} (supervised)"
        r = supervised_baseline(cell, ds.x, ds.lengths, ds.labels, tr, te, hidden=256, epochs=supervised_epochs,
                                seed=seed, num_classes=ds.num_classes, device=device)
        res["top1"][name] = r["top1"]
        res["top5"][name] = r["top5"]
        add_without_copies(r, ds.labels[te], copies)
        if "top1_without_copies" in r:
            res.setdefault("top1_without_copies", {})[name] = r["top1_without_copies"]
    res["seconds"] = time.perf_counter() - t0
    res.update(provenance(pre.config))  # the config it trained with (bones and paths filled in)
    write_json(res_path, res)
    return res


def reproduce(name: str, root: str | None = None, out_dir: str | Path = "runs/reproduce", seeds: Sequence[int] = (0,),
              preset: str = "ours", overrides: Sequence[str] = (), progress: bool = True,
              folds: str | None = None, supervised_epochs: int = 60) -> str:
    """Run a paper table and return it as markdown (also written to ``out_dir/table.md``)."""
    if name not in SPLITS:
        raise ConfigError(f"unknown table {name!r}; known: {', '.join(SPLITS)}")
    ov = list(overrides) + ([f"data.root={root}"] if root else [])
    cfg = load_config(CONFIGS[(name, preset)], ov)
    splits = SPLITS[name] if not folds else [f.strip() for f in folds.split(",")]
    ds = load_data(cfg)  # read once for every cell; fails early on a wrong root
    for s in splits:
        ds.split(s)
    out = Path(out_dir)
    t0 = time.perf_counter()
    cells: dict[str, list[dict[str, Any]]] = {}
    for split in splits:
        for seed in seeds:
            if progress:
                print(f"== {name} {split} seed {seed}", flush=True)
            cells.setdefault(split, []).append(
                _cell(cfg, ds, split, seed, out / split / f"seed{seed}", progress, supervised_epochs))
    table = format_table(name, splits, cells, preset)
    summary = {"name": name, "preset": preset, "splits": splits, "seeds": list(seeds),
               "seconds": time.perf_counter() - t0, "cells": cells, **provenance(cfg)}
    write_json(out / "results.json", summary)
    (out / "table.md").write_text(table + "\n")
    return table


def format_table(name: str, splits: list[str], cells: dict[str, list[dict[str, Any]]], preset: str) -> str:
    """Markdown: one row per method, ours per split (mean +- std over seeds), average, paper, difference.

    Where a split's test sequences include exact copies of training sequences (``test_copies``), a
    second table gives the same figures on the other test sequences only."""
    n_seeds = len(next(iter(cells.values())))
    note = (f"\n\n{name}: top-1 % under the linear protocol (final epoch, no selection on test), preset "
            f"`{preset}`, {n_seeds} seed(s) per split (mean ± std over seeds).")
    if not PAPER.get(name):
        note += " The paper reports no numbers for this dataset (peers: P&C ~84.9, MS2L 76.8 on N-UCLA)."
    text = _method_table(name, splits, cells, "top1") + note
    copied = {s: cells[s][0]["test_copies"] for s in splits if cells[s] and cells[s][0].get("test_copies")}
    if copied:
        counts = ", ".join(f"{s} {c['count']} of {c['test']}" for s, c in copied.items())
        text += ("\n\nThe same, leaving out the test sequences that are exact copies of training sequences "
                 f"({counts}; the paper's and peers' figures include them):\n\n"
                 + _method_table(name, splits, cells, "top1_without_copies", copied))
    return text


def _method_table(name: str, splits: list[str], cells: dict[str, list[dict[str, Any]]], key: str,
                  copied: dict[str, Any] | None = None) -> str:
    """One row per method from each cell's ``cells[split][i][key][method]``; a split without copies
    reads ``top1`` (its figures need no correction)."""
    paper = PAPER.get(name, {})
    header = ["method"] + splits + ["average (ours)", "paper average", "difference"]
    rows = []

    def fig(c: dict[str, Any], s: str, m: str) -> float | None:
        k = key if copied is None or s in copied else "top1"
        return c.get(k, {}).get(m)

    for m in METHODS:
        if any(fig(c, s, m) is None for s in splits for c in cells[s]):
            continue  # cells cached by an older version lack this row
        per = [np.array([fig(c, s, m) for c in cells[s]]) for s in splits]
        fold_means = [p.mean() for p in per]
        seed_avgs = np.mean(np.stack(per), axis=0)  # average over splits, per seed
        row: list[object] = [m]
        for p in per:
            row.append(f"{p.mean():.1f}" + (f" ± {p.std():.1f}" if len(p) > 1 else ""))
        avg = float(np.mean(fold_means))
        row.append(f"{avg:.1f}" + (f" ± {seed_avgs.std():.1f}" if len(seed_avgs) > 1 else ""))
        if m in paper and len(paper[m]) == len(splits) and copied is None:
            pa = float(np.mean(paper[m]))
            row += [f"{pa:.1f}", f"{avg - pa:+.1f}"]
        else:
            row += ["—", "—"]
        rows.append(row)
    return markdown_table(header, rows)
