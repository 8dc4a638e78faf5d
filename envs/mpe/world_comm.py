"""simple_world_comm (PettingZoo ``simple_world_comm_v3``): predators led by a talking leader hunt prey
that eat food and hide in forests.

Teams, in mpe2's order: "leader" (``leadadversary_0``), "adversaries" (``adversary_0`` ...; mpe2's
``num_adversaries`` counts the leader too, so there are ``num_adversaries - 1`` of them) and "agents"
(the prey, ``agent_0`` ...). Predators (leader included): size 0.075, accel 3, max speed 1.0; prey: size
0.045, accel 4, max speed 1.3. Landmarks, in mpe2's order: obstacles (size 0.2, agents bump into them),
food (0.03) and forests (0.3), which nobody bumps into. Agents start in [-1, 1]^2, landmarks in
[-0.9, 0.9]^2.

Actions, as mpe2 composes them (only the leader speaks; C = 4 words):
- leader: Discrete(20) ``move + 5 * word`` (move 0..4: no-op, left, right, down, up; the word said as a
  one-hot vector), or Box(0, 1, (9,)) ``[move (5), utterance (4)]`` (clipped to [0, 1], said as it is);
- adversaries and agents: Discrete(5) moves, or Box(0, 1, (5,)).

Forests hide: an agent is "in" forest f when closer to its centre than the sum of their radii. Agent i
sees agent j (its position, and its velocity where j is prey) if i is the leader, or both are in one
forest, or neither is in any forest; otherwise it sees zeros.

Observations (L = obstacles + food + forests landmarks, A agents, G prey, F forests; 34 and 28 by default):
- leader and adversaries: ``[own vel (2), own pos (2), landmark - own pos (2L), other agent - own pos
  (2(A-1)), prey velocities (2G), in forest f (F, +1 / -1), the leader's utterance (4)]``
- prey: ``[own vel (2), own pos (2), landmark - own pos (2L), other agent - own pos (2(A-1)), in forest
  f (F), velocities of the other prey (2(G-1))]``

``comm_randomised=True``: the predators hear a uniformly random word (or vector) instead of the leader's
(``core.py``: the channel's causal value).

Rewards: every predator (leader included) gets ``5 x`` the number of (prey, predator) pairs touching
minus ``0.1 x`` its distance to the nearest prey; a prey gets ``-5`` per predator touching it, ``+2``
per food it touches, ``-0.05 x`` its distance to the nearest food, and twice simple_tag's penalty for
leaving the arena.

Scripted heuristic (``heuristic_actions``, from the state): predators chase the nearest prey and the
leader says word 0; prey head for the nearest food, run from a predator closer than 0.4 and turn back
before the arena's edge. Measured over 200 episodes, each team alone scripted against random others
(team returns): leader 15.3 (random 3.2), adversaries 94.4 (9.6), prey -5.3 (-51.6).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.core.config import require_at_least
from jmarl.core.scene import Scene
from jmarl.envs.mpe.core import (CommState, Geometry, MPEEnv, World, contact_distance, drop_diagonal,
                                 steer, uniform_positions)
from jmarl.envs.mpe.palette import hex_color, recolor
from jmarl.envs.mpe.tag import ARENA_EDGE, nearest, out_of_bounds_penalty

ADVERSARY_SIZE, PREY_SIZE = 0.075, 0.045
OBSTACLE_SIZE, FOOD_SIZE, FOREST_SIZE = 0.2, 0.03, 0.3
ADVERSARY_ACCEL, PREY_ACCEL = 3.0, 4.0
ADVERSARY_MAX_SPEED, PREY_MAX_SPEED = 1.0, 1.3
LANDMARK_RANGE = 0.9  # landmarks start in [-0.9, 0.9]^2, agents in [-1, 1]^2
DIM_C = 4
CAPTURE_REWARD, FOOD_REWARD = 5.0, 2.0
PREDATOR_SHAPING, FOOD_SHAPING = 0.1, 0.05  # per unit of distance to the nearest prey / food
FLEE_RADIUS = 0.4  # the heuristic prey run from predators closer than this
# mpe2's colours (drawn only)
COLORS = {"leader": (0.65, 0.15, 0.15), "adversaries": (0.95, 0.45, 0.45), "agents": (0.45, 0.95, 0.45),
          "obstacle": (0.25, 0.25, 0.25), "food": (0.15, 0.15, 0.65), "forest": (0.6, 0.9, 0.6)}


class SimpleWorldComm(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        num_good: int = 2
        num_adversaries: int = 4  # the leader included, as mpe2 counts
        num_obstacles: int = 1
        num_food: int = 2
        num_forests: int = 2
        max_steps: int = 25
        continuous_actions: bool = False
        comm_randomised: bool = False  # heard utterances replaced by random ones (causal value; core.py)

    name = "mpe_world_comm"
    objective = "return/adversaries"  # the headline: the predators' return, as mpe_tag's
    comm_receivers = ("adversaries",)  # they hear the leader (which hears itself too)

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        na, ng = config.num_adversaries, config.num_good
        # A leader and at least one more adversary, a prey and a food.
        require_at_least("mpe_world_comm", config, num_adversaries=2, num_good=1, num_food=1, num_obstacles=0,
                         num_forests=0)
        n = na + ng
        lo, lf, lr = config.num_obstacles, config.num_food, config.num_forests
        self.world = World(
            agent_size=(ADVERSARY_SIZE,) * na + (PREY_SIZE,) * ng,
            landmark_size=(OBSTACLE_SIZE,) * lo + (FOOD_SIZE,) * lf + (FOREST_SIZE,) * lr,
            agent_accel=(ADVERSARY_ACCEL,) * na + (PREY_ACCEL,) * ng,
            agent_max_speed=(ADVERSARY_MAX_SPEED,) * na + (PREY_MAX_SPEED,) * ng,
            agents_collide=True,
            landmark_collide=(True,) * lo + (False,) * (lf + lr),
            agent_silent=(False,) + (True,) * (n - 1),
            dim_c=DIM_C,
        )
        self.team_sizes = {"leader": 1, "adversaries": na - 1, "agents": ng}
        base = 4 + 2 * (lo + lf + lr) + 2 * (n - 1) + lr
        self.obs_sizes = {"leader": base + 2 * ng + DIM_C, "adversaries": base + 2 * ng + DIM_C,
                          "agents": base + 2 * (ng - 1)}

    def _initial_state(self, key: jax.Array) -> CommState:
        agent_pos, landmark_pos = uniform_positions(key, self.world, LANDMARK_RANGE)
        n = self.world.num_agents
        return CommState(agent_pos, jnp.zeros_like(agent_pos), landmark_pos, jnp.zeros((), jnp.int32),
                         jnp.zeros((n, DIM_C), jnp.float32))

    def _observe(self, state: CommState, geo: Geometry) -> dict[str, jax.Array]:
        cfg, world = self.config, self.world
        na, ng, n = cfg.num_adversaries, cfg.num_good, world.num_agents
        num_landmarks, forests = world.num_landmarks, slice(cfg.num_obstacles + cfg.num_food, world.num_landmarks)
        in_forest = geo.dist[:, forests] < contact_distance(world)[:, forests]  # bool[A, F]
        anywhere = jnp.any(in_forest, axis=1)  # bool[A]
        f = in_forest.astype(jnp.float32)
        together = drop_diagonal(f @ f.T > 0.5)  # bool[A, A-1]: i and j share a forest
        both_out = drop_diagonal(~anywhere[:, None] & ~anywhere[None, :])  # bool[A, A-1]
        leader = np.arange(n)[:, None] == 0
        visible = leader | together | both_out  # bool[A, A-1]: columns are the other agents, in order
        dx = jnp.where(visible, geo.dx[:, num_landmarks:], 0.0)
        dy = jnp.where(visible, geo.dy[:, num_landmarks:], 0.0)
        others = jnp.stack([dx, dy], axis=-1).reshape(n, 2 * (n - 1))
        prey_vel = state.agent_vel[na:]  # f32[G, 2]
        # Predator i's other agents end with all G prey; prey i's other prey are its columns na, na+1, ...
        pred_sees_vel = jnp.where(visible[:na, na - 1:, None], prey_vel[None], 0.0).reshape(na, 2 * ng)
        prey_sees_vel = jnp.where(visible[na:, na:, None], drop_diagonal(jnp.broadcast_to(prey_vel[None], (ng, ng, 2))),
                                  0.0).reshape(ng, 2 * (ng - 1))
        forest_flag = jnp.where(in_forest, 1.0, -1.0)  # f32[A, F]
        common = jnp.concatenate([state.agent_vel, state.agent_pos, geo.relative()[:, :2 * num_landmarks], others],
                                 axis=1)  # f32[A, 4 + 2L + 2(A-1)]
        said = jnp.broadcast_to(state.comm[0], (na, DIM_C))  # every predator hears the leader
        pred = jnp.concatenate([common[:na], pred_sees_vel, forest_flag[:na], said], axis=1)
        prey = jnp.concatenate([common[na:], forest_flag[na:], prey_sees_vel], axis=1)
        return {"leader": pred[:1], "adversaries": pred[1:], "agents": prey}

    def _rewards(self, state: CommState, geo: Geometry) -> dict[str, jax.Array]:
        cfg, world = self.config, self.world
        na, num_landmarks = cfg.num_adversaries, world.num_landmarks
        food = slice(cfg.num_obstacles, cfg.num_obstacles + cfg.num_food)
        # A prey's other agents start with the predators (lower indices): bool[G, na]
        caught = geo.dist[na:, num_landmarks:num_landmarks + na] < np.float32(PREY_SIZE + ADVERSARY_SIZE)
        hits = jnp.sum(caught, axis=1, dtype=jnp.float32)  # f32[G]
        food_dist = geo.dist[na:, food]  # f32[G, food]
        eaten = jnp.sum(food_dist < np.float32(PREY_SIZE + FOOD_SIZE), axis=1, dtype=jnp.float32)
        prey = (-CAPTURE_REWARD * hits - 2.0 * out_of_bounds_penalty(state.agent_pos[na:]) + FOOD_REWARD * eaten
                - FOOD_SHAPING * jnp.min(food_dist, axis=1))
        nearest_prey = jnp.min(geo.dist[:na, num_landmarks + na - 1:], axis=1)  # f32[na]: a predator's last G columns
        pred = CAPTURE_REWARD * jnp.sum(hits) - PREDATOR_SHAPING * nearest_prey
        return {"leader": pred[:1], "adversaries": pred[1:], "agents": prey}

    def heuristic_actions(self, key: jax.Array, state: CommState, team: str) -> jax.Array:
        """The scripted policy of ``team`` (deterministic; ``key`` is unused). Leader: i32[1] (``move + 5 *
        0``) or f32[1, 9]; adversaries and agents: i32[N] moves or f32[N, 5] with ``continuous_actions``."""
        cfg, continuous = self.config, self.config.continuous_actions
        na = cfg.num_adversaries
        pred, prey = state.agent_pos[:na], state.agent_pos[na:]
        if team in ("leader", "adversaries"):
            chase = steer(nearest(prey[None, :] - pred[:, None]), continuous)  # towards the nearest prey
            if team == "adversaries":
                return chase[1:]
            if continuous:  # the leader says word 0: [move (5), one-hot word (4)]
                return jnp.concatenate([chase[:1], jnp.zeros((1, DIM_C)).at[:, 0].set(1.0)], axis=1)
            return chase[:1]  # move + 5 * word with word 0
        if team == "agents":
            food = state.landmark_pos[cfg.num_obstacles:cfg.num_obstacles + cfg.num_food]
            to_food = nearest(food[None, :] - prey[:, None])  # f32[G, 2]
            away = nearest(prey[:, None] - pred[None, :])  # f32[G, 2]: from the nearest predator
            unit = lambda v: v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)  # noqa: E731
            threat = jnp.linalg.norm(away, axis=-1, keepdims=True) < FLEE_RADIUS
            inward = -jnp.sign(prey) * jnp.maximum(jnp.abs(prey) - (ARENA_EDGE - 0.2), 0.0) * 5.0
            return steer(unit(to_food) + 2.0 * threat * unit(away) + inward, continuous)
        raise ValueError(f"mpe_world_comm: no team {team!r}; teams are {list(self.team_sizes)}")

    def render_scene(self, states: CommState) -> Scene:
        """mpe2's colours (leader dark red, predators red, prey green, food blue, forests light green);
        forests are drawn first, under the agents, so that a hidden agent still shows."""
        cfg, n = self.config, self.world.num_agents
        kinds = ["obstacle"] * cfg.num_obstacles + ["food"] * cfg.num_food + ["forest"] * cfg.num_forests
        forests = n + cfg.num_obstacles + cfg.num_food + np.arange(cfg.num_forests)
        order = np.concatenate([forests, np.arange(n + cfg.num_obstacles + cfg.num_food)])
        legend = {k: (hex_color(COLORS[k]), "o") for k in ("food", "forest") if k in kinds}  # obstacles: plain
        return recolor(super().render_scene(states), n, [hex_color(COLORS[k]) for k in kinds],
                       team_colors={t: hex_color(COLORS[t]) for t in self.team_sizes}, team_sizes=self.team_sizes,
                       legend=legend, order=order)
