"""Pieces every algorithm shares when it acts in a batch of environments: random actions for fixed
teams, per-step episode statistics, their in-program reduction, evaluation on whole episodes, and a run's
objective (which of the evaluation's numbers is its headline).

Returns are reported per team (``train/return/{team}``, ``eval/return/{team}``); teams are added into one
``*/return`` only where that sum means something: an env with one team, or one whose teams all pursue one
goal (``objective = "return"``, see ``default_objective``). Opposing teams (mpe_tag's predators and prey)
are never summed.

Shape legend: B envs, T steps, N agents in a team, A actions, E evaluation episodes.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
from jmarl.core.spaces import Space


def random_actions(space: Space, key: jax.Array, avail: jax.Array) -> jax.Array:
    """Uniform actions over the available ones: avail bool[B, N, A] -> i32[B, N] (f32[B, N, *shape] for a Box,
    whose avail is bool[B, N, 1]). A thin call of ``space.sample``, the one home of random actions."""
    return space.sample(key, avail.shape[:-1], avail)


def episode_info(info: dict) -> dict:
    """The episode statistics of a TimeStep's info (EpisodeStats; ``won`` where the env reports it):
    {"episode_return": {team: f32[..., N]}, "episode_length": i32[...], "episode_metrics": {name: f32[...]},
    "won": bool[...]}."""
    out = {"episode_return": info["episode_return"], "episode_length": info["episode_length"],
           "episode_metrics": info.get("episode_metrics", {})}
    if "won" in info:
        out["won"] = info["won"]
    return out


def step_stats(ts: TimeStep) -> dict:
    """What a rollout step records for ``episode_metrics``: episode statistics and whether one ended."""
    return {"episode_done": ts.done, **episode_info(ts.info)}


def sums_teams(env: Environment | None, teams: Sequence[str]) -> bool:
    """Whether the returns of ``teams`` (every team that is rewarded in ``env``, fixed ones included) add up to
    one meaningful return: one team, or an env whose objective is the sum (``objective = "return"``: teams that
    pursue one goal, e.g. mpe_speaker_listener; also the default of a multi-team env that declares nothing).
    Without the env (``env=None``) only a single team is summed."""
    if len(teams) == 1:
        return True
    return env is not None and getattr(env, "objective", "return") == "return"


def episode_metrics(stats: dict, env: Environment | None = None) -> dict:
    """Means over the episodes that finished in a rollout (stats leaves [T, B, ...] from ``step_stats``):
    ``train/return/{team}`` for every team, ``train/return`` where the teams' returns add up (``sums_teams``:
    one team, or ``env``'s objective is their sum), ``train/length``, ``train/episodes``, ``train/win_rate``
    where the env reports wins and ``train/metric/{name}`` for every episode metric."""
    done = stats["episode_done"]
    count = jnp.maximum(done.sum(), 1)
    mean = lambda x: jnp.where(done, x, 0.0).sum() / count
    out = {f"train/return/{t}": mean(r.sum(-1)) for t, r in stats["episode_return"].items()}
    if sums_teams(env, list(stats["episode_return"])):
        out["train/return"] = mean(sum(r.sum(-1) for r in stats["episode_return"].values()))
    out["train/length"] = mean(stats["episode_length"])
    out["train/episodes"] = done.sum()
    if "won" in stats:
        out["train/win_rate"] = mean(stats["won"].astype(jnp.float32))
    out.update({f"train/metric/{k}": mean(v) for k, v in stats["episode_metrics"].items()})
    return out


# act(params, hidden, timestep [B], starts bool[B], key) -> (hidden, {team: actions [B, N, ...]})
ActFn = Callable[[Any, Any, TimeStep, jax.Array, jax.Array], tuple[Any, dict]]


def evaluate_episodes(env: Environment, act: ActFn, params, hidden, key: jax.Array, num_episodes: int) -> dict:
    """Run ``num_episodes`` envs (static; ``env`` auto-resets and keeps episode statistics) until each has
    finished one episode, acting with ``act``; ``hidden`` is the batch's initial recurrent state.

    Returns means over the episodes: ``eval/return/{team}`` (sum over the team's agents) for every team,
    ``eval/return`` (sum over every team) only where the teams' returns add up (``sums_teams``: never for
    opposing teams), ``eval/length``, ``eval/finished`` (fraction done within ``env.max_steps``),
    ``eval/win_rate`` where the env reports it, ``eval/metric/{name}`` for every episode metric
    (``info["metrics"]``, see ``EpisodeStats``); and each episode's values, f32[num_episodes]:
    ``eval/episode_returns/{team}``, ``eval/episode_returns`` (where ``eval/return`` is),
    ``eval/episode_won`` and ``eval/episode_metrics/{name}`` (``episodes_key`` names the one of an objective).
    """
    B = num_episodes
    k_reset, k_run = jax.random.split(key)
    ts, state = jax.vmap(env.reset)(jax.random.split(k_reset, B))

    def step(carry, _):
        ts, state, hidden, starts, finished, first, key = carry
        key, k_act, k_env = jax.random.split(key, 3)
        hidden, actions = act(params, hidden, ts, starts, k_act)
        ts, state = jax.vmap(env.step)(jax.random.split(k_env, B), state, actions)
        take = ts.done & ~finished  # keep each env's first finished episode
        first = jax.tree.map(lambda old, new: jnp.where(take.reshape(take.shape + (1,) * (new.ndim - 1)), new, old),
                             first, episode_info(ts.info))
        return (ts, state, hidden, ts.done, finished | ts.done, first, key), None

    first = jax.tree.map(jnp.zeros_like, episode_info(ts.info))
    carry = (ts, state, hidden, jnp.ones(B, bool), jnp.zeros(B, bool), first, k_run)
    (_, _, _, _, finished, first, _), _ = jax.lax.scan(step, carry, None, env.max_steps)
    returns = {t: r.sum(-1) for t, r in first["episode_return"].items()}  # {team: f32[E]}
    out = {f"eval/episode_returns/{t}": r for t, r in returns.items()}
    out.update({f"eval/return/{t}": r.mean() for t, r in returns.items()})
    if sums_teams(env, list(returns)):
        out["eval/episode_returns"] = sum(returns.values())
        out["eval/return"] = out["eval/episode_returns"].mean()
    out["eval/length"] = first["episode_length"].mean()
    out["eval/finished"] = finished.mean()
    if "won" in first:
        out["eval/episode_won"] = first["won"].astype(jnp.float32)
        out["eval/win_rate"] = first["won"].mean()
    out.update({f"eval/episode_metrics/{k}": v for k, v in first["episode_metrics"].items()})
    out.update({f"eval/metric/{k}": v.mean() for k, v in first["episode_metrics"].items()})
    return out


# ----------------------------------------------------------------------------------------------------
# The objective: what a run reports as its headline and picks its best configuration by
# ----------------------------------------------------------------------------------------------------
# An objective names one number of the final greedy evaluation: ``return/TEAM`` (that team's return, summed
# over its agents), ``return`` (every team's, where they add up: ``sums_teams``), ``win_rate`` (where the env
# reports wins) or ``metric/NAME`` (an episode metric: the env's ``info["metrics"]`` or the user's). Higher is
# better; a leading ``-`` makes lower better (``-metric/time_to_first_capture``). An env declares its default
# with a class attribute ``objective`` (mpe_tag: ``return/adversaries``; smax: ``win_rate``); an env with one
# team defaults to that team's return, a multi-team env that declares nothing to the sum of its teams.


def default_objective(env: Environment, teams: Sequence[str]) -> str:
    """The objective a run on ``env`` (rewarded ``teams``) reports unless its config names one."""
    declared = getattr(env, "objective", None)
    if declared:
        return declared
    return f"return/{teams[0]}" if len(teams) == 1 else "return"


def objective_names(env: Environment) -> list[str]:
    """Every objective ``env`` can report (without the ``-`` sign), read off the shapes of its first TimeStep
    (``jax.eval_shape``: nothing runs): its teams' returns, wins, episode metrics."""
    ts = _first_timestep(env)
    teams = list(ts.reward)
    names = [f"return/{t}" for t in teams] + (["return"] if sums_teams(env, teams) else [])
    names += ["win_rate"] if "won" in ts.info else []
    return names + [f"metric/{k}" for k in ts.info.get("metrics", {})]


