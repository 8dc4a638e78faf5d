"""simple_speaker_listener (PettingZoo ``simple_speaker_listener_v4``): a speaker who cannot move tells
a listener who cannot see the goal which of three landmarks to go to.

Teams, in mpe2's order: "speaker" (``speaker_0``) and "listener" (``listener_0``), one agent each. Three
landmarks (size 0.04) coloured red, green, blue; one (uniform) is the goal. Nothing collides.

Actions, as mpe2 composes them (C = 3 words):
- speaker: it only speaks. Discrete(3): the word, said as a one-hot vector; or Box(0, 1, (3,)): the
  utterance itself (clipped to [0, 1]).
- listener: it only moves (silent). Discrete(5) moves or Box(0, 1, (5,)).

Observations:
- speaker f32[3]: the goal landmark's colour (mpe2's: 0.65 in its own channel, 0.15 in the others).
- listener f32[11]: ``[own vel (2), landmark - own pos (6), the speaker's utterance (3)]``; the
  utterance is what the speaker said on the step just taken (zeros after reset).

Reward (both agents): ``-|listener - goal|^2``. ``info["goal"]`` (i32[]): the goal landmark's index.

``comm_randomised=True``: the listener hears a uniformly random word (or vector) instead of the speaker's
(``core.py``); the channel's causal value is the listener's return with and without it.

Scripted heuristic (``heuristic_actions``): the speaker says the goal's index; the listener heads for the
landmark the speaker's last word names (reading only its observation; it waits until a word arrives).
Measured over 200 episodes: return -9.1 (random -38.1; the listener following a random speaker's words -18.7).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.scene import Scene
from jmarl.envs.mpe.core import DEFAULT_ACCEL, CommState, Geometry, MPEEnv, World, steer, uniform
from jmarl.envs.mpe.palette import hex_color, recolor

AGENT_SIZE, LANDMARK_SIZE = 0.075, 0.04
NUM_LANDMARKS = 3
DIM_C = 3
LANDMARK_COLORS = np.full((NUM_LANDMARKS, 3), 0.15, np.float32) + 0.5 * np.eye(NUM_LANDMARKS, 3, dtype=np.float32)


@struct.dataclass
class SpeakerListenerState(CommState):
    goal: jax.Array  # i32[]  index of the goal landmark


class SimpleSpeakerListener(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        max_steps: int = 25
        continuous_actions: bool = False
        comm_randomised: bool = False  # heard utterances replaced by random ones (causal value; core.py)

    name = "mpe_speaker_listener"
    objective = "return"  # one goal, one reward: the headline sums both teams
    comm_receivers = ("listener",)  # it hears the speaker

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.world = World(agent_size=(AGENT_SIZE,) * 2, landmark_size=(LANDMARK_SIZE,) * NUM_LANDMARKS,
                           agent_accel=(DEFAULT_ACCEL,) * 2, agent_movable=(False, True),
                           agent_silent=(False, True), dim_c=DIM_C)
        self.team_sizes = {"speaker": 1, "listener": 1}
        self.obs_sizes = {"speaker": 3, "listener": 2 + 2 * NUM_LANDMARKS + DIM_C}

    def _initial_state(self, key: jax.Array) -> SpeakerListenerState:
        # One draw for the positions and the goal (a reset runs every step under AutoReset).
        u = uniform(key, 2 * (2 + NUM_LANDMARKS) + 1)
        pos = (2.0 * u[:-1] - 1.0).reshape(2 + NUM_LANDMARKS, 2)
        goal = jnp.minimum((u[-1] * NUM_LANDMARKS).astype(jnp.int32), NUM_LANDMARKS - 1)
        zeros = jnp.zeros((2, 2), jnp.float32)
        return SpeakerListenerState(pos[:2], zeros, pos[2:], jnp.zeros((), jnp.int32),
                                    jnp.zeros((2, DIM_C), jnp.float32), goal)

    def _goal_mask(self, state: SpeakerListenerState) -> jax.Array:
        """f32[L] one-hot of the goal: selects by a product, not a gather."""
        return (jnp.arange(NUM_LANDMARKS) == state.goal).astype(jnp.float32)

    def _observe(self, state: SpeakerListenerState, geo: Geometry) -> dict[str, jax.Array]:
        goal_color = self._goal_mask(state) @ jnp.asarray(LANDMARK_COLORS)  # f32[3]
        listener = jnp.concatenate([state.agent_vel[1], geo.relative()[1, :2 * NUM_LANDMARKS], state.comm[0]])
        return {"speaker": goal_color[None], "listener": listener[None]}

    def _rewards(self, state: SpeakerListenerState, geo: Geometry) -> dict[str, jax.Array]:
        goal = self._goal_mask(state)
        dist2 = jnp.sum((jnp.square(geo.dx[1, :NUM_LANDMARKS]) + jnp.square(geo.dy[1, :NUM_LANDMARKS])) * goal)
        reward = jnp.full((1,), -dist2, jnp.float32)
        return {"speaker": reward, "listener": reward}

    def _info(self, state: SpeakerListenerState) -> dict[str, jax.Array]:
        return {"goal": state.goal}

    def heuristic_actions(self, key: jax.Array, state: SpeakerListenerState, team: str) -> jax.Array:
        """The scripted policy of ``team`` (deterministic). Speaker: i32[1] the goal's index, or f32[1, 3]
        its one-hot word. Listener: i32[1] moves, or f32[1, 5], towards the landmark last named."""
        continuous = self.config.continuous_actions
        if team == "speaker":
            return jax.nn.one_hot(state.goal[None], DIM_C) if continuous else state.goal[None].astype(jnp.int32)
        if team == "listener":
            word = state.comm[0]  # f32[C]: what the listener observes
            named = jax.nn.one_hot(jnp.argmax(word), NUM_LANDMARKS) * jnp.any(word > 0)  # zeros: nothing said yet
            target = named @ state.landmark_pos + (1.0 - jnp.sum(named)) * state.agent_pos[1]
            return steer((target - state.agent_pos[1])[None], continuous)
        raise ValueError(f"mpe_speaker_listener: no team {team!r}; teams are {list(self.team_sizes)}")

    def render_scene(self, states: SpeakerListenerState) -> Scene:
        """mpe2's landmark colours; the goal drawn as a star."""
        return recolor(super().render_scene(states), self.world.num_agents, [hex_color(c) for c in LANDMARK_COLORS],
                       goals=states.goal[:1], team_sizes=self.team_sizes)
