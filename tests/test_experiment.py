"""run / evaluate / results.json on the embedded synthetic set: the protocols end to end."""

import json

import numpy as np
import pytest
import torch

from skelcl.cli import main
from skelcl.config import load_config
from skelcl.errors import ConfigError
from skelcl.experiment import evaluate_checkpoint, run

SMALL = ["train.tensorboard=false", "train.device=cpu"]  # the demo itself


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = run(load_config("synthetic", SMALL), out, progress=False)
    return out, res


def test_run_writes_results_json_with_every_field(trained):
    out, res = trained
    saved = json.loads((out / "results.json").read_text())
    for key in ("dataset", "protocol", "representation", "linear", "knn", "baselines", "config", "seed",
                "git_commit", "skelcl_version", "created", "pretrain_seconds", "final_loss"):
        assert key in saved, key
    for key in ("top1", "top5", "best_epoch_top1", "best_epoch_note", "history", "epochs"):
        assert key in saved["linear"], key
    assert saved["config"]["data"]["dataset"] == "synthetic" and saved["seed"] == 0
    cm = np.array(saved["linear"]["confusion"])  # counts behind confusion.png
    assert cm.shape == (len(saved["class_names"]),) * 2 == (cm.shape[0], cm.shape[0])
    assert cm.sum() == saved["linear"]["num_test"]
    assert np.isclose(100 * np.trace(cm) / cm.sum(), saved["linear"]["top1"], atol=1e-6)
    assert {"random_encoder", "raw_input_logistic"} <= set(saved["baselines"])
    for f in ("loss.png", "tsne.png", "confusion.png", "encoder.safetensors", "metrics.csv"):
        assert (out / f).stat().st_size > 0, f


def test_trained_encoder_beats_random_encoder(trained):
    """Under both probes: the linear one and the training-free kNN (the demo prints both)."""
    _, res = trained
    rnd = res["baselines"]["random_encoder"]
    print("trained", res["linear"]["top1"], res["knn"]["top1"], "random", rnd["linear"]["top1"], rnd["knn"]["top1"])
    assert res["linear"]["top1"] > rnd["linear"]["top1"] + 3, (res["linear"], rnd["linear"])
    assert res["knn"]["top1"] > rnd["knn"]["top1"] + 3, (res["knn"], rnd["knn"])
    assert rnd["knn"]["k"] == res["knn"]["k"]


def test_evaluate_knn_and_representations(trained, tmp_path):
    out, res = trained
    knn = evaluate_checkpoint(out, ["knn"], out_dir=tmp_path, progress=False)
    assert 0 <= knn["knn"]["top1"] <= 100 and (tmp_path / "results.json").exists()
    new = tmp_path / "not" / "yet"  # an output folder that does not exist yet is created
    plus = evaluate_checkpoint(out, ["linear"], overrides=["probe.representation=cae+", "probe.epochs=10"],
                               out_dir=new, progress=False)
    assert plus["representation"] == "cae+" and plus["feature_dim"] == 2 * 128
    assert (new / "results.json").exists() and (new / "confusion.png").exists()


