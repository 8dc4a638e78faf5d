"""Adapters both ways between jmarl's team API and JaxMARL's dict API.

- ``from_jaxmarl(env)`` runs a JaxMARL ``MultiAgentEnv`` as a jmarl ``Environment``: agents with the same
  name prefix, observation shape and action space become one team, their per-agent entries stacked on a
  leading agent axis. Every environment JaxMARL registers is covered (``docs/interop.md`` has the table):
  the STORM family's tuples, batched arrays and integer agent ids, Dict observations (flattened),
  MultiDiscrete actions (one Discrete choice over the product), legal-action masks (``get_avail_actions``,
  or Hanabi's ``get_legal_moves``) and time limits reported as truncation, with ``max_steps`` found from the
  env's own settings.
- ``to_jaxmarl(env)`` runs a jmarl ``Environment`` as a JaxMARL ``MultiAgentEnv`` (agent ``i`` of team
  ``t`` is named ``f"{t}_{i}"``), auto-resetting in ``step`` as JaxMARL does, accepting actions in every
  form JaxMARL's own envs accept, with infos shaped per agent as JaxMARL's log wrappers expect.
- ``jaxmarl_env_class(name)`` is what ``jmarl.make("jaxmarl:NAME")`` builds: a ``FromJaxMARL`` subclass with
  a ``Config`` dataclass derived from the JaxMARL constructor's keywords, so ``env.KEY=VALUE`` is checked
  like any jmarl environment's.

``from_jaxmarl(to_jaxmarl(env))`` behaves like ``env``: same teams, observations, rewards, flags, global
state, available actions and infos for the same keys and actions.

Shape legend: N = agents in a team, M = agents of the env, O = observation shape, A = number of discrete
actions, G = global state size.
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import re
import typing
from functools import partial
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


def _import_jaxmarl_quietly() -> None:
    """Import jaxmarl's environments once, keeping jmarl's output clean: its package prints banners to stdout
    at import, and its mabrax module resets ``sys.stdout``/``sys.stderr`` to the process's original streams
    (which undoes any redirection the caller set up, pytest's capture and ``contextlib.redirect_*`` included)."""
    out, err = sys.stdout, sys.stderr
    # The banner may be printed after mabrax has pointed sys.stdout at the original stream, so silence file
    # descriptor 1 itself for the import.
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            import jaxmarl.registration  # noqa: F401  (imports every environment module)
    finally:
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout, sys.stderr = out, err


_import_jaxmarl_quietly()
from jaxmarl.environments import spaces as jm_spaces  # noqa: E402
from jaxmarl.environments.multi_agent_env import MultiAgentEnv  # noqa: E402
from jaxmarl.environments.multi_agent_env import State as JaxMARLState  # noqa: E402

from jmarl.adapters.teams import group_agents, prefix_name
from jmarl.core.config import ConfigError, suggest
from jmarl.core.env import Actions, Environment, Team, TimeStep
from jmarl.core.spaces import Box, Discrete, Space
from jmarl.core.wrappers import Persistent

__all__ = ["FromJaxMARL", "ToJaxMARL", "from_jaxmarl", "to_jaxmarl", "jaxmarl_env_class", "jaxmarl_env_names"]

# Keys of a JaxMARL ``infos`` dict that say how an episode ended (``ToJaxMARL`` writes them, one flag per
# agent; ``FromJaxMARL`` reads them in place of its time-limit rules).
TERMINATED, TRUNCATED = "terminated", "truncated"


def _class_names(obj: Any) -> set[str]:
    """Names of ``obj``'s class and its bases: env families are recognised by name, so that a family whose
    optional dependency is missing (MABrax needs brax) never has to be imported to be recognised."""
    return {c.__name__ for c in type(obj).__mro__}


# --------------------------------------------------------------------------------------------------
# Spaces
# --------------------------------------------------------------------------------------------------

def action_space_from_jaxmarl(space: jm_spaces.Space) -> Space:
    """A jmarl action space for a JaxMARL one.

    Discrete -> Discrete; Box -> Box with its bounds widened to scalars (jmarl's Box has scalar bounds;
    JaxMARL's envs clip what they receive); MultiDiscrete(n_1..n_k) -> Discrete(n_1 * ... * n_k), one
    choice over the product, decoded in row-major order (``FromJaxMARL`` does it), so every discrete
    learner in jmarl runs it unchanged.
    """
    if isinstance(space, jm_spaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, jm_spaces.MultiDiscrete):
        return Discrete(int(np.prod(np.asarray(space.num_categories))))
    if isinstance(space, jm_spaces.Box):
        low, high = float(np.min(np.asarray(space.low))), float(np.max(np.asarray(space.high)))
        return Box(low, high, tuple(int(d) for d in np.atleast_1d(space.shape)) if np.ndim(space.shape)
                   else (int(space.shape),))
    raise NotImplementedError(f"JaxMARL action space {type(space).__name__} has no jmarl equivalent: jmarl acts in "
                              f"Discrete and Box spaces (MultiDiscrete is mapped to a Discrete product)")


def action_space_to_jaxmarl(space: Space) -> jm_spaces.Space:
    """The JaxMARL action space for a jmarl one."""
    if isinstance(space, Discrete):
        return jm_spaces.Discrete(space.n)
    return jm_spaces.Box(space.low, space.high, tuple(space.shape))


def _space_key(space: jm_spaces.Space) -> tuple:
    """A hashable summary of a JaxMARL action space (JaxMARL spaces define no equality)."""
    if isinstance(space, jm_spaces.MultiDiscrete):
        return ("MultiDiscrete", tuple(np.asarray(space.num_categories).tolist()))
    return ("jmarl", action_space_from_jaxmarl(space))


# --------------------------------------------------------------------------------------------------
# Teams
# --------------------------------------------------------------------------------------------------

# Grouping lives in jmarl.adapters.teams (shared with the PettingZoo adapter); kept here under its old name.
_prefix_name = prefix_name


# --------------------------------------------------------------------------------------------------
# JaxMARL's variants of its own API, made uniform
# --------------------------------------------------------------------------------------------------

def _shape(x: Any) -> tuple[int, ...]:
    """The shape of an array, a Python number or a ``jax.ShapeDtypeStruct``."""
    return tuple(getattr(x, "shape", np.shape(x)))


def _per_agent(x: Any, agents: Sequence[Any]) -> dict[Any, Any]:
    """{agent: its entry} from what a JaxMARL env returns for all agents.

    A dict keyed by agent (extra keys such as "world_state" or "__all__" are ignored); a tuple or list with
    one entry per agent (STORM 2p); or a pytree whose leaves all have a leading agent axis (STORM's
    batched arrays).
    """
    if isinstance(x, Mapping) and all(a in x for a in agents):
        return {a: x[a] for a in agents}
    if isinstance(x, (tuple, list)) and len(x) == len(agents):
        return dict(zip(agents, x))
    leaves = jax.tree.leaves(x)
    if leaves and all(len(_shape(leaf)) >= 1 and _shape(leaf)[0] == len(agents) for leaf in leaves):
        return {a: jax.tree.map(lambda leaf, i=i: leaf[i], x) for i, a in enumerate(agents)}
    shapes = jax.tree.map(_shape, x)
    raise ValueError(f"cannot split {type(x).__name__} {shapes} by agent: expected a dict keyed by {list(agents)}, "
                     f"a sequence of {len(agents)} entries or arrays with a leading axis of {len(agents)}")


def _fix_obs(env: MultiAgentEnv, obs: Any) -> Any:
    """STORM's n-player InTheGrid keeps the agent axis of ``inventory`` last ([5, M]); put it first."""
    if "InTheGrid" in _class_names(env) and isinstance(obs, Mapping) and "inventory" in obs:
        return dict(obs, inventory=jnp.swapaxes(obs["inventory"], 0, -1))
    return obs


def _flat_obs(x: Any) -> jax.Array:
    """One agent's observation as f32: an array keeps its shape; a Dict / tuple observation (STORM's
    {"observation", "inventory"}) becomes one vector, its leaves flattened and concatenated in key order."""
    if isinstance(x, (Mapping, tuple, list)):
        return jnp.concatenate([jnp.ravel(leaf).astype(jnp.float32) for leaf in jax.tree.leaves(x)])
    return jnp.asarray(x, jnp.float32)


# --------------------------------------------------------------------------------------------------
# Episode limits: how long an episode can be, and which done steps are time limits
# --------------------------------------------------------------------------------------------------

# truncated(state_before, env_actions, state_after, done, infos) -> bool[]: the done step was a time limit
TruncationRule = Callable[[Any, Any, Any, jax.Array, Mapping[str, Any]], jax.Array]


@dataclasses.dataclass(frozen=True)
class EpisodeLimit:
    """``max_steps``: the most transitions in an episode. ``truncated``: which done steps are time limits.
    ``rule``: how both were found (shown in ``FromJaxMARL.describe()`` and docs/interop.md)."""

    max_steps: int
    truncated: TruncationRule
    rule: str


def _all_time_limit(state, actions, after, done, infos):
    return done


def _hanabi_max_steps(env: MultiAgentEnv) -> int:
    """The most turns a Hanabi game can last. Each play or discard draws one of the D = deck - dealt cards;
    each hint spends an information token, and tokens come back only by discarding (one each) or by
    completing a colour (one each), so hints <= max_info_tokens + D + colours; once the deck is empty each
    player has one more turn (``last_round_count``), plus one turn of slack."""
    drawn = int(env.deck_size) - env.num_agents * env.hand_size
    return drawn + (env.max_info_tokens + drawn + env.num_colors) + env.num_agents + 1


def _smax_truncated(env: MultiAgentEnv) -> TruncationRule:
    """SMAX ends an episode when a side is eliminated or ``step >= max_steps`` (checked before the step
    counter moves, so max_steps + 1 transitions): a done step with both sides standing is a time limit."""
    allies = env.num_allies

    def truncated(state, actions, after, done, infos):
        alive = getattr(after, "state", after).unit_alive  # HeuristicEnemySMAX wraps the SMAX state
        return done & jnp.any(alive[:allies]) & jnp.any(alive[allies:])

    return truncated


def _riddle_truncated(env: MultiAgentEnv) -> TruncationRule:
    """Switch riddle ends when the prisoner in the room says TELL (an outcome: terminated) or at max_steps."""
    tell = env.game_actions["TELL"]

    def truncated(state, actions, after, done, infos):
        acted = jnp.stack([jnp.asarray(actions[a]) for a in env.agents])[state.agent_in_room]
        return done & (acted != tell)

    return truncated


def _step_counter_truncated(limit: int) -> TruncationRule:
    """The env counts transitions in ``state.step``: a done step that reached ``limit`` is a time limit."""

    def truncated(state, actions, after, done, infos):
        return done & (after.step >= limit)

    return truncated


def _brax_truncated(state, actions, after, done, infos):
    return done & (jnp.asarray(infos["truncation"]) > 0)  # brax's EpisodeWrapper marks its time limit


def episode_limit(env: MultiAgentEnv) -> EpisodeLimit | None:
    """The ``EpisodeLimit`` of a JaxMARL env (None where nothing about it is known: pass ``max_steps``).

    Each family's rule is read off its ``step_env``: MPE never terminates and runs max_steps + 1
    transitions (done is ``step >= max_steps`` before the increment); SMAX likewise, but eliminations
    terminate; coin_game and STORM end only when the outer episode (num_inner_steps x num_outer_steps
    transitions) ends; Overcooked (v1, v2) ends only at ``max_steps``; switch_riddle at ``max_steps`` unless
    someone said TELL; Hanabi has no time limit (its bound is ``_hanabi_max_steps``); JaxNav at
    ``max_steps`` unless every agent reached its goal or crashed; MABrax at ``episode_length`` (brax's
    ``truncation`` info).
    """
    names = _class_names(env)
    if "ToJaxMARL" in names:  # a jmarl env seen through JaxMARL: its infos say how each episode ended
        return EpisodeLimit(env.transitions, lambda s, a, t, done, infos: done & jnp.any(infos[TRUNCATED]),
                            "jmarl env: infos['truncated']")
    if "SimpleMPE" in names:
        return EpisodeLimit(env.max_steps + 1, _all_time_limit,
                            "MPE: done when step >= max_steps before the step (max_steps + 1 transitions)")
    if "SMAX" in names or "EnemySMAX" in names:
        return EpisodeLimit(env.max_steps + 1, _smax_truncated(env),
                            "SMAX: max_steps + 1 transitions; an elimination terminates")
    if "CoinGame" in names or names & {"InTheGrid", "InTheGrid_2p", "InTheMatrix"}:
        return EpisodeLimit(env.num_inner_steps * env.num_outer_steps, _all_time_limit,
                            "num_inner_steps x num_outer_steps transitions; inner episodes reset inside one")
    if names & {"Overcooked", "OvercookedV2"}:
        return EpisodeLimit(env.max_steps, _all_time_limit, "max_steps transitions, never terminates")
    if "SwitchRiddle" in names:
        return EpisodeLimit(env.max_steps, _riddle_truncated(env), "max_steps transitions; TELL terminates")
    if "HanabiEnv" in names or "HanabiGame" in names:
        return EpisodeLimit(_hanabi_max_steps(env), lambda s, a, t, done, infos: jnp.zeros((), bool),
                            "no time limit: the game ends; max_steps is the longest possible game")
    if "MABraxEnv" in names:
        return EpisodeLimit(env.episode_length, _brax_truncated, "episode_length transitions (brax's truncation)")
    max_steps = getattr(env, "max_steps", None)
    if isinstance(max_steps, (int, np.integer)):  # JaxNav and others that count in state.step
        return EpisodeLimit(int(max_steps), _step_counter_truncated(int(max_steps)),
                            "done with state.step >= max_steps is a time limit")
    return None


# --------------------------------------------------------------------------------------------------
# Objectives: the headline of an env whose teams oppose each other (jmarl.agents.rollout)
# --------------------------------------------------------------------------------------------------

# By JaxMARL class (the first of the env's classes found here), the objective jmarl's native counterpart
# declares, in JaxMARL's team names: the predators' return in tag, world_comm and the FACMAC predator-prey
# (mpe_tag, mpe_world_comm: return/adversaries); the good agents' in push and adversary (mpe_push,
# mpe_adversary: return/agents); Bob's, the listener's, in crypto (mpe_crypto: return/listener); the sum in
# speaker_listener (one goal); the allies' win rate in SMAX (smax: win_rate). Opposing teams are never summed.
_OBJECTIVES = {"SimpleTagMPE": "return/adversary", "SimpleWorldCommMPE": "return/adversary",
               "SimpleFacmacMPE": "return/adversary", "SimplePushMPE": "return/agent",
               "SimpleAdversaryMPE": "return/agent", "SimpleCryptoMPE": "return/bob",
               "SimpleSpeakerListenerMPE": "return", "SMAX": "win_rate",
               "EnemySMAX": "win_rate"}  # HeuristicEnemySMAX, LearnedPolicyEnemySMAX


def _is_smax(env: MultiAgentEnv) -> bool:
    return bool({"SMAX", "EnemySMAX"} & _class_names(env))


def _smax_won(env: MultiAgentEnv, after: Any, done: jax.Array) -> jax.Array:
    """bool[]: the allies won on this step: it ended the episode with every enemy down and an ally standing
    (JaxMARL's ``won_battle & ~lost_battle``: both sides down at once is a draw)."""
    alive = getattr(after, "state", after).unit_alive  # HeuristicEnemySMAX wraps the SMAX state
    return done & jnp.any(alive[:env.num_allies]) & ~jnp.any(alive[env.num_allies:])


# --------------------------------------------------------------------------------------------------
# JaxMARL -> jmarl
# --------------------------------------------------------------------------------------------------

@struct.dataclass
class AnnealedState:
    """A JaxMARL env's state with the count of its transitions that a shaped-reward schedule reads
    (``Persistent``: it goes on across the episodes ``AutoReset`` starts)."""

    env_state: Any  # the JaxMARL env's state
    transitions: Persistent  # Persistent(i32[]): transitions this env has stepped since it was first reset


class FromJaxMARL(Environment):
    """A JaxMARL ``MultiAgentEnv`` under jmarl's API (build with ``from_jaxmarl``).

    ``step`` calls JaxMARL's raw ``step_env`` (no auto-reset; wrap in ``jmarl.core.wrappers.AutoReset``,
    which splits the key as JaxMARL's ``step`` does, so ``AutoReset(from_jaxmarl(e)).step`` and
    ``e.step`` give the same episodes, up to float rounding where XLA fuses the two differently).

    Terminated vs truncated: from the env's own "terminated"/"truncated" infos where it gives both,
    else by the family's rule (``episode_limit``): a time limit is *truncated*, anything else that ends an
    episode is *terminated*. ``max_steps`` is found the same way (MPE and SMAX run ``max_steps + 1``
    transitions; coin_game and STORM ``num_inner_steps x num_outer_steps``; Hanabi the longest possible game).

    Observations are cast to f32 (Dict observations flattened into one vector per agent); ``global_state``
    is ``obs["world_state"]`` where the env provides it (SMAX), else every agent's flattened observation
    concatenated in ``env.agents`` order; ``avail_actions`` come from ``env.get_avail_actions`` where it is
    implemented, Hanabi's ``get_legal_moves``, else all True.

    ``TimeStep.info`` holds the env's ``infos`` (zeros after reset), and ``info["agent_done"]``
    ({team: bool[N]}): JaxMARL's per-agent ``dones``, all True when the episode ends. jmarl's episodes end
    for every agent at once; an agent JaxMARL ends early stays in the arrays until the episode ends, inert:
    SMAX's dead units (their only legal action is "stop", so a masked policy has no choice and no gradient)
    and, with ``evaporating=True``, JaxNav's agents at their goal or crashed (their actions are ignored; a
    learner that wants to drop those steps masks them with ``agent_done``). SMAX also reports ``info["won"]`` (the allies won on this step),
    and competitive envs declare the objective of jmarl's native counterparts (``_OBJECTIVES``).

    shaped_reward_coef: where the env reports ``infos["shaped_reward"]`` per agent (Overcooked v1 and v2),
        each agent's reward is ``reward + c * shaped_reward`` with ``c = shaped_reward_coef``; the env's own
        reward, summed over agents, is then the episode metric ``unshaped_reward`` and the env's objective.
    shaped_reward_anneal_steps: N > 0 anneals ``c`` linearly to 0 over this env's first N transitions,
        ``c = shaped_reward_coef * max(0, 1 - t / N)`` at its t-th transition (t from 0, counted across
        episodes: ``AutoReset`` carries the count over; a ``reset`` outside it starts again at 0).
        ``info["shaped_reward_coef"]`` is the ``c`` of each step. JaxMARL's baselines anneal from 1 to 0
        over ``REW_SHAPING_HORIZON`` steps of all their envs together: N = REW_SHAPING_HORIZON / num_envs.
    """

    def __init__(self, env: MultiAgentEnv, teams: Mapping[str, Sequence[str]] | None = None,
                 max_steps: int | None = None, shaped_reward_coef: float = 0.0,
                 shaped_reward_anneal_steps: int = 0):
        self.env = env
        self.name = env.name
        self.shaped_reward_coef = float(shaped_reward_coef)
        self.shaped_reward_anneal_steps = int(shaped_reward_anneal_steps)
        if self.shaped_reward_anneal_steps < 0:
            raise ConfigError(f"{env.name}: shaped_reward_anneal_steps={shaped_reward_anneal_steps}; valid: 0 (a "
                              f"constant coefficient) or N > 0 (annealed to 0 over N transitions)")
        if self.shaped_reward_anneal_steps and not self.shaped_reward_coef:
            raise ConfigError(f"{env.name}: shaped_reward_anneal_steps={shaped_reward_anneal_steps} anneals "
                              f"shaped_reward_coef, which is 0; set shaped_reward_coef (JaxMARL's baselines "
                              f"start at 1)")
        self.agent_keys = list(env.agents)  # as the env names them (STORM: ints)
        self._key_of = {str(a): a for a in self.agent_keys}
        if len(self._key_of) != len(self.agent_keys):
            raise ValueError(f"{env.name}: agent names {self.agent_keys} are not distinct as strings")
        self._act_spaces = {str(a): env.action_space(a) for a in self.agent_keys}
        self._teams_given = teams
        obs, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        agent_obs = jax.eval_shape(lambda k: self._agent_obs(env.reset(k)[0]), jax.random.PRNGKey(0))
        self.agent_teams = self._group(agent_obs, teams)
        self._teams = {t: Team(len(agents), tuple(agent_obs[agents[0]].shape),
                               action_space_from_jaxmarl(self._act_spaces[agents[0]]))
                       for t, agents in self.agent_teams.items()}
        self._has_world_state = isinstance(obs, Mapping) and "world_state" in obs
        self._global_state_shape = (tuple(obs["world_state"].shape) if self._has_world_state else
                                    (sum(int(np.prod(agent_obs[str(a)].shape)) for a in self.agent_keys),))
        self._avail_fn = self._probe_avail_actions(state)
        limit = episode_limit(env)
        if max_steps is None and limit is None:
            raise ValueError(f"JaxMARL env {env.name} ({type(env).__name__}): jmarl does not know its episode "
                             f"length; pass from_jaxmarl(env, max_steps=...), the most transitions an episode "
                             f"can have")
        self.limit = limit
        self._max_steps = int(max_steps if max_steps is not None else limit.max_steps)
        self._info_shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                         self._probe_infos(state))
        if self.shaped_reward_coef and "shaped_reward" not in self._info_shapes:
            raise ConfigError(f"{env.name}: shaped_reward_coef={shaped_reward_coef} but the env reports no "
                              f"infos['shaped_reward'] (Overcooked does); valid: 0")
        objective = next((_OBJECTIVES[c.__name__] for c in type(env).__mro__ if c.__name__ in _OBJECTIVES), None)
        if "ToJaxMARL" in _class_names(env):  # a jmarl env seen through JaxMARL: its own objective
            objective = getattr(env.env, "objective", None)
        if self.shaped_reward_coef:
            objective = "metric/unshaped_reward"  # the task's own reward, not the shaping that helps learn it
        if objective is not None and self._declarable(objective):
            self.objective = objective  # jmarl.agents.rollout.default_objective reads it
        if "MABraxEnv" in _class_names(env) and getattr(env, "auto_reset", False):
            raise ValueError(f"{env.name}: built with auto_reset=True, brax resets inside step and the final "
                             f"observation is lost; build it with auto_reset=False (jmarl's AutoReset resets)")

    # -- static description ------------------------------------------------------------------------

    def _agent_obs(self, obs: Any) -> dict[str, Any]:
        """{agent name: f32[*O]} from the env's observations, whatever form the env gives them in."""
        split = _per_agent(_fix_obs(self.env, obs), self.agent_keys)
        return {str(a): _flat_obs(x) for a, x in split.items()}

    def _group(self, agent_obs: Mapping[str, Any], teams: Mapping[str, Sequence[str]] | None):
        """{team: agent names}: given, or agents grouped by name prefix, observation shape and action space
        (teams in order of their first agent)."""
        def key(agent):
            return (tuple(agent_obs[agent].shape), _space_key(self._act_spaces[agent]))

        if teams:
            out = {t: tuple(str(a) for a in agents) for t, agents in teams.items()}
            for t, agents in out.items():
                for agent in agents:
                    if agent not in self._key_of:
                        raise ValueError(f"{self.env.name}: unknown agent {agent!r}; agents are "
                                         f"{list(self._key_of)}")
                if len({key(a) for a in agents}) > 1:
                    raise ValueError(f"{self.env.name}: team {t!r} mixes observation shapes or action spaces: "
                                     f"{ {a: key(a) for a in agents} }")
            return out
        return group_agents(list(self._key_of), key)

    def _probe_avail_actions(self, state: Any) -> Callable[[Any], Mapping[Any, jax.Array]] | None:
        """The env's legal-action function: ``get_avail_actions``, else ``get_legal_moves`` (Hanabi), used
        only where it gives every Discrete agent a mask of its number of actions."""
        for method in ("get_avail_actions", "get_legal_moves"):
            fn = getattr(self.env, method, None)
            if fn is None:
                continue
            try:
                masks = _per_agent(jax.eval_shape(fn, state), self.agent_keys)
            except (NotImplementedError, ValueError, TypeError, AttributeError):
                continue
            fits = all(_shape(masks[self._key_of[a]]) == (team.action_space.n,)
                       for t, team in self._teams.items() if isinstance(team.action_space, Discrete)
                       and not isinstance(self._act_spaces[self.agent_teams[t][0]], jm_spaces.MultiDiscrete)
                       for a in self.agent_teams[t])
            if fits:
                return fn
        return None

    def _probe_infos(self, state: Any) -> Any:
        """Shapes of ``step_env``'s infos (less the end flags), for a reset TimeStep of the same structure."""
        actions = {t: jax.ShapeDtypeStruct((team.num_agents,) + tuple(team.action_space.shape),
                                           team.action_space.dtype) for t, team in self._teams.items()}
        def info(s, a):
            _, after, rewards, dones, infos = self.env.step_env(jax.random.PRNGKey(0), s, self._env_actions(a))
            return self._info(infos, after, rewards, dones, jnp.zeros((), bool), jnp.ones((), jnp.float32))

        return jax.eval_shape(info, state, actions)

    def _declarable(self, objective: str) -> bool:
        """Whether ``objective`` names a team of this grouping (``return/TEAM``) or a number the env reports
        (wins, an episode metric); jmarl.agents.rollout.objective_names lists what is valid."""
        if objective.startswith("return/"):
            return objective.removeprefix("return/") in self._teams
        if objective == "return":
            return len(self._teams) > 1
        if objective == "win_rate":
            return "won" in self._info_shapes
        return objective.removeprefix("metric/") in self._info_shapes.get("metrics", {})

    @property
    def teams(self) -> Mapping[str, Team]:
        return self._teams

    @property
    def global_state_shape(self) -> tuple[int, ...]:
        return self._global_state_shape

    @property
    def max_steps(self) -> int:
        return self._max_steps

    def describe(self) -> str:
        """One line: the JaxMARL class, the teams and how episode ends are labelled."""
        rule = self.limit.rule if self.limit else "max_steps given by hand"
        return f"{type(self.env).__name__}: {self!r}; max_steps={self.max_steps} ({rule})"

    # -- dicts <-> team arrays ---------------------------------------------------------------------

    def _stack(self, per_agent: Mapping[str, jax.Array], dtype) -> dict[str, jax.Array]:
        """{agent: x[...]} -> {team: x[N, ...]} cast to ``dtype``."""
        return {t: jnp.stack([jnp.asarray(per_agent[a], dtype) for a in agents])
                for t, agents in self.agent_teams.items()}

    def _env_actions(self, actions: Actions) -> Any:
        """{team: a[N, ...]} -> the actions in the form the env reads: a dict keyed by agent, or a tuple where
        agents are integers (STORM indexes and unpacks them positionally). MultiDiscrete actions are decoded
        from their product index, row-major."""
        per_agent = {}
        for t, agents in self.agent_teams.items():
            for i, a in enumerate(agents):
                act, space = actions[t][i], self._act_spaces[a]
                if isinstance(space, jm_spaces.MultiDiscrete):
                    dims = tuple(int(n) for n in np.asarray(space.num_categories))
                    act = jnp.stack(jnp.unravel_index(act, dims)).astype(jnp.int32)
                per_agent[self._key_of[a]] = act
        ordered = [per_agent[a] for a in self.agent_keys]
        if all(isinstance(a, (int, np.integer)) for a in self.agent_keys):
            return tuple(ordered)
        return dict(zip(self.agent_keys, ordered))

    def _global_state(self, obs: Any, agent_obs: Mapping[str, jax.Array]) -> jax.Array:
        """f32[G]: the env's world state, or all agents' flattened observations."""
        if self._has_world_state:
            return jnp.asarray(obs["world_state"], jnp.float32)
        return jnp.concatenate([jnp.ravel(agent_obs[str(a)]) for a in self.agent_keys])

    def _avail_actions(self, state: Any) -> dict[str, jax.Array]:
        """{team: bool[N, A]} ([N, 1] for a Box team; all True where the env masks nothing)."""
        masks = _per_agent(self._avail_fn(state), self.agent_keys) if self._avail_fn is not None else None
        out = {}
        for t, team in self._teams.items():
            agents = self.agent_teams[t]
            multi = isinstance(self._act_spaces[agents[0]], jm_spaces.MultiDiscrete)
            if masks is not None and isinstance(team.action_space, Discrete) and not multi:
                out[t] = jnp.stack([jnp.asarray(masks[self._key_of[a]]) > 0 for a in agents])
            else:
                width = team.num_actions if isinstance(team.action_space, Discrete) else 1
                out[t] = jnp.ones((team.num_agents, width), bool)
        return out

    def _info(self, infos: Mapping[str, Any], after: Any, rewards: Any, dones: Mapping[Any, jax.Array],
              done: jax.Array, coef: jax.Array) -> dict[str, Any]:
        """``TimeStep.info``: the env's infos less the end flags (for a jmarl env seen through ``to_jaxmarl``,
        its own infos again rather than their per-agent broadcast), with ``agent_done``, SMAX's ``won`` and,
        with shaped rewards, the step's coefficient and the ``unshaped_reward`` metric (see the class doc)."""
        info = {k: v for k, v in infos.items() if k not in (TERMINATED, TRUNCATED)}
        if "ToJaxMARL" in _class_names(self.env):
            return self.env.team_infos(info)
        # The env's per-agent dones (STORM gives only "__all__"); every agent is done when the episode is (SMAX
        # says an agent alive at the end is not).
        per_agent = {str(a): jnp.asarray(dones[a], bool) | done if isinstance(dones, Mapping) and a in dones else done
                     for a in self.agent_keys}
        info["agent_done"] = self._stack(per_agent, bool)
        if _is_smax(self.env):
            info["won"] = _smax_won(self.env, after, done)
        if self.shaped_reward_coef:
            info["shaped_reward_coef"] = coef
            unshaped = sum(jnp.asarray(r, jnp.float32) for r in _per_agent(rewards, self.agent_keys).values())
            info["metrics"] = {**info.get("metrics", {}), "unshaped_reward": unshaped}
        return info

    def _end_flags(self, state: Any, env_actions: Any, after: Any, dones: Mapping[Any, jax.Array],
                   infos: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
        """(terminated, truncated), bool[] each, never both; see the class docstring."""
        done = jnp.asarray(dones["__all__"], bool)
        if TERMINATED in infos and TRUNCATED in infos and "ToJaxMARL" not in _class_names(self.env):
            truncated = done & jnp.all(jnp.asarray(infos[TRUNCATED], bool)) & ~jnp.any(jnp.asarray(infos[TERMINATED]))
        elif self.limit is not None:
            truncated = self.limit.truncated(state, env_actions, after, done, infos)
        else:
            truncated = jnp.zeros((), bool)
        truncated = jnp.asarray(truncated, bool)
        return done & ~truncated, truncated

    def _rewards(self, rewards: Any, infos: Mapping[str, Any], coef: jax.Array) -> dict[str, jax.Array]:
        """{team: f32[N]}: the env's rewards, plus ``coef`` times the shaped ones where shaping is on."""
        per_agent = {str(a): r for a, r in _per_agent(rewards, self.agent_keys).items()}
        if self.shaped_reward_coef:
            shaped = _per_agent(infos["shaped_reward"], self.agent_keys)
            per_agent = {a: per_agent[a] + coef * shaped[self._key_of[a]] for a in per_agent}
        return self._stack(per_agent, jnp.float32)

    def _shaping_coef(self, transitions: jax.Array) -> jax.Array:
        """f32[]: the shaped reward's coefficient at the env's ``transitions``-th transition (from 0)."""
        if not self.shaped_reward_anneal_steps:
            return jnp.asarray(self.shaped_reward_coef, jnp.float32)
        frac = 1.0 - transitions.astype(jnp.float32) / self.shaped_reward_anneal_steps
        return self.shaped_reward_coef * jnp.clip(frac, 0.0, 1.0)

    def _timestep(self, obs, state, rewards, terminated, truncated, info) -> TimeStep:
        agent_obs = self._agent_obs(obs)
        return TimeStep(obs=self._stack(agent_obs, jnp.float32), reward=rewards,
                        terminated=terminated, truncated=truncated, global_state=self._global_state(obs, agent_obs),
                        avail_actions=self._avail_actions(state), info=info)

    # -- reset / step ------------------------------------------------------------------------------

    def _reset(self, key: jax.Array) -> tuple[TimeStep, Any]:
        obs, state = self.env.reset(key)
        rewards = {t: jnp.zeros((team.num_agents,), jnp.float32) for t, team in self._teams.items()}
        info = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._info_shapes)
        false = jnp.zeros((), bool)
        ts = self._timestep(obs, state, rewards, false, false, info)
        if self.shaped_reward_anneal_steps:  # the state carries the count the schedule reads
            state = AnnealedState(state, Persistent(jnp.zeros((), jnp.int32)))
        return ts, state

    def _step(self, key: jax.Array, state: Any, actions: Actions) -> tuple[TimeStep, Any]:
        annealed = self.shaped_reward_anneal_steps > 0
        env_state = state.env_state if annealed else state
        coef = self._shaping_coef(state.transitions.value if annealed else jnp.zeros((), jnp.int32))
        env_actions = self._env_actions(actions)
        obs, after, rewards, dones, infos = self.env.step_env(key, env_state, env_actions)
        terminated, truncated = self._end_flags(env_state, env_actions, after, dones, infos)
        info = self._info(infos, after, rewards, dones, terminated | truncated, coef)
        ts = self._timestep(obs, after, self._rewards(rewards, infos, coef), terminated, truncated, info)
        if annealed:
            after = AnnealedState(after, Persistent(state.transitions.value + 1))
        return ts, after

    # -- rendering (jmarl.tools.render) -----------------------------------------------------------

    def render_scene(self, states: Any):
        """The scene of one episode (``states``: this env's states, leaves [F, ...]): JaxMARL's MPE and SMAX
        are drawn; other families have no scene in jmarl (ValueError naming them)."""
        from jmarl.core.scene import Scene, team_colors

        names = _class_names(self.env)
        if "SimpleMPE" in names:
            env = self.env
            pos = np.asarray(states.p_pos)  # f32[F, agents + landmarks, 2]
            colors = _mpe_colors(env, pos.shape[1])
            reach = max(1.2, float(np.abs(pos).max()) + 0.2)
            return Scene(pos=pos, radius=np.asarray(env.rad, np.float32), color=colors,
                         trail=np.arange(pos.shape[1]) < env.num_agents, extent=(-reach, reach, -reach, reach))
        if "SMAX" in names or "EnemySMAX" in names:
            smax = getattr(self.env, "_env", self.env)
            s = getattr(states, "state", states)  # HeuristicEnemySMAX wraps the SMAX state
            types = np.asarray(s.unit_types[0])
            is_ally = np.asarray(s.unit_teams[0]) == 0
            colors = team_colors(["allies", "enemies"])
            pos = np.asarray(s.unit_positions)
            lo, hi = pos.reshape(-1, 2).min(0) - 3.0, pos.reshape(-1, 2).max(0) + 3.0
            centre, half = (lo + hi) / 2, max(hi - lo) / 2
            return Scene(pos=pos, radius=np.asarray(smax.unit_type_radiuses)[types],
                         color=[colors["allies" if a else "enemies"] for a in is_ally], alive=np.asarray(s.unit_alive),
                         health=np.asarray(s.unit_health) / np.asarray(smax.unit_type_health)[types],
                         extent=(centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half),
                         legend={"allies": (colors["allies"], "o"), "enemies": (colors["enemies"], "o")})
        raise ValueError(f"{self.name} ({type(self.env).__name__}) has no scene in jmarl: JaxMARL's MPE and SMAX "
                         f"environments are drawn, others are not")


