"""The synthetic dataset: shapes, determinism, persons, bone lengths, protocols, options, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from skelcl.cli import main
from skelcl.errors import ConfigError
from skelcl.formats import default_preprocess, load_dataset
from skelcl.formats.synthetic import CLASS_KEYS, CLASSES, generate
from skelcl.layouts import NTU25


@pytest.fixture(scope="module")
def default_ds():
    return load_dataset("synthetic")


def test_default_shape_dtype_and_meta(default_ds):
    ds = default_ds
    pre = default_preprocess("synthetic")
    assert (pre.frames, pre.persons, pre.length_mode, pre.centre) == (48, 2, "resample", "joint")
    n = len(ds)
    assert ds.x.shape == (n, 48, 2, 25, 3) and ds.x.dtype == np.float32
    assert ds.lengths.dtype == np.int64 and ds.labels.dtype == np.int64
    assert ds.layout is NTU25
    assert n == len(CLASSES) * 48
    assert ds.num_classes == len(ds.class_names) >= 10
    assert sorted(np.unique(ds.labels)) == list(range(ds.num_classes))
    assert np.bincount(ds.labels).tolist() == [48] * ds.num_classes
    assert np.isfinite(ds.x).all()
    assert len(set(ds.class_names)) == len(ds.class_names) and all(c.strip() for c in ds.class_names)
    assert {"name", "subject", "view", "setup", "set", "frames"} <= set(ds.meta)
    assert ds.meta["frames"].min() >= 40 and ds.meta["frames"].max() <= 64  # raw lengths
    assert ds.meta["name"][0] == "syn_c00_s0000" and len(set(ds.meta["name"].tolist())) == n
    assert set(ds.meta["subject"].tolist()) == set(range(1, 11))
    assert set(ds.meta["view"].tolist()) == {1, 2, 3}
    assert not ds.meta["setup"].any() and not ds.meta["set"].any()


def test_lengths_within_range(default_ds):
    # default: raw lengths 40..64, longer than 48 resampled to 48, shorter zero-padded
    assert default_ds.lengths.min() >= 40 and default_ds.lengths.max() == 48
    ds = load_dataset("synthetic", pre={"frames": 80, "length_mode": "crop"}, per_class=4,
                      frames_range=(20, 30))
    assert ds.lengths.min() >= 20 and ds.lengths.max() <= 30
    t = np.arange(80)[None, :]
    pad = t >= ds.lengths[:, None]  # (N, T)
    assert not ds.x[pad].any()
    assert np.abs(ds.x[~pad][:, 0]).max() > 0


def test_deterministic_and_seeded(default_ds):
    again = load_dataset("synthetic")
    assert default_ds.x.tobytes() == again.x.tobytes()
    assert np.array_equal(default_ds.lengths, again.lengths)
    assert np.array_equal(default_ds.meta["subject"], again.meta["subject"])
    other = load_dataset("synthetic", seed=1)
    assert other.x.shape == default_ds.x.shape
    assert not np.allclose(other.x, default_ds.x)


def test_class_subset_reproduces_the_same_samples(default_ds):
    keys = ["clap", "wave_right"]
    sub = load_dataset("synthetic", classes=",".join(keys))
    assert sub.class_names == [CLASSES[CLASS_KEYS.index(k)].name for k in keys]
    for label, key in enumerate(keys):
        full_label = CLASS_KEYS.index(key)
        assert np.array_equal(sub.x[sub.labels == label], default_ds.x[default_ds.labels == full_label])
    assert load_dataset("synthetic", classes=3, per_class=2).num_classes == 3


def test_two_person_classes_have_a_partner_and_others_do_not(default_ds):
    ds = default_ds
    second = np.abs(ds.x[:, :, 1]).reshape(len(ds), ds.x.shape[1], -1).max(-1) > 0  # (N, T)
    valid = np.arange(ds.x.shape[1])[None, :] < ds.lengths[:, None]
    two = {i for i, c in enumerate(CLASSES) if c.persons == 2}
    assert len(two) >= 2
    for label in range(ds.num_classes):
        rows = ds.labels == label
        if label in two:
            assert (second[rows] == valid[rows]).all(), ds.class_names[label]
        else:
            assert not second[rows].any(), ds.class_names[label]


def test_bone_lengths_constant_over_time_without_noise():
    # no resampling (frames >= max length) and no noise: bones are rigid within a sequence
    ds = load_dataset("synthetic", pre={"frames": 50, "length_mode": "crop", "centre": "none"},
                      per_class=3, noise=0.0, frames_range=(30, 50))
    child = [a for a, _ in NTU25.bones]
    parent = [b for _, b in NTU25.bones]
    two = [c.persons == 2 for c in CLASSES]
    spreads = []
    for i in range(len(ds)):
        t = ds.lengths[i]
        for m in range(2 if two[ds.labels[i]] else 1):
            p = ds.x[i, :t, m].astype(np.float64)
            bl = np.linalg.norm(p[:, child] - p[:, parent], axis=-1)  # (t, 24)
            assert bl.min() > 0.02
            spreads.append(float((bl.max(0) - bl.min(0)).max()))
    assert max(spreads) < 1e-5
    # bodies differ between subjects (per-subject bone lengths)
    first = ds.x[:, 0, 0].astype(np.float64)
    thigh = np.linalg.norm(first[:, 13] - first[:, 12], axis=-1)
    assert thigh.max() / thigh.min() > 1.1
    # noise breaks exact rigidity
    noisy = load_dataset("synthetic", pre={"frames": 50, "length_mode": "crop"}, per_class=2,
                         frames_range=(30, 50), noise=0.02, classes=2)
    p = noisy.x[0, : noisy.lengths[0], 0].astype(np.float64)
    bl = np.linalg.norm(p[:, child] - p[:, parent], axis=-1)
    assert (bl.max(0) - bl.min(0)).max() > 1e-3


@pytest.mark.parametrize("per_class", [2, 48])
def test_protocols_cover_all_classes_and_are_disjoint(per_class, default_ds):
    ds = default_ds if per_class == 48 else load_dataset("synthetic", per_class=per_class)
    assert set(ds.protocols) == {"xsub", "xview"}
    for name, (tr, te) in ds.protocols.items():
        assert len(np.intersect1d(tr, te)) == 0, name
        assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(ds))), name
        for idx in (tr, te):
            assert set(ds.labels[idx].tolist()) == set(range(ds.num_classes)), name
    tr, te = ds.split("xsub")
    assert set(ds.meta["subject"][tr].tolist()) <= {1, 2, 3, 4, 5, 6}
    assert set(ds.meta["subject"][te].tolist()) <= {7, 8, 9, 10}
    tr, te = ds.split("xview")
    assert set(ds.meta["view"][te].tolist()) == {1}


def test_generate_raw_sequences_are_variable_length():
    raw = generate(classes=["jump", "push"], per_class=5, frames_range=(33, 37))
    assert len(raw["seqs"]) == 10
    assert all(s.shape[1:] == (2, 25, 3) and 33 <= s.shape[0] <= 37 for s in raw["seqs"])
    assert raw["labels"].tolist() == [0] * 5 + [1] * 5


def test_first_frame_is_near_rest_for_every_class():
    # no class may be recognisable from where the body starts: all start from a relaxed stance
    ds = load_dataset("synthetic", per_class=8, noise=0.0, pre={"view_align": True})
    first = ds.x[:, 0, 0]  # (N, V, 3), centred on the spine
    hands = first[:, [7, 11], 1]  # hand heights relative to the mid spine
    assert (hands < 0.1).all()


@pytest.mark.parametrize("options, match", [
    ({"bogus": 1}, "unknown option"),
    ({"classes": "wave_right,nope"}, "unknown class"),
    ({"per_class": 1}, "per_class"),
    ({"frames_range": "50,40"}, "frames_range"),
    ({"noise": "loud"}, "noise"),
    ({"layout": "kinect20"}, "layout"),
])
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("synthetic", **options)


def test_string_options_are_accepted():
    a = load_dataset("synthetic", per_class="3", seed="2", frames_range="30,40", noise="0.0", classes="2")
    b = load_dataset("synthetic", per_class=3, seed=2, frames_range=(30, 40), noise=0.0, classes=2)
    assert a.x.tobytes() == b.x.tobytes()


def test_cli_inspect_prints_counts(capsys):
    assert main(["inspect", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "sequences    720" in out
    assert "frames       min 40" in out
    assert f"classes      {len(CLASSES)}" in out
    assert "xsub" in out and "xview" in out
    assert "persons      1: 576  2: 144" in out
    assert main(["inspect", "synthetic", "--option", "per_class=2", "--option", "classes=clap,kick"]) == 0
    out = capsys.readouterr().out
    assert "sequences    4" in out and "classes      2" in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "option per_class" in out
