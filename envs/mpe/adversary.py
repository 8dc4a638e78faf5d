"""simple_adversary (PettingZoo ``simple_adversary_v3``): good agents guard a goal the adversary must guess.

Teams "adversaries" (1 in mpe2, first in its order) and "agents" (N good agents). One of the N
landmarks is the goal; good agents know which, the adversary does not. Nobody collides.

Observations (N = 2: 8 for the adversary, 10 for a good agent):
- adversary: ``[landmark - own pos (2L), other agent - own pos (2(A-1))]``
- good agent: ``[goal - own pos (2), landmark - own pos (2L), other agent - own pos (2(A-1))]``

Rewards: an adversary gets ``-dist(itself, goal)``; every good agent gets
``-min over good agents of dist(goal) + sum over adversaries of dist(goal)``.

Scripted heuristic (``heuristic_actions``, from the state): adversaries head for the goal (they are told
it: a strong opponent); good agent i heads for landmark i (mod N), so the goal is covered and so is
every decoy.

Competitive metrics (``info["metrics"]``, summed per episode by ``EpisodeStats`` into ``eval/metric/NAME``),
both **per-episode means** over the positions after each of the episode's ``max_steps`` steps (each step
reports its distance / ``max_steps``): ``good_to_goal``, the distance from the goal to the nearest good
agent; ``adversary_to_goal``, the adversaries' distance to the goal (their mean where there are several).
Lower is better for the team they measure. The default objective is the good agents' return,
``return/agents``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.config import require_at_least
from jmarl.envs.mpe.core import DEFAULT_ACCEL, Geometry, MPEEnv, MPEState, World, steer, uniform

AGENT_SIZE, LANDMARK_SIZE = 0.15, 0.08


@struct.dataclass
class AdversaryState(MPEState):
    goal: jax.Array  # i32[]  index of the goal landmark


class SimpleAdversary(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        num_good: int = 2  # mpe2's N: good agents and landmarks
        num_adversaries: int = 1  # mpe2 has exactly one; more is a jmarl extension
        max_steps: int = 25
        continuous_actions: bool = False

    name = "mpe_adversary"
    objective = "return/agents"  # the headline: the good agents' return (they guard the goal)

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        na, ng = config.num_adversaries, config.num_good
        require_at_least("mpe_adversary", config, num_adversaries=1, num_good=1)
        n = na + ng
        self.world = World(agent_size=(AGENT_SIZE,) * n, landmark_size=(LANDMARK_SIZE,) * ng,
                           agent_accel=(DEFAULT_ACCEL,) * n)
        self.team_sizes = {"adversaries": na, "agents": ng}
        base = 2 * ng + 2 * (n - 1)
        self.obs_sizes = {"adversaries": base, "agents": 2 + base}

    def _initial_state(self, key: jax.Array) -> AdversaryState:
        # One draw for positions and the goal (a reset runs every step under AutoReset).
        n, num_landmarks = self.world.num_agents, self.world.num_landmarks
        u = uniform(key, 2 * (n + num_landmarks) + 1)
        pos = (2.0 * u[:-1] - 1.0).reshape(n + num_landmarks, 2)
        goal = jnp.minimum((u[-1] * num_landmarks).astype(jnp.int32), num_landmarks - 1)
        return AdversaryState(pos[:n], jnp.zeros((n, 2), jnp.float32), pos[n:], jnp.zeros((), jnp.int32), goal)

    def _goal_mask(self, state: AdversaryState) -> jax.Array:
        """f32[L] one-hot of the goal: selects by a product, not a gather."""
        return (jnp.arange(self.world.num_landmarks) == state.goal).astype(jnp.float32)

    def _observe(self, state: AdversaryState, geo: Geometry) -> dict[str, jax.Array]:
        na, num_landmarks = self.team_sizes["adversaries"], self.world.num_landmarks
        seen = geo.relative()  # f32[A, 2K]
        goal = self._goal_mask(state)
        to_goal = jnp.stack([jnp.sum(geo.dx[na:, :num_landmarks] * goal, axis=1),
                             jnp.sum(geo.dy[na:, :num_landmarks] * goal, axis=1)], axis=-1)  # f32[G, 2]
        return {"adversaries": seen[:na], "agents": jnp.concatenate([to_goal, seen[na:]], axis=1)}

    def _rewards(self, state: AdversaryState, geo: Geometry) -> dict[str, jax.Array]:
        na, ng = self.team_sizes["adversaries"], self.team_sizes["agents"]
        to_goal = jnp.sum(geo.dist[:, :self.world.num_landmarks] * self._goal_mask(state), axis=1)  # f32[A]
        good = jnp.sum(to_goal[:na]) - jnp.min(to_goal[na:])
        return {"adversaries": -to_goal[:na], "agents": jnp.full((ng,), good, jnp.float32)}

    def _info(self, state: AdversaryState) -> dict[str, jax.Array]:
        """``metrics``: this step's share (distance / max_steps) of the per-episode mean distances to the goal
        (see the module doc); zeros on a reset TimeStep (step 0)."""
        na = self.team_sizes["adversaries"]
        goal = jnp.sum(state.landmark_pos * self._goal_mask(state)[:, None], axis=0)  # f32[2]
        to_goal = jnp.sqrt(jnp.sum(jnp.square(state.agent_pos - goal), axis=-1))  # f32[A]
        share = jnp.where(state.step > 0, 1.0 / self.config.max_steps, 0.0)
        return {"metrics": {"good_to_goal": jnp.min(to_goal[na:]) * share,
                            "adversary_to_goal": jnp.mean(to_goal[:na]) * share}}

    def heuristic_actions(self, key: jax.Array, state: AdversaryState, team: str) -> jax.Array:
        """The scripted policy of ``team`` (deterministic): i32[N] moves, or f32[N, 5] with
        ``continuous_actions``."""
        na, ng = self.team_sizes["adversaries"], self.team_sizes["agents"]
        if team == "adversaries":
            goal = jnp.sum(state.landmark_pos * self._goal_mask(state)[:, None], axis=0)  # f32[2]
            direction = goal[None] - state.agent_pos[:na]
        elif team == "agents":
            direction = state.landmark_pos[jnp.arange(ng) % self.world.num_landmarks] - state.agent_pos[na:]
        else:
            raise ValueError(f"mpe_adversary: no team {team!r}; teams are {list(self.team_sizes)}")
        return steer(direction, self.config.continuous_actions)
