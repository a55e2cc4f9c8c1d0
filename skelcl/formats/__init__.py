"""Dataset readers and their registry.

Each reader turns files on disk into a canonical :class:`~skelcl.store.SkeletonDataset`. A reader is
registered under a name with its description, its protocol names and its default preprocessing;
:func:`load_dataset` is the one entry point the rest of skelcl (and the CLI) uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ConfigError, DataFormatError
from ..store import Preprocess, SkeletonDataset

Reader = Callable[..., SkeletonDataset]


@dataclass(frozen=True)
class FormatInfo:
    """What ``skelcl datasets`` lists about one format."""

    name: str
    description: str
    protocols: tuple[str, ...]
    default_pre: Preprocess
    reader: Reader
    needs_root: bool = True
    options: dict[str, str] = field(default_factory=dict)


FORMATS: dict[str, FormatInfo] = {}


def register_format(name: str, description: str, protocols: tuple[str, ...], default_pre: Preprocess,
                    needs_root: bool = True, options: dict[str, str] | None = None) -> Callable[[Reader], Reader]:
    """Decorator: register ``reader(root, pre, *, skip_bad=False, **options) -> SkeletonDataset``."""

    def deco(fn: Reader) -> Reader:
        FORMATS[name] = FormatInfo(name, description, protocols, default_pre, fn, needs_root, options or {})
        return fn

    return deco


def read_each(files: Iterable[Path], read_one: Callable[[Path], Any], skip_bad: bool,
              root: str | Path) -> tuple[list[Any], list[str]]:
    """``read_one(file)`` for every file. With ``skip_bad`` a file's DataFormatError is recorded
    ("path: reason") and the file skipped; otherwise it propagates. Raises if no file could be read."""
    rows: list[Any] = []
    skipped: list[str] = []
    for f in files:
        try:
            rows.append(read_one(f))
        except DataFormatError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    if not rows:
        raise DataFormatError(root, f"all {len(skipped)} files were bad; first: {skipped[0]}")
    return rows, skipped


def _ensure_registered() -> None:
    # Importing the reader modules registers them.
    from . import byo, ntu, nucla, sbu, synthetic  # noqa: F401


def list_formats() -> list[FormatInfo]:
    _ensure_registered()
    return [FORMATS[k] for k in sorted(FORMATS)]


def default_preprocess(name: str) -> Preprocess:
    _ensure_registered()
    return replace(_info(name).default_pre)


def _info(name: str) -> FormatInfo:
    if name not in FORMATS:
        raise ConfigError(f"unknown dataset format {name!r}; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def load_dataset(name: str, root: str | None = None, pre: Preprocess | dict[str, Any] | None = None,
                 skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Load a dataset by format name.

    Args:
        name: a registered format (``skelcl datasets`` lists them).
        root: folder or file to read; not needed for ``synthetic``.
        pre: preprocessing; a dict overrides fields of the format's default.
        skip_bad: skip malformed files (listed in ``dataset.skipped``) instead of raising.
        options: reader-specific options (e.g. ``layout`` for bring-your-own formats).
    """
    _ensure_registered()
    info = _info(name)
    if pre is None:
        pre = replace(info.default_pre)
    elif isinstance(pre, dict):
        known = {f.name for f in fields(Preprocess)}
        bad = set(pre) - known
        if bad:
            raise ConfigError(f"unknown preprocessing option(s) {sorted(bad)}; known: {sorted(known)}")
        pre = replace(info.default_pre, **pre)
    if info.needs_root and not root:
        raise ConfigError(f"dataset {name!r} needs --root PATH (the folder or file to read)")
    return info.reader(root, pre, skip_bad=skip_bad, **options)
