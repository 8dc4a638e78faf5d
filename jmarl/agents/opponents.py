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

In Python, ``spec`` may also be an ``Opponent`` (one fixed team) or a dict {team: spec or Opponent}, so a
policy of your own plugs in without editing jmarl: an ``Opponent`` is ``init_hidden() -> hidden`` and
``act(key, env_state, timestep, hidden, starts) -> (hidden, actions [N, ...])``, unbatched (the wrapper is
vmapped with the env); ``policy_opponent(team, policy)`` makes one from ``policy(key, obs, avail)`` on the
team's own observations. Its closure may hold traced values (self-play: build the wrapper inside your
jitted function around the opponent's current parameters), and SMAX's enemies are played the same way:
``with_fixed_teams(jmarl.make("smax", enemy="learning"), ["enemies"], "random")``.

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

from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
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
# Named opponents users add (``register_opponent``): name -> factory(env, team) -> Opponent.
_REGISTERED: dict[str, Callable[[Environment, str], Opponent]] = {}
# The greedy policy of a saved run: (env, team, run_dir) -> Opponent. Loading a run is the training layer's
# business (jmarl.train.load sets this), so this module never imports upward.
_run_opponent: Callable[[Environment, str, str], Opponent] | None = None


def register_opponent(name: str, factory: Callable[[Environment, str], Opponent], overwrite: bool = False) -> None:
    """Make ``fixed_policy=name`` play ``factory(env, team)``, an ``Opponent`` (e.g. a scripted policy of your
    own); no jmarl table is edited."""
    if (name in FIXED_POLICIES or name in _REGISTERED) and not overwrite:
        raise ValueError(f"opponent {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTERED[name] = factory


def set_run_opponent(factory: Callable[[Environment, str, str], Opponent]) -> None:
    """Install the factory of saved-run opponents (``factory(env, team, run_dir)``); ``jmarl.train.load`` sets it,
    so that this module needs no import of the run machinery."""
    global _run_opponent
    _run_opponent = factory


def make_opponent(env: Environment, team: str, spec: str) -> Opponent:
    """The policy ``spec`` names for ``team`` of ``env``; raises ConfigError (before anything compiles)
    for an unknown spec, an env without a heuristic, or a checkpoint that does not fit."""
    if spec == "random":
        return random_opponent(env, team)
    if spec == "heuristic":
        return heuristic_opponent(env, team)
    if spec in _REGISTERED:
        return _REGISTERED[spec](env, team)
    if (Path(spec) / "config.json").is_file():
        if _run_opponent is None:  # set when jmarl.train loads (every algorithm imports its contract)
            raise ConfigError(f"fixed_policy={spec!r}: loading saved runs needs jmarl.train (import jmarl.train)")
        return _run_opponent(env, team, spec)
    raise ConfigError(f"policy {spec!r} for team {team!r} is not valid (fixed_policy and eval_opponents take the "
                      f"same names): use one of {[*FIXED_POLICIES, *_REGISTERED]} or the directory of a saved run "
                      f"(one with a config.json)")


def random_opponent(env: Environment, team: str) -> Opponent:
    """``team`` acting uniformly at random over its available actions (no parameters, no hidden state)."""
    space, n = env.teams[team].action_space, env.teams[team].num_agents

    def act(key, env_state, ts: TimeStep, hidden, starts):  # uniform over the available actions: i32[N]
        return hidden, space.sample(key, (n,), ts.avail_actions[team])

    return Opponent(lambda: (), act)


def heuristic_opponent(env: Environment, team: str) -> Opponent:
    """``team`` played by the env's scripted policy (``heuristic_actions``); ConfigError for an env without one."""
    # Looked up on the class: a wrapper forwards attributes to its inner env, whose heuristic would be
    # handed the wrapper's state.
    if not callable(getattr(type(env), "heuristic_actions", None)):
        raise ConfigError(f"fixed_policy='heuristic': {env.name} ({type(env).__name__}) has no scripted policy "
                          f"(heuristic_actions); use one of {[p for p in FIXED_POLICIES if p != 'heuristic']} or "
                          f"a run directory")

    def act(key, env_state, ts: TimeStep, hidden, starts):
        return hidden, env.heuristic_actions(key, env_state, team)

    return Opponent(lambda: (), act)


def policy_opponent(team: str, policy: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]) -> Opponent:
    """A stateless opponent acting on ``team``'s own observations: ``policy(key, obs f32[N, *O],
    avail bool[N, A]) -> actions [N, ...]`` (e.g. a network's greedy actions under parameters it closes over)."""

    def act(key, env_state, ts: TimeStep, hidden, starts):
        return hidden, policy(key, ts.obs[team], ts.avail_actions[team])

    return Opponent(lambda: (), act)


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


OpponentSpec = Union[str, Opponent]  # a policy name, a run directory, or an Opponent


def with_fixed_teams(env: Environment, teams: Sequence[str],
                     spec: OpponentSpec | Mapping[str, OpponentSpec] = "random") -> Environment:
    """``env`` with ``teams`` played by ``spec`` (``env`` itself when there are none): a name or run
    directory for every team, an ``Opponent`` for the one fixed team, or a dict {team: name or Opponent}
    with exactly ``teams`` as keys. Raises ConfigError, before anything compiles, for unknown teams, every
    team fixed, or a bad spec."""
    if isinstance(env, FixedTeams) and set(teams) == set(env.opponents):
        return env  # already played (jmarl.load builds the env once and hands it to make_train)
    unknown = set(teams) - set(env.teams)
    if unknown:
        raise ConfigError(f"fixed_teams {sorted(unknown)} are not teams of {env.name}: {list(env.teams)}")
    if set(teams) == set(env.teams):
        raise ConfigError(f"every team of {env.name} is fixed; at least one must learn")
    if not teams:
        if not (isinstance(spec, str) and spec == "random"):
            what = f"fixed_policy={spec!r}" if isinstance(spec, str) else f"an opponent ({type(spec).__name__})"
            raise ConfigError(f"{what} needs fixed_teams (the teams it plays), e.g. fixed_teams={list(env.teams)[-1]}")
        return env
    specs = _team_specs(env, teams, spec)
    return FixedTeams(env, {t: s if isinstance(s, Opponent) else make_opponent(env, t, s)
                            for t, s in specs.items()})


def _team_specs(env: Environment, teams: Sequence[str], spec) -> dict[str, OpponentSpec]:
    """{fixed team: its spec}, in the env's team order; ConfigError for a spec of the wrong kind."""
    ordered = [t for t in env.teams if t in teams]
    if isinstance(spec, Mapping):
        if set(spec) != set(teams):
            raise ConfigError(f"the opponents dict has teams {sorted(spec)}, but the fixed teams are {sorted(teams)}")
        specs = {t: spec[t] for t in ordered}
    elif isinstance(spec, Opponent) and len(ordered) > 1:
        # An Opponent's actions are one team's: several teams need one each.
        raise ConfigError(f"one Opponent plays one team; for the fixed teams {ordered} pass a dict {{team: Opponent}}")
    else:
        specs = {t: spec for t in ordered}
    for t, s in specs.items():
        if not (isinstance(s, str) or (isinstance(s, Opponent) and callable(s.init_hidden) and callable(s.act))):
            raise ConfigError(f"the opponent of team {t!r} must be a policy name ({list(FIXED_POLICIES)}), a run "
                              f"directory or a jmarl.agents.opponents.Opponent, got {type(s).__name__}")
    return specs
