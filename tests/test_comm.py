"""Communication and emergent behaviour: the learned message channel (jmarl/core/messages.py), the probe where
communication is necessary (probe_comm), the episode metrics of spread and SMAX, and ``jmarl rollout``
(jmarl/tools/rollout.py). One tiny IPPO run on probe_comm is shared by the tests that need a trained policy."""
from __future__ import annotations

import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.core.config import ConfigError
from jmarl.core.messages import MESSAGE_KEYS, with_messages
from jmarl.core.spaces import Box, Discrete
from jmarl.core.wrappers import AutoReset, EpisodeStats


# ----------------------------------------------------------------------------------------------------
# The channel: spaces, delivery, randomisation, errors
# ----------------------------------------------------------------------------------------------------
def test_channel_delivers_teammates_messages_on_the_next_step():
    base = jmarl.make("mpe_spread")
    env = jmarl.make("mpe_spread", messages=3)
    team = env.teams["agents"]
    assert team.action_space == Discrete(15) and team.obs_shape == (18 + 2 * 3,)
    assert with_messages(base, vocab=3).teams == env.teams  # the Python spelling of the same channel
    assert env.global_state_shape == (base.global_state_shape[0] + 3 * 3,)
    key = jax.random.PRNGKey(0)
    ts, state = jax.jit(env.reset)(key)
    ts0, state0 = jax.jit(base.reset)(key)
    np.testing.assert_array_equal(ts.obs["agents"][:, :18], ts0.obs["agents"])
    assert not ts.obs["agents"][:, 18:].any()  # nothing said yet
    assert ts.avail_actions["agents"].shape == (3, 15)
    moves, tokens = jnp.array([1, 2, 0]), jnp.array([2, 0, 1])
    ts, state = jax.jit(env.step)(key, state, {"agents": moves + 5 * tokens})
    ts0, _ = jax.jit(base.step)(key, state0, {"agents": moves})
    # The env part is the env's own step under the decoded moves.
    np.testing.assert_array_equal(ts.obs["agents"][:, :18], ts0.obs["agents"])
    np.testing.assert_array_equal(ts.reward["agents"], ts0.reward["agents"])
    onehot = np.eye(3)[np.asarray(tokens)]
    for i in range(3):  # agent i hears its teammates, in order, not itself
        np.testing.assert_array_equal(ts.obs["agents"][i, 18:], onehot[[j for j in range(3) if j != i]].ravel())
    np.testing.assert_array_equal(ts.global_state[-9:], onehot.ravel())


def test_channel_zeros_after_an_automatic_reset_and_box_messages():
    env = AutoReset(jmarl.make("mpe_spread", message_dim=2, continuous_actions=True, max_steps=1))
    assert env.teams["agents"].action_space == Box(0.0, 1.0, (7,))
    ts, state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    msg = jnp.array([[0.2, 0.9], [1.5, -1.0], [0.0, 0.4]])  # clipped to the box [0, 1]
    actions = jnp.concatenate([jnp.zeros((3, 5)), msg], axis=1)
    ts, state = jax.jit(env.step)(jax.random.PRNGKey(1), state, {"agents": actions})
    assert bool(ts.done)
    assert not ts.obs["agents"][:, 18:].any()  # a new episode starts silent
    heard = np.clip(np.asarray(msg), 0.0, 1.0)
    np.testing.assert_allclose(ts.info["final_obs"]["agents"][0, 18:], heard[1:].ravel())


def test_receivers_team_or_all():
    team = jmarl.make("mpe_tag", messages=2)  # the prey, alone in its team, neither speaks nor hears
    base = jmarl.make("mpe_tag")
    assert team.teams["prey"] == base.teams["prey"]
    assert team.teams["adversaries"].obs_shape[0] == base.teams["adversaries"].obs_shape[0] + 2 * 2
    every = jmarl.make("mpe_tag", messages=2, message_receivers="all")
    assert every.teams["prey"].obs_shape[0] == base.teams["prey"].obs_shape[0] + 3 * 2
    assert every.teams["prey"].action_space == Discrete(10)
    ts, state = jax.jit(every.reset)(jax.random.PRNGKey(0))
    acts = {"adversaries": jnp.array([5, 0, 5]), "prey": jnp.array([0])}  # tokens 1, 0, 1 and 0
    ts, _ = jax.jit(every.step)(jax.random.PRNGKey(1), state, acts)
    np.testing.assert_array_equal(ts.obs["prey"][0, -6:], [0, 1, 1, 0, 0, 1])


def test_randomised_messages_carry_no_information():
    def heard_goal_rate(env):
        def one(key):
            ts, state = env.reset(key)
            goal = ts.info["goal"]
            ts, state = env.step(key, state, {"agents": jnp.stack([2 * goal, jnp.int32(0)])})
            return jnp.argmax(ts.obs["agents"][1, -2:]) == goal  # the listener hears the speaker's token
        return float(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), 512)).mean())

    assert heard_goal_rate(jmarl.make("probe_comm", messages=2)) == 1.0
    assert 0.4 < heard_goal_rate(jmarl.make("probe_comm", messages=2, messages_randomised=True)) < 0.6


