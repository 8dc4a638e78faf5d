"""The scripted SMAX opponent: shoot a foe in range, else advance on the closest living foe (or, as JaxMARL's
does, on a foe in sight drawn anew each step).

It reads the true state (like SC2's built-in AI, it knows where the foes are), is stateless apart from
last step's actions (a unit keeps shooting its target while the target stays in range), and returns
actions in the env's encoding, so it can play either team: ``SMAX.heuristic_actions(key, state, team)``.
Shape legend: n units in the acting team, m units in the other team.
"""
from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

# Action encoding shared by both teams.
NORTH, EAST, SOUTH, WEST, STOP = 0, 1, 2, 3, 4
NUM_MOVES = 5  # the four moves and stop; attack foe j is NUM_MOVES + j

TargetMode = Literal["closest", "lowest_health", "random"]
TARGET_MODES = ("closest", "lowest_health", "random")
AdvanceMode = Literal["closest", "random_visible"]
ADVANCE_MODES = ("closest", "random_visible")


def heuristic_actions(
    key: jax.Array,
    rel_x: jax.Array,
    rel_y: jax.Array,
    dist2: jax.Array,
    alive: jax.Array,
    foe_alive: jax.Array,
    foe_health: jax.Array,
    attack_range: jax.Array,
    last_action: jax.Array,
    mode: TargetMode = "closest",
    advance: AdvanceMode = "closest",
    sight_range: jax.Array | None = None,
) -> jax.Array:
    """i32[n]: each unit attacks a foe in range (chosen by ``mode``), else moves towards a foe (``advance``).

    rel_x, rel_y: f32[n, m]     foe position minus own position
    dist2:        f32[n, m]     squared distances
    alive:        bool[n]
    foe_alive:    bool[m]
    foe_health:   f32[m]        health fractions (used by "lowest_health")
    attack_range: f32[n]
    last_action:  i32[n]        last step's actions: a target still in range is kept
    mode:         "closest" | "lowest_health" (ties to the closer) | "random" (uniform over those in range)
    advance:      "closest" (the closest living foe) | "random_visible" (JaxMARL's rule: a foe drawn uniformly
                  each step among those in sight; the closest living foe when none is)
    sight_range:  f32[n]        (needed by "random_visible")
    """
    n, m = dist2.shape
    if advance not in ADVANCE_MODES:
        raise ValueError(f"unknown advance mode {advance!r}; valid: {list(ADVANCE_MODES)}")
    if advance == "random_visible" and sight_range is None:
        raise ValueError("advance='random_visible' needs the units' sight_range")
    # One key per random choice; a single one keeps the stream of the modes that had only it.
    k_target, k_advance = jax.random.split(key) if mode == "random" and advance == "random_visible" else (key, key)
    foe_ids = jnp.arange(m)
    in_range = foe_alive & (dist2 < attack_range[:, None] ** 2)  # [n, m]
    if mode == "closest":
        score = dist2
    elif mode == "lowest_health":
        score = foe_health + 1e-3 * dist2
    elif mode == "random":
        score = jax.random.uniform(k_target, (n, m))
    else:
        raise ValueError(f"unknown target mode {mode!r}; valid: {list(TARGET_MODES)}")
    score = jnp.where(last_action[:, None] - NUM_MOVES == foe_ids, -jnp.inf, score)  # sticky target
    target = jnp.argmin(jnp.where(in_range, score, jnp.inf), axis=1)
    # Advance along the larger axis of the vector to the goal foe (a mask-multiply, no gather).
    goal_score = jnp.where(foe_alive, dist2, jnp.inf)
    if advance == "random_visible":
        visible = foe_alive & (dist2 < sight_range[:, None] ** 2)
        drawn = jnp.where(visible, jax.random.uniform(k_advance, (n, m)), jnp.inf)
        goal_score = jnp.where(jnp.any(visible, axis=1, keepdims=True), drawn, goal_score)
    is_goal = jnp.argmin(goal_score, axis=1)[:, None] == foe_ids  # [n, m]
    dx, dy = jnp.sum(jnp.where(is_goal, rel_x, 0.0), 1), jnp.sum(jnp.where(is_goal, rel_y, 0.0), 1)
    move = jnp.where(jnp.abs(dx) > jnp.abs(dy), jnp.where(dx > 0, EAST, WEST), jnp.where(dy > 0, NORTH, SOUTH))
    action = jnp.where(jnp.any(in_range, axis=1), NUM_MOVES + target, move)
    return jnp.where(alive & jnp.any(foe_alive), action, STOP).astype(jnp.int32)
