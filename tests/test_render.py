"""Rendering: one frame per step plus the reset frame, episodes cut at their done step, pictures that
change as the episode moves, GIF output, a clear error for MP4 without ffmpeg, and ``jmarl render``; an
environment of the user's own draws itself (``render_scene``) without any edit to jmarl."""
import imageio.v3 as iio
import jax
import numpy as np
import pytest
from tiny_env import Counter

import jmarl
from jmarl.core.scene import Scene, team_colors
from jmarl.tools import render
from jmarl.tools.cli import main as cli_main

SIZE = 200  # small frames keep drawing fast


def _board(frame: np.ndarray) -> np.ndarray:
    """The middle of the axes (no title, no legend): what the entities are drawn on."""
    n = frame.shape[0]
    return frame[int(0.2 * n):int(0.8 * n), int(0.2 * n):int(0.8 * n)]


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of board pixels that differ between two frames."""
    return float(np.any(_board(a) != _board(b), axis=-1).mean())


def test_mpe_spread_random_episode():
    env = jmarl.EpisodeStats(jmarl.make("mpe_spread"))  # a wrapped env: its state is looked through
    episodes = render.rollout(env, jax.random.PRNGKey(0), episodes=2)
    assert [e.length for e in episodes] == [25, 25]  # MPE episodes are exactly max_steps transitions
    state = episodes[0].states.env_state
    assert state.agent_pos.shape == (26, 3, 2)
    np.testing.assert_array_equal(state.step, np.arange(26))
    assert not np.allclose(state.agent_pos[0], state.agent_pos[-1])

    frames = [f for e in episodes for f in render.draw(render.scene(env, e), e, size=SIZE)]
    assert len(frames) == 2 * 26 and frames[0].shape == (SIZE, SIZE, 3) and frames[0].dtype == np.uint8
    assert all(np.any(a != b) for a, b in zip(frames[:-1], frames[1:]))  # every frame is new
    assert _changed(frames[0], frames[25]) > 0.01  # the agents (and trails) moved on the board
    assert _changed(frames[0], frames[26]) > 0.01  # the second episode starts somewhere else


def test_smax_episode_stops_at_done(tmp_path):
    env = jmarl.make("smax", scenario="3m")
    episodes = render.rollout(env, jax.random.PRNGKey(1), episodes=3)
    for e in episodes:
        alive = e.states.health > 0  # [F, 6]: allies then enemies
        both = alive[:, :3].any(1) & alive[:, 3:].any(1)
        assert e.length == len(alive) - 1 and e.length <= env.max_steps
        assert both[:-1].all()  # nothing after the end is kept ...
        assert not both[-1] or e.length == env.max_steps  # ... and the last frame is the end
    assert len({e.length for e in episodes}) > 1  # episodes of one batch end at different steps

    scene = render.scene(env, episodes[0])
    assert scene.health.shape == scene.alive.shape == (episodes[0].length + 1, 6)
    assert scene.health[0].min() == 1.0 and scene.health[-1].min() < 1.0
    assert (scene.targets >= -1).all() and (scene.targets < 6).all()
    assert (scene.targets[:, 3:] < 3).all()  # enemies (the heuristic) attack allies only
    assert (scene.targets >= 0).any()  # somebody attacked: attack lines are drawn

    path = render.save_video(render.draw(scene, episodes[0], size=SIZE), tmp_path / "smax.gif")
    gif = iio.imread(path, index=None)
    assert len(gif) == episodes[0].length + 1
    assert _changed(gif[0], gif[-1]) > 0.005  # units moved, died, lost health


def test_output_formats_and_unsupported_envs(tmp_path):
    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        render.save_video(frames, tmp_path / "episode.avi")
    try:
        import imageio_ffmpeg  # noqa: F401
        render.save_video(frames, tmp_path / "episode.mp4")
        assert (tmp_path / "episode.mp4").stat().st_size > 0
    except ImportError:
        with pytest.raises(ValueError, match="imageio-ffmpeg"):
            render.check_video_path(tmp_path / "episode.mp4")
    probe = jmarl.EpisodeStats(jmarl.make("probe_matrix"))
    with pytest.raises(ValueError, match=r"probe_matrix \(MatrixGame\) cannot be drawn: it has no render_scene"):
        render.render_episodes(probe, jax.random.PRNGKey(0))  # before anything compiles
    with pytest.raises(ImportError, match="render_scene"):  # the old home of the scenes says where they went
        from jmarl.tools.render import mpe_scene  # noqa: F401


class DrawnCounter(Counter):
    """The tests' tiny env (tiny_env.py) plus a scene of its own, as a user would write it: one marker at
    (total, step) with a trail, and a dot per runner. ``seen`` records what the renderer handed over."""

    seen: list = []

    def render_scene(self, states):
        self.seen.append(states)
        frames = len(states.step)  # F
        walker = np.stack([states.total, states.step.astype(np.float32)], -1)[:, None]  # f32[F, 1, 2]
        runners = np.broadcast_to(np.array([[[-1.0, 0.0], [-2.0, 0.0]]], np.float32), (frames, 2, 2))
        colors = team_colors(["pilot", "runners"])
        pos = np.concatenate([walker, runners], 1)  # f32[F, 3, 2]
        top = 2.5 * float(np.abs(pos).max())  # everything in the middle of the board, where _changed looks
        return Scene(pos=pos, radius=[0.4, 0.2, 0.2],
                     color=[colors["pilot"]] + [colors["runners"]] * 2, marker=["s", "o", "o"],
                     trail=[True, False, False], extent=(-top, top, -top, top),
                     legend={"pilot": (colors["pilot"], "s"), "runners": (colors["runners"], "o")})


def test_a_new_env_draws_its_own_scene(tmp_path):
    env = jmarl.EpisodeStats(DrawnCounter(Counter.Config(max_steps=6)))  # wrapped: its states are looked through
    frames = render.render_episodes(env, jax.random.PRNGKey(1), episodes=5, size=SIZE)
    lengths = [len(s.step) for s in DrawnCounter.seen]
    assert all(type(s).__name__ == "CounterState" for s in DrawnCounter.seen)  # the env's own states, not wrappers'
    assert len(frames) == sum(lengths) and len(set(lengths)) > 1  # episodes cut at done (runner action 2 ends one)
    first = frames[:lengths[0]]
    assert all(_changed(a, b) > 0.001 for a, b in zip(first[:-1], first[1:]))  # the walker moves up every step
    assert len(iio.imread(render.save_video(frames, tmp_path / "counter.gif"), index=None)) == len(frames)

    # The scene is checked where it is made, and against the episode it draws.
    with pytest.raises(ValueError, match=r"Scene.color must have shape \(3,\)"):
        Scene(pos=np.zeros((5, 3, 2)), radius=0.1, color=["k"], extent=(-1, 1, -1, 1))
    episode = render.rollout(env, jax.random.PRNGKey(0))[0]
    short = render.Episode(episode.states, {t: r[:-1] for t, r in episode.rewards.items()})
    with pytest.raises(ValueError, match="render_scene returned .* frames for an episode of"):
        render.scene(env, short)


def test_cli_render_trained_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    small = ["num_envs=8", "num_steps=25", "total_timesteps=400", "num_minibatches=2", "num_evals=1",
             "eval_episodes=2", "hidden_dim=16"]
    assert cli_main(["train", "ippo", "--env", "mpe_spread", *small, "--out", str(run_dir), "--quiet",
                     "--wandb", "disabled"]) == 0
    out = tmp_path / "episode.gif"
    assert cli_main(["render", str(run_dir), "--episodes", "2", "--out", str(out)]) == 0
    assert "played by ippo member 0: 52 frames" in capsys.readouterr().out
    gif = iio.imread(out, index=None)
    assert len(gif) == 52 and _changed(gif[0], gif[25]) > 0.005

    random_out = tmp_path / "random.gif"
    assert cli_main(["render", "--env", "mpe_tag", "num_obstacles=1", "--out", str(random_out)]) == 0
    assert len(iio.imread(random_out, index=None)) == 26
    assert cli_main(["render", str(run_dir), "--out", str(tmp_path / "x.png")]) == 2
    assert cli_main(["render", "--out", str(tmp_path / "x.gif")]) == 2
    assert "give a run directory" in capsys.readouterr().err
