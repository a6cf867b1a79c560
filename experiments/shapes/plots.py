"""Figures of the shapes report (matplotlib, Agg): curves with mean +/- std bands, the
visual-attention-by-position curve, and the before/after attention-overlay grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.shapes.runs import POSITION_BINS, RunData, curve, position_curve


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    _plt().close(fig)
    return path


def curves_figure(groups: dict[str, list[RunData]], panels: list[tuple[str, str, int]], path: Path,
                  start: dict[str, float] | None = None, xlabel: str = "RL step",
                  refs: dict[str, float] | None = None) -> Path | None:
    """One panel per ``(metric key, title, smoothing window)``: mean +/- std over seeds per method.

    ``start`` optionally maps a metric key to its value at step 0 (the warm start), drawn as
    a dotted line; ``refs`` maps labels to reference values (dashed lines, every panel).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    drawn = False
    for ax, (key, title, window) in zip(axes[0], panels, strict=True):
        for method, runs in groups.items():
            steps, mean, std = curve(runs, key, window)
            if not len(steps):
                continue
            drawn = True
            line, = ax.plot(steps, mean, label=f"{method} (n={len(runs)})", lw=1.5)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        if start and np.isfinite(start.get(key, np.nan)):
            ax.axhline(start[key], color="gray", ls=":", lw=1, label="warm start")
        for label, value in (refs or {}).items():
            ax.axhline(value, color="black", ls="--", lw=0.8, label=label)
        ax.set_title(title + (f" (moving avg {window})" if window > 1 else ""), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def position_figure(groups: dict[str, list[RunData]], path: Path, warm: list[RunData] = ()) -> Path | None:
    """Validation visual-attention mass by relative response position at the end of RL
    (mean over seeds), with the warm start's curve for reference.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    x = (np.arange(POSITION_BINS) + 0.5) / POSITION_BINS
    drawn = False
    for run in warm[:1]:
        c = position_curve(run, "val/")
        ok = np.isfinite(c)  # empty bins (short responses) are skipped
        if ok.any():
            ax.plot(x[ok], c[ok], color="gray", ls=":", marker=".", label="warm start")
            drawn = True
    for method, runs in groups.items():
        rows = np.array([position_curve(r, "val/") for r in runs])  # [seeds, bins]
        ok = np.isfinite(rows).any(0)  # [bins]
        if not ok.any():
            continue
        ax.plot(x[ok], np.nanmean(rows[:, ok], 0), marker=".", label=method)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("relative position in the response")
    ax.set_ylabel("attention mass on image tokens")
    ax.set_title("visual attention by response position (validation, end of RL;\n"
                 "mean over seeds, empty bins skipped)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def overlay_grid(columns: list[tuple[str, list[Path]]], path: Path) -> Path | None:
    """Grid of attention-overlay PNGs: one column per ``(title, [image paths])``, rows = images."""
    columns = [(t, ps) for t, ps in columns if ps]
    if not columns:
        return None
    plt = _plt()
    from PIL import Image

    rows = max(len(ps) for _, ps in columns)
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.3 * len(columns), 2.45 * rows), squeeze=False)
    for c, (title, paths) in enumerate(columns):
        for r in range(rows):
            ax = axes[r][c]
            ax.axis("off")
            if r < len(paths):
                ax.imshow(Image.open(paths[r]))
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
