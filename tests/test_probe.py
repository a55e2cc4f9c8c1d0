"""Evaluation protocols (skelcl.probe): linear / kNN probes, subsets, encode, semi-supervised, baselines."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from skelcl.config import ContrastConfig, ModelConfig, ProbeConfig
from skelcl.contrast import ContrastiveLearner
from skelcl.encoder import SequenceEncoder
from skelcl.probe import (BEST_EPOCH_NOTE, ProbeError, balanced_subset, combined_classifier, confusion, encode,
                          finetune, knn_eval,
                          linear_eval, logistic_baseline, semi_epochs, semi_supervised_eval, supervised_baseline,
                          topk_accuracy)

CPU = "cpu"


def clusters(n: int, classes: int, dim: int, seed: int, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random unit-ish centres, (n, dim) float32 and (n,) labels."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(classes, dim)) * 3
    y = np.arange(n) % classes
    rng.shuffle(y)
    return (centres[y] + rng.normal(size=(n, dim)) * spread).astype(np.float32), y


def tiny_sequences(n: int = 40, classes: int = 4, t: int = 8, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, T, 1, 3, 3) sequences whose class sets a constant offset, with varied lengths."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    lengths = rng.integers(3, t + 1, n)
    x = rng.normal(size=(n, t, 1, 3, 3)).astype(np.float32) * 0.3
    x += (y[:, None, None, None, None] - classes / 2) * 0.8
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0
    return x, lengths, y


def small_learner(paradigm: str = "queue", seed: int = 0) -> ContrastiveLearner:
    torch.manual_seed(seed)
    return ContrastiveLearner(18, ModelConfig(hidden=16), ContrastConfig(queue_size=8, paradigm=paradigm),
                              num_samples=10)


# ---------------------------------------------------------------------------------------- helpers
def test_topk_accuracy_and_confusion() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.5, 0.3, 0.2]])
    labels = torch.tensor([1, 1, 2, 2])
    top1, top2, top5 = topk_accuracy(scores, labels, (1, 2, 5))
    assert top1 == pytest.approx(50.0) and top2 == pytest.approx(75.0)
    assert top5 == pytest.approx(100.0)  # k clipped to 3 classes
    assert topk_accuracy(scores.numpy(), labels.numpy(), (1,)) == [pytest.approx(50.0)]
    cm = confusion(np.array([1, 0, 2, 0]), labels, 3)
    assert cm.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]


# ---------------------------------------------------------------------------------------- linear
def test_linear_eval_separable_clusters_near_perfect() -> None:
    xtr, ytr = clusters(300, 6, 16, seed=0)
    xte, yte = clusters(120, 6, 16, seed=1)
    r = linear_eval(xtr, ytr, xte, yte, ProbeConfig(), 6, device=CPU)
    assert r["top1"] >= 98.0 and r["top5"] == pytest.approx(100.0)
    assert not r["diverged"]


def test_linear_eval_random_labels_is_chance() -> None:
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(400, 32)), rng.normal(size=(800, 32))
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 800)
    r = linear_eval(xtr, ytr, xte, yte, ProbeConfig(epochs=20, standardize=True), 4, device=CPU)
    assert 15.0 < r["top1"] < 35.0  # chance 25, binomial std ~1.5


def test_linear_eval_fields_schedule_and_final_vs_best() -> None:
    xtr, ytr = clusters(100, 3, 8, seed=0, spread=3.0)
    xte, yte = clusters(60, 3, 8, seed=1, spread=3.0)
    r = linear_eval(xtr, ytr, xte, yte, ProbeConfig(), 3, device=CPU)
    h = r["history"]
    assert len(h["train_loss"]) == len(h["test_top1"]) == len(h["lr"]) == 90
    # lr 1.0 halved after epochs 15, 35, 60, 75 (epoch e uses lrs[e-1] in 1-based counting)
    assert h["lr"][0] == 1.0 and h["lr"][14] == 1.0 and h["lr"][15] == 0.5
    assert h["lr"][35] == 0.25 and h["lr"][60] == 0.125 and h["lr"][75] == 0.0625 and h["lr"][89] == 0.0625
    assert r["top1"] == pytest.approx(h["test_top1"][-1])  # reported = final epoch
    assert r["best_epoch_top1"] == pytest.approx(max(h["test_top1"]))
    assert r["best_epoch_top1"] >= r["top1"]
    assert h["test_top1"][r["best_epoch"] - 1] == r["best_epoch_top1"]
    assert r["best_epoch_note"] == BEST_EPOCH_NOTE and "selected on test" in BEST_EPOCH_NOTE
    assert r["pred"].shape == (60,) and r["k5"] == 3
    assert r["top1"] == pytest.approx(float((r["pred"] == yte).mean() * 100))
    assert r["classifier"]["weight"].shape == (3, 8) and r["classifier"]["bias"].shape == (3,)
    assert r["num_train"] == 100 and r["num_test"] == 60 and r["feature_dim"] == 8


def test_linear_eval_init_is_paper_init() -> None:
    """With lr 0 the classifier stays at its init: weight ~ N(0, 0.01^2), bias 0."""
    xtr, ytr = clusters(64, 4, 200, seed=0)
    r = linear_eval(xtr, ytr, xtr, ytr, ProbeConfig(epochs=1, lr=0.0), 4, device=CPU)
    w = r["classifier"]["weight"]
    assert np.all(r["classifier"]["bias"] == 0)
    assert abs(float(w.std()) - 0.01) < 0.001 and abs(float(w.mean())) < 0.001


def test_standardize_uses_train_statistics_only() -> None:
    """Test split holds only class 1; test-split statistics would centre it on the decision boundary."""
    rng = np.random.default_rng(0)
    ytr = np.arange(200) % 2
    xtr = (10.0 + 2.0 * ytr + rng.normal(size=200) * 0.1)[:, None]   # mean 11, std ~1
    xte = (12.0 + rng.normal(size=100) * 0.1)[:, None]                # all class 1, mean 12
    yte = np.ones(100, np.int64)
    r = linear_eval(xtr, ytr, xte, yte, ProbeConfig(standardize=True, epochs=10), 2, device=CPU)
    assert r["top1"] == pytest.approx(100.0)
    assert r["classifier"]["mean"] == pytest.approx([xtr.mean()], rel=1e-5)
    assert r["classifier"]["std"] == pytest.approx([xtr.std()], rel=1e-4)
    # the same standardisation computed on the test split would put half of it on class 0's side
    z = (xte - xte.mean()) / xte.std()
    w, b = r["classifier"]["weight"], r["classifier"]["bias"]
    wrong = ((z @ w.T + b).argmax(1) != 1).mean()
    assert wrong > 0.2


def test_linear_eval_deterministic_per_seed() -> None:
    xtr, ytr = clusters(90, 3, 8, seed=0, spread=3.0)
    xte, yte = clusters(30, 3, 8, seed=1, spread=3.0)
    cfg = ProbeConfig(epochs=5, seed=7)
    a = linear_eval(xtr, ytr, xte, yte, cfg, 3, device=CPU)
    b = linear_eval(xtr, ytr, xte, yte, cfg, 3, device=CPU)
    c = linear_eval(xtr, ytr, xte, yte, ProbeConfig(epochs=5, seed=8), 3, device=CPU)
    assert a["history"] == b["history"] and np.array_equal(a["pred"], b["pred"])
    assert np.array_equal(a["classifier"]["weight"], b["classifier"]["weight"])
    assert a["history"]["train_loss"] != c["history"]["train_loss"]


def test_linear_eval_restarts_average_independent_runs() -> None:
    """restarts=R: R probes from seeds seed + 1000 r, averaged into one linear classifier."""
    xtr, ytr = clusters(90, 3, 8, seed=0, spread=3.0)
    xte, yte = clusters(60, 3, 8, seed=1, spread=3.0)
    cfg = ProbeConfig(epochs=6, milestones=[3], seed=7, standardize=True)
    singles = [linear_eval(xtr, ytr, xte, yte, replace(cfg, seed=7 + 1000 * r), 3, device=CPU) for r in range(3)]
    bag = linear_eval(xtr, ytr, xte, yte, replace(cfg, restarts=3), 3, device=CPU)
    assert bag["restarts_top1"] == pytest.approx([r["top1"] for r in singles])
    for key in ("weight", "bias"):
        np.testing.assert_allclose(bag["classifier"][key], np.mean([r["classifier"][key] for r in singles], 0),
                                   rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bag["scores"], np.mean([r["scores"] for r in singles], 0), rtol=1e-5, atol=1e-5)
    want = 100 * np.mean(np.mean([r["scores"] for r in singles], 0).argmax(1) == yte)
    assert bag["top1"] == pytest.approx(want)
    assert bag["history"]["test_top1"] == pytest.approx(np.mean([r["history"]["test_top1"] for r in singles], 0))
    one = linear_eval(xtr, ytr, xte, yte, replace(cfg, restarts=1), 3, device=CPU)  # the paper's single run
    assert one["top1"] == singles[0]["top1"] and one["restarts_top1"] == [singles[0]["top1"]]
    np.testing.assert_array_equal(one["classifier"]["weight"], singles[0]["classifier"]["weight"])
    with pytest.raises(ProbeError, match="restarts"):
        linear_eval(xtr, ytr, xte, yte, replace(cfg, restarts=0), 3, device=CPU)


@pytest.mark.parametrize("standardize", [True, False])
def test_averaged_logits_of_block_probes_are_one_linear_classifier(standardize: bool) -> None:
    """Probes on separate feature blocks, their logits averaged = one (weight, bias) on the blocks
    side by side, with each block's standardisation folded in."""
    cfg = ProbeConfig(epochs=5, milestones=[2], standardize=standardize, restarts=2)
    x1, y = clusters(60, 3, 4, seed=0)
    x2 = (x1[:, :3] * 5.0 + 2.0 + np.random.default_rng(1).normal(size=(60, 3))).astype(np.float32)
    t1, yt = clusters(30, 3, 4, seed=2)
    t2 = (t1[:, :3] * 5.0 + 2.0).astype(np.float32)
    a = linear_eval(x1, y, t1, yt, cfg, num_classes=3, device=CPU)
    b = linear_eval(x2, y, t2, yt, cfg, num_classes=3, device=CPU)
    comb = combined_classifier([a["classifier"], b["classifier"]])
    assert comb["weight"].shape == (3, 7) and comb["bias"].shape == (3,)
    logits = np.concatenate([t1, t2], 1).astype(np.float64) @ comb["weight"].T + comb["bias"]
    np.testing.assert_allclose(logits, (a["scores"] + b["scores"]) / 2, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        combined_classifier([])


def test_linear_eval_rejects_bad_labels() -> None:
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="must lie in"):
        linear_eval(x, np.array([0, 1, 2, -1]), x, np.array([0, 1, 0, 1]), ProbeConfig(epochs=1), 3)


