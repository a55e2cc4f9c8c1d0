"""Plots (skelcl.report)."""


def test_loss_plot_draws_the_marked_epochs(tmp_path):
    """``marks`` adds labelled vertical lines (a soup's branch epoch): extra ink on the same canvas."""
    import matplotlib.image as mpimg

    from skelcl.report import plot_loss_curve

    plain = plot_loss_curve([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.0], tmp_path / "plain.png")
    marked = plot_loss_curve([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.0], tmp_path / "marked.png", marks={"branch": 2})
    a, b = mpimg.imread(plain), mpimg.imread(marked)
    assert a.shape == b.shape and (abs(a - b) > 0.1).any()


def test_wrapped_title_keeps_every_word_within_the_width():
    """A long config name is broken at spaces into lines of at most 60 characters, words intact."""
    from skelcl.report import wrapped_title

    title = "nucla-distill-mirror-soup: pretraining loss of the trunk and its four students, seed 0 of 3"
    lines = wrapped_title(title).split("\n")
    assert len(lines) == 2 and all(len(line) <= 60 for line in lines)
    assert " ".join(lines) == title
    assert wrapped_title("loss") == "loss" and wrapped_title("") == ""


def _results(path, confusion, names, top1, knn=None, without=None):
    import json

    res = {"class_names": names, "linear": {"top1": top1, "confusion": confusion}}
    if without is not None:
        res["linear"]["top1_without_copies"] = without
    if knn is not None:
        res["knn"] = {"top1": knn}
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(res))
    return path


def test_compare_lists_each_class_against_the_first_and_the_largest_confusions(tmp_path):
    from skelcl.report import compare_results

    names = ["wave", "kick", "sit"]
    a = _results(tmp_path / "a", [[8, 2, 0], [0, 10, 0], [1, 0, 4]], names, 84.0, knn=80.0, without=81.5)
    b = _results(tmp_path / "b", [[10, 0, 0], [3, 7, 0], [0, 0, 5]], names, 88.0)
    text = compare_results([a, b / "results.json"], labels=["base", "new"], top=2)
    assert "| base | 84.0 | 81.5 | 80.0 |" in text and "| new | 88.0 | — | — |" in text
    # per class: accuracy from the diagonal over the row's count, difference to the first
    assert "| wave | 10 | 80.0 | 100.0 (+20.0) |" in text
    assert "| kick | 10 | 100.0 | 70.0 (-30.0) |" in text
    assert "| sit | 5 | 80.0 | 100.0 (+20.0) |" in text
    assert "- base: 2 wave -> kick; 1 sit -> wave" in text
    assert "- new: 3 kick -> wave" in text  # only the confusions that happened


def test_compare_refuses_other_classes_other_splits_and_what_it_cannot_read(tmp_path, capsys):
    import pytest

    from skelcl.cli import main
    from skelcl.errors import ConfigError
    from skelcl.report import compare_results

    a = _results(tmp_path / "a", [[2, 0], [0, 2]], ["x", "y"], 100.0)
    other = _results(tmp_path / "other", [[2, 0], [0, 2]], ["x", "z"], 100.0)
    bigger = _results(tmp_path / "bigger", [[3, 0], [0, 2]], ["x", "y"], 100.0)
    (tmp_path / "knn-only").mkdir()
    (tmp_path / "knn-only" / "results.json").write_text('{"class_names": ["x", "y"], "knn": {"top1": 50.0}}')
    (tmp_path / "broken.json").write_text("{not json")
    for paths, msg in (([a, other], "are not those of"), ([a, bigger], "same test sequences"),
                       ([a, tmp_path / "knn-only"], "no linear evaluation"), ([a, tmp_path / "broken.json"],
                                                                               "not a readable"),
                       ([a, tmp_path / "missing"], "no results.json"), ([a], "two or more")):
        with pytest.raises(ConfigError, match=msg):
            compare_results(paths)
    assert main(["compare", str(a), str(other)]) == 2
    assert "are not those of" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--label", "one", "--label", "two", "--out", str(tmp_path / "c.md")]) == 0
    assert "| two | 100.0 |" in capsys.readouterr().out and "| two | 100.0 |" in (tmp_path / "c.md").read_text()


def test_compare_draws_each_class_accuracy_as_bars(tmp_path):
    """``plot`` writes a PNG; other accuracies give other bars on the same canvas."""
    import matplotlib.image as mpimg

    from skelcl.report import compare_results

    names = ["wave", "kick"]
    a = _results(tmp_path / "a", [[4, 0], [0, 4]], names, 100.0)
    b = _results(tmp_path / "b", [[1, 3], [0, 4]], names, 62.5)
    compare_results([a, a], labels=["x", "y"], plot=tmp_path / "same.png")
    compare_results([a, b], labels=["x", "y"], plot=tmp_path / "figs" / "other.png")  # its folder is made
    same, other = mpimg.imread(tmp_path / "same.png"), mpimg.imread(tmp_path / "figs" / "other.png")
    assert same.shape == other.shape and (abs(same - other) > 0.1).any()
