"""Cross-play of two-team games in one vmapped program per policy structure, and an exploitability proxy.

``jmarl crossplay RUN_OR_SNAPSHOT [RUN ...] [--env ENV] [--episodes N] [--out DIR]`` takes each entry's policy
for each team of a two-team env (mpe_tag: adversaries and prey; mpe_adversary: adversaries and agents) and plays
every pairing: team A (the env's first team, the matrix's rows) of entry i against team B (columns) of entry j.
An entry is

- a run directory (member 0, newest intact checkpoint), ``RUN#K`` (population member K of a sweep or a
  multi-seed run), or one of the run's checkpoints ``RUN/checkpoints/chunk_NNNNNN`` (an earlier snapshot,
  ``#K`` too);
- ``random`` or ``heuristic``: the built-in references (uniform actions; the env's scripted policy).

An entry plays every team that learned in its run (a run that trained its predators against scripted prey
is a row only). Both teams are played inside the env as fixed policies (``jmarl.agents.opponents.FixedTeams``)
and each episode is ``jmarl.agents.rollout.evaluate_episodes`` of one env, so a cell is exactly what training's
evaluation reports for that pairing (``fixed_policy=RUN``), episode by episode.

**One program per structure.** Policies whose acting function traces to the same program (same algorithm
code, architecture and team spaces: the jaxpr and its constants are compared) have their parameters stacked
along a leading axis; the references join the first group of each side as branches of a ``lax.switch``
(under vmap, a select). One compiled program then plays every pairing of a row group with a column group,
vmapped over rows x columns x episodes; runs of different algorithms or architectures are separate groups,
and the command says how many programs it compiled. Every pairing uses the same episode keys (common random
numbers: the same starts), so cells differ by the policies alone.

Written to ``--out``: ``crossplay.json`` (entries, groups, per-cell means and standard errors of every
per-episode quantity: ``return/{team}`` for each team, never summed across teams, the env's ``metric/{name}``
and ``win_rate`` where reported, ``length``), ``crossplay_episodes.npz`` (the per-episode values f32[I, J, E]),
``crossplay.png`` (heat maps), ``ratings.json`` and ``ratings.png`` (Bradley-Terry ratings with bootstrap CIs,
``jmarl.tools.ratings``).

``jmarl exploit RUN --team TEAM --steps N`` is an exploitability proxy: it freezes RUN's TEAM policy
(``fixed_teams=TEAM fixed_policy=RUN``), trains a best response for the other team from scratch with RUN's
algorithm and settings (or ``--algo`` and KEY=VALUE) for N env steps, then plays both the best response and
RUN's own other-team policy against the frozen TEAM on the same episodes, and reports the best response's
gain (a paired bootstrap CI over episodes). A large gain means the frozen policy is exploitable; a small one
bounds nothing (the budget may be too small), hence "proxy".

Shape legend: I row entries, J column entries, E episodes per cell.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.agents.opponents import FixedTeams, Opponent, make_opponent
from jmarl.agents.rollout import evaluate_episodes
from jmarl.core.config import ConfigError
from jmarl.core.env import Environment
from jmarl.core.registry import make
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.tools.ratings import WinRule, default_win_rule, plot_ratings, ratings_from_matrix
from jmarl.train.algorithms import ResolvedConfig
from jmarl.train.load import Policy, check_run_team, load, loaded_opponent
from jmarl.train.files import read_config

REFERENCES = ("random", "heuristic")


# ----------------------------------------------------------------------------------------------------
# Entries
# ----------------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One policy source: a run (a member, maybe an earlier checkpoint) or a built-in reference."""

    label: str
    spec: str  # as given
    run_dir: Path | None = None  # None: a reference
    member: int = 0
    checkpoint: Path | None = None  # None: the newest intact checkpoint
    resolved: ResolvedConfig | None = None
    teams: tuple[str, ...] = ()  # the teams it plays (a run: those that learned in it)
    policy: Policy | None = None  # loaded by ``load_entries``

    @property
    def reference(self) -> bool:
        return self.run_dir is None


