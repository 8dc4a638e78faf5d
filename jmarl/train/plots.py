"""Learning curves: evaluation metrics against env steps, mean and 95% bootstrap CI over seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jmarl.train.stats import stratified_bootstrap_ci


def draw_curve(ax: Any, rows: Sequence[dict], metric: str, label: str) -> None:
    """One line (mean over the rows of each env-step count, i.e. over seeds) with its 95% CI band on ``ax``."""
    rows = [r for r in rows if metric in r]
    steps = sorted({r["env_steps"] for r in rows})
    if not steps:
        return
    values = [np.array([r[metric] for r in rows if r["env_steps"] == s]) for s in steps]
    mean = np.array([v.mean() for v in values])
    ci = np.array([stratified_bootstrap_ci(v, np.mean, reps=500) if len(v) > 1 else (v[0], v[0]) for v in values])
    line, = ax.plot(steps, mean, label=f"{label} ({len(values[-1])} seeds)")
    ax.fill_between(steps, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.25)


def save_curves(curves: Sequence[tuple[str, Sequence[dict]]], path: str | Path, metric: str | Sequence[str],
                title: str = "") -> Path:
    """``curves``: (label, metrics.jsonl rows) per line; every line's ``metric`` on one axis, saved as a PNG.
    Several metrics (e.g. every team's return: opposing teams are not on one scale) get a panel each."""
    # A bare Figure, not pyplot: no backend is switched under a notebook's inline plots.
    from matplotlib.figure import Figure

    metrics = [metric] if isinstance(metric, str) else list(metric)
    fig = Figure(figsize=(6 * len(metrics), 4), dpi=100)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, name in zip(axes, metrics):
        for label, rows in curves:
            draw_curve(ax, rows, name, label)
        ax.set_xlabel("env steps")
        ax.set_ylabel(name)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def learning_curves(rows: list[dict], path: str | Path, title: str = "",
                    metric: str | Sequence[str] = "eval/return") -> Path:
    """Plot ``metric`` (one panel per metric where several are given, e.g. ``eval/return/{team}`` of every team)
    from metrics.jsonl rows, one line per configuration; saves a PNG at ``path``."""
    configs = sorted({r["config_id"] for r in rows})
    return save_curves([(f"config {c}", [r for r in rows if r["config_id"] == c]) for c in configs], path, metric,
                       title)
