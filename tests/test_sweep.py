"""Sweeps: grid expansion, slugs and validation; a tiny real sweep that resumes; the table writer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from skelcl.cli import main
from skelcl.errors import ConfigError
from skelcl.sweep import (SPEC_DIR, Task, aggregate, build_tasks, collect_rows, format_value, load_spec,
                          markdown, parse_spec, point_slug, rows_from_csv, run_sweep, set_dotted, write_outputs)
from skelcl.sweep import _auto_scale


def tiny_npz(path: Path, n: int = 64, t: int = 12, seed: int = 0) -> Path:
    """Random-walk 'actions' of 4 classes (15 joints, 1 person) with class-specific drift, as a plain .npz."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    drift = rng.normal(size=(4, 1, 15, 3)) * 0.1
    x = np.cumsum(rng.normal(size=(n, t, 15, 3)) * 0.3 + drift[y], axis=1).astype(np.float32)
    idx = np.arange(n)
    np.savez(path, x=x, y=y, train_idx=idx[idx % 4 != 3], test_idx=idx[idx % 4 == 3])
    return path


TINY_SET = {
    "data.dataset": "npz", "data.protocol": "default",
    "data.preprocess": {"frames": 12, "persons": 1, "length_mode": "crop", "centre": "joint"},
    "model.hidden": 16, "contrast.queue_size": 32, "contrast.normalize": True, "contrast.temperature": 0.2,
    "contrast.momentum": 0.9, "optim.epochs": 2, "optim.milestones": [1], "optim.batch_size": 16, "optim.lr": 0.05,
    "probe.epochs": 4, "probe.milestones": [2], "probe.knn_k": 5, "train.tensorboard": False, "train.device": "cpu",
    "augment": ["reverse", {"shear": {"amplitude": 0.3}}],
}


def tiny_spec(**extra) -> dict:
    spec = {"name": "tiny", "base": "synthetic", "set": dict(TINY_SET), "axes": {"contrast.momentum": [0.5, 0.9]},
            "seeds": [0]}
    spec["set"].pop("contrast.momentum")
    spec.update(extra)
    return spec


# --- expansion and validation (no training) ----------------------------------------------------------------
def test_grid_expansion_slugs_and_resolved_configs(tmp_path):
    spec = parse_spec({"base": "sbu", "axes": {"model.layers": [1, 2, 3], "model.hidden": [64, 128]},
                       "seeds": [0, 1], "folds": ["fold1", "fold2"], "set": {"optim.epochs": 7}})
    assert len(spec.points) == 6 and spec.points[1] == {"model.layers": 1, "model.hidden": 128}
    tasks = build_tasks(spec, tmp_path, overrides=["optim.lr=0.2"], root="/data/sbu", jobs=2)
    assert len(tasks) == 6 * 2 * 2
    # seed-major, then fold, then point: a cut sweep has whole (seed, fold) slices
    assert [(t.seed, t.fold) for t in tasks[:6]] == [(0, "fold1")] * 6
    assert [t.slug for t in tasks[:6]] == [f"layers={a}_hidden={b}" for a in (1, 2, 3) for b in (64, 128)]
    t = tasks[-1]
    assert t.dir == tmp_path / "layers=3_hidden=128" / "fold2-seed1"
    c = t.config
    assert (c["model"]["layers"], c["model"]["hidden"], c["data"]["protocol"]) == (3, 128, "fold2")
    assert (c["train"]["seed"], c["probe"]["seed"], c["optim"]["epochs"], c["optim"]["lr"]) == (1, 1, 7, 0.2)
    assert c["data"]["root"] == "/data/sbu" and c["train"]["threads"] >= 1
    assert c["contrast"]["queue_size"] == 200  # inherited from the bundled sbu config
    assert len({t.dir for t in tasks}) == len(tasks)
    # stable: the same spec (here re-read from YAML) gives the same folders
    text = yaml.safe_dump({"base": "sbu", "axes": {"model.layers": [1, 2, 3], "model.hidden": [64, 128]},
                           "seeds": [0, 1], "folds": ["fold1", "fold2"]}, sort_keys=False)
    assert [t.dir for t in build_tasks(parse_spec(yaml.safe_load(text)), tmp_path)] == [t.dir for t in tasks]


