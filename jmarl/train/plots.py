"""Learning curves: evaluation metrics against env steps, mean and 95% bootstrap CI over seeds; and, for
competitive runs, each side's curves against fixed references (``reference_curves``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jmarl.train.stats import stratified_bootstrap_ci

# A line of a panel: (legend label, metrics.jsonl rows, the metric plotted, matplotlib style such as color).
Line = tuple[str, Sequence[dict], str, dict]
LINE_STYLES = ("-", "--", ":", "-.")


def draw_curve(ax: Any, rows: Sequence[dict], metric: str, label: str, **style: Any) -> None:
    """One line (mean over the rows of each env-step count, i.e. over seeds) with its 95% CI band on ``ax``;
    ``style`` goes to ``ax.plot`` (color, linestyle)."""
    rows = [r for r in rows if metric in r]
    steps = sorted({r["env_steps"] for r in rows})
    if not steps:
        return
    values = [np.array([r[metric] for r in rows if r["env_steps"] == s]) for s in steps]
    mean = np.array([v.mean() for v in values])
    ci = np.array([stratified_bootstrap_ci(v, np.mean, reps=500) if len(v) > 1 else (v[0], v[0]) for v in values])
    line, = ax.plot(steps, mean, label=f"{label} ({len(values[-1])} seeds)", **style)
    ax.fill_between(steps, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.25)


def save_panels(panels: Sequence[tuple[str, str, Sequence[Line]]], path: str | Path) -> Path:
    """A row of panels, each (title, y label, lines), every line a mean over seeds with its CI band against env
    steps; saved as a PNG at ``path``."""
    # A bare Figure, not pyplot: no backend is switched under a notebook's inline plots.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(panels), 4), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, ylabel, lines) in zip(axes, panels):
        for label, rows, metric, style in lines:
            draw_curve(ax, rows, metric, label, **style)
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def save_curves(curves: Sequence[tuple[str, Sequence[dict]]], path: str | Path, metric: str | Sequence[str],
                title: str = "") -> Path:
    """``curves``: (label, metrics.jsonl rows) per line; every line's ``metric`` on one axis, saved as a PNG.
    Several metrics (e.g. every team's return: opposing teams are not on one scale) get a panel each."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    return save_panels([(title, name, [(label, rows, name, {}) for label, rows in curves]) for name in metrics],
                       path)


def learning_curves(rows: list[dict], path: str | Path, title: str = "",
                    metric: str | Sequence[str] = "eval/return") -> Path:
    """Plot ``metric`` (one panel per metric where several are given, e.g. ``eval/return/{team}`` of every team)
    from metrics.jsonl rows, one line per configuration; saves a PNG at ``path``."""
    return save_curves(config_curves(rows), path, metric, title)


def config_curves(rows: Sequence[dict]) -> list[tuple[str, list[dict]]]:
    """(``config {id}``, its rows) for each configuration of a run's metrics.jsonl rows."""
    return [(f"config {c}", [r for r in rows if r["config_id"] == c]) for c in sorted({r["config_id"] for r in rows})]


def reference_keys(rows: Sequence[dict]) -> dict[str, dict[str, str]]:
    """{side: {reference: metrics.jsonl key}}: what a curve of each learning team (side) against each fixed
    reference (``eval_opponents``; keys ``eval/vs_{reference}/...``, jmarl.agents.league.evaluate_vs_references)
    plots. That is the side's own win rate where the env reports one per team as the episode metric
    ``{side}_won`` (SMAX), else the side's return. Sides and references keep the order the run logged them in;
    {} for rows without references."""
    found: dict[str, dict[str, str]] = {}
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith("eval/vs_"))
    for key in keys:  # eval/vs_{ref}/return/{side}: the side's return against ref
        parts = key.split("/")
        if len(parts) == 4 and parts[2] == "return":
            found.setdefault(parts[3], {})[parts[1].removeprefix("vs_")] = key
    for side, by_ref in found.items():  # a win measure of the side's own, where every reference has it
        won = {ref: f"eval/vs_{ref}/{side}/metric/{side}_won" for ref in by_ref}
        if all(k in keys for k in won.values()):
            found[side] = won
    return found


def reference_curves(curves: Sequence[tuple[str, Sequence[dict]]], path: str | Path, title: str = "") -> Path | None:
    """Whether a league makes progress rather than cycling: one panel per side, its return (or win rate, see
    ``reference_keys``) against each fixed reference over env steps, mean over seeds with a 95% CI band.
    ``curves``: (label, metrics.jsonl rows) per run or configuration; with several, a colour per curve and a line
    style per reference, else a colour per reference. Saves a PNG at ``path``; writes nothing and returns None
    where no row holds references."""
    panels = reference_keys([r for _, rows in curves for r in rows])
    if not panels:
        return None
    several = len(curves) > 1
    out = []
    for side, by_ref in panels.items():
        lines = [(f"{label}: vs {ref}" if several else f"vs {ref}", rows, key,
                  {"color": f"C{i if several else j}", "linestyle": LINE_STYLES[j % len(LINE_STYLES)] if several
                   else "-"})
                 for i, (label, rows) in enumerate(curves) for j, (ref, key) in enumerate(by_ref.items())]
        measure = next(iter(by_ref.values())).split("/", 2)[2].removeprefix(f"{side}/")  # return/S, metric/S_won
        out.append((f"{title}: {side} against fixed references" if title else f"{side} against fixed references",
                    measure, lines))
    return save_panels(out, path)
