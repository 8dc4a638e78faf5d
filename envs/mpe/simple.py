"""simple (PettingZoo ``simple_v3``): one agent goes to one landmark (a single-agent debugging task).

Team "agents" (1 agent, ``agent_0``). Observation f32[4]: ``[own vel (2), landmark - own pos (2)]``.
Actions: Discrete(5) moves (0 no-op, 1 left, 2 right, 3 down, 4 up) or Box(0, 1, (5,)); the agent is
silent. Reward: ``-|agent - landmark|^2`` (the squared distance). Agent and landmark start uniform in
[-1, 1]^2; nothing collides. Episodes are ``max_steps`` (25) transitions, then truncated.

Scripted heuristic (``heuristic_actions``): head straight for the landmark (measured over 200 episodes:
return -9.3; uniformly random play -43.8).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jmarl.core.scene import Scene
from jmarl.envs.mpe.core import DEFAULT_ACCEL, Geometry, MPEEnv, MPEState, World, steer, uniform_positions
from jmarl.envs.mpe.palette import hex_color, recolor

ENTITY_SIZE = 0.05  # mpe2's default size, for the agent and the landmark
LANDMARK_COLOR = (0.75, 0.25, 0.25)  # mpe2's (drawn only)


class Simple(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        max_steps: int = 25
        continuous_actions: bool = False

    name = "mpe_simple"

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.world = World(agent_size=(ENTITY_SIZE,), landmark_size=(ENTITY_SIZE,), agent_accel=(DEFAULT_ACCEL,))
        self.team_sizes = {"agents": 1}
        self.obs_sizes = {"agents": 4}

    def _initial_state(self, key: jax.Array) -> MPEState:
        agent_pos, landmark_pos = uniform_positions(key, self.world)
        return MPEState(agent_pos, jnp.zeros_like(agent_pos), landmark_pos, jnp.zeros((), jnp.int32))

    def _observe(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        return {"agents": jnp.concatenate([state.agent_vel, geo.relative()], axis=1)}  # no other agents: K = L

    def _rewards(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        return {"agents": -(jnp.square(geo.dx[:, 0]) + jnp.square(geo.dy[:, 0]))}

    def heuristic_actions(self, key: jax.Array, state: MPEState, team: str = "agents") -> jax.Array:
        """Head for the landmark (deterministic): i32[1], or f32[1, 5] with ``continuous_actions``."""
        if team != "agents":
            raise ValueError(f"mpe_simple: no team {team!r}; the team is 'agents'")
        return steer(state.landmark_pos - state.agent_pos, self.config.continuous_actions)

    def render_scene(self, states: MPEState) -> Scene:
        """mpe2's colours: the landmark red."""
        red = hex_color(LANDMARK_COLOR)
        return recolor(super().render_scene(states), 1, [red], team_sizes=self.team_sizes,
                       legend={"landmark": (red, "o")})
