"""NTU RGB+D 60/120 reader: parsing, body selection, metadata, protocols, cache, errors, CLI.

Uses the 7 genuine ``.skeleton`` files and the statistics lists in shared/data/ntu_samples (see its
PROVENANCE.txt); tests that need them skip when they are absent. Tests that load a folder copy the
files into tmp_path first, so no cache is ever written beside the shared data.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from skelcl.cli import main
from skelcl.errors import ConfigError, DataFormatError
from skelcl.formats import list_formats, load_dataset
from skelcl.formats import ntu
from skelcl.formats.ntu import (NTUBody, ntu_protocols, parse_sample_name, read_skeleton, read_statistics,
                                select_bodies)

# name -> (frames, bodies) as PROVENANCE.txt lists them
GENUINE = {
    "S001C001P001R001A011": (82, 1),
    "S001C003P008R002A058": (70, 2),
    "S002C001P003R001A003": (100, 1),
    "S003C001P015R001A034": (71, 1),
    "S004C002P003R001A017": (124, 1),
    "S001C001P003R002A005": (68, 2),
    "S001C001P004R001A017": (97, 1),
}
NOISY_FILE = "S001C001P003R002A005"
BASE = "S001C001P001R001A011"  # one body, 82 frames: 28 lines per frame


@pytest.fixture(scope="module")
def ntu_dir(shared_data: Path) -> Path:
    d = shared_data / "ntu_samples"
    if not d.is_dir():
        pytest.skip(f"{d} not present")
    return d


@pytest.fixture(scope="module")
def genuine(ntu_dir: Path) -> dict[str, Path]:
    files = {p.stem: p for p in ntu_dir.rglob("*.skeleton")}
    assert set(files) == set(GENUINE)
    return files


@pytest.fixture
def copy_dir(genuine: dict[str, Path], tmp_path: Path) -> Path:
    """The 7 files copied into two sub-folders of tmp_path (as in the shared folder)."""
    root = tmp_path / "ntu"
    for name, p in genuine.items():
        dst = root / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    return root


def _load(root: Path, variant: str = "ntu60", **kw):
    kw.setdefault("cache", False)
    return load_dataset(variant, root=str(root), **kw)


# ------------------------------------------------------------------------------------------ parsing


def test_genuine_files_parse_with_provenance_counts(genuine):
    for name, (frames, nbodies) in GENUINE.items():
        skel = read_skeleton(genuine[name])
        assert skel.num_frames == frames, name
        assert len(skel.bodies) == nbodies, name
        for b in skel.bodies:
            assert b.joints.shape == (len(b.frames), 25, 3) and b.joints.dtype == np.float32
            assert np.isfinite(b.joints).all()
            assert np.all(np.diff(b.frames) > 0)
        # every body of these files is tracked in all frames
        assert all(len(b.frames) == frames for b in skel.bodies), name


def test_first_joint_matches_the_text(genuine):
    skel = read_skeleton(genuine[NOISY_FILE])
    # line 5 of the file: "0.2177176 0.2382496 3.789388 ..."
    np.testing.assert_allclose(skel.bodies[0].joints[0, 0], [0.2177176, 0.2382496, 3.789388], rtol=1e-6)
    assert skel.bodies[0].body_id == "72057594037937513"


def test_noisy_second_body_is_dropped_by_spread(genuine):
    """A005 ("drop", one person): Kinect also tracks a second 'body' that is wider than tall in
    every frame and even moves more than the person; the spread rule drops it."""
    skel = read_skeleton(genuine[NOISY_FILE])
    person, noise = skel.bodies
    assert ntu.noisy_spread_frames(noise.joints).mean() == 1.0
    assert ntu.noisy_spread_frames(person.joints).mean() == 0.0
    assert ntu.body_motion(noise.joints) > ntu.body_motion(person.joints)  # motion alone would pick it
    sel = select_bodies(skel.bodies, skel.num_frames)
    assert sel.tracks == [[person.body_id]]
    assert set(sel.dropped) == {noise.body_id} and "wider than tall" in sel.dropped[noise.body_id]
    assert sel.seq.shape == (68, 1, 25, 3)
    np.testing.assert_array_equal(sel.seq[:, 0], person.joints)


def test_two_person_interaction_keeps_both(genuine):
    skel = read_skeleton(genuine["S001C003P008R002A058"])
    sel = select_bodies(skel.bodies, skel.num_frames)
    assert sel.seq.shape == (70, 2, 25, 3) and not sel.dropped
    # both appear in frame 0: the tie goes to the one that moves more
    motions = [ntu.body_motion(b.joints) for b in skel.bodies]
    assert sel.tracks[0] == [skel.bodies[int(np.argmax(motions))].body_id]
    # max_persons=1 keeps only the most-moving body
    one = select_bodies(skel.bodies, skel.num_frames, max_persons=1)
    assert one.seq.shape == (70, 1, 25, 3) and one.tracks == [sel.tracks[0]]


def _body(bid: str, frames, offset: float, amp: float, seed: int) -> NTUBody:
    rng = np.random.default_rng(seed)
    frames = np.asarray(frames, dtype=np.int64)
    base = np.zeros((25, 3), np.float32)
    base[:, 1] = np.linspace(-0.8, 0.8, 25)  # tall, narrow: a person
    base[:, 0] = np.linspace(-0.2, 0.2, 25) + offset
    base[:, 2] = 3.0
    j = base + amp * rng.standard_normal((len(frames), 25, 3)).astype(np.float32)
    return NTUBody(bid, frames, j.astype(np.float32))


def test_selection_rules_on_constructed_bodies():
    # a re-tracked person (new id after frame 39) continues the same person slot
    a, b = _body("a", range(0, 40), 0.0, 0.05, 0), _body("b", range(40, 80), 0.0, 0.05, 1)
    sel = select_bodies([a, b], 80)
    assert sel.seq.shape == (80, 1, 25, 3) and sorted(sel.tracks[0]) == ["a", "b"]
    # a short-lived body is noise, even if it moves a lot
    c = _body("c", range(10, 20), 1.0, 0.5, 2)
    sel = select_bodies([_body("p", range(60), 0.0, 0.01, 3), c], 60)
    assert sel.tracks == [["p"]] and "only 10 frame" in sel.dropped["c"]
    # every body short: fall back to the most-moving one; frames with nobody are cut
    s1, s2 = _body("s1", range(5, 10), 0.0, 0.01, 4), _body("s2", range(3, 8), 1.0, 0.2, 5)
    sel = select_bodies([s1, s2], 20)
    assert sel.tracks == [["s2"]] and sel.seq.shape == (5, 1, 25, 3)
    np.testing.assert_array_equal(sel.frames, np.arange(3, 8))
    # three overlapping people: the two moving most are kept, ordered by first appearance
    p1, p2, p3 = (_body("late", range(20, 60), 0.0, 0.10, 6), _body("early", range(0, 60), 1.0, 0.05, 7),
                  _body("still", range(0, 60), 2.0, 0.001, 8))
    sel = select_bodies([p1, p2, p3], 60)
    assert sel.tracks == [["early"], ["late"]] and "still" in sel.dropped
    assert np.all(sel.seq[:20, 1] == 0) and np.all(sel.seq[20:, 1] != 0)
    # no bodies at all: an empty selection
    assert select_bodies([], 10).seq.shape[0] == 0


# ------------------------------------------------------------------------------------------ metadata


def test_sample_name_metadata():
    assert parse_sample_name("S017C003P020R002A060.skeleton") == {
        "setup": 17, "camera": 3, "subject": 20, "replication": 2, "action": 60}
    with pytest.raises(ValueError, match="SsssCcccPpppRrrrAaaa"):
        parse_sample_name("S1C1P1R1A1")
    # the cameras of one performance share an instance id; other names are kept as they are
    assert ntu.instance_names(["S017C003P020R002A060", "S017C001P020R002A060", "clip7"]).tolist() == [
        "S017P020R002A060", "S017P020R002A060", "clip7"]


def test_statistics_ntu60_split_sizes(ntu_dir):
    meta = read_statistics(ntu_dir / "statistics_ntu60")
    assert len(meta["name"]) == 56578 and meta["label"].min() == 0 and meta["label"].max() == 59
    splits = ntu_protocols(meta, "ntu60")
    assert set(splits) == {"xsub", "xview"}
    assert [len(i) for i in splits["xsub"]] == [40091, 16487]
    assert [len(i) for i in splits["xview"]] == [37646, 18932]
    for tr, te in splits.values():
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 56578
    assert set(np.unique(meta["view"][splits["xview"][1]])) == {1}


def test_statistics_ntu120_split_sizes(ntu_dir):
    meta = read_statistics(ntu_dir / "statistics_ntu120")
    assert len(meta["name"]) == 113945 and meta["label"].max() == 119
    splits = ntu_protocols(meta, "ntu120")
    assert [len(i) for i in splits["xsub"]] == [63026, 50919]
    assert [len(i) for i in splits["xset"]] == [54468, 59477]
    assert np.all(meta["setup"][splits["xset"][0]] % 2 == 0)


def test_statistics_misaligned_list_is_an_error(ntu_dir, tmp_path):
    src = ntu_dir / "statistics_ntu60"
    names = (src / "skes_available_name.txt").read_text().splitlines()[:50]
    (tmp_path / "skes_available_name.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "camera.txt").write_text("\n".join(["1"] * 49) + "\n")
    with pytest.raises(DataFormatError, match="camera.txt.*49 lines"):
        read_statistics(tmp_path)
    (tmp_path / "camera.txt").write_text("\n".join(["7"] * 50) + "\n")
    with pytest.raises(DataFormatError, match=r"camera.txt:1: expected 1"):
        read_statistics(tmp_path)


def test_protocols_reject_unknown_variant():
    with pytest.raises(ConfigError):
        ntu_protocols({"subject": np.array([1])}, "ntu90")


# ------------------------------------------------------------------------------------------ folder


def test_load_folder_ntu60(copy_dir):
    ds = _load(copy_dir)
    assert len(ds) == 7 and ds.name == "ntu60" and ds.layout.name == "ntu25"
    assert ds.x.shape == (7, 150, 2, 25, 3) and ds.x.dtype == np.float32
    assert len(ds.class_names) == 60 and ds.class_names[0] == "drink water"
    assert list(ds.meta["name"]) == sorted(GENUINE)  # sorted by sample name
    for i, name in enumerate(ds.meta["name"]):
        info = parse_sample_name(name)
        assert ds.labels[i] == info["action"] - 1
        assert ds.meta["subject"][i] == info["subject"] and ds.meta["view"][i] == info["camera"]
        assert ds.meta["setup"][i] == info["setup"] and ds.meta["replication"][i] == info["replication"]
        assert ds.meta["instance"][i] == name[:4] + name[8:]  # the name without its camera
        assert ds.lengths[i] == GENUINE[name][0]  # all shorter than 150: nothing cropped or cut
        persons = 2 if name == "S001C003P008R002A058" else 1  # A005's noise body is gone
        present = np.abs(ds.x[i, : ds.lengths[i]]).reshape(ds.lengths[i], 2, -1).max(-1) > 0
        assert present.any(0).sum() == persons, name
    # centred on the middle-spine joint (index 1) and zero-padded after the last frame
    assert np.all(ds.x[:, :, :, 1] == 0)
    assert np.all(ds.x[0, ds.lengths[0]:] == 0)
    xsub = ds.split("xsub")
    train_subjects = set(ds.meta["subject"][xsub[0]])
    assert train_subjects <= set(ntu.NTU60_TRAIN_SUBJECTS) and 3 not in train_subjects
    assert sorted(ds.split("xview")[1]) == sorted(np.flatnonzero(ds.meta["view"] == 1))
    assert ds.skipped == []


def test_ntu60_keeps_actions_up_to_60_only(copy_dir, genuine):
    shutil.copy(genuine[BASE], copy_dir / "S018C001P001R001A061.skeleton")
    assert len(_load(copy_dir, "ntu60")) == 7
    ds = _load(copy_dir, "ntu120")
    assert len(ds) == 8 and ds.labels.max() == 60 and len(ds.class_names) == 120
    assert set(ds.protocols) == {"xsub", "xset"}


def test_missing_list_and_zero_body_files_are_excluded(copy_dir, tmp_path):
    (copy_dir / "S001C002P005R002A008.skeleton").write_text("3\n0\n0\n0\n")  # no body in any frame
    ds = _load(copy_dir)
    assert len(ds) == 7 and len(ds.skipped) == 1
    assert "S001C002P005R002A008" in ds.skipped[0] and "no body" in ds.skipped[0]
    lst = tmp_path / "missing.txt"
    lst.write_text("# samples to leave out\nS001C002P005R002A008\nS002C001P003R001A003.skeleton\n")
    ds = _load(copy_dir, missing_list=str(lst))
    assert len(ds) == 6 and ds.skipped == [] and "S002C001P003R001A003" not in ds.meta["name"]


def test_worker_pool_gives_the_same_arrays(copy_dir, monkeypatch):
    ref = _load(copy_dir, workers=1)
    monkeypatch.setattr(ntu, "_MIN_FILES_PER_WORKER", 1)
    pooled = _load(copy_dir, workers=2)
    np.testing.assert_array_equal(ref.x, pooled.x)
    np.testing.assert_array_equal(ref.meta["name"], pooled.meta["name"])


def test_cache_round_trip_is_identical_and_faster(copy_dir, monkeypatch):
    t0 = time.perf_counter()
    first = _load(copy_dir, cache=True)
    t1 = time.perf_counter() - t0
    cached = list((copy_dir / ".skelcl_cache").glob("ntu60-*.npz"))
    assert len(cached) == 1

    def no_parsing(*a, **k):
        raise AssertionError("a cached load must not parse files")

    monkeypatch.setattr(ntu, "read_skeleton", no_parsing)
    t0 = time.perf_counter()
    second = _load(copy_dir, cache=True)
    t2 = time.perf_counter() - t0
    print(f"first load {t1 * 1000:.0f} ms, cached load {t2 * 1000:.0f} ms")
    assert t2 < t1
    for a in ("x", "lengths", "labels"):
        np.testing.assert_array_equal(getattr(first, a), getattr(second, a))
    for k in first.meta:
        np.testing.assert_array_equal(first.meta[k], second.meta[k])
    assert first.class_names == second.class_names and set(second.protocols) == {"xsub", "xview"}
    for k in first.protocols:
        np.testing.assert_array_equal(first.protocols[k][0], second.protocols[k][0])
    # other preprocessing -> another cache entry; a changed file -> another key
    monkeypatch.undo()
    _load(copy_dir, cache=True, pre={"frames": 64})
    p = next(copy_dir.rglob(f"{BASE}.skeleton"))
    p.write_text(p.read_text() + "\n")
    _load(copy_dir, cache=True)
    assert len(list((copy_dir / ".skelcl_cache").glob("ntu60-*.npz"))) == 3


def test_cache_dir_option_and_read_only_root_fallback(copy_dir, tmp_path, monkeypatch):
    _load(copy_dir, cache=True, cache_dir=str(tmp_path / "c"))
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1
    assert not (copy_dir / ".skelcl_cache").exists()
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    copy_dir.chmod(0o555)  # read-only (respected even when the tests run as root)
    try:
        _load(copy_dir, cache=True)
    finally:
        copy_dir.chmod(0o755)
    assert not (copy_dir / ".skelcl_cache").exists()
    assert len(list((home / ".cache" / "skelcl").glob("ntu60-*.npz"))) == 1


# ------------------------------------------------------------------------------------------ errors


def _corrupt(text: str, kind: str) -> tuple[str, int]:
    """A corrupted copy of the BASE file and the 1-based line the error must name."""
    lines = text.splitlines()
    if kind == "truncated":
        return "\n".join(lines[:100]) + "\n", 101  # frame 4's joint block (lines 89-113) is cut
    if kind == "non_numeric":
        f = lines[9].split()
        f[1] = "abc"
        lines[9] = " ".join(f)
        return "\n".join(lines) + "\n", 10
    if kind == "joints24":
        assert lines[3].strip() == "25"
        lines[3] = "24"
        return "\n".join(lines) + "\n", 4
    if kind == "nan":
        f = lines[39].split()
        f[0] = "nan"
        lines[39] = " ".join(f)
        return "\n".join(lines) + "\n", 40
    raise ValueError(kind)


KINDS = {"truncated": ("S001C001P001R001A001", "ends early"),
         "non_numeric": ("S001C001P001R001A002", "not a number"),
         "joints24": ("S001C001P001R001A003", "joint count 25, found 24"),
         "nan": ("S001C001P001R001A004", "not finite")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_corrupted_file_names_file_and_line(genuine, tmp_path, kind):
    name, words = KINDS[kind]
    text, line = _corrupt(genuine[BASE].read_text(), kind)
    path = tmp_path / f"{name}.skeleton"
    path.write_text(text)
    with pytest.raises(DataFormatError) as ei:
        read_skeleton(path)
    err = ei.value
    assert err.path == str(path) and err.line == line and words in err.message
    assert f"{name}.skeleton:{line}:" in str(err)


def test_other_malformed_headers(tmp_path):
    cases = {"empty": ("", 1, "frame count"), "frames_text": ("ten\n", 1, "frame count"),
             "info_fields": ("1\n1\n123 0 1\n25\n", 3, "10 fields"),
             "trailing": ("1\n0\nextra stuff\n", 3, "unexpected text")}
    for i, (stem, (text, line, words)) in enumerate(cases.items()):
        path = tmp_path / f"S001C001P001R001A{i + 1:03d}.skeleton"
        path.write_text(text)
        with pytest.raises(DataFormatError) as ei:
            read_skeleton(path)
        assert ei.value.line == line and words in ei.value.message, stem


def test_skip_bad_skips_and_reports(genuine, tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for name in ("S001C001P001R001A011", "S001C003P008R002A058"):
        shutil.copy(genuine[name], root)
    for kind, (name, _) in KINDS.items():
        (root / f"{name}.skeleton").write_text(_corrupt(genuine[BASE].read_text(), kind)[0])
    with pytest.raises(DataFormatError, match=r"S001C001P001R001A001\.skeleton:101:"):
        _load(root)  # the first bad file in sorted order
    (root / "not_an_ntu_name.skeleton").write_text("0\n")
    with pytest.raises(DataFormatError, match=r"not_an_ntu_name\.skeleton: sample name"):
        _load(root)  # names are checked before any file is parsed
    ds = _load(root, skip_bad=True)
    assert len(ds) == 2 and len(ds.skipped) == 5
    for kind, (name, _) in KINDS.items():
        assert any(f"{name}.skeleton: line" in s for s in ds.skipped), kind
    assert any("not_an_ntu_name" in s and "SsssCcccPpppRrrrAaaa" in s for s in ds.skipped)
    # the skipped list survives the cache
    ds1 = _load(root, skip_bad=True, cache=True)
    ds2 = _load(root, skip_bad=True, cache=True)
    assert ds2.skipped == ds1.skipped == ds.skipped


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match="no .skeleton files found"):
        _load(tmp_path)
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataFormatError, match="no .skeleton files found"):
        _load(tmp_path)
    with pytest.raises(DataFormatError, match="does not exist"):
        _load(tmp_path / "nope")
    (tmp_path / "S001C001P001R001A001.skeleton").write_text("2\n0\n0\n")
    with pytest.raises(DataFormatError, match="no usable ntu60 sequence"):
        _load(tmp_path)


def test_unknown_option_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown ntu60 option"):
        _load(tmp_path, bogus=1)
    with pytest.raises(ConfigError, match="ntu25 layout"):
        _load(tmp_path, layout="kinect20")


# ------------------------------------------------------------------------------------------ CLI


def test_registered_and_cli_inspect(copy_dir, capsys):
    infos = {i.name: i for i in list_formats()}
    assert infos["ntu60"].protocols == ("xsub", "xview") and infos["ntu120"].protocols == ("xsub", "xset")
    assert infos["ntu60"].default_pre.frames == 150 and infos["ntu60"].default_pre.persons == 2
    assert main(["inspect", "ntu60", "--root", str(copy_dir)]) == 0
    out = capsys.readouterr().out
    assert "sequences    7" in out and "xsub" in out and "xview" in out
    assert main(["inspect", "ntu60", "--root", str(copy_dir / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
