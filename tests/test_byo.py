"""Bring-your-own formats: small files written from a seeded random array, read back."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from skelcl.cli import main
from skelcl.errors import ConfigError, DataFormatError
from skelcl.formats import default_preprocess, load_dataset
from skelcl.formats.byo import infer_length, parse_layout
from skelcl.layouts import KINECT20, NTU25, SBU15, custom_layout

N, T, M, V, C = 12, 30, 2, 25, 3
N_TRAIN = 8


@pytest.fixture()
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, T, M, V, C) zero-padded after each length, lengths (N,), labels (N,)."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(N, T, M, V, C)) + 3.0).astype(np.float32)  # +3: no accidental zero frame
    lengths = rng.integers(1, T + 1, size=N)
    lengths[0] = T
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    x[3, :, 1] = 0  # a one-person sample
    labels = rng.integers(0, 5, size=N)
    labels[:5] = np.arange(5)
    return x, lengths, labels


def _check(ds, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray, frames: int = 64) -> None:
    n = len(x)
    assert len(ds) == n
    assert ds.x.shape == (n, frames, 2, x.shape[3], x.shape[4])
    np.testing.assert_array_equal(ds.lengths, np.minimum(lengths, frames))
    np.testing.assert_array_equal(ds.labels, labels)
    # centring on the layout's centre joint, otherwise the values round-trip
    c = ds.layout.centre
    i = 0
    expect = x[i, : ds.lengths[i]] - x[i, : ds.lengths[i], :, c : c + 1]
    np.testing.assert_allclose(ds.x[i, : ds.lengths[i]], expect, atol=1e-5)
    if n == N:
        assert np.all(ds.x[3, :, 1] == 0)  # the one-person sample stays one person


def _write_ctrgcn(path: Path, x: np.ndarray, labels: np.ndarray, one_hot: bool = True) -> None:
    y = np.eye(5)[labels] if one_hot else labels
    np.savez(path, x_train=x[:N_TRAIN].reshape(N_TRAIN, T, -1), y_train=y[:N_TRAIN],
             x_test=x[N_TRAIN:].reshape(len(x) - N_TRAIN, T, -1), y_test=y[N_TRAIN:])


def _write_stgcn(folder: Path, x: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nctvm = x.transpose(0, 4, 1, 3, 2)
    for part, sl in (("train", slice(0, N_TRAIN)), ("val", slice(N_TRAIN, None))):
        np.save(folder / f"{part}_data.npy", nctvm[sl])
        names = [f"S001C001P001R001A{i:03d}.skeleton" for i in range(len(x))][sl]
        with open(folder / f"{part}_label.pkl", "wb") as fh:
            pickle.dump((names, [int(v) for v in labels[sl]]), fh)


def _write_pyskl(path: Path, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray,
                 channels: int = 3) -> None:
    anns = [{"frame_dir": f"s{i:03d}", "label": int(labels[i]), "total_frames": int(lengths[i]),
             "keypoint": x[i, : lengths[i], :, :, :channels].transpose(1, 0, 2, 3).astype(np.float16)}
            for i in range(len(x))]
    split = {"xsub_train": [f"s{i:03d}" for i in range(N_TRAIN)],
             "xsub_val": [f"s{i:03d}" for i in range(N_TRAIN, len(x))],
             "xview_train": [f"s{i:03d}" for i in range(0, len(x), 2)],
             "xview_val": [f"s{i:03d}" for i in range(1, len(x), 2)],
             "lonely_train": ["s000"]}
    with open(path, "wb") as fh:
        pickle.dump({"split": split, "annotations": anns}, fh)


# ---------------------------------------------------------------- layouts and lengths


def test_parse_layout() -> None:
    assert parse_layout(None, 25) is NTU25
    assert parse_layout(None, 20) is KINECT20
    assert parse_layout(None, 15) is SBU15
    assert parse_layout("kinect20", 20) is KINECT20
    assert parse_layout("NTU25", 25) is NTU25
    lay = parse_layout("custom:17:11", 17)
    assert lay.num_joints == 17 and lay.centre == 11
    own = custom_layout(7, 3)
    assert parse_layout(own, 7) is own
    with pytest.raises(ConfigError, match="--layout custom:17:CENTRE"):
        parse_layout(None, 17)
    with pytest.raises(ConfigError, match="custom:V:CENTRE"):
        parse_layout("custom:17", 17)
    with pytest.raises(ConfigError, match="CENTRE"):
        parse_layout("custom:17:17", 17)
    with pytest.raises(ConfigError, match="unknown joint layout"):
        parse_layout("coco", 17)
    with pytest.raises(DataFormatError, match="f.npz: has 20 joints but layout 'ntu25' has 25"):
        parse_layout("ntu25", 20, source="f.npz")


def test_infer_length() -> None:
    a = np.zeros((10, 2, 3, 3))
    assert infer_length(a) == 0
    a[0, 1, 2, 0] = 1.0
    assert infer_length(a) == 1
    a[6, 0, 0, 2] = -0.5
    assert infer_length(a) == 7


def test_default_preprocessing() -> None:
    for fmt in ("ctrgcn_npz", "stgcn", "pyskl", "npz"):
        pre = default_preprocess(fmt)
        assert (pre.frames, pre.persons, pre.length_mode) == (64, 2, "crop")


# ---------------------------------------------------------------- each format


@pytest.mark.parametrize("one_hot", [True, False])
def test_ctrgcn_npz(tmp_path: Path, data, one_hot: bool) -> None:
    x, lengths, labels = data
    _write_ctrgcn(tmp_path / "ntu.npz", x, labels, one_hot)
    ds = load_dataset("ctrgcn_npz", root=str(tmp_path / "ntu.npz"))
    _check(ds, x, lengths, labels)
    assert ds.layout is NTU25
    tr, te = ds.split("default")
    assert tr.tolist() == list(range(N_TRAIN)) and te.tolist() == list(range(N_TRAIN, N))
    assert ds.meta["name"][0] == "train/000000" and ds.meta["name"][N_TRAIN] == "test/000000"


def test_ctrgcn_npz_infers_joints_from_width(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    x20 = np.ascontiguousarray(x[:, :, :, :20])
    _write_ctrgcn(tmp_path / "k.npz", x20, labels)
    ds = load_dataset("ctrgcn_npz", root=str(tmp_path / "k.npz"))
    assert ds.layout is KINECT20 and ds.x.shape[3] == 20
    _check(ds, x20, lengths, labels)


def test_stgcn_folder_and_single_file(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    _write_stgcn(tmp_path / "xsub", x, labels)
    ds = load_dataset("stgcn", root=str(tmp_path / "xsub"), pre={"frames": 20})
    _check(ds, x, lengths, labels, frames=20)
    tr, te = ds.split("default")
    assert len(tr) == N_TRAIN and len(te) == N - N_TRAIN
    assert ds.meta["name"][1] == "S001C001P001R001A001.skeleton"
    one = load_dataset("stgcn", root=str(tmp_path / "xsub" / "val_data.npy"))
    _check(one, x[N_TRAIN:], lengths[N_TRAIN:], labels[N_TRAIN:])
    assert one.protocols == {}


def test_stgcn_test_split_name(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    _write_stgcn(tmp_path / "d", x, labels)
    (tmp_path / "d" / "val_data.npy").rename(tmp_path / "d" / "test_data.npy")
    (tmp_path / "d" / "val_label.pkl").rename(tmp_path / "d" / "test_label.pkl")
    ds = load_dataset("stgcn", root=str(tmp_path / "d"))
    assert [len(i) for i in ds.split("default")] == [N_TRAIN, N - N_TRAIN]


def test_pyskl_3d(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    _write_pyskl(tmp_path / "ntu60_3danno.pkl", x, lengths, labels)
    ds = load_dataset("pyskl", root=str(tmp_path / "ntu60_3danno.pkl"))
    assert set(ds.protocols) == {"xsub", "xview"}  # "lonely_train" has no partner
    assert [len(i) for i in ds.split("xsub")] == [N_TRAIN, N - N_TRAIN]
    tr, te = ds.split("xview")
    assert tr.tolist() == list(range(0, N, 2)) and te.tolist() == list(range(1, N, 2))
    assert ds.meta["name"][2] == "s002"
    np.testing.assert_array_equal(ds.lengths, lengths)
    np.testing.assert_array_equal(ds.labels, labels)
    # float16 storage in the file: values match to half precision
    expect = x[0] - x[0][:, :, NTU25.centre : NTU25.centre + 1]
    np.testing.assert_allclose(ds.x[0, :T], expect, atol=0.02)


def test_pyskl_2d_and_plain_split(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    x17 = np.ascontiguousarray(x[:, :, :, :17])
    _write_pyskl(tmp_path / "p.pkl", x17, lengths, labels, channels=2)
    with open(tmp_path / "p.pkl", "rb") as fh:
        obj = pickle.load(fh)
    obj["split"] = {"train": ["s000", "s001"], "test": ["s002"]}
    with open(tmp_path / "p.pkl", "wb") as fh:
        pickle.dump(obj, fh)
    ds = load_dataset("pyskl", root=str(tmp_path / "p.pkl"), layout="custom:17:0")
    assert ds.x.shape == (N, 64, 2, 17, 2) and ds.layout.num_joints == 17 and ds.layout.centre == 0
    assert ds.split("default")[0].tolist() == [0, 1] and ds.split("default")[1].tolist() == [2]
    assert np.all(ds.x[:, :, :, 0] == 0)


def test_npz_with_lengths_meta_and_split(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    # lengths given: the padding need not be zero, the file's lengths win
    xn = x.copy()
    xn[1, lengths[1]:] = 7.0
    subject = np.arange(N) % 3
    np.savez(tmp_path / "mine.npz", x=xn, y=labels, lengths=lengths, subject=subject, view=subject + 1,
             train_idx=np.arange(0, 6), test_idx=np.arange(6, N),
             class_names=np.array(["a", "b", "c", "d", "e"]))
    ds = load_dataset("npz", root=str(tmp_path / "mine.npz"))
    _check(ds, x, lengths, labels)
    assert ds.class_names == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(ds.meta["subject"], subject)
    np.testing.assert_array_equal(ds.meta["view"], subject + 1)
    assert [len(i) for i in ds.split("default")] == [6, N - 6]


def test_npz_without_split_and_one_person(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    np.savez(tmp_path / "p1.npz", x=x[:, :, 0, :15], y=labels)  # (N, T, V, C): one person, 15 joints
    ds = load_dataset("npz", root=str(tmp_path / "p1.npz"), pre={"persons": 1})
    assert ds.protocols == {} and ds.layout is SBU15
    assert ds.x.shape == (N, 64, 1, 15, 3)
    np.testing.assert_array_equal(ds.lengths, lengths)
    assert ds.class_names == [f"class_{k}" for k in range(5)]


def test_custom_layout_from_cli_spec(tmp_path: Path, data, capsys: pytest.CaptureFixture) -> None:
    x, lengths, labels = data
    x17 = np.ascontiguousarray(x[:, :, :, :17])
    np.savez(tmp_path / "c.npz", x=x17, y=labels)
    assert main(["inspect", "npz", "--root", str(tmp_path / "c.npz")]) == 2
    assert "--layout custom:17:CENTRE" in capsys.readouterr().err
    assert main(["inspect", "npz", "--root", str(tmp_path / "c.npz"), "--layout", "custom:17:5"]) == 0
    out = capsys.readouterr().out
    assert f"sequences    {N}" in out and "custom17" in out
    ds = load_dataset("npz", root=str(tmp_path / "c.npz"), layout="custom:17:5")
    assert np.all(ds.x[:, :, :, 5] == 0) and not np.all(ds.x[:, :, :, 0] == 0)


def test_skip_bad_sample_remaps_splits(tmp_path: Path, data) -> None:
    x, lengths, labels = data
    xb = x.copy()
    xb[2, 0, 0, 0, 0] = np.nan
    xb[9] = 0  # an all-zero sample
    _write_ctrgcn(tmp_path / "b.npz", xb, labels)
    with pytest.raises(DataFormatError, match=r"b\.npz: sample 2 \(train/000002\) has NaN or inf"):
        load_dataset("ctrgcn_npz", root=str(tmp_path / "b.npz"))
    ds = load_dataset("ctrgcn_npz", root=str(tmp_path / "b.npz"), skip_bad=True)
    assert len(ds) == N - 2 and len(ds.skipped) == 2
    assert "sample 2 (train/000002)" in ds.skipped[0] and "all zeros" in ds.skipped[1]
    keep = np.array([i not in (2, 9) for i in range(N)])
    np.testing.assert_array_equal(ds.labels, labels[keep])
    np.testing.assert_array_equal(ds.lengths, lengths[keep])
    tr, te = ds.split("default")
    assert len(tr) == N_TRAIN - 1 and len(te) == N - N_TRAIN - 1
    assert ds.meta["name"][te[0]] == "test/000000" and ds.meta["name"][tr[2]] == "train/000003"


def test_unknown_option_is_rejected(tmp_path: Path, data) -> None:
    x, _, labels = data
    np.savez(tmp_path / "a.npz", x=x, y=labels)
    with pytest.raises(ConfigError, match="only the option 'layout'"):
        load_dataset("npz", root=str(tmp_path / "a.npz"), joints=25)


# --- unlabelled and partly labelled npz: pretrain on everything, probe on the labelled ---------------------------
TINY = ["data.dataset=npz", "data.preprocess.frames=16", "data.preprocess.persons=2", "model.hidden=16",
        "contrast.queue_size=8", "optim.epochs=2", "optim.milestones=[1]", "optim.batch_size=4",
        "probe.epochs=3", "probe.milestones=[2]", "probe.knn_k=3", "train.tensorboard=false", "train.device=cpu"]


def test_npz_without_labels_pretrains_and_embeds_but_cannot_be_probed(tmp_path: Path, data, capsys) -> None:
    x, lengths, _ = data
    np.savez(tmp_path / "u.npz", x=x, lengths=lengths)  # no y, no split
    ds = load_dataset("npz", root=str(tmp_path / "u.npz"))
    assert (ds.labels == -1).all() and ds.protocols == {}
    base = ["synthetic", "--set", f"data.root={tmp_path / 'u.npz'}"] + [a for s in TINY for a in ("--set", s)]
    # no split: the error says how to pretrain on every sequence
    assert main(["pretrain", *base, "--set", "data.protocol=default", "--out", str(tmp_path / "r0"), "--quiet"]) == 2
    assert "data.protocol=all" in capsys.readouterr().err
    assert main(["pretrain", *base, "--set", "data.protocol=all", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert main(["embed", str(tmp_path / "r"), "--out", str(tmp_path / "e.npz"), "--quiet",
                 "--tsne", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 0  # every point grey ("unlabelled")
    z = np.load(tmp_path / "e.npz")
    assert z["features"].shape == (N, 16) and (z["labels"] == -1).all()
    # run = pretrain + probes: refused before any pretraining is spent
    assert main(["run", *base, "--set", "data.protocol=all", "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "evaluation needs a labelled train/test split" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "checkpoint.pt").exists()


def test_partly_labelled_npz_probes_only_the_labelled(tmp_path: Path, data, capsys) -> None:
    from skelcl.experiment import labelled_split

    x, lengths, labels = data
    y = labels.copy()
    y[[1, 6, 9]] = -1  # 6 of the 8 training and 3 of the 4 test sequences keep their label
    idx = np.arange(N)
    np.savez(tmp_path / "p.npz", x=x, lengths=lengths, y=y, train_idx=idx[:N_TRAIN], test_idx=idx[N_TRAIN:])
    ds = load_dataset("npz", root=str(tmp_path / "p.npz"))
    tr, te, skipped = labelled_split(ds, "default")
    assert skipped == {"train": 2, "test": 1} and list(tr) == [0, 2, 3, 4, 5, 7] and list(te) == [8, 10, 11]
    base = ["synthetic", "--set", f"data.root={tmp_path / 'p.npz'}", "--set", "data.protocol=default"] + \
        [a for s in TINY for a in ("--set", s)]
    assert main(["run", *base, "--out", str(tmp_path / "r")]) == 0
    assert "2 training and 1 test sequences are unlabelled" in capsys.readouterr().out
    import json
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["unlabelled_skipped"] == {"train": 2, "test": 1}
    assert res["linear"]["num_test"] == 3 and np.array(res["linear"]["confusion"]).sum() == 3
    # a test side with no label at all is a clear error
    y2 = y.copy()
    y2[N_TRAIN:] = -1
    np.savez(tmp_path / "q.npz", x=x, lengths=lengths, y=y2, train_idx=idx[:N_TRAIN], test_idx=idx[N_TRAIN:])
    with pytest.raises(ConfigError, match="test split .* has no labelled sequence"):
        labelled_split(load_dataset("npz", root=str(tmp_path / "q.npz")), "default")
