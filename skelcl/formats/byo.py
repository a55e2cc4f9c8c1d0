"""Readers for bring-your-own data: the array files other skeleton codebases already produce.

Formats (each registered under its own name):

* ``ctrgcn_npz`` — CTR-GCN's ``.npz``: ``x_train`` (N, T, M*V*C) with M=2, C=3 (V inferred from the
  width), one-hot or integer ``y_train``, and ``x_test`` / ``y_test``. Protocol ``default``.
* ``stgcn`` — st-gcn / CrosSCLR / AimCLR pairs ``<split>_data.npy`` (N, C, T, V, M) and
  ``<split>_label.pkl`` (a pickle of ``(names, labels)``). Root is a folder with ``train_*`` and
  ``val_*`` (or ``test_*``) files (protocol ``default``), or one ``*_data.npy`` file (no protocol).
  The ``.npy`` is memory-mapped, so NTU-sized files are read sample by sample.
* ``pyskl`` — the pyskl / mmaction2 annotation pickle: ``annotations`` (dicts with ``frame_dir``,
  0-based ``label``, ``keypoint`` (M, T, V, C) with C = 2 or 3, ``total_frames``) and ``split`` (name
  lists). Each ``<p>train`` key that pairs with ``<p>val`` or ``<p>test`` becomes protocol ``<p>``
  (``xsub_train`` / ``xsub_val`` -> ``xsub``; plain ``train`` / ``val`` -> ``default``).
* ``npz`` — a plain ``.npz``: ``x`` (N, T, M, V, C) (or (N, T, V, C) for one person), ``y`` (N,),
  optional ``lengths``, ``subject``, ``view``, ``names``, ``class_names``; ``train_idx`` and
  ``test_idx`` give protocol ``default``. Without ``y`` (or where it is -1) a sequence is
  unlabelled: pretraining (``data.protocol: all`` without a split) and ``skelcl embed`` use it,
  the probes leave it out.

Every format takes the option ``layout`` (see :func:`parse_layout`); without it the layout is
inferred from the joint count (25 -> ntu25, 20 -> kinect20, 15 -> sbu15). Where lengths are not in
the file, each sample's length is found by dropping trailing all-zero frames (the zero padding these
formats use). Default preprocessing: T=64, M=2, crop, centre on the layout's centre joint.

Security: ``stgcn`` and ``pyskl`` files are Python pickles, and loading a pickle can run arbitrary
code. Only load pickles from sources you trust. ``.npz`` / ``.npy`` files are read with
``allow_pickle=False``.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..layouts import JointLayout, custom_layout, get_layout
from ..store import Preprocess, SkeletonDataset, to_canonical
from . import register_format

_DEFAULT_PRE = Preprocess(frames=64, persons=2, length_mode="crop", centre="joint")
_LAYOUT_HELP = ("joint layout: ntu25, kinect20, sbu15 or custom:V:CENTRE (V joints, 0-based centre joint); "
                "default: inferred from the joint count (25, 20, 15)")
_OPTIONS = {"layout": _LAYOUT_HELP}
_PICKLE_NOTE = " Pickle files can run code when loaded: only load files you trust."
_BY_JOINTS = {25: "ntu25", 20: "kinect20", 15: "sbu15"}
_CHUNK = 512  # samples per to_canonical call (bounds memory for NTU-sized files)


def parse_layout(spec: str | JointLayout | None, num_joints: int,
                 source: str | Path | None = None) -> JointLayout:
    """Resolve a layout option against the data's joint count.

    Args:
        spec: None (infer from ``num_joints``), a registered name (``ntu25``, ``kinect20``,
            ``sbu15``), ``"custom:V:CENTRE"`` or a :class:`JointLayout`.
        num_joints: V of the data.
        source: the data file, named in errors.

    Raises:
        ConfigError for an unknown or malformed spec, or when V cannot be inferred;
        DataFormatError (naming ``source``) when the layout's joint count differs from the data's.
    """
    where = f"{source} " if source is not None else "the data "
    if spec is None:
        if num_joints in _BY_JOINTS:
            return get_layout(_BY_JOINTS[num_joints])
        raise ConfigError(f"{where}has {num_joints} joints, which matches no known layout (25 ntu25, "
                          f"20 kinect20, 15 sbu15); pass --layout custom:{num_joints}:CENTRE "
                          "(CENTRE = 0-based index of the middle-spine joint)")
    if isinstance(spec, JointLayout):
        layout = spec
    elif isinstance(spec, str):
        s = spec.strip()
        if s.lower().startswith("custom"):
            m = re.fullmatch(r"custom:(\d+):(\d+)", s, flags=re.IGNORECASE)
            if not m:
                raise ConfigError(f"layout {spec!r} is not of the form custom:V:CENTRE (e.g. custom:17:0)")
            v, centre = int(m.group(1)), int(m.group(2))
            if v < 1 or centre >= v:
                raise ConfigError(f"layout {spec!r}: CENTRE must be a joint index 0..V-1")
            layout = custom_layout(v, centre, name=f"custom{v}")
        else:
            try:
                layout = get_layout(s.lower())
            except ValueError as exc:
                raise ConfigError(f"{exc}; or custom:V:CENTRE") from None
    else:
        raise ConfigError(f"layout must be a name, 'custom:V:CENTRE' or a JointLayout, got {type(spec).__name__}")
    if layout.num_joints != num_joints:
        msg = (f"has {num_joints} joints but layout {layout.name!r} has {layout.num_joints}; "
               f"pass a layout with {num_joints} joints (e.g. --layout custom:{num_joints}:CENTRE)")
        if source is not None:
            raise DataFormatError(source, msg)
        raise ConfigError(f"the data {msg}")
    return layout


def _check_options(fmt: str, options: dict[str, Any]) -> Any:
    extra = sorted(set(options) - {"layout"})
    if extra:
        raise ConfigError(f"format {fmt!r} takes only the option 'layout', got {extra}")
    return options.get("layout")


def infer_length(seq: np.ndarray) -> int:
    """Frames up to the last one with any non-zero value, for (T, ...) arrays (0 if all zero)."""
    nz = np.flatnonzero(np.abs(seq).reshape(seq.shape[0], -1).max(1) > 0) if seq.shape[0] else []
    return int(nz[-1]) + 1 if len(nz) else 0


def _labels(path: Path, y: Any, n: int, what: str) -> np.ndarray:
    """Integer labels (n,) from integer or one-hot (n, K) input; -1 means unknown."""
    try:
        y = np.asarray(y)
    except ValueError:
        raise DataFormatError(path, f"{what} is not an array of labels") from None
    if y.ndim == 2 and y.shape[0] == n and y.dtype.kind in "biuf":
        if not (np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all()):
            raise DataFormatError(path, f"{what} is 2-D {y.shape} but not one-hot; expected integer labels "
                                        "(N,) or one-hot (N, K)")
        return y.argmax(1).astype(np.int64)
    if y.ndim != 1:
        raise DataFormatError(path, f"{what} has shape {y.shape}; expected integer labels (N,) or one-hot (N, K)")
    if y.shape[0] != n:
        raise DataFormatError(path, f"label/sample count mismatch: {what} has {y.shape[0]} labels for {n} samples")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all())):
        raise DataFormatError(path, f"{what} must hold integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and y.min() < -1:
        raise DataFormatError(path, f"{what} has label {int(y.min())}; expected class ids >= 0 (-1 = unknown)")
    return y


def _index_array(path: Path, a: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise DataFormatError(path, f"{what} must be a 1-D integer index array, got shape {a.shape} dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise DataFormatError(path, f"{what} has indices outside 0..{n - 1}")
    return a


def _build(*, fmt: str, path: Path, samples: Iterable[np.ndarray], n: int, names: list[str],
           labels: np.ndarray, layout: JointLayout, channels: int, pre: Preprocess, skip_bad: bool,
           lengths: np.ndarray | None = None, meta: dict[str, np.ndarray] | None = None,
           protocols: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
           class_names: list[str] | None = None) -> SkeletonDataset:
    """Validate raw samples and turn them into a canonical dataset, a chunk at a time.

    Args:
        samples: yields n arrays (T_i, M_i, V, C), zero-padded at the end where lengths are None.
        layout, channels: what every sample must match (V = layout.num_joints, C = channels).
        lengths: true frame counts, else inferred from trailing all-zero frames.
        protocols: name -> (train, test) indices into the n samples (remapped when samples are skipped).
    """
    if channels not in (2, 3):
        raise DataFormatError(path, f"samples have {channels} coordinates per joint; expected 2 or 3 (x, y[, z])")
    x = np.zeros((n, pre.frames, pre.persons, layout.num_joints, channels), dtype=pre.dtype)
    keep = np.ones(n, dtype=bool)
    skipped: list[str] = []
    out_len = np.zeros(n, dtype=np.int64)
    raw_frames = np.zeros(n, dtype=np.int64)
    batch: list[np.ndarray] = []
    batch_idx: list[int] = []

    def flush() -> None:
        if batch:
            xb, lb = to_canonical(batch, layout, pre)
            raw_frames[batch_idx] = [b.shape[0] for b in batch]
            x[batch_idx] = xb
            out_len[batch_idx] = lb
            batch.clear()
            batch_idx.clear()

    count = 0
    for i, raw in enumerate(samples):
        count += 1
        raw = np.asarray(raw)
        try:
            if raw.ndim != 4 or min(raw.shape) < 1:
                raise ValueError(f"has shape {raw.shape}; expected (frames, persons, joints, coords), all >= 1")
            if raw.dtype.kind not in "iuf":
                raise ValueError(f"has dtype {raw.dtype}; expected numbers")
            if raw.shape[2] != layout.num_joints:
                raise ValueError(f"has {raw.shape[2]} joints; expected {layout.num_joints} (layout {layout.name})")
            if raw.shape[3] != channels:
                raise ValueError(f"has {raw.shape[3]} coordinates per joint; expected {channels}")
            raw = raw.astype(np.float32, copy=False)
            if not np.isfinite(raw).all():
                t = int(np.flatnonzero(~np.isfinite(raw).reshape(raw.shape[0], -1).all(1))[0])
                raise ValueError(f"has NaN or inf coordinates (frame {t})")
            if lengths is not None:
                length = int(lengths[i])
                if not 1 <= length <= raw.shape[0]:
                    raise ValueError(f"length {length} is outside 1..{raw.shape[0]} (the stored frames)")
            else:
                length = infer_length(raw)
                if length == 0:
                    raise ValueError("is all zeros (no frame with a joint)")
        except ValueError as exc:
            reason = f"sample {i} ({names[i]}) {exc}"
            if not skip_bad:
                raise DataFormatError(path, reason) from None
            skipped.append(f"{path}: {reason}")
            keep[i] = False
            continue
        batch.append(raw[:length])
        batch_idx.append(i)
        if len(batch) >= _CHUNK:
            flush()
    flush()
    if count != n:
        raise DataFormatError(path, f"label/sample count mismatch: {n} labels but {count} samples")
    if not keep.any():
        first = skipped[0] if skipped else "no samples"
        raise DataFormatError(path, f"no usable samples; first problem: {first}")
    meta = dict(meta or {})
    meta["name"] = np.asarray(names)
    meta["frames"] = raw_frames
    if not keep.all():
        x, out_len, labels = x[keep], out_len[keep], labels[keep]
        meta = {k: np.asarray(v)[keep] for k, v in meta.items()}
    new_index = np.cumsum(keep) - 1
    protos = {}
    for pname, (tr, te) in (protocols or {}).items():
        protos[pname] = (new_index[tr[keep[tr]]], new_index[te[keep[te]]])
    if class_names is None:
        k = int(labels.max()) + 1 if labels.size else 0
        class_names = [f"class_{c}" for c in range(k)]
    return SkeletonDataset(x=x, lengths=out_len, labels=labels, layout=layout, meta=meta,
                           class_names=list(class_names), protocols=protos, name=fmt, skipped=skipped)


# ---------------------------------------------------------------- .npz helpers


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise DataFormatError(path, "does not exist or is not a file; expected an .npz archive")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # zipfile / format errors of many kinds
        raise DataFormatError(path, f"cannot be read as an .npz archive ({exc}); is it truncated, or not "
                                    "written by numpy.savez?") from None


def _npz_get(path: Path, z: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    if key not in z.files:
        raise DataFormatError(path, f"missing array {key!r}; it has {sorted(z.files)}")
    try:
        return z[key]
    except ValueError as exc:
        raise DataFormatError(path, f"array {key!r} cannot be read ({exc}); expected a numeric array") from None


def _npz_shape(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, streamable) of one array of an .npz without reading its data."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return (), np.dtype(object), False
    except KeyError:
        raise DataFormatError(path, f"missing array {key!r}") from None
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataFormatError(path, f"array {key!r} cannot be read ({exc})") from None
    if dtype.hasobject:
        raise DataFormatError(path, f"array {key!r} holds Python objects; expected a numeric array")
    return tuple(shape), dtype, not fortran


def _npz_rows(path: Path, key: str, z: np.lib.npyio.NpzFile) -> tuple[tuple[int, ...], Iterator[np.ndarray]]:
    """Shape and an iterator over the rows of a big .npz array, streamed from the archive.

    Streaming keeps memory at one chunk of rows instead of the whole (possibly many-GB) array.
    """
    if key not in z.files:
        raise DataFormatError(path, f"missing array {key!r}; it has {sorted(z.files)}")
    shape, dtype, streamable = _npz_shape(path, key)
    if not streamable:  # Fortran order or a newer .npy version: read it whole
        arr = _npz_get(path, z, key)
        return arr.shape, iter(arr)
    if not shape:
        raise DataFormatError(path, f"array {key!r} is a scalar; expected one row per sample")
    row_items = math.prod(shape[1:])
    row_bytes = row_items * dtype.itemsize

    def rows() -> Iterator[np.ndarray]:
        chunk = max(1, (64 << 20) // max(row_bytes, 1))
        with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as f:
            version = np.lib.format.read_magic(f)  # skip the header: 1.0 or 2.0 (checked above)
            (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            for start in range(0, shape[0], chunk):
                k = min(chunk, shape[0] - start)
                try:
                    buf = f.read(k * row_bytes)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                    raise DataFormatError(path, f"array {key!r} is corrupt near row {start} ({exc})") from None
                if len(buf) != k * row_bytes:
                    raise DataFormatError(path, f"array {key!r} is truncated: expected {shape[0]} rows, "
                                                f"the data ends in row {start + len(buf) // max(row_bytes, 1)}")
                yield from np.frombuffer(buf, dtype=dtype).reshape((k,) + shape[1:])

    return shape, rows()


# ---------------------------------------------------------------- ctrgcn_npz


@register_format(
    "ctrgcn_npz",
    "CTR-GCN .npz: x_train/x_test (N, T, 2*V*3), y_train/y_test one-hot or integer",
    protocols=("default",), default_pre=_DEFAULT_PRE, options=_OPTIONS,
)
def read_ctrgcn_npz(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Read a CTR-GCN ``.npz``; train samples come first, then test (protocol ``default``).

    Returns x (N, T, M, V, C) with labels from ``y_train`` / ``y_test`` and meta ``name``
    ("train/000000", "test/000000").
    """
    layout_spec = _check_options("ctrgcn_npz", options)
    path = Path(root)
    z = _open_npz(path)
    parts = ["train"] + (["test"] if "x_test" in z.files or "y_test" in z.files else [])
    shapes, iters, labels = [], [], []
    for part in parts:
        shape, rows = _npz_rows(path, f"x_{part}", z)
        if len(shape) != 3:
            raise DataFormatError(path, f"x_{part} has shape {shape}; expected (N, T, 2*V*3)")
        if shape[2] % 6:
            raise DataFormatError(path, f"x_{part} has width {shape[2]}, not 2 persons x V joints x 3 coordinates "
                                        "(a multiple of 6)")
        labels.append(_labels(path, _npz_get(path, z, f"y_{part}"), shape[0], f"y_{part}"))
        shapes.append(shape)
        iters.append(rows)
    widths = {s[2] for s in shapes}
    if len(widths) != 1:
        raise DataFormatError(path, f"x_train and x_test widths differ: {sorted(widths)}")
    v = shapes[0][2] // 6

    def samples() -> Iterator[np.ndarray]:
        for shape, rows in zip(shapes, iters):
            for row in rows:
                yield row.reshape(shape[1], 2, v, 3)

    counts = [s[0] for s in shapes]
    names = [f"{p}/{i:06d}" for p, c in zip(parts, counts) for i in range(c)]
    protocols = {}
    if len(parts) == 2:
        protocols["default"] = (np.arange(counts[0]), counts[0] + np.arange(counts[1]))
    layout = parse_layout(layout_spec, v, path)
    return _build(fmt="ctrgcn_npz", path=path, samples=samples(), n=sum(counts), names=names,
                  labels=np.concatenate(labels), layout=layout, channels=3, pre=pre, skip_bad=skip_bad,
                  protocols=protocols)


