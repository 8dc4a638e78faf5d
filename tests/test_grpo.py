"""GRPO (algos/grpo.py): probe optima, group-relative advantages by hand, env-step accounting, config errors,
and the run machinery end to end (CLI, jmarl.load)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.algos.grpo import GRPOConfig, GRPOHparams, branch_returns, group_advantages, hparams_as_arrays, make_train
from jmarl.train.algorithms import resolve

PROBE = dict(num_envs=16, group_size=4, horizon=1, total_timesteps=16 * 4 * 40, num_minibatches=2, num_evals=2,
             eval_episodes=16)


def train_population(env_name, seeds=(0, 1), hp=GRPOHparams(), **overrides):
    """Every seed in one vmapped program (what `jmarl train --seeds` runs); ``hp`` fields may be per-seed arrays."""
    trainer = make_train(GRPOConfig(**{**PROBE, **overrides}), jmarl.make(env_name))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    hps = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), (len(seeds),)), hp)
    return trainer, jax.jit(jax.vmap(trainer.train))(keys, hps)


def test_matrix_game_optimum_with_the_max_baseline_and_the_kl_penalty():
    # Team return = 2 agents x payoff: the optimum (2, 2) pays 20, the trap (0, 0) 10. "max" pushes every branch
    # but the group's best down (the default mean_std is trained end to end below, on the two-step game).
    # The third member repeats seed 0 with a strong KL penalty to the rollout policy (one program for all three).
    hp = GRPOHparams(lr=3e-3, kl_coef=jnp.array([0.0, 0.0, 300.0]))
    _, (_, metrics) = train_population("probe_matrix", seeds=(0, 1, 0), hp=hp, advantage="max")
    free, penalised = slice(0, 2), 2
    np.testing.assert_allclose(metrics["eval/return"][free, -1], 20.0)
    # Groups of a random policy disagree; once it has converged, nearly every group ties.
    tied = metrics["grpo/agents/tied_groups"]  # [seeds, chunks, updates]
    assert (tied[free, 0, 0] < 0.5).all() and (tied[free, -1, -1] > 0.9).all()
    # The penalty holds each update close to the policy that collected the data: a much smaller step (KL per
    # update) than the same seed without it, so after the same updates that policy is still near uniform over
    # the 3 actions (entropy log 3 = 1.10) and scores like random play, where the free one has converged.
    kl = metrics["loss/agents/kl"].reshape(3, -1).mean(1)
    assert kl[penalised] < kl[0] / 5, kl
    entropy = metrics["loss/agents/entropy"][:, -1, -1]
    assert entropy[penalised] > 1.0 and entropy[0] < 0.1, entropy
    assert metrics["train/return"][penalised, -1].mean() < 10 < metrics["train/return"][0, -1].mean()


def test_group_advantages_by_hand():
    r = jnp.array([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 4.0]])
    std0 = np.sqrt(3.5)  # population std of [1, 2, 3, 6] (mean 3)
    expected = {
        "mean": [[-2, -1, 0, 3], [-2, -2, 2, 2]],
        "mean_std": [[-2 / std0, -1 / std0, 0, 3 / std0], [-1, -1, 1, 1]],
        "max": [[-5, -4, -3, 0], [-4, -4, 0, 0]],
        # R_k minus the mean of the other three: 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3; 0 - 8/3, 4 - 4/3.
        "leave_one_out": [[1 - 11 / 3, 2 - 10 / 3, 0, 4], [-8 / 3, -8 / 3, 8 / 3, 8 / 3]],
    }
    for mode, want in expected.items():
        np.testing.assert_allclose(group_advantages(r, mode), want, rtol=1e-5, atol=1e-6, err_msg=mode)
    with pytest.raises(ValueError, match="not one of"):
        group_advantages(r, "median")


@pytest.mark.parametrize("mode", ["mean", "mean_std", "max", "leave_one_out"])
def test_identical_returns_give_zero_advantage(mode):
    # Values whose float mean is not exactly themselves (0.1 x 3 / 3 != 0.1 in float32): without centring
    # on a group member first, mean_std would divide a 1e-9 residue by a 1e-9 std.
    r = jnp.array([[0.1] * 3, [1e6 + 0.1] * 3, [-7.3] * 3, [0.0] * 3], jnp.float32)
    assert (group_advantages(r, mode) == 0).all()
    # ... and a group that does differ is not zero.
    assert (group_advantages(jnp.array([[0.1, 0.1, 0.2]]), mode) != 0).any()


def test_branch_returns_stop_at_the_episode_end_and_discount():
    # H=3 steps, B=2 branches, N=2 agents; branch 1's episode ends after its first step.
    reward = jnp.array([[[1.0, 1.0], [2.0, 0.0]], [[1.0, 0.0], [5.0, 5.0]], [[4.0, 4.0], [9.0, 9.0]]])
    alive = jnp.array([[True, True], [True, False], [True, False]])[..., None].repeat(2, -1)
    np.testing.assert_allclose(branch_returns(reward, alive, 0.5), [2 + 0.5 * 1 + 0.25 * 8, 2.0])


def test_config_errors_before_compiling():
    env = jmarl.make("probe_matrix")
    with pytest.raises(jmarl.ConfigError, match="group_size=1"):
        make_train(GRPOConfig(**{**PROBE, "group_size": 1}), env)
    with pytest.raises(jmarl.ConfigError, match="num_steps=2 advances running episodes"):
        make_train(GRPOConfig(**{**PROBE, "num_steps": 2}), env)
    with pytest.raises(jmarl.ConfigError, match=r"horizon=5 is longer than probe_matrix's episodes \(max_steps=1\)"):
        make_train(GRPOConfig(**{**PROBE, "horizon": 5}), env)
    with pytest.raises(jmarl.ConfigError, match=r"num_minibatches=3 does not divide num_envs x group_size x horizon"):
        make_train(GRPOConfig(**{**PROBE, "num_minibatches": 3}), env)
    with pytest.raises(jmarl.ConfigError, match=r"less than one update's env steps"):
        make_train(GRPOConfig(**{**PROBE, "total_timesteps": 10}), env)
    for key in ("num_epochs", "num_minibatches", "hidden_dim", "num_layers"):  # were accepted (0: ZeroDivision)
        for value in (0, -1):
            with pytest.raises(jmarl.ConfigError, match=rf"grpo: {key}={value} must be at least 1"):
                make_train(GRPOConfig(**{**PROBE, key: value}), env)
    with pytest.raises(jmarl.ConfigError, match=r"advantage='median' is not one of"):
        resolve("grpo", "probe_matrix", {"advantage": "median"})
    with pytest.raises(jmarl.ConfigError, match="Did you mean"):
        resolve("grpo", "probe_matrix", {"group_sise": 4})
    # The presets resolve, and the horizon fits each env.
    for env_name in ("mpe_spread", "smax", "probe_two_step"):
        resolved = resolve("grpo", env_name)
        make_train(resolved.config, jmarl.make(env_name, **resolved.env_kwargs))


def test_two_step_game_end_to_end(tmp_path):
    """`jmarl train grpo` on the two-step game (reward only at step two: 8 needs agent 0 to choose matrix B
    first; A pays 7), 2 seeds in one program, with roots along running episodes, a GRU whose hidden state is
    branched with the env state, a horizon of 3 that runs past the 2-step episodes' end (masked) and one
    untrained step between roots; then jmarl.load's recurrent policy plays the optimum."""
    import json

    from jmarl.tools.cli import main

    run_dir = tmp_path / "run"
    settings = ["horizon=3", "branch_at=running", "num_steps=1", "recurrent=True", f"total_timesteps={16 * 13 * 40}",
                "num_evals=2", "eval_episodes=16"]
    assert main(["train", "grpo", "--env", "probe_two_step", "--seeds", "2", "--out", str(run_dir), "--wandb",
                 "disabled", "--quiet", *settings]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    np.testing.assert_allclose(results["configs"][0]["returns"], 16.0)  # greedy, both seeds
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Env steps an update consumes: E x (K x H + num_steps) = 16 x (4 x 3 + 1), counted like PPO's E x T.
    config = resolve("grpo", "probe_two_step", dict(s.split("=") for s in settings)).config
    assert config.batch_size == 16 * 13 and rows[-1]["env_steps"] == config.num_updates * 16 * 13
    # Roots are 4 steps apart on 2-step episodes, so each env's roots keep the point of the episode it was
    # spread to at init: 2 of 3 branch steps alive from an episode's first step, 1 of 3 from its second.
    # Without the spread every env would sit at the second step forever (alive 1/3 everywhere).
    assert 0.34 < np.mean([r["grpo/alive_frac"] for r in rows]) < 0.65

    policy = jmarl.load(run_dir)
    act = jax.jit(policy.act)
    ts, state = jax.vmap(policy.env.reset)(jax.random.split(jax.random.PRNGKey(0), 4))
    hidden, actions = act(jax.random.PRNGKey(1), ts, policy.init_hidden(4), jnp.ones(4, bool))
    np.testing.assert_array_equal(actions["agents"][:, 0], 1)  # agent 0 picks matrix B
    ts, state = jax.vmap(policy.env.step)(jax.random.split(jax.random.PRNGKey(2), 4), state, actions)
    _, actions = act(jax.random.PRNGKey(3), ts, hidden, jnp.zeros(4, bool))
    ts, _ = jax.vmap(policy.env.step)(jax.random.split(jax.random.PRNGKey(4), 4), state, actions)
    np.testing.assert_array_equal(ts.reward["agents"], 8.0)  # then both pick 1: B[1, 1]
