"""Adapters both ways between jmarl's team API and PettingZoo's ``ParallelEnv`` (Gymnasium spaces, numpy).

- ``to_pettingzoo(env)``: a jmarl ``Environment`` as a PettingZoo ``ParallelEnv``. Agent ``i`` of team
  ``t`` is ``f"{t}_{i}"``; ``reset`` and ``step`` are jitted jmarl calls, with numpy in and out. Seeding as
  PettingZoo does: ``reset(seed=s)`` restarts the env's random stream from ``s`` (same seed, same episode),
  ``reset()`` continues it. Available actions are given as ``infos[agent]["action_mask"]`` (int8[A]) for
  Discrete agents, or, with ``mask_in_obs=True``, as PettingZoo's Dict observation
  ``{"observation", "action_mask"}``. When an episode ends every agent is terminated or truncated (jmarl's
  flags) and ``agents`` becomes empty; ``state()`` is the env's global state.
- ``from_pettingzoo(env_fn)``: a PettingZoo ``ParallelEnv`` as a jmarl ``Environment``, so jmarl's
  algorithms train on it. The Python env runs on the host through ``jax.experimental.io_callback``: every
  reset and step is one host call per environment copy (vmapped copies are stepped one after another), so
  it runs at the Python env's own speed plus ~0.1 ms per call — a few thousand steps per second for
  PettingZoo's MPE, where jmarl's own MPE runs millions (docs/interop.md has the measurement). Use it to
  try an algorithm on an env that exists only in PettingZoo, not for long runs.

Shape legend: N agents in a team, O observation shape, A discrete actions, G global state size.
"""
from __future__ import annotations

import collections
import functools
import math
from typing import Any, Callable, Mapping

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental import io_callback
from pettingzoo.utils.env import ParallelEnv

from jmarl.adapters.teams import group_agents
from jmarl.core.env import Actions, Environment, Team, TimeStep
from jmarl.core.spaces import Box, Discrete, Space

__all__ = ["ToPettingZoo", "to_pettingzoo", "FromPettingZoo", "from_pettingzoo"]


# --------------------------------------------------------------------------------------------------
# jmarl -> PettingZoo
# --------------------------------------------------------------------------------------------------

def _gym_action_space(space: Space) -> gymnasium.spaces.Space:
    if isinstance(space, Discrete):
        return gymnasium.spaces.Discrete(space.n)
    return gymnasium.spaces.Box(space.low, space.high, tuple(space.shape), np.float32)


class ToPettingZoo(ParallelEnv):
    """A jmarl ``Environment`` as a PettingZoo ``ParallelEnv`` (build with ``to_pettingzoo``; see the module
    doc). ``unwrapped`` is this object; ``jmarl_env`` is the jmarl env."""

    def __init__(self, env: Environment, mask_in_obs: bool = False, render_mode: str | None = None):
        self.jmarl_env = env
        self.mask_in_obs = mask_in_obs
        self.render_mode = render_mode
        self.metadata = {"name": env.name, "render_modes": [], "is_parallelizable": True}
        self._team_agents = {t: [f"{t}_{i}" for i in range(team.num_agents)] for t, team in env.teams.items()}
        self.possible_agents = [a for agents in self._team_agents.values() for a in agents]
        self._index = {a: (t, i) for t, agents in self._team_agents.items() for i, a in enumerate(agents)}
        self.agents: list[str] = []
        self.observation_spaces = {a: self._obs_space(env.teams[t]) for a, (t, _) in self._index.items()}
        self.action_spaces = {a: _gym_action_space(env.teams[t].action_space) for a, (t, _) in self._index.items()}
        self._reset_fn = jax.jit(env.reset)
        self._step_fn = jax.jit(env.step)
        self._key = jax.random.PRNGKey(0)
        self._state = None
        self._ts: TimeStep | None = None

    def _obs_space(self, team: Team) -> gymnasium.spaces.Space:
        obs = gymnasium.spaces.Box(-np.inf, np.inf, tuple(team.obs_shape), np.float32)
        if self.mask_in_obs and isinstance(team.action_space, Discrete):
            mask = gymnasium.spaces.Box(0, 1, (team.action_space.n,), np.int8)
            return gymnasium.spaces.Dict({"observation": obs, "action_mask": mask})
        return obs

    # Spaces are looked up, not rebuilt: PettingZoo's API test asks for the same object every time.
    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.action_spaces[agent]

    # -- numpy views of a TimeStep ------------------------------------------------------------------

    def _per_agent(self, ts: TimeStep) -> tuple[dict, dict]:
        """({agent: observation}, {agent: info}) in numpy, for the agents still in the episode."""
        ts = jax.device_get(ts)
        obs, infos = {}, {}
        for a, (t, i) in self._index.items():
            o = np.asarray(ts.obs[t][i], np.float32)
            info = {}
            if isinstance(self.jmarl_env.teams[t].action_space, Discrete):
                mask = np.asarray(ts.avail_actions[t][i], np.int8)
                if self.mask_in_obs:
                    o = {"observation": o, "action_mask": mask}
                else:
                    info["action_mask"] = mask
            obs[a], infos[a] = o, info
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode: with ``seed``, from that seed's random stream; else continuing the stream."""
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, key = jax.random.split(self._key)
        self._ts, self._state = self._reset_fn(key)
        self.agents = list(self.possible_agents)
        return self._per_agent(self._ts)

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One transition: ``actions`` {agent: int (Discrete) or float array (Box)} for every live agent."""
        if not self.agents:
            raise RuntimeError(f"{self.metadata['name']}: the episode is over (or reset was not called); "
                               f"call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"{self.metadata['name']}: no action for agents {missing}")
        team_actions = {}
        for t, agents in self._team_agents.items():
            space = self.jmarl_env.teams[t].action_space
            team_actions[t] = np.stack([np.asarray(actions[a], space.dtype).reshape(space.shape) for a in agents])
        self._key, key = jax.random.split(self._key)
        self._ts, self._state = self._step_fn(key, self._state, team_actions)
        ts = jax.device_get(self._ts)
        obs, infos = self._per_agent(self._ts)
        rewards = {a: float(ts.reward[t][i]) for a, (t, i) in self._index.items()}
        terminated, truncated = bool(ts.terminated), bool(ts.truncated)
        terminations = {a: terminated for a in self.agents}
        truncations = {a: truncated for a in self.agents}
        if terminated or truncated:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """f32[G]: the env's global state (what a centralised critic sees)."""
        if self._ts is None:
            raise RuntimeError("call reset() first")
        return np.asarray(self._ts.global_state, np.float32)

    def render(self) -> None:
        return None  # drawing is jmarl.tools.render's job (whole episodes); PettingZoo's render is per frame

    def close(self) -> None:
        pass