# ---------------------------------------------------------------- stgcn


def _load_pickle(path: Path) -> Any:
    """Unpickle a trusted file; Python 2 pickles (st-gcn's) are read with latin1."""
    if not path.is_file():
        raise DataFormatError(path, "does not exist or is not a file; expected a pickle")
    try:
        with open(path, "rb") as fh:
            try:
                return pickle.load(fh)
            except UnicodeDecodeError:
                fh.seek(0)
                return pickle.load(fh, encoding="latin1")
    except Exception as exc:  # unpickling can fail in many ways
        raise DataFormatError(path, f"cannot be unpickled ({type(exc).__name__}: {exc}); expected a pickle") from None


def _stgcn_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """[(part, data.npy, label.pkl)] for a folder (train + val/test) or one ``*_data.npy``."""
    if root.is_file():
        if not root.name.endswith("_data.npy"):
            raise DataFormatError(root, "expected a file named <split>_data.npy (with <split>_label.pkl beside it)")
        prefix = root.name[: -len("_data.npy")]
        return [(prefix, root, root.with_name(f"{prefix}_label.pkl"))]
    if not root.is_dir():
        raise DataFormatError(root, "does not exist; expected a folder with train_data.npy/train_label.pkl and "
                                    "val_data.npy/val_label.pkl, or one *_data.npy file")
    found = sorted(root.glob("*_data.npy"))
    if not found:
        raise DataFormatError(root, "no *_data.npy files; expected train_data.npy/train_label.pkl and "
                                    "val_data.npy/val_label.pkl (st-gcn layout)")
    names = {p.name[: -len("_data.npy")]: p for p in found}
    test = "val" if "val" in names else "test" if "test" in names else None
    if "train" in names and test:
        parts = ["train", test]
    elif len(names) == 1:
        parts = list(names)
    else:
        raise DataFormatError(root, f"found {sorted(names)} *_data.npy files; expected train + val (or test), "
                                    "or a single file (pass its path as root)")
    return [(p, names[p], root / f"{p}_label.pkl") for p in parts]


