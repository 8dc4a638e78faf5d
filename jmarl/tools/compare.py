"""``jmarl compare RUN [RUN ...]``: one table and one plot across finished runs.

Every configuration of every run is a *method* (a run with one configuration is one method; a sweep gives one
per configuration). Its score is the final greedy evaluation per seed (``results.json``): the return (``return``
where the teams share one goal, ``return/TEAM`` for one team), the win rate, or a named episode metric. The
table gives mean and IQM with 95% stratified-bootstrap CIs over seeds (``jmarl.train.stats``) and, for every
pair, the probability of improvement P(X > Y): the chance that a seed of X scores above a seed of Y (ties count
half), with a bootstrap CI. A seed that diverged has no score: it is left out of its method's statistics and
counted beside them, and a method whose every seed diverged has no row of statistics and no pairs. The plot
overlays the methods' evaluation curves (metrics.jsonl) with CI bands over seeds.

Runs may differ in algorithm, static settings or code version (their config.json says how); runs of different
environments (or env settings) are refused unless ``allow_mixed``, since their scores are not on one scale.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from jmarl.core.config import ConfigError
from jmarl.train.files import (METRICS_FILE, RESULTS_FILE, RunDirectoryError, read_config, read_metrics,
                               read_results)
from jmarl.train.plots import save_curves
from jmarl.train.stats import AGGREGATES, aggregate

METRICS = ("return", "win_rate")  # or return/TEAM, or an episode metric's name (results.json configs[i]["metrics"])


@dataclass
class Method:
    label: str
    run_dir: Path
    config_id: int
    env: str
    env_kwargs: dict
    scores: np.ndarray  # f64[S]: the final evaluation of each seed that has one (S <= seeds)
    curve_rows: list[dict]  # metrics.jsonl rows of this configuration
    no_score: int = 0  # seeds without a finite score (diverged: results.json has None for them)


def _scores(config: dict, metric: str, where: Path) -> np.ndarray:
    teams = config.get("teams", {})  # every team's return (results.json of runs with per-team results)
    if metric == "return":
        if "returns" not in config:
            raise ConfigError(f"{where}: its teams oppose each other, so it reports no summed return; compare "
                              f"--metric return/TEAM, one of {[f'return/{t}' for t in teams]}")
        return np.asarray(config["returns"], np.float64)
    if metric.startswith("return/"):
        if metric.removeprefix("return/") not in teams:
            raise ConfigError(f"{where}: has no team {metric.removeprefix('return/')!r}; its teams: {list(teams)}")
        return np.asarray(teams[metric.removeprefix("return/")]["values"], np.float64)
    if metric == "win_rate":
        if "win_rates" not in config:
            raise ConfigError(f"{where}: reports no win rate; compare --metric return or an episode metric")
        return np.asarray(config["win_rates"], np.float64)
    named = config.get("metrics", {})
    if metric not in named:
        raise ConfigError(f"{where}: has no metric {metric!r}; it has {[*METRICS, *sorted(named)]}")
    return np.asarray(named[metric]["values"], np.float64)


def load_methods(run_dirs: Sequence[str | Path], metric: str = "return", allow_mixed: bool = False) -> list[Method]:
    """The methods of ``run_dirs`` (one per configuration), checked to be comparable."""
    if not run_dirs:
        raise ConfigError("give at least one run directory")
    methods = []
    for run_dir in map(Path, run_dirs):
        config = read_config(run_dir)  # each file checked, and named where damaged
        results = read_results(run_dir)
        rows = read_metrics(run_dir / METRICS_FILE)
        several = len(results["configs"]) > 1
        for c in results["configs"]:
            label = run_dir.name + (f" [config {c['config_id']}]" if several else "")
            try:
                scores = _scores(c, metric, run_dir)
            except ConfigError:  # the metric or team does not apply to this run: its own message
                raise
            except (TypeError, ValueError, KeyError) as e:  # a results.json whose numbers are not numbers
                raise RunDirectoryError(f"{run_dir / RESULTS_FILE} is damaged: configuration {c['config_id']}'s "
                                        f"{metric} values are unreadable ({type(e).__name__}: {e})") from None
            finite = np.isfinite(scores)
            methods.append(Method(label, run_dir, c["config_id"], config["env"], config.get("env_kwargs", {}),
                                  scores[finite], [r for r in rows if r["config_id"] == c["config_id"]],
                                  int((~finite).sum())))
    envs = {(m.env, json.dumps(m.env_kwargs, sort_keys=True)) for m in methods}
    if len(envs) > 1 and not allow_mixed:
        raise ConfigError(f"the runs are on different environments or env settings {sorted(envs)}: their scores "
                          f"are not on one scale; pass --allow-mixed to compare them anyway")
    return methods


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over all seed pairs, ties counting half (Agarwal et al. 2021)."""
    x, y = np.asarray(x, np.float64)[:, None], np.asarray(y, np.float64)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def poi_ci(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap CI of ``probability_of_improvement``, resampling the seeds of each method."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    values = [probability_of_improvement(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
              for _ in range(reps)]
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def compare(methods: Sequence[Method]) -> dict:
    """{"methods": [{label, run_dir, config_id, scores, no_score, runs, mean, iqm, ... with CIs (None where no seed
    has a score)}], "improvement": [{x, y, p, p_lo, p_hi}] for every ordered pair of methods with scores}."""
    table = []
    for m in methods:
        stats = aggregate(m.scores) if len(m.scores) else {"runs": 0, **{f"{a}{s}": None for a in AGGREGATES
                                                                         for s in ("", "_lo", "_hi")}}
        table.append({"label": m.label, "run_dir": str(m.run_dir), "config_id": m.config_id,
                      "scores": m.scores.tolist(), "no_score": m.no_score, **stats})
    scored = [m for m in methods if len(m.scores)]
    pairs = []
    for i, a in enumerate(scored):
        for j, b in enumerate(scored):
            if i < j:
                lo, hi = poi_ci(a.scores, b.scores)
                pairs.append({"x": a.label, "y": b.label, "p": probability_of_improvement(a.scores, b.scores),
                              "p_lo": lo, "p_hi": hi})
    return {"methods": table, "improvement": pairs}


