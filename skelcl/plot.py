"""Figures: 3D stick figures of skeleton sequences (and, later, other plots).

Everything draws on a :class:`matplotlib.figure.Figure` with the Agg canvas directly (no pyplot, no
global backend switch), so it works headless and inside other programs. Coordinates are shown with
the data's y axis up (matplotlib's 3D z), equal scales on all three axes, and the same limits in
every panel of a figure, so that a rotation looks like a rotation and a shear like a shear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3d projection)

PERSON_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple")


@dataclass
class SkeletonRow:
    """One row of a stick-figure grid.

    Attributes:
        label: row title (what was done to the sequence).
        x: (T, M, V, C) coordinates, C = 3 (or 2: drawn with z = 0).
        marks: optional (T, V) bool, joints to mark with a black cross (e.g. what a mask zeroed).
        marks_at: optional (T, M, V, C) positions of the marked joints (default ``x``; a mask's
            crosses are clearer at the original positions than at the zeros they were set to).
    """

    label: str
    x: np.ndarray
    marks: np.ndarray | None = field(default=None)
    marks_at: np.ndarray | None = field(default=None)


def _to_plot(p: np.ndarray) -> np.ndarray:
    """(..., 3) data (x, y, z) -> plot (x, z, y): the data's y axis is drawn up."""
    if p.shape[-1] == 2:
        p = np.concatenate([p, np.zeros_like(p[..., :1])], -1)
    return p[..., [0, 2, 1]]


def _limits(rows: Sequence[SkeletonRow], frames: Sequence[int]) -> tuple[np.ndarray, float]:
    """A common centre and half-width over every drawn (present) joint."""
    pts = []
    for row in rows:
        sel = row.x[list(frames)]  # (F, M, V, C)
        present = np.abs(sel).reshape(sel.shape[0], sel.shape[1], -1).max(-1) > 0
        pts.append(_to_plot(sel[present]).reshape(-1, 3))
    allp = np.concatenate(pts) if pts else np.zeros((1, 3))
    if allp.size == 0:
        allp = np.zeros((1, 3))
    lo, hi = allp.min(0), allp.max(0)
    return (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3) * 1.05


def plot_skeleton_grid(rows: Sequence[SkeletonRow], bones: Sequence[tuple[int, int]], frames: Sequence[int],
                       out: str | Path | None = None, panel_size: float = 2.0, dpi: int = 90,
                       elev: float = 18.0, azim: float = -55.0, title: str | None = None) -> Figure:
    """Draw rows of sequences as 3D stick figures at the given frames (one row per sequence).

    Args:
        rows: the sequences, each (T, M, V, C); all must have at least ``max(frames) + 1`` frames.
        bones: (child, parent) joint index pairs (``layout.bones``).
        frames: frame indices shown as columns.
        out: where to save the PNG (parent folders are created); None: only return the figure.
        panel_size: inches per panel; dpi: resolution of the saved image.
        elev, azim: the camera of every panel (degrees).
        title: an optional figure title.

    Persons are drawn in different colours; a person absent in a frame (all zeros) is not drawn.
    Returns the figure.
    """
    nr, nc = len(rows), len(frames)
    fig = Figure(figsize=(panel_size * nc + 1.2, panel_size * nr + (0.4 if title else 0.0)))
    FigureCanvasAgg(fig)
    centre, half = _limits(rows, frames)
    bones_a = np.asarray(bones, dtype=np.int64).reshape(-1, 2)
    for r, row in enumerate(rows):
        for c, t in enumerate(frames):
            ax = fig.add_subplot(nr, nc, r * nc + c + 1, projection="3d")
            frame = row.x[t]  # (M, V, C)
            for m in range(frame.shape[0]):
                if not np.any(frame[m]):
                    continue
                p = _to_plot(frame[m])
                colour = PERSON_COLOURS[m % len(PERSON_COLOURS)]
                for a, b in bones_a:
                    ax.plot(*p[[a, b]].T, color=colour, lw=1.4)
                ax.scatter(*p.T, color=colour, s=5, depthshade=False)
                if row.marks is not None and row.marks[t].any():
                    at = p if row.marks_at is None else _to_plot(row.marks_at[t, m])
                    ax.scatter(*at[row.marks[t]].T, color="black", marker="x", s=24, depthshade=False)
            for setlim, k in ((ax.set_xlim, 0), (ax.set_ylim, 1), (ax.set_zlim, 2)):
                setlim(centre[k] - half, centre[k] + half)
            ax.set_box_aspect((1, 1, 1), zoom=1.2)
            ax.set_proj_type("ortho")
            ax.view_init(elev=elev, azim=azim)
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            ax.tick_params(length=0)
            if r == 0:
                ax.set_title(f"t = {t}", fontsize=9)
            if c == 0:
                ax.text2D(-0.1, 0.5, row.label, transform=ax.transAxes, rotation=90, va="center",
                          ha="center", fontsize=8, linespacing=1.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.01, top=0.97 if not title else 0.95,
                        wspace=0.0, hspace=0.05)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)
    return fig


