"""Broken input gives a DataFormatError naming the file (and line) and what was expected; --skip-bad
skips broken files and reports them."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from skelcl.cli import main
from skelcl.errors import DataFormatError
from skelcl.formats import load_dataset

# ---------------------------------------------------------------- synthetic SBU / N-UCLA writers


def _sbu_rows(rng: np.random.Generator, frames: int) -> list[str]:
    vals = rng.uniform(0.1, 0.9, size=(frames, 90))
    return [",".join([str(t + 1)] + [f"{v:.5f}" for v in row]) for t, row in enumerate(vals)]


def write_sbu(root: Path, n_per_action: int = 2, seed: int = 0) -> list[Path]:
    """A tiny SBU tree: set s01s02, actions 01 and 02, CRLF lines like the real files."""
    rng = np.random.default_rng(seed)
    files = []
    for action in ("01", "02"):
        for k in range(1, n_per_action + 1):
            f = root / "s01s02" / action / f"{k:03d}" / "skeleton_pos.txt"
            f.parent.mkdir(parents=True)
            f.write_text("\r\n".join(_sbu_rows(rng, 12)) + "\r\n")
            files.append(f)
    return files


def write_nucla(root: Path, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    (root / "all_sqe").mkdir(parents=True)
    files = []
    for v in (1, 2, 3):
        name = f"a01_s01_e00_v{v:02d}"
        sk = rng.normal(size=(9, 20, 3)).round(4).tolist()
        f = root / "all_sqe" / f"{name}.json"
        f.write_text(json.dumps({"file_name": name, "skeletons": sk, "label": 1}))
        files.append(f)
    return files


def _replace_line(f: Path, lineno: int, new: str) -> None:
    lines = f.read_text().splitlines()
    lines[lineno - 1] = new
    f.write_text("\n".join(lines) + "\n")


def _raises(fmt: str, root: Path, *fragments: str, **kw) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        load_dataset(fmt, root=str(root), **kw)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return info.value


# ---------------------------------------------------------------- SBU


def test_sbu_synthetic_reads(tmp_path: Path) -> None:
    write_sbu(tmp_path)
    ds = load_dataset("sbu", root=str(tmp_path))
    assert len(ds) == 4 and ds.labels.tolist() == [0, 0, 1, 1] and ds.lengths.tolist() == [12] * 4
    # the set is in fold1: test there, train elsewhere
    assert len(ds.split("fold1")[1]) == 4 and len(ds.split("fold2")[0]) == 4


@pytest.mark.parametrize("case, line, fragments", [
    ("short_row", 5, ["expected 91 comma-separated values", "got 40"]),
    ("missing_column", 3, ["expected 91", "got 90"]),
    ("extra_column", 7, ["expected 91", "got 92"]),
    ("non_numeric", 2, ["non-numeric value 'abc'"]),
    ("nan", 4, ["NaN or inf"]),
    ("inf", 6, ["NaN or inf"]),
])
def test_sbu_bad_rows(tmp_path: Path, case: str, line: int, fragments: list[str]) -> None:
    f = write_sbu(tmp_path)[1]
    fields = f.read_text().splitlines()[line - 1].split(",")
    if case == "short_row":
        new = ",".join(fields[:40])
    elif case == "missing_column":
        new = ",".join(fields[:-1])
    elif case == "extra_column":
        new = ",".join(fields + ["0.5"])
    elif case == "non_numeric":
        new = ",".join(fields[:10] + ["abc"] + fields[11:])
    elif case == "nan":
        new = ",".join(fields[:10] + ["nan"] + fields[11:])
    else:
        new = ",".join(fields[:10] + ["inf"] + fields[11:])
    _replace_line(f, line, new)
    err = _raises("sbu", tmp_path, f"{f}:{line}:", *fragments)
    assert err.path == str(f) and err.line == line


def test_sbu_truncated_file(tmp_path: Path) -> None:
    f = write_sbu(tmp_path)[0]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # cut mid-row, as an interrupted copy would
    n_lines = len(data[: len(data) // 2].splitlines())
    _raises("sbu", tmp_path, f"{f}:{n_lines}:", "expected 91")


def test_sbu_empty_file_folder_and_bad_action(tmp_path: Path) -> None:
    files = write_sbu(tmp_path / "a")
    files[0].write_text("")
    _raises("sbu", tmp_path / "a", str(files[0]), "no frames")
    (tmp_path / "empty").mkdir()
    _raises("sbu", tmp_path / "empty", str(tmp_path / "empty"), "no skeleton_pos.txt files found")
    _raises("sbu", tmp_path / "missing", "does not exist")
    files = write_sbu(tmp_path / "b")
    files[0].parent.parent.rename(files[0].parent.parent.with_name("09"))
    _raises("sbu", tmp_path / "b", "action folder '09'", "expected 01..08")


def test_sbu_genuine_files_corrupted(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "sbu" / "s01s02"
    if not src.is_dir():
        pytest.skip("SBU data absent")
    shutil.copytree(src / "03", tmp_path / "s01s02" / "03")
    shutil.copytree(src / "04", tmp_path / "s01s02" / "04")
    good = load_dataset("sbu", root=str(tmp_path))
    f = tmp_path / "s01s02" / "04" / "002" / "skeleton_pos.txt"
    _replace_line(f, 3, f.read_text().splitlines()[2].rsplit(",", 30)[0])  # drop person 2
    _raises("sbu", tmp_path, f"{f}:3:", "expected 91 comma-separated values", "got 61")
    ds = load_dataset("sbu", root=str(tmp_path), skip_bad=True)
    assert len(ds) == len(good) - 1 and len(ds.skipped) == 1
    assert ds.skipped[0].startswith(f"{f}:3: expected 91 comma-separated values")


def test_sbu_skip_bad_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = write_sbu(tmp_path)
    _replace_line(files[0], 2, "1,2,3")
    _replace_line(files[3], 4, "x" * 10)
    assert main(["inspect", "sbu", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{files[0]}:2:" in err and "expected 91" in err and "Traceback" not in err
    assert main(["inspect", "sbu", "--root", str(tmp_path), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "sequences    2" in out
    assert "skipped      2 bad file(s):" in out
    assert f"{files[0]}:2:" in out and f"{files[3]}:4:" in out


def test_sbu_all_files_bad(tmp_path: Path) -> None:
    for f in write_sbu(tmp_path):
        f.write_text("nope\n")
    _raises("sbu", tmp_path, "all 4 files were bad", skip_bad=True)


# ---------------------------------------------------------------- N-UCLA


def _edit_json(f: Path, **changes) -> None:
    d = json.loads(f.read_text())
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    f.write_text(json.dumps(d))


def test_nucla_synthetic_reads(tmp_path: Path) -> None:
    write_nucla(tmp_path)
    ds = load_dataset("nucla", root=str(tmp_path))
    assert len(ds) == 3 and ds.meta["view"].tolist() == [1, 2, 3]
    assert [len(i) for i in ds.split("xview")] == [2, 1]


def test_nucla_truncated_json(tmp_path: Path) -> None:
    f = write_nucla(tmp_path)[1]
    text = json.dumps(json.loads(f.read_text()), indent=1)
    f.write_text(text[: len(text) // 2])
    err = _raises("nucla", tmp_path, str(f), "not valid JSON")
    assert err.line is not None and err.line > 1 and f"{f}:{err.line}:" in str(err)


def test_nucla_bad_contents(tmp_path: Path) -> None:
    f = write_nucla(tmp_path)[0]
    sk = json.loads(f.read_text())["skeletons"]

    cases = [
        ({"skeletons": None}, ["missing key(s) ['skeletons']"]),
        ({"label": 11}, ["label 11 is not an integer 1..10"]),
        ({"label": "3"}, ["label '3'"]),
        ({"file_name": "walk_01"}, ["file_name 'walk_01'", "a01_s01_e00_v01"]),
        ({"skeletons": []}, ["skeletons is empty"]),
        ({"skeletons": sk[:4] + [sk[4][:19]] + sk[5:]}, ["frame 4 has 19 joints; expected 20"]),
        ({"skeletons": [[j[:2] for j in fr] for fr in sk]}, ["frame 0 joint 0", "expected [x, y, z]"]),
        ({"skeletons": [sk[0], [[0.1, "a", 0.2]] * 20]}, ["frame 1 joint 0 has non-numeric value 'a'"]),
        ({"skeletons": [sk[0], [[0.1, None, 0.2]] * 20]}, ["non-numeric value None"]),
    ]
    original = f.read_text()
    for change, fragments in cases:
        f.write_text(original)
        _edit_json(f, **change)
        _raises("nucla", tmp_path, str(f), *fragments)
    f.write_text(original.replace(str(sk[2][3][1]), "NaN", 1))
    _raises("nucla", tmp_path, str(f), "NaN or inf coordinate in skeletons frame 2")
    f.write_text("[1, 2]")
    _raises("nucla", tmp_path, str(f), "expected a JSON object")


def test_nucla_empty_folder_and_skip_bad(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "e" / "all_sqe").mkdir(parents=True)
    _raises("nucla", tmp_path / "e", "all_sqe", "no .json files found")
    files = write_nucla(tmp_path / "d")
    files[2].write_text("{")
    ds = load_dataset("nucla", root=str(tmp_path / "d"), skip_bad=True)
    assert len(ds) == 2 and len(ds.skipped) == 1 and ds.skipped[0].startswith(f"{files[2]}:1:")
    assert main(["inspect", "nucla", "--root", str(tmp_path / "d"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped      1 bad file(s):" in out and str(files[2]) in out


def test_nucla_genuine_file_corrupted(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "nucla" / "all_sqe"
    if not src.is_dir():
        pytest.skip("N-UCLA data absent")
    for name in ("a01_s01_e00_v01", "a02_s02_e01_v02", "a12_s06_e04_v03"):
        shutil.copy(src / f"{name}.json", tmp_path / f"{name}.json")
    assert len(load_dataset("nucla", root=str(tmp_path))) == 3
    f = tmp_path / "a02_s02_e01_v02.json"
    d = json.loads(f.read_text())
    d["skeletons"][1] = d["skeletons"][1][:15]
    f.write_text(json.dumps(d))
    _raises("nucla", tmp_path, str(f), "frame 1 has 15 joints; expected 20")


# ---------------------------------------------------------------- bring-your-own


def _x(n: int = 4, v: int = 25, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 2, size=(n, 10, 2, v, 3)).astype(np.float32)


def test_npz_missing_keys_and_counts(tmp_path: Path) -> None:
    f = tmp_path / "a.npz"
    np.savez(f, x=_x())  # no y: unlabelled (-1), not an error (tests/test_byo.py)
    assert (load_dataset("npz", root=str(f)).labels == -1).all()
    np.savez(f, y=np.zeros(4, int))
    _raises("npz", f, str(f), "missing array 'x'")
    np.savez(f, x=_x(), y=np.zeros(3, int))
    _raises("npz", f, str(f), "label/sample count mismatch", "3 labels for 4 samples")
    np.savez(f, x=_x(), y=np.array([0.5, 1, 2, 3]))
    _raises("npz", f, "must hold integer class ids")
    np.savez(f, x=_x(), y=np.zeros(4, int), train_idx=np.arange(2))
    _raises("npz", f, "only one of train_idx / test_idx")
    np.savez(f, x=_x(), y=np.zeros(4, int), train_idx=np.arange(2), test_idx=np.array([4]))
    _raises("npz", f, "test_idx has indices outside 0..3")
    np.savez(f, x=_x(), y=np.zeros(4, int), lengths=np.array([10, 11, 3, 3]))
    _raises("npz", f, "sample 1 (000001) length 11 is outside 1..10")
    np.savez(f, x=_x()[:, :, 0, :, 0], y=np.zeros(4, int))
    _raises("npz", f, "x has shape (4, 10, 25)", "expected (N, T, M, V, C)")
    np.savez(f, x=np.concatenate([_x(), _x()], axis=-1), y=np.zeros(4, int))
    _raises("npz", f, "6 coordinates per joint; expected 2 or 3")
    f.write_text("not a zip")
    _raises("npz", f, str(f), "cannot be read as an .npz archive")
    _raises("npz", tmp_path / "nope.npz", "does not exist")


def test_npz_nan_and_layout_mismatch(tmp_path: Path) -> None:
    x = _x()
    x[2, 3, 1, 4, 0] = np.inf
    f = tmp_path / "b.npz"
    np.savez(f, x=x, y=np.arange(4))
    _raises("npz", f, f"{f}: sample 2 (000002) has NaN or inf coordinates (frame 3)")
    np.savez(f, x=_x(v=20), y=np.arange(4))
    _raises("npz", f, str(f), "has 20 joints but layout 'ntu25' has 25", layout="ntu25")


def test_ctrgcn_bad(tmp_path: Path) -> None:
    f = tmp_path / "c.npz"
    np.savez(f, x_train=np.zeros((3, 10, 149), np.float32), y_train=np.zeros(3, int))
    _raises("ctrgcn_npz", f, str(f), "width 149", "multiple of 6")
    x = _x().reshape(4, 10, -1)
    np.savez(f, x_train=x, y_train=np.full((4, 3), 0.5))
    _raises("ctrgcn_npz", f, "not one-hot")
    np.savez(f, x_train=x, y_train=np.arange(4), x_test=x)
    _raises("ctrgcn_npz", f, "missing array 'y_test'")
    # a file cut short, and one with damaged bytes inside the big array
    np.savez(f, x_train=x, y_train=np.arange(4))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    _raises("ctrgcn_npz", f, str(f), "cannot be read as an .npz archive", "truncated")
    f.write_bytes(data[:2000] + b"\0" * 16 + data[2016:])
    _raises("ctrgcn_npz", f, f"{f}: array 'x_train' is corrupt")


def test_stgcn_bad(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    _raises("stgcn", d, "no *_data.npy files")
    x = _x().transpose(0, 4, 1, 3, 2)
    np.save(d / "train_data.npy", x)
    with open(d / "train_label.pkl", "wb") as fh:
        pickle.dump((["a", "b", "c"], [0, 1, 2]), fh)
    _raises("stgcn", d, str(d / "train_label.pkl"), "label/sample count mismatch", "3 names for 4 samples")
    with open(d / "train_label.pkl", "wb") as fh:
        pickle.dump({"names": []}, fh)
    _raises("stgcn", d, "expected a pickle of (names, labels)")
    (d / "train_label.pkl").write_bytes(b"garbage")
    _raises("stgcn", d, str(d / "train_label.pkl"), "cannot be unpickled")
    (d / "train_label.pkl").unlink()
    _raises("stgcn", d, str(d / "train_label.pkl"), "does not exist")
    np.save(d / "train_data.npy", x[:, :, :, :, 0])
    _raises("stgcn", d, "expected (N, C, T, V, M)")


def test_pyskl_bad(tmp_path: Path) -> None:
    f = tmp_path / "p.pkl"
    kp = _x(1)[0].transpose(1, 0, 2, 3)
    ann = {"frame_dir": "a", "label": 0, "keypoint": kp, "total_frames": 10}

    def write(obj) -> None:
        with open(f, "wb") as fh:
            pickle.dump(obj, fh)

    write({"split": {}})
    _raises("pyskl", f, str(f), "missing key 'annotations'")
    write({"annotations": [{"frame_dir": "a", "label": 0}]})
    _raises("pyskl", f, "annotation 0 is missing key(s) ['keypoint']")
    write({"annotations": [ann, {**ann, "frame_dir": "b", "keypoint": kp[0]}]})
    _raises("pyskl", f, "annotation 1 (b) keypoint is (10, 25, 3)", "(M, T, V, C)")
    write({"annotations": [ann, {**ann, "frame_dir": "b", "keypoint": kp[:, :, :20]}, {**ann, "frame_dir": "c"}]})
    _raises("pyskl", f, "sample 1 (b) has 20 joints; expected 25")
    write({"annotations": [ann, {**ann, "frame_dir": "b", "total_frames": 12}]})
    _raises("pyskl", f, "sample 1 (b) length 12 is outside 1..10")
    write({"annotations": [ann, {**ann, "frame_dir": "a"}]})
    _raises("pyskl", f, "frame_dir 'a' appears more than once")
    write({"annotations": [ann], "split": {"train": ["a"], "val": ["zz"]}})
    _raises("pyskl", f, "split 'val' names 1 sample(s) not in annotations")
    write({"annotations": [ann, {**ann, "frame_dir": "b", "label": -3}]})
    _raises("pyskl", f, "label -3")
    # skip_bad drops the broken sample and keeps the split consistent
    bad = {**ann, "frame_dir": "b", "keypoint": np.full_like(kp, np.nan)}
    write({"annotations": [ann, bad, {**ann, "frame_dir": "c"}], "split": {"train": ["a", "b"], "val": ["c"]}})
    ds = load_dataset("pyskl", root=str(f), skip_bad=True)
    assert len(ds) == 2 and ds.split("default")[0].tolist() == [0] and ds.split("default")[1].tolist() == [1]
    assert ds.skipped[0].startswith(f"{f}: sample 1 (b)")


def test_inspect_counts_test_sequences_that_copy_training_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """As in the N-UCLA release: a v03 file whose skeletons are those of the v02 file."""
    files = write_nucla(tmp_path / "d")
    v02 = json.loads(files[1].read_text())
    files[2].write_text(json.dumps({**v02, "file_name": "a01_s01_e00_v03"}))
    assert main(["inspect", "nucla", "--root", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "xview      train      2  test      1  (1 test sequence is an exact copy of a training one)" in out
    assert "view1      train      2  test      1\n" in out  # v01 is unlike the others
    assert main(["inspect", "nucla", "--root", str(tmp_path / "d"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test_copies"] == {"xview": 1, "view1": 0, "view2": 1, "view3": 1}
