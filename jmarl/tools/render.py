"""Episode rendering: MPE (agents, landmarks, obstacles, team colours, trails) and SMAX (units with type
markers, health bars, attack lines), from a trained policy or a random one, to GIF (or MP4).

The rollout is one jitted ``lax.scan`` over ``env.max_steps`` steps of ``episodes`` envs in parallel; a
``valid`` mask keeps each episode up to and including its done step. Drawing happens afterwards on the
host: a per-family *scene* extractor turns the env's states into plain arrays (positions, sizes,
colours, markers, health, targets) and one data-driven function draws any scene with matplotlib (Agg;
pyplot is not used, so a notebook's plotting backend stays as it is).

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
from jmarl.train.load import Policy

# Team colours (mpe2's palette for MPE); a team not listed takes the next colour of matplotlib's cycle.
TEAM_COLORS = {"agents": "#5959d9", "allies": "#5959d9", "adversaries": "#d95959", "enemies": "#d95959",
               "prey": "#59d959"}
LANDMARK_COLOR, OBSTACLE_COLOR, GOAL_COLOR = "#404040", "#262626", "#26a626"
SMAX_MARKERS = {"marine": "o", "marauder": "s", "stalker": "^", "zealot": "D", "zergling": "v", "hydralisk": "p"}


@dataclass
class Episode:
    """One rolled-out episode on the host: ``states`` is the env state pytree with leaves [F, ...]."""

    states: Any
    rewards: dict[str, np.ndarray]  # {team: f32[F, N]} (zeros at the reset frame)

    @property
    def length(self) -> int:
        """Transitions in the episode (F - 1)."""
        return len(self.rewards[next(iter(self.rewards))]) - 1


@dataclass
class Scene:
    """What the frames of one episode draw, as host arrays. Entities are drawn as markers of their true
    size; a ``trail`` entity leaves its path so far; ``targets`` draws attack lines."""

    pos: np.ndarray  # f32[F, K, 2] centres
    radius: np.ndarray  # f32[K] in map units
    color: list[str]  # [K]
    marker: list[str]  # [K] matplotlib marker
    alive: np.ndarray  # bool[F, K]; dead entities are drawn as faint crosses
    trail: np.ndarray  # bool[K]
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1
    legend: dict[str, tuple[str, str]]  # label -> (colour, marker)
    health: np.ndarray | None = None  # f32[F, K] fraction in [0, 1]: health bars
    targets: np.ndarray | None = None  # i32[F, K] entity each one attacks (-1: none)


# ----------------------------------------------------------------------------------------------------
# Rollout: one jitted scan, episodes in parallel
# ----------------------------------------------------------------------------------------------------
def rollout(env: Environment, key: jax.Array, policy: Policy | None = None, episodes: int = 1) -> list[Episode]:
    """Play ``episodes`` episodes of ``env`` with ``policy`` (None: uniformly random valid actions) in one
    jitted program, and return each one cut at its done step (``env.max_steps`` at most)."""
    B = episodes

    def run(key):
        k_reset, k_run = jax.random.split(key)
        ts, state = jax.vmap(env.reset)(jax.random.split(k_reset, B))
        hidden = policy.init_hidden(B) if policy is not None else None

        def step(carry, key):
            ts, state, hidden, starts, done = carry
            k_act, k_env = jax.random.split(key)
            if policy is None:
                actions = jax.vmap(env.sample_actions)(jax.random.split(k_act, B), ts.avail_actions)
            else:
                hidden, actions = policy.act(k_act, ts, hidden, starts)
            ts, state = jax.vmap(env.step)(jax.random.split(k_env, B), state, actions)
            # A step belongs to the episode if the episode had not ended before it.
            return (ts, state, hidden, jnp.zeros(B, bool), done | ts.done), (state, ts.reward, ~done)

        carry = (ts, state, hidden, jnp.ones(B, bool), jnp.zeros(B, bool))
        _, (states, rewards, valid) = jax.lax.scan(step, carry, jax.random.split(k_run, env.max_steps))
        first = lambda x0, xs: jnp.concatenate([x0[None], xs])  # noqa: E731  prepend the reset frame
        states = jax.tree.map(first, state, states)
        rewards = jax.tree.map(lambda r: first(jnp.zeros_like(r[0]), r), rewards)
        return states, rewards, first(jnp.ones(B, bool), valid)

    states, rewards, valid = jax.device_get(jax.jit(run)(key))  # leaves [F_max, B, ...]
    out = []
    for b in range(B):
        frames = int(valid[:, b].sum())
        cut = lambda x: np.asarray(x[:frames, b])  # noqa: E731
        out.append(Episode(jax.tree.map(cut, states), {t: cut(r) for t, r in rewards.items()}))
    return out


# ----------------------------------------------------------------------------------------------------
# Scenes: one extractor per environment family
# ----------------------------------------------------------------------------------------------------
def _inner_state(state: Any) -> Any:
    """The base env's state inside wrapper states (which keep it as ``env_state``)."""
    while hasattr(state, "env_state"):
        state = state.env_state
    return state


