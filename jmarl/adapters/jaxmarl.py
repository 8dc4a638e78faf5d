"""Adapters both ways between jmarl's team API and JaxMARL's dict API.

- ``from_jaxmarl(env)`` runs any JaxMARL ``MultiAgentEnv`` as a jmarl ``Environment``: agents with the
  same observation and action spaces become one team, their per-agent dict entries stacked on a leading
  agent axis.
- ``to_jaxmarl(env)`` runs a jmarl ``Environment`` as a JaxMARL ``MultiAgentEnv`` (agent ``i`` of team
  ``t`` is named ``f"{t}_{i}"``), auto-resetting in ``step`` as JaxMARL does.

``from_jaxmarl(to_jaxmarl(env))`` behaves like ``env``: same teams, observations, rewards, flags,
global state and available actions for the same keys and actions.

Shape legend: N = agents in a team, O = observation shape, A = number of discrete actions, G = global
state size.
"""
from __future__ import annotations

import os
import re
from functools import partial
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxmarl.environments import spaces as jm_spaces
from jaxmarl.environments.multi_agent_env import MultiAgentEnv
from jaxmarl.environments.multi_agent_env import State as JaxMARLState

from jmarl.core.env import Actions, Environment, Team, TimeStep
from jmarl.core.spaces import Box, Discrete, Space

__all__ = ["FromJaxMARL", "ToJaxMARL", "from_jaxmarl", "to_jaxmarl"]

# Keys of a JaxMARL ``infos`` dict that say how an episode ended (``ToJaxMARL`` writes them, one flag per
# agent; ``FromJaxMARL`` reads them in place of its time-limit heuristic).
TERMINATED, TRUNCATED = "terminated", "truncated"


# --------------------------------------------------------------------------------------------------
# Spaces
# --------------------------------------------------------------------------------------------------

def action_space_from_jaxmarl(space: jm_spaces.Space) -> Space:
    """A jmarl action space for a JaxMARL one (Discrete, or Box with its bounds widened to scalars)."""
    if isinstance(space, jm_spaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, jm_spaces.Box):
        low, high = float(np.min(np.asarray(space.low))), float(np.max(np.asarray(space.high)))
        return Box(low, high, tuple(int(d) for d in space.shape))
    raise NotImplementedError(f"JaxMARL action space {type(space).__name__} has no jmarl equivalent "
                              f"(jmarl has Discrete and Box)")


def action_space_to_jaxmarl(space: Space) -> jm_spaces.Space:
    """The JaxMARL action space for a jmarl one."""
    if isinstance(space, Discrete):
        return jm_spaces.Discrete(space.n)
    return jm_spaces.Box(space.low, space.high, tuple(space.shape))


def _obs_space_key(space: jm_spaces.Space) -> tuple:
    """A hashable summary of a JaxMARL observation space (JaxMARL spaces define no equality)."""
    if isinstance(space, jm_spaces.Box):
        return ("Box", tuple(space.shape), float(np.min(np.asarray(space.low))),
                float(np.max(np.asarray(space.high))))
    if isinstance(space, jm_spaces.Discrete):
        return ("Discrete", space.n)
    if isinstance(space, jm_spaces.MultiDiscrete):
        return ("MultiDiscrete", tuple(np.asarray(space.num_categories).tolist()))
    return (type(space).__name__, tuple(getattr(space, "shape", ())))


# --------------------------------------------------------------------------------------------------
# Teams
# --------------------------------------------------------------------------------------------------

def _prefix_name(agents: Sequence[str]) -> str:
    """The common prefix of ``agents`` without a trailing separator and index ("" when there is none).

    ["adversary_0", "adversary_1"] -> "adversary"; ["agent_0"] -> "agent"; ["adversary_0", "agent_0"]
    -> "" (the shared "a" is not a whole word).
    """
    name = re.fullmatch(r"(.*?)[\W_]*\d*", os.path.commonprefix(list(agents))).group(1)
    whole_word = all(not a[len(name):] or not a[len(name)].isalpha() for a in agents)
    return name if name and whole_word else ""


