"""IQL / VDN / QMIX (algos/qlearning.py): the mixer's monotonicity, the TD target at truncation and
termination, GRU resets at episode starts inside sampled sequences, config errors before compiling, the
replay memory, and learning the optimum of the probe games through the CLI (replay and PQN variants)."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl import ConfigError
from jmarl.train.algorithms import resolve
from jmarl.algos import qlearning as ql
from jmarl.tools.cli import main as cli_main
from jmarl.agents.networks import QMixer, QNet


# ----------------------------------------------------------------------------------------------------
# The mixer
# ----------------------------------------------------------------------------------------------------
def test_qmix_mixer_is_monotonic_and_state_dependent():
    mixer = QMixer(embed_dim=8, hypernet_dim=16)
    k_init, k_q, k_s = jax.random.split(jax.random.PRNGKey(0), 3)
    qs = 5.0 * jax.random.normal(k_q, (256, 4))
    states = 3.0 * jax.random.normal(k_s, (256, 7))
    params = mixer.init(k_init, qs[:1], states[:1])
    grads = jax.vmap(jax.grad(lambda q, s: mixer.apply(params, q, s)))(qs, states)  # dQ_tot/dq_i [256, 4]
    assert grads.shape == (256, 4)
    assert (grads >= 0).all(), grads.min()
    assert (grads > 1e-6).mean() > 0.5  # not monotonic by being flat
    # Conditioned on the state: the same q-values mix differently in different states.
    same_q = jnp.broadcast_to(qs[0], qs.shape)
    assert jnp.std(jax.vmap(lambda q, s: mixer.apply(params, q, s))(same_q, states)) > 1e-3


# ----------------------------------------------------------------------------------------------------
# TD targets on hand-made batches
# ----------------------------------------------------------------------------------------------------
GAMMA = 0.9


def _trainer(mixer: str, **overrides):
    """A trainer on probe_two_step (2 agents, one-hot observations of 3 stages, 2 actions); nothing compiles."""
    resolved = resolve({"none": "iql", "vdn": "vdn", "qmix": "qmix"}[mixer], "probe_two_step",
                       {"hidden_dim": 8, "gamma": GAMMA, **overrides})
    return ql.make_train(resolved.config, jmarl.make("probe_two_step")), resolved.hparams


def _batch(obs, next_obs, starts, terminated, reward=(1.0, 2.0), next_avail=None):
    """A time-major batch [L=2, B=1] for team "agents" (2 agents); obs/next_obs f32[2, 3] per step."""
    avail = jnp.ones((2, 1, 2, 2), bool)
    return ql.Transition(
        obs={"agents": jnp.asarray(obs, jnp.float32)[:, None]},
        next_obs={"agents": jnp.asarray(next_obs, jnp.float32)[:, None]},
        avail={"agents": avail}, next_avail={"agents": avail if next_avail is None else next_avail},
        action={"agents": jnp.zeros((2, 1, 2), jnp.int32)},
        reward={"agents": jnp.broadcast_to(jnp.asarray(reward)[:, None, None], (2, 1, 2))},
        state=None, next_state=None,
        terminated=jnp.asarray(terminated)[:, None], starts=jnp.asarray(starts)[:, None])


def _agent_q(trainer, params, sequence, starts):
    """Q f32[L, 2 agents, A] of the agent network run over ``sequence`` f32[L, 2, 3] (ids appended)."""
    net = QNet(2, hidden_dim=8)
    x = jnp.concatenate([jnp.asarray(sequence, jnp.float32), jnp.broadcast_to(jnp.eye(2), (len(sequence), 2, 2))], -1)
    _, q = net.apply(params, jnp.zeros((2, 8)), x, jnp.broadcast_to(jnp.asarray(starts)[:, None], (len(sequence), 2)))
    return q


STAGE = np.eye(3, dtype=np.float32)
O0, FINAL, RESET, LAST = (np.stack([STAGE[i]] * 2) for i in (0, 2, 0, 1))  # per-agent obs f32[2, 3]


def test_td_target_bootstraps_final_obs_at_truncation_and_nothing_after_termination():
    trainer, hp = _trainer("none")  # IQL: per-agent targets, so every number is checked
    online = trainer.init(jax.random.PRNGKey(0), hp).params
    target = trainer.init(jax.random.PRNGKey(1), hp).params
    # Step 0 is truncated: its next_obs is the final observation FINAL, while obs[1] is the next
    # episode's first observation RESET. Step 1 terminates.
    batch = _batch([O0, RESET], [FINAL, LAST], starts=[True, True], terminated=[False, True])
    y = trainer.td_targets(online, target, batch, hp)["agents"][:, 0]  # f32[L, N]

    # Expected at step 0: r + gamma * Q_target(FINAL)[argmax Q_online(FINAL)], both read after O0.
    q_online = _agent_q(trainer, online["agents"]["agent"], [O0, FINAL], [True, False])[1]
    q_target = _agent_q(trainer, target["agents"]["agent"], [O0, FINAL], [True, False])[1]
    best = jnp.argmax(q_online, -1)
    expected0 = 1.0 + GAMMA * jnp.take_along_axis(q_target, best[:, None], -1)[:, 0]
    np.testing.assert_allclose(y[0], expected0, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected0, 1.0)  # the bootstrap term is really there
    # After termination the target is the reward alone, whatever the next observation.
    np.testing.assert_allclose(y[1], [2.0, 2.0], rtol=0, atol=1e-6)

    # The reset observation is not what step 0 bootstraps from; the final observation is.
    other_reset = _batch([O0, LAST], [FINAL, LAST], starts=[True, True], terminated=[False, True])
    np.testing.assert_allclose(trainer.td_targets(online, target, other_reset, hp)["agents"][0, 0], y[0], atol=1e-6)
    other_final = _batch([O0, RESET], [LAST, LAST], starts=[True, True], terminated=[False, True])
    assert not np.allclose(trainer.td_targets(online, target, other_final, hp)["agents"][0, 0], y[0])

    # Unavailable actions are excluded from the target's argmax.
    mask = jnp.ones((2, 1, 2, 2), bool).at[0, 0, jnp.arange(2), best].set(False)
    masked = _batch([O0, RESET], [FINAL, LAST], starts=[True, True], terminated=[False, True], next_avail=mask)
    y_masked = trainer.td_targets(online, target, masked, hp)["agents"][0, 0]
    expected_masked = 1.0 + GAMMA * jnp.take_along_axis(q_target, 1 - best[:, None], -1)[:, 0]
    np.testing.assert_allclose(y_masked, expected_masked, rtol=1e-5, atol=1e-6)


def test_vdn_target_is_team_reward_plus_summed_values():
    trainer, hp = _trainer("vdn", team_reward="sum")
    online = trainer.init(jax.random.PRNGKey(0), hp).params
    batch = _batch([O0, RESET], [FINAL, LAST], starts=[True, True], terminated=[False, True])
    y = trainer.td_targets(online, online, batch, hp)["agents"][:, 0]  # f32[L]
    q = _agent_q(trainer, online["agents"]["agent"], [O0, FINAL], [True, False])[1]
    np.testing.assert_allclose(y[0], 2 * 1.0 + GAMMA * q.max(-1).sum(), rtol=1e-5)
    np.testing.assert_allclose(y[1], 2 * 2.0, rtol=1e-6)
    # reward_scale multiplies the reward, not the bootstrapped value
    y10 = trainer.td_targets(online, online, batch, hp.replace(reward_scale=10.0))["agents"][:, 0]
    np.testing.assert_allclose(y10, y + 9 * np.array([2 * 1.0, 2 * 2.0]), rtol=1e-5)


def test_gru_restarts_at_episode_starts_inside_a_sampled_sequence():
    trainer, hp = _trainer("none")
    params = trainer.init(jax.random.PRNGKey(0), hp).params
    target = lambda first_obs, starts: trainer.td_targets(
        params, params, _batch([first_obs, RESET], [FINAL, LAST], starts, [False, False]), hp)["agents"][1, 0]
    # Step 1 starts an episode: what came before it in the sequence must not matter.
    np.testing.assert_allclose(target(O0, [True, True]), target(LAST, [True, True]), atol=1e-6)
    # Mid-episode the hidden state carries the earlier observation.
    assert not np.allclose(target(O0, [True, False]), target(LAST, [True, False]))


@pytest.mark.parametrize("from_reset", [False, True])
def test_rollouts_start_from_a_reset_when_asked(from_reset):
    """probe_two_step's episodes last 2 steps; 3-step rollouts either run on (the second starts mid-episode)
    or start every env from a reset, so each stored 3-step sequence begins an episode."""
    trainer, hp = _trainer("vdn", num_envs=2, num_steps=3, sample_sequence_length=3, sample_period=3,
                           buffer_size=2 * 12, total_timesteps=2 * 12, learning_starts=6, num_evals=1,
                           eval_episodes=2, rollout_from_reset=from_reset)
    runner, metrics = jax.jit(trainer.run_chunk)(trainer.init(jax.random.PRNGKey(0), hp), hp)
    starts = np.asarray(runner.buffer.experience.starts)  # bool[E, C]: 4 rollouts of 3 steps per env
    expected = np.tile([True, False, True], 4) if from_reset else np.arange(12) % 2 == 0
    np.testing.assert_array_equal(starts, np.broadcast_to(expected, (2, 12)))
    assert np.isfinite(np.asarray(metrics["loss/agents/td_loss"])).all()


@pytest.mark.parametrize("bootstrap", [True, False])
def test_truncation_is_stored_as_terminal_only_when_asked(bootstrap):
    """mpe_spread cut to 3 steps only ever truncates: stored as not terminated (the target bootstraps from
    the final observation) unless ``bootstrap_truncation=False``."""
    resolved = resolve("vdn", "mpe_spread", dict(num_envs=2, num_steps=3, sample_sequence_length=3, sample_period=3,
                                                 buffer_size=2 * 12, total_timesteps=2 * 12, learning_starts=6,
                                                 num_evals=1, eval_episodes=2, hidden_dim=8,
                                                 bootstrap_truncation=bootstrap))
    trainer = ql.make_train(resolved.config, jmarl.make("mpe_spread", max_steps=3))
    runner, _ = jax.jit(trainer.run_chunk)(trainer.init(jax.random.PRNGKey(0), resolved.hparams), resolved.hparams)
    terminated = np.asarray(runner.buffer.experience.terminated)  # bool[E, C]
    ends = np.broadcast_to(np.arange(12) % 3 == 2, (2, 12))
    np.testing.assert_array_equal(terminated, ends if not bootstrap else np.zeros_like(ends))


# ----------------------------------------------------------------------------------------------------
# Configuration and memory
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, match", [
    ({"num_envs": 8, "buffer_size": 1001}, "not a multiple of num_envs"),
    ({"num_envs": 8, "buffer_size": 80, "sample_sequence_length": 25}, "cannot hold"),
    ({"learning_starts": 10**9}, "nothing would be learnt"),
    ({"algo_variant": "pqn", "num_envs": 8, "num_minibatches": 3}, "does not divide num_envs"),
    ({"fixed_teams": ("agents",)}, "at least one must learn"),
])
def test_config_errors_raise_before_compiling(overrides, match):
    resolved = resolve("qmix", "mpe_spread", overrides)
    with pytest.raises(ConfigError, match=match):
        ql.make_train(resolved.config, jmarl.make("mpe_spread"))


def test_replay_memory_of_the_mpe_preset():
    resolved = resolve("qmix", "mpe_spread")
    cfg = resolved.config
    # Per stored step of mpe_spread (3 agents, obs 18, 5 actions, global state 54): obs and next_obs,
    # global state and next global state (f32), avail and next_avail (bool), action (i32), reward (f32),
    # terminated and starts (bool).
    per_step = 2 * 3 * 18 * 4 + 2 * 54 * 4 + 2 * 3 * 5 + 3 * 4 + 3 * 4 + 2
    buffer_bytes = ql.replay_memory_bytes(cfg, jmarl.make("mpe_spread"))
    assert abs(buffer_bytes - cfg.buffer_size * per_step) < 64  # + the write index and the full flag
    # VDN stores no global state.
    vdn = resolve("vdn", "mpe_spread").config
    assert ql.replay_memory_bytes(vdn, jmarl.make("mpe_spread")) < buffer_bytes - vdn.buffer_size * 2 * 54 * 4 + 64


# ----------------------------------------------------------------------------------------------------
# Learning, through the command line (trains, evaluates, checkpoints the buffer with the runner)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["qmix", "vdn"])
def test_learns_the_optimum_of_the_matrix_game(algo, tmp_path):
    # probe_matrix pays 10 to each agent for joint action (2, 2), 5 for (0, 0): greedy return 20 is the optimum.
    out = tmp_path / algo
    rc = cli_main(["train", algo, "--env", "probe_matrix", "--seeds", "2", "--out", str(out), "--quiet",
                   "--wandb", "disabled", "hidden_dim=16"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["configs"][0]["returns"] == pytest.approx([20.0, 20.0])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] == resolve(algo, "probe_matrix").config.total_timesteps
    assert rows[-1]["learning"] == 1.0 and rows[0]["epsilon"] > rows[-1]["epsilon"]
    assert len(list((out / "checkpoints").glob("chunk_*"))) >= 1


def test_pqn_qmix_solves_the_two_step_game(tmp_path):
    # probe_two_step: agent 0's first action picks matrix A (7 for everyone) or B (8 only for joint action
    # (1, 1)); the optimum 8 per agent (16 for the team) needs credit assigned through time. The buffer-free
    # PQN variant, checkpointed without a buffer or target network.
    out = tmp_path / "pqn"
    rc = cli_main(["train", "qmix", "--env", "probe_two_step", "--seeds", "2", "--out", str(out), "--quiet",
                   "--wandb", "disabled", "algo_variant=pqn", "num_envs=32", "num_steps=2", "num_minibatches=4",
                   "num_epochs=2", "hidden_dim=16"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["configs"][0]["returns"] == pytest.approx([16.0, 16.0])