def _team_colors(teams: Sequence[str]) -> dict[str, str]:
    import matplotlib

    cycle = iter(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
    return {t: TEAM_COLORS.get(t) or next(cycle) for t in teams}


def mpe_scene(env: Environment, episode: Episode) -> Scene:
    """Agents coloured by team (with trails), landmarks grey (the goal green in simple_adversary),
    obstacles (landmarks that collide, simple_tag) large and dark."""
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    world, state = base.world, _inner_state(episode.states)
    colors = _team_colors(list(base.team_sizes))
    agent_team = [t for t, n in base.team_sizes.items() for _ in range(n)]
    num_landmarks = world.num_landmarks
    landmark = "obstacle" if world.landmarks_collide else "landmark"
    landmark_colors = [OBSTACLE_COLOR if world.landmarks_collide else LANDMARK_COLOR] * num_landmarks
    legend = {t: (colors[t], "o") for t in base.team_sizes}
    if hasattr(state, "goal"):  # simple_adversary: the goal landmark (fixed through an episode)
        landmark_colors[int(state.goal[0])] = GOAL_COLOR
        legend["goal"] = (GOAL_COLOR, "o")
    if num_landmarks:
        legend[landmark] = (landmark_colors[0] if landmark == "obstacle" else LANDMARK_COLOR, "o")
    # Landmarks are drawn over the agents (as mpe2 does), so an agent on its landmark still shows it.
    pos = np.concatenate([state.agent_pos, state.landmark_pos], axis=1)  # [F, A + L, 2]
    frames, k = pos.shape[:2]
    reach = max(1.2, float(np.abs(pos).max()) + 0.2)  # the whole episode fits, centred on the origin
    return Scene(pos=pos, radius=np.asarray(world.agent_size + world.landmark_size, np.float32),
                 color=[colors[t] for t in agent_team] + landmark_colors, marker=["o"] * k,
                 alive=np.ones((frames, k), bool), trail=np.arange(k) < world.num_agents,
                 extent=(-reach, reach, -reach, reach), legend=legend)


def smax_scene(env: Environment, episode: Episode) -> Scene:
    """Units coloured by team, shaped by type, with health bars and a line from each attacker to its target."""
    from jmarl.envs.smax.heuristic import NUM_MOVES
    from jmarl.envs.smax.units import UNIT_TYPES, unit_stats

    base = env.unwrapped if hasattr(env, "unwrapped") else env
    state, n = _inner_state(episode.states), base.num_allies
    types = state.unit_type[0]  # i32[U], fixed through an episode
    stats = unit_stats(np.eye(len(UNIT_TYPES), dtype=np.float32)[types])  # each f32[U]
    alive = state.health > 0
    is_ally = np.arange(base.num_units) < n
    colors = _team_colors(["allies", "enemies"])
    # Action NUM_MOVES + j attacks foe j: ally i's foe j is unit n + j, enemy i's is ally j.
    act = state.last_action
    targets = np.where(act >= NUM_MOVES, act - NUM_MOVES + np.where(is_ally, n, 0), -1)
    targets = np.where(alive, targets, -1)
    # Frame the units over the whole episode, with room for attack ranges, inside the map.
    lo, hi = state.pos.reshape(-1, 2).min(0) - 3.0, state.pos.reshape(-1, 2).max(0) + 3.0
    centre, half = (lo + hi) / 2, max(hi - lo) / 2
    legend = {"allies": (colors["allies"], "o"), "enemies": (colors["enemies"], "o")}
    legend |= {UNIT_TYPES[t]: ("#808080", SMAX_MARKERS[UNIT_TYPES[t]]) for t in sorted(set(types.tolist()))}
    return Scene(pos=state.pos, radius=np.asarray(stats.radius),
                 color=[colors["allies" if a else "enemies"] for a in is_ally],
                 marker=[SMAX_MARKERS[UNIT_TYPES[t]] for t in types], alive=alive,
                 trail=np.zeros(base.num_units, bool),
                 extent=(centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half), legend=legend,
                 health=state.health / stats.health, targets=targets)


def scene(env: Environment, episode: Episode) -> Scene:
    """The scene of ``episode`` for the family of ``env`` (wrappers are looked through)."""
    from jmarl.envs.mpe.core import MPEEnv
    from jmarl.envs.smax.env import SMAX

    base = env.unwrapped if hasattr(env, "unwrapped") else env
    if isinstance(base, MPEEnv):
        return mpe_scene(env, episode)
    if isinstance(base, SMAX):
        return smax_scene(env, episode)
    raise ValueError(f"rendering knows MPE and SMAX environments; {type(base).__name__} ({env.name}) is neither")


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
