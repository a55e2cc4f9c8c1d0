"""Reader: NTU RGB+D 60 and NTU RGB+D 120 (raw ``.skeleton`` files of the Kinect v2, 25 joints).

What happens to a folder of ``.skeleton`` files:

1. :func:`read_skeleton` parses the official text format strictly (a malformed file raises
   :class:`~skelcl.errors.DataFormatError` naming the file, the 1-based line and what was expected).
2. :func:`select_bodies` picks the persons, following the idea of the CTR-GCN/SGN
   ``get_raw_denoised_data.py`` script (simplified, see its docstring): noise bodies are dropped by
   length and by x/y spread, the most-moving bodies are kept, a body that re-appears under a new
   tracking id continues its person's track, and frames with nobody are cut.
3. The sample name ``SsssCcccPpppRrrrAaaa`` gives setup, camera (``view``), performer (``subject``),
   replication and the action (label = action - 1).
4. :func:`ntu_protocols` builds the standard splits from those metadata arrays: NTU-60 ``xsub`` and
   ``xview``, NTU-120 ``xsub`` and ``xset``. :func:`read_statistics` reads the CTR-GCN/SGN
   ``statistics`` lists so that the split logic can be checked against the published sizes.

Files that hold no body in any frame are excluded automatically (they are the samples of the
dataset's published "missing skeletons" list) and reported in ``dataset.skipped``; the option
``missing_list=PATH`` excludes the names listed in a text file as well (no third-party list is
built in). The parsed dataset is cached as one compressed ``.npz`` keyed by the file names, sizes and
modification times, the preprocessing and the reader version, so a second load takes seconds.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataFormatError
from ..layouts import NTU25
from ..store import Preprocess, SkeletonDataset, cache_key, load_cache, save_cache, to_canonical
from . import register_format

#: bump when parsing or body selection changes, so old caches are not reused
READER_VERSION = 1

NUM_JOINTS = 25
BODY_INFO_FIELDS = 10
JOINT_FIELDS = 12

# Body selection thresholds (the values of CTR-GCN/SGN ``get_raw_denoised_data.py``).
#: a body present in this many frames or fewer is noise (``noise_len_thres``)
NOISE_MAX_FRAMES = 11
#: a frame of a body is noisy when its x extent exceeds this times its y extent (``noise_spr_thres1``)
NOISE_SPREAD_RATIO = 0.8
#: a body is noise when at least this fraction of its frames is noisy (``noise_spr_thres2``)
NOISE_SPREAD_FRACTION = 0.69754

NTU60_TRAIN_SUBJECTS: tuple[int, ...] = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS: tuple[int, ...] = NTU60_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
NTU60_TRAIN_CAMERAS: tuple[int, ...] = (2, 3)

#: the official action names A001..A120 (the first 60 are NTU RGB+D 60)
NTU_ACTIONS: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
    "wear on glasses", "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up",
    "hand waving", "kicking something", "reach into pocket", "hopping (one foot jumping)", "jump up",
    "make a phone call/answer phone", "playing with phone/tablet", "typing on a keyboard",
    "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute",
    "put the palms together", "cross hands in front (say stop)", "sneeze/cough", "staggering",
    "falling", "touch head (headache)", "touch chest (stomachache/heart pain)",
    "touch back (backache)", "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person", "giving something to other person",
    "touch other person's pocket", "handshaking", "walking towards each other",
    "walking apart from each other",
    # NTU RGB+D 120 adds A061..A120
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quiet)", "flick hair", "thumb up",
    "thumb down", "make ok sign", "make victory sign", "staple book", "counting money",
    "cutting nails", "cutting paper (using scissors)", "snapping fingers", "open bottle",
    "sniff (smell)", "squat down", "toss a coin", "fold paper", "ball up paper", "play magic cube",
    "apply cream on face", "apply cream on hand back", "put on bag", "take off bag",
    "put something into a bag", "take something out of a bag", "open a box", "move heavy objects",
    "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms", "arm circles",
    "arm swings", "running on the spot", "butt kicks (kick backward)", "cross toe touch",
    "side kick", "yawn", "stretch oneself", "blow nose", "hit other person with something",
    "wield knife towards other person", "knock over other person (hit with body)",
    "grab other person's stuff", "shoot at other person with a gun", "step on foot", "high-five",
    "cheers and drink", "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear", "exchange things with other person",
    "support somebody with hand", "finger-guessing game (playing rock-paper-scissors)",
)

VARIANTS = {"ntu60": 60, "ntu120": 120}
PROTOCOLS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}

_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$", re.IGNORECASE)
#: the process pool is used only when there are at least this many files per worker
_MIN_FILES_PER_WORKER = 16
_CACHE_DIRNAME = ".skelcl_cache"


# ----------------------------------------------------------------------------------------------
# parsing


@dataclass
class NTUBody:
    """One tracked body of a ``.skeleton`` file.

    Attributes:
        body_id: the Kinect tracking id (a large integer, kept as text).
        frames: (T_b,) int64 0-based indices of the frames the body is present in, increasing.
        joints: (T_b, 25, 3) float32 camera-space x y z in metres for those frames.
    """

    body_id: str
    frames: np.ndarray
    joints: np.ndarray


@dataclass
class NTUSkeleton:
    """A parsed ``.skeleton`` file: its frame count and its bodies in order of first appearance."""

    path: str
    num_frames: int
    bodies: list[NTUBody] = field(default_factory=list)


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataFormatError(path, "not a text file; expected an NTU RGB+D .skeleton text file") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return text.splitlines()


def _int_line(lines: list[str], i: int, path: Path, what: str, expect: int | None = None) -> int:
    """Parse line ``i`` (0-based) as one non-negative integer (``what`` says which)."""
    if i >= len(lines):
        raise DataFormatError(path, f"file ends early: expected {what}, found end of file", line=i + 1)
    tokens = lines[i].split()
    try:
        if len(tokens) != 1:
            raise ValueError
        value = int(tokens[0])
        if value < 0:
            raise ValueError
    except ValueError:
        raise DataFormatError(path, f"expected {what} (one non-negative integer), found {lines[i].strip()[:60]!r}",
                              line=i + 1) from None
    if expect is not None and value != expect:
        raise DataFormatError(path, f"expected {what} {expect}, found {value}", line=i + 1)
    return value


def read_skeleton(path: str | Path) -> NTUSkeleton:
    """Parse one NTU RGB+D ``.skeleton`` file strictly.

    Layout: the frame count; for each frame the body count, then per body a 10-field info line
    (bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
    isRestricted leanX leanY trackingState), the joint count (25) and 25 lines of 12 fields
    (x y z depthX depthY colorX colorY orientationW X Y Z trackingState); only x y z are kept.

    Returns:
        the frame count and per body its id, frame indices and (T_b, 25, 3) coordinates.

    Raises:
        DataFormatError: naming the file and 1-based line when the file is truncated, a count or
            field is not a number, the joint count is not 25, a line has the wrong number of
            fields, a coordinate is NaN/inf, or non-blank text follows the last frame.
    """
    path = Path(path)
    lines = _read_lines(path)
    num_frames = _int_line(lines, 0, path, "the frame count")
    i = 1
    blocks: list[int] = []  # 0-based first line of each 25-joint block
    block_owner: list[tuple[str, int]] = []  # (body id, frame) per block
    for f in range(num_frames):
        nb = _int_line(lines, i, path, f"the body count of frame {f + 1}/{num_frames}")
        i += 1
        for b in range(nb):
            if i >= len(lines):
                raise DataFormatError(path, f"file ends early: expected the info line of body {b + 1} in frame "
                                            f"{f + 1}, found end of file", line=i + 1)
            info = lines[i].split()
            if len(info) != BODY_INFO_FIELDS:
                raise DataFormatError(path, f"expected a body info line of {BODY_INFO_FIELDS} fields (bodyID ... "
                                            f"trackingState) for body {b + 1} of frame {f + 1}, found "
                                            f"{len(info)} field(s)", line=i + 1)
            i += 1
            _int_line(lines, i, path, "the joint count", expect=NUM_JOINTS)
            i += 1
            if i + NUM_JOINTS > len(lines):
                raise DataFormatError(path, f"file ends early: expected {NUM_JOINTS} joint lines for body {b + 1} "
                                            f"of frame {f + 1}, found {len(lines) - i}", line=len(lines) + 1)
            blocks.append(i)
            block_owner.append((info[0], f))
            i += NUM_JOINTS
    for j in range(i, len(lines)):
        if lines[j].strip():
            raise DataFormatError(path, f"unexpected text after the last of {num_frames} frames: "
                                        f"{lines[j].strip()[:60]!r}", line=j + 1)

    if not blocks:
        return NTUSkeleton(str(path), num_frames, [])
    rows: list[list[str]] = []
    for s in blocks:
        for j in range(s, s + NUM_JOINTS):
            r = lines[j].split()
            if len(r) != JOINT_FIELDS:
                raise DataFormatError(path, f"expected a joint line of {JOINT_FIELDS} numbers (x y z depthX depthY "
                                            f"colorX colorY orientationWXYZ trackingState), found {len(r)} "
                                            f"field(s)", line=j + 1)
            rows.append(r)
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        values = None
    if values is None:  # find the offending field for the message
        for k, r in enumerate(rows):
            for c, tok in enumerate(r):
                try:
                    float(tok)
                except ValueError:
                    line = blocks[k // NUM_JOINTS] + k % NUM_JOINTS + 1
                    raise DataFormatError(path, f"field {c + 1} of the joint line is not a number: {tok!r}",
                                          line=line) from None
        raise DataFormatError(path, "joint lines could not be read as numbers")  # pragma: no cover
    xyz = values[:, :3]
    finite = np.isfinite(xyz).all(1)
    if not finite.all():
        k = int(np.flatnonzero(~finite)[0])
        line = blocks[k // NUM_JOINTS] + k % NUM_JOINTS + 1
        raise DataFormatError(path, f"joint coordinate is not finite (x y z = {' '.join(rows[k][:3])}); "
                                    "expected finite numbers", line=line)
    xyz = xyz.reshape(len(blocks), NUM_JOINTS, 3).astype(np.float32)

    order: dict[str, list[int]] = {}
    for k, (bid, _) in enumerate(block_owner):
        order.setdefault(bid, []).append(k)
    bodies = []
    for bid, ks in order.items():
        frames = np.array([block_owner[k][1] for k in ks], dtype=np.int64)
        bodies.append(NTUBody(bid, frames, xyz[ks]))
    return NTUSkeleton(str(path), num_frames, bodies)


def parse_sample_name(name: str) -> dict[str, int]:
    """Metadata from an NTU sample name ``SsssCcccPpppRrrrAaaa`` (``.skeleton`` suffix allowed).

    Returns:
        ``setup``, ``camera``, ``subject`` (the performer), ``replication`` and ``action`` (1-based).

    Raises:
        ValueError: the name does not follow the pattern.
    """
    stem = name[: -len(".skeleton")] if name.lower().endswith(".skeleton") else name
    m = _NAME_RE.match(stem)
    if not m:
        raise ValueError(f"sample name {name!r} does not follow SsssCcccPpppRrrrAaaa "
                         "(e.g. S001C002P003R001A011)")
    s, c, p, r, a = (int(g) for g in m.groups())
    return {"setup": s, "camera": c, "subject": p, "replication": r, "action": a}


def instance_names(names: "np.ndarray | list[str]") -> np.ndarray:
    """One id per performance: the sample name without its camera (``S001C002P003R001A011`` ->
    ``S001P003R001A011``), shared by the cameras that filmed it at once. Other names stay as they are."""
    out = []
    for n in map(str, names):
        m = _NAME_RE.match(n)
        out.append(f"S{m[1]}P{m[3]}R{m[4]}A{m[5]}" if m else n)
    return np.asarray(out)


# ----------------------------------------------------------------------------------------------
# body selection


def body_motion(joints: np.ndarray) -> float:
    """Motion of a body: the per-joint, per-axis variance over time, summed. joints: (T_b, 25, 3)."""
    if len(joints) < 2:
        return 0.0
    return float(np.var(joints.astype(np.float64), axis=0).sum())


def noisy_spread_frames(joints: np.ndarray) -> np.ndarray:
    """(T_b,) bool: frames whose x extent exceeds ``NOISE_SPREAD_RATIO`` times the y extent.

    A standing or sitting person is taller than wide; Kinect's false bodies (furniture, a wall
    corner) are usually wider than tall.
    """
    ext = joints.max(axis=1) - joints.min(axis=1)  # (T_b, 3)
    return ext[:, 0] > NOISE_SPREAD_RATIO * ext[:, 1]


@dataclass
class Selection:
    """The persons chosen from one file.

    Attributes:
        seq: (T', M, 25, 3) float32, M <= max_persons; zeros where a person is absent in a frame.
        frames: (T',) int64 indices of the raw frames kept (frames with nobody are cut).
        tracks: per person slot, the body ids that fill it (a re-tracked person has several).
        dropped: body id -> why it was not used.
    """

    seq: np.ndarray
    frames: np.ndarray
    tracks: list[list[str]]
    dropped: dict[str, str]


def select_bodies(bodies: Sequence[NTUBody], num_frames: int | None = None, max_persons: int = 2) -> Selection:
    """Choose up to ``max_persons`` persons from a file's bodies and assemble (T', M, 25, 3).

    A simplified version of CTR-GCN/SGN ``get_raw_denoised_data``:

    1. With more than one body, bodies present in <= ``NOISE_MAX_FRAMES`` (11) frames are dropped.
    2. With more than one body left, a body is dropped as noise when in at least
       ``NOISE_SPREAD_FRACTION`` (69.754 %) of its frames its x extent exceeds 0.8 times its y extent
       (the least noisy one is kept if this would drop them all); for a partly noisy body the motion
       is taken as the smaller of its motion over all frames and over its non-noisy frames.
    3. If step 1 dropped every body, the most-moving body is used (a file with one body keeps it).
    4. Bodies are taken in order of decreasing motion (:func:`body_motion`); a body whose frames do
       not overlap a kept person's frames continues that person (Kinect often assigns a new id
       when it loses and re-finds a person), otherwise it starts a new person while fewer than
       ``max_persons`` exist, otherwise it is dropped.
    5. Persons are ordered by first appearance (ties: more motion first); frames in which no kept
       person has a non-zero coordinate are cut, as CTR-GCN does.

    Differences to CTR-GCN: overlap is tested on frame sets rather than [first, last] intervals,
    the persons are ordered by first appearance instead of motion, and there is no separate
    one-body code path.

    Args:
        bodies: the parsed bodies (:attr:`NTUSkeleton.bodies`).
        num_frames: the file's frame count (default: last frame of any body + 1).
        max_persons: persons to keep at most.

    Returns:
        a :class:`Selection`; ``seq`` has 0 frames when there are no bodies or all are zero.
    """
    dropped: dict[str, str] = {}
    if num_frames is None:
        num_frames = max((int(b.frames.max()) + 1 for b in bodies if len(b.frames)), default=0)
    if not bodies or num_frames == 0:
        return Selection(np.zeros((0, 0, NUM_JOINTS, 3), np.float32), np.zeros(0, np.int64), [], dropped)
    motion = {b.body_id: body_motion(b.joints) for b in bodies}

    alive = list(bodies)
    if len(alive) > 1:
        for b in bodies:
            if len(b.frames) <= NOISE_MAX_FRAMES:
                dropped[b.body_id] = f"present in only {len(b.frames)} frame(s) (<= {NOISE_MAX_FRAMES})"
        alive = [b for b in bodies if b.body_id not in dropped]
        if not alive:  # every body is short: fall back to the most-moving one
            best = max(bodies, key=lambda b: motion[b.body_id])
            del dropped[best.body_id]
            alive = [best]
    if len(alive) > 1:
        fraction = {}
        for b in alive:
            noisy = noisy_spread_frames(b.joints)
            fraction[b.body_id] = float(noisy.mean())
            if 0 < noisy.sum() < len(noisy):
                motion[b.body_id] = min(motion[b.body_id], body_motion(b.joints[~noisy]))
        spread_noise = [b for b in alive if fraction[b.body_id] >= NOISE_SPREAD_FRACTION]
        if len(spread_noise) == len(alive):  # keep the least noisy one
            keep = min(alive, key=lambda b: (fraction[b.body_id], -motion[b.body_id]))
            spread_noise = [b for b in spread_noise if b is not keep]
        for b in spread_noise:
            dropped[b.body_id] = (f"wider than tall (x extent > {NOISE_SPREAD_RATIO} * y extent) in "
                                  f"{100 * fraction[b.body_id]:.0f}% of its frames")
        alive = [b for b in alive if b.body_id not in dropped]

    tracks: list[list[NTUBody]] = []
    occupied: list[np.ndarray] = []  # (num_frames,) bool per track
    for b in sorted(alive, key=lambda b: -motion[b.body_id]):
        for t, occ in enumerate(occupied):
            if not occ[b.frames].any():
                tracks[t].append(b)
                occ[b.frames] = True
                break
        else:
            if len(tracks) < max_persons:
                tracks.append([b])
                occ = np.zeros(num_frames, dtype=bool)
                occ[b.frames] = True
                occupied.append(occ)
            else:
                dropped[b.body_id] = f"overlaps the {max_persons} person(s) kept, which move more"
    tracks.sort(key=lambda tr: (min(int(b.frames.min()) for b in tr), -motion[tr[0].body_id]))

    seq = np.zeros((num_frames, len(tracks), NUM_JOINTS, 3), dtype=np.float32)
    for m, tr in enumerate(tracks):
        for b in tr:
            seq[b.frames, m] = b.joints
    keep = np.abs(seq).reshape(num_frames, -1).max(axis=1) > 0 if len(tracks) else np.zeros(num_frames, bool)
    frames = np.flatnonzero(keep).astype(np.int64)
    return Selection(seq[keep], frames, [[b.body_id for b in tr] for tr in tracks], dropped)


# ----------------------------------------------------------------------------------------------
# metadata, statistics lists and protocols


def ntu_protocols(meta: dict[str, np.ndarray], variant: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The standard evaluation splits of NTU RGB+D from per-sample metadata.

    ``ntu60``: ``xsub`` (train performers 1 2 4 5 8 9 13 14 15 16 17 18 19 25 27 28 31 34 35 38)
    and ``xview`` (train cameras 2 and 3, test camera 1). ``ntu120``: ``xsub`` (the NTU-60 train
    performers plus 33 more, :data:`NTU120_TRAIN_SUBJECTS`) and ``xset`` (even setup ids train).

    Args:
        meta: arrays of length N: ``subject`` and ``view`` (ntu60) or ``subject`` and ``setup`` (ntu120).
        variant: ``ntu60`` or ``ntu120``.

    Returns:
        protocol name -> (train indices, test indices), int64, increasing.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown NTU variant {variant!r}; expected one of {sorted(VARIANTS)}")
    need = ("subject", "view") if variant == "ntu60" else ("subject", "setup")
    missing = [k for k in need if k not in meta]
    if missing:
        raise ConfigError(f"ntu_protocols({variant!r}) needs metadata {list(need)}; missing {missing}")

    def split(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.flatnonzero(train).astype(np.int64), np.flatnonzero(~train).astype(np.int64)

    subject = np.asarray(meta["subject"])
    if variant == "ntu60":
        return {"xsub": split(np.isin(subject, NTU60_TRAIN_SUBJECTS)),
                "xview": split(np.isin(np.asarray(meta["view"]), NTU60_TRAIN_CAMERAS))}
    return {"xsub": split(np.isin(subject, NTU120_TRAIN_SUBJECTS)),
            "xset": split(np.asarray(meta["setup"]) % 2 == 0)}


def read_statistics(folder: str | Path) -> dict[str, np.ndarray]:
    """Read a CTR-GCN/SGN ``statistics`` folder into metadata arrays.

    ``skes_available_name.txt`` (one sample name a line) is required; the line-aligned
    ``setup.txt``, ``camera.txt``, ``performer.txt``, ``replication.txt`` and ``label.txt``
    (1-based actions) are checked against the names when present.

    Returns:
        ``name`` (str), ``setup``, ``view`` (camera), ``subject`` (performer), ``replication`` and
        ``label`` (0-based action), each an array of length N.
    """
    folder = Path(folder)
    names_file = folder / "skes_available_name.txt"
    if not names_file.is_file():
        raise DataFormatError(folder, "no skes_available_name.txt here; expected a CTR-GCN/SGN NTU statistics folder")
    names = [ln.strip() for ln in names_file.read_text().splitlines()]
    while names and not names[-1]:
        names.pop()
    parsed = []
    for i, n in enumerate(names):
        try:
            parsed.append(parse_sample_name(n))
        except ValueError as exc:
            raise DataFormatError(names_file, str(exc), line=i + 1) from None
    meta: dict[str, np.ndarray] = {"name": np.array(names), "instance": instance_names(names)}
    for key, src in (("setup", "setup"), ("view", "camera"), ("subject", "subject"),
                     ("replication", "replication"), ("label", "action")):
        meta[key] = np.array([p[src] for p in parsed], dtype=np.int64)
    meta["label"] -= 1
    for fname, key, offset in (("setup.txt", "setup", 0), ("camera.txt", "view", 0), ("performer.txt", "subject", 0),
                               ("replication.txt", "replication", 0), ("label.txt", "label", 1)):
        f = folder / fname
        if not f.is_file():
            continue
        values = [ln.strip() for ln in f.read_text().splitlines()]
        while values and not values[-1]:
            values.pop()
        if len(values) != len(names):
            raise DataFormatError(f, f"has {len(values)} lines but skes_available_name.txt has {len(names)}; "
                                     "expected line-aligned lists")
        for i, v in enumerate(values):
            expect = int(meta[key][i]) + offset
            if v != str(expect):
                raise DataFormatError(f, f"expected {expect} (from sample name {names[i]}), found {v!r}", line=i + 1)
    return meta


def read_missing_list(path: str | Path) -> set[str]:
    """Sample names to exclude, one a line (``.skeleton`` suffix, blank lines and ``#`` comments allowed)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataFormatError(path, f"cannot read the missing-skeleton list ({exc.strerror or exc})") from None
    out = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(line[: -len(".skeleton")] if line.lower().endswith(".skeleton") else line)
    return out


# ----------------------------------------------------------------------------------------------
# reading a folder


def _load_one(args: tuple[str, int]) -> tuple[str, Any, Any]:
    """Worker: parse and select one file. Returns (path, seq or None, error tuple or exclusion text)."""
    path, max_persons = args
    try:
        skel = read_skeleton(path)
    except DataFormatError as exc:
        return path, None, (exc.path, exc.message, exc.line)
    sel = select_bodies(skel.bodies, skel.num_frames, max_persons)
    if len(sel.seq) == 0:
        return path, None, "excluded: no body with coordinates in any frame (a missing-skeleton sample)"
    return path, sel.seq, None


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(value, int):
        return bool(value)
    raise ConfigError(f"option {name} must be true or false, got {value!r}")


def _dir_writable(folder: Path) -> bool:
    """Whether a cache can be written in ``folder`` (created if needed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _cache_folder(root_dir: Path, cache_dir: str | Path | None) -> Path | None:
    if cache_dir is not None:
        folder = Path(cache_dir).expanduser()
        if not _dir_writable(folder):
            raise ConfigError(f"cache_dir {folder} cannot be created or written")
        return folder
    # a root without any write permission bit counts as read-only even for a superuser
    root_writable = os.access(root_dir, os.W_OK) and bool(root_dir.stat().st_mode & 0o222)
    local = root_dir / _CACHE_DIRNAME
    if (root_writable or local.is_dir()) and _dir_writable(local):
        return local
    home = Path.home() / ".cache" / "skelcl"
    return home if _dir_writable(home) else None


def _find_files(root: Path) -> list[Path]:
    if not root.exists():
        raise DataFormatError(root, "does not exist; expected a folder of NTU RGB+D .skeleton files")
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob("*.skeleton")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])),
                  key=lambda p: (p.name, str(p)))


def read_ntu(root: str | Path, pre: Preprocess, variant: str = "ntu60", *, skip_bad: bool = False,
             missing_list: str | Path | None = None, workers: int | None = None, cache: bool = True,
             cache_dir: str | Path | None = None, progress: bool | None = None) -> SkeletonDataset:
    """Read all NTU ``.skeleton`` files under ``root`` (recursively) into a canonical dataset.

    Args:
        root: a folder (searched recursively; hidden sub-folders are skipped) or one file.
        pre: preprocessing; ``pre.persons`` persons are selected per file (:func:`select_bodies`).
        variant: ``ntu60`` keeps actions A001-A060 only; ``ntu120`` keeps all.
        skip_bad: skip malformed files (listed in ``dataset.skipped`` as "path: reason").
        missing_list: text file of sample names to exclude (e.g. the dataset's published
            ``samples_with_missing_skeletons.txt``); files with no body at all are excluded anyway.
        workers: parser processes (default ``min(4, cpus)``; a pool is used for large folders only).
        cache: read/write the parsed dataset as ``<cache folder>/<variant>-<key>.npz``.
        cache_dir: cache folder; default ``<root>/.skelcl_cache``, or ``~/.cache/skelcl`` when
            root is read-only (no write permission bit, even for a superuser).
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        the dataset: x (N, T, M, 25, 3), labels = action - 1, meta ``name``, ``setup``, ``view``
        (camera), ``subject`` (performer), ``replication``; protocols of :func:`ntu_protocols`.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown NTU variant {variant!r}; expected one of {sorted(VARIANTS)}")
    root = Path(root).expanduser()
    files = _find_files(root)
    if not files:
        raise DataFormatError(root, "no .skeleton files found (searched recursively); expected NTU RGB+D files "
                                    "named like S001C001P001R001A001.skeleton")
    skipped: list[str] = []

    def bad(path: Path | str, message: str, line: int | None = None) -> None:
        if not skip_bad:
            raise DataFormatError(path, message, line=line)
        skipped.append(f"{path}: line {line}: {message}" if line else f"{path}: {message}")

    excluded = read_missing_list(missing_list) if missing_list else set()
    max_action = VARIANTS[variant]
    chosen: list[tuple[Path, dict[str, int]]] = []
    seen: dict[str, Path] = {}
    for p in files:
        stem = p.name[: -len(".skeleton")]
        try:
            info = parse_sample_name(p.name)
        except ValueError as exc:
            bad(p, str(exc))
            continue
        key = stem.upper()
        if key in excluded or info["action"] > max_action:
            continue
        if key in seen:
            bad(p, f"duplicate sample {stem} (also at {seen[key]})")
            continue
        seen[key] = p
        chosen.append((p, info))
    if not chosen:
        raise DataFormatError(root, f"no {variant} samples among {len(files)} .skeleton file(s) "
                                    f"(expected actions A001-A{max_action:03d} not in the missing list)")

    root_dir = root if root.is_dir() else root.parent
    cache_path: Path | None = None
    if _as_bool(cache, "cache"):
        stats = []
        for p, _ in chosen:
            st = p.stat()
            stats.append([str(p.relative_to(root_dir)), st.st_size, st.st_mtime_ns])
        key = cache_key(variant, READER_VERSION, asdict(pre), bool(skip_bad), stats, skipped)
        folder = _cache_folder(root_dir, cache_dir)
        if folder is not None:
            cache_path = folder / f"{variant}-{key}.npz"
            if cache_path.is_file():
                try:
                    ds = load_cache(cache_path)
                    side = cache_path.with_suffix(".skipped.json")
                    ds.skipped = json.loads(side.read_text()) if side.is_file() else []
                    return ds
                except Exception as exc:  # a damaged cache is rebuilt
                    warnings.warn(f"ignoring unreadable cache {cache_path}: {exc}", stacklevel=2)

    try:
        n_workers = int(workers) if workers is not None else min(4, os.cpu_count() or 1)
    except (TypeError, ValueError):
        n_workers = 0
    if n_workers < 1:
        raise ConfigError(f"option workers must be an integer >= 1, got {workers!r}")
    jobs = [(str(p), pre.persons) for p, _ in chosen]
    infos = {str(p): info for p, info in chosen}
    x = np.zeros((len(jobs), pre.frames, pre.persons, NUM_JOINTS, 3), dtype=pre.dtype)
    lengths = np.zeros(len(jobs), dtype=np.int64)
    kept: list[str] = []
    raw_frames: list[int] = []
    bar = tqdm(total=len(jobs), desc=f"reading {variant}", unit="file",
               disable=(None if progress is None else not _as_bool(progress, "progress")))
    pool = None
    try:
        if n_workers > 1 and len(jobs) >= _MIN_FILES_PER_WORKER * n_workers:
            pool = multiprocessing.get_context().Pool(n_workers)
            results: Iterable = pool.imap(_load_one, jobs, chunksize=8)
        else:
            results = map(_load_one, jobs)
        for path, seq, err in results:
            bar.update(1)
            if seq is None:
                if isinstance(err, str):
                    skipped.append(f"{path}: {err}")
                else:
                    bad(*err)
                continue
            xi, li = to_canonical([seq], NTU25, pre)
            raw_frames.append(seq.shape[0])
            x[len(kept)] = xi[0]
            lengths[len(kept)] = li[0]
            kept.append(path)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    if not kept:
        raise DataFormatError(root, f"no usable {variant} sequence among {len(jobs)} file(s): "
                                    + "; ".join(skipped[:3]))
    n = len(kept)
    if n < len(jobs):
        x, lengths = x[:n], lengths[:n]  # a view: no second copy of a large array
    meta = {"name": np.array([Path(k).name[: -len(".skeleton")] for k in kept]),
            "frames": np.asarray(raw_frames, dtype=np.int64)}
    meta["instance"] = instance_names(meta["name"])
    for key, src in (("setup", "setup"), ("view", "camera"), ("subject", "subject"), ("replication", "replication")):
        meta[key] = np.array([infos[k][src] for k in kept], dtype=np.int64)
    labels = np.array([infos[k]["action"] - 1 for k in kept], dtype=np.int64)
    ds = SkeletonDataset(x=x, lengths=lengths, labels=labels, layout=NTU25, meta=meta,
                         class_names=list(NTU_ACTIONS[:max_action]), protocols=ntu_protocols(meta, variant),
                         name=variant, skipped=skipped)
    if cache_path is not None:
        try:
            cache_path.with_suffix(".skipped.json").write_text(json.dumps(skipped))
            save_cache(cache_path, ds)
        except OSError as exc:
            warnings.warn(f"could not write the cache {cache_path}: {exc}", stacklevel=2)
    return ds


# ----------------------------------------------------------------------------------------------
# registration

_DEFAULT_PRE = Preprocess(frames=150, persons=2, length_mode="crop", centre="joint")
_OPTIONS = {
    "missing_list": "PATH of sample names to exclude (files with no body are excluded anyway)",
    "workers": "parser processes (default min(4, cpus); used for large folders)",
    "cache": "true/false: cache the parsed dataset (default true)",
    "cache_dir": "cache folder (default <root>/.skelcl_cache, or ~/.cache/skelcl when root is read-only)",
    "progress": "true/false: progress bar (default: when the terminal shows it)",
}


def _reader(variant: str):
    def read(root: str | Path, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
        layout = options.pop("layout", None)
        if layout not in (None, "ntu25"):
            raise ConfigError(f"{variant} always uses the ntu25 layout, got layout={layout!r}")
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown {variant} option(s) {unknown}; known: {sorted(_OPTIONS)}")
        return read_ntu(root, pre, variant, skip_bad=skip_bad, **options)

    read.__name__ = f"read_{variant}"
    read.__doc__ = f"Read NTU RGB+D {VARIANTS[variant]} ``.skeleton`` files (see :func:`read_ntu`)."
    return read


read_ntu60 = register_format(
    "ntu60", "NTU RGB+D 60: raw .skeleton files (Kinect v2, 25 joints), actions A001-A060",
    PROTOCOLS["ntu60"], _DEFAULT_PRE, options=_OPTIONS)(_reader("ntu60"))
read_ntu120 = register_format(
    "ntu120", "NTU RGB+D 120: raw .skeleton files (Kinect v2, 25 joints), actions A001-A120",
    PROTOCOLS["ntu120"], _DEFAULT_PRE, options=_OPTIONS)(_reader("ntu120"))