def parse_entry(spec: str, algorithm: str | None = None, trust: bool = False, allow_changed: bool = False) -> Entry:
    """An entry from its command-line form (see the module doc); its run's config is read and checked, nothing
    is loaded. ConfigError names what is wrong."""
    if spec in REFERENCES:
        return Entry(spec, spec)
    path, member = spec, 0
    if "#" in spec:
        path, _, k = spec.rpartition("#")
        if not k.isdigit():
            raise ConfigError(f"{spec!r}: a member is written RUN#K with K a number, e.g. {path}#1")
        member = int(k)
    path = Path(path)
    checkpoint = None
    if not (path / "config.json").is_file() and path.parent.name == "checkpoints" and \
            (path.parent.parent / "config.json").is_file():
        checkpoint, path = path, path.parent.parent  # RUN/checkpoints/chunk_NNNNNN: a snapshot of RUN
    if not (path / "config.json").is_file():
        raise ConfigError(f"{spec!r} is neither a run directory (one with a config.json), a checkpoint of one "
                          f"(RUN/checkpoints/chunk_NNNNNN) nor a reference {list(REFERENCES)}")
    meta = read_config(path)
    if not 0 <= member < len(meta["seeds"]):
        raise ConfigError(f"{spec!r}: the run in {path} has members 0..{len(meta['seeds']) - 1}")
    resolved = ResolvedConfig.from_dict(meta, algorithm, trust, allow_changed, where=f"the run in {path}")
    fixed = getattr(resolved.config, "fixed_teams", ())
    teams = tuple(t for t in make(resolved.env, **resolved.env_kwargs).teams if t not in fixed)
    label = path.resolve().name + (f"@{checkpoint.name}" if checkpoint else "") + (
        f"#{member}" if member or len(meta["seeds"]) > 1 else "")
    return Entry(label, spec, path, member, checkpoint, resolved, teams)


def game_env(entries: Sequence[Entry], env: str | None = None) -> Environment:
    """The two-team env the entries' runs were trained on (``env``, when given, must be it); ConfigError for runs
    of another env or other env settings, or an env without exactly two teams."""
    runs = [e for e in entries if not e.reference]
    if env is None and not runs:
        raise ConfigError("give --env ENV when every entry is a reference (random, heuristic)")
    name = env or runs[0].resolved.env
    kwargs = runs[0].resolved.env_kwargs if runs else {}
    for e in runs:
        if e.resolved.env != name:
            raise ConfigError(f"{e.spec}: the run was trained on {e.resolved.env}, not {name}; cross-play needs "
                              f"runs of one environment")
        if e.resolved.env_kwargs != kwargs:
            raise ConfigError(f"{e.spec}: the run's env settings {e.resolved.env_kwargs} differ from {runs[0].spec}'s "
                              f"{kwargs}; cross-play needs runs of one environment setting")
    base = make(name, **kwargs)
    if len(base.teams) != 2:
        raise ConfigError(f"cross-play needs an environment of two teams; {name} has {len(base.teams)}: "
                          f"{list(base.teams)}")
    return base


def load_entries(entries: Sequence[Entry], env: Environment, algorithm: str | None = None, trust: bool = False,
                 allow_changed: bool = False) -> list[Entry]:
    """Check every entry against ``env`` (teams and spaces; references: a heuristic exists), then load the runs'
    policies. Returns the entries with ``teams`` (references: every team) and ``policy`` set."""
    out = []
    for e in entries:
        if e.reference:
            for t in env.teams:
                make_opponent(env, t, e.spec)  # ConfigError now for an env without a scripted policy
            out.append(dataclasses.replace(e, teams=tuple(env.teams)))
            continue
        for t in e.teams:
            check_run_team(e.resolved, env, t, e.spec)
        policy = load(e.run_dir, e.member, algorithm=algorithm, trust=trust, allow_changed=allow_changed,
                      checkpoint_dir=e.checkpoint)
        out.append(dataclasses.replace(e, policy=policy))
    return out