@register_format(
    "stgcn",
    "st-gcn / CrosSCLR / AimCLR <split>_data.npy (N, C, T, V, M) + <split>_label.pkl (names, labels); "
    "a folder (train + val) or one *_data.npy." + _PICKLE_NOTE,
    protocols=("default",), default_pre=_DEFAULT_PRE, options=_OPTIONS,
)
def read_stgcn(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Read st-gcn style ``.npy`` + ``.pkl`` pairs (pickles: trusted files only).

    Returns x (N, T, M, V, C); meta ``name`` from the label pickle. With train + val files the train
    samples come first and protocol ``default`` is train vs val.
    """
    layout_spec = _check_options("stgcn", options)
    root = Path(root)
    arrays, labels, names = [], [], []
    for part, data_path, label_path in _stgcn_pairs(root):
        try:
            data = np.load(data_path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise DataFormatError(data_path, f"cannot be read as a .npy array ({exc})") from None
        if data.ndim != 5:
            raise DataFormatError(data_path, f"has shape {data.shape}; expected (N, C, T, V, M)")
        obj = _load_pickle(label_path)
        if not isinstance(obj, (tuple, list)) or len(obj) != 2:
            raise DataFormatError(label_path, "expected a pickle of (names, labels)")
        pnames, plabels = list(obj[0]), obj[1]
        if len(pnames) != data.shape[0]:
            raise DataFormatError(label_path, f"label/sample count mismatch: {len(pnames)} names for "
                                              f"{data.shape[0]} samples in {data_path.name}")
        labels.append(_labels(label_path, plabels, data.shape[0], "labels"))
        names += [str(s) for s in pnames]
        arrays.append(data)
    counts = [a.shape[0] for a in arrays]
    cvs = {(a.shape[1], a.shape[3]) for a in arrays}
    if len(cvs) != 1:
        raise DataFormatError(root, f"the *_data.npy files differ in (C, V): {sorted(cvs)}")
    (channels, v), = cvs
    layout = parse_layout(layout_spec, v, root)

    def samples() -> Iterator[np.ndarray]:
        for a in arrays:
            for i in range(a.shape[0]):
                yield np.asarray(a[i]).transpose(1, 3, 2, 0)  # (C, T, V, M) -> (T, M, V, C)

    protocols = {}
    if len(arrays) == 2:
        protocols["default"] = (np.arange(counts[0]), counts[0] + np.arange(counts[1]))
    return _build(fmt="stgcn", path=root, samples=samples(), n=sum(counts), names=names,
                  labels=np.concatenate(labels), layout=layout, channels=channels, pre=pre, skip_bad=skip_bad,
                  protocols=protocols)


# ---------------------------------------------------------------- pyskl


@register_format(
    "pyskl",
    "pyskl / mmaction2 annotation pickle: annotations (frame_dir, label, keypoint (M, T, V, C=2|3), "
    "total_frames) and split; protocols from the split keys (xsub_train/xsub_val -> xsub)." + _PICKLE_NOTE,
    protocols=(), default_pre=_DEFAULT_PRE, options=_OPTIONS,
)
def read_pyskl(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Read a pyskl annotation pickle (trusted files only).

    Returns x (N, T, M, V, C) in annotation order; meta ``name`` (frame_dir); one protocol per
    ``<p>train`` / ``<p>val`` (or ``<p>test``) pair of ``split``.
    """
    layout_spec = _check_options("pyskl", options)
    path = Path(root)
    obj = _load_pickle(path)
    if isinstance(obj, list):
        anns, split = obj, {}
    elif isinstance(obj, dict):
        if "annotations" not in obj:
            raise DataFormatError(path, f"missing key 'annotations'; it has {sorted(map(str, obj))}")
        anns, split = obj["annotations"], obj.get("split") or {}
    else:
        raise DataFormatError(path, f"expected a dict with 'annotations' and 'split', got {type(obj).__name__}")
    if not isinstance(anns, list) or not anns:
        raise DataFormatError(path, "'annotations' is empty or not a list of dicts")
    if not isinstance(split, dict):
        raise DataFormatError(path, "'split' must be a dict of name lists")
    names, labels, lengths = [], [], []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise DataFormatError(path, f"annotation {i} is a {type(a).__name__}; expected a dict")
        missing = [k for k in ("frame_dir", "label", "keypoint") if k not in a]
        if missing:
            raise DataFormatError(path, f"annotation {i} is missing key(s) {missing}; expected frame_dir, label, "
                                        "keypoint (and total_frames)")
        kp = a["keypoint"]
        if not isinstance(kp, np.ndarray) or kp.ndim != 4:
            shape = getattr(kp, "shape", type(kp).__name__)
            raise DataFormatError(path, f"annotation {i} ({a['frame_dir']}) keypoint is {shape}; expected an "
                                        "array (M, T, V, C)")
        names.append(str(a["frame_dir"]))
        labels.append(a["label"])
        tf = a.get("total_frames", kp.shape[1])
        lengths.append(int(tf) if isinstance(tf, (int, np.integer)) else -1)  # checked against T in _build
    # V and C of the majority of samples (a few broken ones must not decide the layout)
    vc, counts = np.unique(np.asarray([a["keypoint"].shape[2:] for a in anns]), axis=0, return_counts=True)
    v, channels = (int(q) for q in vc[counts.argmax()])
    layout = parse_layout(layout_spec, v, path)
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        dup = next(n for i, n in enumerate(names) if index[n] != i)
        raise DataFormatError(path, f"frame_dir {dup!r} appears more than once; expected unique names")
    protocols = {}
    for key in sorted(split):
        if not str(key).endswith("train"):
            continue
        prefix = str(key)[: -len("train")]
        partner = next((prefix + t for t in ("val", "test") if prefix + t in split), None)
        if partner is None:
            continue
        idx = []
        for k in (key, partner):
            missing = [str(s) for s in split[k] if str(s) not in index]
            if missing:
                raise DataFormatError(path, f"split {k!r} names {len(missing)} sample(s) not in annotations "
                                            f"(first: {missing[:3]})")
            idx.append(np.asarray([index[str(s)] for s in split[k]], dtype=np.int64))
        protocols[prefix.rstrip("_") or "default"] = (idx[0], idx[1])

    def samples() -> Iterator[np.ndarray]:
        for a in anns:
            yield np.asarray(a["keypoint"]).transpose(1, 0, 2, 3)  # (M, T, V, C) -> (T, M, V, C)

    return _build(fmt="pyskl", path=path, samples=samples(), n=len(anns), names=names,
                  labels=_labels(path, labels, len(anns), "label"), layout=layout, channels=channels, pre=pre,
                  skip_bad=skip_bad, lengths=np.asarray(lengths), protocols=protocols)


# ---------------------------------------------------------------- npz


@register_format(
    "npz",
    "plain .npz: x (N, T, M, V, C), optional y (N,) (-1 or absent: unlabelled), lengths, subject, view, names, "
    "class_names, train_idx/test_idx (protocol default)",
    protocols=("default",), default_pre=_DEFAULT_PRE, options=_OPTIONS,
)
def read_npz(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Read a plain ``.npz`` (see the module docstring for its keys).

    Returns x (N, T, M, V, C); meta ``name`` (``names`` or "000000"...) plus ``subject`` / ``view``
    when given; protocol ``default`` when both ``train_idx`` and ``test_idx`` are given.
    """
    layout_spec = _check_options("npz", options)
    path = Path(root)
    z = _open_npz(path)
    shape, rows = _npz_rows(path, "x", z)
    if len(shape) not in (4, 5):
        raise DataFormatError(path, f"x has shape {shape}; expected (N, T, M, V, C) or (N, T, V, C)")
    n = shape[0]
    # no y: unlabelled sequences (label -1), for pretraining and embedding only
    labels = _labels(path, _npz_get(path, z, "y"), n, "y") if "y" in z.files else np.full(n, -1, np.int64)
    lengths = None
    if "lengths" in z.files:
        lengths = _npz_get(path, z, "lengths")
        if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
            raise DataFormatError(path, f"lengths has shape {lengths.shape} dtype {lengths.dtype}; expected ({n},) "
                                        "integers")
    meta = {}
    for key in ("subject", "view"):
        if key in z.files:
            arr = _npz_get(path, z, key)
            if arr.shape != (n,):
                raise DataFormatError(path, f"{key} has shape {arr.shape}; expected ({n},)")
            meta[key] = arr
    names = [f"{i:06d}" for i in range(n)]
    if "names" in z.files:
        arr = _npz_get(path, z, "names")
        if arr.shape != (n,):
            raise DataFormatError(path, f"names has shape {arr.shape}; expected ({n},)")
        names = [str(s) for s in arr]
    class_names = None
    if "class_names" in z.files:
        class_names = [str(s) for s in _npz_get(path, z, "class_names")]
        if labels.size and labels.max() >= len(class_names):
            raise DataFormatError(path, f"y has class {int(labels.max())} but class_names has only "
                                        f"{len(class_names)} names")
    protocols = {}
    has = ("train_idx" in z.files, "test_idx" in z.files)
    if any(has):
        if not all(has):
            raise DataFormatError(path, "has only one of train_idx / test_idx; expected both (or neither)")
        protocols["default"] = (_index_array(path, _npz_get(path, z, "train_idx"), n, "train_idx"),
                                _index_array(path, _npz_get(path, z, "test_idx"), n, "test_idx"))

    layout = parse_layout(layout_spec, shape[-2], path)

    def samples() -> Iterator[np.ndarray]:
        for row in rows:
            yield row[:, None] if row.ndim == 3 else row  # (T, V, C) -> (T, 1, V, C)

    return _build(fmt="npz", path=path, samples=samples(), n=n, names=names, labels=labels,
                  layout=layout, channels=shape[-1], pre=pre, skip_bad=skip_bad, lengths=lengths, meta=meta,
                  protocols=protocols, class_names=class_names)
