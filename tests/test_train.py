"""Pretraining: the loss falls, checkpoints are plain dicts, resume is bit-identical, NaN stops cleanly."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from skelcl.cli import main
from skelcl.config import ProbeConfig, load_config
from skelcl.contrast import ContrastiveLearner
from skelcl.layouts import custom_layout
from skelcl.store import SkeletonDataset
from skelcl.errors import ConfigError, FolderBusy, ScheduleWarning
from skelcl.probe import linear_eval
from skelcl.train import (Pretrainer, TrainingDiverged, build_schedule, check_resume, load_checkpoint, group_ids,
                          partner_table, pretrain, read_checkpoint, train_indices)


def tiny_dataset(n=96, t=16, seed=0) -> SkeletonDataset:
    """Random-walk 'actions' of 4 classes with class-specific drift, 1 person x 5 joints."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    drift = rng.normal(size=(4, 1, 1, 5, 3)) * 0.1
    steps = rng.normal(size=(n, t, 1, 5, 3)) * 0.3 + drift[labels]
    x = np.cumsum(steps, axis=1).astype(np.float32)
    lengths = rng.integers(t // 2, t + 1, size=n)
    for i, L in enumerate(lengths):
        x[i, L:] = 0
    idx = np.arange(n)
    return SkeletonDataset(x=x, lengths=lengths.astype(np.int64), labels=labels.astype(np.int64),
                           layout=custom_layout(5, 0, [(1, 0), (2, 1), (3, 1), (4, 1)]),
                           class_names=[f"c{i}" for i in range(4)],
                           protocols={"all": (idx, idx)}, name="tiny")


def tiny_config(**extra):
    overrides = ["data.protocol=all", "model.hidden=32", "contrast.queue_size=64", "contrast.momentum=0.99",
                 "contrast.temperature=0.1", "contrast.normalize=true", "optim.lr=0.05", "optim.epochs=6",
                 "optim.milestones=[4]", "optim.batch_size=16", "train.tensorboard=false", "train.device=cpu",
                 "augment=[reverse, {shear: {amplitude: 0.3}}]"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, overrides)


def test_a_run_folder_in_use_by_another_process_is_refused(tmp_path, folder_holder, capsys):
    """The same run started twice would train twice into one folder (each resuming, saving over the
    other): the second is refused, from Python and from the CLI, and the first's files are untouched."""
    run = tmp_path / "run"
    pretrain(tiny_config(**{"optim.epochs": 1}), run, dataset=tiny_dataset(), progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    folder_holder(run)
    with pytest.raises(FolderBusy, match="in use by another process"):
        pretrain(tiny_config(**{"optim.epochs": 2}), run, dataset=tiny_dataset(), progress=False, resume=True)
    assert main(["pretrain", "synthetic", "--out", str(run), "--set", "optim.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "in use by another process" in err and "Traceback" not in err
    assert (run / "checkpoint.pt").read_bytes() == before


def test_short_pretraining_lowers_loss_and_writes_run_files(tmp_path):
    res = pretrain(tiny_config(**{"optim.epochs": 8}), tmp_path, dataset=tiny_dataset(), progress=False)
    losses = [r["loss"] for r in res.metrics]
    assert len(losses) == 8
    # epoch 1 still contrasts against the random initial queue; compare with the first full-queue epoch
    assert losses[-1] < 0.7 * losses[1], losses
    for f in ("config.yaml", "checkpoint.pt", "metrics.csv", "loss.png", "encoder.safetensors"):
        assert (tmp_path / f).exists(), f
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # a plain dict
    assert ckpt["epoch"] == 8 and ckpt["config"]["optim"]["epochs"] == 8
    learner, cfg = load_checkpoint(tmp_path)
    assert isinstance(learner, ContrastiveLearner) and cfg.model.hidden == 32
    from safetensors.torch import load_file

    enc = load_file(str(tmp_path / "encoder.safetensors"))
    torch.testing.assert_close(enc["rnn.weight_ih_l0"], learner.encoder_q.rnn.weight_ih_l0)


def test_distance_features_survive_the_checkpoint_round_trip(tmp_path):
    from skelcl.probe import encode

    ds = tiny_dataset(n=32)
    pretrain(tiny_config(**{"optim.epochs": 1, "model.frame_features": "coords+distances"}), tmp_path,
             dataset=ds, progress=False)
    learner, cfg = load_checkpoint(tmp_path)
    assert cfg.model.frame_features == "coords+distances"
    assert learner.encoder_q.rnn.input_size == 15 + 10  # 5 joints x 3 coordinates + 10 joint pairs
    feats = encode(learner, ds.x, ds.lengths, "cae")
    assert feats.shape == (32, 32) and np.isfinite(feats).all()


def test_reconstruction_term_is_logged_lowered_and_survives_the_checkpoint(tmp_path):
    res = pretrain(tiny_config(**{"optim.epochs": 6, "contrast.reconstruct": 1.0}), tmp_path,
                   dataset=tiny_dataset(), progress=False)
    recon = [r["recon"] for r in res.metrics]
    assert recon[-1] < 0.97 * recon[0], recon  # the decoder learns (slowly: random walks are hard to rebuild)
    assert all(r["loss"] > r["recon"] for r in res.metrics)  # InfoNCE + 1.0 x recon
    assert "recon" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
    learner, cfg = load_checkpoint(tmp_path)
    assert cfg.contrast.reconstruct == 1.0 and learner.decoder is not None
    torch.testing.assert_close(learner.decoder.out.weight, res.learner.decoder.out.weight)


def _weights(path: Path) -> dict:
    return torch.load(path / "checkpoint.pt", weights_only=True)["learner"]


@pytest.mark.parametrize("extra", [{}, {"optim.schedule": "cosine", "optim.warmup": 3}])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, extra):
    ds = tiny_dataset()
    cfg = tiny_config(**extra)  # with warm-up the cut falls inside it
    pretrain(cfg, tmp_path / "full", dataset=ds, progress=False)
    pretrain(cfg, tmp_path / "cut", dataset=ds, progress=False, stop_after=2)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    pretrain(cfg, tmp_path / "cut", dataset=ds, progress=False, resume=True)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_resume_that_asks_for_other_settings_is_refused_and_a_moved_run_goes_on(tmp_path):
    ds = tiny_dataset()
    cfg = tiny_config(**{"optim.epochs": 2})
    pretrain(cfg, tmp_path / "cut", dataset=ds, progress=False, stop_after=1)
    with pytest.raises(ConfigError, match=r"started with another config \(optim.lr: 0.05 -> 0.5; saved -> asked\)"):
        check_resume(tiny_config(**{"optim.epochs": 2, "optim.lr": 0.5}), tmp_path / "cut", ds)
    moved = tiny_config(**{"optim.epochs": 2, "data.root": str(tmp_path / "new"), "train.threads": 1})
    check_resume(moved, tmp_path / "cut", ds)  # only moved: accepted
    res = pretrain(load_config(None), tmp_path / "cut", dataset=ds, progress=False, resume=True,
                   data_root=str(tmp_path / "new"), device="cpu")
    assert [r["epoch"] for r in res.metrics] == [1, 2]
    assert res.config.data.root == str(tmp_path / "new") and res.config.optim.lr == 0.05  # the rest is the run's
    assert load_config(tmp_path / "cut" / "config.yaml").data.root == str(tmp_path / "new")
    other = tiny_dataset(n=64)  # moved onto data that is not the run's: refused before any weight loads
    with pytest.raises(ConfigError, match=r"started on \d+ pretraining sequences .* the data at .*new gives \d+"):
        pretrain(load_config(None), tmp_path / "cut", dataset=other, progress=False, resume=True,
                 data_root=str(tmp_path / "new"))


def test_a_file_that_is_not_a_readable_checkpoint_is_one_clear_error(tmp_path):
    """Cut short, another format, the safetensors export, another tool's .pt: each read path
    (load, config-only, resume, the resume check) names the file instead of a torch traceback."""
    ds = tiny_dataset()
    pretrain(tiny_config(**{"optim.epochs": 1}), tmp_path / "ok", dataset=ds, progress=False)
    good = (tmp_path / "ok" / "checkpoint.pt").read_bytes()
    assert read_checkpoint(tmp_path / "ok", config_only=True)["config"]["optim"]["epochs"] == 1
    cases = {"cut": (good[: len(good) // 2], "not a readable skelcl checkpoint"),
             "text": (b"not a checkpoint", "not a readable skelcl checkpoint"),
             "other": (None, "not a skelcl checkpoint: it has no config, learner")}
    for name, (data, msg) in cases.items():
        run = tmp_path / name
        run.mkdir()
        if data is None:
            torch.save({"state_dict": torch.zeros(2)}, run / "checkpoint.pt")
        else:
            (run / "checkpoint.pt").write_bytes(data)
        for read in (lambda: load_checkpoint(run), lambda: read_checkpoint(run, config_only=True),
                     lambda: check_resume(tiny_config(), run, ds),
                     lambda: pretrain(tiny_config(), run, dataset=ds, progress=False, resume=True)):
            with pytest.raises(ConfigError, match=f"{name}/checkpoint.pt is {msg.split(':')[0]}"):
                read()
    with pytest.raises(ConfigError, match="safetensors export, give its run folder"):
        load_checkpoint(tmp_path / "ok" / "encoder.safetensors")


def test_graph_bones_left_to_the_layout_and_moved_teachers_on_resume_are_not_another_config():
    from skelcl.train import config_conflicts

    saved = load_config(None, ["model.encoder=gcn", "model.graph=[[1,0],[2,1]]", "model.joints=3"]).to_dict()
    assert config_conflicts(saved, load_config(None, ["model.encoder=gcn"])) == []  # a sweep's unresolved point
    other = config_conflicts(saved, load_config(None, ["model.encoder=gcn", "model.graph=[[1,0],[2,0]]"]))
    assert len(other) == 1 and other[0].startswith("model.graph:")
    # the same bones written parent-first (the SBU layout before it was made child-first): the same graph,
    # unless model.bone_input reads which end is the parent
    flipped = ["model.encoder=gcn", "model.graph=[[0,1],[1,2]]"]
    assert config_conflicts(saved, load_config(None, flipped)) == []
    bones_saved = load_config(None, [*flipped[:1], "model.graph=[[1,0],[2,1]]", "model.bone_input=true"]).to_dict()
    conflicts = config_conflicts(bones_saved, load_config(None, [*flipped, "model.bone_input=true"]))
    assert [d.split(":")[0] for d in conflicts] == ["model.graph"]
    taught = load_config(None, ["distill.teachers=[/a, /b]"]).to_dict()
    elsewhere = load_config(None, ["distill.teachers=[/c, /d]"])
    assert config_conflicts(taught, elsewhere, moved_teachers=True) == []  # a resume: their targets are checked
    assert [d.split(":")[0] for d in config_conflicts(taught, elsewhere)] == ["distill.teachers"]  # a finished run


@pytest.mark.parametrize("paradigm", ["end_to_end", "memory_bank"])
def test_other_paradigms_train(tmp_path, paradigm):
    res = pretrain(tiny_config(**{"contrast.paradigm": paradigm, "optim.epochs": 2}), tmp_path,
                   dataset=tiny_dataset(), progress=False)
    assert all(np.isfinite(r["loss"]) for r in res.metrics)


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    ds = tiny_dataset()
    cfg = tiny_config()
    pretrain(cfg, tmp_path, dataset=ds, progress=False, stop_after=1)
    good = _weights(tmp_path)
    orig = ContrastiveLearner.forward

    def poisoned(self, *a, **k):
        return orig(self, *a, **k) * float("nan")

    monkeypatch.setattr(ContrastiveLearner, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        pretrain(cfg, tmp_path, dataset=ds, progress=False, resume=True)
    after = _weights(tmp_path)
    assert all(torch.equal(good[k], after[k]) for k in good)


def _multiview(n_perf: int = 24, seed: int = 0) -> SkeletonDataset:
    """tiny_dataset with each performance filmed by up to three cameras (view 3 missing for some)."""
    ds = tiny_dataset(n=3 * n_perf, seed=seed)
    perf = np.arange(3 * n_perf) // 3
    ds.meta = {"instance": np.asarray([f"p{p}" for p in perf]), "view": np.arange(3 * n_perf) % 3 + 1}
    return ds


def test_partner_table_lists_the_other_cameras_of_each_performance():
    ds = _multiview(4)
    rows = np.array([0, 1, 2, 3, 4, 6, 9, 10, 11])  # performance 1 lost one camera, performance 2 two
    table, counts = partner_table(ds, rows)
    assert counts.tolist() == [2, 2, 2, 1, 1, 0, 2, 2, 2]
    assert sorted(table[0, :2].tolist()) == [1, 2] and table[3, 0] == 4 and table[4, 0] == 3
    assert sorted(table[7, :2].tolist()) == [6, 8]
    with pytest.raises(ConfigError, match="cross_view"):
        partner_table(tiny_dataset(), np.arange(8))


def test_cross_view_keys_come_from_the_same_performance(tmp_path):
    ds = _multiview()
    ds.meta["instance"] = np.asarray([f"solo{i}" if 3 <= i < 6 else p  # no partner: keeps its own sequence
                                      for i, p in enumerate(ds.meta["instance"])])
    inst = ds.meta["instance"]
    tr = Pretrainer(tiny_config(**{"contrast.cross_view": 1.0}), ds)
    tr.begin_epoch(0)
    sel = torch.arange(len(ds))
    keys = tr.key_positions(sel, tr.cross_view)
    assert all(inst[k] == inst[s] for k, s in zip(keys.tolist(), sel.tolist()))
    assert (keys[3:6] == sel[3:6]).all() and (keys[6:] != sel[6:]).all()
    half = Pretrainer(tiny_config(**{"contrast.cross_view": 0.5}), ds)
    half.begin_epoch(0)
    moved = (half.key_positions(sel.repeat(20), half.cross_view) != sel.repeat(20)).float().mean()
    assert 0.35 < float(moved) < 0.6  # about half of the partnered keys
    res = pretrain(tiny_config(**{"contrast.cross_view": 1.0, "optim.epochs": 2}), tmp_path, dataset=ds,
                   progress=False)
    assert all(np.isfinite(r["loss"]) for r in res.metrics)


def test_cross_view_both_contrasts_own_view_and_partner(tmp_path, monkeypatch):
    """cross_view_both: the first key is the query's own sequence, the second another camera's."""
    ds = _multiview()
    inst = ds.meta["instance"]
    with pytest.raises(ConfigError, match="cross_view > 0"):
        Pretrainer(tiny_config(**{"contrast.cross_view_both": True}), ds)
    tr = Pretrainer(tiny_config(**{"contrast.cross_view": 0.5, "contrast.cross_view_both": True}), ds)
    seen = {}

    def spy(xq, xk, lengths, **kw):
        seen.update(xq=xq, xk=xk, **kw)
        return sum(p.sum() for p in tr.learner.parameters()) * 0  # a loss that backward() accepts

    monkeypatch.setattr(tr, "model", spy)
    monkeypatch.setattr(tr, "augment", lambda x, lengths, gen: x)  # see the sequences themselves
    order = tr.begin_epoch(0)
    sel = tr.batch_indices(order, 0)
    ref = Pretrainer(tiny_config(**{"contrast.cross_view": 0.5}), ds)
    ref.begin_epoch(0)
    partners = ref.key_positions(sel, 1.0)  # the same draws: perm_gen seeded alike
    assert all(inst[int(p)] == inst[int(s)] and p != s for p, s in zip(partners, sel))
    tr.step(sel)
    own, partner = tr.data.get(sel)[0], tr.data.get(partners)[0]
    assert torch.equal(seen["xq"], own) and torch.equal(seen["xk"], own)
    assert torch.equal(seen["xk2"], partner) and not torch.equal(partner, own)
    res = pretrain(tiny_config(**{"contrast.cross_view": 0.5, "contrast.cross_view_both": True,
                                  "optim.epochs": 2}), tmp_path, dataset=ds, progress=False)
    assert all(np.isfinite(r["loss"]) for r in res.metrics)


def test_bad_cross_view_settings_are_config_errors():
    with pytest.raises(ConfigError, match="cross_view"):
        Pretrainer(tiny_config(**{"contrast.cross_view": 1.5}), _multiview())
    with pytest.raises(ConfigError, match="queue or end_to_end"):
        Pretrainer(tiny_config(**{"contrast.cross_view": 0.5, "contrast.paradigm": "memory_bank"}), _multiview())


def test_group_ids_follow_the_performance():
    ds = _multiview(4)
    rows = np.array([0, 1, 2, 3, 6, 7])
    g = group_ids(ds, rows).tolist()
    assert g[0] == g[1] == g[2] and g[4] == g[5] and len({g[0], g[3], g[4]}) == 3
    assert group_ids(tiny_dataset(), np.arange(5)).tolist() == list(range(5))  # no metadata: itself


def test_mining_switches_on_at_mine_after_and_training_stays_finite(tmp_path):
    ds = _multiview()
    cfg = tiny_config(**{"contrast.cross_view": 0.5, "contrast.exclude_group": "true", "contrast.mine_k": 2,
                         "contrast.mine_after": 2, "optim.epochs": 3})
    tr = Pretrainer(cfg, ds)
    tr.begin_epoch(0)
    assert not tr.learner.mining
    tr.begin_epoch(2)
    assert tr.learner.mining
    res = pretrain(cfg, tmp_path, dataset=ds, progress=False)
    assert len(res.metrics) == 3 and all(np.isfinite(r["loss"]) for r in res.metrics)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["learner"]["queue.groups"] >= 0).all()  # every slot was overwritten by a real key
    with pytest.raises(ConfigError, match="mine_k"):
        Pretrainer(tiny_config(**{"contrast.mine_k": -1}), ds)


def test_pretrain_on_all_takes_the_test_split_too():
    ds = _multiview(4)
    ds.protocols = {"xview": (np.arange(8), np.arange(8, 12))}
    assert train_indices(ds, "xview").tolist() == list(range(8))
    assert train_indices(ds, "xview", "all").tolist() == list(range(12))
    assert Pretrainer(tiny_config(**{"data.protocol": "xview", "data.pretrain_on": "all"}), ds).n == 12
    with pytest.raises(ConfigError, match="pretrain_on"):
        train_indices(ds, "xview", "test")


def _lrs(**over) -> list[float]:
    cfg = tiny_config(**{"optim.lr": 0.1, "optim.epochs": 10, **over})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
    sched, out = build_schedule(cfg, opt), []
    for _ in range(cfg.optim.epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_lr_schedules_follow_their_formulas():
    assert _lrs(**{"optim.milestones": "[6]"}) == pytest.approx([0.1] * 6 + [0.01] * 4)
    assert _lrs(**{"optim.schedule": "cosine"}) == pytest.approx(
        [0.05 * (1 + math.cos(math.pi * e / 10)) for e in range(10)])
    # warm-up: lr / (w + 1), 2 lr / (w + 1), ... then the schedule over the remaining epochs;
    # step milestones stay in absolute epochs
    assert _lrs(**{"optim.schedule": "cosine", "optim.warmup": 2}) == pytest.approx(
        [0.1 / 3, 0.2 / 3] + [0.05 * (1 + math.cos(math.pi * e / 8)) for e in range(8)])
    assert _lrs(**{"optim.milestones": "[6]", "optim.warmup": 2}) == pytest.approx(
        [0.1 / 3, 0.2 / 3] + [0.1] * 4 + [0.01] * 4)
    for bad, msg in (({"optim.schedule": "linear"}, "step, cosine"), ({"optim.warmup": 10}, "optim.warmup"),
                     ({"optim.milestones": "[2]", "optim.warmup": 3}, "after the 3 warm-up epochs"),
                     ({"optim.epochs": 0}, "optim.epochs must be at least 1, got 0")):
        with pytest.raises(ConfigError, match=msg):
            _lrs(**bad)


def test_milestones_the_schedule_never_reaches_are_warned_about_and_shipped_configs_have_none(tmp_path, capsys):
    with pytest.warns(ScheduleWarning, match=r"optim.milestones \[10, 30\] are at or beyond optim.epochs=10"):
        assert _lrs(**{"optim.milestones": "[5, 10, 30]"}) == pytest.approx([0.1] * 5 + [0.01] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)
        _lrs(**{"optim.milestones": "[9]"})  # reached in the last epoch: no warning
        _lrs(**{"optim.schedule": "cosine"})  # milestones unused
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(20, 4)), np.arange(20) % 2
    with pytest.warns(ScheduleWarning, match=r"probe.milestones \[35, 60, 75\] are at or beyond probe.epochs=20"):
        linear_eval(f, y, f, y, ProbeConfig(epochs=20))
    # the CLI prints it as one line, like its errors
    sets = ["train.tensorboard=false", "train.device=cpu", "data.options.per_class=4", "model.hidden=16",
            "contrast.queue_size=16", "optim.epochs=1"]
    with warnings.catch_warnings():
        warnings.simplefilter("always", ScheduleWarning)
        args = ["pretrain", "synthetic", "--out", str(tmp_path / "r"), "--quiet"]
        assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    err = capsys.readouterr().err
    late = load_config("synthetic").optim.milestones
    assert f"skelcl: warning: optim.milestones {late} are at or beyond optim.epochs=1" in err and "Warning:" not in err
    for path in sorted((Path(__file__).parent.parent / "skelcl" / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.optim.schedule != "step" or max(cfg.optim.milestones, default=0) < cfg.optim.epochs, path.name
        assert max(cfg.probe.milestones, default=0) < cfg.probe.epochs, path.name
