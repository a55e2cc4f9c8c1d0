"""CLI command: ``sweep`` (the paper's ablations as resumable, parallel grids of runs)."""

from __future__ import annotations

import argparse


def _ints(text: str | None) -> list[int] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None


def _sweep(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..sweep import build_tasks, list_specs, load_spec, run_sweep, task_status

    if args.list:
        for name, desc in list_specs():
            print(f"{name:28s} {desc}")
        return 0
    if not args.spec:
        raise ConfigError("give a sweep spec (a YAML file or a bundled name; `skelcl sweep --list` shows them)")
    spec = load_spec(args.spec)
    out = args.out or f"runs/sweeps/{spec.name}"
    seeds = _ints(args.seeds)
    folds = [f.strip() for f in args.folds.split(",") if f.strip()] if args.folds else None
    if args.dry_run:
        tasks = build_tasks(spec, out, args.overrides, root=args.root, seeds=seeds, folds=folds,
                            limit_epochs=args.limit_epochs, jobs=args.jobs)
        print(f"sweep {spec.name} ({spec.description or 'no description'}): base {spec.base}, "
              f"{len(spec.points)} points, {len(tasks)} runs, into {out}")
        for t in tasks:
            st = task_status(t)
            vals = ", ".join(f"{k}={v!r}" for k, v in t.point.items()) or "(base config)"
            print(f"  {st:7s} {t.describe():48s} {vals}  [epochs {t.config['optim']['epochs']}, "
                  f"threads {t.config['train']['threads']}]")
        return 0
    res = run_sweep(spec, out, args.overrides, root=args.root, jobs=args.jobs, seeds=seeds, folds=folds,
                    limit_epochs=args.limit_epochs, table_only=args.table_only, progress=not args.quiet,
                    from_csv=args.from_csv)
    print()
    print(res.table)
    print(f"\n{len(res.ran)} run(s) done now, {len(res.skipped)} already finished, {len(res.failed)} failed; "
          f"{res.seconds:.0f} s. Files: {', '.join(str(p) for p in res.files.values())}")
    if res.failed:
        print("failed runs (run the sweep again to retry them):")
        for name, msg in res.failed.items():
            print(f"  {name}: {msg.strip().splitlines()[-1]}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep spec (the paper's ablations): a grid of runs, resumable, "
                                     "parallel, with a table and figures")
    p.add_argument("spec", nargs="?", default=None,
                   help="sweep spec YAML or bundled name (e.g. sbu-momentum; see --list)")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweeps/<spec name>)")
    p.add_argument("--root", default=None, help="dataset folder (sets data.root)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every point, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1); each gets "
                                                      "max(1, cores // jobs) torch threads")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the spec's)")
    p.add_argument("--folds", default=None, help="comma-separated folds, e.g. fold1 (default: the spec's)")
    p.add_argument("--limit-epochs", type=int, default=None, metavar="E",
                   help="a cheap pass: E pretraining epochs (lr milestones and warm-up scaled); use its own --out")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their status; run nothing")
    p.add_argument("--table-only", action="store_true", help="rebuild table and figures from finished runs")
    p.add_argument("--from-csv", default=None, metavar="CSV",
                   help="run nothing: rebuild table and figures from a saved table.csv (e.g. docs/sweeps/*.csv); "
                        "--folds/--seeds say what it covered")
    p.add_argument("--list", action="store_true", help="list the bundled sweep specs")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_sweep)
