"""Reader: ``sbu`` — SBU Kinect Interaction (clean version), Yun et al., CVPRW 2012.

On disk (the layout AS-CAL's SBU feeder globs)::

    <root>/<set>/<action 01..08>/<seq>/skeleton_pos.txt

Each ``skeleton_pos.txt`` is CSV text, one row per frame: ``frame_idx`` then 90 floats, person 1's
15 joints x (x, y, z) followed by person 2's. The values are SBU-normalised to [0, 1]-ish; the SBU
README gives the way back to Kinect real-world coordinates::

    X = 1280 - x * 2560      Y = 960 - y * 1920      Z = z * 10000 / 7.8125

which is roughly millimetres (Z is depth). We divide by 1000 so coordinates are metres-ish and on the
same scale as N-UCLA / NTU. Z is computed from the z column: the released AS-CAL reader computed it
from the y column, which is a bug we do not copy.

Labels 0..7 come from the action folder (01..08). Protocols ``fold1`` .. ``fold5`` are the standard
5-fold cross-validation by set (test = that fold's sets, train = the other four folds' sets). A set
folder that is in no fold (a user's own extra data) is in no protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..layouts import SBU15
from ..store import Preprocess, SkeletonDataset, to_canonical
from . import read_each, register_format

SBU_CLASSES: list[str] = [
    "Approaching", "Departing", "Kicking", "Punching",
    "Pushing", "Hugging", "ShakingHands", "Exchanging objects",
]

# The standard folds (SBU README, AS-CAL feeders/sbu_feeder.py).
SBU_FOLDS: dict[str, tuple[str, ...]] = {
    "fold1": ("s01s02", "s03s04", "s05s02", "s06s04"),
    "fold2": ("s02s03", "s02s07", "s03s05", "s05s03"),
    "fold3": ("s01s03", "s01s07", "s07s01", "s07s03"),
    "fold4": ("s02s01", "s02s06", "s03s02", "s03s06"),
    "fold5": ("s04s02", "s04s03", "s04s06", "s06s02", "s06s03"),
}

_PERSONS, _JOINTS = 2, 15
_COLUMNS = 1 + _PERSONS * _JOINTS * 3  # 91
# SBU README de-normalisation (x, y, z -> roughly mm), then / 1000 for metres-ish.
_OFFSET = np.array([1280.0, 960.0, 0.0])
_FACTOR = np.array([-2560.0, -1920.0, 10000.0 / 7.8125])
_TO_METRES = 1e-3


def denormalise(v: np.ndarray) -> np.ndarray:
    """SBU-normalised (..., 3) values -> metres-ish real-world coordinates (..., 3).

    Each axis uses its own column: X from x, Y from y and Z from z.
    """
    return (_OFFSET + np.asarray(v, dtype=np.float64) * _FACTOR) * _TO_METRES


def read_sbu_file(path: str | Path) -> np.ndarray:
    """Read one ``skeleton_pos.txt``.

    Returns:
        (T, 2, 15, 3) float64 metres-ish coordinates.

    Raises:
        DataFormatError naming the file and line for short/long rows, non-numeric or non-finite
        values, or a file without frames.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not a text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != _COLUMNS:
            raise DataFormatError(path, f"expected {_COLUMNS} comma-separated values (frame index + "
                                        f"2 persons x 15 joints x (x, y, z)), got {len(fields)}", line=lineno)
        try:
            vals = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise DataFormatError(path, f"non-numeric value {bad.strip()!r}; expected numbers", line=lineno) from None
        if not np.isfinite(vals).all():
            raise DataFormatError(path, "NaN or inf coordinate; expected finite numbers", line=lineno)
        rows.append(vals)
    if not rows:
        raise DataFormatError(path, "no frames (empty file); expected one CSV row of 91 values per frame")
    arr = np.asarray(rows, dtype=np.float64)[:, 1:].reshape(len(rows), _PERSONS, _JOINTS, 3)
    return denormalise(arr)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def find_sbu_files(root: str | Path) -> list[Path]:
    """All ``<set>/<action>/<seq>/skeleton_pos.txt`` under root, sorted by (set, action, seq)."""
    root = Path(root)
    if not root.exists():
        raise DataFormatError(root, "does not exist; expected the SBU folder <root>/<set>/<action>/<seq>/"
                                    "skeleton_pos.txt")
    if not root.is_dir():
        raise DataFormatError(root, "is not a folder; expected the SBU folder <root>/<set>/<action>/<seq>/"
                                    "skeleton_pos.txt")
    files = sorted(root.glob("*/*/*/skeleton_pos.txt"))
    if not files:
        raise DataFormatError(root, "no skeleton_pos.txt files found; expected <root>/<set>/<action 01..08>/"
                                    "<seq>/skeleton_pos.txt (e.g. s01s02/01/001/skeleton_pos.txt)")
    return files


@register_format(
    "sbu",
    "SBU Kinect Interaction (282 two-person sequences, 8 classes, 15 joints); "
    "<root>/<set>/<action>/<seq>/skeleton_pos.txt, coordinates de-normalised to metres-ish",
    protocols=tuple(SBU_FOLDS),
    default_pre=Preprocess(frames=40, persons=2, length_mode="crop", centre="joint"),
)
def read_sbu(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Read the SBU folder into a canonical dataset.

    Args:
        root: the folder holding the set folders (``s01s02`` ...).
        pre: preprocessing (default T=40, M=2, crop, centre on the torso joint).
        skip_bad: skip unreadable files, listing each as "path:line: reason" in ``skipped``.

    Returns:
        x (N, T, 2, 15, 3); labels 0..7; meta ``name`` ("s01s02/01/001"), ``set`` and ``subject``
        (both the set folder name: a set is a pair of actors).
    """
    if options:
        raise ConfigError(f"format 'sbu' takes no options, got {sorted(options)}")
    root = Path(root)
    def read_one(f: Path) -> tuple[np.ndarray, int, str, str]:
        seq_dir, action_dir, set_dir = f.parent, f.parent.parent, f.parent.parent.parent
        action = action_dir.name
        if not (action.isdigit() and 1 <= int(action) <= len(SBU_CLASSES)):
            raise DataFormatError(f, f"action folder {action!r} is not a class; expected 01..08")
        return read_sbu_file(f), int(action) - 1, f"{set_dir.name}/{action}/{seq_dir.name}", set_dir.name

    rows, skipped = read_each(find_sbu_files(root), read_one, skip_bad, root)
    seqs, labels, names, sets = (list(col) for col in zip(*rows))
    x, lengths = to_canonical(seqs, SBU15, pre)
    set_arr = np.asarray(sets)
    protocols = {}
    for fold, fold_sets in SBU_FOLDS.items():
        test = np.isin(set_arr, fold_sets)
        train = np.isin(set_arr, [s for k, v in SBU_FOLDS.items() if k != fold for s in v])
        protocols[fold] = (np.flatnonzero(train), np.flatnonzero(test))
    return SkeletonDataset(
        x=x, lengths=lengths, labels=np.asarray(labels, dtype=np.int64), layout=SBU15,
        meta={"name": np.asarray(names), "set": set_arr, "subject": set_arr.copy(),
              "frames": np.asarray([s.shape[0] for s in seqs], dtype=np.int64)},
        class_names=list(SBU_CLASSES), protocols=protocols, name="sbu", skipped=skipped,
    )
