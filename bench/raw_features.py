"""Hand-made features without any learning: logistic regression on coordinates vs joint distances.

The "raw coordinates" line of every run is a logistic regression on the preprocessed coordinates.
Pairwise joint distances are the same frames made rotation and translation invariant, so this
prints how much of a cross-view gap a hand-made view-invariant input closes before any encoder is
trained (the features :mod:`skelcl.encoder` computes for ``model.frame_features``).

    python bench/raw_features.py nucla --root ../shared/data/nucla --every 3
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from skelcl.config import load_config
from skelcl.encoder import pairwise_distances
from skelcl.experiment import add_without_copies, test_copy_mask
from skelcl.probe import logistic_baseline
from skelcl.train import load_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a config name or YAML path (its data and preprocessing are used)")
    ap.add_argument("--root", default=None, help="data.root")
    ap.add_argument("--protocol", default=None, help="data.protocol (default: the config's)")
    ap.add_argument("--every", type=int, default=1, help="keep every k-th frame (fewer features, faster)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args()
    if args.every < 1:
        raise SystemExit("--every must be >= 1")
    over = list(args.set) + ([f"data.root={args.root}"] if args.root else [])
    cfg = load_config(args.config, over)
    ds = load_data(cfg)
    protocol = args.protocol or cfg.data.protocol
    tr, te = ds.split(protocol)
    copies = test_copy_mask(ds, protocol, te)  # test inputs identical to training ones
    x = torch.from_numpy(np.asarray(ds.x, np.float32))[:, ::args.every]  # (N, T', M, V, C)
    coords = x.reshape(*x.shape[:2], -1)
    dist = pairwise_distances(coords)
    y = ds.labels
    print(f"{cfg.name} {protocol}: {len(tr)} train, {len(te)} test, one frame in {args.every}"
          + (f"; {int(copies.sum())} test sequences are exact copies of training ones" if copies.any() else ""))
    extra = " top-1 without copies |" if copies.any() else ""
    print(f"| features | per frame | top-1 | top-5 | converged |{extra}\n|---|---|---|---|---|" + "---|" * bool(extra))
    for name, f in (("coordinates", coords), ("joint distances", dist),
                    ("coordinates + distances", torch.cat([coords, dist], -1))):
        r = logistic_baseline(f[tr].numpy(), y[tr], f[te].numpy(), y[te])
        add_without_copies(r, y[te], copies)
        wo = f" {r.get('top1_without_copies', float('nan')):.1f} |" if copies.any() else ""
        print(f"| {name} | {f.shape[-1]} | {r['top1']:.1f} | {r['top5']:.1f} | {r['converged']} |{wo}", flush=True)


if __name__ == "__main__":
    main()
