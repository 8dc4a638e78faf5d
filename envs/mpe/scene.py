"""The MPE render scene: agents coloured by team (with trails), landmarks grey, the goal green
(simple_adversary), obstacles (landmarks that collide, simple_tag) large and dark.

``MPEEnv.render_scene`` calls ``mpe_scene``, so every scenario built on ``envs/mpe/core.py`` is drawn
without code of its own. A scenario that colours its entities differently overrides ``render_scene``,
e.g. ``dataclasses.replace(super().render_scene(states), color=...)``.

Shape legend: F frames, A agents, L landmarks, 2 = (x, y).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jmarl.core.scene import Scene, team_colors

if TYPE_CHECKING:
    from jmarl.envs.mpe.core import MPEEnv, MPEState

LANDMARK_COLOR, OBSTACLE_COLOR, GOAL_COLOR = "#404040", "#262626", "#26a626"


def mpe_scene(env: MPEEnv, states: MPEState) -> Scene:
    """The scene of one episode of ``env``; ``states`` has leaves [F, ...] (agent_pos f32[F, A, 2], ...).

    Entities are the A agents, then the L landmarks: landmarks are drawn over the agents (as mpe2 does),
    so an agent on its landmark still shows it."""
    world = env.world
    colors = team_colors(env.team_sizes)
    agent_team = [t for t, n in env.team_sizes.items() for _ in range(n)]
    num_landmarks = world.num_landmarks
    landmark = "obstacle" if world.landmarks_collide else "landmark"
    landmark_colors = [OBSTACLE_COLOR if world.landmarks_collide else LANDMARK_COLOR] * num_landmarks
    legend = {t: (colors[t], "o") for t in env.team_sizes}
    goal = getattr(states, "goal", None)
    if goal is not None and np.ndim(goal) == 1:  # simple_adversary: one goal landmark, fixed through an episode
        landmark_colors[int(goal[0])] = GOAL_COLOR
        legend["goal"] = (GOAL_COLOR, "o")
    if num_landmarks:
        legend[landmark] = (landmark_colors[0] if landmark == "obstacle" else LANDMARK_COLOR, "o")
    pos = np.concatenate([states.agent_pos, states.landmark_pos], axis=1)  # f32[F, A + L, 2]
    reach = max(1.2, float(np.abs(pos).max()) + 0.2)  # the whole episode fits, centred on the origin
    return Scene(pos=pos, radius=np.asarray(world.agent_size + world.landmark_size, np.float32),
                 color=[colors[t] for t in agent_team] + landmark_colors,
                 trail=np.arange(pos.shape[1]) < world.num_agents,
                 extent=(-reach, reach, -reach, reach), legend=legend)
