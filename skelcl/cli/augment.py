"""CLI command ``show-augment``: draw one sequence and each of the seven augmentations of it."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..formats import load_dataset
from .data import add_data_args, reader_options


def _show_augment(args: argparse.Namespace) -> int:
    from ..plot import plot_augmentations

    ds = load_dataset(args.dataset, root=args.root, skip_bad=args.skip_bad, **reader_options(args))
    if len(ds) == 0:
        raise ConfigError(f"dataset {args.dataset!r} has no sequences")
    if not 0 <= args.index < len(ds):
        raise ConfigError(f"--index {args.index} is outside 0..{len(ds) - 1} (dataset {args.dataset!r} "
                          f"has {len(ds)} sequences)")
    if ds.x.shape[-1] != 3:
        raise ConfigError(f"show-augment needs 3D coordinates, dataset {args.dataset!r} has C={ds.x.shape[-1]}")
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    i = args.index
    length = int(ds.lengths[i])
    label = ds.class_names[int(ds.labels[i])] if ds.class_names and ds.labels[i] >= 0 else str(int(ds.labels[i]))
    title = f"{ds.name} #{i} ({label}, {length} frames), seed {args.seed}"
    plot_augmentations(ds.x[i].astype("float32"), length, ds.layout.bones, args.out, seed=args.seed,
                       frames=args.frames, title=title)
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands."""
    p = sub.add_parser("show-augment",
                       help="draw a sequence and its seven augmentations as 3D stick figures (PNG)")
    p.add_argument("--dataset", default="synthetic", help="dataset format (default: synthetic)")
    add_data_args(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--index", type=int, default=0, help="which sequence (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentations' random draws")
    p.add_argument("--frames", type=int, default=4, help="frames shown per row (default 4)")
    p.set_defaults(func=_show_augment)
