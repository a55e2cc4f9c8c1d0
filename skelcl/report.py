"""Figures and tables of results: loss curves, t-SNE, confusion matrices, markdown tables, and several
evaluations compared class by class (`skelcl compare`)."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wrapped_title(title: str, width: int = 60) -> str:
    """A plot title broken into lines of at most ``width`` characters, so a long run or config name
    does not run past the figure's edge."""
    return "\n".join(textwrap.wrap(title, width)) or title


def plot_loss_curve(epochs: Sequence[float], losses: Sequence[float], path: str | Path, title: str = "loss",
                    curves: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                    ylabel: str = "InfoNCE loss", marks: dict[str, float] | None = None) -> Path:
    """A loss-vs-epoch line plot (several named curves overlaid when ``curves`` is given).
    ``marks`` {label: epoch}: dashed vertical lines, e.g. where a soup's students branch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    if curves:
        for name, (e, l) in curves.items():
            ax.plot(e, l, marker=".", label=name)
    else:
        ax.plot(epochs, losses, marker=".", color="tab:blue")
    for i, (name, x) in enumerate((marks or {}).items()):
        ax.axvline(x, color="0.3", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=name)
    if curves or marks:
        ax.legend(fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(wrapped_title(title))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_tsne(features: np.ndarray, labels: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None,
              title: str = "t-SNE of features", seed: int = 0, max_points: int = 3000,
              marked: np.ndarray | None = None, marked_label: str = "marked") -> Path:
    """2-D t-SNE (scikit-learn) of (N, E) features coloured by class; label -1 (unlabelled) is grey.
    ``marked`` (N,) bool: points drawn with a black cross over their class colour (test sequences
    that copy a training sequence), named ``marked_label`` in the legend."""
    from sklearn.manifold import TSNE

    plt = _plt()
    rng = np.random.default_rng(seed)
    if len(features) > max_points:
        keep = rng.choice(len(features), max_points, replace=False)
        features, labels = features[keep], labels[keep]
        marked = marked[keep] if marked is not None else None
    f = (features - features.mean(0)) / (features.std(0) + 1e-8)
    emb = TSNE(n_components=2, init="pca", random_state=seed,
               perplexity=min(30.0, max(2.0, (len(f) - 1) / 3))).fit_transform(f)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for i, c in enumerate(classes):
        m = labels == c
        if c < 0:
            ax.scatter(emb[m, 0], emb[m, 1], s=6, color="0.75", label="unlabelled", zorder=0)
            continue
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        k = i - int(classes[0] < 0)  # a class keeps its colour whether or not unlabelled points are drawn
        ax.scatter(emb[m, 0], emb[m, 1], s=10, color=cmap(k % cmap.N), label=name)
    if marked is not None and marked.any():
        ax.scatter(emb[marked, 0], emb[marked, 1], s=14, marker="x", color="black", linewidths=0.6,
                   label=f"{marked_label} ({int(marked.sum())})", zorder=3)
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best", ncol=2 if len(classes) > 10 else 1)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_confusion(labels: np.ndarray, pred: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None,
                   title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix with counts-based accuracy in the title."""
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    n = len(class_names) if class_names else int(max(labels.max(), pred.max())) + 1
    cm = confusion_matrix(labels, pred, labels=np.arange(n)).astype(float)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n), dpi=110)
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if rows[i, j] > 0.5 else "black")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} (top-1 {100 * acc:.1f}%)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    def fmt(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def bounded_slug(text: str, fallback: str, fill: str = "-", keep: str = "") -> str:
    """A folder name from free text: characters other than letters, digits, ``._+=-`` (and ``keep``)
    become ``fill``; names over 120 characters are cut to 100 and end in an 8-character hash of the
    whole text, so different texts stay different. Sweep points and re-evaluations are named so."""
    slug = re.sub(f"[^A-Za-z0-9._+={re.escape(keep)}-]+", fill, text).strip(fill) or fallback
    if len(slug) > 120:
        slug = slug[:100] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return slug


def read_results(path: str | Path) -> dict:
    """A ``results.json`` (or a run / evaluation folder holding one) with a linear evaluation's
    confusion matrix and class names, as :func:`compare_results` needs it. Raises ConfigError
    naming the path and what is missing."""
    import json

    from .errors import ConfigError

    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"{path}: no results.json there (give a run folder, an evaluation folder or the file)")
    try:
        res = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{f}: not a readable results.json ({exc})") from None
    lin = res.get("linear") if isinstance(res, dict) else None
    if not isinstance(lin, dict) or "confusion" not in lin or "class_names" not in res:
        raise ConfigError(f"{f}: holds no linear evaluation with its confusion matrix (run `skelcl evaluate "
                          "RUN --protocol linear`)")
    return res


