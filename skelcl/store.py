"""The canonical in-memory dataset and the preprocessing that makes it.

Every reader returns variable-length sequences (T_i, M_i, V, C); :func:`to_canonical` turns them
into one fixed-shape array (N, T, M, V, C) as the paper does (IV-B3): a fixed length T, the first M
persons (zero-padded when fewer), coordinates centred on the layout's middle-spine joint. Lengths
travel with the data so that padding can be masked later. Protocols are named index splits.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import ConfigError, FolderBusy
from .layouts import JointLayout

LENGTH_MODES = ("crop", "resample", "resample_all")
CENTRE_MODES = ("joint", "first_frame", "none")
VIEW_ALIGN_MODES = ("none", "yaw", "full")
SCALE_MODES = ("none", "bones", "box")
STREAMS = ("joint", "bone")


@dataclass
class Preprocess:
    """How raw sequences become fixed-shape arrays.

    Attributes:
        frames: fixed length T.
        persons: number of persons M kept (the first ones; zero-padded when fewer).
        length_mode: ``crop`` keeps the first T frames of a longer sequence (the released code);
            ``resample`` resamples only longer sequences uniformly to T; ``resample_all`` resamples
            every sequence to exactly T frames (no padding at all). Shorter sequences are
            zero-padded at the end in the first two modes.
        centre: ``joint`` subtracts the centre joint per frame and per person (the paper);
            ``first_frame`` subtracts person 1's centre joint of the first frame from everything,
            keeping global motion; ``none`` leaves coordinates as read.
        view_align: ``none`` (or false) leaves the orientation as read; ``yaw`` (or true) rotates each
            sequence about the vertical (y) axis so that person 1's left-right axis (shoulders + hips,
            averaged over valid frames) points along +x; ``full`` also tilts it so that person 1's
            mean hips-to-shoulders vector points along +y, removing the camera's pitch and roll
            (cameras mounted at other heights or tilts, as across N-UCLA's views).
        scale: ``none`` (or false) keeps the units as read; ``bones`` (or true) divides by person 1's
            mean bone length, making body size irrelevant; ``box`` maps each axis of the whole
            sequence (every person, every valid frame) linearly onto [-1, 1] by its min and max, the
            per-sequence normalisation of CTR-GCN's N-UCLA reader: body size, distance to the camera
            and the extent of the motion along each axis are all removed (the aspect ratio too).
        dtype: storage dtype (``float32`` or ``float16``; batches are always float32).
        person_order: ``file`` keeps the persons in the order read (the paper); ``motion`` puts the
            person who moves most first, so that in two-person interactions slot 1 is consistently
            the active actor (a pusher, a kicker) rather than whoever the sensor listed first.
        stream: ``joint`` keeps joint positions; ``bone`` replaces each joint by its bone vector
            (joint minus its parent in the layout's bone tree rooted at the centre joint; the centre
            joint keeps its position, so the body's path stays), computed after all the steps above.
            The "bone stream" of multi-stream skeleton methods: shape (T, M, V, C) is unchanged.
    """

    frames: int = 64
    persons: int = 2
    length_mode: str = "crop"
    centre: str = "joint"
    view_align: bool | str = "none"
    scale: bool | str = "none"
    dtype: str = "float32"
    person_order: str = "file"
    stream: str = "joint"

    def __post_init__(self) -> None:
        if self.length_mode not in LENGTH_MODES:
            raise ConfigError(f"length_mode must be one of {LENGTH_MODES}, got {self.length_mode!r}")
        if self.centre not in CENTRE_MODES:
            raise ConfigError(f"centre must be one of {CENTRE_MODES}, got {self.centre!r}")
        if self.frames < 1 or self.persons < 1:
            raise ConfigError("frames and persons must be >= 1")
        if self.person_order not in ("file", "motion"):
            raise ConfigError(f"person_order must be 'file' or 'motion', got {self.person_order!r}")
        if isinstance(self.view_align, bool):
            self.view_align = "yaw" if self.view_align else "none"
        if self.view_align not in VIEW_ALIGN_MODES:
            raise ConfigError(f"view_align must be true, false or one of {VIEW_ALIGN_MODES}, got {self.view_align!r}")
        if isinstance(self.scale, bool):
            self.scale = "bones" if self.scale else "none"
        if self.scale not in SCALE_MODES:
            raise ConfigError(f"scale must be true, false or one of {SCALE_MODES}, got {self.scale!r}")
        if self.stream not in STREAMS:
            raise ConfigError(f"stream must be one of {STREAMS}, got {self.stream!r}")
        if self.dtype not in ("float32", "float16"):
            raise ConfigError(f"dtype must be float32 or float16, got {self.dtype!r}")


@dataclass
class SkeletonDataset:
    """A dataset in canonical form.

    Attributes:
        x: (N, T, M, V, C) coordinates, float32 (or float16 to save memory); padding is zero.
        lengths: (N,) int64 valid frame counts (1..T).
        labels: (N,) int64 class ids starting at 0 (-1 where unknown).
        layout: the joint layout.
        meta: per-sample arrays of length N: ``name`` and, where known, ``subject``, ``view``,
            ``setup``, ``set``.
        class_names: one name per class.
        protocols: protocol name -> (train indices, test indices).
        name: dataset name.
        skipped: files skipped by ``skip_bad`` loading, each "path: reason".
    """

    x: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    layout: JointLayout
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    protocols: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    name: str = "dataset"
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.x.ndim != 5:
            raise ValueError(f"x must be (N, T, M, V, C), got shape {self.x.shape}")
        n = self.x.shape[0]
        if self.lengths.shape != (n,) or self.labels.shape != (n,):
            raise ValueError("lengths and labels must have shape (N,)")
        if self.x.shape[3] != self.layout.num_joints:
            raise ValueError(f"x has {self.x.shape[3]} joints but layout {self.layout.name!r} "
                             f"has {self.layout.num_joints}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.labels.max()) + 1

    def split(self, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, test indices) of a named protocol."""
        try:
            return self.protocols[protocol]
        except KeyError:
            known = ", ".join(self.protocols) or "none"
            hint = "" if protocol == "all" else " (data.protocol=all pretrains on every sequence, no split needed)"
            raise ConfigError(f"dataset {self.name!r} has no protocol {protocol!r}; known: {known}{hint}") from None

    def test_copies(self, protocol: str) -> np.ndarray:
        """Test samples of a protocol whose input is an exact copy of a training sample's.

        A copy's test prediction is not a test of generalisation: the probe was fitted on the same
        input with the same label (a copy with another label is counted too). Released datasets do
        hold such files: in CTR-GCN's N-UCLA ``all_sqe``, every v03 recording of "pick up with two
        hands" and "drop trash" (95 of the 464 cross-view test sequences) is byte-identical to its
        v02 recording. Compared are the stored valid frames (x[i, :lengths[i]], after preprocessing,
        which is deterministic per sequence), so this is what the encoder sees.

        Returns:
            sorted dataset indices (a subset of the protocol's test indices), possibly empty.
        """
        tr, te = self.split(protocol)
        seen = {_digest(self.x[i, : int(self.lengths[i])]) for i in tr}
        return np.asarray(sorted(int(i) for i in te if _digest(self.x[i, : int(self.lengths[i])]) in seen),
                          dtype=np.int64)

    def subset(self, idx: np.ndarray) -> "SkeletonDataset":
        """A new dataset with the given samples (protocols are dropped: indices would not match)."""
        idx = np.asarray(idx)
        return replace(self, x=self.x[idx], lengths=self.lengths[idx], labels=self.labels[idx],
                       meta={k: v[idx] for k, v in self.meta.items()}, protocols={})

    def summary(self) -> dict:
        """Counts a person checks first: sequences, classes, frame statistics, persons, splits.

        Frame statistics are of the sequences as read (``meta["frames"]`` when the reader records
        it), before cropping/padding to the fixed length T."""
        frames = np.asarray(self.meta.get("frames", self.lengths))
        present = np.abs(self.x).reshape(len(self), self.x.shape[1], self.x.shape[2], -1).max(axis=(1, 3)) > 0
        return {
            "name": self.name,
            "sequences": len(self),
            "classes": self.num_classes,
            "shape": list(self.x.shape),
            "layout": self.layout.name,
            "frames_min": int(frames.min()) if len(self) else 0,
            "frames_mean": float(frames.mean()) if len(self) else 0.0,
            "frames_max": int(frames.max()) if len(self) else 0,
            "frames_kept": int(self.x.shape[1]),
            "persons_hist": {int(k): int(v) for k, v in zip(*np.unique(present.sum(1), return_counts=True))},
            "protocols": {k: [len(tr), len(te)] for k, (tr, te) in self.protocols.items()},
        }


def _resample(seq: np.ndarray, frames: int) -> np.ndarray:
    """Linear interpolation of (T_i, ...) to (frames, ...)."""
    t = seq.shape[0]
    if t == frames:
        return seq
    pos = np.linspace(0.0, t - 1, frames)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo).reshape(-1, *([1] * (seq.ndim - 1)))
    return (1 - w) * seq[lo] + w * seq[hi]


def _motion(seq: np.ndarray) -> np.ndarray:
    """(M,) total joint displacement of each person of a (T, M, V, C) sequence over frames where present."""
    present = np.abs(seq).reshape(seq.shape[0], seq.shape[1], -1).max(-1) > 0  # (T, M)
    both = present[1:] & present[:-1]
    step = np.linalg.norm(seq[1:] - seq[:-1], axis=-1).sum(-1)  # (T-1, M)
    return (step * both).sum(0)


def _view_align(seq: np.ndarray, present: np.ndarray, layout: JointLayout, full: bool) -> np.ndarray:
    """Rotate (T, M, V, 3) so person 1's left->right vector points along +x (about y only, or fully).

    ``full`` builds an orthonormal body frame from the sequence means: y along hips-to-shoulders
    (the midpoint of the second left/right pair, the hips, to that of the first, the shoulders),
    x along left-to-right made orthogonal to y, z = x cross y; coordinates are expressed in it.
    Where that frame is degenerate (no hips-to-shoulders vector, or it is parallel to left-right)
    the rotation about y alone is used.
    """
    if not layout.left_right:
        return seq
    p0 = seq[:, 0]  # (T, V, 3)
    vec = np.zeros(3)
    for left, right in layout.left_right:
        vec += (p0[:, right] - p0[:, left]).mean(0)
    if full and len(layout.left_right) >= 2:
        (ls, rs), (lh, rh) = layout.left_right[:2]
        up = ((p0[:, ls] + p0[:, rs]) - (p0[:, lh] + p0[:, rh])).mean(0) / 2
        x_axis = vec - (vec @ up) / max(up @ up, 1e-12) * up
        if np.linalg.norm(up) > 1e-8 and np.linalg.norm(x_axis) > 1e-8:
            y_axis = up / np.linalg.norm(up)
            x_axis = x_axis / np.linalg.norm(x_axis)
            rot = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])  # rows: the new axes
            return (seq @ rot.T) * present[None, :, None, None]
    angle = np.arctan2(vec[2], vec[0])  # angle of the vector in the x-z plane
    c, s = np.cos(angle), np.sin(angle)
    # rotation about y by +angle maps (cos a, sin a) in x-z onto +x
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    out = seq @ rot.T
    return out * present[None, :, None, None]


