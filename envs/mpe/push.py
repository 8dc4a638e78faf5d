"""simple_push (PettingZoo ``simple_push_v3``): an agent reaches a goal landmark; an adversary, who is
not told which landmark, pushes it away.

Teams "adversaries" (``adversary_0``, first in mpe2's order) and "agents" (``agent_0``), one agent each as
in mpe2. Two landmarks; one of them (uniform) is the goal. Agents collide with each other (size 0.05),
not with landmarks. Both are silent: Discrete(5) moves or Box(0, 1, (5,)).

Observations:
- adversary f32[8]: ``[own vel (2), landmark - own pos (2L), other agent - own pos (2)]``
- agent f32[19]: ``[own vel (2), goal - own pos (2), own colour (3), landmark - own pos (2L),
  landmark colours (3L), other agent - own pos (2)]``. The colours are mpe2's: landmark i is 0.1 grey
  plus 0.8 in channel i + 1 (green, blue); the agent is 0.25 grey plus 0.5 in the goal's channel, so its
  own colour tells it the goal a second time.

Rewards: agent ``-dist(agent, goal)``; adversary ``min over agents of dist(agent, goal) - dist(adversary,
goal)``. ``info["goal"]`` (i32[]): the goal landmark's index.

Scripted heuristic (``heuristic_actions``, from the state): the agent heads for the goal; the adversary
is told the goal (a strong opponent) and heads for it too, to stand in the way. Measured over 200
episodes, each alone against a random opponent: agent return -10.1 (random -26.6), adversary +15.8 (random -2.9).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.scene import Scene
from jmarl.envs.mpe.core import DEFAULT_ACCEL, Geometry, MPEEnv, MPEState, World, steer, uniform
from jmarl.envs.mpe.palette import hex_color, recolor

ENTITY_SIZE = 0.05  # mpe2's default size, for agents and landmarks
NUM_LANDMARKS = 2
# mpe2's colours (observed by the agent): landmark i is 0.1 plus 0.8 in channel i + 1.
LANDMARK_COLORS = np.full((NUM_LANDMARKS, 3), 0.1, np.float32) + 0.8 * np.eye(NUM_LANDMARKS, 3, 1, dtype=np.float32)


@struct.dataclass
class PushState(MPEState):
    goal: jax.Array  # i32[]  index of the goal landmark


class SimplePush(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        max_steps: int = 25
        continuous_actions: bool = False

    name = "mpe_push"
    objective = "return/agents"  # the headline (jmarl.agents.rollout): the agent that seeks the goal

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.world = World(agent_size=(ENTITY_SIZE,) * 2, landmark_size=(ENTITY_SIZE,) * NUM_LANDMARKS,
                           agent_accel=(DEFAULT_ACCEL,) * 2, agents_collide=True)
        self.team_sizes = {"adversaries": 1, "agents": 1}
        self.obs_sizes = {"adversaries": 2 + 2 * NUM_LANDMARKS + 2, "agents": 2 + 2 + 3 + 5 * NUM_LANDMARKS + 2}

    def _initial_state(self, key: jax.Array) -> PushState:
        # One draw for the positions and the goal (a reset runs every step under AutoReset).
        u = uniform(key, 2 * (2 + NUM_LANDMARKS) + 1)
        pos = (2.0 * u[:-1] - 1.0).reshape(2 + NUM_LANDMARKS, 2)
        goal = jnp.minimum((u[-1] * NUM_LANDMARKS).astype(jnp.int32), NUM_LANDMARKS - 1)
        return PushState(pos[:2], jnp.zeros((2, 2), jnp.float32), pos[2:], jnp.zeros((), jnp.int32), goal)

    def _goal_mask(self, state: PushState) -> jax.Array:
        """f32[L] one-hot of the goal: selects by a product, not a gather."""
        return (jnp.arange(NUM_LANDMARKS) == state.goal).astype(jnp.float32)

    def _observe(self, state: PushState, geo: Geometry) -> dict[str, jax.Array]:
        goal = self._goal_mask(state)
        seen = geo.relative()  # f32[2, 2K]: landmarks, then the other agent
        to_goal = jnp.stack([jnp.sum(geo.dx[1, :NUM_LANDMARKS] * goal), jnp.sum(geo.dy[1, :NUM_LANDMARKS] * goal)])
        color = 0.25 + 0.5 * jnp.concatenate([jnp.zeros((1,)), goal])  # f32[3]: 0.25 grey, + 0.5 in channel goal + 1
        agent = jnp.concatenate([state.agent_vel[1], to_goal, color, seen[1, :2 * NUM_LANDMARKS],
                                 jnp.asarray(LANDMARK_COLORS).reshape(-1), seen[1, 2 * NUM_LANDMARKS:]])
        return {"adversaries": jnp.concatenate([state.agent_vel[:1], seen[:1]], axis=1), "agents": agent[None]}

    def _rewards(self, state: PushState, geo: Geometry) -> dict[str, jax.Array]:
        to_goal = jnp.sum(geo.dist[:, :NUM_LANDMARKS] * self._goal_mask(state), axis=1)  # f32[2]
        return {"adversaries": to_goal[1:] - to_goal[:1], "agents": -to_goal[1:]}

    def _info(self, state: PushState) -> dict[str, jax.Array]:
        return {"goal": state.goal}

    def heuristic_actions(self, key: jax.Array, state: PushState, team: str) -> jax.Array:
        """The scripted policy of ``team`` (deterministic): both head for the goal. i32[1] moves, or
        f32[1, 5] with ``continuous_actions``."""
        index = {"adversaries": 0, "agents": 1}
        if team not in index:
            raise ValueError(f"mpe_push: no team {team!r}; teams are {list(self.team_sizes)}")
        goal = jnp.sum(state.landmark_pos * self._goal_mask(state)[:, None], axis=0)  # f32[2]
        i = index[team]
        return steer(goal[None] - state.agent_pos[i:i + 1], self.config.continuous_actions)

    def render_scene(self, states: PushState) -> Scene:
        """mpe2's landmark colours; the goal drawn as a star."""
        return recolor(super().render_scene(states), self.world.num_agents, [hex_color(c) for c in LANDMARK_COLORS],
                       goals=states.goal[:1], team_sizes=self.team_sizes)