def test_points_labels_list_items_and_limit_epochs(tmp_path):
    spec = parse_spec({"base": "sbu", "labels": ["K"], "folds": ["fold1"], "points": [
        {"contrast.paradigm": "queue", "K": 64, "contrast.queue_size": 64},
        {"contrast.paradigm": "end_to_end", "K": 64, "optim.batch_size": 64}]})
    tasks = build_tasks(spec, tmp_path, limit_epochs=10)
    assert [t.config["contrast"]["paradigm"] for t in tasks] == ["queue", "end_to_end"]
    assert tasks[1].config["optim"]["batch_size"] == 64 and "K" not in tasks[1].config
    assert tasks[0].config["optim"]["epochs"] == 10 and tasks[0].config["optim"]["milestones"] == [7]  # 70 of 100
    warm = build_tasks(spec, tmp_path, overrides=["optim.warmup=10", "optim.milestones=[40,70]"], limit_epochs=20)
    assert warm[0].config["optim"]["warmup"] == 2 and warm[0].config["optim"]["milestones"] == [8, 14]
    tiny = build_tasks(spec, tmp_path, overrides=["optim.warmup=3", "optim.milestones=[5]"], limit_epochs=2)
    assert tiny[0].config["optim"]["warmup"] == 1 and tiny[0].config["optim"]["milestones"] == []  # 2 of 2: dropped
    one = build_tasks(spec, tmp_path, overrides=["optim.milestones=[30,70]"], limit_epochs=1)
    assert one[0].config["optim"]["milestones"] == [] and one[0].config["optim"]["epochs"] == 1
    pairs = parse_spec({"base": "sbu", "set": {"augment": ["none", "none"]},
                        "axes": {"augment.0": ["rotate", "shear"], "augment.1": ["rotate", "reverse"]}})
    tasks = build_tasks(pairs, tmp_path)
    assert [t.config["augment"] for t in tasks] == [["rotate", "rotate"], ["rotate", "reverse"],
                                                    ["shear", "rotate"], ["shear", "reverse"]]
    assert tasks[1].slug == "augment.0=rotate_augment.1=reverse"
    assert format_value([{"shear": {"amplitude": 0.5}}, "reverse"]) == "shear(amplitude=0.5)+reverse"
    assert point_slug({"augment": ["reverse", {"shear": {"amplitude": 0.5}}]}, ["augment"]) == \
        "augment=reverse+shear-amplitude=0.5"
    d = {"a": [1, 2], "b": {"c": {"x": 1}}}
    set_dotted(d, "a.2", 3)
    set_dotted(d, "b.c", {"y": 2})
    assert d == {"a": [1, 2, 3], "b": {"c": {"x": 1, "y": 2}}}


