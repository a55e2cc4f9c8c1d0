"""CLI command: ``pretrain`` (contrastive pretraining, resumable)."""

from __future__ import annotations

import argparse
import os

from ..config import load_config
from ..errors import ConfigError


def add_config_args(p: argparse.ArgumentParser) -> None:
    """CONFIG plus overrides, shared by every command that builds a run config."""
    p.add_argument("config", nargs="?", default=None,
                   help="YAML config file or bundled config name (see configs/), e.g. sbu, nucla, synthetic")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--root", default=None, help="dataset folder (sets data.root)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")


def config_from_args(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.root:
        overrides.append(f"data.root={args.root}")
    if getattr(args, "device", None):
        overrides.append(f"train.device={args.device}")
    return load_config(args.config, overrides)


def _pretrain(args: argparse.Namespace) -> int:
    from ..train import pretrain

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError("--resume DIR continues a run with its own saved config; give no CONFIG or --set "
                              "(--root and --device may move it: where its data lies now, the device to go on with)")
        res = pretrain(load_config(None), args.resume, resume=True, progress=not args.quiet, data_root=args.root,
                       device=args.device)
    else:
        if not args.config:
            raise ConfigError("give a CONFIG (e.g. `skelcl pretrain synthetic --out runs/demo`) or --resume DIR")
        if not args.out:
            raise ConfigError("give --out DIR for the run's checkpoints and logs")
        res = pretrain(config_from_args(args), args.out, progress=not args.quiet)
    last = res.metrics[-1] if res.metrics else None
    if last and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"done: {int(last['epoch'])} epochs, final loss {last['loss']:.4f}; files in {res.out_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="contrastive pretraining (AS-CAL); resumable")
    add_config_args(p)
    p.add_argument("--out", default=None, help="run folder for config, checkpoints, metrics, plots")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrain)
