"""mpe2's entity colours for the render scenes of simple, push, speaker_listener, reference, crypto and
world_comm (``render_scene`` overrides built on ``envs/mpe/scene.py``'s ``mpe_scene``).

Shape legend: F frames, A agents, L landmarks, K = A + L entities drawn, 2 = (x, y).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np

from jmarl.core.scene import Scene

GOAL_MARKER = "*"  # a goal landmark is drawn as a star in its own colour


def hex_color(rgb: Sequence[float]) -> str:
    """mpe2's RGB in [0, 1] as a matplotlib colour string."""
    r, g, b = (int(round(255 * min(max(float(c), 0.0), 1.0))) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def recolor(scene: Scene, num_agents: int, landmark_colors: Sequence[str], goals: Sequence[int] = (),
            team_colors: Optional[Mapping[str, str]] = None, team_sizes: Optional[Mapping[str, int]] = None,
            legend: Optional[Mapping[str, tuple[str, str]]] = None, order: Optional[np.ndarray] = None) -> Scene:
    """``scene`` (agents, then landmarks, as ``mpe_scene`` draws them) with landmark ``j`` in
    ``landmark_colors[j]``, the landmarks in ``goals`` drawn as stars, agents recoloured by team where
    ``team_colors`` names a team, and ``legend`` replacing the landmark entries. ``order`` i32[K]
    permutes the drawing order (later entities are drawn over earlier ones)."""
    color, marker = list(scene.color), list(scene.marker)
    color[num_agents:] = list(landmark_colors)
    for j in set(int(g) for g in goals):
        marker[num_agents + j] = GOAL_MARKER
    new_legend = {k: v for k, v in scene.legend.items() if k in (team_sizes or {})}
    if team_colors:
        start = 0
        for team, n in (team_sizes or {}).items():
            if team in team_colors:
                color[start:start + n] = [team_colors[team]] * n
                new_legend[team] = (team_colors[team], "o")
            start += n
    new_legend.update(legend or {})
    if len(goals):
        new_legend["goal"] = ("#808080", GOAL_MARKER)
    pos, radius, trail, alive = scene.pos, scene.radius, scene.trail, scene.alive
    if order is not None:
        pos, radius, trail, alive = pos[:, order], radius[order], trail[order], alive[:, order]
        color, marker = [color[i] for i in order], [marker[i] for i in order]
    return dataclasses.replace(scene, pos=pos, radius=radius, color=color, marker=marker, trail=trail,
                               alive=alive, legend=new_legend)