@pytest.mark.parametrize("bad, match", [
    ({"axes": {"model.layerz": [1, 2]}}, "layerz"),
    ({"axes": {"model.layers": [1, 1]}}, "repeats"),
    ({"axes": {"model.layers": [1]}, "points": [{"model.layers": 1}]}, "not both"),
    ({"axis": {"model.layers": [1]}}, "unknown key"),
    ({"axes": {"model.layers": [1]}, "set": {"model.layers": 2}}, "both in `set:`"),
    ({"folds": ["fold9"]}, "no protocol 'fold9'"),
    ({"figure": "pie"}, "figure"),
    ({"eval": {"representations": ["cae", "foo"]}}, "unknown representation"),
    ({"points": [{"contrast.paradigm": "end_to_end"}], "eval": {"representations": ["cae+"]}}, "key encoder"),
])
def test_bad_specs_raise_config_errors(tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        build_tasks(parse_spec({"base": "sbu", **bad}), tmp_path)


def test_every_bundled_spec_expands(tmp_path):
    specs = sorted(SPEC_DIR.glob("*.yaml"))
    assert len(specs) >= 30
    names = {p.stem for p in specs}
    for ablation in ("layers-hidden", "queue-size", "momentum", "temperature", "heads", "single-augment",
                     "augment-pairs", "augment-compositions", "paradigms", "representations"):
        for ds in ("sbu", "nucla", "ntu60"):
            assert f"{ds}-{ablation}" in names, f"{ds}-{ablation}"
    for p in specs:
        spec = load_spec(p)
        assert spec.description, p
        tasks = build_tasks(spec, tmp_path, root="/nowhere")
        assert tasks and len({t.dir for t in tasks}) == len(tasks), p
    pairs = load_spec("sbu-augment-pairs")
    assert len(pairs.points) == 49 and pairs.figures == ["matrix"]


# --- a tiny real sweep ---------------------------------------------------------------------------------------
def test_tiny_sweep_runs_resumes_and_writes_outputs(tmp_path):
    data = tiny_npz(tmp_path / "tiny.npz")
    spec = tiny_spec(eval={"representations": ["cae", "last_q"]}, figure=["line", "curves"])
    out = tmp_path / "sweep"
    res = run_sweep(spec, out, root=str(data), jobs=2, progress=False)
    assert not res.failed and len(res.ran) == 2 and not res.skipped
    for t in res.tasks:
        r = json.loads(t.results_path.read_text())
        assert r["status"] == "ok" and set(r["representations"]) == {"cae", "last_q"}
        assert r["linear"] == r["representations"]["cae"]["linear"] and 0 <= r["linear"]["top1"] <= 100
        assert r["config"]["contrast"]["momentum"] == t.point["contrast.momentum"]
        assert (t.dir / "metrics.csv").exists()
        assert set(r["baselines"]["random_encoder_by_representation"]) == {"cae", "last_q"}
    for f in ("table.md", "table.csv", "accuracy.png", "loss_curves.png"):
        assert (out / f).stat().st_size > 0, f
    assert len(res.rows) == 4  # 2 points x 2 representations
    md = (out / "table.md").read_text()
    assert "| contrast.momentum | probe.representation | top-1 % |" in md

    # run again: nothing is redone
    stamps = {t.dir: t.results_path.stat().st_mtime_ns for t in res.tasks}
    again = run_sweep(spec, out, root=str(data), progress=False)
    assert not again.ran and len(again.skipped) == 2
    assert all(t.results_path.stat().st_mtime_ns == stamps[t.dir] for t in again.tasks)

    # a run killed mid-pretraining: only that one runs again, from its checkpoint, to the same weights
    victim = res.tasks[1]
    ref_top1 = json.loads(victim.results_path.read_text())["linear"]["top1"]
    ref = torch.load(victim.dir / "checkpoint.pt", weights_only=True)["learner"]
    import shutil

    shutil.rmtree(victim.dir)
    from skelcl.config import config_from_dict
    from skelcl.train import pretrain

    pretrain(config_from_dict(victim.config), victim.dir, progress=False, stop_after=1)
    third = run_sweep(spec, out, root=str(data), progress=False)
    assert [t.dir for t in third.ran] == [victim.dir] and len(third.skipped) == 1
    assert res.tasks[0].results_path.stat().st_mtime_ns == stamps[res.tasks[0].dir]
    got = torch.load(victim.dir / "checkpoint.pt", weights_only=True)
    assert got["epoch"] == 2
    for k in ref:
        assert torch.equal(ref[k], got["learner"][k]), k
    assert json.loads(victim.results_path.read_text())["linear"]["top1"] == pytest.approx(ref_top1)

    # a finished run made with another config is not silently reused
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(spec, out, root=str(data), overrides=["model.hidden=8"], progress=False)


def test_cli_dry_run_and_list(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec()))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run", "--root", "x.npz"]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "momentum=0.5/seed0" in out and "todo" in out
    assert not (tmp_path / "o").exists()
    assert main(["sweep", "--list"]) == 0
    assert "sbu-momentum" in capsys.readouterr().out
    assert main(["sweep", "no-such-spec"]) == 2