def bone_parents(layout: JointLayout) -> np.ndarray:
    """(V,) parent of each joint in the bone tree rooted at ``layout.centre``; -1 for the centre.

    The tree is found breadth-first over the bones taken as undirected edges, so a layout's bone
    list need not be ordered child-to-parent. Joints no bone reaches are roots too (-1).
    """
    v = layout.num_joints
    nbrs: list[list[int]] = [[] for _ in range(v)]
    for a, b in layout.bones:
        nbrs[a].append(b)
        nbrs[b].append(a)
    parent = np.full(v, -1, dtype=np.int64)
    seen = np.zeros(v, dtype=bool)
    seen[layout.centre] = True
    queue = [layout.centre]
    while queue:
        j = queue.pop(0)
        for k in nbrs[j]:
            if not seen[k]:
                seen[k] = True
                parent[k] = j
                queue.append(k)
    return parent


def to_bones(seq: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """(T, M, V, C) joint positions -> bone vectors (joint minus parent; roots keep their position)."""
    out = seq.copy()
    child = np.flatnonzero(parent >= 0)
    out[:, :, child] = seq[:, :, child] - seq[:, :, parent[child]]
    return out


def to_canonical(
    seqs: Sequence[np.ndarray],
    layout: JointLayout,
    pre: Preprocess,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn variable-length sequences into fixed-shape arrays.

    Args:
        seqs: each (T_i, M_i, V, C) float array, T_i >= 1, M_i >= 1 (absent persons all zero).
        layout: joint layout (for the centre and left/right joints).
        pre: preprocessing settings.

    Returns:
        x (N, T, M, V, C) in ``pre.dtype`` with zero padding, and lengths (N,) int64.
    """
    n = len(seqs)
    v = layout.num_joints
    c = seqs[0].shape[-1] if n else 3
    x = np.zeros((n, pre.frames, pre.persons, v, c), dtype=np.float32)
    lengths = np.zeros(n, dtype=np.int64)
    parent = bone_parents(layout) if pre.stream == "bone" else None
    for i, raw in enumerate(seqs):
        seq = np.asarray(raw, dtype=np.float64)
        if pre.person_order == "motion" and seq.shape[1] > 1:
            seq = seq[:, np.argsort(-_motion(seq), kind="stable")]
        seq = seq[:, : pre.persons]
        t = seq.shape[0]
        if t > pre.frames:
            seq = seq[: pre.frames] if pre.length_mode == "crop" else _resample(seq, pre.frames)
        elif pre.length_mode == "resample_all":
            seq = _resample(seq, pre.frames)
        # a person is present in a frame when any coordinate is non-zero
        frame_present = np.abs(seq).reshape(seq.shape[0], seq.shape[1], -1).max(-1) > 0  # (t, m)
        present = frame_present.any(0)  # (m,)
        if pre.centre == "joint":
            seq = seq - seq[:, :, layout.centre : layout.centre + 1]
        elif pre.centre == "first_frame":
            first = int(np.argmax(frame_present[:, 0])) if frame_present[:, 0].any() else 0
            seq = seq - seq[first, 0, layout.centre]
        seq = seq * frame_present[:, :, None, None]
        if pre.view_align != "none" and c == 3:
            seq = _view_align(seq, present, layout, pre.view_align == "full") * frame_present[:, :, None, None]
        if pre.scale == "box" and frame_present.any():
            seq = _box(seq, frame_present)
        elif pre.scale == "bones" and layout.bones and frame_present[:, 0].any():
            p0 = seq[frame_present[:, 0], 0]
            bl = np.linalg.norm(p0[:, [a for a, _ in layout.bones]] - p0[:, [b for _, b in layout.bones]], axis=-1)
            size = float(bl.mean())
            if size > 1e-8:
                seq = seq / size
        if parent is not None:
            seq = to_bones(seq, parent)  # absent frames are all zero, so their bones are too
        x[i, : seq.shape[0], : seq.shape[1]] = seq
        lengths[i] = seq.shape[0]
    return x.astype(pre.dtype), lengths


def _box(seq: np.ndarray, frame_present: np.ndarray) -> np.ndarray:
    """(t, m, V, C) -> the same with each axis mapped onto [-1, 1] by the min and max over present
    persons' frames; absent frames stay zero, an axis without extent is only centred."""
    pts = seq[frame_present]  # (n, V, C)
    lo = pts.min(axis=(0, 1))
    hi = pts.max(axis=(0, 1))
    span = np.where(hi - lo > 1e-8, hi - lo, 1.0)
    out = (seq - (lo + hi) / 2) / (span / 2)
    return out * frame_present[:, :, None, None]


def _digest(sample: np.ndarray) -> bytes:
    """A 16-byte digest of one sample's array (its shape and dtype included)."""
    a = np.ascontiguousarray(sample)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.digest()


def check_finite(x: np.ndarray, names: Sequence[str] | None = None, source: str = "data") -> None:
    """Raise a clear error naming the first samples with NaN or inf coordinates."""
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bad.any():
        idx = np.flatnonzero(bad)[:5]
        which = [str(names[i]) if names is not None else f"#{i}" for i in idx]
        from .errors import DataFormatError

        raise DataFormatError(source, f"{int(bad.sum())} sample(s) contain NaN or inf coordinates "
                                      f"(first: {', '.join(which)})")


def cache_key(*parts: object) -> str:
    """A short stable hash of anything JSON-serialisable (reader options, file list, version)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def scratch_path(path: Path, suffix: str = "") -> Path:
    """A temporary sibling of ``path`` that only this process writes, for writing ``path`` atomically.

    Why: two processes writing one file at once (parallel runs filling one dataset cache, two
    ``skelcl average`` into one folder) would otherwise share a temporary name and interleave their
    bytes into it; with a name of its own each writes a whole file and ``os.replace`` keeps one. The
    name holds the host and the process id (``NAME.HOST-PID.tmp``), so that a folder shared between
    machines never mistakes another machine's writer for a dead one (:func:`remove_stale_scratch`)."""
    return path.with_name(f"{path.name}.{_host()}-{os.getpid()}.tmp{suffix}")


def _host() -> str:
    """This machine's name, reduced to letters, digits, ``_`` and ``-`` (for file names)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (True when that cannot be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True
    return True


def remove_stale_scratch(path: Path, suffix: str = "") -> list[Path]:
    """Remove the :func:`scratch_path` siblings of ``path`` left by processes of this machine that no
    longer run (a process killed mid-write by SIGKILL or a power cut cannot clean up after itself).
    Those of running processes, of other machines, or of a process id that cannot be checked are
    kept. Returns what was removed."""
    removed = []
    head, tail = f"{path.name}.{_host()}-", f".tmp{suffix}"
    for f in path.parent.glob(f"{glob.escape(head)}*{glob.escape(tail)}"):
        pid = f.name[len(head):len(f.name) - len(tail)]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


@contextmanager
def atomic_write(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a :func:`scratch_path` to write; it replaces ``path`` when the block ends normally and is
    removed when the block raises (Ctrl-C included): no half-written ``path``, no stray scratch file.
    A successful write also removes scratch files that dead processes left (:func:`remove_stale_scratch`)."""
    tmp = scratch_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    remove_stale_scratch(path, suffix)


LOCK_NAME = ".skelcl.lock"
_held: dict[str, int] = {}  # folders this process holds -> nesting depth


def _take_lock(folder: Path) -> int | None:
    """An open descriptor of ``folder/.skelcl.lock`` holding its ``flock``; None where this system or
    file system has no such locks. Raises :class:`FolderBusy` when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    lock = folder / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that is starting"
            os.close(fd)
            raise FolderBusy(f"{folder} is in use by another process ({holder}); two processes writing one run "
                             "folder would mix their checkpoints. Wait for it to end, or give another --out") from None
        except OSError:  # no locks on this file system (some network mounts): run unheld
            os.close(fd)
            lock.unlink(missing_ok=True)
            return None
        try:  # the file we hold must still be the folder's lock (a releasing holder unlinks it)
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def hold_folder(path: str | Path) -> Iterator[Path]:
    """Hold the run folder ``path`` (created) for this process while the block runs.

    Why: a run resumes from its folder's checkpoint, so one command started twice (two terminals, a
    job resubmitted while the first still runs) would give two processes that each train and save
    into the same folder, their checkpoints and metrics interleaved: silent garbage. The second is
    refused instead (:class:`FolderBusy`, naming the holder). The hold is an ``fcntl.flock`` on
    ``path/.skelcl.lock``, which the system drops when its process ends however it ends (SIGKILL
    included), so a killed run leaves nothing to clean up; the file records the holder's host, pid,
    start and command for the message, and is removed on release. Re-entrant within one process (a
    script may hold a folder around library calls that hold it again). A folder this call created is
    removed again if it is still empty at the end (a run refused before writing leaves nothing).
    Where there are no such locks (Windows, some network file systems) the folder is not held.
    """
    folder = Path(path)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    fd = None if key in _held else _take_lock(folder)
    if fd is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()}, pid {os.getpid()}, since {started}: "
                     f"{' '.join(sys.argv)[:300]}\n".encode())
    _held[key] = _held.get(key, 0) + 1
    try:
        yield folder
    finally:
        _held[key] -= 1
        if not _held[key]:
            del _held[key]
        if fd is not None:
            (folder / LOCK_NAME).unlink(missing_ok=True)
            os.close(fd)  # releases the flock
        if created:
            try:
                folder.rmdir()  # only if still empty
            except OSError:
                pass


def save_cache(path: str | Path, ds: SkeletonDataset) -> None:
    """Write a dataset as one compressed ``.npz`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x": ds.x, "lengths": ds.lengths, "labels": ds.labels}
    for k, v in ds.meta.items():
        arrays[f"meta_{k}"] = v
    for k, (tr, te) in ds.protocols.items():
        arrays[f"train_{k}"] = tr
        arrays[f"test_{k}"] = te
    header = {"layout": ds.layout.to_dict(), "class_names": ds.class_names, "name": ds.name,
              "protocols": list(ds.protocols)}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with atomic_write(path, ".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_cache(path: str | Path) -> SkeletonDataset:
    """Read a dataset written by :func:`save_cache`."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(bytes(z["header"]).decode())
        meta = {k[5:]: z[k] for k in z.files if k.startswith("meta_")}
        protocols = {p: (z[f"train_{p}"], z[f"test_{p}"]) for p in header["protocols"]}
        return SkeletonDataset(
            x=z["x"], lengths=z["lengths"], labels=z["labels"],
            layout=JointLayout.from_dict(header["layout"]), meta=meta,
            class_names=list(header["class_names"]), protocols=protocols, name=header["name"],
        )
