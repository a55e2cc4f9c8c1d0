"""SBU and N-UCLA readers on the genuine data (skipped when /work/shared/data is absent)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from skelcl.cli import main
from skelcl.formats import default_preprocess, load_dataset
from skelcl.formats.nucla import NUCLA_CLASSES
from skelcl.formats.sbu import SBU_CLASSES, SBU_FOLDS, read_sbu_file
from skelcl.store import Preprocess


@pytest.fixture(scope="module")
def sbu_root(shared_data: Path) -> Path:
    root = shared_data / "sbu"
    if not root.is_dir():
        pytest.skip(f"SBU data not found at {root}")
    return root


@pytest.fixture(scope="module")
def nucla_root(shared_data: Path) -> Path:
    root = shared_data / "nucla"
    if not root.is_dir():
        pytest.skip(f"N-UCLA data not found at {root}")
    return root


@pytest.fixture(scope="module")
def sbu(sbu_root: Path):
    return load_dataset("sbu", root=str(sbu_root))


@pytest.fixture(scope="module")
def nucla(nucla_root: Path):
    return load_dataset("nucla", root=str(nucla_root))


# ---------------------------------------------------------------- SBU


def test_sbu_defaults() -> None:
    pre = default_preprocess("sbu")
    assert (pre.frames, pre.persons, pre.length_mode, pre.centre) == (40, 2, "crop", "joint")


def test_sbu_counts(sbu) -> None:
    assert len(sbu) == 282
    assert sbu.num_classes == 8 and sbu.class_names == SBU_CLASSES
    assert sbu.class_names[0] == "Approaching" and sbu.class_names[7] == "Exchanging objects"
    assert np.bincount(sbu.labels).tolist() == [42, 43, 40, 41, 18, 21, 39, 38]
    assert sbu.x.shape == (282, 40, 2, 15, 3) and sbu.x.dtype == np.float32
    assert sbu.layout.name == "sbu15"
    assert sbu.lengths.min() == 10 and sbu.lengths.max() == 40  # 46-frame sequences cropped to 40
    assert sbu.meta["name"][0] == "s01s02/01/001"
    assert sbu.meta["set"][0] == "s01s02" and sbu.meta["subject"][0] == "s01s02"
    assert len(set(sbu.meta["set"])) == 21


def test_sbu_folds(sbu) -> None:
    assert list(sbu.protocols) == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    sizes = [len(sbu.split(f)[1]) for f in sbu.protocols]
    assert sizes == [55, 52, 56, 54, 65]
    all_test = np.concatenate([sbu.split(f)[1] for f in sbu.protocols])
    assert sorted(all_test.tolist()) == list(range(282))  # folds partition the data
    for fold, sets in SBU_FOLDS.items():
        tr, te = sbu.split(fold)
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 282
        assert set(sbu.meta["set"][te]) == set(sets)


def test_sbu_two_persons_and_centring(sbu) -> None:
    assert sbu.summary()["persons_hist"] == {2: 282}
    valid = np.arange(40)[None, :] < sbu.lengths[:, None]  # (N, T)
    # both persons have non-zero joints in every valid frame
    assert (np.abs(sbu.x).max(axis=(3, 4)) > 0)[valid].all()
    assert np.all(sbu.x[:, :, :, 2, :] == 0)  # torso (the centre joint) is the origin
    assert np.all(sbu.x[~valid] == 0)  # padding is zero


def test_sbu_denormalisation_uses_the_z_column(sbu_root: Path) -> None:
    f = sbu_root / "s01s02" / "01" / "001" / "skeleton_pos.txt"
    raw = np.loadtxt(f, delimiter=",", ndmin=2)[:, 1:].reshape(-1, 2, 15, 3)
    got = read_sbu_file(f)
    assert got.shape == (raw.shape[0], 2, 15, 3)
    np.testing.assert_allclose(got[..., 0], (1280 - raw[..., 0] * 2560) / 1000)
    np.testing.assert_allclose(got[..., 1], (960 - raw[..., 1] * 1920) / 1000)
    np.testing.assert_allclose(got[..., 2], raw[..., 2] * 10000 / 7.8125 / 1000)
    # depth is metres-ish in front of the camera (the AS-CAL bug computed it from y)
    assert 1.0 < got[..., 2].min() and got[..., 2].max() < 3.5


def test_sbu_uncentred_depth(sbu_root: Path) -> None:
    ds = load_dataset("sbu", root=str(sbu_root), pre={"centre": "none"})
    valid = np.arange(40)[None, :] < ds.lengths[:, None]
    z = ds.x[..., 2][valid]
    assert z.min() > 0.9 and z.max() < 3.5


def test_cli_inspect_sbu(sbu_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", "sbu", "--root", str(sbu_root)]) == 0
    out = capsys.readouterr().out
    assert "sequences    282" in out and "classes      8" in out
    for fold, (ntr, nte) in zip(SBU_FOLDS, [(227, 55), (230, 52), (226, 56), (228, 54), (217, 65)]):
        assert f"protocol     {fold:10s} train {ntr:6d}  test {nte:6d}" in out


# ---------------------------------------------------------------- N-UCLA


def test_nucla_defaults() -> None:
    pre = default_preprocess("nucla")
    assert (pre.frames, pre.persons, pre.length_mode, pre.centre) == (60, 1, "crop", "joint")


def test_nucla_counts(nucla) -> None:
    assert len(nucla) == 1484
    assert nucla.num_classes == 10 and nucla.class_names == NUCLA_CLASSES
    assert np.bincount(nucla.labels).tolist() == [150, 152, 141, 173, 148, 149, 142, 142, 145, 142]
    assert nucla.x.shape == (1484, 60, 1, 20, 3)
    assert nucla.layout.name == "kinect20"
    assert np.all(nucla.x[:, :, :, 1, :] == 0)  # centred on the spine joint
    assert nucla.meta["name"][0] == "a01_s01_e00_v01"
    assert nucla.meta["subject"][0] == "s01" and nucla.meta["set"][0] == "e00"
    assert nucla.meta["view"].dtype.kind == "i"
    assert np.bincount(nucla.meta["view"]).tolist() == [0, 516, 504, 464]
    # the three cameras of one performance share an instance id (433 performances have all three)
    assert nucla.meta["instance"][0] == "a01_s01_e00"
    _, per_instance = np.unique(nucla.meta["instance"], return_counts=True)
    assert per_instance.max() == 3 and (per_instance == 3).sum() == 433
    assert len(set(nucla.meta["subject"])) == 10


def test_nucla_protocols(nucla, nucla_root: Path) -> None:
    tr, te = nucla.split("xview")
    assert (len(tr), len(te)) == (1020, 464)
    with open(nucla_root / "val_label.pkl", "rb") as fh:
        val = pickle.load(fh)
    assert set(nucla.meta["name"][te]) == {d["file_name"] for d in val}
    for v, n_test in ((1, 516), (2, 504), (3, 464)):
        tr, te = nucla.split(f"view{v}")
        assert len(te) == n_test and len(tr) == 1484 - n_test
        assert np.all(nucla.meta["view"][te] == v) and np.all(nucla.meta["view"][tr] != v)


def test_nucla_frame_statistics(nucla_root: Path) -> None:
    ds = load_dataset("nucla", root=str(nucla_root), pre=Preprocess(frames=201, persons=1))
    assert ds.lengths.min() == 1 and ds.lengths.max() == 201
    assert ds.lengths.mean() == pytest.approx(39.4, abs=0.05)
    res = load_dataset("nucla", root=str(nucla_root), pre={"length_mode": "resample"})
    long = ds.lengths > 60
    assert long.sum() == 238 and np.all(res.lengths[long] == 60)
    # resampling keeps the last frame of a long sequence; cropping drops it
    i = int(np.flatnonzero(long)[0])
    np.testing.assert_allclose(res.x[i, 59], ds.x[i, ds.lengths[i] - 1], atol=1e-6)


def test_nucla_root_may_be_the_json_folder(nucla_root: Path) -> None:
    ds = load_dataset("nucla", root=str(nucla_root / "all_sqe"), pre={"frames": 8})
    assert len(ds) == 1484


def test_nucla_cross_view_test_holds_95_copies_of_v02(nucla) -> None:
    """The all_sqe release's v03 recordings of "pick up with two hands" and "drop trash" are byte-identical
    to their v02 recordings: every one of them is found, and nothing else, as copies of training inputs."""
    copies = nucla.test_copies("xview")
    assert len(copies) == 95
    names = nucla.meta["name"][copies]
    assert sorted(set(nucla.labels[copies])) == [1, 2]
    assert {n.split("_")[0] for n in names} == {"a02", "a03"} and all(n.endswith("_v03") for n in names)
    v02 = {n: i for i, n in enumerate(nucla.meta["name"])}
    for i, n in zip(copies, names):
        j = v02[n[:-3] + "v02"]
        assert np.array_equal(nucla.x[i], nucla.x[j])
    assert len(nucla.test_copies("view2")) == 96  # the same 95, plus a08_s01_e00's shared first 60 frames


def test_nucla_gcn_config_boxes_each_sequence_and_encodes(nucla_root: Path):
    """configs/nucla-gcn.yaml on the genuine data: every axis of every sequence spans [-1, 1] and the
    graph encoder built from the layout gives finite features of its width."""
    import torch

    from skelcl.config import load_config
    from skelcl.encoder import build_encoder
    from skelcl.train import load_data, resolve_graph

    cfg = load_config("nucla-gcn", [f"data.root={nucla_root}"])
    ds = load_data(cfg)
    x = np.asarray(ds.x[:50], np.float32)[:, :, 0]  # (50, T, V, 3); resample_all: no padding
    np.testing.assert_allclose(x.min(axis=(1, 2)), -1.0, atol=1e-5)
    np.testing.assert_allclose(x.max(axis=(1, 2)), 1.0, atol=1e-5)
    resolve_graph(cfg, ds)
    torch.manual_seed(0)
    enc = build_encoder(int(np.prod(ds.x.shape[2:])), cfg.model, persons=1).eval()
    with torch.no_grad():
        out = enc(torch.from_numpy(np.asarray(ds.x[:4], np.float32)), torch.from_numpy(ds.lengths[:4]))
    assert out.pooled.shape == (4, cfg.model.channels[-1]) and torch.isfinite(out.pooled).all()
