"""One linear probe on several runs' features side by side, against their softmax ensemble.

`skelcl evaluate A --ensemble B ...` trains one probe per run and averages their softmaxes: an
ensemble of classifiers. This trains ONE linear probe (the first run's probe settings, seeded with
``--probe-seed``) on the concatenation of every run's frozen features, each run read with its own
preprocessing and readout: the best a single linear classifier can do with what the runs compute
together, which is what a distilled student (``skelcl distill``) is asked to carry in one network.
It prints top-1 on the test split, without the test copies of training sequences, and each run's
own probe for reference.

Two more rows compare it with the runs' own probes combined. Their logits averaged are also one
linear classifier on the concatenation (each probe's weights act on its own block, standardised by
its own statistics): a classifier that exists on these features although the side-by-side probe,
trained on all of them at once, need not find it. Their softmaxes averaged are the ensemble of
`skelcl evaluate --ensemble`, which no linear classifier is.

    python bench/concat_probe.py runs/base-s0/xview runs/gcnbox-s0/xview --root ../shared/data/nucla
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
import yaml

from skelcl.errors import ConfigError
from skelcl.experiment import add_without_copies, combine_scores, member_features
from skelcl.probe import linear_eval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (or checkpoint.pt files) trained on the same data and split")
    ap.add_argument("--root", default=None, help="data.root for every run (default: each run's own)")
    ap.add_argument("--probe-seed", type=int, default=0, help="probe.seed (as --set probe.seed=S in evaluate)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--probe", action="append", default=[], metavar="KEY=VALUE",
                    help="a probe setting for the side-by-side probe only, e.g. --probe weight_decay=0.01")
    args = ap.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("give at least two runs")
    torch.set_num_threads(args.threads)
    over = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.probe)}
    overrides = [f"train.threads={args.threads}", f"probe.seed={args.probe_seed}"] + \
        ([f"data.root={args.root}"] if args.root else [])
    feats: list[tuple[np.ndarray, np.ndarray]] = []
    logits: list[np.ndarray] = []  # each run's own probe, (N_test, C)
    first = None
    print("| run | features | its own probe | without the copies |\n|---|---|---|---|")
    for m in member_features(args.runs, overrides, what="the run list"):
        if first is None:
            first = m
        elif not np.array_equal(m.y_tr, first.y_tr):
            raise SystemExit(f"{m.path}: its train split differs from {first.path}'s; give runs of one data and split")
        own = linear_eval(m.f_tr, m.y_tr, m.f_te, m.y_te, m.cfg.probe, num_classes=m.ds.num_classes, device=m.device)
        add_without_copies(own, m.y_te, m.copies)
        print(f"| {m.path} | {m.f_tr.shape[1]} | {own['top1']:.1f} | "
              f"{own.get('top1_without_copies', float('nan')):.1f} |", flush=True)
        feats.append((m.f_tr, m.f_te))
        logits.append(np.asarray(own["scores"]))
    assert first is not None
    y_te, copies = first.y_te, first.copies
    x_tr = np.concatenate([a for a, _ in feats], 1)
    x_te = np.concatenate([b for _, b in feats], 1)
    lin = linear_eval(x_tr, first.y_tr, x_te, y_te, replace(first.cfg.probe, **over),
                      num_classes=first.ds.num_classes, device=first.device)
    add_without_copies(lin, y_te, copies)
    what = f" ({', '.join(args.probe)})" if args.probe else ""
    print(f"| **one probe on all {len(feats)} side by side{what}** | {x_tr.shape[1]} | **{lin['top1']:.1f}** | "
          f"**{lin.get('top1_without_copies', float('nan')):.1f}** |")
    comb = combine_scores(logits, y_te, copies)
    r = len(logits)
    for name, key in ((f"their own {r} probes' logits averaged (also one linear classifier)", "logit_average"),
                      (f"their own {r} probes' softmaxes averaged (an ensemble)", "ensemble")):
        print(f"| {name} | {x_tr.shape[1]} | {comb[key]['top1']:.1f} | "
              f"{comb[key].get('top1_without_copies', float('nan')):.1f} |")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:  # a missing run, another split: one line, no traceback
        raise SystemExit(f"error: {e}")
