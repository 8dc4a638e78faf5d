"""Fixed teams: teams that act by a fixed policy and do not learn (the one home for opponents).

A fixed team is played *inside* the environment: ``with_fixed_teams(env, teams, spec)`` wraps ``env`` so
that its ``teams`` are only the learning ones; every ``step`` first asks each fixed team's policy for its
actions, then steps the base env with everyone's. An algorithm therefore needs no fixed-team branch: it
wraps its env (``AutoReset(EpisodeStats(with_fixed_teams(env, ...)))``) and learns every team it sees.
Evaluation, ``jmarl.load`` and rendering see the same env, and the fixed policy gets what it needs
without widening any policy signature: the env state (scripted heuristics read true positions, as SMAX's
does) and its own recurrent state, which is reset with the episode because ``AutoReset`` swaps in a fresh
wrapper state.

The policy ``spec`` is a static string, so it lives in the frozen config (``fixed_policy``):

- ``"random"``: uniform over the available actions (uniform in the box for continuous actions).
- ``"heuristic"``: the env's scripted policy, ``env.heuristic_actions(key, state, team)`` (MPE: chase /
  flee / go to landmarks; SMAX: shoot or advance).
- a run directory: the greedy policy of member 0 of a saved run (``jmarl.load``) trained on the same env
  with that team learning; its parameters are loaded once, at ``make_train`` time, and become constants
  of the compiled program.

PPO and Q-learning configs take ``fixed_teams`` (team names) and one ``fixed_policy`` for all of them
(``jmarl train ippo --env mpe_tag fixed_teams=prey fixed_policy=heuristic``): no env here has more than
two teams, so at most one is fixed, and a separate string keeps a run directory's path clear of the
command line's comma-separated tuple parsing.

What the wrapper returns: ``obs`` and ``avail_actions`` of the learning teams only; ``reward`` of *every*
team, so episode statistics (``train/return/{team}``, ``eval/return/{team}``) still report the fixed
team's return; ``info["fixed_actions"]`` ({fixed team: actions [N, ...]}) what the fixed teams did in
this step (zeros after a reset).

Shape legend: N agents in a team.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.rollout import random_actions
from jmarl.core.wrappers import Wrapper

FIXED_POLICIES = ("random", "heuristic")  # or the path of a run directory


class Opponent(NamedTuple):
    """A fixed team's policy for one env (unbatched; the wrapper is vmapped with the env)."""

    init_hidden: Callable[[], Any]  # () -> its recurrent state at an episode's start (any pytree)
    # (key, env_state, timestep, hidden, starts bool[]) -> (hidden, actions [N, ...]); ``timestep`` is
    # the base env's, with every team's observations.
    act: Callable[[jax.Array, Any, TimeStep, Any, jax.Array], tuple[Any, jax.Array]]


# ----------------------------------------------------------------------------------------------------
# Specs -> policies
# ----------------------------------------------------------------------------------------------------
def make_opponent(env: Environment, team: str, spec: str) -> Opponent:
    """The policy ``spec`` names for ``team`` of ``env``; raises ConfigError (before anything compiles)
    for an unknown spec, an env without a heuristic, or a checkpoint that does not fit."""
    if spec == "random":
        return random_opponent(env, team)
    if spec == "heuristic":
        return heuristic_opponent(env, team)
    if (Path(spec) / "config.json").is_file():
        return checkpoint_opponent(env, team, spec)
    raise ConfigError(f"fixed_policy={spec!r} is not valid: use one of {list(FIXED_POLICIES)} or the directory "
                      f"of a saved run (one with a config.json)")


def random_opponent(env: Environment, team: str) -> Opponent:
    space = env.teams[team].action_space

    def act(key, env_state, ts: TimeStep, hidden, starts):
        return hidden, random_actions(space, key, ts.avail_actions[team][None])[0]  # a batch of one env

    return Opponent(lambda: (), act)


def heuristic_opponent(env: Environment, team: str) -> Opponent:
    # Looked up on the class: a wrapper forwards attributes to its inner env, whose heuristic would be
    # handed the wrapper's state.
    if not callable(getattr(type(env), "heuristic_actions", None)):
        raise ConfigError(f"fixed_policy='heuristic': {env.name} ({type(env).__name__}) has no scripted policy "
                          f"(heuristic_actions); use one of {[p for p in FIXED_POLICIES if p != 'heuristic']} or "
                          f"a run directory")

    def act(key, env_state, ts: TimeStep, hidden, starts):
        return hidden, env.heuristic_actions(key, env_state, team)

    return Opponent(lambda: (), act)