def test_a_failing_run_is_reported_and_retried(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(axes={"contrast.momentum": [0.5]})))
    out = tmp_path / "o"
    assert main(["sweep", str(spec), "--out", str(out), "--root", str(tmp_path / "missing.npz"), "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "1 failed" in text and "missing.npz" in text
    err = out / "momentum=0.5" / "seed0" / "error.txt"
    assert "missing.npz" in err.read_text() and not (err.parent / "results.json").exists()
    data = tiny_npz(tmp_path / "ok.npz")
    res = run_sweep(str(spec), out, root=str(data), progress=False)
    assert len(res.ran) == 1 and not res.failed and not err.exists()


# --- the table writer on fabricated results -----------------------------------------------------------------
def _fake(task: Task, top1: float | None, loss_curve=(3.0, 2.0)) -> None:
    task.dir.mkdir(parents=True, exist_ok=True)
    if top1 is None:
        res = {"status": "diverged", "config": task.config}
    else:
        res = {"status": "ok", "linear": {"top1": top1, "top5": top1 + 10}, "knn": {"top1": top1 - 5},
               "final_loss": loss_curve[-1], "seconds": 10.0, "config": task.config,
               "baselines": {"random_encoder": {"linear": {"top1": 20.0}}}}
    task.results_path.write_text(json.dumps(res))
    (task.dir / "metrics.csv").write_text("epoch,loss\n" + "".join(f"{i + 1},{v}\n" for i, v in enumerate(loss_curve)))


def test_table_writer_means_stds_partial_and_diverged(tmp_path):
    spec = parse_spec({"name": "fake", "base": "sbu", "axes": {"model.layers": [1, 2], "model.hidden": [64, 128]},
                       "seeds": [0, 1], "folds": ["fold1", "fold2"], "figure": "matrix"})
    tasks = build_tasks(spec, tmp_path)
    # top-1 = 10 * layers + hidden / 64 + seed + (fold2: +2); point (2, 128) misses seed 1 fold 2
    for t in tasks:
        L, H = t.point["model.layers"], t.point["model.hidden"]
        if (L, H, t.seed, t.fold) == (2, 128, 1, "fold2"):
            continue
        if (L, H) == (1, 64) and t.seed == 1:
            _fake(t, None)
            continue
        _fake(t, 10 * L + H / 64 + t.seed + (2 if t.fold == "fold2" else 0))
    rows = collect_rows(spec, tasks)
    by = {(r["values"]["model.layers"], r["values"]["model.hidden"]): r for r in rows}
    m, s, n = by[(2, 64)]["top1"]
    # per seed: mean over folds (seed 0: 22, seed 1: 23), then mean +- population std over seeds
    assert (m, s, n) == (pytest.approx(22.5), pytest.approx(0.5), 4)
    assert by[(2, 64)]["top5"][0] == pytest.approx(32.5) and by[(2, 64)]["knn_top1"][0] == pytest.approx(17.5)
    assert by[(2, 128)]["runs"] == 3 and by[(2, 128)]["top1"][:2] == (pytest.approx(23.0), pytest.approx(0.0))
    assert by[(1, 64)]["diverged"] == 2 and by[(1, 64)]["top1"][2] == 2
    files = write_outputs(spec, rows, tasks, tmp_path / "out")
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| model.layers | model.hidden | top-1 % | top-5 % | kNN top-1 % | random enc. top-1 % |" in md
    assert "22.5 ± 0.5" in md and "3/4" in md and "(2 diverged)" in md
    assert "folds averaged per seed, then mean ± std over seeds" in md
    lines = (tmp_path / "out" / "table.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, lines[1 + [r["slug"] for r in rows].index("layers=2_hidden=64")].split(",")))
    assert (row["model.layers"], row["model.hidden"], float(row["top1_mean"]), float(row["top1_std"])) == \
        ("2", "64", 22.5, 0.5)
    assert row["runs"] == "4" and row["expected_runs"] == "4" and float(row["seconds_mean"]) == 10.0
    assert {"accuracy.png", "loss_curves.png"} <= set(files)
    # single seed: the std is over folds
    assert aggregate({(0, "a"): 1.0, (0, "b"): 3.0}) == (2.0, 1.0, 2)
    assert math.isnan(aggregate({(0, None): 5.0})[1]) and aggregate({})[2] == 0
    assert "one run per point" in markdown(parse_spec({"base": "sbu"}), collect_rows(parse_spec({"base": "sbu"}), []))


def test_table_adds_top1_without_test_copies_where_a_split_has_them(tmp_path):
    """A fold whose test split holds copies of training sequences reports top1_without_copies; a fold
    without copies counts with its own top-1, and a sweep with no copies at all has no such column."""
    spec = parse_spec({"name": "fake", "base": "nucla", "axes": {"model.layers": [1, 2]},
                       "seeds": [0], "folds": ["xview", "view1"]})
    tasks = build_tasks(spec, tmp_path / "runs")
    for t in tasks:
        _fake(t, 80.0 + t.point["model.layers"])
        if t.fold == "xview":  # as N-UCLA: the xview test split holds copies
            res = json.loads(t.results_path.read_text())
            res["linear"]["top1_without_copies"] = 70.0 + t.point["model.layers"]
            t.results_path.write_text(json.dumps(res))
    rows = collect_rows(spec, tasks)
    by = {r["values"]["model.layers"]: r for r in rows}
    assert by[2]["top1"][0] == pytest.approx(82.0)
    assert by[2]["top1_without_copies"][:2] == (pytest.approx(77.0), pytest.approx(5.0))  # (72 + 82) / 2
    files = write_outputs(spec, rows, tasks, tmp_path / "out")
    md = (tmp_path / "out" / "table.md").read_text()
    assert "top-1 % without test copies" in md and "77.0 ± 5.0" in md and "exact copies" in md
    back = rows_from_csv(spec, tmp_path / "out" / "table.csv")
    assert back[1]["top1_without_copies"][0] == pytest.approx(77.0)
    assert files
    clean = parse_spec({"name": "clean", "base": "sbu", "axes": {"model.layers": [1]}, "seeds": [0],
                        "folds": ["fold1"]})
    ctasks = build_tasks(clean, tmp_path / "c")
    _fake(ctasks[0], 50.0)
    crows = collect_rows(clean, ctasks)
    assert math.isnan(crows[0]["top1_without_copies"][0])
    assert "without test copies" not in markdown(clean, crows, ctasks)


def test_table_rebuilt_from_its_csv(tmp_path, capsys):
    """--from-csv: a saved table.csv gives back the same rows (typed axis values) and figures, running nothing."""
    spec = parse_spec({"name": "fake", "base": "sbu", "axes": {"contrast.temperature": [0.06, 0.07, 0.1, 0.5]},
                       "seeds": [0], "folds": ["fold1"]})
    tasks = build_tasks(spec, tmp_path / "runs")
    for i, t in enumerate(tasks):
        _fake(t, 70.0 + 3 * i)
    rows = collect_rows(spec, tasks)
    write_outputs(spec, rows, tasks, tmp_path / "a")
    back = rows_from_csv(spec, tmp_path / "a" / "table.csv")
    assert [r["values"] for r in back] == [r["values"] for r in rows]
    assert isinstance(back[0]["values"]["contrast.temperature"], float)
    for a, b in zip(rows, back):
        for m in ("top1", "top5", "knn_top1", "final_loss"):
            assert b[m][0] == pytest.approx(a[m][0], abs=1e-4)
        assert b["runs"] == a["runs"] == 1
    res = run_sweep(spec, tmp_path / "b", from_csv=tmp_path / "a" / "table.csv", progress=False)
    # nothing was trained: no run folders, and no loss curves (the CSV has none)
    assert res.ran == [] and sorted(p.name for p in (tmp_path / "b").iterdir()) == \
        ["accuracy.png", "table.csv", "table.md"]
    assert (tmp_path / "b" / "table.md").read_text() == (tmp_path / "a" / "table.md").read_text()
    assert (tmp_path / "b" / "accuracy.png").stat().st_size > 0
    # a table of another spec, or no table at all, is a clear error
    other = parse_spec({"name": "other", "base": "sbu", "axes": {"contrast.temperature": [0.2, 0.3]}})
    with pytest.raises(ConfigError, match="not in spec other"):
        rows_from_csv(other, tmp_path / "a" / "table.csv")
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="not a sweep table"):
        rows_from_csv(spec, tmp_path / "junk.csv")
    with pytest.raises(ConfigError, match="no such file"):
        rows_from_csv(spec, tmp_path / "missing.csv")


@pytest.mark.parametrize("xs, scale", [
    ([1, 2, 3, 4], "linear"),
    ([16, 64, 256, 1024, 4096], "log"),                       # spans >= 20x
    ([0.06, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5], "log"),           # 0.06 / 0.07 overlap on a linear axis
    ([0.0, 0.9, 0.99, 0.999, 0.9999], "category"),            # crowded on linear, log impossible (0)
])
def test_line_plot_axis_keeps_ticks_apart(xs, scale):
    assert _auto_scale(xs) == scale


def test_config_diff_reads_a_key_a_saved_run_lacks_as_its_default():
    import copy

    from skelcl.config import load_config
    from skelcl.sweep import config_diff

    new = load_config("synthetic").to_dict()
    old = copy.deepcopy(new)
    del old["optim"]["optimizer"], old["distill"]  # a run saved before these settings existed
    assert config_diff(old, new) == []
    new["optim"]["optimizer"] = "adamw"
    assert config_diff(old, new) == ["optim.optimizer: 'sgd' -> 'adamw'"]