def _mpe_colors(env: MultiAgentEnv, num_entities: int) -> list[str]:
    """Hex colours of a JaxMARL MPE's entities from its ``colour`` list: RGB triples, 0-255 or 0-1 (simple_push
    mixes both and spreads some triples over three entries), else jmarl's palette."""
    values = np.concatenate([np.ravel(np.asarray(c, np.float64)) for c in env.colour])
    if values.size != 3 * num_entities:
        from jmarl.core.scene import FALLBACK_COLORS

        return [FALLBACK_COLORS[0]] * env.num_agents + ["#404040"] * (num_entities - env.num_agents)
    rgb = values.reshape(num_entities, 3)
    rgb = np.where(rgb.max(1, keepdims=True) <= 1.0, rgb * 255, rgb)
    return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in np.clip(rgb, 0, 255)]


def from_jaxmarl(env: MultiAgentEnv, teams: Mapping[str, Sequence[str]] | None = None,
                 max_steps: int | None = None, shaped_reward_coef: float = 0.0,
                 shaped_reward_anneal_steps: int = 0) -> FromJaxMARL:
    """Run JaxMARL environment ``env`` under jmarl's API (see ``FromJaxMARL``).

    teams:              {team: [agent, ...]} to override the grouping (agents of a team must share
                        observation shape and action space).
    max_steps:          the most transitions in an episode; found from the env where jmarl knows its family.
    shaped_reward_coef: weight of Overcooked's ``infos["shaped_reward"]`` added to the reward.
    shaped_reward_anneal_steps: anneal that weight linearly to 0 over the env's first N transitions (0: constant).

    Raises ValueError / NotImplementedError, saying why, for an env jmarl cannot run (a Dict or Tuple
    action space, an auto-resetting brax env, observations that cannot be split by agent).
    """
    if isinstance(env, ToJaxMARL):  # a jmarl env seen through JaxMARL: recover its teams and limit
        teams = teams or env.agent_classes
        max_steps = max_steps if max_steps is not None else env.transitions
    return FromJaxMARL(env, teams=teams, max_steps=max_steps, shaped_reward_coef=shaped_reward_coef,
                       shaped_reward_anneal_steps=shaped_reward_anneal_steps)