def resolve_objective(objective: str, env: Environment) -> str:
    """``objective`` checked against ``env`` (``""``: the env's default, ``default_objective``); raises
    ConfigError naming the valid ones (before anything compiles)."""
    name = objective or default_objective(env, list(_first_timestep(env).reward))
    valid = objective_names(env)
    if name.removeprefix("-") not in valid:
        what = f"objective={objective!r}" if objective else f"{env.name}'s declared objective {name!r}"
        raise ConfigError(f"{what} is not one {env.name} reports; valid: {valid} (a leading '-' makes lower "
                          f"better, e.g. -{valid[-1]})")
    return name


def _first_timestep(env: Environment) -> TimeStep:
    """The shapes of ``env``'s first TimeStep (traced, not run)."""
    return jax.eval_shape(env.reset, jax.random.PRNGKey(0))[0]


def higher_is_better(objective: str) -> bool:
    """False for an objective to minimise (``-length``), True otherwise."""
    return not objective.startswith("-")


def objective_key(objective: str) -> str:
    """The metrics key of an objective's per-run value: ``return/prey`` -> ``eval/return/prey``."""
    return f"eval/{objective.removeprefix('-')}"


def episodes_key(objective: str) -> str:
    """The key of an objective's per-episode values f32[E] in ``evaluate_episodes``' output."""
    name = objective.removeprefix("-")
    if name == "return" or name.startswith("return/"):
        return "eval/episode_returns" + name.removeprefix("return")
    if name == "win_rate":
        return "eval/episode_won"
    return f"eval/episode_metrics/{name.removeprefix('metric/')}"


