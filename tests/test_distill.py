"""Distillation (skelcl.distill) on the embedded synthetic set: targets, refusals, a run that the
evaluation reads, and a resume that ends where an uninterrupted run does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skelcl.cli import main
from skelcl.config import load_config
from skelcl.augment import build_augment
from skelcl.distill import (_averaged_checkpoint, check_teachers, distill, flatten_spectrum, group_average,
                            load_teachers, mix_batch, relation_loss, relation_targets, state_grid, state_lengths,
                            teacher_states, teacher_targets, teachers_on)
from skelcl.probe import encode
from skelcl.errors import ConfigError
from skelcl.train import BatchSource, TrainingDiverged, load_checkpoint, load_data, pretrain, train_indices

SMALL = ["train.tensorboard=false", "train.device=cpu", "data.options.per_class=10", "model.hidden=32",
         "contrast.queue_size=64"]
STUDENT = SMALL + ["optim.optimizer=adamw", "optim.lr=0.003", "optim.epochs=4", "optim.milestones=[3]"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> list[Path]:
    out = []
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"teacher{seed}")
        pretrain(load_config("synthetic", SMALL + ["optim.epochs=2", f"train.seed={seed}"]), d, progress=False)
        out.append(d)
    return out


def test_group_average_matches_a_hand_computation():
    t = torch.tensor([[1.0, 2.0], [3.0, 6.0], [10.0, 0.0], [5.0, 4.0]])
    g = torch.tensor([0, 0, 1, 0])
    got = group_average(t, g)
    want = torch.tensor([[3.0, 4.0], [3.0, 4.0], [10.0, 0.0], [3.0, 4.0]])
    assert torch.allclose(got, want)


def test_mix_batch_matches_a_hand_computation():
    x = torch.arange(3 * 4 * 1 * 2 * 3, dtype=torch.float32).view(3, 4, 1, 2, 3)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    lam = torch.tensor([1.0, 0.25, 0.5])
    xm, lm, tm = mix_batch(x, torch.tensor([4, 2, 3]), t, lam)
    assert torch.equal(xm[0], x[0])
    assert torch.allclose(xm[1], 0.25 * x[1] + 0.75 * x[2]) and torch.allclose(xm[2], 0.5 * x[2] + 0.5 * x[0])
    assert torch.allclose(tm, torch.tensor([[1.0, 0.0], [1.5, 1.75], [1.5, 1.0]]))
    assert lm.tolist() == [4, 3, 4]


def test_targets_give_each_teacher_equal_weight_and_unit_mean_variance(teachers):
    cfg = load_config("synthetic", SMALL)
    ds = load_data(cfg)
    rows = train_indices(ds, cfg.data.protocol, cfg.data.pretrain_on)
    tgt, record = teacher_targets(teachers, cfg, ds, rows)
    dims = [r["dim"] for r in record]
    assert tgt.shape == (len(rows), sum(dims)) and len(record) == 2
    assert np.allclose(tgt.mean(0), 0.0, atol=1e-4)
    assert tgt.var(0).mean() == pytest.approx(1.0, rel=1e-3)
    first = tgt[:, :dims[0]]
    assert (first ** 2).sum(1).mean() == pytest.approx((tgt ** 2).sum(1).mean() / 2, rel=1e-3)


def test_teachers_are_refused_when_missing_repeated_or_the_run_itself(teachers, tmp_path):
    with pytest.raises(ConfigError, match="at least one teacher"):
        check_teachers([])
    with pytest.raises(ConfigError, match="no checkpoint"):
        check_teachers([tmp_path / "nowhere"])
    with pytest.raises(ConfigError, match="same run as"):
        check_teachers([teachers[0], teachers[0] / "checkpoint.pt"])
    with pytest.raises(ConfigError, match="teach itself"):
        check_teachers([teachers[0]], out_dir=teachers[0])


def test_distillation_under_torchrun_is_refused_before_it_writes(teachers, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{teachers[0]}]"])
    with pytest.raises(ConfigError, match="one process"):
        distill(cfg, tmp_path / "student", progress=False)
    assert not (tmp_path / "student").exists()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="not a number of processes"):
        distill(cfg, tmp_path / "student", progress=False)


def test_a_teacher_of_another_dataset_is_refused(teachers, tmp_path):
    ckpt = torch.load(teachers[0] / "checkpoint.pt", map_location="cpu", weights_only=True)
    ckpt["config"]["data"]["dataset"] = "sbu"
    torch.save(ckpt, tmp_path / "other.pt")
    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{tmp_path / 'other.pt'}]"])
    with pytest.raises(ConfigError, match="pretrained on 'sbu'"):
        distill(cfg, tmp_path / "student", progress=False)


def test_distillation_fits_the_teachers_and_resumes_to_the_same_weights(teachers, tmp_path):
    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"])
    whole = pretrain(cfg, tmp_path / "whole", progress=False)  # pretrain() hands it to distill()
    losses = [row["loss"] for row in whole.metrics]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0]
    learner, saved = load_checkpoint(tmp_path / "whole")  # a plain checkpoint that evaluate reads
    assert saved.distill.teachers == [str(teachers[0]), str(teachers[1])]
    for a, b in zip(learner.encoder_q.state_dict().values(), learner.encoder_k.state_dict().values()):
        assert torch.equal(a, b)
    assert (tmp_path / "whole" / "encoder.safetensors").exists()

    distill(cfg, tmp_path / "cut", progress=False, stop_after=2)
    assert not (tmp_path / "cut" / "encoder.safetensors").exists()
    resumed = pretrain(load_config("synthetic", SMALL), tmp_path / "cut", resume=True, progress=False)
    assert [r["epoch"] for r in resumed.metrics] == [1, 2, 3, 4]
    for a, b in zip(whole.learner.encoder_q.state_dict().values(), resumed.learner.encoder_q.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_weight_averaged_student_becomes_the_encoder_and_survives_a_resume(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"]
    distill(load_config("synthetic", over), tmp_path / "plain", progress=False)
    cfg = load_config("synthetic", over + ["distill.ema=0.5"])
    distill(cfg, tmp_path / "cut", progress=False, stop_after=3)
    raw, _ = load_checkpoint(tmp_path / "plain")
    mid, _ = load_checkpoint(tmp_path / "cut")  # before the end the encoder is the trained network
    plain3 = distill(load_config("synthetic", over), tmp_path / "plain3", progress=False, stop_after=3)
    for a, b in zip(mid.encoder_q.state_dict().values(), plain3.learner.encoder_q.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)  # averaging leaves the training itself alone
    whole = distill(cfg, tmp_path / "whole", progress=False)
    resumed = distill(cfg, tmp_path / "cut", resume=True, progress=False)
    q, k = whole.learner.encoder_q.state_dict(), whole.learner.encoder_k.state_dict()
    assert all(torch.equal(q[n], k[n]) for n in q)  # the average is the run's encoder
    assert any(not torch.allclose(q[n], raw.encoder_q.state_dict()[n]) for n in q if q[n].is_floating_point())
    for n, v in resumed.learner.encoder_q.state_dict().items():
        assert torch.allclose(v, q[n], atol=1e-6)
    with pytest.raises(ConfigError, match="distill.ema is a decay"):
        distill(load_config("synthetic", over + ["distill.ema=1.0"]), tmp_path / "bad", progress=False)


def test_distillation_with_infonce_logs_both_terms_and_resumes_to_the_same_weights(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"]
    plain = distill(load_config("synthetic", over), tmp_path / "plain", progress=False)
    cfg = load_config("synthetic", over + ["distill.contrast=0.5"])
    whole = distill(cfg, tmp_path / "whole", progress=False)
    rows = whole.metrics
    assert len(rows) == 4 and all(np.isfinite(r["infonce"]) for r in rows)
    assert all(r["loss"] > 0.5 * r["infonce"] > 0 for r in rows)  # loss = MSE + 0.5 InfoNCE, MSE > 0
    assert "infonce" not in plain.metrics[0] and (tmp_path / "whole" / "loss.png").stat().st_size > 0
    q, k = whole.learner.encoder_q.state_dict(), whole.learner.encoder_k.state_dict()
    floats = [n for n in q if q[n].is_floating_point() and "running" not in n]
    assert any(not torch.allclose(q[n], k[n]) for n in floats)  # the key encoder is a momentum average
    assert any(not torch.allclose(q[n], plain.learner.encoder_q.state_dict()[n]) for n in floats)
    distill(cfg, tmp_path / "cut", progress=False, stop_after=2)
    resumed = distill(cfg, tmp_path / "cut", resume=True, progress=False)
    for n, v in resumed.learner.state_dict().items():
        assert torch.allclose(v, whole.learner.state_dict()[n], atol=1e-5), n
    bad = {"distill.contrast=-1": "loss weight", "distill.contrast=0.5,distill.ema=0.9": "key encoder's slot",
           "distill.contrast=0.5,contrast.cross_view=1.5": "probability in",
           "distill.contrast=0.5,contrast.cross_view=0.5,contrast.cross_view_both=true": "one key per query"}
    _refused(over, bad, tmp_path)
    with pytest.raises(ConfigError, match="paradigm queue"):
        distill(load_config("synthetic", over + ["distill.contrast=0.5", "contrast.paradigm=end_to_end"]),
                tmp_path / "bad2", progress=False)


def _refused(over: list[str], bad: dict[str, str], tmp_path: Path) -> None:
    """Each comma-separated set of overrides in ``bad`` is refused with a ConfigError matching its message."""
    for sets, msg in bad.items():
        with pytest.raises(ConfigError, match=msg):
            distill(load_config("synthetic", over + sets.split(",")), tmp_path / "bad", progress=False)


def _changes_the_training_and_resumes(over: list[str], option: str, tmp_path: Path) -> None:
    """A 4-epoch student with ``option`` trains (finite loss) differently from one without it, and
    a run cut after 2 epochs resumes to the same weights."""
    plain = distill(load_config("synthetic", over), tmp_path / "plain", progress=False, stop_after=2)
    cfg = load_config("synthetic", over + [option])
    whole = distill(cfg, tmp_path / "whole", progress=False)
    assert len(whole.metrics) == 4 and all(np.isfinite(r["loss"]) for r in whole.metrics)
    assert whole.metrics[0]["loss"] != plain.metrics[0]["loss"]
    distill(cfg, tmp_path / "cut", progress=False, stop_after=2)
    resumed = distill(cfg, tmp_path / "cut", resume=True, progress=False)
    for n, v in resumed.learner.encoder_q.state_dict().items():
        assert torch.allclose(v, whole.learner.encoder_q.state_dict()[n], atol=1e-6), n


def test_mixup_changes_the_training_resumes_and_is_refused_beside_infonce(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"]
    _changes_the_training_and_resumes(over, "distill.mixup=0.4", tmp_path)  # the student saw mixed sequences
    bad = {"distill.mixup=-0.5": "Beta", "distill.mixup=0.4,distill.contrast=0.5": "no positive key"}
    _refused(over, bad, tmp_path)


def test_flatten_spectrum_matches_a_hand_computation():
    # orthogonal principal directions with singular values 4 and 1 (centred columns)
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) / 2  # (4, 2), orthonormal columns
    v = torch.tensor([[0.6, 0.8, 0.0], [-0.8, 0.6, 0.0]])  # (2, 3), orthonormal rows
    mean = torch.tensor([[1.0, -2.0, 3.0]])
    t = mean + u @ torch.diag(torch.tensor([4.0, 1.0])) @ v
    assert torch.equal(flatten_spectrum(t, 0.0), t)
    # alpha 0.5: singular values 2 and 1, rescaled to the old total 16 + 1: factor sqrt(17 / 5)
    c = (17 / 5) ** 0.5
    want = mean + u @ torch.diag(torch.tensor([2.0 * c, 1.0 * c])) @ v
    assert torch.allclose(flatten_spectrum(t, 0.5), want, atol=1e-5)
    whitened = flatten_spectrum(t, 1.0) - mean
    assert torch.allclose(torch.linalg.svdvals(whitened)[:2], torch.full((2,), (17 / 2) ** 0.5), atol=1e-5)
    # a fixed linear map: the map of a mixture of two rows is the mixture of their maps
    flat = flatten_spectrum(torch.cat([t, 0.3 * t[:1] + 0.7 * t[1:2]]), 0.5)
    assert torch.allclose(flat[-1], 0.3 * flat[0] + 0.7 * flat[1], atol=1e-5)


def test_flattened_targets_change_the_training_resume_and_are_refused_out_of_range(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"]
    _changes_the_training_and_resumes(over, "distill.whiten=0.5", tmp_path)
    bad = {"distill.whiten=1.5": "exponent in", "distill.whiten=-0.1": "exponent in",
           "distill.whiten=0.5,distill.consistent=true": "set one of them"}
    _refused(over, bad, tmp_path)


def test_teachers_on_the_raw_batch_give_back_their_targets_and_follow_a_shear(teachers, tmp_path):
    scaled = tmp_path / "scaled"  # a teacher of another preprocessing: its batches come from its own view
    pretrain(load_config("synthetic", SMALL + ["optim.epochs=1", "data.preprocess.scale=true"]), scaled, progress=False)
    cfg = load_config("synthetic", SMALL)
    ds = load_data(cfg)
    rows = train_indices(ds, cfg.data.protocol, cfg.data.pretrain_on)
    loaded = load_teachers([teachers[0], scaled], cfg, ds, rows)
    assert loaded[0].ds is ds and loaded[1].ds is not ds
    targets, _ = teacher_targets(loaded, cfg, ds, rows)
    cpu = torch.device("cpu")
    sources = {id(t.ds): None if t.ds is ds else BatchSource(t.ds, t.rows, cpu) for t in loaded}
    sel = torch.arange(8)
    xb, lb, _ = BatchSource(ds, rows, cpu).get(sel)
    got = teachers_on(loaded, sources, sel, (xb, lb), build_augment([]), [], None)
    assert torch.allclose(got, torch.from_numpy(targets[:8]), atol=1e-4)  # raw input: the targets themselves

    shear = build_augment([{"shear": {"amplitude": 0.5}}])
    params = shear.draw(xb, lb, torch.Generator().manual_seed(0))
    got = teachers_on(loaded, sources, sel, (shear.apply(xb, lb, params), lb), shear, params, None)
    t = loaded[1]  # its own preprocessing, sheared by the student's draws: x' = S x per joint
    xt = torch.einsum("btmvc,bdc->btmvd", torch.from_numpy(t.ds.x[t.rows[:8]]).float(), params[0]["matrix"])
    f = encode(t.learner, xt, np.asarray(t.ds.lengths)[t.rows[:8]], t.cfg.probe.representation, device=cpu)
    want = (torch.from_numpy(f) - t.mean) * t.scale
    assert torch.allclose(got[:, -want.shape[1]:], want, atol=1e-4)
    assert not torch.allclose(got, torch.from_numpy(targets[:8]), atol=1e-2)


def test_consistent_teaching_changes_the_training_resumes_and_refuses_what_it_cannot_share(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]", "distill.group_mean=false"]
    _changes_the_training_and_resumes(over, "distill.consistent=true", tmp_path)  # the targets follow the views
    mixed = distill(load_config("synthetic", over + ["distill.consistent=true", "distill.mixup=0.4"]),
                    tmp_path / "mixed", progress=False, stop_after=1)
    assert np.isfinite(mixed.metrics[0]["loss"])
    with pytest.raises(ConfigError, match="InfoNCE views"):
        distill(load_config("synthetic", over + ["distill.consistent=true", "distill.contrast=0.5"]),
                tmp_path / "bad", progress=False)
    short = tmp_path / "short"
    pretrain(load_config("synthetic", SMALL + ["optim.epochs=1", "data.preprocess.frames=24"]), short, progress=False)
    with pytest.raises(ConfigError, match="cannot be shared"):
        distill(load_config("synthetic", STUDENT + [f"distill.teachers=[{short}]", "distill.consistent=true"]),
                tmp_path / "bad2", progress=False)


def test_infonce_beside_the_regression_takes_its_keys_from_the_other_cameras(tmp_path, monkeypatch):
    import skelcl.distill as module
    from test_train import _multiview, tiny_config

    ds = _multiview(12)
    teacher = tmp_path / "teacher"
    pretrain(tiny_config(**{"optim.epochs": 1}), teacher, dataset=ds, progress=False)
    drawn: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    real = module.partner_positions

    def spy(partners, sel, prob, gen):
        keys = real(partners, sel, prob, gen)
        drawn.append((sel.clone(), keys.clone(), prob))
        return keys

    monkeypatch.setattr(module, "partner_positions", spy)
    targets = np.random.default_rng(0).normal(size=(len(ds), 8)).astype(np.float32)  # the keys are under test
    monkeypatch.setattr(module, "teacher_targets", lambda t, c, d, rows, progress=False: (targets[rows], [{}]))
    cfg = tiny_config(**{"optim.epochs": 2, "optim.optimizer": "adamw", "optim.lr": 0.003,
                         "contrast.cross_view": 1.0, "distill.contrast": 0.5, "distill.teachers": f"[{teacher}]"})
    res = distill(cfg, tmp_path / "student", dataset=ds, progress=False)
    assert all(np.isfinite(r["infonce"]) for r in res.metrics)
    rows = train_indices(ds, cfg.data.protocol, cfg.data.pretrain_on)
    inst = np.asarray(ds.meta["instance"])[rows]
    assert len(drawn) == 2 * (len(rows) // 16) and all(p == 1.0 for *_, p in drawn)
    for sel, keys, _ in drawn:  # every key is another camera's recording of the query's performance
        assert (keys != sel).all() and (inst[keys.numpy()] == inst[sel.numpy()]).all()


def test_cli_distill_needs_teachers_and_says_so(capsys):
    assert main(["distill", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "--teachers" in err and "Traceback" not in err


def test_cli_distill_resumes_a_killed_run_with_its_own_config_and_evaluates_it(teachers, tmp_path, capsys):
    out = tmp_path / "student"
    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{teachers[0]}]", "optim.epochs=2"])
    distill(cfg, out, progress=False, stop_after=1)
    assert main(["distill", "synthetic", "--resume", "--out", str(out)]) == 2  # no CONFIG with --resume
    assert "saved config" in capsys.readouterr().err
    assert main(["distill", "--resume", "--out", str(out), "--quiet", "--device", "cpu"]) == 0  # --device may move it
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["distill"]["teachers"] == [str(teachers[0])]
    assert 0.0 <= res["linear"]["top1"] <= 100.0 and res["final_loss"] > 0
    assert len(torch.load(out / "checkpoint.pt", weights_only=True)["metrics"]) == 2


def test_a_diverging_distillation_stops_with_one_clear_error(teachers, tmp_path):
    names = ",".join(map(str, teachers))
    over = STUDENT + ["optim.optimizer=sgd", "optim.lr=1e30", f"distill.teachers=[{names}]"]
    with pytest.raises(TrainingDiverged, match="distillation loss became .* at epoch 1.*none yet"):
        distill(load_config("synthetic", over), tmp_path / "run", progress=False)


def test_a_run_given_relative_teacher_paths_resumes_from_another_directory(teachers, tmp_path, monkeypatch):
    monkeypatch.chdir(teachers[0].parent)
    rel = teachers[0].name
    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{rel}]", "optim.epochs=2"])
    distill(cfg, tmp_path / "student", progress=False, stop_after=1)
    saved = load_config(tmp_path / "student" / "config.yaml")
    assert saved.distill.teachers == [str(teachers[0].resolve())]
    monkeypatch.chdir(tmp_path)
    assert main(["distill", "--resume", "--out", "student", "--quiet"]) == 0
    assert len(torch.load(tmp_path / "student" / "checkpoint.pt", weights_only=True)["metrics"]) == 2


def test_relation_loss_matches_a_hand_computation():
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    log_pt = relation_targets(t, 0.5)
    cos = np.array([[1.0, 0.0, 0.5 ** 0.5], [0.0, 1.0, 0.5 ** 0.5], [0.5 ** 0.5, 0.5 ** 0.5, 1.0]])
    for i in range(3):
        others = [j for j in range(3) if j != i]
        e = np.exp(cos[i, others] / 0.5)
        assert np.allclose(log_pt[i, others].exp().numpy(), e / e.sum(), atol=1e-6)
        assert log_pt[i, i].exp() == 0
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 1.0]]), dim=1)
    z = torch.tensor([[3.0, 0.0], [0.0, -1.0]])  # the student's readouts of sequences 2 and 0
    sel = torch.tensor([2, 0])
    want = 0.0
    for zi, i in zip(z.numpy(), sel.tolist()):
        zi = zi / np.linalg.norm(zi)
        others = [j for j in range(3) if j != i]
        s = np.exp(bank.numpy()[others] @ zi / 0.2)
        ps, pt = s / s.sum(), log_pt[i, others].exp().numpy()
        want += float((pt * np.log(pt / ps)).sum()) / 2
    got = relation_loss(z, sel, bank, log_pt, 0.2)
    assert np.isclose(got.item(), want, atol=1e-5)
    same = relation_loss(bank[sel] * 3, sel, bank, relation_targets(bank * 7, 0.2), 0.2)  # the teachers' geometry
    assert abs(same.item()) < 1e-5


def test_the_relational_term_is_logged_changes_the_training_and_resumes(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"]
    _changes_the_training_and_resumes(over, "distill.relation=1.0", tmp_path)
    saved = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    bank = saved["distill"]["bank"]
    assert bank.shape[1] == 32 and torch.allclose(bank.norm(dim=1), torch.ones(len(bank)), atol=1e-5)
    rows = [r for r in (tmp_path / "whole" / "metrics.csv").read_text().splitlines()]
    assert "relation" in rows[0] and (tmp_path / "whole" / "loss.png").stat().st_size > 0
    bad = {"distill.relation=-1": "loss weight", "distill.relation=1,distill.relation_tau=0": "temperature",
           "distill.relation=1,distill.mixup=0.4": "distill.mixup",
           "distill.relation=1,distill.consistent=true": "distill.consistent"}
    _refused(over, bad, tmp_path)


def test_a_resume_onto_other_data_is_refused_before_the_targets(teachers, tmp_path):
    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{teachers[0]}]"])
    distill(cfg, tmp_path / "cut", progress=False, stop_after=1)
    other = load_data(load_config("synthetic", SMALL[:2] + ["data.options.per_class=12"]))
    n = len(train_indices(load_data(cfg), cfg.data.protocol, cfg.data.pretrain_on))
    m = len(train_indices(other, cfg.data.protocol, cfg.data.pretrain_on))
    with pytest.raises(ConfigError, match=f"started on {n} pretraining sequences .* gives {m} of"):
        distill(cfg, tmp_path / "cut", resume=True, progress=False, dataset=other)


def test_moved_teachers_resume_and_other_teachers_are_refused_by_their_targets(teachers, tmp_path):
    import shutil

    cfg = load_config("synthetic", STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"])
    distill(cfg, tmp_path / "cut", progress=False, stop_after=1)
    moved = [shutil.copytree(t, tmp_path / f"moved{i}") for i, t in enumerate(teachers)]
    with pytest.raises(ConfigError, match="other targets"):  # the same two, swapped: other targets
        distill(cfg, tmp_path / "cut", resume=True, progress=False, stop_after=2, teachers=moved[::-1])
    with pytest.raises(ConfigError, match="started with 2 teachers, 1 given"):
        distill(cfg, tmp_path / "cut", resume=True, progress=False, teachers=moved[:1])
    assert main(["distill", "--resume", "--out", str(tmp_path / "cut"), "--quiet", "--teachers", *map(str, moved)]) == 0
    assert load_config(tmp_path / "cut" / "config.yaml").distill.teachers == [str(m) for m in moved]
    assert len(torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["metrics"]) == 4


def test_a_soup_averages_students_branched_from_one_trunk_and_resumes_member_by_member(teachers, tmp_path, capsys,
                                                                                       monkeypatch):
    """distill.soup: student 0 is exactly the plain run of the seed, the others differ; the run's
    encoder is their weight average; a soup killed mid-way goes on from its members under --resume."""
    import skelcl.report

    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]"]
    plain = distill(load_config("synthetic", over), tmp_path / "plain", progress=False)
    cfg = load_config("synthetic", over + ["distill.soup=2", "distill.soup_branch=2"])
    plots: list[dict] = []
    real_plot = skelcl.report.plot_loss_curve
    monkeypatch.setattr(skelcl.report, "plot_loss_curve", lambda *a, **kw: plots.append(kw) or real_plot(*a, **kw))
    whole = distill(cfg, tmp_path / "soup", progress=False)
    assert plots[-1]["marks"] == {"branch (epoch 2)": 2} and len(plots[-1]["curves"]) == 2  # the soup's loss.png
    s0, _ = load_checkpoint(tmp_path / "soup" / "student-0")
    s1, c1 = load_checkpoint(tmp_path / "soup" / "student-1")
    assert c1.train.seed == 100 and whole.config.train.seed == 0 and whole.config.distill.soup == 2
    trunk = torch.load(tmp_path / "soup" / "trunk" / "checkpoint.pt", weights_only=True)
    assert trunk["epoch"] == 2 and [r["loss"] for r in trunk["metrics"]] == [r["loss"] for r in plain.metrics[:2]]
    a, b = s0.encoder_q.state_dict(), s1.encoder_q.state_dict()
    for n, v in plain.learner.encoder_q.state_dict().items():
        assert torch.allclose(a[n], v, atol=1e-6)  # student 0 = the plain run
    assert any(not torch.allclose(a[n], b[n]) for n in a if a[n].is_floating_point())
    soup_q = load_checkpoint(tmp_path / "soup")[0].encoder_q.state_dict()
    for n, v in soup_q.items():
        if v.is_floating_point():
            assert torch.allclose(v, (a[n] + b[n]) / 2, atol=1e-6)
    assert (tmp_path / "soup" / "encoder.safetensors").exists() and (tmp_path / "soup" / "loss.png").exists()

    cut = tmp_path / "cut"
    distill(cfg, cut, progress=False, stop_after=3)  # killed in the students' epoch 3
    assert not (cut / "checkpoint.pt").exists() and (cut / "student-1" / "checkpoint.pt").exists()
    assert main(["distill", "--resume", "--out", str(cut), "--quiet"]) == 0
    for n, v in load_checkpoint(cut)[0].encoder_q.state_dict().items():
        assert torch.allclose(v, soup_q[n], atol=1e-6)
    assert json.loads((cut / "results.json").read_text())["config"]["distill"]["soup"] == 2
    with pytest.raises(ConfigError, match="soup_branch"):
        distill(load_config("synthetic", over + ["distill.soup=2", "distill.soup_branch=4"]), tmp_path / "bad",
                progress=False)


def test_a_soup_trained_side_by_side_equals_the_sequential_one_and_resumes(teachers, tmp_path, capsys):
    """distill.soup_workers 2: the students train in two processes at once; the average is the
    sequential soup's, a soup cut mid-way resumes, and a member's error comes back as one message."""
    from skelcl.distill import _member_job

    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]", "distill.soup=2", "distill.soup_branch=2",
                      "train.threads=1"]
    seq = distill(load_config("synthetic", over), tmp_path / "seq", progress=False)
    cfg = load_config("synthetic", over + ["distill.soup_workers=2"])
    cut = tmp_path / "par"
    distill(cfg, cut, progress=False, stop_after=3)  # both students stop after their epoch 3
    assert not (cut / "checkpoint.pt").exists()
    assert [torch.load(cut / f"student-{j}" / "checkpoint.pt", weights_only=True)["epoch"] for j in (0, 1)] == [3, 3]
    par = distill(cfg, cut, resume=True, progress=True)
    assert "2 side by side (1 thread(s) each)" in capsys.readouterr().out
    want = seq.learner.encoder_q.state_dict()
    for n, v in par.learner.encoder_q.state_dict().items():
        assert torch.allclose(v, want[n], atol=1e-6), n
    with pytest.raises(ConfigError, match="soup_workers"):
        distill(load_config("synthetic", over + ["distill.soup_workers=0"]), tmp_path / "bad", progress=False)
    script = tmp_path / "no_guard.py"  # spawn re-runs an unguarded script in each child: one clear message
    sets, where = over + ["distill.soup_workers=2"], str(tmp_path / "unguarded")
    script.write_text("from skelcl.config import load_config\nfrom skelcl.distill import distill\n"
                      f"distill(load_config('synthetic', {sets!r}), {where!r})\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "a student's process died" in done.stderr and "__main__" in done.stderr
    other = load_config("synthetic", over + ["optim.lr=0.1"])  # not the config student-1 was trained with
    msg = _member_job(other.to_dict(), str(cut / "student-1"), None, load_data(other), None, None, None, 1)
    assert msg is not None and "lr" in msg


def test_a_varied_soup_trains_each_student_under_its_own_settings_from_the_plain_soups_trunk(teachers, tmp_path,
                                                                                            monkeypatch):
    """distill.soup_vary: the trunk and an unvaried student are the plain soup's; a varied student's
    config and optimizer carry its settings (lr scaled with its schedule, weight decay set); the soup's
    config is the run's; `skelcl average` takes the varied students; bad entries are refused early."""
    import skelcl.report
    from skelcl.distill import average_runs

    plots: list[dict] = []
    monkeypatch.setattr(skelcl.report, "plot_loss_curve", lambda *a, **kw: plots.append(kw))
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]", "distill.soup=2", "distill.soup_branch=2"]
    plain = distill(load_config("synthetic", over), tmp_path / "plain", progress=False)
    vary = 'distill.soup_vary=["", ["optim.lr=0.006", "optim.weight_decay=0.05", "distill.mixup=0.4"]]'
    varied = distill(load_config("synthetic", over + [vary]), tmp_path / "varied", progress=False)
    assert list(plots[-1]["curves"]) == ["student 0 (seed 0)", "student 1 (seed 100; optim.lr=0.006; "
                                         "optim.weight_decay=0.05; distill.mixup=0.4)"]  # the legend says how
    for part in ("trunk", "student-0"):
        a = torch.load(tmp_path / "plain" / part / "checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / "varied" / part / "checkpoint.pt", weights_only=True)
        assert all(torch.equal(a["learner"][k], b["learner"][k]) for k in a["learner"]), part
        assert a["config"] == b["config"], part
    s1 = torch.load(tmp_path / "varied" / "student-1" / "checkpoint.pt", weights_only=True)
    p1 = torch.load(tmp_path / "plain" / "student-1" / "checkpoint.pt", weights_only=True)
    assert (s1["config"]["optim"]["lr"], s1["config"]["optim"]["weight_decay"]) == (0.006, 0.05)
    assert s1["config"]["distill"]["mixup"] == 0.4 and s1["config"]["train"]["seed"] == 100
    group, plain_group = s1["optimizer"]["param_groups"][0], p1["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 0.05
    assert group["lr"] == pytest.approx(2 * plain_group["lr"]) and group["initial_lr"] == pytest.approx(0.006)
    losses = [[r["loss"] for r in c["metrics"]] for c in (s1, p1)]
    assert losses[0][:2] == losses[1][:2] and losses[0][2] != losses[1][2]  # the trunk's epochs, then apart
    assert [r["lr"] for r in s1["metrics"]] == pytest.approx([0.003, 0.003, 0.006, 0.0006])
    cfg = varied.config
    assert cfg.optim.lr == 0.003 and cfg.distill.mixup == 0.0 and cfg.distill.soup == 2
    assert cfg.distill.soup_vary == ["", ["optim.lr=0.006", "optim.weight_decay=0.05", "distill.mixup=0.4"]]
    average_runs([tmp_path / "varied" / f"student-{j}" for j in (0, 1)], tmp_path / "by-hand", progress=False)
    want = torch.load(tmp_path / "varied" / "checkpoint.pt", weights_only=True)["learner"]
    got = torch.load(tmp_path / "by-hand" / "checkpoint.pt", weights_only=True)["learner"]
    assert all(torch.equal(want[k], got[k]) for k in want)
    first = distill(load_config("synthetic", over + ['distill.soup_vary=["distill.mixup=0.4"]']), tmp_path / "first",
                    progress=False)  # student 0 varied: the soup's config is still the run's
    assert first.config.distill.mixup == 0.0 and first.config.distill.soup_vary == ["distill.mixup=0.4"]
    assert torch.load(tmp_path / "first" / "student-0" / "checkpoint.pt", weights_only=True)["config"]["distill"][
        "mixup"] == 0.4

    for bad, why in ((['distill.soup_vary=["", "model.channels=[8, 8]"]'], "cannot differ"),
                     (['distill.soup_vary=["", "", "distill.mixup=0.4"]'], "3 entries for 2 students"),
                     (['distill.soup_vary=["", 3]'], "must be an override"),
                     (['distill.soup_vary=["", "distill.mixup=-1"]'], "distill.mixup"),
                     (['distill.soup_vary=["", "optim.lr=0"]'], "optim.lr must be > 0"),
                     (['distill.soup_vary=["", "augment=[spin]"]'], "spin"),
                     (['distill.soup=0', 'distill.soup_vary=["", "distill.mixup=0.4"]'], "needs distill.soup >= 2")):
        with pytest.raises(ConfigError, match=why):
            distill(load_config("synthetic", over + bad), tmp_path / "refused", progress=False)
        assert not (tmp_path / "refused" / "trunk").exists()


def test_an_average_by_hand_equals_the_soup_and_refuses_runs_that_do_not_share_a_start(teachers, tmp_path, capsys,
                                                                                         folder_holder):
    """average_runs / `skelcl average`: all of a soup's students give the soup's own weights and head;
    a subset is a run that `skelcl evaluate` reads; independent runs, other configs, one run, an
    occupied --out and one that another process is writing are refused before anything is written."""
    from skelcl.distill import average_runs

    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]", "distill.soup=3", "distill.soup_branch=2"]
    soup_dir = tmp_path / "soup"
    distill(load_config("synthetic", over), soup_dir, progress=False)
    students = [soup_dir / f"student-{j}" for j in range(3)]
    assert average_runs(students, tmp_path / "all", progress=False) == tmp_path / "all"
    want = torch.load(soup_dir / "checkpoint.pt", weights_only=True)
    got = torch.load(tmp_path / "all" / "checkpoint.pt", weights_only=True)
    assert got["averaged_from"] == [str((d / "checkpoint.pt").resolve()) for d in students]
    for part, a, b in (("learner", got["learner"], want["learner"]),
                       ("head", got["distill"]["head"], want["distill"]["head"])):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part

    pair = tmp_path / "pair"
    assert main(["average", str(students[0]), str(students[2]), "--out", str(pair)]) == 0
    assert f"skelcl evaluate {pair}" in capsys.readouterr().out
    s0, s2 = (load_checkpoint(d)[0].encoder_q.state_dict() for d in (students[0], students[2]))
    for n, v in load_checkpoint(pair)[0].encoder_q.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (s0[n] + s2[n]) / 2, atol=1e-6), n
    assert {"config.yaml", "metrics.csv", "encoder.safetensors"} <= {p.name for p in pair.iterdir()}
    assert main(["evaluate", str(pair), "--protocol", "knn", "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["knn"]["top1"] > 0

    for runs, why in (([teachers[0], teachers[1]], "do not share their first epoch"),
                      ([students[0], teachers[0]], "another config"),
                      ([students[0]], "at least two runs"),
                      ([students[0], students[0] / "checkpoint.pt"], "same run"),
                      ([students[0], tmp_path / "nothing"], "no checkpoint")):
        with pytest.raises(ConfigError, match=why):
            average_runs(runs, tmp_path / "refused", progress=False)
        assert not (tmp_path / "refused").exists()
    with pytest.raises(ConfigError, match="already holds a run"):
        average_runs(students[:2], pair, progress=False)
    busy = tmp_path / "busy"  # another `skelcl average` writing there right now
    folder_holder(busy)
    assert main(["average", str(students[0]), str(students[1]), "--out", str(busy)]) == 2
    assert "in use by another process" in capsys.readouterr().err
    assert not (busy / "checkpoint.pt").exists()


def test_recomputed_batchnorm_statistics_for_a_student_and_a_soup_leave_the_weights_alone(teachers, tmp_path):
    """distill.recompute_bn: the plain student's and the soup's weights are the runs' without it, their
    BatchNorm statistics those of the finished network re-estimated on the raw pretraining sequences;
    a soup's students are the plain ones, so finished students of a soup without it are reused."""
    import shutil

    from skelcl.probe import recompute_bn

    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]", "model.encoder=gcn",
                      "model.channels=[8, 16]", "model.strides=[2, 1]", "distill.soup_branch=2"]
    soup = distill(load_config("synthetic", over + ["distill.soup=2"]), tmp_path / "soup", progress=False)
    ds = soup.dataset
    rows = train_indices(ds, soup.config.data.protocol, soup.config.data.pretrain_on)

    def check(got: torch.nn.Module, plain: torch.nn.Module) -> None:
        want = {k: v.clone() for k, v in plain.state_dict().items()}
        assert recompute_bn(plain, ds.x, ds.lengths, soup.config.probe.representation, index=rows) > 0
        params = {k for k, _ in plain.named_parameters()}
        moved = False
        for k, v in got.state_dict().items():
            ref = want[k] if k in params else plain.state_dict()[k]
            assert torch.allclose(v.float(), ref.float(), atol=1e-5), k
            moved |= k not in params and v.is_floating_point() and not torch.allclose(v, want[k], atol=1e-4)
        assert moved  # the statistics did change

    plain = load_checkpoint(tmp_path / "soup" / "student-0")[0]  # the plain run of seed 0
    bn = distill(load_config("synthetic", over + ["distill.recompute_bn=true"]), tmp_path / "bn", progress=False)
    check(load_checkpoint(tmp_path / "bn")[0].encoder_q, plain.encoder_q)
    assert load_checkpoint(tmp_path / "bn")[1].distill.recompute_bn and bn.config.distill.recompute_bn

    reuse = tmp_path / "soup-bn"  # the soup's trunk and students, copied: only the average is new
    for d in ("trunk", "student-0", "student-1"):
        shutil.copytree(tmp_path / "soup" / d, reuse / d)
    before = (reuse / "student-1" / "checkpoint.pt").read_bytes()
    distill(load_config("synthetic", over + ["distill.soup=2", "distill.recompute_bn=true"]), reuse, progress=False)
    assert (reuse / "student-1" / "checkpoint.pt").read_bytes() == before
    learner, saved = load_checkpoint(reuse)
    assert saved.distill.recompute_bn and saved.distill.soup == 2
    check(learner.encoder_q, load_checkpoint(tmp_path / "soup")[0].encoder_q)