# --------------------------------------------------------------------------------------------------
# "jaxmarl:NAME" in jmarl's registry: a class with a Config from the JaxMARL constructor's keywords
# --------------------------------------------------------------------------------------------------

# Registered JaxMARL envs whose optional dependency is not installed; the package named says why.
_OPTIONAL = {"ant_4x2": "brax", "halfcheetah_6x1": "brax", "hopper_3x1": "brax", "humanoid_9|8": "brax",
             "walker2d_2x3": "brax"}
# Needs Python objects that a KEY=VALUE setting cannot carry.
_PYTHON_ONLY = {"LearnedPolicyEnemySMAX": "a policy network and its params (policy=..., params=...)"}


def jaxmarl_env_names() -> list[str]:
    """The environments JaxMARL registers (``jaxmarl.registered_envs``), as JaxMARL spells them."""
    from jaxmarl.registration import registered_envs

    return list(registered_envs)


def missing_dependency(name: str) -> str | None:
    """The optional package JaxMARL env ``name`` needs and this interpreter lacks (None if none)."""
    import importlib.util

    if name.startswith("JaxRobotarium"):
        package = "jaxrobotarium"
    else:
        package = _OPTIONAL.get(name)
    return package if package and importlib.util.find_spec(package) is None else None


@dataclasses.dataclass(frozen=True)
class _Key:
    """One ``env.KEY`` of a ``jaxmarl:`` env: its type for jmarl's config, default, and how the value
    reaches the JaxMARL constructor (``None``: not passed, an adapter setting)."""

    name: str
    type: Any
    default: Any
    to_jaxmarl: Optional[Callable[[Any], Any]] = (lambda v: v)