# ----------------------------------------------------------------------------------------------------
# Sides and groups
# ----------------------------------------------------------------------------------------------------
def _signature(policy: Policy, team: str, env: Environment) -> tuple:
    """What decides whether two runs' ``team`` policies are one program: the parameter tree (structure, shapes,
    dtypes), the jaxpr of acting on the base env's TimeStep, and the jaxpr's constants."""
    ts = env.reset(jax.random.PRNGKey(0))[0]
    opp = loaded_opponent(policy, team, policy.params)
    closed = jax.make_jaxpr(lambda p, key, ts, hidden, starts: loaded_opponent(policy, team, p).act(
        key, None, ts, hidden, starts))(policy.params, jax.random.PRNGKey(0), ts, opp.init_hidden(),
                                        jnp.ones((), bool))
    consts = tuple(hashlib.sha256(np.asarray(c).tobytes()).hexdigest() + str(np.shape(c)) for c in closed.consts)
    leaves = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(policy.params))
    return (str(jax.tree.structure(policy.params)), leaves, str(closed.jaxpr), consts)


def side_groups(entries: Sequence[Entry], team: str, env: Environment) -> list[list[int]]:
    """Indices of ``entries`` (those that play ``team``) grouped by program: runs with one signature together,
    in order of first appearance; the references join the first group (a group of their own without runs)."""
    groups: dict[tuple, list[int]] = {}
    refs = []
    for k, e in enumerate(entries):
        if e.reference:
            refs.append(k)
        else:
            groups.setdefault(_signature(e.policy, team, env), []).append(k)
    out = list(groups.values()) or [[]]
    out[0] = out[0] + refs
    return out


class Side:
    """One team's entries in one program: the stacked parameters of its runs (one structure) and, per entry, a
    branch (the run policy, or a reference)."""

    def __init__(self, env: Environment, team: str, entries: Sequence[Entry]):
        self.env, self.team, self.entries = env, team, list(entries)
        runs = [e for e in entries if not e.reference]
        self.rep = runs[0].policy if runs else None  # the program every run of the group shares
        self.kinds = (["run"] if runs else []) + [r for r in REFERENCES if any(e.spec == r for e in entries)]
        self.branch = jnp.asarray([self.kinds.index(e.spec if e.reference else "run") for e in entries], jnp.int32)
        # f32[n, ...] leaves: each entry's parameters (a reference carries the first run's, unused).
        self.params = (jax.tree.map(lambda *xs: jnp.stack(xs), *[(e.policy or self.rep).params for e in entries])
                       if runs else jnp.zeros(len(entries)))

    def opponent(self, branch: jax.Array, params: Any) -> Opponent:
        """The ``Opponent`` of one entry: ``branch`` i32[] and ``params`` (that entry's slice, traced)."""
        opps = [loaded_opponent(self.rep, self.team, params) if k == "run" else make_opponent(self.env, self.team, k)
                for k in self.kinds]
        if len(opps) == 1:
            return opps[0]
        dtype = self.env.teams[self.team].action_space.dtype

        def act(key, env_state, ts, hidden, starts):
            # References keep no recurrent state: they hand back the run policy's hidden state untouched.
            def branch_fn(opp):
                def run():
                    h, a = opp.act(key, env_state, ts, hidden, starts)
                    return h, a.astype(dtype)
                return run
            return jax.lax.switch(branch, [branch_fn(o) for o in opps])

        return Opponent(opps[0].init_hidden, act)


def episode_keys(seed: int, episodes: int) -> jax.Array:
    """The E episode keys every pairing plays (common random numbers): one ``evaluate_episodes`` call each."""
    return jax.random.split(jax.random.PRNGKey(seed), episodes)


def _kept(key: str, value: jax.Array) -> bool:
    """Per-episode quantities of a cell: per-team returns, env metrics, win rate, length; never the sum of the
    teams' returns (``eval/return``), nor per-episode arrays."""
    return (key.startswith("eval/") and key not in ("eval/return", "eval/finished") and "episode_returns" not in key
            and jnp.ndim(value) == 0)