def to_pettingzoo(env: Environment, mask_in_obs: bool = False) -> ToPettingZoo:
    """Run jmarl environment ``env`` as a PettingZoo ``ParallelEnv`` (see ``ToPettingZoo``)."""
    return ToPettingZoo(env, mask_in_obs=mask_in_obs)


# --------------------------------------------------------------------------------------------------
# PettingZoo -> jmarl
# --------------------------------------------------------------------------------------------------

def _space_from_gym(space: gymnasium.spaces.Space) -> Space:
    if isinstance(space, gymnasium.spaces.Discrete):
        if int(space.start) != 0:
            raise NotImplementedError(f"Discrete action space starting at {space.start}: jmarl's start at 0")
        return Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        return Box(float(np.min(space.low)), float(np.max(space.high)), tuple(space.shape))
    raise NotImplementedError(f"PettingZoo action space {type(space).__name__}: jmarl acts in Discrete and Box")


@struct.dataclass
class PettingZooState:
    handle: jax.Array  # i32[]: which host env copy plays this episode
    step: jax.Array  # i32[]: transitions taken


class _Pool:
    """Host env copies, one per live episode, addressed by integer handles.

    A reset makes a new episode (on a free copy); a step moves one on. ``AutoReset`` computes a reset on
    every step and keeps it only where an episode ended, so most reset episodes are never stepped: such a
    handle is recycled once ``2 * max_envs`` newer resets have happened (by then the step that could have
    used it has run: a program resets and steps at most ``max_envs`` copies per step), and a finished
    episode's handle as soon as its last step returns. A step on a recycled handle raises, naming
    ``max_envs``.
    """

    def __init__(self, make_env: Callable[[], ParallelEnv], max_envs: int):
        self.make_env, self.max_envs = make_env, max_envs
        self.envs: dict[int, ParallelEnv] = {}
        self.free: list[ParallelEnv] = []
        self.unstepped: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.next_handle = 0

    def new(self) -> tuple[int, ParallelEnv]:
        while len(self.unstepped) > 2 * self.max_envs:
            old, _ = self.unstepped.popitem(last=False)
            self.free.append(self.envs.pop(old))
        env = self.free.pop() if self.free else self.make_env()
        handle, self.next_handle = self.next_handle, (self.next_handle + 1) % (2 ** 31 - 1)
        self.envs[handle] = env
        self.unstepped[handle] = None
        return handle, env

    def get(self, handle: int) -> ParallelEnv:
        if handle not in self.envs:
            raise RuntimeError(f"from_pettingzoo: episode handle {handle} was recycled or has ended; raise "
                               f"max_envs (now {self.max_envs}) to the number of environments stepped in parallel, "
                               f"and do not step an episode after it is done")
        self.unstepped.pop(handle, None)
        return self.envs[handle]

    def finish(self, handle: int) -> None:
        self.free.append(self.envs.pop(handle))