def _simple_type(default: Any, annotation: Any) -> Any:
    """The config type for a constructor keyword (None: not settable as KEY=VALUE)."""
    origin = typing.get_origin(annotation)
    if annotation in (bool, int, float, str):
        return annotation
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in (bool, int, float, str):
            return Optional[args[0]]
    if isinstance(default, (bool, int, float, str)) and not isinstance(default, enum.Enum):
        return type(default)
    return None


def _keys_of(fn: Callable, skip: Sequence[str] = ()) -> tuple[list[_Key], bool]:
    """The KEY=VALUE-settable keywords of ``fn`` and whether it takes **kwargs."""
    keys, var_kw = [], False
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self",) or p.name in skip:
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL or p.default is p.empty:
            continue
        default, tp = p.default, _simple_type(p.default, p.annotation)
        if p.name in ("action_type", "act_type") and default in ("Discrete", "Continuous"):
            keys.append(_Key(p.name, Literal["Discrete", "Continuous"], default))
        elif isinstance(default, enum.Enum):  # OvercookedV2's observation_type
            members = {m.value: m for m in type(default)}
            keys.append(_Key(p.name, Literal[tuple(members)], default.value, members.__getitem__))
        elif tp is not None:
            keys.append(_Key(p.name, tp, default))
        elif isinstance(default, (tuple, list, np.ndarray)) and np.ndim(default) == 1 and len(default) \
                and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                        for v in np.asarray(default).tolist()):
            elem = int if np.issubdtype(np.asarray(default).dtype, np.integer) else float
            back = np.asarray if isinstance(default, np.ndarray) else type(default)
            keys.append(_Key(p.name, tuple[elem, ...], tuple(np.asarray(default).tolist()), back))
    return keys, var_kw


