"""Learning-curve PNGs with matplotlib's Agg canvas (no pyplot state: headless, and a
notebook's backend is left alone)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from fastweights.metrics.writer import losses_by_step, read_jsonl



def _new_figure(ncols: int, title: str | None):
    # Figure + FigureCanvasAgg directly: no pyplot global state and no backend switching, so
    # plotting works headless and does not disturb a notebook's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * ncols, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    if title:
        fig.suptitle(title)
    return fig, axes


def _save(fig, png_path: str | os.PathLike) -> Path:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, format="png", dpi=100)
    return png_path


def plot_learning_curves(jsonl_path: str | os.PathLike, png_path: str | os.PathLike, *,
                         keys: Iterable[str] = ("loss",), title: str | None = None) -> Path:
    """Plot each of `keys` against step (one panel per key, a line per split) to a PNG."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    records = read_jsonl(jsonl_path)
    splits = list(dict.fromkeys(r.get("split", "train") for r in records))
    fig, axes = _new_figure(len(keys), title)
    plotted = False
    for ax, key in zip(axes, keys, strict=True):
        for split in splits:
            curve = losses_by_step(records, split=split, key=key)
            if not curve:
                continue
            # Eval points are few: markers keep single points visible.
            ax.plot(list(curve), list(curve.values()), label=split,
                    marker="o" if split != "train" else None, markersize=3)
            plotted = True
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend()
    if not plotted:
        raise ValueError(f"{jsonl_path}: no records with any of the keys {keys}")
    return _save(fig, png_path)


def plot_runs(runs: Mapping[str, str | os.PathLike], png_path: str | os.PathLike, *,
              key: str = "loss", split: str = "train", title: str | None = None,
              logy: bool = False, x: str = "step") -> Path:
    """Plot `key` of `split` against `x` (the step, or another logged counter such as
    "frames") for several runs (`{label: jsonl_path}`) in one panel."""
    fig, axes = _new_figure(1, title)
    ax = axes[0]
    missing = []
    for label, path in runs.items():
        records = read_jsonl(path)
        curve = losses_by_step(records, split=split, key=key)
        if x != "step":         # the counter of each step's (last) record
            at = losses_by_step(records, split=split, key=x)
            curve = {at[s]: v for s, v in curve.items() if s in at}
        if not curve:
            missing.append(label)
            continue
        ax.plot(list(curve), list(curve.values()), label=label,
                marker="o" if split != "train" else None, markersize=3)
    if missing:
        raise ValueError(f"no {split!r} records with key {key!r} in runs {missing}")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{split} {key}")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, png_path)
