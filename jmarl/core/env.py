"""The environment API: teams of agents as array axes.

Agents of one team share observation and action spaces, so a team's data is one array with the agent
axis first. Shape legend: N = agents in the team, O = observation shape, A = number of discrete actions,
G = global state size.
"""
from __future__ import annotations

import abc
import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any, Generic, Iterator, Mapping, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.spaces import Box, Discrete, Space

State = TypeVar("State")
Actions = Mapping[str, jax.Array]


@dataclass(frozen=True)
class Team:
    """A group of agents that share observation and action spaces."""

    num_agents: int
    obs_shape: tuple[int, ...]
    action_space: Space

    @property
    def num_actions(self) -> int:
        """A for a Discrete action space (what a policy head outputs); the action size for a Box."""
        space = self.action_space
        return space.n if isinstance(space, Discrete) else int(np.prod(space.shape))


@struct.dataclass
class TimeStep:
    """What the environment returns after ``reset`` and ``step``.

    obs:           {team: f32[N, *O]}
    reward:        {team: f32[N]}  (zero after reset)
    terminated:    bool[]  the episode ended inside the MDP: do not bootstrap
    truncated:     bool[]  the episode was cut by a time limit: bootstrap from the final observation
    global_state:  f32[G]  what a centralised critic or mixer sees
    avail_actions: {team: bool[N, A]}  (all True where actions are never masked; [N, 1] for Box)
    info:          extras from wrappers, e.g. ``final_obs`` (AutoReset) and ``episode_return`` (EpisodeStats)
    """

    obs: dict[str, jax.Array]
    reward: dict[str, jax.Array]
    terminated: jax.Array
    truncated: jax.Array
    global_state: jax.Array
    avail_actions: dict[str, jax.Array]
    info: dict[str, Any] = struct.field(default_factory=dict)

    @property
    def done(self) -> jax.Array:
        """bool[]: the episode ended, by termination or truncation."""
        return self.terminated | self.truncated


class Environment(abc.ABC, Generic[State]):
    """A pure, jittable, vmappable multi-agent environment.

    Subclasses define ``teams``, ``global_state_shape``, ``max_steps``, ``_reset`` and ``_step``.
    ``step`` does not reset a finished episode; wrap in ``jmarl.core.wrappers.AutoReset`` for that.
    """

    name: str = "environment"

    @property
    @abc.abstractmethod
    def teams(self) -> Mapping[str, Team]:
        """Team name -> Team, in a fixed order."""

    @property
    @abc.abstractmethod
    def global_state_shape(self) -> tuple[int, ...]:
        """Shape of ``TimeStep.global_state``."""

    @property
    @abc.abstractmethod
    def max_steps(self) -> int:
        """Episodes are truncated after this many transitions."""

    @property
    def num_agents(self) -> int:
        return sum(team.num_agents for team in self.teams.values())

    def reset(self, key: jax.Array) -> tuple[TimeStep, State]:
        """Start an episode. Returns the first TimeStep (zero reward, not done) and the state."""
        return self._reset(key)

    def step(self, key: jax.Array, state: State, actions: Actions) -> tuple[TimeStep, State]:
        """Advance one transition; ``actions`` is {team: i32[N] (Discrete) or f32[N, *shape] (Box)}.

        Actions are checked while tracing: a wrong team, shape or dtype raises before compilation. Their
        values are checked only with action checks on (``action_checks``, ``JMARL_CHECKS=1``): a discrete
        action outside [0, n) or a non-finite Box action then raises ``ActionError``.
        """
        check_actions(self.teams, actions, self.name)
        if _ACTION_CHECKS and self._checks_action_values:
            check_action_values(self.teams, actions, self.name)
        return self._step(key, state, actions)

    #: Whether ``step`` checks action values in checks mode; wrappers leave it to the env they wrap, which
    #: sees the same actions (and those of fixed teams), so each step is checked once.
    _checks_action_values = True

    def sample_actions(self, key: jax.Array, avail_actions: Mapping[str, jax.Array] | None = None) -> dict[str, jax.Array]:
        """Uniformly random actions for every team ({team: i32[N] or f32[N, *shape]}); given ``avail_actions``
        ({team: bool[N, A]}), uniform over each agent's available ones (``Space.sample``)."""
        keys = jax.random.split(key, len(self.teams))
        return {name: team.action_space.sample(k, (team.num_agents,),
                                               None if avail_actions is None else avail_actions[name])
                for k, (name, team) in zip(keys, self.teams.items())}

    @abc.abstractmethod
    def _reset(self, key: jax.Array) -> tuple[TimeStep, State]: ...

    @abc.abstractmethod
    def _step(self, key: jax.Array, state: State, actions: Actions) -> tuple[TimeStep, State]: ...

    def __repr__(self) -> str:
        teams = ", ".join(f"{n}: {t.num_agents}x{t.obs_shape} -> {t.action_space}" for n, t in self.teams.items())
        return f"{type(self).__name__}({self.name}; {teams})"