def _jaxmarl_keys(name: str) -> list[_Key]:
    """The ``env.KEY`` settings of JaxMARL env ``name``: its constructor's scalar (and 1-D numeric) keywords,
    named values in place of objects (SMAX's ``scenario`` and Overcooked's ``layout`` by name), the keywords
    that ``**kwargs`` passes on (MPE's ``max_steps``, SMAX's map settings) and the adapter's own
    (``shaped_reward_coef``, ``shaped_reward_anneal_steps``)."""
    import jaxmarl.registration as reg

    cls = {"MPE_simple_v3": "SimpleMPE", "MPE_simple_tag_v3": "SimpleTagMPE",
           "MPE_simple_world_comm_v3": "SimpleWorldCommMPE", "MPE_simple_spread_v3": "SimpleSpreadMPE",
           "MPE_simple_crypto_v3": "SimpleCryptoMPE", "MPE_simple_speaker_listener_v4": "SimpleSpeakerListenerMPE",
           "MPE_simple_push_v3": "SimplePushMPE", "MPE_simple_adversary_v3": "SimpleAdversaryMPE",
           "MPE_simple_reference_v3": "SimpleReferenceMPE", "MPE_simple_facmac_v1": "SimpleFacmacMPE",
           "MPE_simple_facmac_3a_v1": "SimpleFacmacMPE3a", "MPE_simple_facmac_6a_v1": "SimpleFacmacMPE6a",
           "MPE_simple_facmac_9a_v1": "SimpleFacmacMPE9a", "switch_riddle": "SwitchRiddle", "SMAX": "SMAX",
           "HeuristicEnemySMAX": "HeuristicEnemySMAX", "storm": "InTheGrid", "storm_2p": "InTheGrid_2p",
           "storm_np": "InTheMatrix", "hanabi": "Hanabi", "overcooked": "Overcooked",
           "overcooked_v2": "OvercookedV2", "coin_game": "CoinGame", "jaxnav": "JaxNav",
           "ant_4x2": "Ant", "halfcheetah_6x1": "HalfCheetah", "hopper_3x1": "Hopper", "humanoid_9|8": "Humanoid",
           "walker2d_2x3": "Walker2d"}.get(name)
    if cls is None:
        raise ValueError(f"jaxmarl:{name}: jmarl has no settings table for this JaxMARL environment; build it "
                         f"in Python with from_jaxmarl(jaxmarl.make({name!r}, ...))")
    mabrax = cls in ("Ant", "HalfCheetah", "Hopper", "Humanoid", "Walker2d")
    if mabrax:  # imported only when brax is installed (missing_dependency checked that)
        from jaxmarl.environments import mabrax as mabrax_envs

        factory = getattr(mabrax_envs, cls)
    else:
        factory = getattr(reg, cls)
    keys, var_kw = _keys_of(factory, skip=("agents", "landmarks", "action_spaces", "observation_spaces", "colour",
                                           "unit_type_names", "unit_type_shorthands"))
    seen = {k.name for k in keys}
    if var_kw and name.startswith("MPE_") and "max_steps" not in seen:
        keys.append(_Key("max_steps", int, 25))  # SimpleMPE's episode length, passed on by every scenario
    if var_kw and "EnemySMAX" in name:
        from jaxmarl.environments.smax import SMAX

        extra, _ = _keys_of(SMAX, skip=("unit_type_names", "unit_type_shorthands"))
        keys += [k for k in extra if k.name not in seen]
    if mabrax:  # MABraxEnv's settings, passed on by **kwargs; env_name is the scenario's own
        extra, _ = _keys_of(mabrax_envs.MABraxEnv, skip=("env_name",))
        keys += [k for k in extra if k.name not in seen]
    keys = {k.name: k for k in keys}
    if mabrax:  # jmarl's AutoReset resets (keeping the final observation); brax's own reset would lose it
        keys["auto_reset"] = _Key("auto_reset", Literal[False], False)
    if "scenario" in keys or name in ("SMAX", "HeuristicEnemySMAX"):
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO, map_name_to_scenario

        keys["scenario"] = _Key("scenario", Optional[Literal[tuple(MAP_NAME_TO_SCENARIO)]], None,
                                lambda v: None if v is None else map_name_to_scenario(v))
    if name == "overcooked":
        from jaxmarl.environments.overcooked import overcooked_layouts

        keys["layout"] = _Key("layout", Literal[tuple(overcooked_layouts)], "cramped_room", overcooked_layouts.__getitem__)
    if name == "overcooked_v2":
        from jaxmarl.environments.overcooked_v2 import overcooked_v2_layouts

        keys["layout"] = _Key("layout", Literal[tuple(overcooked_v2_layouts)], "cramped_room")
    if name in ("overcooked", "overcooked_v2"):
        keys["shaped_reward_coef"] = _Key("shaped_reward_coef", float, 0.0, None)
        keys["shaped_reward_anneal_steps"] = _Key("shaped_reward_anneal_steps", int, 0, None)
    return list(keys.values())