def test_state_grid_resamples_each_sequences_valid_states_as_interpolate_does():
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(3, 12, 4, generator=gen)
    valid = torch.tensor([12, 5, 1])
    got = state_grid(states, valid, 6)
    for b, v in enumerate(valid.tolist()):
        want = F.interpolate(states[b:b + 1, :v].transpose(1, 2), size=6, mode="linear", align_corners=False)
        assert torch.allclose(got[b], want[0].T, atol=1e-6)
    garbage = states.clone()
    garbage[1, 5:] = 1e6  # past the valid states: never read
    assert torch.equal(state_grid(garbage, valid, 6), got)
    assert torch.allclose(state_grid(states, valid, 12)[0], states[0])  # as many points as states: the states


def test_state_lengths_follow_a_graph_encoders_strides_and_a_recurrent_encoders_frames():
    graph = torch.nn.Module()
    graph.strides = [2, 1, 2]
    assert state_lengths(graph, torch.tensor([60, 7, 1, 0])).tolist() == [15, 2, 1, 1]
    assert state_lengths(torch.nn.Module(), torch.tensor([60, 7, 0])).tolist() == [60, 7, 1]


def test_per_step_targets_give_each_teacher_equal_weight_and_unit_mean_variance(teachers):
    cfg = load_config("synthetic", SMALL)
    ds = load_data(cfg)
    rows = train_indices(ds, cfg.data.protocol, cfg.data.pretrain_on)
    loaded = load_teachers(teachers, cfg, ds, rows)
    tgt = teacher_states(loaded, 5, torch.device("cpu"), batch=7)  # batches that do not divide the rows
    dims = [t.learner.encoder_q.output_dim for t in loaded]
    assert tgt.shape == (len(rows), 5, sum(dims))
    flat = tgt.reshape(-1, tgt.shape[-1])
    assert np.allclose(flat.mean(0), 0.0, atol=1e-4) and flat.var(0).mean() == pytest.approx(1.0, rel=1e-3)
    first = flat[:, :dims[0]]
    assert (first ** 2).sum(1).mean() == pytest.approx((flat ** 2).sum(1).mean() / 2, rel=1e-3)
    # the first teacher's block is its own states on the grid, standardised per dimension
    t = loaded[0]
    x, lengths = torch.as_tensor(t.ds.x[t.rows[:3]]), torch.as_tensor(t.ds.lengths[t.rows[:3]])
    with torch.no_grad():
        out = t.learner.encoder_q(x, lengths)
    grid = state_grid(out.states, state_lengths(t.learner.encoder_q, lengths), 5).numpy()
    for d in range(3):  # an affine map per dimension: perfectly correlated with the raw states
        assert np.corrcoef(tgt[:3, :, d].ravel(), grid[..., d].ravel())[0, 1] > 0.999


