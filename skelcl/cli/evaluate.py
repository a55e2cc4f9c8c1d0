"""CLI commands: ``evaluate``, ``embed``, ``run``, ``distill``, ``average``, ``demo`` and ``reproduce``."""

from __future__ import annotations

import argparse

from .train import add_config_args, config_from_args


def _print_summary(res: dict, out: str) -> None:
    from ..experiment import format_run_summary

    print()
    print(format_run_summary(res))
    _print_files(out)


def _print_files(out: str) -> None:
    """Name the result files an evaluation or run wrote into ``out`` (only those that exist)."""
    from pathlib import Path
    names = ("results.json", "loss.png", "tsne.png", "confusion.png", "confusion-without-copies.png")
    print(f"\n{', '.join(f for f in names if (Path(out) / f).exists())} in {out}")


def _ensemble(args: argparse.Namespace) -> int:
    from ..experiment import copies_footnote, evaluate_ensemble
    from ..report import markdown_table

    if args.protocol != ["linear"]:
        from ..errors import ConfigError
        raise ConfigError("--ensemble combines linear probes: use it with --protocol linear")
    data = [f"data.{k}={v}" for k, v in (("dataset", args.dataset), ("root", args.root), ("protocol", args.split)) if v]
    res = evaluate_ensemble([args.checkpoint, *args.ensemble], out_dir=args.out, overrides=data + args.overrides)
    copies = res.get("test_copies")
    rows = [[m["run"], m["top1"], m["top5"]] + ([m.get("top1_without_copies", "—")] if copies else [])
            for m in res["members"]]
    for key, name in (("ensemble", "ensemble (mean softmax)"),
                      ("logit_average", "mean logits (one linear classifier on the runs' features side by side)")):
        e = res[key]
        rows.append([name, e["top1"], e["top5"]] + ([e["top1_without_copies"]] if copies else []))
    header = [f"{res['dataset']} {res['protocol']} linear probe", "top-1 %", "top-5 %"]
    print(markdown_table(header + ([f"top-1 % without the {copies['count']} copies"] if copies else []), rows))
    if copies:
        print("\n" + copies_footnote(copies))
    print(f"\nensemble.json in {res['out_dir']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..experiment import copies_footnote, evaluate_checkpoint, probe_spread_rows
    from ..report import markdown_table

    if args.ensemble:
        return _ensemble(args)
    fractions = [float(f) for f in args.fractions.split(",")]
    res = evaluate_checkpoint(args.checkpoint, args.protocol, dataset=args.dataset, root=args.root,
                              data_protocol=args.split, overrides=args.overrides, out_dir=args.out,
                              fractions=fractions, progress=not args.quiet)
    copies = res.get("test_copies")

    def row(name: str, r: dict, wo: bool = True) -> list:
        out = [name, r["top1"], r.get("top5", "")]
        return out + [r.get("top1_without_copies", "—") if wo else ""] if copies else out

    rows = []
    if "linear" in res:
        lin = res["linear"]
        rows.append(row("linear (final epoch)", lin))
        rows += [e + [""] if copies else e for e in probe_spread_rows(lin)]
        rows.append(row("linear (best test epoch, selected on test: not a result)",
                        {"top1": lin["best_epoch_top1"], "top5": ""}, wo=False))
    if "knn" in res:
        rows.append(row(f"kNN k={res['knn'].get('k')}", res["knn"]))
    for frac, r in res.get("semi", {}).items():
        rows.append(row(f"semi {float(frac) * 100:g}% labels: fine-tuned", r["step1"]))
        rows.append(row(f"semi {float(frac) * 100:g}% labels: + linear on all "
                        f"({r['step2'].get('representation', 'cae')})", r["step2"]))
    header = [f"{res['dataset']} {res['protocol']} {res['representation']}", "top-1 %", "top-5 %"]
    if copies:
        header.append(f"top-1 % without the {copies['count']} copies")
    print(markdown_table(header, rows))
    if copies:
        print("\n" + copies_footnote(copies))
    _print_files(res["out_dir"])
    return 0


def _embed(args: argparse.Namespace) -> int:
    from ..experiment import embed_checkpoint

    info = embed_checkpoint(args.checkpoint, args.out, dataset=args.dataset, root=args.root,
                            data_protocol=args.split, overrides=args.overrides, progress=not args.quiet,
                            tsne=args.tsne)
    n, e = info["features_shape"]
    print(f"{n} sequences of {info['dataset']} -> {e}-dim {info['representation']} embeddings in {info['file']} "
          f"({info['encode_seconds']:.1f} s)" + (f"; t-SNE in {info['tsne']}" if "tsne" in info else ""))
    return 0


def _run(args: argparse.Namespace) -> int:
    from ..experiment import run

    cfg = config_from_args(args)
    out = args.out or f"runs/{cfg.name}"
    res = run(cfg, out, resume=args.resume, progress=not args.quiet)
    _print_summary(res, out)
    return 0


def _average(args: argparse.Namespace) -> int:
    from ..distill import average_runs

    average_runs(args.runs, args.out, progress=not args.quiet)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..report import compare_results

    table = compare_results(args.results, labels=args.label or None, top=args.top, plot=args.plot)
    print(table, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    return 0


def _distill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import load_config
    from ..errors import ConfigError
    from ..experiment import run

    if args.resume:  # the killed run's own config, teachers included
        if not args.out:
            raise ConfigError("--resume needs --out, the folder of the run to continue")
        if args.config or args.overrides:
            raise ConfigError("--resume continues a run with its own saved config; give no CONFIG or --set "
                              "(--root, --device and --teachers may move it: where its data lies now, the device "
                              "to go on with, where its teachers lie now)")
        saved = Path(args.out) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"--resume: no run in {args.out} (no config.yaml)")
        cfg = load_config(saved)
        cfg.data.root = args.root or cfg.data.root
        cfg.train.device = args.device or cfg.train.device
        if args.teachers:
            cfg.distill.teachers = [str(t) for t in args.teachers]
    else:
        if not args.teachers:
            raise ConfigError("give the teachers: --teachers RUN [RUN ...] (pretrained run folders or checkpoints)")
        cfg = config_from_args(args)
        cfg.distill.teachers = [str(t) for t in args.teachers]
    out = args.out or f"runs/{cfg.name}-distilled"
    res = run(cfg, out, resume=args.resume, progress=not args.quiet)
    _print_summary(res, out)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..experiment import demo

    res = demo(args.out, overrides=args.overrides, progress=not args.quiet)
    print(f"\nskelcl demo: AS-CAL pretraining on the synthetic set ({res['dataset']}, protocol {res['protocol']}),"
          f" {res['seconds']:.0f} s in all")
    _print_summary(res, args.out)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from ..reproduce import reproduce

    table = reproduce(args.name, root=args.root, out_dir=args.out or f"runs/reproduce-{args.name}",
                      seeds=[int(s) for s in args.seeds.split(",")], preset=args.preset,
                      overrides=args.overrides, progress=not args.quiet, folds=args.folds)
    print(table)
    return 0


def _protocols(text: str) -> list[str]:
    """``linear,knn`` -> ["linear", "knn"]; an unknown name is an argparse error naming the known ones."""
    from ..experiment import PROTOCOLS

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in PROTOCOLS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown protocol(s) {', '.join(bad) or repr(text)}; "
                                         f"known: {', '.join(PROTOCOLS)} (comma-separated for several)")
    return list(dict.fromkeys(names))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a pretrained checkpoint: linear, kNN or semi-supervised")
    p.add_argument("checkpoint", help="run folder or checkpoint.pt")
    p.add_argument("--protocol", type=_protocols, default=["linear"], metavar="linear|knn|semi",
                   help="one protocol or several, comma-separated (e.g. linear,knn); default linear")
    p.add_argument("--dataset", default=None, help="dataset format (default: the run's own)")
    p.add_argument("--root", default=None, help="dataset folder (default: the run's own)")
    p.add_argument("--split", default=None, help="data protocol, e.g. xsub, fold2, xview (default: the run's)")
    p.add_argument("--fractions", default="0.01,0.1,0.5", help="label fractions for --protocol semi")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override e.g. probe.representation=cae+ or probe.standardize=true")
    p.add_argument("--ensemble", action="extend", nargs="+", default=[], metavar="RUN",
                   help="other runs on the same data and split (one or more, e.g. a shell glob; repeatable): "
                        "average the linear probes' softmax over all runs, e.g. a position and a velocity "
                        "stream; writes ensemble.json")
    p.add_argument("--out", default=None,
                   help="where results.json and the plots go (default: RUN/evaluations/<protocol>[__<settings>], "
                        "so the run's own results.json is never overwritten)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("embed", help="write a checkpoint's action embedding of every sequence to an .npz",
                       description="The frozen encoder's fixed-length embedding of every sequence of a dataset "
                                   "(the run's own by default), as the linear probe sees it (probe.representation), "
                                   "with labels, lengths, meta and split indices, in one .npz (no pickles).")
    p.add_argument("checkpoint", help="run folder or checkpoint.pt")
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument("--tsne", default=None, metavar="PNG", help="also draw a t-SNE of the embeddings (by class; "
                                                               "unlabelled grey)")
    p.add_argument("--dataset", default=None, help="dataset format (default: the run's own)")
    p.add_argument("--root", default=None, help="dataset folder or file (default: the run's own)")
    p.add_argument("--split", default=None, help="data protocol (default: the run's; every split's indices are saved)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override e.g. probe.representation=cae or data.options.layout=...")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_embed)

    p = sub.add_parser("run", help="pretrain + linear evaluation in one go, one results.json")
    add_config_args(p)
    p.add_argument("--out", default=None, help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)

    p = sub.add_parser("distill", help="train one encoder to reproduce several pretrained ones (teachers), then "
                                       "evaluate it as `run` does")
    add_config_args(p)
    p.add_argument("--teachers", nargs="+", action="extend", default=[], metavar="RUN",
                   help="run folders or checkpoints pretrained on the same dataset (a shell glob works)")
    p.add_argument("--out", default=None, help="run folder (default runs/<config name>-distilled)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out with its own teachers (or, with --teachers, the same "
                        "teachers moved: as many, in the same order; their targets are checked)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_distill)

    p = sub.add_parser("average", help="average the weights of runs continued from one checkpoint (a soup by hand, "
                                       "e.g. some of a soup's students) into one run for `skelcl evaluate`")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders or checkpoints (a shell glob works)")
    p.add_argument("--out", required=True, help="the new run folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_average)

    p = sub.add_parser("compare", help="evaluations of one dataset side by side: overall figures, each class's "
                                       "linear accuracy against the first, the most frequent confusions")
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="two or more results.json files, or run / evaluation folders holding one (the first is "
                        "the reference)")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="a column name per evaluation, in order (repeat it; default: the paths)")
    p.add_argument("--top", type=int, default=3, help="confusions listed per evaluation (default 3)")
    p.add_argument("--out", default=None, metavar="FILE.md", help="also write the markdown there")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also draw each class's accuracy as bars there")
    p.set_defaults(func=_compare)

    p = sub.add_parser("demo", help="the main job: pretrain + evaluate on the embedded synthetic set (~1-3 min)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)

    p = sub.add_parser("reproduce", help="reproduce a paper table (sbu: Table V; nucla: cross-view)")
    p.add_argument("name", choices=["sbu", "nucla"])
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--out", default=None)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--folds", default=None, help="subset of folds/protocols, e.g. fold1,fold2")
    p.add_argument("--preset", choices=["ours", "paper"], default="ours",
                   help="ours: skelcl's tuned settings; paper: the paper's settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_reproduce)
