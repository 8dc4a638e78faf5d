"""simple_tag (PettingZoo ``simple_tag_v3``): slower predators chase faster prey around obstacles.

Teams "adversaries" (the predators, first in mpe2's order) and "prey" (mpe2's good agents), G of them.
Observation of every agent: ``[own vel (2), own pos (2), obstacle - own pos (2L), other agent - own
pos (2(A-1)), velocities of the *other* prey (2G or 2(G-1))]``: 16 for a predator, 14 for the prey by default.

Rewards: every predator gets +10 per (prey, predator) pair touching; a prey gets -10 per predator
touching it and a penalty for leaving the arena (per coordinate, 0 below 0.9, linear to 1 at 1.0,
then ``min(exp(2x - 2), 10)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.envs.mpe.core import Geometry, MPEEnv, MPEState, World, drop_diagonal, uniform_positions

ADVERSARY_SIZE, PREY_SIZE, OBSTACLE_SIZE = 0.075, 0.05, 0.2
ADVERSARY_ACCEL, PREY_ACCEL = 3.0, 4.0
ADVERSARY_MAX_SPEED, PREY_MAX_SPEED = 1.0, 1.3
OBSTACLE_RANGE = 0.9  # obstacles start in [-0.9, 0.9]^2, agents in [-1, 1]^2


def out_of_bounds_penalty(pos: jax.Array) -> jax.Array:
    """f32[N]: mpe2's penalty for |x| or |y| beyond 0.9, summed over the two coordinates."""
    x = jnp.abs(pos)
    penalty = jnp.where(x < 1.0, (x - 0.9) * 10.0, jnp.minimum(jnp.exp(2.0 * x - 2.0), 10.0))
    return jnp.sum(jnp.where(x < 0.9, 0.0, penalty), axis=-1)


class SimpleTag(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        num_good: int = 1
        num_adversaries: int = 3
        num_obstacles: int = 2
        max_steps: int = 25
        continuous_actions: bool = False

    name = "mpe_tag"

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        na, ng = config.num_adversaries, config.num_good
        if na < 1 or ng < 1 or config.num_obstacles < 0:
            raise ValueError(f"mpe_tag: needs at least one adversary and one prey, got {config}")
        self.world = World(
            agent_size=(ADVERSARY_SIZE,) * na + (PREY_SIZE,) * ng,
            landmark_size=(OBSTACLE_SIZE,) * config.num_obstacles,
            agent_accel=(ADVERSARY_ACCEL,) * na + (PREY_ACCEL,) * ng,
            agent_max_speed=(ADVERSARY_MAX_SPEED,) * na + (PREY_MAX_SPEED,) * ng,
            agents_collide=True,
            landmarks_collide=True,
        )
        self.team_sizes = {"adversaries": na, "prey": ng}
        base = 4 + 2 * config.num_obstacles + 2 * (na + ng - 1)
        self.obs_sizes = {"adversaries": base + 2 * ng, "prey": base + 2 * (ng - 1)}

    def _initial_state(self, key: jax.Array) -> MPEState:
        agent_pos, landmark_pos = uniform_positions(key, self.world, OBSTACLE_RANGE)
        return MPEState(agent_pos, jnp.zeros_like(agent_pos), landmark_pos, jnp.zeros((), jnp.int32))

    def _observe(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        na, ng = self.team_sizes["adversaries"], self.team_sizes["prey"]
        common = jnp.concatenate([state.agent_vel, state.agent_pos, geo.relative()], axis=1)  # f32[A, base]
        prey_vel = state.agent_vel[na:]  # f32[G, 2]
        adv_sees = jnp.broadcast_to(prey_vel.reshape(1, 2 * ng), (na, 2 * ng))
        prey_sees = drop_diagonal(jnp.broadcast_to(prey_vel[None], (ng, ng, 2))).reshape(ng, -1)
        return {"adversaries": jnp.concatenate([common[:na], adv_sees], axis=1),
                "prey": jnp.concatenate([common[na:], prey_sees], axis=1)}

    def _rewards(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        na, first = self.team_sizes["adversaries"], self.world.num_landmarks
        # A prey's other agents start with the predators (lower indices): f32[G, na]
        caught = geo.dist[na:, first:first + na] < np.float32(PREY_SIZE + ADVERSARY_SIZE)
        hits = jnp.sum(caught, axis=1, dtype=jnp.float32)  # f32[G]
        prey = -10.0 * hits - out_of_bounds_penalty(state.agent_pos[na:])
        return {"adversaries": jnp.full((na,), 10.0 * jnp.sum(hits), jnp.float32), "prey": prey}