def test_the_per_step_term_is_logged_changes_the_training_resumes_and_refuses_what_moves_time(teachers, tmp_path):
    over = STUDENT + [f"distill.teachers=[{teachers[0]}, {teachers[1]}]", "augment=[shear]"]
    _changes_the_training_and_resumes(over, "distill.dense=1.0", tmp_path)
    saved = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    w = saved["distill"]["dense_head"]["weight"]
    assert w.shape == (32 + 32, 32)  # (the teachers' state widths, the student's)
    header = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()[0]
    assert "dense" in header and (tmp_path / "whole" / "loss.png").stat().st_size > 0
    bad = {"distill.dense=-1": "loss weight", "distill.dense=1,distill.dense_steps=0": "time grid",
           "distill.dense=1,distill.mixup=0.4": "distill.mixup",
           "distill.dense=1,augment=[reverse]": "keep time in place"}
    _refused(over, bad, tmp_path)


def test_a_soups_average_takes_the_per_step_head_with_the_rest():
    def state(v: float) -> dict:
        return {"learner": {"w": torch.full((2,), v)},
                "distill": {"head": {"weight": torch.full((3, 2), v)}, "dense_head": {"weight": torch.full((4, 2), v)}}}

    avg = _averaged_checkpoint([state(1.0), state(2.0), state(6.0)])
    assert torch.equal(avg["learner"]["w"], torch.full((2,), 3.0))
    assert torch.equal(avg["distill"]["head"]["weight"], torch.full((3, 2), 3.0))
    assert torch.equal(avg["distill"]["dense_head"]["weight"], torch.full((4, 2), 3.0))