def check_actions(teams: Mapping[str, Team], actions: Actions, env_name: str = "environment") -> None:
    """Raise ValueError naming the team, what was given and what is valid, for a malformed action dict."""
    if not isinstance(actions, Mapping):
        raise ValueError(f"{env_name}: actions must be a dict {{team: array}} for teams {list(teams)}, "
                         f"got {type(actions).__name__}")
    if set(actions) != set(teams):
        raise ValueError(f"{env_name}: actions are given for teams {sorted(actions)}, "
                         f"but the teams are {list(teams)}")
    for name, team in teams.items():
        act = actions[name]
        shape, dtype = tuple(jnp.shape(act)), jnp.result_type(act)
        space = team.action_space
        want = (team.num_agents,) + tuple(space.shape)
        if shape != want:
            raise ValueError(f"{env_name}: team {name!r} actions have shape {shape}, expected {want} "
                             f"({team.num_agents} agents, action space {space})")
        if isinstance(space, Discrete) and not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"{env_name}: team {name!r} actions have dtype {dtype}, expected integers "
                             f"in [0, {space.n}) for {space}")
        if isinstance(space, Box) and not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{env_name}: team {name!r} actions have dtype {dtype}, expected floats "
                             f"in [{space.low}, {space.high}] for {space}")


# ----------------------------------------------------------------------------------------------------
# Actions outside the space (docs/env_api.md, "Actions outside the space")
# ----------------------------------------------------------------------------------------------------
# The rule: a discrete action is an integer in [0, n); a Box action is finite (finite values outside
# [low, high] are the env's to clip, as PettingZoo's ClipOutOfBoundsWrapper does). By default values are not
# checked (a check costs a host callback per step); with checks on, ``Environment.step`` raises on the host
# for any value that breaks the rule. Set while tracing: turn checks on before a program is compiled.
_ACTION_CHECKS = os.environ.get("JMARL_CHECKS", "").lower() not in ("", "0", "false", "no")


class ActionError(ValueError):
    """An action value outside its space, found in checks mode; the message names env, team, agent and value."""


def set_action_checks(on: bool) -> bool:
    """Turn action-value checks on or off for programs traced from now on; returns the previous setting."""
    global _ACTION_CHECKS
    previous, _ACTION_CHECKS = _ACTION_CHECKS, bool(on)
    return previous


def action_checks_enabled() -> bool:
    """Whether ``Environment.step`` checks action values (``JMARL_CHECKS=1`` or ``set_action_checks``)."""
    return _ACTION_CHECKS


@contextlib.contextmanager
def action_checks(on: bool = True) -> Iterator[None]:
    """``with action_checks(): jax.jit(rollout)(...)``: programs traced inside check every action's value."""
    previous = set_action_checks(on)
    try:
        yield
    finally:
        set_action_checks(previous)


def _raise_bad_actions(env_name: str, team: str, space: Space, bad: np.ndarray, actions: np.ndarray) -> None:
    """Host side of the check: ``bad`` bool[..., N], ``actions`` [..., N, ...] (leading axes: any vmap batch)."""
    bad = np.asarray(bad)
    if not bad.any():
        return
    actions = np.asarray(actions)
    where = np.argwhere(bad)
    # Leading indexes are the vmapped batch (env) axes, the last the agent.
    at = lambda i: (f"env {', '.join(map(str, i[:-1]))} " if len(i) > 1 else "") + f"agent {i[-1]}"  # noqa: E731
    shown = ", ".join(f"{at(i)}: {actions[tuple(i)].tolist()}" for i in where[:3])
    more = f" (and {len(where) - 3} more)" if len(where) > 3 else ""
    valid = (f"integers in [0, {space.n})" if isinstance(space, Discrete)
             else f"finite floats (clipped to [{space.low}, {space.high}])")
    raise ActionError(f"jmarl action check: {env_name}: team {team!r} got actions outside {space}: {shown}{more}; "
                      f"valid: {valid}")


def check_action_values(teams: Mapping[str, Team], actions: Actions, env_name: str = "environment") -> None:
    """In a traced step, raise ``ActionError`` (on the host, through a callback) for a discrete action outside
    [0, n) or a non-finite Box action; ``actions`` {team: i32[N] or f32[N, *shape]}."""
    for name, team in teams.items():
        act, space = jnp.asarray(actions[name]), team.action_space
        if isinstance(space, Discrete):
            bad = (act < 0) | (act >= space.n)  # bool[N]
        else:
            bad = ~jnp.isfinite(act).reshape(act.shape[:1] + (-1,)).all(-1)  # bool[N]
        jax.debug.callback(functools.partial(_raise_bad_actions, env_name, name, space), bad, act)