# ---------------------------------------------------------------------------------------- kNN / raw
def test_knn_on_clusters_and_matches_sklearn() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    xtr, ytr = clusters(200, 5, 16, seed=0, spread=1.0)
    xte, yte = clusters(100, 5, 16, seed=1, spread=1.0)
    for weighting in ("similarity", "distance", "uniform"):
        r = knn_eval(xtr, ytr, xte, yte, k=20, weighting=weighting)
        assert r["top1"] >= 98.0 and r["top5"] == pytest.approx(100.0) and r["k"] == 20
    ref = KNeighborsClassifier(20, metric="cosine", weights="distance").fit(xtr, ytr).predict(xte)
    assert np.array_equal(knn_eval(xtr, ytr, xte, yte, 20, weighting="distance")["pred"], ref)
    with pytest.raises(ValueError):
        knn_eval(xtr, ytr, xte, yte, weighting="nope")
    with pytest.raises(ProbeError, match=r"probe.knn_k\) must be >= 1, got 0"):  # one CLI line, not a traceback
        knn_eval(xtr, ytr, xte, yte, k=0)


def test_logistic_baseline_on_raw_sequences() -> None:
    x, lengths, y = tiny_sequences(80, 4, seed=0)
    xt, _, yt = tiny_sequences(40, 4, seed=1)
    r = logistic_baseline(x, y, xt, yt)
    assert r["top1"] >= 90.0 and r["pred"].shape == (40,) and r["top5"] == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------- subsets