def show_frames(length: int, count: int = 4) -> list[int]:
    """``count`` frame indices spread evenly over the valid frames 0..length-1."""
    count = max(1, min(count, length))
    return sorted({int(round(v)) for v in np.linspace(0, length - 1, count)})


def augmentation_rows(x: np.ndarray, length: int, seed: int = 0) -> list[SkeletonRow]:
    """The original sequence and each of the seven augmentations of it (paper Fig. 2), labelled.

    Reverse and blur are drawn with p = 1 so that their row shows an effect; all other parameters
    are the paper's defaults. x: (T, M, V, 3) one sequence.
    """
    import torch

    from .augment import Blur, ChannelMask, JointMask, Noise, Reverse, Rotate, Shear

    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))[None]
    lt = torch.tensor([int(length)])
    gen = torch.Generator().manual_seed(int(seed))
    rows = [SkeletonRow("original", np.asarray(x, dtype=np.float32))]

    def run(op):  # type: ignore[no-untyped-def]
        p = op.draw(xt, lt, gen)
        return p, op.apply(xt, lt, p)[0].numpy()

    p, y = run(Rotate())
    ang = np.degrees(p["angles"][0].numpy())
    rows.append(SkeletonRow(f"rotation\nX {ang[0]:.1f}° Y {ang[1]:.1f}° Z {ang[2]:.1f}°", y))
    p, y = run(Shear())
    f = p["factors"][0].numpy()
    rows.append(SkeletonRow("shear\n" + " ".join(f"{v:+.2f}" for v in f), y))
    _, y = run(Reverse(p=1.0))
    rows.append(SkeletonRow("reverse\n(time flipped)", y))
    _, y = run(Noise())
    rows.append(SkeletonRow(f"noise\nstd {Noise().std}", y))
    p, y = run(Blur(p=1.0))
    rows.append(SkeletonRow(f"blur\nsigma {float(p['sigma'][0]):.2f}", y))
    p, y = run(JointMask())
    rows.append(SkeletonRow(f"joint mask: {int(p['joints'][0])} joints x {int(p['frames'][0])} frames\n"
                            "(x: where they were)", y, marks=p["mask"][0].numpy(), marks_at=rows[0].x))
    p, y = run(ChannelMask())
    rows.append(SkeletonRow(f"channel mask\n{'xyz'[int(p['axis'][0])]} = 0", y))
    return rows


def plot_augmentations(x: np.ndarray, length: int, bones: Sequence[tuple[int, int]], out: str | Path | None,
                       seed: int = 0, frames: int = 4, title: str | None = None) -> Figure:
    """One sequence and its seven augmentations as a stick-figure grid (like the paper's Fig. 2).

    Args:
        x: (T, M, V, 3) one canonical sequence (zero padding after ``length``).
        length: its valid length.
        bones: the layout's bones.
        out: PNG path (or None).
        seed: seed of the augmentations' draws.
        frames: number of frames shown per row, spread over the valid length.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected one sequence (T, M, V, 3), got shape {x.shape}")
    rows = augmentation_rows(x, length, seed)
    return plot_skeleton_grid(rows, bones, show_frames(length, frames), out, title=title)


__all__ = ["SkeletonRow", "plot_skeleton_grid", "plot_augmentations", "augmentation_rows", "show_frames",
           "PERSON_COLOURS"]