def test_semi_supervised_via_cli(trained, tmp_path, capsys):
    out, _ = trained
    rc = main(["evaluate", str(out), "--protocol", "semi", "--fractions", "0.1,0.5", "--out", str(tmp_path),
               "--quiet", "--set", "probe.epochs=5"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "semi 10% labels" in text and "semi 50% labels" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["semi"]) == {"0.1", "0.5"}


def test_fine_tuning_with_every_label_via_cli(trained, tmp_path, capsys):
    """Fraction 1 (every label): its epochs come from probe.finetune_epochs, and without them the
    CLI says so in one line; probe.finetune_augment fine-tunes on the run's augmentations."""
    out, _ = trained
    assert main(["evaluate", str(out), "--protocol", "linear,semi", "--fractions", "1", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 2  # refused before the linear probe runs
    assert "probe.finetune_epochs" in capsys.readouterr().err and not (tmp_path / "a" / "results.json").exists()
    common = ["evaluate", str(out), "--protocol", "semi", "--fractions", "1", "--quiet", "--set", "probe.epochs=3",
              "--set", "probe.finetune_epochs=2", "--set", "probe.finetune_lr=0.02"]
    assert main([*common, "--out", str(tmp_path / "raw")]) == 0
    assert main([*common, "--out", str(tmp_path / "aug"), "--set", "probe.finetune_augment=true"]) == 0
    assert "semi 100% labels: fine-tuned" in capsys.readouterr().out
    raw, aug = (json.loads((tmp_path / d / "results.json").read_text())["semi"]["1"] for d in ("raw", "aug"))
    n_train = raw["step2"]["num_train"]
    assert raw["labelled"] == aug["labelled"] == n_train
    assert raw["epochs"] == 2 and raw["lr"] == 0.02 and len(raw["step1"]["history"]) == 2
    assert raw["step1"]["history"] != aug["step1"]["history"]  # augmented views change every loss


def test_unknown_protocol_and_missing_checkpoint_are_clear_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: usage error, exit 2, names the known protocols
        main(["evaluate", str(tmp_path), "--protocol", "linear,probit"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "probit" in err and "linear, knn, semi" in err


def test_evaluate_several_protocols_in_one_call(trained, tmp_path, capsys):
    out, res = trained
    assert main(["evaluate", str(out), "--protocol", "linear,knn", "--out", str(tmp_path), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "linear (final epoch)" in text and "kNN k=" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["linear"]["top1"] == pytest.approx(res["linear"]["top1"])  # same checkpoint, same probe
    assert saved["knn"]["top1"] == pytest.approx(res["knn"]["top1"])
    assert "averaged" not in text  # one probe: no spread row
    assert main(["evaluate", str(out), "--out", str(tmp_path), "--quiet", "--set", "probe.restarts=3",
                 "--set", "probe.epochs=5"]) == 0
    text = capsys.readouterr().out
    single = json.loads((tmp_path / "results.json").read_text())["linear"]["restarts_top1"]
    assert len(single) == 3
    spread = f"{np.mean(single):.1f} ({min(single):.1f}-{max(single):.1f})"
    assert f"one probe of the 3 averaged: mean (min-max) | {spread}" in text


def test_reevaluation_never_overwrites_the_runs_own_results(trained, capsys):
    """Without --out, `skelcl evaluate` writes to RUN/evaluations/<protocol>__<settings>: the run's own
    results.json and plots keep the figures it was made with."""
    out, res = trained
    before = {f: (out / f).read_bytes() for f in ("results.json", "tsne.png", "confusion.png")}
    assert main(["evaluate", str(out), "--protocol", "knn", "--set", "probe.knn_k=5", "--quiet"]) == 0
    where = out / "evaluations" / "knn__probe.knn_k=5"
    assert str(where) in capsys.readouterr().out
    saved = json.loads((where / "results.json").read_text())
    assert saved["knn"]["k"] == 5 and saved["out_dir"] == str(where)
    assert {f: (out / f).read_bytes() for f in before} == before
    assert json.loads((out / "results.json").read_text())["knn"]["k"] == res["knn"]["k"] != 5


def test_evaluation_dir_names_are_safe_and_bounded(tmp_path):
    from skelcl.experiment import evaluation_dir
    assert evaluation_dir(tmp_path, "linear", ["probe.representation=cae+"]) == \
        tmp_path / "evaluations" / "linear__probe.representation=cae+"
    assert evaluation_dir(tmp_path / "checkpoint.pt", "knn", ["augment=[a, {b: 1}]"]).name == "knn__augment=_a,_b_1"
    assert evaluation_dir(tmp_path, "semi", ["train.threads=1", "probe.seed=2", "train.tensorboard=false"]) == \
        tmp_path / "evaluations" / "semi__probe.seed=2"
    long = evaluation_dir(tmp_path, "linear", [f"probe.x{i}=1" for i in range(40)])
    other = evaluation_dir(tmp_path, "linear", [f"probe.x{i}=2" for i in range(40)])
    assert len(long.name) <= 120 and long != other and long.parent == tmp_path / "evaluations"


def test_two_data_roots_with_one_name_get_two_evaluation_folders(tmp_path):
    from skelcl.experiment import _root_tag
    a, b = tmp_path / "a" / "nucla", tmp_path / "b" / "nucla"
    assert _root_tag(a).startswith("nucla-") and _root_tag(b).startswith("nucla-")
    assert _root_tag(a) != _root_tag(b)
    assert _root_tag(a) == _root_tag(tmp_path / "a" / ".." / "a" / "nucla")  # the same folder, spelt otherwise


def _short_run(out, *overrides):
    """A few-epoch run with a linear probe only: a second ensemble member."""
    run(load_config("synthetic", SMALL + list(overrides)), out, progress=False, baselines=False,
        protocols=("linear",))
    return out


def test_ensemble_of_two_streams_via_cli(trained, tmp_path, capsys):
    """--ensemble: each member keeps its own encoder (here a velocity stream); the mean softmax is scored."""
    out, res = trained
    other = _short_run(tmp_path / "motion", "model.motion=true", "optim.epochs=3")
    assert main(["evaluate", str(out), "--ensemble", str(other), "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "ensemble.json").read_text())
    assert [m["run"] for m in saved["members"]] == [str(out), str(other)]
    # the first member is the run's own probe: same checkpoint, same probe, same figure
    assert saved["members"][0]["top1"] == pytest.approx(res["linear"]["top1"])
    assert 0 <= saved["ensemble"]["top1"] <= saved["ensemble"]["top5"] <= 100
    assert 0 <= saved["logit_average"]["top1"] <= saved["logit_average"]["top5"] <= 100
    assert "linear classifier" in saved["logit_average"]["rule"]
    printed = capsys.readouterr().out
    assert "ensemble (mean softmax)" in printed and "mean logits (one linear classifier" in printed


def test_combined_scores_by_hand():
    """Softmaxes averaged saturate where logits averaged do not: run A is sure of class 0 on sequence 0,
    runs B and C lean to class 1. Hand values: softmax mean (0.413, 0.587) -> 1; logit mean (3.33, 1.33) -> 0."""
    from skelcl.experiment import combine_scores

    a = np.array([[10.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    b = np.array([[0.0, 2.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    y, copies = np.array([1, 1, 0]), np.array([False, True, False])
    res = combine_scores([a, b, b], y, copies)
    assert res["ensemble"]["top1"] == pytest.approx(100.0) and res["ensemble"]["top1_without_copies"] == 100.0
    assert res["logit_average"]["top1"] == pytest.approx(200 / 3)
    assert res["logit_average"]["top1_without_copies"] == 50.0
    assert res["ensemble"]["top5"] == 100.0  # k clipped to the two classes
    assert "top1_without_copies" not in combine_scores([a, b], y, np.zeros(3, bool))["ensemble"]


def test_ensemble_rejects_a_different_split(trained, tmp_path, capsys):
    out, _ = trained
    xview = _short_run(tmp_path / "xview", "data.protocol=xview", "optim.epochs=2")
    assert main(["evaluate", str(out), "--ensemble", str(xview)]) == 2
    assert "differs from the first run" in capsys.readouterr().err
    # --split applies to every member, so both are then probed on the same xsub split
    assert main(["evaluate", str(out), "--ensemble", str(xview), "--split", "xsub", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "ensemble.json").read_text())["protocol"] == "xsub"


def test_ensemble_takes_several_runs_per_flag_and_counts_each_once(trained, tmp_path, capsys):
    """`--ensemble A B` (a shell glob) adds both; the same run twice, by another spelling, is refused
    before anything is loaded, so a glob that also matches the first run cannot double its vote."""
    out, _ = trained
    assert main(["evaluate", str(out), "--ensemble", str(tmp_path / "other"), str(out / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err
    assert "the same run as" in err and "Traceback" not in err


def test_evaluate_cae_max_doubles_the_feature(trained, tmp_path):
    out, _ = trained
    r = evaluate_checkpoint(out, ["linear"], overrides=["probe.representation=cae_max", "probe.epochs=10"],
                            out_dir=tmp_path, progress=False)
    assert r["representation"] == "cae_max" and r["feature_dim"] == 2 * 128 and 0 <= r["linear"]["top1"] <= 100
    both = evaluate_checkpoint(out, ["linear", "knn"], overrides=["probe.representation=cae_max", "probe.epochs=10",
                                                               "probe.both_directions=true"],
                               out_dir=tmp_path, progress=False)
    assert both["feature_dim"] == 4 * 128 and both["config"]["probe"]["both_directions"] is True


def test_random_encoder_baseline_reads_out_like_the_trained_one(tmp_path):
    """The untrained baseline uses the run's own readout (cae_max here), not a different one."""
    res = run(load_config("synthetic", SMALL + ["optim.epochs=1", "probe.epochs=2", "probe.representation=cae_max",
                                                "probe.both_directions=true"]),
              tmp_path, progress=False, protocols=("linear",))
    assert res["baselines"]["random_encoder"]["linear"]["feature_dim"] == res["linear"]["feature_dim"] == 4 * 128


def test_reproduce_table_rows_skip_methods_missing_from_cached_cells():
    from skelcl.reproduce import format_table
    full = {"top1": {"RNN (supervised)": 40.0, "GRU (supervised)": 41.0, "LSTM (supervised)": 42.0,
                     "CAE": 50.0, "CAE+": 51.0, "CAE ++ max": 53.0}}
    old = {"top1": {k: v for k, v in full["top1"].items() if k != "CAE ++ max"}}
    table = format_table("nucla", ["xview"], {"xview": [full, full]}, "ours")
    assert "| CAE ++ max | 53.0 ± 0.0 |" in table and "| CAE | 50.0 ± 0.0 |" in table
    table = format_table("nucla", ["xview"], {"xview": [old]}, "ours")
    assert "CAE ++ max" not in table and "| CAE+ | 51.0 |" in table


def test_reproduce_cell_has_every_row_whatever_the_config_readout(tmp_path):
    """A reproduce cell probes each row's own readout (CAE stays the paper's forward-only TAP even when
    the config asks for both directions) and feeds every row of the table."""
    from skelcl.reproduce import METHODS, _cell, format_table
    from skelcl.train import load_data
    cfg = load_config("synthetic", SMALL + ["optim.epochs=1", "probe.epochs=2", "probe.both_directions=true"])
    ds = load_data(cfg)
    res = _cell(cfg, ds, "xsub", 0, tmp_path / "cell", progress=False, supervised_epochs=1)
    assert set(res["top1"]) == set(METHODS)
    again = evaluate_checkpoint(tmp_path / "cell", ["linear"],
                                overrides=["probe.both_directions=false", "probe.epochs=2"],
                                out_dir=tmp_path / "ev", progress=False)
    assert again["linear"]["top1"] == pytest.approx(res["top1"]["CAE"])  # the paper's forward-only TAP
    table = format_table("sbu", ["xsub"], {"xsub": [res]}, "ours")
    assert all(f"| {m} |" in table for m in METHODS)
    assert _cell(cfg, ds, "xsub", 0, tmp_path / "cell", progress=False, supervised_epochs=1) == res  # read back
    other = load_config("synthetic", SMALL + ["optim.epochs=1", "probe.epochs=3", "probe.both_directions=true"])
    with pytest.raises(ConfigError, match=r"finished cell was made with another config \(probe.epochs: 2 -> 3"):
        _cell(other, ds, "xsub", 0, tmp_path / "cell", progress=False, supervised_epochs=1)


def test_run_resume_goes_on_with_the_same_settings_and_refuses_others(tmp_path, capsys):
    from skelcl.train import pretrain
    over = SMALL + ["optim.epochs=2", "probe.epochs=2", "probe.restarts=1"]
    pretrain(load_config("synthetic", over), tmp_path / "run", progress=False, stop_after=1)
    sets = [a for o in over for a in ("--set", o)]
    assert main(["run", "synthetic", "--out", str(tmp_path / "run"), "--resume", "--quiet", *sets,
                 "--set", "data.preprocess.frames=20"]) == 2
    err = capsys.readouterr().err
    assert "data.preprocess.frames" in err and "another --out" in err and "Traceback" not in err, err
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1  # left as it was
    assert main(["run", "synthetic", "--out", str(tmp_path / "run"), "--resume", "--quiet", *sets]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["optim"]["epochs"] == 2 and 0.0 <= res["linear"]["top1"] <= 100.0
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_embed_writes_the_probe_features_of_every_sequence(trained, tmp_path, capsys):
    """skelcl embed: one .npz (no pickles) whose features are exactly what the probe encodes."""
    from skelcl.probe import encode
    from skelcl.train import load_checkpoint, load_data

    out, _ = trained
    f = tmp_path / "emb" / "feats.npz"
    assert main(["embed", str(out), "--out", str(f), "--quiet", "--set", "probe.representation=cae_max"]) == 0
    assert "cae_max" in capsys.readouterr().out
    z = np.load(f, allow_pickle=False)
    learner, cfg = load_checkpoint(out)
    ds = load_data(cfg)
    n = len(ds)
    assert z["features"].shape == (n, 2 * 128) and z["features"].dtype == np.float32
    np.testing.assert_allclose(z["features"], encode(learner, ds.x, ds.lengths, "cae_max"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(z["labels"], ds.labels)
    np.testing.assert_array_equal(z["lengths"], ds.lengths)
    assert list(z["class_names"]) == list(ds.class_names) and list(z["meta_name"]) == list(ds.meta["name"])
    for name, (tr, te) in ds.protocols.items():
        np.testing.assert_array_equal(z[f"{name}_train"], tr)
        np.testing.assert_array_equal(z[f"{name}_test"], te)
    info = json.loads(str(z["info"]))
    assert info["representation"] == "cae_max" and info["config"]["data"]["dataset"] == "synthetic"
    assert info["features_shape"] == [n, 256]


def test_a_run_whose_data_folder_is_not_here_asks_for_root(trained, tmp_path, capsys):
    out, _ = trained
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["config"]["data"]["root"] = str(tmp_path / "elsewhere" / "data")  # saved on another machine
    (tmp_path / "moved").mkdir()
    torch.save(ckpt, tmp_path / "moved" / "checkpoint.pt")
    for cmd in (["evaluate", str(tmp_path / "moved"), "--protocol", "knn", "--out", str(tmp_path / "ev")],
                ["embed", str(tmp_path / "moved"), "--out", str(tmp_path / "e.npz")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert "elsewhere" in err and "--root PATH" in err and "Traceback" not in err, err
    assert not (tmp_path / "ev").exists() and not (tmp_path / "e.npz").exists()


def test_embed_and_evaluate_refuse_data_of_another_shape(trained, tmp_path, capsys):
    out, _ = trained
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 20, 1, 15, 3)).astype(np.float32)  # 15 joints: not the encoder's 25
    np.savez(tmp_path / "other.npz", x=x, y=np.arange(12) % 3)
    for cmd in (["embed", str(out), "--out", str(tmp_path / "e.npz")], ["evaluate", str(out), "--out", str(tmp_path)]):
        assert main(cmd + ["--dataset", "npz", "--root", str(tmp_path / "other.npz"), "--split", "default"]) == 2
        err = capsys.readouterr().err
        # the run's 2 persons: the data is padded to them
        assert "the encoder takes 150 inputs per frame" in err and "2 x 15 x 3 = 90" in err, err
    assert main(["embed", str(out), "--out", str(tmp_path / "e.csv")]) == 2
    assert "ending in .npz" in capsys.readouterr().err
    assert not (tmp_path / "e.npz").exists()


def test_test_copies_are_reported_and_left_out_of_the_extra_figure(tmp_path, capsys):
    """A split whose test set holds exact copies of training sequences: results.json says how many,
    which, and the top-1 on the other test sequences, computed from the same predictions."""
    from skelcl.experiment import evaluate_model, format_run_summary
    from skelcl.train import build_learner, load_data
    cfg = load_config("synthetic", SMALL + ["probe.epochs=3"])
    ds = load_data(cfg)
    tr, te = ds.split("xsub")
    plain = evaluate_model(build_learner(cfg, int(np.prod(ds.x.shape[2:])), len(ds)), ds, "xsub", cfg.probe,
                           ("linear", "knn"))
    assert "test_copies" not in plain and "top1_without_copies" not in plain["linear"]
    ds.x[te[:30]] = ds.x[tr[:30]]  # 30 test inputs become training inputs (labels untouched)
    ds.lengths[te[:30]] = ds.lengths[tr[:30]]
    learner = build_learner(cfg, int(np.prod(ds.x.shape[2:])), len(ds))
    res = evaluate_model(learner, ds, "xsub", cfg.probe, ("linear", "knn"))
    assert res["test_copies"]["count"] == 30 and res["test_copies"]["test"] == len(te)
    assert res["test_copies"]["names"][:2] == [str(n) for n in ds.meta["name"][te[:2]]]
    cm = np.array(res["linear"]["confusion"])
    assert cm.sum() == len(te)
    for probe in ("linear", "knn"):
        r = res[probe]
        assert r["num_without_copies"] == len(te) - 30
        assert 0 <= r["top1_without_copies"] <= 100
    table = format_run_summary(res)
    assert "without the 30 copies" in table and "30 of the 300 test sequences are exact copies" in table
    assert f"{res['linear']['top1_without_copies']:.1f}" in table
    # a mask the caller already has is used as given (no second hashing), and checked for length
    from skelcl.experiment import test_copy_mask
    mask = test_copy_mask(ds, "xsub", te)
    again = evaluate_model(learner, ds, "xsub", cfg.probe, ("linear",), copies=mask, out_dir=tmp_path, plots=True)
    assert again["test_copies"] == res["test_copies"]
    wo = np.array(again["linear"]["confusion_without_copies"])
    assert wo.sum() == len(te) - 30 and (np.array(again["linear"]["confusion"]) >= wo).all()
    assert np.trace(wo) / wo.sum() * 100 == pytest.approx(again["linear"]["top1_without_copies"])
    for png in ("confusion.png", "confusion-without-copies.png", "tsne.png"):
        assert (tmp_path / png).stat().st_size > 0, png
    assert again["linear"]["top1_without_copies"] == res["linear"]["top1_without_copies"]
    with pytest.raises(ValueError, match="test sequences"):
        evaluate_model(learner, ds, "xsub", cfg.probe, ("linear",), copies=mask[:-1])


def test_a_run_hashes_its_test_split_once(tmp_path, monkeypatch):
    """skelcl run evaluates the trained encoder and a random one on the same split: the copy check
    (a hash of every sequence) runs once, not once per evaluation."""
    from skelcl.store import SkeletonDataset
    calls = []
    orig = SkeletonDataset.test_copies
    monkeypatch.setattr(SkeletonDataset, "test_copies", lambda self, p: calls.append(p) or orig(self, p))
    cfg = load_config("synthetic", SMALL + ["probe.epochs=2", "optim.epochs=1"])
    res = run(cfg, tmp_path, progress=False)
    assert calls == [cfg.data.protocol]
    assert "random_encoder" in res["baselines"]


def test_reproduce_table_adds_a_table_without_copies():
    from skelcl.reproduce import format_table
    cell = {"top1": {"CAE": 80.0, "CAE+": 81.0}, "top1_without_copies": {"CAE": 75.0, "CAE+": 76.0},
            "test_copies": {"count": 95, "test": 464}}
    clean = {"top1": {"CAE": 60.0, "CAE+": 61.0}}
    table = format_table("nucla", ["xview", "view1"], {"xview": [cell], "view1": [clean]}, "ours")
    first, second = table.split("leaving out")
    assert "| CAE | 80.0 | 60.0 | 70.0 |" in first
    assert "xview 95 of 464" in second and "| CAE | 75.0 | 60.0 | 67.5 |" in second
    assert "leaving out" not in format_table("nucla", ["view1"], {"view1": [clean]}, "ours")