@pytest.mark.parametrize("fraction,expected", [
    (0.01, [10, 4, 1, 1, 1]),
    (0.1, [100, 35, 4, 1, 1]),
    (0.5, [500, 175, 19, 3, 1]),
])
def test_balanced_subset_exact_counts(fraction: float, expected: list[int]) -> None:
    counts = [1000, 350, 37, 5, 1]
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)] + [np.full(7, -1)])
    np.random.default_rng(0).shuffle(labels)
    idx = balanced_subset(labels, fraction, seed=3)
    assert np.bincount(labels[idx], minlength=5).tolist() == expected
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)   # distinct, sorted
    assert np.all(labels[idx] >= 0)                                       # unknown labels never drawn
    assert np.array_equal(idx, balanced_subset(labels, fraction, seed=3))
    assert not np.array_equal(idx, balanced_subset(labels, fraction, seed=4))


def test_balanced_subset_nested_and_validated() -> None:
    labels = np.arange(3000) % 30
    small, mid, big = (set(balanced_subset(labels, f, seed=1)) for f in (0.01, 0.1, 0.5))
    assert small <= mid <= big
    rest = np.setdiff1d(np.arange(3000), sorted(mid))                     # the unlabelled remainder
    assert len(rest) + len(mid) == 3000 and not set(rest) & mid
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            balanced_subset(labels, bad, 0)


