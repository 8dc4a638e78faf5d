"""Bradley-Terry ratings, with bootstrap CIs, from a cross-play matrix of a two-team game.

A cross-play matrix (``jmarl.tools.crossplay``) plays the policy of team A (rows, entries i) against the policy
of team B (columns, entries j) for E episodes per cell. Each episode is turned into an outcome by a ``WinRule``
(one team wins when a per-episode quantity is above or below a threshold: on mpe_tag the predators win an episode
in which they capture the prey at least once); the rows' wins w[i, j] of n[i, j] episodes then fit a **bipartite
Bradley-Terry model**: every (entry, team) is a player with a rating, and

    P(row i beats column j) = 1 / (1 + 10 ** ((R_col[j] - R_row[i]) / 400))          (Elo points)

so 400 points of difference are 10:1 odds. Teams of an asymmetric game (predators and prey) are players on one
scale only through their matches: compare predators with predators, prey with prey; ``R_row[i] - R_col[j]``
gives the predicted outcome of a pairing.

The fit is the maximum a posteriori estimate under a weak prior (Bayeselo's virtual draws): every player also
played ``prior`` games, half of them won, against a virtual player rated 0. It keeps ratings finite when a player
won or lost every game (the plain maximum-likelihood estimate is then infinite) and fixes the scale's origin;
``prior=0`` gives the plain estimate (centred at 0). Newton's method on the log-odds (a concave objective, steps
clipped to 2 log-odds units) converges in a few tens of iterations, vectorised over bootstrap replicates.

CIs are a bootstrap over episodes: each cell's episodes are resampled (with replacement, within the cell) and the
model refitted; the 2.5% and 97.5% quantiles of each rating are its 95% CI. They measure the evaluation's noise
for these fixed policies (how many episodes), not the spread over training seeds (cross-play several seeds'
runs for that).

Shape legend: I row entries, J column entries, E episodes per cell, R bootstrap replicates, K = I + J players.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from jmarl.core.config import ConfigError

ELO = 400.0 / np.log(10.0)  # Elo points per unit of log-odds

# The default outcome of an episode per environment: (team that wins, per-episode key, comparison, threshold).
# mpe_tag: predators are paid +10 per predator for each contact, and nothing else, so a positive return is a
# capture. mpe_adversary: a good agent's step reward is the adversary's distance to the goal minus the closest
# good agent's, so a positive return means the good agents held the goal closer than the adversary, on average.
DRAW_KEY = "metric/draw"  # per episode, 1 where neither side won (SMAX: the time limit)
DEFAULT_WIN_RULES = {
    "mpe_tag": "adversaries:return/adversaries>0",
    "mpe_adversary": "agents:return/agents>0",
}


@dataclass(frozen=True)
class WinRule:
    """``team`` wins an episode when its per-episode ``key`` (``return/TEAM``, ``metric/NAME``, ``win_rate``)
    compares (``>`` or ``<``) to ``threshold``; the other team wins it otherwise. Written ``TEAM:KEY>VALUE``."""

    team: str
    key: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, spec: str) -> "WinRule":
        found = re.fullmatch(r"\s*([^:]+):\s*([^<>]+?)\s*([<>])\s*(\S+)\s*", spec)
        try:
            threshold = float(found.group(4)) if found else None
        except ValueError:
            threshold = None
        if threshold is None:
            raise ConfigError(f"--win {spec!r}: write TEAM:KEY>VALUE or TEAM:KEY<VALUE, e.g. "
                              f"adversaries:return/adversaries>0 (KEY: return/TEAM, metric/NAME or win_rate)")
        return cls(found.group(1).strip(), found.group(2), found.group(3), threshold)

    def __str__(self) -> str:
        return f"{self.team}:{self.key}{self.op}{self.threshold:g}"

    def check(self, teams: Sequence[str], keys: Sequence[str], where: str = "--win") -> None:
        """ConfigError unless ``team`` is one of ``teams`` and ``key`` one of the matrix's per-episode ``keys``."""
        if self.team not in teams:
            raise ConfigError(f"{where} {self}: {self.team!r} is not a team of the game; teams: {list(teams)}")
        if self.key not in keys:
            raise ConfigError(f"{where} {self}: no per-episode {self.key!r} in the matrix; it has {sorted(keys)}")

    def row_wins(self, values: np.ndarray, row_team: str) -> np.ndarray:
        """f64 of ``values``'s shape: 1 where the rows' team won the episode, else 0."""
        holds = values > self.threshold if self.op == ">" else values < self.threshold
        return (holds if self.team == row_team else ~holds).astype(np.float64)