def play(env: Environment, rows: Sequence[Entry], cols: Sequence[Entry], keys: jax.Array,
         check: Callable[[list[str]], None] | None = None) -> dict:
    """Every pairing of ``rows`` (playing the env's first team) with ``cols`` (the second), on the episodes of
    ``keys`` [E]. Returns {"values": {key: f32[I, J, E]}, "programs": [{rows, cols, compile_seconds,
    run_seconds}]}: one compiled program per (row group, column group). ``check(keys)`` sees the per-episode
    keys once the first program is traced, before anything compiles (to refuse a win rule that names none)."""
    row_team, col_team = list(env.teams)
    row_groups, col_groups = side_groups(rows, row_team, env), side_groups(cols, col_team, env)
    values: dict[str, np.ndarray] = {}
    programs = []
    for rg in row_groups:
        for cg in col_groups:
            a, b = Side(env, row_team, [rows[k] for k in rg]), Side(env, col_team, [cols[k] for k in cg])

            def episode(ba, pa, bb, pb, key, a=a, b=b):
                game = AutoReset(EpisodeStats(FixedTeams(env, {row_team: a.opponent(ba, pa),
                                                               col_team: b.opponent(bb, pb)})))
                # Every team is fixed: nothing learns, the act function has no team to move.
                out = evaluate_episodes(game, lambda p, h, ts, s, k: (h, {}), (), (), key, 1)
                return {k.removeprefix("eval/"): v for k, v in out.items() if _kept(k, v)}

            f = jax.vmap(episode, (None, None, None, None, 0))  # episodes
            f = jax.vmap(f, (None, None, 0, 0, None))  # columns
            f = jax.jit(jax.vmap(f, (0, 0, None, None, None)))  # rows
            args = (a.branch, a.params, b.branch, b.params, keys)
            if check is not None:
                check(list(jax.eval_shape(f, *args)))
                check = None
            t0 = time.perf_counter()
            compiled = f.lower(*args).compile()
            t1 = time.perf_counter()
            out = jax.device_get(compiled(*args))
            t2 = time.perf_counter()
            for k, v in out.items():
                values.setdefault(k, np.full((len(rows), len(cols), len(keys)), np.nan, np.float32))
                values[k][np.ix_(rg, cg)] = v
            programs.append({"rows": [rows[k].label for k in rg], "cols": [cols[k].label for k in cg],
                             "compile_seconds": t1 - t0, "run_seconds": t2 - t1})
    return {"values": values, "programs": programs}


# ----------------------------------------------------------------------------------------------------
# jmarl crossplay
# ----------------------------------------------------------------------------------------------------
def crossplay(specs: Sequence[str], env: str | None = None, episodes: int = 100, seed: int = 0,
              algorithm: str | None = None, trust: bool = False, allow_changed: bool = False,
              win: str | None = None) -> dict:
    """The cross-play matrix of ``specs`` (see the module doc). Returns {"env", "env_kwargs", "row_team",
    "col_team", "rows", "cols" (labels), "entries", "episodes_per_cell", "seed", "win_rule", "programs", "mean",
    "sem" ({key: f64[I][J]} lists), "episodes" ({key: f32[I, J, E]} arrays)}. Every check (entries, env, teams,
    spaces, the win rule ``win``: ``TEAM:KEY>VALUE``, default the env's) runs before anything compiles."""
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: must be at least 1")
    rule = WinRule.parse(win) if win else None
    if not specs:
        raise ConfigError("give at least one run directory (or random / heuristic)")
    entries = [parse_entry(s, algorithm, trust, allow_changed) for s in specs]
    labels = [e.label for e in entries]
    for k, e in enumerate(entries):  # one label per entry, as given order says
        if labels.count(e.label) > 1:
            e.label = f"{e.label} ({k})"
    base = game_env(entries, env)
    row_team, col_team = list(base.teams)
    if rule is not None and rule.team not in base.teams:  # its key is checked once the program is traced
        rule.check(list(base.teams), [rule.key])
    entries = load_entries(entries, base, algorithm, trust, allow_changed)
    rows = [e for e in entries if row_team in e.teams]
    cols = [e for e in entries if col_team in e.teams]
    for team, side in ((row_team, rows), (col_team, cols)):
        if not side:
            raise ConfigError(f"no entry plays {team!r}: add a run in which it learned, or random / heuristic")

    def check_rule(keys: list[str]) -> None:
        nonlocal rule
        rule = rule or default_win_rule(base.name, [row_team, col_team], keys)
        rule.check([row_team, col_team], keys)

    result = play(base, rows, cols, episode_keys(seed, episodes), check_rule)
    values = result["values"]
    runs = [e for e in entries if not e.reference]
    return {"env": base.name, "env_kwargs": runs[0].resolved.env_kwargs if runs else {},
            "row_team": row_team, "col_team": col_team, "rows": [e.label for e in rows],
            "cols": [e.label for e in cols],
            "entries": [{"label": e.label, "spec": e.spec, "run_dir": None if e.reference else str(e.run_dir),
                         "member": e.member, "checkpoint": None if e.checkpoint is None else str(e.checkpoint),
                         "algo": None if e.reference else e.resolved.algo, "teams": list(e.teams)}
                        for e in entries],
            "episodes_per_cell": episodes, "seed": seed, "win_rule": str(rule), "programs": result["programs"],
            "mean": {k: v.mean(-1).astype(np.float64).tolist() for k, v in values.items()},
            "sem": {k: (v.std(-1, ddof=1) / np.sqrt(episodes) if episodes > 1 else np.zeros(v.shape[:2]))
                    .astype(np.float64).tolist() for k, v in values.items()},
            "episodes": values}