def group_agents(env: MultiAgentEnv, obs_shapes: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """{team: agents}: agents with the same observation (space, shape, dtype) and action space, teams
    in order of their first agent, each named by its agents' common prefix or else ``team_{k}``."""
    groups: dict[tuple, list[str]] = {}
    for agent in env.agents:
        obs = obs_shapes[agent]
        key = (_obs_space_key(env.observation_space(agent)), tuple(obs.shape), jnp.dtype(obs.dtype),
               action_space_from_jaxmarl(env.action_space(agent)))
        groups.setdefault(key, []).append(agent)
    teams: dict[str, tuple[str, ...]] = {}
    for k, agents in enumerate(groups.values()):
        name = _prefix_name(agents)
        teams[name if name and name not in teams else f"team_{k}"] = tuple(agents)
    return teams


# --------------------------------------------------------------------------------------------------
# JaxMARL -> jmarl
# --------------------------------------------------------------------------------------------------

def _find_step_counter(state: Any) -> tuple[str, ...] | None:
    """Attribute path to the episode step counter: ``state.step``, or that of a wrapped state
    (``state.state`` as in HeuristicEnemySMAX, ``state.env_state`` as in JaxMARL's wrappers)."""
    for path in (("step",), ("state", "step"), ("env_state", "step"), ("state", "state", "step")):
        obj = state
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and jnp.shape(obj) == ():
            return path
    return None


def _get_path(obj: Any, path: Sequence[str]) -> Any:
    for attr in path:
        obj = getattr(obj, attr)
    return obj


class FromJaxMARL(Environment):
    """A JaxMARL ``MultiAgentEnv`` under jmarl's API (build with ``from_jaxmarl``).

    ``step`` calls JaxMARL's raw ``step_env`` (no auto-reset; wrap in ``jmarl.core.wrappers.AutoReset``,
    which splits the key as JaxMARL's ``step`` does, so ``AutoReset(from_jaxmarl(e)).step`` and
    ``e.step`` give the same episodes, up to float rounding where XLA fuses the two differently).

    Terminated vs truncated: if the env's ``infos`` carry "terminated" and "truncated" they are used.
    Otherwise, a step with ``dones["__all__"]`` is *truncated* when the episode's step counter (after the
    step) has reached the env's ``max_steps``, and *terminated* if not. The heuristic labels an episode
    that ends naturally on its last allowed step (or one before, in MPE and SMAX) as truncated; an env
    without ``max_steps`` or a step counter is never truncated.

    ``max_steps`` (jmarl's bound on transitions per episode) defaults to the env's ``max_steps + 1``:
    JaxMARL's MPE and SMAX compute ``done`` from the count before incrementing it, so their episodes
    have ``max_steps + 1`` transitions, while others (switch_riddle) have ``max_steps``.

    Observations are cast to f32; ``global_state`` is ``obs["world_state"]`` where the env provides it
    (SMAX), else every agent's flattened observation concatenated in ``env.agents`` order;
    ``avail_actions`` come from ``env.get_avail_actions`` where it is implemented, else all True.
    ``TimeStep.info`` holds the env's ``infos`` (zeros after reset).
    """

    def __init__(self, env: MultiAgentEnv, teams: Mapping[str, Sequence[str]] | None = None,
                 max_steps: int | None = None):
        self.env = env
        self.name = env.name
        obs, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        self.agent_teams = {t: tuple(a) for t, a in teams.items()} if teams else group_agents(env, obs)
        self._teams = {t: self._make_team(agents, obs) for t, agents in self.agent_teams.items()}
        self._has_world_state = "world_state" in obs
        self._global_state_shape = (tuple(obs["world_state"].shape) if self._has_world_state else
                                    (sum(int(np.prod(obs[a].shape)) for a in env.agents),))
        self._has_avail = self._probe_avail_actions(state)
        self._step_path = _find_step_counter(state)
        self._time_limit = getattr(env, "max_steps", None)
        if max_steps is None and self._time_limit is None:
            raise ValueError(f"JaxMARL env {env.name} has no max_steps attribute: pass "
                             f"from_jaxmarl(env, max_steps=...), the most transitions an episode can have")
        self._max_steps = int(max_steps if max_steps is not None else self._time_limit + 1)
        self._info_shapes = self._probe_infos(state)

    # -- static description ------------------------------------------------------------------------

    def _make_team(self, agents: Sequence[str], obs: Mapping[str, Any]) -> Team:
        for agent in agents:
            if agent not in self.env.agents:
                raise ValueError(f"{self.env.name}: unknown agent {agent!r}; agents are {self.env.agents}")
        return Team(len(agents), tuple(obs[agents[0]].shape), action_space_from_jaxmarl(
            self.env.action_space(agents[0])))

    def _probe_avail_actions(self, state: Any) -> bool:
        try:
            jax.eval_shape(self.env.get_avail_actions, state)
        except NotImplementedError:
            return False
        return True

    def _probe_infos(self, state: Any) -> Any:
        """Shapes of ``step_env``'s infos (less the end flags), for a reset TimeStep of the same structure."""
        actions = {a: jax.ShapeDtypeStruct(self.env.action_space(a).shape, self.env.action_space(a).dtype)
                   for a in self.env.agents}
        infos = jax.eval_shape(self.env.step_env, jax.random.PRNGKey(0), state, actions)[4]
        return self._strip_flags(infos)

    @property
    def teams(self) -> Mapping[str, Team]:
        return self._teams

    @property
    def global_state_shape(self) -> tuple[int, ...]:
        return self._global_state_shape

    @property
    def max_steps(self) -> int:
        return self._max_steps

    # -- dicts <-> team arrays ---------------------------------------------------------------------

    def _stack(self, per_agent: Mapping[str, jax.Array], dtype) -> dict[str, jax.Array]:
        """{agent: x[...]} -> {team: x[N, ...]} cast to ``dtype``."""
        return {t: jnp.stack([jnp.asarray(per_agent[a], dtype) for a in agents])
                for t, agents in self.agent_teams.items()}

    def _unstack(self, actions: Actions) -> dict[str, jax.Array]:
        """{team: a[N, ...]} -> {agent: a[...]}."""
        return {a: actions[t][i] for t, agents in self.agent_teams.items() for i, a in enumerate(agents)}

    def _global_state(self, obs: Mapping[str, jax.Array]) -> jax.Array:
        """f32[G]: the env's world state, or all agents' flattened observations."""
        if self._has_world_state:
            return jnp.asarray(obs["world_state"], jnp.float32)
        return jnp.concatenate([jnp.ravel(obs[a]).astype(jnp.float32) for a in self.env.agents])

    def _avail_actions(self, state: Any) -> dict[str, jax.Array]:
        """{team: bool[N, A]} ([N, 1] for a Box team)."""
        avail = self.env.get_avail_actions(state) if self._has_avail else None
        out = {}
        for t, team in self._teams.items():
            if avail is not None and isinstance(team.action_space, Discrete):
                out[t] = jnp.stack([jnp.asarray(avail[a], bool) for a in self.agent_teams[t]])
            else:
                width = team.num_actions if isinstance(team.action_space, Discrete) else 1
                out[t] = jnp.ones((team.num_agents, width), bool)
        return out

    @staticmethod
    def _strip_flags(infos: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in infos.items() if k not in (TERMINATED, TRUNCATED)}

    def _end_flags(self, state: Any, dones: Mapping[str, jax.Array], infos: Mapping[str, Any]):
        """(terminated, truncated), bool[] each; see the class docstring."""
        if TERMINATED in infos and TRUNCATED in infos:
            return jnp.any(infos[TERMINATED]), jnp.any(infos[TRUNCATED])
        done = jnp.asarray(dones["__all__"], bool)
        if self._time_limit is None or self._step_path is None:
            return done, jnp.zeros((), bool)
        truncated = done & (_get_path(state, self._step_path) >= self._time_limit)
        return done & ~truncated, truncated

    def _timestep(self, obs, state, rewards, terminated, truncated, info) -> TimeStep:
        return TimeStep(obs=self._stack(obs, jnp.float32), reward=self._stack(rewards, jnp.float32),
                        terminated=terminated, truncated=truncated, global_state=self._global_state(obs),
                        avail_actions=self._avail_actions(state), info=info)

    # -- reset / step ------------------------------------------------------------------------------

    def _reset(self, key: jax.Array) -> tuple[TimeStep, Any]:
        obs, state = self.env.reset(key)
        rewards = {a: 0.0 for a in self.env.agents}
        info = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._info_shapes)
        false = jnp.zeros((), bool)
        return self._timestep(obs, state, rewards, false, false, info), state

    def _step(self, key: jax.Array, state: Any, actions: Actions) -> tuple[TimeStep, Any]:
        obs, state, rewards, dones, infos = self.env.step_env(key, state, self._unstack(actions))
        terminated, truncated = self._end_flags(state, dones, infos)
        return self._timestep(obs, state, rewards, terminated, truncated, self._strip_flags(infos)), state


