"""Reader: ``nucla`` — Northwestern-UCLA Multiview Action 3D (Wang et al., CVPR 2014).

Reads the preprocessed "all_sqe" JSON release that CTR-GCN distributes: one file per sequence,
``<root>/all_sqe/aAA_sSS_eEE_vVV.json`` (or ``<root>/*.json``), each::

    {"file_name": "a01_s01_e00_v01", "skeletons": [T][20][3] (metres, camera coords), "label": 1..10}

One person, Kinect v1 20-joint layout. Labels become 0..9.

Defaults (T=60, M=1, crop, centre on the spine joint): T=60 is what the released AS-CAL code used;
N-UCLA has one actor per sequence, so M=1 is the honest default (no all-zero second person).
Sequences run 1..201 frames (mean 39.4): ``crop`` keeps the first 60 frames of the few longer ones
(238 of 1484, 16%), as the released code did; ``length_mode="resample"`` keeps their whole motion instead and
is the better choice for new work. For cross-view protocols also consider ``view_align=True``
(rotating each body to face a canonical direction); it is off by default to match the paper.

Protocols: ``xview`` trains on views 1+2 and tests on view 3 (1020 / 464, the standard split);
``view1`` / ``view2`` / ``view3`` test on that view and train on the other two (``view3`` equals
``xview``).

Copies: in this release every v03 file of "pick up with two hands" (a02) and "drop trash" (a03) holds
the same skeletons as the v02 file of that subject and repetition, so 95 of the 464 ``xview`` test
sequences (and 95 of ``view2``'s) are training sequences. With the default crop to 60 frames, one more
pair becomes identical: ``a08_s01_e00``'s v01 and v02 files share their first 71 frames (one copy each
in ``view1`` and ``view2``). The data are read as released; the probes report top-1 with and without
the copies (:meth:`~skelcl.store.SkeletonDataset.test_copies`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..layouts import KINECT20
from ..store import Preprocess, SkeletonDataset, to_canonical
from . import read_each, register_format

NUCLA_CLASSES: list[str] = [
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down",
    "stand up", "donning", "doffing", "throw", "carry",
]

_NAME_RE = re.compile(r"^a(\d+)_s(\d+)_e(\d+)_v(\d+)$")
_JOINTS = 20


def read_nucla_file(path: str | Path) -> tuple[np.ndarray, int, str]:
    """Read one N-UCLA JSON file.

    Returns:
        skeleton (T, 1, 20, 3) float64, label 0..9, and the ``file_name`` ("a01_s01_e00_v01").

    Raises:
        DataFormatError naming the file (and line for JSON syntax errors) for invalid JSON, missing
        keys, a wrong joint or coordinate count, non-numeric or non-finite values, or a bad label.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(d, dict):
        raise DataFormatError(path, f"expected a JSON object with file_name, skeletons, label; got {type(d).__name__}")
    missing = [k for k in ("file_name", "skeletons", "label") if k not in d]
    if missing:
        raise DataFormatError(path, f"missing key(s) {missing}; expected file_name, skeletons, label")
    name = d["file_name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataFormatError(path, f"file_name {name!r} is not like 'a01_s01_e00_v01' (action, subject, "
                                    "repetition, view)")
    label = d["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not 1 <= label <= len(NUCLA_CLASSES):
        raise DataFormatError(path, f"label {label!r} is not an integer 1..{len(NUCLA_CLASSES)}")
    sk = d["skeletons"]
    if not isinstance(sk, list) or not sk:
        raise DataFormatError(path, "skeletons is empty or not a list; expected [T][20][3] numbers, T >= 1")
    try:
        arr = np.asarray(sk)
    except ValueError:  # ragged nesting
        arr = np.empty(0, dtype=object)
    if arr.ndim != 3 or arr.shape[1:] != (_JOINTS, 3) or arr.dtype.kind not in "iuf":
        _diagnose_skeletons(path, sk)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        t = int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(1))[0])
        raise DataFormatError(path, f"NaN or inf coordinate in skeletons frame {t}; expected finite numbers")
    return arr[:, None], label - 1, name


