"""simple_reference (PettingZoo ``simple_reference_v3``): two agents each know where the *other* must go,
and must tell it.

Team "agents" (``agent_0``, ``agent_1``). Three landmarks coloured red, green, blue (mpe2's: 0.75 in
their own channel, 0.25 in the others). Agent i is told ``goals[i]``, the landmark agent 1 - i must
reach (each drawn uniformly). Nothing collides. ``comm_randomised=True``: each agent hears a uniformly
random word (or vector) instead of the other's (``core.py``: the channel's causal value).

Actions, as mpe2 composes them (both agents move and speak; C = 10 words):
- Discrete(50): ``move + 5 * word`` with move in 0..4 (no-op, left, right, down, up) and word in 0..9,
  said as a one-hot vector;
- Box(0, 1, (15,)): ``[move (5), utterance (10)]``, the utterance clipped to [0, 1] and said as it is.

Observation of agent i, f32[21]: ``[own vel (2), landmark - own pos (6), colour of goals[i] (3), the
other agent's utterance (10)]``; the utterance is what it said on the step just taken (zeros after reset).

Reward of agent i: ``(1 - local_ratio) * global + local_ratio * local_i`` with ``local_i = -dist(agent
1 - i, landmark goals[i])`` and ``global`` the mean of the two. ``info["goals"]`` (i32[2], per agent):
``goals[i]``, the landmark agent i must lead the other to.

Scripted heuristic (``heuristic_actions``): each agent says its ``goals[i]`` and heads for the landmark
the other agent last named (reading only its observation; it waits until a word arrives). Measured over
200 episodes: team return (both agents) -22.2, random -55.8.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.scene import Scene
from jmarl.envs.mpe.core import DEFAULT_ACCEL, NUM_ACTIONS, CommState, Geometry, MPEEnv, World, steer, uniform
from jmarl.envs.mpe.palette import hex_color, recolor

ENTITY_SIZE = 0.05  # mpe2's default size, for agents and landmarks
NUM_LANDMARKS = 3
DIM_C = 10
LANDMARK_COLORS = np.full((NUM_LANDMARKS, 3), 0.25, np.float32) + 0.5 * np.eye(NUM_LANDMARKS, 3, dtype=np.float32)


@struct.dataclass
class ReferenceState(CommState):
    goals: jax.Array  # i32[2]  goals[i]: the landmark agent i is told, where agent 1 - i must go


class SimpleReference(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        local_ratio: float = 0.5
        max_steps: int = 25
        continuous_actions: bool = False
        comm_randomised: bool = False  # heard utterances replaced by random ones (causal value; core.py)

    name = "mpe_reference"
    comm_receivers = ("agents",)  # each agent hears the other

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        if not 0.0 <= config.local_ratio <= 1.0:
            raise ValueError(f"mpe_reference: local_ratio must be in [0, 1], got {config.local_ratio}")
        self.world = World(agent_size=(ENTITY_SIZE,) * 2, landmark_size=(ENTITY_SIZE,) * NUM_LANDMARKS,
                           agent_accel=(DEFAULT_ACCEL,) * 2, agent_silent=(False, False), dim_c=DIM_C)
        self.team_sizes = {"agents": 2}
        self.obs_sizes = {"agents": 2 + 2 * NUM_LANDMARKS + 3 + DIM_C}

    def _initial_state(self, key: jax.Array) -> ReferenceState:
        # One draw for the positions and both goals (a reset runs every step under AutoReset).
        u = uniform(key, 2 * (2 + NUM_LANDMARKS) + 2)
        pos = (2.0 * u[:-2] - 1.0).reshape(2 + NUM_LANDMARKS, 2)
        goals = jnp.minimum((u[-2:] * NUM_LANDMARKS).astype(jnp.int32), NUM_LANDMARKS - 1)
        return ReferenceState(pos[:2], jnp.zeros((2, 2), jnp.float32), pos[2:], jnp.zeros((), jnp.int32),
                              jnp.zeros((2, DIM_C), jnp.float32), goals)

    def _goal_masks(self, state: ReferenceState) -> jax.Array:
        """f32[2, L]: row i one-hot of goals[i] (a product selects, not a gather)."""
        return (jnp.arange(NUM_LANDMARKS)[None, :] == state.goals[:, None]).astype(jnp.float32)

    def _observe(self, state: ReferenceState, geo: Geometry) -> dict[str, jax.Array]:
        goal_color = self._goal_masks(state) @ jnp.asarray(LANDMARK_COLORS)  # f32[2, 3]
        heard = state.comm[::-1]  # f32[2, C]: agent i hears agent 1 - i
        obs = jnp.concatenate([state.agent_vel, geo.relative()[:, :2 * NUM_LANDMARKS], goal_color, heard], axis=1)
        return {"agents": obs}

    def _rewards(self, state: ReferenceState, geo: Geometry) -> dict[str, jax.Array]:
        # local_i: the *other* agent's distance (row 1 - i) to landmark goals[i]
        local = -jnp.sum(geo.dist[::-1, :NUM_LANDMARKS] * self._goal_masks(state), axis=1)  # f32[2]
        ratio = self.config.local_ratio
        return {"agents": jnp.mean(local) * (1.0 - ratio) + local * ratio}

    def _info(self, state: ReferenceState) -> dict[str, jax.Array]:
        return {"goals": state.goals}

    def heuristic_actions(self, key: jax.Array, state: ReferenceState, team: str = "agents") -> jax.Array:
        """The scripted policy (deterministic): i32[2] ``move + 5 * goals[i]``, or f32[2, 15]
        ``[move, one-hot goals[i]]`` with ``continuous_actions``; the move heads for the landmark the
        other agent last named."""
        if team != "agents":
            raise ValueError(f"mpe_reference: no team {team!r}; the team is 'agents'")
        continuous = self.config.continuous_actions
        heard = state.comm[::-1]  # f32[2, C]
        named = jax.nn.one_hot(jnp.argmax(heard, axis=1), NUM_LANDMARKS) * jnp.any(heard > 0, axis=1, keepdims=True)
        target = named @ state.landmark_pos + (1.0 - jnp.sum(named, axis=1, keepdims=True)) * state.agent_pos
        move = steer(target - state.agent_pos, continuous)
        if continuous:
            return jnp.concatenate([move, jax.nn.one_hot(state.goals, DIM_C)], axis=1)
        return move + NUM_ACTIONS * state.goals

    def render_scene(self, states: ReferenceState) -> Scene:
        """mpe2's landmark colours; the goals drawn as stars."""
        return recolor(super().render_scene(states), self.world.num_agents, [hex_color(c) for c in LANDMARK_COLORS],
                       goals=states.goals[0], team_sizes=self.team_sizes)