def format_table(result: dict, metric: str) -> str:
    """Markdown tables of a comparison: each method's mean and IQM with CIs, then P(X > Y) for each pair."""
    lines = [f"| method | seeds | mean {metric} [95% CI] | IQM [95% CI] |", "|---|---:|---|---|"]
    for m in result["methods"]:
        seeds = f"{m['runs']} (+{m['no_score']} diverged)" if m["no_score"] else f"{m['runs']}"
        if not m["runs"]:
            lines.append(f"| {m['label']} | {seeds} | no score: every seed diverged | - |")
            continue
        lines.append(f"| {m['label']} | {seeds} | {m['mean']:.4g} [{m['mean_lo']:.4g}, {m['mean_hi']:.4g}] | "
                     f"{m['iqm']:.4g} [{m['iqm_lo']:.4g}, {m['iqm_hi']:.4g}] |")
    if result["improvement"]:
        lines += ["", "| X | Y | P(X > Y) [95% CI] |", "|---|---|---|"]
        lines += [f"| {p['x']} | {p['y']} | {p['p']:.2f} [{p['p_lo']:.2f}, {p['p_hi']:.2f}] |"
                  for p in result["improvement"]]
    return "\n".join(lines)


def plot_curves(methods: Sequence[Method], path: str | Path, metric: str) -> Path:
    """Evaluation curves (mean over seeds, 95% CI band) of every method on one axis, saved as a PNG."""
    key = (f"eval/{metric}" if metric == "return" or metric.startswith("return/") else "eval/win_rate"
           if metric == "win_rate" else f"eval/metric/{metric}")
    return save_curves([(m.label, m.curve_rows) for m in methods], path, key)