def _diagnose_skeletons(path: Path, sk: list) -> None:
    """Raise a DataFormatError naming the first frame/joint of ``sk`` that is not [20][3] numbers."""
    for t, frame in enumerate(sk):
        if not isinstance(frame, list) or len(frame) != _JOINTS:
            got = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise DataFormatError(path, f"skeletons frame {t} has {got} joints; expected {_JOINTS} joints of (x, y, z)")
        for j, joint in enumerate(frame):
            if not isinstance(joint, list) or len(joint) != 3:
                raise DataFormatError(path, f"skeletons frame {t} joint {j} is {joint!r}; expected [x, y, z]")
            for v in joint:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise DataFormatError(path, f"skeletons frame {t} joint {j} has non-numeric value {v!r}")
    raise DataFormatError(path, "skeletons is not a [T][20][3] array of numbers")


def find_nucla_files(root: str | Path) -> list[Path]:
    """The JSON files of ``<root>/all_sqe`` (or of root itself), sorted by name."""
    root = Path(root)
    if not root.exists():
        raise DataFormatError(root, "does not exist; expected the N-UCLA folder with all_sqe/*.json")
    if not root.is_dir():
        raise DataFormatError(root, "is not a folder; expected the N-UCLA folder with all_sqe/*.json")
    folder = root / "all_sqe" if (root / "all_sqe").is_dir() else root
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DataFormatError(folder, "no .json files found; expected all_sqe/aAA_sSS_eEE_vVV.json files")
    return files


@register_format(
    "nucla",
    "Northwestern-UCLA Multiview Action 3D (1484 one-person sequences, 10 classes, 3 views, 20 joints); "
    "CTR-GCN's all_sqe/*.json",
    protocols=("xview", "view1", "view2", "view3"),
    default_pre=Preprocess(frames=60, persons=1, length_mode="crop", centre="joint"),
)
def read_nucla(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Read N-UCLA into a canonical dataset.

    Args:
        root: the folder holding ``all_sqe/`` (or the JSON files directly).
        pre: preprocessing (default T=60, M=1, crop, centre on the spine joint).
        skip_bad: skip broken files, listing each as "path: reason" in ``skipped``.

    Returns:
        x (N, T, M, 20, 3); labels 0..9; meta ``name`` (file_name), ``subject`` ("s01"), ``view``
        (int 1..3), ``set`` (the repetition, "e00").
    """
    if options:
        raise ConfigError(f"format 'nucla' takes no options, got {sorted(options)}")
    rows, skipped = read_each(find_nucla_files(root), read_nucla_file, skip_bad, root)
    seqs, labels, names = (list(col) for col in zip(*rows))
    x, lengths = to_canonical(seqs, KINECT20, pre)
    parts = [_NAME_RE.match(n).groups() for n in names]  # type: ignore[union-attr]
    view = np.asarray([int(p[3]) for p in parts], dtype=np.int64)
    protocols = {"xview": (np.flatnonzero(np.isin(view, (1, 2))), np.flatnonzero(view == 3))}
    for v in (1, 2, 3):
        protocols[f"view{v}"] = (np.flatnonzero(view != v), np.flatnonzero(view == v))
    return SkeletonDataset(
        x=x, lengths=lengths, labels=np.asarray(labels, dtype=np.int64), layout=KINECT20,
        meta={
            "name": np.asarray(names),
            "subject": np.asarray([f"s{p[1]}" for p in parts]),
            "view": view,
            "set": np.asarray([f"e{p[2]}" for p in parts]),
            # one performance, filmed by the three cameras at once: the name without its view
            "instance": np.asarray([n.rsplit("_v", 1)[0] for n in names]),
            "frames": np.asarray([s.shape[0] for s in seqs], dtype=np.int64),
        },
        class_names=list(NUCLA_CLASSES), protocols=protocols, name="nucla", skipped=skipped,
    )
