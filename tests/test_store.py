"""Preprocessing into the canonical (N, T, M, V, C) form."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from skelcl.errors import ConfigError, FolderBusy
from skelcl.layouts import KINECT20, NTU25, SBU15
from skelcl.store import (LOCK_NAME, Preprocess, SkeletonDataset, atomic_write, bone_parents, hold_folder, load_cache,
                          save_cache, scratch_path, to_canonical)


def _seq(t, m=1, v=25, seed=0):
    return np.random.default_rng(seed).normal(size=(t, m, v, 3)) + 1.0


def test_pad_crop_and_resample():
    short, long = _seq(5), _seq(30)
    x, lengths = to_canonical([short, long], NTU25, Preprocess(frames=10, persons=2, centre="none"))
    assert x.shape == (2, 10, 2, 25, 3) and x.dtype == np.float32
    assert lengths.tolist() == [5, 10]
    assert np.all(x[0, 5:] == 0) and np.all(x[:, :, 1] == 0)  # padding and the absent 2nd person
    np.testing.assert_allclose(x[1, :, 0], long[:10, 0], rtol=1e-6)  # cropped to the first T frames
    x, lengths = to_canonical([short, long], NTU25, Preprocess(frames=10, persons=1, length_mode="resample",
                                                               centre="none"))
    assert lengths.tolist() == [5, 10]
    np.testing.assert_allclose(x[1, 0, 0], long[0, 0], rtol=1e-6)
    np.testing.assert_allclose(x[1, -1, 0], long[-1, 0], rtol=1e-6)
    x, lengths = to_canonical([short], NTU25, Preprocess(frames=10, persons=1, length_mode="resample_all"))
    assert lengths.tolist() == [10]


def test_centring_on_the_middle_spine_joint_keeps_padding_zero():
    x, _ = to_canonical([_seq(4, m=2)], NTU25, Preprocess(frames=6, persons=2))
    assert np.all(x[0, :4, :, NTU25.centre] == 0)
    assert np.abs(x[0, :4]).sum() > 0 and np.all(x[0, 4:] == 0)


def test_person_order_motion_puts_the_mover_first():
    seq = np.zeros((8, 2, 15, 3))
    seq[:, 0] = 1.0  # standing still
    seq[:, 1] = np.linspace(0, 1, 8)[:, None, None] + np.arange(15)[None, :, None] * 0.01 + 2
    x, _ = to_canonical([seq], SBU15, Preprocess(frames=8, persons=2, centre="none", person_order="motion"))
    np.testing.assert_allclose(x[0, :, 0], seq[:, 1], rtol=1e-6)
    x, _ = to_canonical([seq], SBU15, Preprocess(frames=8, persons=2, centre="none"))
    np.testing.assert_allclose(x[0, :, 0], seq[:, 0], rtol=1e-6)


def test_view_align_turns_the_body_to_face_the_camera():
    seq = _seq(6, v=25) * 0.05
    theta = 0.7  # shoulders/hips along a direction rotated in the x-z plane
    for left, right in NTU25.left_right:
        seq[:, 0, left] += [-np.cos(theta) * 0.2, 0, -np.sin(theta) * 0.2]
        seq[:, 0, right] += [np.cos(theta) * 0.2, 0, np.sin(theta) * 0.2]
    x, _ = to_canonical([seq], NTU25, Preprocess(frames=6, persons=1, view_align=True))
    vec = sum(x[0, :, 0, r] - x[0, :, 0, l] for l, r in NTU25.left_right).mean(0)
    assert vec[0] > 0 and abs(vec[2]) < 1e-4 * abs(vec[0])
    child, parent = [b for b, _ in NTU25.bones], [p for _, p in NTU25.bones]
    bones = lambda a: np.linalg.norm(a[..., child, :] - a[..., parent, :], axis=-1)
    centred = seq - seq[:, :, NTU25.centre:NTU25.centre + 1]
    np.testing.assert_allclose(bones(x[0, :, 0]), bones(centred[:, 0]), rtol=1e-4)  # a rotation


def _upright_body(t: int = 6, seed: int = 1) -> np.ndarray:
    """(t, 1, 25, 3) body in its own frame: shoulders above hips, left at -x, right at +x, plus jitter."""
    seq = np.random.default_rng(seed).normal(size=(t, 1, 25, 3)) * 0.05
    (ls, rs), (lh, rh) = NTU25.left_right
    seq[:, 0, NTU25.centre] = 0.0
    seq[:, 0, ls] += [-0.2, 0.5, 0.0]
    seq[:, 0, rs] += [0.2, 0.5, 0.0]
    seq[:, 0, lh] += [-0.15, -0.3, 0.0]
    seq[:, 0, rh] += [0.15, -0.3, 0.0]
    return seq


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def test_full_view_align_undoes_any_camera_rotation():
    body = _upright_body()
    pre = Preprocess(frames=6, persons=1, centre="first_frame", view_align="full")
    ref, _ = to_canonical([body], NTU25, pre)
    for angles in [(0.7, 0.3, -0.2), (-2.5, -0.4, 0.5), (3.0, 0.0, 0.0)]:
        seen = body @ _rotation(*angles).T  # the same body through a camera at another angle
        got, _ = to_canonical([seen], NTU25, pre)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        yaw_only, _ = to_canonical([seen], NTU25, Preprocess(frames=6, persons=1, centre="first_frame",
                                                                view_align=True))
        if angles[1] or angles[2]:  # yaw alignment leaves the tilt in
            assert np.abs(yaw_only - ref).max() > 0.05


def test_view_align_accepts_booleans_and_names():
    assert Preprocess(view_align=True).view_align == "yaw"
    assert Preprocess(view_align=False).view_align == "none"
    assert Preprocess(view_align="full").view_align == "full"
    with pytest.raises(ConfigError, match="view_align"):
        Preprocess(view_align="tilt")


def test_scale_normalises_body_size():
    seq = _seq(5)
    a, _ = to_canonical([seq], NTU25, Preprocess(frames=5, persons=1, scale=True))
    b, _ = to_canonical([seq * 3.0], NTU25, Preprocess(frames=5, persons=1, scale=True))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_scale_box_maps_each_axis_onto_minus_one_one():
    seq = _seq(7, m=2)
    seq[5:, 1] = 0.0  # person 2 leaves after frame 5: those frames are absent, not points at 0
    pre = Preprocess(frames=7, persons=2, centre="none", scale="box")
    x, _ = to_canonical([seq], NTU25, pre)
    present = np.ones((7, 2), bool)
    present[5:, 1] = False
    pts = x[0][present]  # (n, V, 3)
    np.testing.assert_allclose(pts.min(axis=(0, 1)), -1.0, atol=1e-6)
    np.testing.assert_allclose(pts.max(axis=(0, 1)), 1.0, atol=1e-6)
    assert np.all(x[0, 5:, 1] == 0)
    # a per-axis stretch and a shift of the input change nothing
    y, _ = to_canonical([seq * np.array([2.0, 0.5, 3.0]) + np.array([1.0, -2.0, 4.0]) * (seq != 0)], NTU25, pre)
    np.testing.assert_allclose(x, y, atol=1e-5)


def test_scale_accepts_booleans_and_names():
    assert Preprocess(scale=True).scale == "bones" and Preprocess(scale=False).scale == "none"
    assert Preprocess(scale="box").scale == "box"
    with pytest.raises(ConfigError, match="scale"):
        Preprocess(scale="unit")


@pytest.mark.parametrize("layout", [NTU25, KINECT20, SBU15])
def test_bone_tree_reaches_every_joint_from_the_centre(layout):
    parent = bone_parents(layout)
    assert parent[layout.centre] == -1
    assert (np.delete(parent, layout.centre) >= 0).all()
    for j in range(layout.num_joints):  # walking up ends at the centre without a cycle
        seen, k = set(), j
        while parent[k] >= 0:
            assert k not in seen
            seen.add(k)
            k = parent[k]
        assert k == layout.centre
    edges = {frozenset(e) for e in layout.bones}
    assert all(frozenset((j, parent[j])) in edges for j in range(layout.num_joints) if parent[j] >= 0)


def test_bone_stream_is_joint_minus_parent_and_invertible():
    rng = np.random.default_rng(3)
    seq = rng.normal(size=(6, 1, 25, 3))
    pre = dict(frames=8, persons=1, centre="first_frame", scale=True)
    joints, lj = to_canonical([seq], NTU25, Preprocess(**pre))
    bones, lb = to_canonical([seq], NTU25, Preprocess(stream="bone", **pre))
    assert bones.shape == joints.shape and (lb == lj).all()
    parent = bone_parents(NTU25)
    j, b = joints[0, :6, 0].astype(np.float64), bones[0, :6, 0].astype(np.float64)
    np.testing.assert_allclose(b[:, NTU25.centre], j[:, NTU25.centre], atol=1e-6)
    for k in np.flatnonzero(parent >= 0):
        np.testing.assert_allclose(b[:, k], j[:, k] - j[:, parent[k]], atol=1e-5)
    rebuilt = b.copy()  # summing bones back down the tree gives the joints again
    depth = np.zeros(25, dtype=int)
    for k in range(25):
        m = k
        while parent[m] >= 0:
            depth[k] += 1
            m = parent[m]
    for k in np.argsort(depth, kind="stable"):
        if parent[k] >= 0:
            rebuilt[:, k] = rebuilt[:, parent[k]] + b[:, k]
    np.testing.assert_allclose(rebuilt, j, atol=1e-5)
    assert not bones[0, 6:].any()  # padding stays zero


def test_bad_preprocess_options_are_config_errors():
    with pytest.raises(ConfigError, match="stream"):
        Preprocess(stream="velocity")
    with pytest.raises(ConfigError, match="length_mode"):
        Preprocess(length_mode="stretch")
    with pytest.raises(ConfigError, match="person_order"):
        Preprocess(person_order="height")


def test_cache_round_trip(tmp_path):
    x, lengths = to_canonical([_seq(4), _seq(7)], NTU25, Preprocess(frames=8, persons=1))
    ds = SkeletonDataset(x=x, lengths=lengths, labels=np.array([0, 1]), layout=NTU25,
                         meta={"name": np.array(["a", "b"])}, class_names=["p", "q"],
                         protocols={"p": (np.array([0]), np.array([1]))}, name="t")
    save_cache(tmp_path / "c.npz", ds)
    back = load_cache(tmp_path / "c.npz")
    assert np.array_equal(back.x, ds.x) and back.layout == NTU25 and back.split("p")[1].tolist() == [1]
    assert back.meta["name"].tolist() == ["a", "b"] and back.class_names == ["p", "q"]


def test_scratch_files_are_private_to_their_process_and_leave_nothing_behind(tmp_path):
    x, lengths = to_canonical([_seq(4)], NTU25, Preprocess(frames=8, persons=1))
    ds = SkeletonDataset(x=x, lengths=lengths, labels=np.array([0]), layout=NTU25, meta={},
                         protocols={}, name="t")
    save_cache(tmp_path / "c.npz", ds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    code = "from pathlib import Path; from skelcl.store import scratch_path; print(scratch_path(Path('d/c.npz')))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    mine = scratch_path(Path("d/c.npz"))
    assert Path(other).parent == mine.parent == Path("d") and Path(other).name != mine.name
    assert scratch_path(Path("d/c.npz"), ".npz") == Path(f"{mine}.npz") and mine.name.startswith("c.npz.")
    (tmp_path / "f.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "f.txt") as t:
        t.write_text("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "f.txt").read_text() == "old"  # an interrupted write leaves the old file alone
    with atomic_write(tmp_path / "f.txt") as t:
        t.write_text("new")
    assert (tmp_path / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "f.txt"]  # no scratch file left

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a process that has ended (as if killed mid-write)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        def of(pid: str, name: str = "f.txt", suffix: str = "") -> Path:  # another process's scratch file
            mine = scratch_path(tmp_path / name, suffix)
            return mine.with_name(mine.name.replace(f"-{os.getpid()}.", f"-{pid}."))

        elsewhere = tmp_path / f"f.txt.{uuid.uuid4().hex}-{dead}.tmp"  # another machine's writer, same pid
        left = [of(dead), of(str(live.pid)), of("x"), elsewhere, of(dead, "c.npz", ".npz")]
        for f in left:
            f.write_text("stale")
        with atomic_write(tmp_path / "f.txt") as t:
            t.write_text("newer")
        names = sorted(p.name for p in tmp_path.iterdir())  # the dead writer's scratch file of f.txt only
        assert names == sorted(["c.npz", "f.txt"] + [f.name for f in left[1:]])
        save_cache(tmp_path / "c.npz", ds)
        assert not left[-1].exists() and (tmp_path / "f.txt").read_text() == "newer"
    finally:
        live.kill()
        live.wait()


def test_a_run_folder_is_held_by_one_process_at_a_time(tmp_path, folder_holder):
    """hold_folder: re-entrant in its process, refused to another while held (naming the holder), free
    again once the holder is killed (SIGKILL: the system drops the hold), nothing left behind."""
    folder = tmp_path / "run"
    with hold_folder(folder) as held:
        assert held == folder and f"pid {os.getpid()}," in (folder / LOCK_NAME).read_text()
        with hold_folder(folder):  # the same process again (a script around library calls)
            pass
        assert (folder / LOCK_NAME).exists()
        (folder / "checkpoint.pt").write_text("mine")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt"]
    with pytest.raises(RuntimeError):  # a run refused before it wrote anything leaves no folder
        with hold_folder(tmp_path / "refused"):
            raise RuntimeError("refused")
    assert not (tmp_path / "refused").exists()

    other = folder_holder(folder)
    with pytest.raises(FolderBusy, match=f"pid {other.pid},.*another --out"):
        with hold_folder(folder):
            pass
    assert (folder / "checkpoint.pt").read_text() == "mine"
    other.kill()
    other.wait()
    assert (folder / LOCK_NAME).exists()  # its file stays, its hold does not
    with hold_folder(folder):
        assert f"pid {os.getpid()}," in (folder / LOCK_NAME).read_text()
    assert not (folder / LOCK_NAME).exists()


def test_a_file_system_without_locks_runs_unheld(tmp_path, monkeypatch):
    """flock failing for another reason than a holder (ENOLCK on some network mounts) is no refusal."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with hold_folder(tmp_path / "run"):
        (tmp_path / "run" / "checkpoint.pt").write_text("x")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["checkpoint.pt"]