@pytest.mark.parametrize("kwargs, says", [
    (dict(messages=1), "one-word"),
    (dict(message_dim=2), "cannot carry a continuous message"),
    (dict(messages=2, message_dim=2), "give one of"),
    (dict(messages_randomised=True), "needs a message channel"),
    (dict(message_receivers="all"), "needs a message channel"),
    (dict(messages=2, message_receivers="some"), "not one of"),
    (dict(mesages=2), "Did you mean"),
])
def test_channel_errors_say_what_is_valid(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        jmarl.make("mpe_spread", **kwargs)


def test_nobody_would_hear():
    with pytest.raises(ConfigError, match="nobody would hear"):
        jmarl.make("mpe_speaker_listener", messages=3)
    assert "speaker" in jmarl.make("mpe_speaker_listener", messages=3, message_receivers="all").teams


def test_every_algorithm_takes_the_channel_and_the_cli_keys():
    from jmarl.train.algorithms import algorithm_module, resolve

    for algo, env, extra in [("mappo", "probe_comm", {}), ("qmix", "probe_comm", {}),
                             ("maddpg", "mpe_spread", {"env.continuous_actions": True, "env.message_dim": 1})]:
        kwargs = {"env.messages": 2} if "env.message_dim" not in extra else {}
        r = resolve(algo, env, {**kwargs, **extra, "num_envs": 4})
        assert set(r.env_kwargs) >= {k[4:] for k in {**kwargs, **extra} if k.startswith("env.")}
        trainer = algorithm_module(algo).make_train(r.config, jmarl.make(env, **r.env_kwargs))
        jax.eval_shape(trainer.init, jax.random.PRNGKey(0), r.hparams)  # traced, not compiled
    from jmarl.tools.cli import config_listing

    listing = config_listing("ippo", "probe_comm")
    assert all(f"env.{k}" in listing for k in MESSAGE_KEYS)


# ----------------------------------------------------------------------------------------------------
# The probe: the optimum with the channel, chance without it; jmarl rollout on the trained run
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    from jmarl.tools.cli import main
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    run_dir = tmp_path_factory.mktemp("comm") / "run"
    settings = {"num_envs": 16, "num_steps": 8, "total_timesteps": 8192, "hidden_dim": 16, "num_layers": 1,
                "num_evals": 1, "eval_episodes": 8, "num_epochs": 2, "num_minibatches": 2, "lr": 3e-2,
                "ent_coef": 0.0, "env.messages": 2}
    resolved = resolve("ippo", "probe_comm", settings)
    results = train(resolved, Population.grid([resolved.hparams], [0, 1]), run_dir, quiet=True, wandb="disabled")
    npz = run_dir.parent / "traj.npz"
    assert main(["rollout", str(run_dir), "--episodes", "128", "--out", str(npz)]) == 0
    return SimpleNamespace(run_dir=run_dir, results=results, npz=npz,
                           written=json.loads((run_dir / "results.json").read_text()))


def test_probe_optimum_with_the_channel(probe_run):
    # Chance (no channel, or a randomised one) is a team return of 1; both seeds reach the optimum, 2.
    assert probe_run.results["configs"][0]["returns"] == [2.0, 2.0]


def test_probe_not_reached_with_messages_randomised(probe_run):
    comm = probe_run.written["communication"]
    assert comm["receivers"] == ["agents"]
    assert comm["return"]["values"] == [2.0, 2.0]
    assert max(comm["return_randomised"]["values"]) < 1.3  # chance: 1.0 +- 0.09 over 128 episodes
    assert comm["causal_value"]["mean"] > 0.7
    for key in ("mean", "mean_lo", "mean_hi", "iqm", "median"):
        assert key in comm["causal_value"]
    # The speaker's tokens tell the goal (H(goal) = 1 bit); its vocabulary is used.
    assert comm["message_mi"]["agents_0"]["mean"] > 0.4
    assert comm["message_entropy"]["agents_0"]["mean"] > 0.4


def test_rollout_npz(probe_run):
    data = np.load(probe_run.npz)
    E, T, A = 128, 2, 2
    assert data["valid"].shape == (E, T + 1) and data["valid"].all()
    np.testing.assert_array_equal(data["length"], np.full(E, T))
    assert data["actions_agents"].shape == (E, T, A) and data["rewards_agents"].shape == (E, T, A)
    assert data["messages"].shape == (E, T, A, 2) and data["message_tokens"].shape == (E, T, A)
    assert data["private"].shape == (E, T, A)
    # Tokens are the channel part of the actions (Discrete(2 x 2): action = move + 2 * token).
    np.testing.assert_array_equal(data["message_tokens"], data["actions_agents"] // 2)
    # Member 0 is optimal: every episode's return is 2 (both agents paid 1 on the second step).
    np.testing.assert_array_equal(data["returns_agents"], np.full(E, 2.0))
    assert "positions" not in data  # probe_comm has no render scene


def test_rollout_errors_before_work(probe_run, capsys):
    from jmarl.tools.cli import main

    assert main(["rollout", str(probe_run.run_dir), "--out", "x.txt"]) == 2
    assert "npz" in capsys.readouterr().err
    assert main(["rollout", str(probe_run.run_dir), "--episodes", "0"]) == 2


# ----------------------------------------------------------------------------------------------------
# Trajectories, roles and metrics against independent computations
# ----------------------------------------------------------------------------------------------------
def test_trajectories_positions_roles_and_plot(tmp_path):
    from jmarl.tools.render import cut_episodes, rollout_arrays
    from jmarl.tools.rollout import plot_trajectories, roles, trajectories

    env = jmarl.make("mpe_spread", messages=2, max_steps=5)
    arrays = jax.device_get(jax.jit(lambda k: rollout_arrays(env, k, episodes=3))(jax.random.PRNGKey(0)))
    data = trajectories(env, arrays)
    assert data["positions"].shape == (3, 6, 6, 2)  # 3 agents then 3 landmarks
    np.testing.assert_array_equal(data["entity_is_agent"], [True] * 3 + [False] * 3)
    np.testing.assert_allclose(data["positions"][:, :, :3], np.swapaxes(arrays["states"].env_state.agent_pos, 0, 1))
    assert data["messages"].shape == (3, 5, 3, 2) and data["actions_agents"].shape == (3, 5, 3)
    np.testing.assert_array_equal(data["message_tokens"], data["actions_agents"] // 5)
    matrix = roles(env, cut_episodes(arrays))  # [agents, landmarks]: share of episodes ending nearest each
    state = arrays["states"].env_state
    last = np.linalg.norm(state.agent_pos[-1][:, :, None] - state.landmark_pos[-1][:, None], axis=-1).argmin(-1)
    np.testing.assert_allclose(matrix, np.eye(3)[last].mean(0))
    assert plot_trajectories(data, tmp_path / "t.png").stat().st_size > 1000


def test_spread_metrics_match_an_independent_computation():
    env = EpisodeStats(jmarl.make("mpe_spread"))
    ts, state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    # A hand-made last step: agents 0 and 1 overlap, agent 2 sits 0.05 from landmark 2.
    inner = state.env_state.replace(
        agent_pos=jnp.array([[0.0, 0.0], [0.1, 0.0], [0.5, 0.5]]),
        landmark_pos=jnp.array([[-0.5, 0.0], [0.0, 0.8], [0.55, 0.5]]),
        step=jnp.int32(24))
    ts, state = jax.jit(env.step)(jax.random.PRNGKey(1), state.replace(env_state=inner),
                                  {"agents": jnp.zeros(3, jnp.int32)})
    assert bool(ts.truncated)
    pos, marks = np.asarray(state.env_state.agent_pos), np.asarray(state.env_state.landmark_pos)
    closest = np.linalg.norm(pos[:, None] - marks[None], axis=-1).min(0)
    pairs = sum(np.linalg.norm(pos[i] - pos[j]) < 0.3 for i in range(3) for j in range(i + 1, 3))
    got = ts.info["episode_metrics"]
    assert float(got["collisions"]) == pairs == 1
    assert float(got["covered"]) == (closest < 0.1).sum() == 1
    np.testing.assert_allclose(got["final_distance"], closest.mean(), rtol=1e-6)


def test_smax_metrics_match_an_independent_computation():
    env = jmarl.make("smax")  # 3m: 3 marines a side
    ts, state = env.reset(jax.random.PRNGKey(0))
    assert float(sum(ts.info["metrics"].values())) == 0.0
    # Every unit in range of every other: allies 0 and 1 attack enemy 0, ally 2 attacks enemy 1.
    state = state.replace(pos=jnp.array([[16.0, 16.0], [16.5, 16.0], [17.0, 16.0],
                                         [16.0, 18.0], [16.5, 18.0], [17.0, 18.0]]))
    ts, after = jax.jit(env.step)(jax.random.PRNGKey(1), state, {"allies": jnp.array([5, 5, 6], jnp.int32)})
    m = ts.info["metrics"]
    assert (float(m["attacks"]), float(m["focused_attacks"])) == (3.0, 2.0)
    lost = (np.asarray(state.health) - np.asarray(after.health)) / np.asarray(state.health)
    np.testing.assert_allclose(m["damage_dealt"], lost[3:].sum(), rtol=1e-6)
    np.testing.assert_allclose(m["damage_taken"], lost[:3].sum(), rtol=1e-6)
    assert lost[3:].sum() > 0
    # Units alive are counted on the step that ends the episode only.
    assert float(m["allies_alive"]) == 0.0 and not bool(ts.done)
    done_state = after.replace(health=after.health.at[3:].set(0.0), step=jnp.int32(10))
    end = env.observe(done_state)
    assert bool(end.done) and float(end.info["metrics"]["allies_alive"]) == float((after.health[:3] > 0).sum())