# ---------------------------------------------------------------------------------------- encode
def test_encode_representations_shapes_and_values() -> None:
    learner = small_learner()
    learner.train()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 12, 2, 3, 3)).astype(np.float16)
    lengths = rng.integers(4, 13, 10)
    feats = {r: encode(learner, x, lengths, r, batch_size=4, device=CPU)
             for r in ("cae", "cae+", "k", "last_q", "last_k", "cae_max")}
    for r, f in feats.items():
        assert f.dtype == np.float32 and f.shape == (10, 32 if r in ("cae+", "cae_max") else 16), r
    assert learner.training and learner.encoder_q.training                # mode restored
    with torch.no_grad():
        out = learner.encoder_q.eval()(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(lengths))
    np.testing.assert_allclose(feats["cae"], out.pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(feats["last_q"], out.last.numpy(), atol=1e-5)
    np.testing.assert_allclose(feats["cae+"], np.concatenate([feats["cae"], feats["k"]], 1))
    # cae_max: TAP, then each state's maximum over the valid frames only
    peak = np.stack([out.states[i, :lengths[i]].numpy().max(0) for i in range(10)])
    np.testing.assert_allclose(feats["cae_max"], np.concatenate([feats["cae"], peak], 1), atol=1e-5)
    np.testing.assert_allclose(feats["k"], feats["cae"], atol=1e-6)       # fresh learner: k copy of q
    sub = encode(learner, x, lengths, "cae", batch_size=256, device=CPU, index=np.array([7, 2]))
    np.testing.assert_allclose(sub, feats["cae"][[7, 2]], atol=1e-5)      # batching does not matter


def test_encode_both_directions_appends_the_reversed_sequence_features() -> None:
    """both_directions: [features of x, features of x with its valid frames reversed]; padding stays
    at the end, so the reversed read of a padded sequence equals the read of its reversed copy."""
    learner = small_learner()
    rng = np.random.default_rng(1)
    lengths = np.array([12, 7, 1, 9])
    x = rng.normal(size=(4, 12, 2, 3, 3)).astype(np.float32)
    x *= (np.arange(12)[None, :] < lengths[:, None])[:, :, None, None, None]
    for rep in ("cae", "cae_max"):
        both = encode(learner, x, lengths, rep, batch_size=3, device=CPU, both_directions=True)
        fwd = encode(learner, x, lengths, rep, device=CPU)
        rev = np.zeros_like(x)
        for i, n in enumerate(lengths):
            rev[i, :n] = x[i, :n][::-1]
        back = encode(learner, rev, lengths, rep, device=CPU)
        assert both.shape == (4, 2 * fwd.shape[1])
        np.testing.assert_allclose(both[:, :fwd.shape[1]], fwd, atol=1e-5)
        np.testing.assert_allclose(both[:, fwd.shape[1]:], back, atol=1e-5)
    np.testing.assert_allclose(both[2, :32], both[2, 32:], atol=1e-6)  # one frame reads the same both ways
    none = np.array([], int)
    assert encode(learner, x, lengths, "cae", device=CPU, both_directions=True, index=none).shape == (0, 32)


def test_encode_missing_key_encoder_and_bare_encoder() -> None:
    x = np.zeros((3, 5, 2, 3, 3), np.float32)
    lengths = np.array([5, 3, 1])
    for paradigm in ("end_to_end", "memory_bank"):
        learner = small_learner(paradigm)
        assert encode(learner, x, lengths, "cae", device=CPU).shape == (3, 16)
        for rep in ("k", "last_k", "cae+"):
            with pytest.raises(ValueError, match="key encoder"):
                encode(learner, x, lengths, rep, device=CPU)
    torch.manual_seed(0)
    bare = SequenceEncoder(18, hidden=8)
    assert encode(bare, x, lengths, "cae", device=CPU).shape == (3, 8)
    assert encode(bare, x, lengths, "last_q", device=CPU).shape == (3, 8)
    assert encode(bare, x, lengths, "cae_max", device=CPU).shape == (3, 16)
    with pytest.raises(ValueError, match="key encoder"):
        encode(bare, x, lengths, "k", device=CPU)
    with pytest.raises(ProbeError, match="unknown representation"):
        encode(bare, x, lengths, "q", device=CPU)


# ---------------------------------------------------------------------------------------- fine-tuning
def _state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_finetune_leaves_input_untouched() -> None:
    x, lengths, y = tiny_sequences(24, 3)
    torch.manual_seed(0)
    enc = SequenceEncoder(9, hidden=8)
    before = _state(enc)
    log: list[dict[str, float]] = []
    enc2, head = finetune(enc, x, lengths, y, np.arange(12), 3, epochs=2, lr=0.05, batch_size=4, seed=0,
                          device=CPU, log=log)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert enc2 is not enc and head.out_features == 3 and not enc2.training
    assert any(not torch.equal(before[k], v) for k, v in enc2.state_dict().items())
    assert [e["epoch"] for e in log] == [1, 2]


def test_semi_supervised_eval_fields_determinism_and_no_side_effects() -> None:
    x, lengths, y = tiny_sequences(48, 4)
    x = np.concatenate([x, x[:, :, :1] * 0], 2)  # two persons: input 18 as small_learner
    train_idx, test_idx = np.arange(32), np.arange(32, 48)
    learner = small_learner()
    before = _state(learner)
    cfg = ProbeConfig(epochs=3, seed=1)
    kw = dict(fraction=0.1, cfg=cfg, epochs=2, batch_size=4, device=CPU)
    r = semi_supervised_eval(learner, x, lengths, y, train_idx, test_idx, **kw)
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    assert r["labelled"] == 4 and set(r["labelled_idx"]) <= set(train_idx)   # one per class
    assert not set(r["labelled_idx"]) & set(test_idx)
    assert np.bincount(y[r["labelled_idx"]]).tolist() == [1, 1, 1, 1]
    assert r["top1"] == r["step2"]["top1"] and r["top5"] == r["step2"]["top5"]
    assert r["step2"]["num_train"] == 32 and r["step2"]["num_test"] == 16   # step 2 on the FULL train split
    assert 0.0 <= r["step1"]["top1"] <= 100.0 and len(r["step1"]["history"]) == 2
    assert r["step1"]["pred"].shape == (16,)
    r2 = semi_supervised_eval(learner, x, lengths, y, train_idx, test_idx, **kw)
    assert r2["step1"]["history"] == r["step1"]["history"]
    assert r2["step2"]["history"] == r["step2"]["history"]
    with pytest.raises(ValueError, match="epochs"):
        semi_supervised_eval(learner, x, lengths, y, train_idx, test_idx, fraction=0.2, cfg=cfg, device=CPU)
    assert r["step2"]["representation"] == "cae"
    for rep, used in (("cae_max", "cae_max"), ("cae+", "cae")):  # the readout, unless it needs the key encoder
        kw_rep = dict(kw, cfg=replace(cfg, representation=rep, epochs=1), epochs=1)
        r_rep = semi_supervised_eval(learner, x, lengths, y, train_idx, test_idx, **kw_rep)
        assert r_rep["step2"]["representation"] == used
        assert r_rep["step2"]["feature_dim"] == (2 if used == "cae_max" else 1) * r["step2"]["feature_dim"]
    assert semi_epochs(0.1) == 15 and semi_epochs(1.0, 7) == 7
    for frac in (0.0, 1.5):
        with pytest.raises(ProbeError, match="fraction"):
            semi_epochs(frac, 5)
    with pytest.raises(ProbeError, match="epochs >= 1"):
        semi_supervised_eval(learner, x, lengths, y, train_idx, test_idx, fraction=0.2, cfg=cfg, epochs=0,
                             device=CPU)


def test_semi_supervised_eval_with_augmentation() -> None:
    pytest.importorskip("skelcl.augment")
    x, lengths, y = tiny_sequences(24, 3)
    x = np.concatenate([x, x[:, :, :1] * 0], 2)
    kw = dict(fraction=0.5, cfg=ProbeConfig(epochs=2), epochs=2, batch_size=4, device=CPU,
              augment=["reverse", "shear"])
    r = semi_supervised_eval(small_learner(), x, lengths, y, np.arange(12), np.arange(12, 24), **kw)
    r2 = semi_supervised_eval(small_learner(), x, lengths, y, np.arange(12), np.arange(12, 24), **kw)
    assert r["step1"]["history"] == r2["step1"]["history"]  # augmentation draws are seeded too
    assert r["labelled"] == 6


# ---------------------------------------------------------------------------------------- supervised
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_supervised_baseline_runs_and_is_deterministic(cell: str) -> None:
    x, lengths, y = tiny_sequences(30, 3)
    rng_state = torch.get_rng_state()
    kw = dict(hidden=8, epochs=2, batch_size=8, seed=0, device=CPU)
    r = supervised_baseline(cell, x, lengths, y, np.arange(20), np.arange(20, 30), **kw)
    assert torch.equal(rng_state, torch.get_rng_state())                 # global RNG untouched
    assert set(r) >= {"top1", "top5", "pred", "history", "cell"} and r["cell"] == cell
    assert r["pred"].shape == (10,) and len(r["history"]) == 2
    r2 = supervised_baseline(cell, x, lengths, y, np.arange(20), np.arange(20, 30), **kw)
    assert r2["history"] == r["history"] and np.array_equal(r2["pred"], r["pred"])


def test_supervised_baseline_trains_a_configured_encoder() -> None:
    """``model=``: the config's encoder as pretraining builds it; the plain shape trains identically."""
    x, lengths, y = tiny_sequences(30, 3)
    kw = dict(epochs=2, batch_size=8, seed=0, device=CPU)
    plain = supervised_baseline("gru", x, lengths, y, np.arange(20), np.arange(20, 30), hidden=8, layers=2, **kw)
    same = supervised_baseline("lstm", x, lengths, y, np.arange(20), np.arange(20, 30),
                               model=ModelConfig(cell="gru", hidden=8, layers=2), **kw)
    assert same["history"] == plain["history"] and np.array_equal(same["pred"], plain["pred"])
    assert (same["cell"], same["hidden"], same["layers"]) == ("gru", 8, 2)
    dist = supervised_baseline("lstm", x, lengths, y, np.arange(20), np.arange(20, 30),
                               model=ModelConfig(hidden=8, frame_features="coords+distances"), **kw)
    assert dist["history"] != supervised_baseline("lstm", x, lengths, y, np.arange(20), np.arange(20, 30),
                                                  model=ModelConfig(hidden=8), **kw)["history"]


def test_supervised_baseline_learns_separable_task() -> None:
    x, lengths, y = tiny_sequences(90, 3, seed=0)
    r = supervised_baseline("lstm", x, lengths, y, np.arange(60), np.arange(60, 90), hidden=16, epochs=15,
                            lr=1e-2, batch_size=16, device=CPU)
    assert r["top1"] >= 90.0
    with pytest.raises(ValueError):
        supervised_baseline("tcn", x, lengths, y, np.arange(60), np.arange(60, 90), device=CPU)


def test_person_symmetric_features_ignore_person_order():
    import torch as _t

    from skelcl.config import ModelConfig as _MC
    from skelcl.encoder import build_encoder as _be
    from skelcl.probe import encode as _enc

    _t.manual_seed(0)
    enc = _be(2 * 4 * 3, _MC(hidden=8), persons=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6, 2, 4, 3)).astype(np.float32)
    x[0, :, 1] = 0  # one-person sample: left as it is
    lengths = np.full(5, 6)
    a = _enc(enc, x, lengths, "cae", person_symmetric=True, device="cpu")
    b = _enc(enc, x[:, :, ::-1].copy(), lengths, "cae", person_symmetric=True, device="cpu")
    np.testing.assert_allclose(a[1:], b[1:], rtol=1e-5, atol=1e-6)
    plain = _enc(enc, x, lengths, "cae", device="cpu")
    np.testing.assert_allclose(a[0], plain[0], rtol=1e-6)
    assert not np.allclose(a[1:], plain[1:])


