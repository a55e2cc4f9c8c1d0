"""The config's encoder trained with every label: what the same architecture reaches with labels.

The frozen self-supervised features are judged by a linear probe; this script puts that figure in
proportion by training the config's encoder (``model``: cell, layers, hidden units, frame features,
input norm, as pretraining builds it) from scratch with cross entropy on the TAP of its states, on
the whole labelled training split and the config's pretraining augmentations (``--no-augment``: raw
sequences, as the supervised rows of ``skelcl reproduce``). Adam, constant lr, final epoch, one line
per seed and the mean; the figure without test copies of training sequences where a split has them.

    python bench/supervised.py nucla --root ../shared/data/nucla --seeds 0,1,2 --epochs 150
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from skelcl.config import load_config
from skelcl.errors import SkelclError
from skelcl.experiment import add_without_copies, labelled_split, test_copy_mask
from skelcl.probe import supervised_baseline
from skelcl.train import apply_threads, load_data, resolve_device, resolve_graph


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a config name or YAML path (data, preprocessing, encoder shape, augment)")
    ap.add_argument("--root", default=None, help="data.root")
    ap.add_argument("--protocol", default=None, help="data.protocol (default: the config's)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--no-augment", action="store_true", help="train on the raw sequences")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = ap.parse_args()
    if args.epochs < 1 or not args.lr > 0:
        raise SystemExit("--epochs must be >= 1 and --lr > 0")
    seeds = [int(s) for s in args.seeds.split(",")]
    over = list(args.set) + ([f"data.root={args.root}"] if args.root else [])
    cfg = load_config(args.config, over)
    apply_threads(cfg)
    ds = load_data(cfg)
    protocol = args.protocol or cfg.data.protocol
    tr, te, _ = labelled_split(ds, protocol)
    copies = test_copy_mask(ds, protocol, te)
    device = resolve_device(cfg.train.device)
    resolve_graph(cfg, ds)  # the gcn encoder's bones, from the dataset's joint layout
    m = cfg.model
    augment = None if args.no_augment else cfg.augment
    shape = f"{m.layers} x {m.hidden} {m.cell}" if m.encoder == "rnn" else m.encoder
    print(f"{cfg.name} {protocol}: supervised {shape} on {m.frame_features}, {len(tr)} labelled training "
          f"sequences, {len(te)} test, {args.epochs} epochs, augment {augment or 'none'}", flush=True)
    got: dict[str, list[float]] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        r = supervised_baseline(m.cell, ds.x, ds.lengths, ds.labels, tr, te, epochs=args.epochs, lr=args.lr,
                                seed=seed, num_classes=ds.num_classes, device=device, augment=augment, model=m)
        add_without_copies(r, ds.labels[te], copies)
        row = {"top-1": r["top1"], "train top-1 (last epoch)": r["history"][-1]["train_top1"]}
        if "top1_without_copies" in r:
            row["top-1 without copies"] = r["top1_without_copies"]
        for k, v in row.items():
            got.setdefault(k, []).append(v)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    for k, v in got.items():
        print(f"{k}: {np.mean(v):.1f} ± {np.std(v):.1f} | " + " ".join(f"{a:.1f}" for a in v))


if __name__ == "__main__":
    try:
        main()
    except SkelclError as exc:  # a bad config, data path or cell: one line, no traceback
        raise SystemExit(f"error: {exc}") from None