def default_win_rule(env: str, teams: Sequence[str], keys: Sequence[str]) -> WinRule:
    """The env's rule (``DEFAULT_WIN_RULES``), or the first team winning where the env reports wins (SMAX's
    ``won``); ConfigError asking for ``--win`` otherwise."""
    if env in DEFAULT_WIN_RULES:
        return WinRule.parse(DEFAULT_WIN_RULES[env])
    if "win_rate" in keys:
        return WinRule(teams[0], "win_rate", ">", 0.5)
    raise ConfigError(f"{env}: no default rule for who wins an episode; give --win TEAM:KEY>VALUE with KEY one "
                      f"of {sorted(keys)}")


# ----------------------------------------------------------------------------------------------------
# The fit
# ----------------------------------------------------------------------------------------------------
def fit_bradley_terry(wins: np.ndarray, games: np.ndarray, prior: float = 1.0, tol: float = 1e-10,
                      max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Bipartite Bradley-Terry ratings in log-odds units. ``wins`` f64[..., I, J]: games row i won against
    column j (fractions allowed: a draw is half a win), of ``games`` f64[I, J] (or [..., I, J]); the leading
    axes (bootstrap replicates) are fitted independently. Returns (rows f64[..., I], columns f64[..., J]) with
    P(row i beats column j) = sigmoid(rows[i] - columns[j]); see the module doc for ``prior``."""
    wins = np.asarray(wins, np.float64)
    games = np.broadcast_to(np.asarray(games, np.float64), wins.shape)
    if prior < 0 or not np.isfinite(prior):
        raise ConfigError(f"prior={prior}: the number of virtual games per player must be >= 0")
    if np.any(wins < 0) or np.any(wins > games):
        raise ConfigError("wins must lie between 0 and the number of games of each cell")
    I, J = wins.shape[-2:]
    lead = wins.shape[:-2]
    # Players: rows 0..I-1, then columns I..I+J-1. A player's wins: its rows' wins, or the columns' losses.
    won = np.concatenate([wins.sum(-1), (games - wins).sum(-2)], -1) + prior / 2  # f64[..., K]
    theta = np.zeros(lead + (I + J,))
    for _ in range(max_iter):
        rows, cols = theta[..., :I], theta[..., I:]
        p = 1.0 / (1.0 + np.exp(cols[..., None, :] - rows[..., :, None]))  # f64[..., I, J]: P(row wins)
        q = 1.0 / (1.0 + np.exp(-theta))  # f64[..., K]: P(win) against the prior's virtual player (rating 0)
        expected = np.concatenate([(games * p).sum(-1), (games * (1 - p)).sum(-2)], -1) + prior * q
        grad = won - expected  # d log-posterior / d theta
        var = games * p * (1 - p)  # f64[..., I, J]
        hess = np.zeros(lead + (I + J, I + J))  # the negative Hessian (positive semi-definite)
        idx = np.arange(I + J)
        hess[..., idx, idx] = np.concatenate([var.sum(-1), var.sum(-2)], -1) + prior * q * (1 - q)
        hess[..., :I, I:] = -var
        hess[..., I:, :I] = -np.swapaxes(var, -1, -2)
        # pinv: with prior=0 the ratings are defined up to one shift (the null space); the least-norm step
        # keeps them centred as they started.
        step = np.einsum("...kl,...l->...k", np.linalg.pinv(hess), grad)
        step = np.clip(step, -2.0, 2.0)  # damped Newton: logistic likelihoods can overshoot far from the optimum
        theta = theta + step
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return theta[..., :I], theta[..., I:]


def bootstrap_ratings(outcomes: np.ndarray, prior: float = 1.0, reps: int = 1000, seed: int = 0,
                      ci: float = 0.95) -> dict:
    """Ratings (Elo points) with bootstrap CIs from per-episode outcomes f64[I, J, E] (1: the row won, 0: lost,
    0.5: a draw). Returns {"rows": {"rating", "lo", "hi"} f64[I] each, "cols": the same f64[J],
    "win_rate": f64[I, J] (the rows' observed win rates), "predicted": f64[I, J] (the model's)}."""
    outcomes = np.asarray(outcomes, np.float64)
    I, J, E = outcomes.shape
    games = np.full((I, J), float(E))
    rows, cols = fit_bradley_terry(outcomes.sum(-1), games, prior)
    rng = np.random.default_rng(seed)
    # Resample the episodes of every cell (stratified by cell), in slices so memory stays small.
    boot_rows, boot_cols = [], []
    for start in range(0, reps, 250):
        r = min(250, reps - start)
        pick = rng.integers(0, E, (r, I, J, E))
        sampled = np.take_along_axis(np.broadcast_to(outcomes, (r, I, J, E)), pick, -1).sum(-1)
        br, bc = fit_bradley_terry(sampled, games, prior)
        boot_rows.append(br)
        boot_cols.append(bc)
    boot_rows, boot_cols = np.concatenate(boot_rows), np.concatenate(boot_cols)
    a = (1 - ci) / 2
    out = {}
    for side, fit, boot in (("rows", rows, boot_rows), ("cols", cols, boot_cols)):
        out[side] = {"rating": ELO * fit, "lo": ELO * np.quantile(boot, a, axis=0),
                     "hi": ELO * np.quantile(boot, 1 - a, axis=0)}
    out["win_rate"] = outcomes.mean(-1)
    out["predicted"] = 1.0 / (1.0 + np.exp(cols[None, :] - rows[:, None]))
    return out


def ratings_from_matrix(matrix: Mapping, rule: WinRule | str | None = None, prior: float = 1.0, reps: int = 1000,
                        seed: int = 0) -> dict:
    """Ratings of a cross-play result (``jmarl.tools.crossplay.crossplay``'s dict with per-episode values): the
    JSON-ready dict ratings.json holds. ``rule`` defaults to the env's (``default_win_rule``)."""
    episodes = matrix["episodes"]  # {key: f64[I, J, E]}
    row_team, col_team = matrix["row_team"], matrix["col_team"]
    if rule is None:
        rule = default_win_rule(matrix["env"], [row_team, col_team], list(episodes))
    elif isinstance(rule, str):
        rule = WinRule.parse(rule)
    rule.check([row_team, col_team], list(episodes))
    outcomes = rule.row_wins(np.asarray(episodes[rule.key]), row_team)  # f64[I, J, E]
    draws = DRAW_KEY in episodes  # an env that reports draws (SMAX's time-outs): a draw is half a win each way
    if draws:
        outcomes = np.where(np.asarray(episodes[DRAW_KEY]) > 0.5, 0.5, outcomes)
    fit = bootstrap_ratings(outcomes, prior, reps, seed)

    def players(labels, side):
        return [{"label": label, "rating": float(fit[side]["rating"][k]), "lo": float(fit[side]["lo"][k]),
                 "hi": float(fit[side]["hi"][k])} for k, label in enumerate(labels)]

    return {"env": matrix["env"], "rule": str(rule) + (" (a draw: half a win)" if draws else ""),
            "prior_games": prior, "bootstrap_reps": reps,
            "episodes_per_cell": int(np.asarray(episodes[rule.key]).shape[-1]),
            "scale": "Elo points: P(row beats column) = 1 / (1 + 10^((R_col - R_row) / 400)); 0 is the prior's "
                     "virtual player; 95% CIs: bootstrap over episodes",
            "rows": {"team": row_team, "players": players(matrix["rows"], "rows")},
            "cols": {"team": col_team, "players": players(matrix["cols"], "cols")},
            "row_win_rate": fit["win_rate"].tolist(), "predicted_row_win_rate": fit["predicted"].tolist()}


def plot_ratings(ratings: Mapping, path: str | Path) -> Path:
    """Each side's ratings with their 95% CIs, best at the top, one panel per team; saved as a PNG."""
    from matplotlib.figure import Figure  # a bare Figure, not pyplot (see jmarl.train.plots)

    sides = [ratings["rows"], ratings["cols"]]
    height = 1.2 + 0.35 * max(len(s["players"]) for s in sides)
    fig = Figure(figsize=(9, height), dpi=100)
    axes = fig.subplots(1, 2, sharex=True)
    for ax, side in zip(axes, sides):
        players = sorted(side["players"], key=lambda p: p["rating"])
        y = np.arange(len(players))
        r = np.array([p["rating"] for p in players])
        err = np.array([[p["rating"] - p["lo"] for p in players], [p["hi"] - p["rating"] for p in players]])
        ax.errorbar(r, y, xerr=np.maximum(err, 0), fmt="o", capsize=3)
        ax.set_yticks(y, [p["label"] for p in players], fontsize=8)
        ax.set_title(f"{side['team']}", fontsize=10)
        ax.set_xlabel("rating (Elo points, 95% CI)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{ratings['env']}: Bradley-Terry ratings, win: {ratings['rule']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