def from_jaxmarl(env: MultiAgentEnv, teams: Mapping[str, Sequence[str]] | None = None,
                 max_steps: int | None = None) -> FromJaxMARL:
    """Run JaxMARL environment ``env`` under jmarl's API (see ``FromJaxMARL``).

    teams:     {team: [agent, ...]} to override the grouping by spaces (agents of a team must share
               observation shape and action space).
    max_steps: the most transitions in an episode; needed where ``env`` has no ``max_steps``.
    """
    if isinstance(env, ToJaxMARL):  # a jmarl env seen through JaxMARL: recover its teams and limit
        teams = teams or env.agent_classes
        max_steps = max_steps if max_steps is not None else env.max_steps
    return FromJaxMARL(env, teams=teams, max_steps=max_steps)


# --------------------------------------------------------------------------------------------------
# jmarl -> JaxMARL
# --------------------------------------------------------------------------------------------------

@struct.dataclass
class ToJaxMARLState(JaxMARLState):
    """JaxMARL state (``done``, ``step``) holding the jmarl env state and what its last TimeStep showed."""

    env_state: Any
    obs: dict[str, jax.Array]  # {team: f32[N, *O]}
    global_state: jax.Array  # f32[G]
    avail_actions: dict[str, jax.Array]  # {team: bool[N, A]}