def _norms(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_recompute_bn_matches_the_statistics_of_one_train_mode_pass_and_forgets_the_old_ones():
    """Every BatchNorm's statistics become the mean and unbiased variance of its own input over the
    sequences (one batch here, so the cumulative average is that batch's); the statistics held
    before, the weights and the train flags play no part and are kept."""
    from skelcl.graph import GraphEncoder
    from skelcl.layouts import KINECT20
    from skelcl.probe import recompute_bn

    torch.manual_seed(0)
    enc = GraphEncoder(60, KINECT20.bones, 20, channels=[8, 16], strides=[2, 1], dropout=0.5).eval()
    x, lengths = torch.randn(9, 12, 1, 20, 3), torch.tensor([12, 12, 10, 12, 8, 12, 12, 11, 12])
    norms = _norms(enc)
    for m in norms:  # statistics that must not survive
        m.running_mean.fill_(5.0)
        m.running_var.fill_(7.0)
    weights = {k: v.clone() for k, v in enc.named_parameters()}

    ref = copy.deepcopy(enc)  # the hand computation: each BN's input in one train-mode pass
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach())) for m in _norms(ref)]
    for m in _norms(ref):
        m.train()
    with torch.no_grad():
        ref(x, lengths)
    for h in hooks:
        h.remove()

    assert recompute_bn(enc, x, lengths, batch_size=64) == len(norms) == len(seen) > 0
    for m, inp in zip(norms, seen):
        dims = [d for d in range(inp.dim()) if d != 1]
        torch.testing.assert_close(m.running_mean, inp.mean(dims), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(m.running_var, inp.var(dims, unbiased=True), atol=1e-5, rtol=1e-4)
        assert m.momentum == 0.1 and not m.training
    for k, v in enc.named_parameters():
        assert torch.equal(v, weights[k])
    assert not enc.training

    again = copy.deepcopy(enc)  # three batches of three: the input's mean is the mean of the batch means
    assert recompute_bn(again, x, lengths, batch_size=3) == len(norms)
    first = _norms(again)[0]
    torch.testing.assert_close(first.running_mean, norms[0].running_mean, atol=1e-5, rtol=1e-4)
    odd = copy.deepcopy(enc)  # batches of 4, 4, 1: the batch of one is folded into its neighbour
    recompute_bn(odd, x, lengths, batch_size=4)
    same = copy.deepcopy(odd)
    recompute_bn(same, x, lengths, batch_size=4)
    for a, b in zip(odd.buffers(), same.buffers()):
        assert torch.equal(a, b)
    lstm = SequenceEncoder(6, hidden=8, layers=1)  # no BatchNorm: nothing to do
    assert recompute_bn(lstm, torch.randn(3, 5, 1, 2, 3), torch.tensor([5, 5, 5])) == 0
