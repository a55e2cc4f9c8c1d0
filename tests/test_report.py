"""Plots (skelcl.report)."""


def test_loss_plot_draws_the_marked_epochs(tmp_path):
    """``marks`` adds labelled vertical lines (a soup's branch epoch): extra ink on the same canvas."""
    import matplotlib.image as mpimg

    from skelcl.report import plot_loss_curve

    plain = plot_loss_curve([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.0], tmp_path / "plain.png")
    marked = plot_loss_curve([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.0], tmp_path / "marked.png", marks={"branch": 2})
    a, b = mpimg.imread(plain), mpimg.imread(marked)
    assert a.shape == b.shape and (abs(a - b) > 0.1).any()