class ToJaxMARL(MultiAgentEnv):
    """A jmarl ``Environment`` under JaxMARL's dict API (build with ``to_jaxmarl``).

    Agents are named ``f"{team}_{i}"``. ``step`` auto-resets when ``dones["__all__"]`` (JaxMARL's base
    class ``step``); ``step_env`` does not. Every agent's ``dones`` entry is the episode's done flag.
    ``infos`` holds the env's ``TimeStep.info`` plus "terminated" and "truncated" as bool[num_agents]
    (one flag per agent, the shape JaxMARL's baselines reshape infos to). With ``world_state=True`` the
    observation dict also has "world_state", the env's global state (as JaxMARL's SMAX does).
    Observation spaces are unbounded Boxes.
    """

    def __init__(self, env: Environment, world_state: bool = True):
        super().__init__(env.num_agents)
        self.env = env
        self.world_state = world_state
        self.team_agents = {t: [f"{t}_{i}" for i in range(team.num_agents)] for t, team in env.teams.items()}
        self.agents = [a for agents in self.team_agents.values() for a in agents]
        self._index = {a: (t, i) for t, agents in self.team_agents.items() for i, a in enumerate(agents)}
        self.observation_spaces = {a: jm_spaces.Box(-jnp.inf, jnp.inf, env.teams[t].obs_shape)
                                   for a, (t, _) in self._index.items()}
        self.action_spaces = {a: action_space_to_jaxmarl(env.teams[t].action_space)
                              for a, (t, _) in self._index.items()}
        self.max_steps = env.max_steps

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def agent_classes(self) -> dict[str, list[str]]:
        """{team: [agent names]}."""
        return {t: list(agents) for t, agents in self.team_agents.items()}

    def _split(self, per_team: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """{team: x[N, ...]} -> {agent: x[...]}."""
        return {a: per_team[t][i] for a, (t, i) in self._index.items()}

    def _state(self, ts: TimeStep, env_state: Any, step: jax.Array) -> ToJaxMARLState:
        return ToJaxMARLState(done=ts.done, step=step, env_state=env_state, obs=ts.obs,
                              global_state=ts.global_state, avail_actions=ts.avail_actions)

    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key: jax.Array) -> tuple[dict[str, jax.Array], ToJaxMARLState]:
        ts, env_state = self.env.reset(key)
        state = self._state(ts, env_state, jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: ToJaxMARLState, actions: Mapping[str, jax.Array]):
        """One transition without reset: (obs, state, rewards, dones, infos), all keyed by agent."""
        team_actions = {t: jnp.stack([jnp.asarray(actions[a]) for a in agents])
                        for t, agents in self.team_agents.items()}
        ts, env_state = self.env.step(key, state.env_state, team_actions)
        state = self._state(ts, env_state, state.step + 1)
        dones = {a: ts.done for a in self.agents}
        dones["__all__"] = ts.done
        flags = {TERMINATED: jnp.full((self.num_agents,), ts.terminated),
                 TRUNCATED: jnp.full((self.num_agents,), ts.truncated)}
        return self.get_obs(state), state, self._split(ts.reward), dones, dict(ts.info, **flags)

    def get_obs(self, state: ToJaxMARLState) -> dict[str, jax.Array]:
        obs = self._split(state.obs)
        if self.world_state:
            obs["world_state"] = state.global_state
        return obs

    def get_avail_actions(self, state: ToJaxMARLState) -> dict[str, jax.Array]:
        """{agent: bool[A]}."""
        return self._split(state.avail_actions)


def to_jaxmarl(env: Environment, world_state: bool = True) -> ToJaxMARL:
    """Run jmarl environment ``env`` under JaxMARL's dict API (see ``ToJaxMARL``)."""
    return ToJaxMARL(env, world_state=world_state)
