"""Learning curves: greedy evaluation return against env steps, mean and 95% bootstrap CI over seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jmarl.train.stats import stratified_bootstrap_ci


def learning_curves(rows: list[dict], path: str | Path, title: str = "", metric: str = "eval/return") -> Path:
    """Plot ``metric`` from metrics.jsonl rows, one line per configuration; saves a PNG at ``path``."""
    # A bare Figure, not pyplot: no backend is switched under a notebook's inline plots.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    for config_id in sorted({r["config_id"] for r in rows}):
        mine = [r for r in rows if r["config_id"] == config_id and metric in r]
        steps = sorted({r["env_steps"] for r in mine})
        values = [np.array([r[metric] for r in mine if r["env_steps"] == s]) for s in steps]
        mean = np.array([v.mean() for v in values])
        ci = np.array([stratified_bootstrap_ci(v, np.mean, reps=500) if len(v) > 1 else (v[0], v[0]) for v in values])
        line, = ax.plot(steps, mean, label=f"config {config_id} ({len(values[0])} seeds)")
        ax.fill_between(steps, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.25)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
