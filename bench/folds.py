"""One setting over every fold of a dataset: the script behind the ablation rows of docs/RESULTS.md.

Each fold is one ``skelcl run`` (pretrain, then linear and kNN probes) with the same overrides; the
dataset is read once. With ``--baselines`` the untrained encoder and a logistic regression on the
preprocessed coordinates are measured too, on the same folds, with the same probe. Prints one line
per fold and the mean.

    python bench/folds.py sbu --root ../shared/data/sbu --set data.preprocess.centre=joint
    python bench/folds.py nucla --root ../shared/data/nucla --folds xview --set model.motion=true
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from skelcl.config import load_config
from skelcl.experiment import run
from skelcl.reproduce import SPLITS
from skelcl.train import load_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="bundled config name (sbu, nucla, ...) or YAML path")
    ap.add_argument("--root", required=True, help="dataset folder")
    ap.add_argument("--folds", default=None, help="comma-separated (default: all folds of sbu / nucla xview)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/folds", help="run folders go to OUT/<fold>")
    ap.add_argument("--baselines", action="store_true", help="also the random encoder and raw coordinates")
    args = ap.parse_args()
    base = [f"data.root={args.root}"] + args.overrides
    cfg0 = load_config(args.config, base)
    default = SPLITS["sbu"] if cfg0.data.dataset == "sbu" else [cfg0.data.protocol]
    folds = args.folds.split(",") if args.folds else default
    ds = load_data(cfg0)
    rows: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for fold in folds:
        cfg = load_config(args.config, base + [f"data.protocol={fold}"])
        res = run(cfg, f"{args.out}/{fold}", progress=False, baselines=args.baselines, dataset=ds)
        got = {"linear": res["linear"]["top1"], "knn": res["knn"]["top1"]}
        if "top1_without_copies" in res["linear"]:  # the split's test set holds copies of training sequences
            got["linear without copies"] = res["linear"]["top1_without_copies"]
            got["knn without copies"] = res["knn"]["top1_without_copies"]
        if args.baselines:
            got["random encoder"] = res["baselines"]["random_encoder"]["linear"]["top1"]
            got["raw coordinates"] = res["baselines"]["raw_input_logistic"]["top1"]
        for k, v in got.items():
            rows.setdefault(k, []).append(v)
        print(f"{fold}: " + ", ".join(f"{k} {v:.1f}" for k, v in got.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    for k, v in rows.items():
        print(f"{k}: mean {np.mean(v):.1f} | " + " ".join(f"{a:.1f}" for a in v))
    print(f"overrides: {args.overrides or 'none'}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
