"""CLI commands: ``datasets`` (formats and protocols) and ``inspect`` (counts of one dataset)."""

from __future__ import annotations

import argparse
import json

from ..formats import list_formats, load_dataset


def add_data_args(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
    """The options every command that reads a dataset shares."""
    p.add_argument("--root", default=None, help="folder or file of the dataset (not needed for synthetic)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed files and report them")
    p.add_argument("--layout", default=None,
                   help="joint layout for bring-your-own formats: ntu25, kinect20, sbu15, or "
                        "custom:V:CENTRE (V joints, 0-based centre joint)")
    p.add_argument("--option", dest="reader_options", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. missing_list=PATH, workers=4, cache=false (repeatable)")


def reader_options(args: argparse.Namespace) -> dict:
    """--layout and --option KEY=VALUE (values parsed as YAML) as reader keyword arguments."""
    from ..config import load_yaml
    from ..errors import ConfigError

    opts: dict = {"layout": args.layout} if getattr(args, "layout", None) else {}
    for item in getattr(args, "reader_options", []) or []:
        if "=" not in item:
            raise ConfigError(f"--option {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        opts[k.strip()] = load_yaml(v)
    return opts


def _datasets(args: argparse.Namespace) -> int:
    for info in list_formats():
        pre = info.default_pre
        print(f"{info.name}")
        print(f"    {info.description}")
        print(f"    protocols: {', '.join(info.protocols) or '-'}")
        print(f"    default preprocessing: T={pre.frames} M={pre.persons} length_mode={pre.length_mode} "
              f"centre={pre.centre}")
        for k, v in info.options.items():
            print(f"    option {k}: {v}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    ds = load_dataset(args.name, root=args.root, skip_bad=args.skip_bad, **reader_options(args))
    s = ds.summary()
    s["test_copies"] = {name: len(ds.test_copies(name)) for name in (s["protocols"] if not args.protocol
                                                                      else [args.protocol])}
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"dataset      {s['name']}  (layout {s['layout']}, array {tuple(s['shape'])})")
    print(f"sequences    {s['sequences']}")
    print(f"classes      {s['classes']}")
    print(f"frames       min {s['frames_min']}  mean {s['frames_mean']:.1f}  max {s['frames_max']}  "
          f"(as read; kept as T={s['frames_kept']})")
    print("persons      " + "  ".join(f"{k}: {v}" for k, v in s["persons_hist"].items()))
    protocols = s["protocols"]
    if args.protocol:
        tr, te = ds.split(args.protocol)
        protocols = {args.protocol: [len(tr), len(te)]}
    for name, (ntr, nte) in protocols.items():
        n_copies = s["test_copies"][name]
        copies = ("" if not n_copies else f"  ({n_copies} test sequences are exact copies of training ones)"
                  if n_copies > 1 else "  (1 test sequence is an exact copy of a training one)")
        print(f"protocol     {name:10s} train {ntr:6d}  test {nte:6d}{copies}")
    if ds.skipped:
        print(f"skipped      {len(ds.skipped)} bad file(s):")
        for line in ds.skipped:
            print(f"    {line}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list dataset formats and their protocols")
    p.set_defaults(func=_datasets)
    p = sub.add_parser("inspect", help="print counts of a dataset: sequences, classes, frames, splits")
    p.add_argument("name", help="dataset format (see `skelcl datasets`)")
    add_data_args(p)
    p.add_argument("--protocol", default=None, help="show only this protocol's split sizes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_inspect)