_CLASSES: dict[str, type] = {}


def jaxmarl_env_class(name: str) -> type:
    """The jmarl environment class of ``jaxmarl:NAME`` (cached): ``cls(cls.Config(...))`` builds
    ``jaxmarl.make(NAME, ...)`` under ``FromJaxMARL``. Unknown names get "did you mean"; environments that
    need a missing optional package, or Python objects as settings, are refused saying so."""
    if name in _CLASSES:
        return _CLASSES[name]
    names = jaxmarl_env_names()
    if name not in names:
        raise ValueError(f"unknown JaxMARL environment {name!r}.{suggest(name, names, 'jaxmarl:')} "
                         f"JaxMARL registers: {names}")
    if (package := missing_dependency(name)) is not None:
        how = ("pip install 'jmarl[mabrax]'" if package == "brax" else
               "it is not on PyPI: install it from JaxRobotarium's repository")
        raise ValueError(f"jaxmarl:{name} needs the optional package {package!r}, which is not installed ({how})")
    if name in _PYTHON_ONLY:
        raise ValueError(f"jaxmarl:{name} needs {_PYTHON_ONLY[name]}, Python objects that KEY=VALUE cannot "
                         f"carry: build it in Python, from_jaxmarl(jaxmarl.make({name!r}, policy=..., params=...))")
    keys = _jaxmarl_keys(name)
    fields = [(k.name, k.type, dataclasses.field(default=k.default)) for k in keys]
    config_cls = dataclasses.make_dataclass("Config", fields, frozen=True)
    config_cls.__doc__ = f"Settings of jaxmarl:{name}: JaxMARL's constructor keywords (see docs/interop.md)."
    config_cls.__qualname__ = f"JaxMARL[{name}].Config"

    def __init__(self, config=None):
        import jaxmarl

        config = config if config is not None else config_cls()
        self.config = config
        kwargs = {k.name: k.to_jaxmarl(getattr(config, k.name)) for k in keys if k.to_jaxmarl is not None}
        adapter = {k.name: getattr(config, k.name) for k in keys if k.to_jaxmarl is None}
        try:  # building and probing one step (FromJaxMARL): JaxMARL checks few settings (num_agents=0 fails here)
            FromJaxMARL.__init__(self, jaxmarl.make(name, **kwargs), **adapter)
        except ConfigError:  # the adapter's own checks say what is wrong already
            raise
        except Exception as e:
            given = {k.name: getattr(config, k.name) for k in keys if getattr(config, k.name) != k.default}
            raise ValueError(f"JaxMARL's {name} does not build or step with the settings {given or '(defaults)'}: "
                             f"{type(e).__name__}: {e}") from e
        self.name = f"jaxmarl:{name}"

    cls = type(f"JaxMARL_{re.sub(r'[^0-9A-Za-z_]', '_', name)}", (FromJaxMARL,),
               {"Config": config_cls, "__init__": __init__, "jaxmarl_name": name, "name": f"jaxmarl:{name}",
                "__doc__": f"JaxMARL's {name} under jmarl's API (``jmarl.make('jaxmarl:{name}', **settings)``)."})
    _CLASSES[name] = cls
    return cls


