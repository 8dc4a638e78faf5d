"""The SMAX render scene: units coloured by team, shaped by type, with health bars and a line from each
attacker to its target. ``SMAX.render_scene`` calls ``smax_scene``.

Shape legend: F frames, U units (allies first), 2 = (x, y).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jmarl.core.scene import Scene, team_colors
from jmarl.envs.smax.heuristic import NUM_MOVES
from jmarl.envs.smax.units import UNIT_TYPES, unit_stats

if TYPE_CHECKING:
    from jmarl.envs.smax.env import SMAX, SMAXState

# The matplotlib marker of each unit type.
UNIT_MARKERS = {"marine": "o", "marauder": "s", "stalker": "^", "zealot": "D", "zergling": "v", "hydralisk": "p"}
NEUTRAL = "#808080"  # legend entries for unit types


def smax_scene(env: SMAX, states: SMAXState) -> Scene:
    """The scene of one episode of ``env``; ``states`` has leaves [F, ...] (pos f32[F, U, 2], health f32[F, U],
    last_action i32[F, U], unit_type i32[F, U])."""
    n = env.num_allies
    types = states.unit_type[0]  # i32[U], fixed through an episode
    stats = unit_stats(np.eye(len(UNIT_TYPES), dtype=np.float32)[types])  # each f32[U]
    alive = states.health > 0
    is_ally = np.arange(env.num_units) < n
    colors = team_colors(["allies", "enemies"])
    # Action NUM_MOVES + j attacks foe j: ally i's foe j is unit n + j, enemy i's is ally j.
    act = states.last_action
    targets = np.where(act >= NUM_MOVES, act - NUM_MOVES + np.where(is_ally, n, 0), -1)
    targets = np.where(alive, targets, -1)
    # Frame the units over the whole episode, with room for attack ranges, inside the map.
    lo, hi = states.pos.reshape(-1, 2).min(0) - 3.0, states.pos.reshape(-1, 2).max(0) + 3.0
    centre, half = (lo + hi) / 2, max(hi - lo) / 2
    legend = {"allies": (colors["allies"], "o"), "enemies": (colors["enemies"], "o")}
    legend |= {UNIT_TYPES[t]: (NEUTRAL, UNIT_MARKERS[UNIT_TYPES[t]]) for t in sorted(set(types.tolist()))}
    return Scene(pos=states.pos, radius=np.asarray(stats.radius),
                 color=[colors["allies" if a else "enemies"] for a in is_ally],
                 marker=[UNIT_MARKERS[UNIT_TYPES[t]] for t in types], alive=alive,
                 extent=(centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half), legend=legend,
                 health=states.health / stats.health, targets=targets)