def plot_class_accuracy(class_names: Sequence[str], accuracies: Sequence[np.ndarray], labels: Sequence[str],
                        path: str | Path, title: str = "linear accuracy per class") -> Path:
    """Grouped horizontal bars: each class's accuracy (%) under each evaluation, one colour per
    evaluation, the classes top to bottom in their order."""
    plt = _plt()
    n, k = len(class_names), len(accuracies)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.14 * n * max(k, 2)), dpi=110)
    height = 0.8 / k
    y = np.arange(n)
    for i, (acc, lab) in enumerate(zip(accuracies, labels)):
        ax.barh(y - 0.4 + height * (i + 0.5), acc, height=height, label=lab)
    ax.set_yticks(y, list(class_names), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("top-1 % of the class's test sequences")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # the legend sits right of the axes
    plt.close(fig)
    return Path(path)


def compare_results(paths: Sequence[str | Path], labels: Sequence[str] | None = None, top: int = 3,
                    plot: str | Path | None = None) -> str:
    """Several evaluations of one dataset and split side by side, as markdown: the overall figures
    (linear top-1, without the test copies where counted, kNN), each class's linear accuracy with
    its difference to the first evaluation, and each one's most frequent confusions.

    Why: two runs a point apart overall can differ by ten points on one class; which classes a
    change helps or hurts is what says why. Evaluations of other classes are refused.

    Args:
        paths: results.json files or folders holding one (the first is the reference).
        labels: a column name per evaluation (default: the paths as given).
        top: how many of each evaluation's largest off-diagonal confusion counts to list.
        plot: also draw each class's accuracy under each evaluation there (a PNG,
            :func:`plot_class_accuracy`).
    """
    from .errors import ConfigError

    if len(paths) < 2:
        raise ConfigError(f"compare needs two or more evaluations, got {len(paths)}")
    if top < 1:
        raise ConfigError(f"top (the confusions listed per evaluation) must be at least 1, got {top}")
    labels = [str(p) for p in paths] if labels is None else list(labels)
    if len(labels) != len(paths):
        raise ConfigError(f"{len(labels)} labels for {len(paths)} evaluations")
    res = [read_results(p) for p in paths]
    names = list(res[0]["class_names"])
    for p, r in zip(paths[1:], res[1:]):
        if list(r["class_names"]) != names:
            raise ConfigError(f"{p}: its classes ({len(r['class_names'])}: {', '.join(r['class_names'][:3])}, ...) "
                              f"are not those of {paths[0]} ({len(names)}: {', '.join(names[:3])}, ...); compare "
                              "evaluations of one dataset and split")
    cms = [np.asarray(r["linear"]["confusion"], dtype=float) for r in res]
    for p, cm in zip(paths, cms):
        if cm.shape != (len(names), len(names)):
            raise ConfigError(f"{p}: a {cm.shape} confusion matrix for {len(names)} classes")
    if any(not np.array_equal(cm.sum(1), cms[0].sum(1)) for cm in cms[1:]):
        raise ConfigError("the evaluations were not made on the same test sequences (their classes' test counts "
                          "differ); compare evaluations of one split")

    def cell(block: dict | None, key: str) -> str:
        v = (block or {}).get(key)
        return "—" if v is None else f"{float(v):.1f}"

    overall = [[lab, cell(r["linear"], "top1"), cell(r["linear"], "top1_without_copies"), cell(r.get("knn"), "top1")]
               for lab, r in zip(labels, res)]
    parts = ["## Overall", "", markdown_table(["evaluation", "linear top-1 %", "without the test copies",
                                                "kNN top-1 %"], overall), ""]
    counts = cms[0].sum(1)
    acc = [100 * np.diag(cm) / np.maximum(counts, 1) for cm in cms]
    rows = []
    for c, name in enumerate(names):
        row: list[object] = [name, int(counts[c]), f"{acc[0][c]:.1f}"]
        row += [f"{a[c]:.1f} ({a[c] - acc[0][c]:+.1f})" for a in acc[1:]]
        rows.append(row)
    header = ["class", "test sequences", labels[0]] + [f"{lab} (vs the first)" for lab in labels[1:]]
    parts += ["## Linear accuracy per class", "", markdown_table(header, rows), "",
              f"## Most frequent confusions (top {top}: count, true -> predicted)", ""]
    for lab, cm in zip(labels, cms):
        off = cm.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None, kind="stable")[:top]
        pairs = [f"{int(off.flat[i])} {names[i // len(names)]} -> {names[i % len(names)]}" for i in order
                 if off.flat[i] > 0]
        parts.append(f"- {lab}: " + ("; ".join(pairs) if pairs else "none"))
    if plot is not None:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_class_accuracy(names, acc, labels, plot)
    return "\n".join(parts) + "\n"