# --------------------------------------------------------------------------------------------------
# jmarl -> JaxMARL
# --------------------------------------------------------------------------------------------------

@struct.dataclass
class ToJaxMARLState(JaxMARLState):
    """JaxMARL state (``done``, ``step``) holding the jmarl env state and what its last TimeStep showed.

    ``step`` is the counter the env uses: ``step_env`` writes it into the env state before stepping, so a
    JaxMARL user who sets it (``state.replace(step=env.max_steps)``) moves the env's time limit. Any other
    attribute is read from the env state (``state.agent_pos`` is the MPE state's), as JaxMARL code reads
    its envs' state fields.
    """

    env_state: Any
    obs: dict[str, jax.Array]  # {team: f32[N, *O]}
    global_state: jax.Array  # f32[G]
    avail_actions: dict[str, jax.Array]  # {team: bool[N, A]}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "env_state":  # not yet set (unpickling, unflattening)
            raise AttributeError(name)
        return getattr(self.env_state, name)


def _step_path(state: Any) -> tuple[str, ...] | None:
    """Attribute path to the env's scalar step counter, through wrapper states' ``env_state``."""
    path: tuple[str, ...] = ()
    obj = state
    while obj is not None:
        step = getattr(obj, "step", None)
        if step is not None and jnp.shape(step) == ():
            return path + ("step",)
        obj, path = getattr(obj, "env_state", None), path + ("env_state",)
    return None


def _replace_path(obj: Any, path: Sequence[str], value: Any) -> Any:
    if len(path) == 1:
        return obj.replace(**{path[0]: jnp.asarray(value, jnp.asarray(getattr(obj, path[0])).dtype)})
    return obj.replace(**{path[0]: _replace_path(getattr(obj, path[0]), path[1:], value)})