def _copies_dataset() -> SkeletonDataset:
    """Six one-person sequences; test sequence 4 is a copy of training sequence 1, test sequence 5 is
    a copy of 2 except for one padded frame's length (a different input, so not a copy)."""
    x, lengths = to_canonical([_seq(6 + i, v=15, seed=i) for i in range(4)], SBU15,
                              Preprocess(frames=10, persons=1, centre="none"))
    x = np.concatenate([x, x[1:2], x[2:3]])
    lengths = np.concatenate([lengths, lengths[1:2], lengths[2:3] - 1])
    return SkeletonDataset(x=x, lengths=lengths, labels=np.array([0, 1, 0, 1, 1, 0]), layout=SBU15,
                           meta={"name": np.array([f"s{i}" for i in range(6)])},
                           protocols={"p": (np.array([0, 1, 2]), np.array([3, 4, 5])),
                                      "clean": (np.array([0, 1]), np.array([2, 3]))})


def test_test_copies_finds_exact_copies_of_training_inputs_only():
    ds = _copies_dataset()
    assert ds.test_copies("p").tolist() == [4]
    assert ds.test_copies("clean").tolist() == []
    ds.x[4, 0, 0, 0, 0] += 1e-3  # one coordinate differs: no longer the same input
    assert ds.test_copies("p").tolist() == []
    with pytest.raises(ConfigError, match="no protocol"):
        ds.test_copies("nope")
