"""Aggregate scores across seeds (and tasks): mean, median, interquartile mean, and stratified bootstrap
95% confidence intervals, as recommended by Agarwal et al. (2021), "Deep RL at the Edge of the
Statistical Precipice". rliable implements these, but its dependency ``arch`` fails to import with
pandas 3 (installed here), so the few lines are written out in NumPy.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores."""
    x = np.sort(np.asarray(x, np.float64).ravel())
    n = len(x)
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda x: float(np.mean(x)), "median": lambda x: float(np.median(x)), "iqm": iqm,
}


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """``iqm`` of every row of x f64[R, n]."""
    n = x.shape[1]
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    x = np.sort(x, axis=1)
    return x[:, lo:hi].mean(1) if hi > lo else x.mean(1)


# The aggregates computed for all bootstrap samples at once (f64[R, n] -> f64[R]): a results.json of a sweep
# takes thousands of them (configurations x teams x metrics), too slow one sample at a time.
_VECTORISED: dict[Callable, Callable[[np.ndarray], np.ndarray]] = {
    AGGREGATES["mean"]: lambda x: x.mean(1), AGGREGATES["median"]: lambda x: np.median(x, axis=1), iqm: _iqm_rows,
    np.mean: lambda x: x.mean(1),
}


def stratified_bootstrap_ci(scores: np.ndarray, statistic: Callable[[np.ndarray], float],
                            reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over ``scores`` f64[runs, tasks], resampling runs within
    each task (the strata)."""
    scores = np.asarray(scores, np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    samples = np.take_along_axis(scores[None].repeat(reps, 0), idx, axis=1)
    if statistic in _VECTORISED:  # every sample at once; each statistic reads a sample's scores as one set
        values = _VECTORISED[statistic](samples.reshape(reps, -1))
    else:
        values = np.array([statistic(s) for s in samples])
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def aggregate(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> dict[str, float]:
    """{mean, median, iqm} of ``scores`` f[runs] or f[runs, tasks}, each with ``_lo``/``_hi`` 95% CI bounds."""
    scores = np.asarray(scores, np.float64)
    out = {"runs": int(scores.shape[0])}
    for name, fn in AGGREGATES.items():
        out[name] = fn(scores)
        out[f"{name}_lo"], out[f"{name}_hi"] = stratified_bootstrap_ci(scores, fn, reps, seed=seed)
    return out


def marl_eval_json(env_name: str, task: str, algo: str, steps: np.ndarray, returns: np.ndarray,
                   final_returns: np.ndarray) -> dict:
    """marl-eval's raw-data format: steps i[C], returns f[runs, C, episodes] per evaluation,
    final_returns f[runs, episodes] (the 'absolute_metrics')."""
    runs = {}
    for r in range(returns.shape[0]):
        run = {f"step_{c}": {"step_count": int(steps[c]), "return": [float(v) for v in returns[r, c]]}
               for c in range(len(steps))}
        run["absolute_metrics"] = {"return": [float(v) for v in final_returns[r]]}
        runs[f"run_{r}"] = run
    return {env_name: {task: {algo: runs}}}
