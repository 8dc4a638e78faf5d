"""Episode rendering: roll out episodes of any environment that provides a scene, from a trained policy
or a random one, draw them, and write a GIF (or MP4).

The rollout is one jitted ``lax.scan`` over ``env.max_steps`` steps of ``episodes`` envs in parallel; a
``valid`` mask keeps each episode up to and including its done step. Drawing happens afterwards on the
host: the environment turns its states into a ``jmarl.core.scene.Scene`` of plain arrays (positions,
sizes, colours, markers, health, targets) with its ``render_scene(states)`` method, and one data-driven
function draws any scene with matplotlib (Agg; pyplot is not used, so a notebook's plotting backend stays
as it is). This module knows no environment: MPE's scene lives in ``envs/mpe/scene.py``, SMAX's in
``envs/smax/scene.py``, and a new environment draws by defining ``render_scene`` (docs/env_api.md).

    frames = render_episodes(jmarl.make("mpe_spread"), jax.random.PRNGKey(0))        # random policy
    frames = render_episodes(policy.env, key, policy=jmarl.load("runs/mappo_..."))   # trained policy
    save_video(frames, "episode.gif")

Shape legend: F frames of one episode (its length + 1: the reset state, then one per step), B episodes,
K entities drawn (MPE: agents then landmarks; SMAX: allies then enemies), 2 = (x, y).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.core.env import Environment
from jmarl.core.scene import TEAM_COLORS, Scene  # noqa: F401  (TEAM_COLORS: re-exported, it lived here)
from jmarl.train.load import Policy


@dataclass
class Episode:
    """One rolled-out episode on the host: ``states`` is the env state pytree with leaves [F, ...]."""

    states: Any
    rewards: dict[str, np.ndarray]  # {team: f32[F, N]} (zeros at the reset frame)
    actions: dict[str, np.ndarray] | None = None  # {team: [F - 1, N, ...]} the actions of each step
    info: dict[str, Any] | None = None  # the env's TimeStep info of each step, leaves [F - 1, ...]

    @property
    def length(self) -> int:
        """Transitions in the episode (F - 1)."""
        return len(self.rewards[next(iter(self.rewards))]) - 1


# ----------------------------------------------------------------------------------------------------
# Rollout: one jitted scan, episodes in parallel
# ----------------------------------------------------------------------------------------------------
def rollout_arrays(env: Environment, key: jax.Array, act=None, init_hidden=None, episodes: int = 1) -> dict:
    """Pure and jittable (vmap it over the parameters of several policies): ``episodes`` episodes of ``env``,
    ``env.max_steps`` steps each, acting with ``act(key, timestep [B], hidden, starts bool[B]) -> (hidden,
    actions)`` (``Policy.act``; None: uniformly random valid actions) from ``init_hidden(B)``.

    Returns {"states": leaves [F, B, ...] (frame 0 the reset state), "rewards": {team: f32[F, B, N]} (zeros at
    frame 0), "valid": bool[F, B] (frames up to each episode's done step), "actions": {team: [F - 1, B, N, ...]},
    "info": the TimeStep info, leaves [F - 1, B, ...]} with F = env.max_steps + 1."""
    B = episodes
    k_reset, k_run = jax.random.split(key)
    ts, state = jax.vmap(env.reset)(jax.random.split(k_reset, B))
    hidden = init_hidden(B) if act is not None and init_hidden is not None else None

    def step(carry, key):
        ts, state, hidden, starts, done = carry
        k_act, k_env = jax.random.split(key)
        if act is None:
            actions = jax.vmap(env.sample_actions)(jax.random.split(k_act, B), ts.avail_actions)
        else:
            hidden, actions = act(k_act, ts, hidden, starts)
        ts, state = jax.vmap(env.step)(jax.random.split(k_env, B), state, actions)
        # A step belongs to the episode if the episode had not ended before it.
        return (ts, state, hidden, jnp.zeros(B, bool), done | ts.done), (state, ts.reward, ~done, actions, ts.info)

    carry = (ts, state, hidden, jnp.ones(B, bool), jnp.zeros(B, bool))
    _, (states, rewards, valid, actions, info) = jax.lax.scan(step, carry, jax.random.split(k_run, env.max_steps))
    first = lambda x0, xs: jnp.concatenate([x0[None], xs])  # noqa: E731  prepend the reset frame
    return {"states": jax.tree.map(first, state, states),
            "rewards": jax.tree.map(lambda r: first(jnp.zeros_like(r[0]), r), rewards),
            "valid": first(jnp.ones(B, bool), valid), "actions": actions, "info": info}


def cut_episodes(arrays: dict) -> list[Episode]:
    """The episodes of ``rollout_arrays``' output (on the host), each cut at its done step."""
    out = []
    for b in range(arrays["valid"].shape[1]):
        frames = int(arrays["valid"][:, b].sum())
        cut = lambda x, n=frames: np.asarray(x[:n, b])  # noqa: E731
        out.append(Episode(jax.tree.map(cut, arrays["states"]), {t: cut(r) for t, r in arrays["rewards"].items()},
                           jax.tree.map(lambda x: cut(x, frames - 1), arrays["actions"]),
                           jax.tree.map(lambda x: cut(x, frames - 1), arrays["info"])))
    return out


def rollout(env: Environment, key: jax.Array, policy: Policy | None = None, episodes: int = 1) -> list[Episode]:
    """Play ``episodes`` episodes of ``env`` with ``policy`` (None: uniformly random valid actions) in one
    jitted program, and return each one cut at its done step (``env.max_steps`` at most)."""
    act, init_hidden = (None, None) if policy is None else (policy.act, policy.init_hidden)
    run = jax.jit(lambda key: rollout_arrays(env, key, act, init_hidden, episodes))
    return cut_episodes(jax.device_get(run(key)))  # leaves [F_max, B, ...]


# ----------------------------------------------------------------------------------------------------
# Scenes: the environment draws its own (``render_scene``); wrappers are looked through
# ----------------------------------------------------------------------------------------------------
def _inner_state(state: Any) -> Any:
    """The base env's state inside wrapper states (which keep it as ``env_state``)."""
    while hasattr(state, "env_state"):
        state = state.env_state
    return state


def drawable(env: Environment) -> Environment:
    """The base env of ``env`` (wrappers looked through), if it can be drawn; else ValueError, in one line,
    naming the method to define. ``render_episodes`` calls this before anything compiles."""
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    # Looked up on the class: a wrapper forwards attributes to its inner env, and an instance attribute
    # is not the protocol.
    if not callable(getattr(type(base), "render_scene", None)):
        raise ValueError(f"{env.name} ({type(base).__name__}) cannot be drawn: it has no render_scene(states) -> "
                         f"jmarl.core.scene.Scene method; define one (see docs/env_api.md, Rendering)")
    return base


def scene(env: Environment, episode: Episode) -> Scene:
    """The scene of ``episode``: ``render_scene`` of the base env of ``env``, on the base env's own states
    (wrapper states are looked through). ValueError for an env that cannot be drawn (``drawable``)."""
    base = drawable(env)
    out = base.render_scene(_inner_state(episode.states))
    if not isinstance(out, Scene):
        raise TypeError(f"{type(base).__name__}.render_scene returned {type(out).__name__}, not a "
                        f"jmarl.core.scene.Scene")
    if out.num_frames != episode.length + 1:
        raise ValueError(f"{type(base).__name__}.render_scene returned {out.num_frames} frames for an episode "
                         f"of {episode.length + 1} states (one frame per state)")
    return out


# Names that moved out when each environment came to own its scene.
_MOVED = {
    "mpe_scene": "the MPE scene is env.render_scene(states) (jmarl.envs.mpe.scene.mpe_scene(env, states))",
    "smax_scene": "the SMAX scene is env.render_scene(states) (jmarl.envs.smax.scene.smax_scene(env, states))",
    "SMAX_MARKERS": "SMAX's unit markers are jmarl.envs.smax.scene.UNIT_MARKERS",
    "LANDMARK_COLOR": "MPE's colours are in jmarl.envs.mpe.scene",
    "OBSTACLE_COLOR": "MPE's colours are in jmarl.envs.mpe.scene",
    "GOAL_COLOR": "MPE's colours are in jmarl.envs.mpe.scene",
}


def __getattr__(name: str):
    # ImportError, so that ``from jmarl.tools.render import mpe_scene`` shows where it went.
    if name in _MOVED:
        raise ImportError(f"jmarl.tools.render.{name} moved: {_MOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------
def draw(scene: Scene, episode: Episode, title: str = "", size: int = 400) -> list[np.ndarray]:
    """One RGB frame u8[size, size, 3] per frame of the episode."""
    # A bare Figure on an Agg canvas: no pyplot, so a notebook's plotting backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    dpi = 100
    fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fig.subplots_adjust(0.11, 0.09, 0.89, 0.87)  # square axes, 78% of the figure; room for title and legend
    x0, x1, y0, y1 = scene.extent
    points_per_unit = 0.78 * size / (x1 - x0) * 72 / dpi  # marker sizes are in points
    fontsize = max(5.0, 9.0 * size / 400)
    returns = {t: np.cumsum(r.sum(-1)) for t, r in episode.rewards.items()}
    handles = [Line2D([], [], ls="", marker=m, color=c, label=label) for label, (c, m) in scene.legend.items()]
    if handles:  # a scene may have no legend
        fig.legend(handles=handles, loc="lower center", fontsize=0.8 * fontsize, frameon=False, ncol=len(handles))
    frames = []
    for f in range(len(scene.pos)):
        ax.clear()
        ax.set_xlim(x0, x1), ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        score = "  ".join(f"{t} {r[f]:.1f}" for t, r in returns.items())
        ax.set_title(f"{title}  step {f}/{episode.length}\nreturn: {score}", fontsize=fontsize)
        pos, alive = scene.pos[f], scene.alive[f]
        for k in np.flatnonzero(scene.trail):
            ax.plot(scene.pos[:f + 1, k, 0], scene.pos[:f + 1, k, 1], color=scene.color[k], alpha=0.4, lw=1.5)
        if scene.targets is not None:
            for k, j in enumerate(scene.targets[f]):
                if j >= 0:
                    ax.plot(*zip(pos[k], pos[j]), color=scene.color[k], lw=1, alpha=0.8)
        for k in range(len(pos)):  # markers of their true diameter (at least 4 points, to stay visible)
            width = max(2 * scene.radius[k] * points_per_unit, 4.0)
            if alive[k]:
                ax.plot(*pos[k], marker=scene.marker[k], ms=width, color=scene.color[k], mec="k", mew=0.5)
            else:
                ax.plot(*pos[k], marker="x", ms=width, color=scene.color[k], alpha=0.4)
        if scene.health is not None:
            for k in np.flatnonzero(alive):
                r = max(scene.radius[k], 0.5)
                x, y = pos[k, 0] - r, pos[k, 1] + 1.3 * r
                ax.plot([x, x + 2 * r], [y, y], color="#cccccc", lw=3, solid_capstyle="butt")
                ax.plot([x, x + 2 * r * scene.health[f, k]], [y, y], color="#2ca02c", lw=3, solid_capstyle="butt")
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return frames


def render_episodes(env: Environment, key: jax.Array, policy: Policy | None = None, episodes: int = 1,
                    size: int = 400) -> list[np.ndarray]:
    """Roll out ``episodes`` episodes and draw them one after the other: u8[size, size, 3] frames, one per
    frame of each episode (its length + 1)."""
    drawable(env)  # before the rollout compiles
    who = "random policy" if policy is None else f"{policy.resolved.algo}"
    frames = []
    for i, episode in enumerate(rollout(env, key, policy, episodes)):
        frames += draw(scene(env, episode), episode, f"{env.name} ({who}) ep {i}", size)
    return frames


def check_video_path(path: str | Path) -> Path:
    """Raise ValueError, before any work, unless ``path`` is a .gif or an .mp4 that can be written here."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: choose a .gif or .mp4 file")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: writing MP4 needs imageio's ffmpeg plugin (pip install imageio-ffmpeg); "
                             f"write a .gif instead") from None
    return path


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: float = 8.0) -> Path:
    """Write frames u8[H, W, 3] to ``path``: ``.gif`` (always), or ``.mp4`` (with imageio's ffmpeg plugin)."""
    import imageio.v3 as iio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, np.stack(frames), duration=1000.0 / fps, loop=0)
    else:
        iio.imwrite(path, np.stack(frames), fps=fps, codec="libx264", plugin="FFMPEG")
    return path


def render_to_file(env: Environment, out: str | Path, policy: Policy | None = None, episodes: int = 1,
                   seed: int = 0, fps: float = 8.0) -> int:
    """Render ``episodes`` episodes (``policy`` None: random) to a GIF or MP4; returns the number of frames.

    ``policy = jmarl.load(run_dir); render_to_file(policy.env, "episode.gif", policy)`` draws a trained run."""
    check_video_path(out)
    frames = render_episodes(env, jax.random.PRNGKey(seed), policy, episodes)
    save_video(frames, out, fps)
    return len(frames)