class ToJaxMARL(MultiAgentEnv):
    """A jmarl ``Environment`` under JaxMARL's dict API (build with ``to_jaxmarl``).

    Agents are named ``f"{team}_{i}"``. ``step`` auto-resets when ``dones["__all__"]`` (JaxMARL's base
    class ``step``, including its ``reset_state``); ``step_env`` does not. Every agent's ``dones`` entry is
    the episode's done flag.

    Actions: whatever JaxMARL's own envs accept per agent — a scalar or a one-element array (``(1,)``, as
    ``unbatchify`` leaves them) for a Discrete space, any array of the right size for a Box, of any
    numeric dtype — is reshaped to the space's shape and cast (ints for Discrete, f32 for Box).

    Infos: every entry has a leading agent axis of ``num_agents`` (what JaxMARL's baselines reshape infos
    to): the env's per-episode scalars (SMAX's ``won``) are repeated for each agent, its per-team entries
    ({team: [N, ...]}) concatenated in agent order; plus "terminated" and "truncated" as bool[M].

    episode_length: "jmarl" (default): an episode ends at the env's own time limit, ``max_steps``
        transitions (PettingZoo's MPE: 25). "jaxmarl": JaxMARL's convention, done when ``step >= max_steps``
        *before* the step, so ``max_steps + 1`` transitions (JaxMARL's MPE and SMAX: 26 and 101); the env
        is stepped past its own limit (its truncation flag is then ignored; termination still ends the
        episode).
    world_state: the observation dict also has "world_state", the env's global state (as JaxMARL's SMAX).
    Observation spaces are unbounded Boxes.
    """

    def __init__(self, env: Environment, world_state: bool = True,
                 episode_length: Literal["jmarl", "jaxmarl"] = "jmarl"):
        if episode_length not in ("jmarl", "jaxmarl"):
            raise ValueError(f"episode_length must be 'jmarl' or 'jaxmarl', got {episode_length!r}")
        super().__init__(env.num_agents)
        self.env = env
        self.world_state = world_state
        self.episode_length = episode_length
        self.team_agents = {t: [f"{t}_{i}" for i in range(team.num_agents)] for t, team in env.teams.items()}
        self.agents = [a for agents in self.team_agents.values() for a in agents]
        self._index = {a: (t, i) for t, agents in self.team_agents.items() for i, a in enumerate(agents)}
        self.observation_spaces = {a: jm_spaces.Box(-jnp.inf, jnp.inf, env.teams[t].obs_shape)
                                   for a, (t, _) in self._index.items()}
        self.action_spaces = {a: action_space_to_jaxmarl(env.teams[t].action_space)
                              for a, (t, _) in self._index.items()}
        self.max_steps = env.max_steps
        # The most transitions in an episode under the chosen convention.
        self.transitions = env.max_steps + (episode_length == "jaxmarl")
        ts, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        self._step_path = _step_path(state)
        self._info_template = dict(ts.info)  # shapes of the env's info: how each entry becomes per agent

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

    # -- infos: per agent for JaxMARL, and back for from_jaxmarl --------------------------------------

    def _is_team_dict(self, value: Any) -> bool:
        """A dict {team: x[N, ...]} with the same trailing shape for every team (EpisodeStats' returns)."""
        if not isinstance(value, Mapping) or set(value) != set(self.env.teams):
            return False
        if any(isinstance(v, Mapping) for v in value.values()):
            return False
        return len({_shape(v)[1:] for v in value.values()}) == 1 and all(
            _shape(value[t])[:1] == (n.num_agents,) for t, n in self.env.teams.items())

    def _agent_infos(self, info: Any, template: Any) -> Any:
        """The env's ``info`` with a leading agent axis [M, ...] on every entry: scalars repeated for each
        agent, per-team entries concatenated in agent order, dicts converted entry by entry; anything else
        (already per agent, or of another shape) as it is. ``template``: the reset info's shapes."""
        if self._is_team_dict(template):
            return jnp.concatenate([jnp.asarray(info[t]) for t in self.team_agents])
        if isinstance(template, Mapping):
            return {k: self._agent_infos(info[k], template[k]) for k in template}
        if _shape(template) == ():
            return jnp.full((self.num_agents,), info)
        return info

    def _team_infos(self, infos: Any, template: Any) -> Any:
        if self._is_team_dict(template):
            out, start = {}, 0
            for t, agents in self.team_agents.items():
                out[t], start = infos[start:start + len(agents)], start + len(agents)
            return out
        if isinstance(template, Mapping):
            return {k: self._team_infos(infos[k], template[k]) for k in template}
        return infos[0] if _shape(template) == () else infos

    def team_infos(self, infos: Mapping[str, Any]) -> dict[str, Any]:
        """The inverse of ``step_env``'s per-agent infos (less the end flags): the env's own ``info``."""
        return self._team_infos(dict(infos), self._info_template)

    # -- the JaxMARL API ----------------------------------------------------------------------------

    def _state(self, ts: TimeStep, env_state: Any, step: jax.Array, done: jax.Array) -> ToJaxMARLState:
        return ToJaxMARLState(done=done, step=step, env_state=env_state, obs=ts.obs,
                              global_state=ts.global_state, avail_actions=ts.avail_actions)

    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key: jax.Array) -> tuple[dict[str, jax.Array], ToJaxMARLState]:
        ts, env_state = self.env.reset(key)
        state = self._state(ts, env_state, jnp.zeros((), jnp.int32), ts.done)
        return self.get_obs(state), state

    def _team_actions(self, actions: Mapping[str, Any]) -> dict[str, jax.Array]:
        """{agent: action in any form JaxMARL's envs accept} -> {team: [N, ...]} of the env's dtype."""
        out = {}
        for t, agents in self.team_agents.items():
            space = self.env.teams[t].action_space
            per_agent = []
            for a in agents:
                act = jnp.asarray(actions[a])
                if act.size != max(1, math.prod(space.shape)):
                    raise ValueError(f"{self.name}: agent {a!r} action has shape {act.shape}, expected "
                                     f"{tuple(space.shape) or 'a scalar'} (or the same number of entries) for {space}")
                per_agent.append(act.reshape(space.shape).astype(space.dtype))
            out[t] = jnp.stack(per_agent)
        return out

    def step_env(self, key: jax.Array, state: ToJaxMARLState, actions: Mapping[str, Any]):
        """One transition without reset: (obs, state, rewards, dones, infos), all keyed by agent."""
        env_state = state.env_state
        if self._step_path is not None:  # the counter a JaxMARL user sets is the one the env reads
            env_state = _replace_path(env_state, self._step_path, state.step)
        ts, env_state = self.env.step(key, env_state, self._team_actions(actions))
        terminated, truncated = ts.terminated, ts.truncated
        if self.episode_length == "jaxmarl":  # JaxMARL: done = step >= max_steps, checked before the step
            truncated = ~terminated & (state.step >= self.max_steps)
        done = terminated | truncated
        state = self._state(ts, env_state, state.step + 1, done)
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        infos = self._agent_infos(dict(ts.info), self._info_template)
        infos.update({TERMINATED: jnp.full((self.num_agents,), terminated),
                      TRUNCATED: jnp.full((self.num_agents,), truncated)})
        return self.get_obs(state), state, self._split(ts.reward), dones, infos

    def get_obs(self, state: ToJaxMARLState) -> dict[str, jax.Array]:
        obs = self._split(state.obs)
        if self.world_state:
            obs["world_state"] = state.global_state
        return obs

    def get_avail_actions(self, state: ToJaxMARLState) -> dict[str, jax.Array]:
        """{agent: bool[A]}."""
        return self._split(state.avail_actions)


def to_jaxmarl(env: Environment, world_state: bool = True,
               episode_length: Literal["jmarl", "jaxmarl"] = "jmarl") -> ToJaxMARL:
    """Run jmarl environment ``env`` under JaxMARL's dict API (see ``ToJaxMARL``)."""
    return ToJaxMARL(env, world_state=world_state, episode_length=episode_length)
