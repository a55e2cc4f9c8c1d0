"""The ``skelcl`` command line. Each sub-module registers its sub-commands; all work is done by
library functions, so everything here is also usable from Python."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Sequence

from ..errors import SkelclError, SkelclWarning

# Sub-command modules, each with ``register(subparsers)``; a command sets ``func(args) -> int``.
_MODULES = ("data", "augment", "train", "evaluate", "sweep")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="skelcl",
        description="Self-supervised skeleton-based action recognition (AS-CAL and friends).",
    )
    parser.add_argument("--version", action="version", version=f"skelcl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():  # restores the previous display afterwards
        shown = warnings.showwarning

        def show(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
            if issubclass(category, SkelclWarning):  # one line, like the errors
                print(f"skelcl: warning: {message}", file=sys.stderr, flush=True)
            else:
                shown(message, category, *rest, **kw)

        warnings.showwarning = show
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except SkelclError as exc:
        print(f"skelcl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skelcl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