def checkpoint_opponent(env: Environment, team: str, run_dir: str) -> Opponent:
    """Greedy actions of ``team``'s policy in the saved run ``run_dir`` (member 0). The run's config is
    checked against ``env`` before its checkpoint is read."""
    # Imported here: jmarl.train.algorithms and jmarl.train.load import the algorithms, which import this module.
    from jmarl.train.algorithms import ResolvedConfig
    from jmarl.train.load import load
    from jmarl.core.registry import make

    resolved = ResolvedConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    saved = make(resolved.env, **resolved.env_kwargs)
    saved_fixed = getattr(resolved.config, "fixed_teams", ())
    where = f"fixed_policy={run_dir}"
    if saved.name != env.name:
        raise ConfigError(f"{where}: the run was trained on {saved.name}, not {env.name}")
    if team not in saved.teams or team in saved_fixed:
        learnt = [t for t in saved.teams if t not in saved_fixed]
        raise ConfigError(f"{where}: team {team!r} did not learn in that run; its learning teams are {learnt}")
    mine, theirs = env.teams[team], saved.teams[team]
    for field in ("num_agents", "obs_shape", "action_space"):
        if getattr(mine, field) != getattr(theirs, field):
            raise ConfigError(f"{where}: team {team!r} has {field} {getattr(theirs, field)} in that run but "
                              f"{getattr(mine, field)} here (that run's env kwargs: {resolved.env_kwargs})")
    policy = load(run_dir)

    def act(key, env_state, ts: TimeStep, hidden, starts):
        # The loaded policy is batched over envs: act on a batch of one (its hidden state keeps that axis).
        batch = jax.tree.map(lambda x: x[None], ts)
        hidden, actions = policy.act(key, batch, hidden, starts[None])
        return hidden, actions[team][0]

    return Opponent(lambda: policy.init_hidden(1), act)


# ----------------------------------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------------------------------
@struct.dataclass
class FixedTeamsState:
    env_state: Any  # the base env's state
    timestep: TimeStep  # the base env's latest TimeStep (every team; no info): what the fixed teams act on
    hidden: dict  # {fixed team: its policy's recurrent state}
    starts: jax.Array  # bool[]: ``timestep`` begins an episode


class FixedTeams(Wrapper):
    """``env`` with ``opponents`` ({team: Opponent}) playing their teams; see the module doc."""

    def __init__(self, env: Environment, opponents: dict[str, Opponent]):
        super().__init__(env)
        self.opponents = opponents

    @property
    def teams(self):
        return {t: team for t, team in self.env.teams.items() if t not in self.opponents}

    def _reset(self, key):
        ts, env_state = self.env.reset(key)
        hidden = {t: opp.init_hidden() for t, opp in self.opponents.items()}
        zeros = {t: jnp.zeros((team.num_agents,) + team.action_space.shape, team.action_space.dtype)
                 for t, team in self.env.teams.items() if t in self.opponents}
        return self._learners(ts, zeros), FixedTeamsState(env_state, ts.replace(info={}), hidden, jnp.ones((), bool))

    def _step(self, key, state: FixedTeamsState, actions):
        k_env, *keys = jax.random.split(key, len(self.opponents) + 1)
        hidden, fixed = {}, {}
        for (team, opp), k in zip(self.opponents.items(), keys):
            hidden[team], action = opp.act(k, state.env_state, state.timestep, state.hidden[team], state.starts)
            fixed[team] = action.astype(self.env.teams[team].action_space.dtype)  # as after a reset
        ts, env_state = self.env.step(k_env, state.env_state, {**actions, **fixed})
        return self._learners(ts, fixed), FixedTeamsState(env_state, ts.replace(info={}), hidden, jnp.zeros((), bool))

    def _learners(self, ts: TimeStep, fixed: dict) -> TimeStep:
        """What the learners see: their own obs and available actions; every team's reward (so the fixed
        team's episode return is still reported)."""
        pick = lambda x: {t: v for t, v in x.items() if t not in self.opponents}  # noqa: E731
        return ts.replace(obs=pick(ts.obs), avail_actions=pick(ts.avail_actions),
                          info=dict(ts.info, fixed_actions=fixed))


def with_fixed_teams(env: Environment, teams: Sequence[str], spec: str = "random") -> Environment:
    """``env`` with ``teams`` played by the policy ``spec`` names (``env`` itself when there are none).
    Raises ConfigError, before anything compiles, for unknown teams, every team fixed, or a bad spec."""
    unknown = set(teams) - set(env.teams)
    if unknown:
        raise ConfigError(f"fixed_teams {sorted(unknown)} are not teams of {env.name}: {list(env.teams)}")
    if set(teams) == set(env.teams):
        raise ConfigError(f"every team of {env.name} is fixed; at least one must learn")
    if not teams:
        if spec != "random":
            raise ConfigError(f"fixed_policy={spec!r} needs fixed_teams (the teams it plays), e.g. "
                              f"fixed_teams={list(env.teams)[-1]}")
        return env
    return FixedTeams(env, {t: make_opponent(env, t, spec) for t in env.teams if t in teams})
