"""What an environment hands the renderer: a ``Scene`` of plain host arrays, one per episode.

The rendering protocol (``jmarl.tools.render`` is its only caller): an environment that can be drawn
defines

    def render_scene(self, states) -> Scene

where ``states`` is the environment's *own* state pytree (not a wrapper's) with a leading frame axis on
every leaf, as numpy arrays: frame 0 is the reset state, frame f the state after step f. The renderer
looks through wrappers (``env.unwrapped`` and each wrapper state's ``env_state``) before calling it, so
an environment only ever sees its own states. An environment without the method cannot be drawn, and
``render`` says so. The method runs on the host after the rollout, so it may use numpy and Python freely.

A scene is data only: entity positions, sizes, colours (any matplotlib colour string) and markers (any
matplotlib marker string), what is alive, what leaves a trail, health bars, attack lines, the visible
extent and a legend. ``jmarl.tools.render.draw`` draws any scene the same way; an environment never
imports the renderer, and this module imports nothing but numpy.

Shape legend: F frames of one episode (its length + 1), K entities drawn, 2 = (x, y).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

import numpy as np

# Team colours (mpe2's palette for its agent kinds); other teams take the next colour of FALLBACK_COLORS.
TEAM_COLORS = {"agents": "#5959d9", "allies": "#5959d9", "adversaries": "#d95959", "enemies": "#d95959",
               "prey": "#59d959"}
# matplotlib's default colour cycle ("tab10"), written out so that environments need not import matplotlib.
FALLBACK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf")


def team_colors(teams: Iterable[str]) -> dict[str, str]:
    """A colour for each team: its ``TEAM_COLORS`` entry, else the next fallback colour (cycling)."""
    cycle = itertools.cycle(FALLBACK_COLORS)
    return {t: TEAM_COLORS.get(t) or next(cycle) for t in teams}


@dataclass
class Scene:
    """What the frames of one episode draw, as host arrays. Each entity is a marker of its true size
    (``radius`` in map units); a ``trail`` entity leaves its path so far; ``health`` draws a bar over each
    living entity; ``targets`` draws a line from each entity to the one it attacks.

    Only ``pos``, ``radius``, ``color`` and ``extent`` are required; the rest default to round markers,
    everything alive, no trails, no legend, no health bars, no attack lines. Arrays are converted with
    ``np.asarray`` and their shapes checked on construction, so a wrong shape fails where it is made.
    """

    pos: np.ndarray  # f32[F, K, 2] centres
    radius: np.ndarray  # f32[K] in map units (a scalar is broadcast)
    color: list[str]  # [K] matplotlib colours
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1 of the drawn area (keep it square: axes are equal)
    marker: list[str] | None = None  # [K] matplotlib markers; None: "o" for all
    alive: np.ndarray | None = None  # bool[F, K]; dead entities are drawn as faint crosses. None: all alive
    trail: np.ndarray | None = None  # bool[K]; None: no trails
    legend: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (colour, marker)
    health: np.ndarray | None = None  # f32[F, K] fraction in [0, 1]: health bars
    targets: np.ndarray | None = None  # i32[F, K] entity each one attacks (-1: none)

    def __post_init__(self):
        self.pos = np.asarray(self.pos, np.float32)
        if self.pos.ndim != 3 or self.pos.shape[-1] != 2:
            raise ValueError(f"Scene.pos must be f32[F, K, 2] (frames, entities, xy), got shape {self.pos.shape}")
        frames, k = self.pos.shape[:2]
        self.radius = np.broadcast_to(np.asarray(self.radius, np.float32), (k,))
        self.color = list(self.color)
        self.marker = ["o"] * k if self.marker is None else list(self.marker)
        self.alive = np.ones((frames, k), bool) if self.alive is None else np.asarray(self.alive, bool)
        self.trail = np.zeros(k, bool) if self.trail is None else np.asarray(self.trail, bool)
        if self.health is not None:
            self.health = np.asarray(self.health, np.float32)
        if self.targets is not None:
            self.targets = np.asarray(self.targets, np.int32)
        for name, want in [("color", (k,)), ("marker", (k,)), ("alive", (frames, k)), ("trail", (k,)),
                           ("health", (frames, k)), ("targets", (frames, k))]:
            value = getattr(self, name)
            if value is not None and np.shape(value) != want:
                raise ValueError(f"Scene.{name} must have shape {want} for pos of shape {self.pos.shape}, "
                                 f"got {np.shape(value)}")
        if len(self.extent) != 4 or not (self.extent[0] < self.extent[1] and self.extent[2] < self.extent[3]):
            raise ValueError(f"Scene.extent must be (x0, x1, y0, y1) with x0 < x1 and y0 < y1, got {self.extent}")

    @property
    def num_frames(self) -> int:
        """F: frames drawn (the episode's length + 1)."""
        return self.pos.shape[0]


@runtime_checkable
class Drawable(Protocol):
    """An environment the renderer can draw (see the module doc)."""

    def render_scene(self, states: Any) -> Scene:
        """The scene of one episode: ``states`` is this env's state pytree with leaves [F, ...] (numpy)."""
        ...
