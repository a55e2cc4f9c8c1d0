"""Probe settings judged without the test view: a validation split inside a run's training views.

For a multi-view run (N-UCLA xview trains on v01 + v02), each probe is trained on one training view
and tested on the other, both ways, and averaged ("val"); the figure on the real test split is
printed beside it ("test"), so one can see whether choosing a probe on "val" would have helped.
The features are the frozen encoder's, computed once.

For a distilled run (``skelcl distill``) it also probes the output of the run's distillation head,
the student's prediction of its teachers' features (a linear map of the same features).

With ``--copies K`` it also encodes K augmented copies of every sequence (the run's pretraining
augmentation, generator seeds 1000..1000+K-1) and adds three rows: the probe trained on the
sequences and their copies and tested on the raw test sequences (as image linear probes train on
random crops), the same tested on the mean of each test sequence's raw and augmented features, and
both sides on that mean.

    python bench/probe_views.py runs/nucla/xview [--copies 4]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from skelcl.augment import build_augment
from skelcl.probe import encode, knn_eval, linear_eval, logistic_baseline
from skelcl.train import apply_threads, learner_from_state, load_data, read_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder (with checkpoint.pt)")
    ap.add_argument("--representation", default=None, help="default: the run's probe.representation")
    ap.add_argument("--both-directions", action="store_true", help="probe.both_directions: also read it backwards")
    ap.add_argument("--copies", type=int, default=0, metavar="K",
                    help="also probe with K augmented copies of each sequence (the run's augmentation)")
    args = ap.parse_args()
    state = read_checkpoint(args.run)
    learner, cfg = learner_from_state(state)
    rep = args.representation or cfg.probe.representation
    apply_threads(cfg)
    ds = load_data(cfg)
    tr, te = ds.split(cfg.data.protocol)
    views = np.unique(ds.meta["view"][tr])
    if len(views) != 2:
        raise SystemExit(f"needs a run trained on exactly two views; {args.run} trains on {views.tolist()}")
    a, b = (tr[ds.meta["view"][tr] == v] for v in views)
    feats = encode(learner, ds.x, ds.lengths, rep, both_directions=args.both_directions)
    y = ds.labels

    def both(score) -> tuple[float, float]:
        return (score(a, b) + score(b, a)) / 2, score(tr, te)

    def logistic(c: float):
        return lambda i, j: logistic_baseline(feats[i], y[i], feats[j], y[j], max_iter=2000, C=c)["top1"]

    def knn(k: int):
        return lambda i, j: knn_eval(feats[i], y[i], feats[j], y[j], k=k)["top1"]

    extra: list[np.ndarray] = []
    if args.copies > 0:
        aug = build_augment(cfg.augment, joint_names=ds.layout.joints)
        x = torch.as_tensor(np.asarray(ds.x, np.float32))
        lengths = torch.as_tensor(np.asarray(ds.lengths))
        for k in range(args.copies):
            gen = torch.Generator().manual_seed(1000 + k)
            xa = torch.cat([aug(x[s:s + 256], lengths[s:s + 256], gen) for s in range(0, len(x), 256)])
            extra.append(encode(learner, xa, lengths, rep, both_directions=args.both_directions))
    mean = (feats + sum(extra)) / (len(extra) + 1)

    def linear(tr_feats: np.ndarray = feats, te_feats: np.ndarray = feats, copies: int = 0, **kw):
        p = replace(cfg.probe, **kw)

        def score(i, j) -> float:  # train rows i (and their first `copies` augmented copies), test rows j
            xs = np.concatenate([tr_feats[i]] + [c[i] for c in extra[:copies]])
            return linear_eval(xs, np.tile(y[i], copies + 1), te_feats[j], y[j], p, num_classes=ds.num_classes)["top1"]
        return score

    rows = {"run's probe": linear(),
            "linear lr 0.1, wd 1e-3": linear(lr=0.1, weight_decay=1e-3),
            "linear lr 0.1, wd 1e-2": linear(lr=0.1, weight_decay=1e-2)}
    if extra:
        k = len(extra)
        rows.update({f"run's probe, trained with {k} augmented copies": linear(copies=k),
                     "the same, tested on the mean over the copies": linear(te_feats=mean, copies=k),
                     f"run's probe on the mean over {k} copies, both sides": linear(mean, mean)})
    head = state.get("distill", {}).get("head")
    if head is not None and rep == cfg.probe.representation and not args.both_directions:  # predicts the teachers
        pred = feats @ head["weight"].numpy().T + head["bias"].numpy()
        rows[f"run's probe on the distillation head's output ({pred.shape[1]} dims)"] = linear(pred, pred)
    rows.update({f"logistic C={c:g}": logistic(c) for c in (0.01, 0.1, 1.0)})
    rows.update({f"kNN k={k}": knn(k) for k in (5, 10, 20)})
    print(f"{args.run} ({rep}{', both directions' if args.both_directions else ''}): val = train on view "
          f"{views[0]}, test on view {views[1]} and back; test = the run's split")
    print("| probe | val top-1 | test top-1 |\n|---|---|---|")
    for name, score in rows.items():
        v, t = both(score)
        print(f"| {name} | {v:.1f} | {t:.1f} |", flush=True)


if __name__ == "__main__":
    main()