# Bits of ``health/nonfinite``: what of an update went NaN or infinite.
NONFINITE_LOSS, NONFINITE_PARAMS, NONFINITE_OPTIMISER = 1, 2, 4
NONFINITE_NAMES = {NONFINITE_LOSS: "loss", NONFINITE_PARAMS: "parameters",
                   NONFINITE_OPTIMISER: "gradients (optimiser state)"}


def _all_finite(tree) -> jax.Array:
    """bool[]: every floating-point leaf of ``tree`` is finite (True for a tree without any)."""
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.ones((), bool)


def nonfinite_mask(runner, metrics: dict) -> jax.Array:
    """i32[]: the ``NONFINITE_*`` bits of one update: its losses (``loss/...`` metrics named ``*loss``: diagnostics
    such as PPO's approx_kl may overflow harmlessly), the runner's ``params`` and its ``opt_state`` (Adam's
    moments are running sums of the gradients, so a non-finite gradient stays there even where clipping hides
    it from the parameters). A reduction over the parameters, cheap beside an update."""
    losses = {k: v for k, v in metrics.items() if k.startswith("loss/") and k.endswith("loss")}
    mask = jnp.where(_all_finite(losses), 0, NONFINITE_LOSS)
    mask |= jnp.where(_all_finite(runner.params), 0, NONFINITE_PARAMS)
    mask |= jnp.where(_all_finite(getattr(runner, "opt_state", ())), 0, NONFINITE_OPTIMISER)
    return mask.astype(jnp.int32)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``range(n)``, i32[n]: one sort of u32 keys with random high bits and the index in the
    low ceil(log2 n) bits. ``jax.random.permutation`` sorts (random key, index) pairs in two rounds, 4-8x slower on
    XLA:CPU (1 ms per PPO epoch of 2048 samples). Two indices keep their order where their random bits tie (per
    pair, probability 2^-(32 - ceil(log2 n)): 2^-21 for n = 2048); above 2^20 it falls back to
    ``jax.random.permutation``."""
    bits = max(1, (n - 1).bit_length())
    if bits > 20:
        return jax.random.permutation(key, n)
    low = jnp.uint32((1 << bits) - 1)
    keys = (jax.random.bits(key, (n,), jnp.uint32) & ~low) | jnp.arange(n, dtype=jnp.uint32)
    return (jnp.sort(keys) & low).astype(jnp.int32)


def minibatches(key: jax.Array, batch: Any, h0: Any, num_minibatches: int, recurrent: bool) -> tuple[Any, Any]:
    """Shuffle and split time-major data (leaves [T, B, ...]) into M = ``num_minibatches`` minibatches
    (leaves [M, T', B', ...]) with their initial recurrent state ``h0`` (leaves [B, ...]) -> [M, B', ...].
    Recurrent: split the batch axis (whole sequences, each with its start hidden state; T' = T, B' = B / M).
    Feed-forward: split every (step, env) pair (sequences of length 1, T' = 1, B' = T * B / M; zero state)."""
    T, B = jax.tree.leaves(batch)[0].shape[:2]
    M = num_minibatches
    if recurrent:
        perm = permutation(key, B)
        split = lambda x: jnp.swapaxes(x[:, perm].reshape((T, M, B // M) + x.shape[2:]), 0, 1)
        return jax.tree.map(split, batch), jax.tree.map(lambda h: h[perm].reshape((M, B // M) + h.shape[1:]), h0)
    perm = permutation(key, T * B)
    split = lambda x: x.reshape((T * B,) + x.shape[2:])[perm].reshape((M, 1, T * B // M) + x.shape[2:])
    h0 = jax.tree.map(lambda h: jnp.zeros((M, T * B // M) + h.shape[1:]), h0)
    return jax.tree.map(split, batch), h0


def chunked_run(init: Callable, update: Callable, evaluate: Callable, config) -> tuple[Callable, Callable]:
    """The run of every algorithm, from its pure ``init(key, hp)``, ``update(runner, hp)`` and
    ``evaluate(params, key)`` (runners are NamedTuples with ``params``, ``key`` and ``update``):

    - ``run_chunk(runner, hp)``: ``config.updates_per_chunk`` updates, then an evaluation of the params
      just updated (not stale ones). Metrics: per-update values f32[U], the evaluation's scalars, and
      ``env_steps``. The host calls this one compiled program once per chunk (logging, checkpoints).
    - ``train(key, hp)``: the whole run in one program; metrics with a leading chunk axis [num_chunks, ...].

    Every update also reports ``health/nonfinite`` i32[U], a bit mask of what went non-finite in it
    (``NONFINITE_LOSS`` | ``NONFINITE_PARAMS`` | ``NONFINITE_OPTIMISER``; 0: all finite), which the host reads
    between chunks (``jmarl.train.run``): a diverged member is reported with the first such update, never
    scored as if its NaN parameters were a policy.
    """

    def checked_update(runner, hp):
        runner, metrics = update(runner, hp)
        return runner, {**metrics, "health/nonfinite": nonfinite_mask(runner, metrics)}

    def run_chunk(runner, hp):
        runner, metrics = jax.lax.scan(lambda r, _: checked_update(r, hp), runner, None, config.updates_per_chunk)
        key, k_eval = jax.random.split(runner.key)
        metrics.update(evaluate(runner.params, k_eval))
        metrics["env_steps"] = runner.update * config.batch_size
        return runner._replace(key=key), metrics

    def train(key, hp):
        return jax.lax.scan(lambda r, _: run_chunk(r, hp), init(key, hp), None, config.num_chunks)

    return run_chunk, train