def panel_order(keys: Sequence[str], row_team: str, col_team: str) -> list[str]:
    """The per-episode quantities in the order they are shown: the two teams' returns, env metrics, win rate."""
    first = [k for k in (f"return/{row_team}", f"return/{col_team}") if k in keys]
    return first + sorted(k for k in keys if k.startswith("metric/")) + [k for k in ("win_rate",) if k in keys]


def plot_matrix(matrix: Mapping, path: str | Path) -> Path:
    """Heat maps of the cell means (rows: the first team's entries, columns: the second's), one panel per
    per-team return and env metric; values written in the cells. Saved as a PNG."""
    from matplotlib.figure import Figure  # a bare Figure, not pyplot (see jmarl.train.plots)

    keys = panel_order(list(matrix["mean"]), matrix["row_team"], matrix["col_team"])
    I, J = len(matrix["rows"]), len(matrix["cols"])
    cols_n = min(len(keys), 2)
    n_rows = -(-len(keys) // cols_n)
    fig = Figure(figsize=(cols_n * (2.5 + 0.8 * J), n_rows * (1.5 + 0.5 * I)), dpi=100)
    axes = np.atleast_1d(fig.subplots(n_rows, cols_n, squeeze=False)).ravel()
    for ax, key in zip(axes, keys):
        m = np.asarray(matrix["mean"][key], np.float64)
        im = ax.imshow(m, cmap="viridis", aspect="auto")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xticks(range(J), matrix["cols"], rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(I), matrix["rows"], fontsize=7)
        ax.set_xlabel(f"{matrix['col_team']} policy", fontsize=8)
        ax.set_ylabel(f"{matrix['row_team']} policy", fontsize=8)
        ax.set_title(key, fontsize=9)
        if I * J <= 144:
            mid = np.nanmean(m)
            for i in range(I):
                for j in range(J):
                    ax.text(j, i, f"{m[i, j]:.3g}", ha="center", va="center", fontsize=7,
                            color="black" if m[i, j] > mid else "white")
    for ax in axes[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{matrix['env']} cross-play: mean over {matrix['episodes_per_cell']} episodes per cell", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def write_crossplay(matrix: Mapping, out: str | Path, prior: float = 1.0, reps: int = 1000) -> dict:
    """Write crossplay.json, crossplay_episodes.npz, crossplay.png, ratings.json and ratings.png (by the
    matrix's win rule) in ``out``; returns the ratings."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossplay.json").write_text(json.dumps({k: v for k, v in matrix.items() if k != "episodes"}, indent=1))
    np.savez_compressed(out / "crossplay_episodes.npz", **{k.replace("/", "__"): v
                                                           for k, v in matrix["episodes"].items()})
    plot_matrix(matrix, out / "crossplay.png")
    ratings = ratings_from_matrix(matrix, matrix["win_rule"], prior, reps, matrix["seed"])
    (out / "ratings.json").write_text(json.dumps(ratings, indent=1))
    plot_ratings(ratings, out / "ratings.png")
    return ratings


def format_matrix(matrix: Mapping, key: str) -> str:
    """A markdown table of one quantity's cell means (± standard error)."""
    mean, sem = np.asarray(matrix["mean"][key]), np.asarray(matrix["sem"][key])
    head = f"| {key}: {matrix['row_team']} \\ {matrix['col_team']} | " + " | ".join(matrix["cols"]) + " |"
    lines = [head, "|---" * (len(matrix["cols"]) + 1) + "|"]
    for i, label in enumerate(matrix["rows"]):
        lines.append(f"| {label} | " + " | ".join(f"{mean[i, j]:.3g} ± {sem[i, j]:.2g}"
                                                   for j in range(len(matrix["cols"]))) + " |")
    return "\n".join(lines)


def format_ratings(ratings: Mapping) -> str:
    """Each side's players by rating, highest first, with 95% CIs (Elo points)."""
    lines = [f"ratings ({ratings['rule']}; Elo points, 95% CI):"]
    for side in ("rows", "cols"):
        for p in sorted(ratings[side]["players"], key=lambda p: -p["rating"]):
            lines.append(f"  {ratings[side]['team']:<12} {p['label']:<40} {p['rating']:8.1f} "
                         f"[{p['lo']:.1f}, {p['hi']:.1f}]")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# jmarl exploit
# ----------------------------------------------------------------------------------------------------
def _mean_ci(x: np.ndarray, reps: int = 2000, seed: int = 0) -> dict:
    from jmarl.train.stats import stratified_bootstrap_ci

    lo, hi = stratified_bootstrap_ci(np.asarray(x, np.float64), np.mean, reps, seed=seed)
    return {"mean": float(np.mean(x)), "lo": lo, "hi": hi}


# A run's settings about competing learners that a best response (one team learning against a fixed one) does not
# take over: they go back to the algorithm's defaults (a league run's schedule and pool need two learning sides).
NOT_INHERITED = ("objective", "init_from", "init_from_teams", "schedule", "schedule_interval", "pool_size",
                 "pool_groups", "pool_sampling", "eval_opponents", "share_teams")


def exploit(run: str | Path, team: str, steps: int, out: str | Path, episodes: int = 100, seed: int = 0,
            algorithm: str | None = None, overrides: Mapping[str, Any] | None = None, quiet: bool = True,
            trust: bool = False, allow_changed: bool = False) -> dict:
    """Train a best response to ``run``'s frozen ``team`` for ``steps`` env steps (run directory
    ``out/best_response``) and compare it with ``run``'s own policy for the other team against that frozen
    ``team``, on the same ``episodes`` episodes. Returns (and writes to ``out/exploit.json``) {"run", "team",
    "learner", "steps", "best_response_run", "baseline", "episodes", "best_response": {key: {mean, lo, hi}},
    "own": {...}, "gain": {mean, lo, hi}, "programs"} where ``gain`` is the learner's return of the best
    response minus that of ``run``'s own (paired over episodes). Checks run before anything compiles."""
    from jmarl.train.algorithms import algorithm_module, resolve
    from jmarl.train.run import Population, train

    run = Path(run)
    if not (run / "config.json").is_file():
        raise ConfigError(f"{run}: not a run directory (no config.json); exploit takes a run's directory")
    for option, value in (("--steps", steps), ("--episodes", episodes)):
        if value < 1:
            raise ConfigError(f"{option} {value}: must be at least 1")
    meta = read_config(run)
    saved = ResolvedConfig.from_dict(meta, algorithm if algorithm and algorithm == meta["algo"] else None, trust,
                                     allow_changed, where=f"the run in {run}")
    base = make(saved.env, **saved.env_kwargs)
    teams = list(base.teams)
    if len(teams) != 2:
        raise ConfigError(f"exploit needs an environment of two teams; {saved.env} has {len(teams)}: {teams}")
    if team not in teams:
        raise ConfigError(f"--team {team!r} is not a team of {saved.env}: {teams}")
    learner = next(t for t in teams if t != team)
    check_run_team(saved, base, team, str(run))  # the frozen team must have learned in the run
    # The best response: the run's algorithm and settings (or --algo's preset), the frozen team fixed, its own
    # return the objective; settings about competing learners go back to their defaults (NOT_INHERITED).
    change = {"fixed_teams": (team,), "fixed_policy": str(run), "total_timesteps": steps,
              **{f"env.{k}": v for k, v in saved.env_kwargs.items()}}
    name = meta["algo"] if algorithm is None or algorithm == meta["algo"] else algorithm
    if any(f.name == "objective" for f in dataclasses.fields(algorithm_module(name).Config)):
        change["objective"] = f"return/{learner}"
    if name == meta["algo"]:
        settings = {k: v for k, v in {**dataclasses.asdict(saved.config), **dataclasses.asdict(saved.hparams)}.items()
                    if k not in NOT_INHERITED}
        resolved = resolve(name, saved.env, {**settings, **change, **(overrides or {})}, use_preset=False)
    else:
        resolved = resolve(name, saved.env, {**change, **(overrides or {})})
    # What plays the learner side for the run itself: its own policy, or the policy it was fixed to.
    fixed = getattr(saved.config, "fixed_teams", ())
    own_spec = str(run) if learner not in fixed else getattr(saved.config, "fixed_policy", "random")
    own = parse_entry(own_spec, trust=trust, allow_changed=allow_changed)
    frozen = parse_entry(str(run), trust=trust, allow_changed=allow_changed)
    out = Path(out)
    br_dir = out / "best_response"
    train(resolved, Population.grid([resolved.hparams], [seed]), br_dir, quiet=quiet, wandb="disabled")
    br = parse_entry(str(br_dir), trust=True)
    br.label = "best response"
    own.label = f"{own.label} (own)"
    learners, (frozen,) = load_entries([own, br], base), load_entries([frozen], base)
    rows, cols = (learners, [frozen]) if learner == teams[0] else ([frozen], learners)
    result = play(base, rows, cols, episode_keys(seed, episodes))
    values = result["values"]

    def side(k: int) -> dict:  # k: 0 the run's own, 1 the best response
        pick = (lambda v: v[k, 0]) if learner == teams[0] else (lambda v: v[0, k])
        return {key: _mean_ci(pick(v)) for key, v in values.items()}

    key = f"return/{learner}"
    pick = (lambda v: v[:, 0]) if learner == teams[0] else (lambda v: v[0, :])
    own_r, br_r = pick(values[key])
    report = {"run": str(run), "team": team, "learner": learner, "steps": steps, "best_response_run": str(br_dir),
              "algo": resolved.algo, "baseline": own_spec, "episodes": episodes, "seed": seed,
              "best_response": side(1), "own": side(0), "gain": _mean_ci(br_r - own_r),
              "programs": result["programs"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "exploit.json").write_text(json.dumps(report, indent=1))
    return report


def format_exploit(report: Mapping) -> str:
    """The exploitability report: the best response's return, the run's own, and the gain, with CIs."""
    key = f"return/{report['learner']}"
    b, o, g = report["best_response"][key], report["own"][key], report["gain"]
    return (f"exploitability proxy: {report['learner']} against {report['run']}'s frozen {report['team']} "
            f"({report['episodes']} episodes)\n"
            f"  best response ({report['steps']:,} env steps, {report['algo']}): {key} {b['mean']:.3g} "
            f"[{b['lo']:.3g}, {b['hi']:.3g}]\n"
            f"  the run's own {report['learner']} ({report['baseline']}): {key} {o['mean']:.3g} "
            f"[{o['lo']:.3g}, {o['hi']:.3g}]\n"
            f"  gain: {g['mean']:.3g} [95% CI {g['lo']:.3g}, {g['hi']:.3g}]")