class FromPettingZoo(Environment):
    """A PettingZoo ``ParallelEnv`` under jmarl's API, through host callbacks (build with ``from_pettingzoo``;
    see the module doc for what it costs).

    Agents are grouped into teams by name prefix, observation shape and action space (as ``from_jaxmarl``
    does). Observations must be Boxes (cast to f32), or PettingZoo's Dict ``{"observation", "action_mask"}``;
    a mask in ``infos[agent]["action_mask"]`` is read too. An agent that has left the episode (PettingZoo
    removes terminated agents from ``agents``) observes zeros, gets reward 0 and its actions are not sent.
    The episode ends when no agent is left: truncated if the last ones were all truncated, else terminated.
    ``global_state`` is ``env.state()`` where the env implements it, else every agent's observation
    flattened and concatenated.
    """

    def __init__(self, env_fn: Callable[[], ParallelEnv], max_steps: int | None = None, max_envs: int = 256,
                 name: str | None = None):
        proto = env_fn()
        self._pool = _Pool(env_fn, max_envs)
        self._pool.free.append(proto)
        self.name = name or proto.metadata.get("name", type(proto).__name__)
        self.agent_names = list(proto.possible_agents)
        obs, infos = proto.reset(seed=0)
        self._obs_key = {}
        shapes = {}
        for a in self.agent_names:
            o = obs[a]
            if isinstance(o, Mapping):
                if "observation" not in o:
                    raise NotImplementedError(f"{self.name}: Dict observation without 'observation': {list(o)}")
                self._obs_key[a] = "observation"
                o = o["observation"]
            shapes[a] = tuple(np.shape(o))
        self._act_spaces = {a: _space_from_gym(proto.action_space(a)) for a in self.agent_names}
        self.agent_teams = group_agents(self.agent_names, lambda a: (shapes[a], self._act_spaces[a]))
        self._teams = {t: Team(len(agents), shapes[agents[0]], self._act_spaces[agents[0]])
                       for t, agents in self.agent_teams.items()}
        try:
            self._gs_shape = tuple(np.shape(proto.state()))
            self._has_state = True
        except (NotImplementedError, AttributeError):
            self._gs_shape, self._has_state = (sum(math.prod(shapes[a]) for a in self.agent_names),), False
        limit = max_steps or getattr(proto, "max_cycles", None) or getattr(getattr(proto, "unwrapped", proto),
                                                                           "max_cycles", None)
        if limit is None:
            raise ValueError(f"{self.name}: pass max_steps, the most transitions an episode can have (the env has "
                             f"no max_cycles)")
        self._max_steps = int(limit)

    @property
    def teams(self) -> Mapping[str, Team]:
        return self._teams

    @property
    def global_state_shape(self) -> tuple[int, ...]:
        return self._gs_shape

    @property
    def max_steps(self) -> int:
        return self._max_steps

    # -- host side ---------------------------------------------------------------------------------

    def _outputs(self):
        """Shapes of what a host call returns: obs, avail, global state, rewards, terminated, truncated."""
        return (
            {t: jax.ShapeDtypeStruct((team.num_agents,) + team.obs_shape, jnp.float32) for t, team in self._teams.items()},
            {t: jax.ShapeDtypeStruct((team.num_agents, team.num_actions if isinstance(team.action_space, Discrete)
                                      else 1), jnp.bool_) for t, team in self._teams.items()},
            jax.ShapeDtypeStruct(self._gs_shape, jnp.float32),
            {t: jax.ShapeDtypeStruct((team.num_agents,), jnp.float32) for t, team in self._teams.items()},
            jax.ShapeDtypeStruct((), jnp.bool_), jax.ShapeDtypeStruct((), jnp.bool_),
        )

    def _pack(self, env: ParallelEnv, obs: Mapping, infos: Mapping, rewards: Mapping, terminated: bool,
              truncated: bool):
        """Numpy outputs in team layout; agents absent from ``obs`` (gone) get zeros."""
        out_obs, out_avail, out_rew, flat = {}, {}, {}, []
        for t, agents in self.agent_teams.items():
            team = self._teams[t]
            o = np.zeros((team.num_agents,) + team.obs_shape, np.float32)
            width = team.num_actions if isinstance(team.action_space, Discrete) else 1
            m = np.ones((team.num_agents, width), bool)
            r = np.zeros((team.num_agents,), np.float32)
            for i, a in enumerate(agents):
                if a in obs:
                    x = obs[a]
                    if a in self._obs_key:
                        if isinstance(team.action_space, Discrete) and "action_mask" in x:
                            m[i] = np.asarray(x["action_mask"]) > 0
                        x = x[self._obs_key[a]]
                    o[i] = np.asarray(x, np.float32)
                    mask = (infos.get(a) or {}).get("action_mask") if isinstance(infos.get(a), Mapping) else None
                    if mask is not None and isinstance(team.action_space, Discrete):
                        m[i] = np.asarray(mask) > 0
                r[i] = float(rewards.get(a, 0.0))
            out_obs[t], out_avail[t], out_rew[t] = o, m, r
            flat += [o[i].ravel() for i in range(team.num_agents)]
        if self._has_state:
            gs = np.asarray(env.state(), np.float32)
        else:
            order = {a: (t, i) for t, agents in self.agent_teams.items() for i, a in enumerate(agents)}
            gs = np.concatenate([out_obs[order[a][0]][order[a][1]].ravel() for a in self.agent_names])
        return out_obs, out_avail, gs.astype(np.float32), out_rew, np.bool_(terminated), np.bool_(truncated)

    # The host functions receive jax arrays: they are turned into numpy first, since dispatching a jax
    # operation from inside a callback can deadlock against the program that called it.
    def _host_reset(self, seed):
        handle, env = self._pool.new()
        obs, infos = env.reset(seed=int(np.asarray(seed)))
        return (np.int32(handle),) + self._pack(env, obs, infos, {}, False, False)

    def _host_step(self, handle, actions):
        handle, actions = int(np.asarray(handle)), jax.tree.map(np.asarray, actions)
        env = self._pool.get(handle)
        act = {}
        for t, agents in self.agent_teams.items():
            space = self._teams[t].action_space
            for i, a in enumerate(agents):
                if a in env.agents:
                    act[a] = int(actions[t][i]) if isinstance(space, Discrete) else np.asarray(actions[t][i], np.float32)
        obs, rewards, terms, truncs, infos = env.step(act)
        done = not env.agents
        ended = [a for a in act if terms.get(a) or truncs.get(a)]
        truncated = done and bool(ended) and all(truncs.get(a) and not terms.get(a) for a in ended)
        out = self._pack(env, obs, infos, rewards, done and not truncated, truncated)
        if done:
            self._pool.finish(handle)
        return out

    # -- the jmarl API -------------------------------------------------------------------------------

    def _timestep(self, out) -> TimeStep:
        obs, avail, gs, rewards, terminated, truncated = out
        return TimeStep(obs=obs, reward=rewards, terminated=terminated, truncated=truncated, global_state=gs,
                        avail_actions=avail)

    def _reset(self, key: jax.Array) -> tuple[TimeStep, PettingZooState]:
        seed = jax.random.randint(key, (), 0, 2 ** 31 - 1)
        handle, *out = io_callback(self._host_reset, (jax.ShapeDtypeStruct((), jnp.int32),) + self._outputs(), seed)
        ts = self._timestep(out)
        ts = ts.replace(reward={t: jnp.zeros_like(r) for t, r in ts.reward.items()})
        return ts, PettingZooState(handle, jnp.zeros((), jnp.int32))

    def _step(self, key: jax.Array, state: PettingZooState, actions: Actions) -> tuple[TimeStep, PettingZooState]:
        # ``key`` is unused: the Python env draws from its own generator, seeded at reset.
        out = io_callback(self._host_step, self._outputs(), state.handle, dict(actions))
        return self._timestep(out), state.replace(step=state.step + 1)


def from_pettingzoo(env_fn: Callable[[], ParallelEnv] | ParallelEnv, max_steps: int | None = None,
                    max_envs: int = 256, name: str | None = None) -> FromPettingZoo:
    """Run a PettingZoo ``ParallelEnv`` under jmarl's API (see ``FromPettingZoo``).

    env_fn:    a function returning a new env (each copy plays one episode at a time), or an env (copied
               with ``copy.deepcopy`` for more copies).
    max_steps: the most transitions in an episode (default: the env's ``max_cycles``).
    max_envs:  at least the number of environments stepped in parallel (``num_envs``, and the evaluation's
               episodes): the pool keeps ~3x as many copies.
    """
    if isinstance(env_fn, ParallelEnv):
        import copy

        proto = env_fn
        env_fn = functools.partial(copy.deepcopy, proto)
    return FromPettingZoo(env_fn, max_steps=max_steps, max_envs=max_envs, name=name)
