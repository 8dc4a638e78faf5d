"""IPPO/MAPPO: probes with known optima, advantage estimation, config errors, sweeps and sharding."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.train.algorithms import resolve
from jmarl.algos.ppo import PRESETS as PPO_PRESETS, PPOConfig, PPOHparams, Transition, gae, hparams_as_arrays, make_train
from jmarl.agents.networks import ResettingGRU

PROBE = dict(num_envs=16, num_steps=8, total_timesteps=16 * 8 * 40, num_minibatches=2, num_evals=2, eval_episodes=16)


def train_once(env_name, seed=0, hp=PPOHparams(), **overrides):
    trainer = make_train(PPOConfig(**{**PROBE, **overrides}), jmarl.make(env_name))
    return jax.jit(trainer.train)(jax.random.PRNGKey(seed), hparams_as_arrays(hp))


@pytest.mark.parametrize("algo", ["ippo", "mappo"])
def test_matrix_game_optimum(algo):
    # Team return = 2 agents x payoff; the optimum (2, 2) pays 10 each, the trap (0, 0) 5.
    _, metrics = train_once("probe_matrix", algo=algo)
    assert float(metrics["eval/return"][-1]) == pytest.approx(20.0)


@pytest.mark.parametrize("algo,recurrent", [("ippo", True), ("mappo", False)])
def test_two_step_game_needs_credit_assignment(algo, recurrent):
    # Reward only at step two; the optimum (8 each) needs agent 0 to pick matrix B at step one (A pays 7).
    _, metrics = train_once("probe_two_step", algo=algo, recurrent=recurrent)
    assert float(metrics["eval/return"][-1]) == pytest.approx(16.0)


def test_independent_parameters_have_agent_axis_and_learn():
    runner, metrics = train_once("probe_matrix", shared_params=False)
    kernel = jax.tree.leaves(runner.params["agents"]["actor"])[0]
    assert kernel.shape[0] == 2  # one parameter set per agent
    assert float(metrics["eval/return"][-1]) == pytest.approx(20.0)


def _transitions(rewards, values, next_values, terminated, done):
    col = lambda x: jnp.asarray(x, jnp.float32)[:, None, None]  # [T, E=1, N=1]
    z = jnp.zeros((len(rewards), 1, 1))
    return Transition(z, z, z, z, z, z, col(values), col(next_values), col(rewards), col(terminated), col(done))


def test_gae_bootstraps_at_truncation_not_termination():
    gamma, lam = 0.9, 1.0
    # One-step episodes: truncated -> bootstrap from V(final)=10; terminated -> no bootstrap.
    trunc = _transitions([1.0], [0.0], [10.0], [0.0], [1.0])
    term = _transitions([1.0], [0.0], [10.0], [1.0], [1.0])
    assert float(gae(trunc, gamma, lam)[1][0, 0, 0]) == pytest.approx(1.0 + 0.9 * 10.0)
    assert float(gae(term, gamma, lam)[1][0, 0, 0]) == pytest.approx(1.0)
    # The recursion stops at a done: step 0 ends an episode, step 1's reward must not leak back.
    two = _transitions([1.0, 100.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0])
    assert float(gae(two, gamma, lam)[0][0, 0, 0]) == pytest.approx(1.0)


def test_gru_resets_on_episode_start():
    gru = ResettingGRU(8)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5))  # [T, B, D]
    starts = jnp.array([True, False, True])[:, None].repeat(4, 1)
    params = gru.init(jax.random.PRNGKey(1), jnp.zeros((4, 8)), (x, starts))
    stale = jax.random.normal(jax.random.PRNGKey(2), (4, 8))
    _, out_stale = gru.apply(params, stale, (x, starts))
    _, out_zero = gru.apply(params, jnp.zeros((4, 8)), (x, starts))
    np.testing.assert_allclose(out_stale, out_zero, atol=1e-6)  # reset before reading step 0
    _, from_step2 = gru.apply(params, stale, (x[2:], starts[2:]))
    np.testing.assert_allclose(out_zero[2], from_step2[0], atol=1e-6)  # and again at step 2
    no_reset = jnp.zeros_like(starts)
    _, out_carry = gru.apply(params, stale, (x, no_reset))
    assert not np.allclose(out_carry[0], out_zero[0])  # the stale state does matter without a reset


def test_config_errors_before_compiling():
    env = jmarl.make("probe_matrix")
    with pytest.raises(jmarl.ConfigError, match=r"num_minibatches=3 does not divide.*valid num_minibatches: \[1, 2, 4"):
        make_train(PPOConfig(num_envs=4, num_steps=4, num_minibatches=3), env)
    with pytest.raises(jmarl.ConfigError, match="divide num_envs"):
        make_train(PPOConfig(num_envs=6, num_steps=4, num_minibatches=4, recurrent=True), env)
    with pytest.raises(jmarl.ConfigError, match="not teams"):
        make_train(PPOConfig(fixed_teams=("prey",)), env)
    with pytest.raises(jmarl.ConfigError, match=r"unknown key 'learning_rate'.*'lr'.*jmarl config ippo --env"):
        resolve("ippo", "probe_matrix", {"learning_rate": 1e-3})
    with pytest.raises(jmarl.ConfigError, match="Did you mean"):
        resolve("ippo", "probe_matrix", {"num_env": 8})
    with pytest.raises(jmarl.ConfigError, match="not a valid int"):
        resolve("ippo", "probe_matrix", {"num_envs": "many"})
    with pytest.raises(jmarl.ConfigError, match="unknown algorithm"):
        resolve("ppo2", "probe_matrix")
    with pytest.raises(jmarl.ConfigError, match="obs_last_action"):
        resolve("ippo", "smax", {"env.obs_last_action": "maybe"})
    # Command-line strings are recorded typed, so a run's config.json and a resume compare values, not spellings.
    typed = resolve("ippo", "smax", {"env.obs_last_action": "true", "env.max_steps": "50"}).env_kwargs
    assert typed == {"obs_last_action": True, "max_steps": 50} and type(typed["max_steps"]) is int


def test_sweep_in_one_program_equals_separate_runs():
    """A 2-config x 2-seed population, vmapped, equals the four runs made one at a time."""
    # Few updates: vmapped and single programs may fuse float ops differently, and training amplifies that.
    trainer = make_train(PPOConfig(**{**PROBE, "total_timesteps": 16 * 8 * 4}), jmarl.make("probe_two_step"))
    configs = [PPOHparams(lr=1e-3), PPOHparams(lr=3e-3, ent_coef=0.0)]
    members = [(hp, seed) for hp in configs for seed in (0, 1)]
    keys = jnp.stack([jax.random.PRNGKey(s) for _, s in members])
    hps = jax.tree.map(lambda *x: jnp.asarray(x, jnp.float32), *[hp for hp, _ in members])
    pop_runner, pop_metrics = jax.jit(jax.vmap(trainer.train))(keys, hps)
    single = jax.jit(trainer.train)
    for i, (hp, seed) in enumerate(members):
        runner, metrics = single(jax.random.PRNGKey(seed), hparams_as_arrays(hp))
        for a, b in zip(jax.tree.leaves(runner.params), jax.tree.leaves(pop_runner.params)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(metrics["train/return"], pop_metrics["train/return"][i], rtol=1e-4, atol=1e-4)
    # Different hyperparameters really produced different runs.
    assert not np.allclose(jax.tree.leaves(pop_runner.params)[0][0], jax.tree.leaves(pop_runner.params)[0][2])


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, json, sys
    assert len(jax.devices()) == 4, jax.devices()
    import jmarl
    from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train
    from jmarl.train.run import Population, population_sharding
    cfg = PPOConfig(num_envs=16, num_steps=8, total_timesteps=16 * 8 * 20, num_minibatches=2, num_evals=2, eval_episodes=16,
                    hidden_dim=16, num_layers=1)
    trainer = make_train(cfg, jmarl.make("probe_two_step"))
    pop = Population.grid([PPOHparams(lr=1e-3), PPOHparams(lr=3e-3)], [0, 1])
    keys, hps = pop.stacked()
    train = jax.jit(jax.vmap(trainer.train))
    sharding = population_sharding(len(pop))
    assert len(sharding.mesh.devices.ravel()) == 4
    sharded = train(*jax.device_put((keys, hps), sharding))
    assert len(jax.tree.leaves(sharded[0].params)[0].sharding.device_set) == 4
    one = jax.device_put((keys, hps), jax.devices()[0])
    single = train(*one)
    out = {"sharded": np.asarray(sharded[1]["train/return"]).tolist(),
           "single": np.asarray(single[1]["train/return"]).tolist()}
    print(json.dumps(out))
""")


def test_sharded_population_matches_one_device(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",  # keeps conftest's flags
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["sharded"], out["single"], rtol=1e-5, atol=1e-5)


def test_fixed_team_does_not_learn_on_tag():
    env = jmarl.make("mpe_tag")
    cfg = PPOConfig(num_envs=4, num_steps=25, total_timesteps=4 * 25 * 2, num_minibatches=2, num_evals=1,
                    eval_episodes=4, fixed_teams=("prey",))
    trainer = make_train(cfg, env)
    runner, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0), hparams_as_arrays(PPOHparams()))
    assert set(runner.params) == {"adversaries"}
    assert "eval/return/prey" in metrics and np.isfinite(metrics["eval/return/adversaries"]).all()


RECURRENT_POPULATION = textwrap.dedent("""
    import jax, jmarl
    from jmarl.algos.ppo import PPOConfig, PPOHparams, hparams_as_arrays, make_train
    from jmarl.train.run import Population
    cfg = PPOConfig(algo="mappo", num_envs=4, num_steps=8, total_timesteps=64, num_minibatches=2, recurrent=True)
    trainer = make_train(cfg, jmarl.make("mpe_spread"))
    keys, hps = Population.grid([PPOHparams()], [0, 1]).stacked()
    runner = jax.block_until_ready(jax.jit(jax.vmap(trainer.init))(keys, hps))
    leaves = jax.tree.leaves(runner.params)
    print(leaves[0].shape[0], any(bool((x[0] != x[1]).any()) for x in leaves))
""")


def test_recurrent_population_initialises():
    # A vmapped orthogonal GRU initialiser deadlocks XLA:CPU's 2-thread pool (jaxlib 0.10); init runs
    # member by member instead (jmarl.agents.networks.sequential_under_vmap). In a subprocess so a hang fails.
    proc = subprocess.run([sys.executable, "-c", RECURRENT_POPULATION], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["2", "True"]  # one parameter set per member, from different keys


def test_presets_layer_env_then_algorithm_then_overrides():
    ippo, mappo = resolve("ippo", "mpe_spread"), resolve("mappo", "mpe_spread")
    assert ippo.config.num_envs == mappo.config.num_envs == 128  # the env's preset, shared
    assert (ippo.config.activation, mappo.config.activation) == ("relu", "tanh")  # "ippo/mpe_spread" refines it
    assert resolve("ippo", "mpe_spread", {"activation": "tanh"}).config.activation == "tanh"  # overrides win
    # Box action spaces layer the "continuous" preset on top (Gaussian policies want no entropy bonus).
    continuous = {"env.continuous_actions": True}
    assert ippo.hparams.ent_coef > 0
    assert resolve("ippo", "mpe_spread", continuous).hparams.ent_coef == PPO_PRESETS["continuous"]["ent_coef"]
    assert resolve("ippo", "mpe_spread", {**continuous, "ent_coef": 0.02}).hparams.ent_coef == 0.02


def test_presets_qualified_by_an_env_keyword_refine_one_map():
    # "smax[scenario=5m_vs_6m]" refines the "smax" preset for that map alone; explicit overrides still win.
    hard, other = (resolve("ippo", "smax", {"env.scenario": s}).hparams for s in ("5m_vs_6m", "2s3z"))
    qualified = PPO_PRESETS["smax[scenario=5m_vs_6m]"]
    assert hard.lr == qualified["lr"] and hard.clip_eps == qualified["clip_eps"]
    assert other.lr == PPO_PRESETS["smax"]["lr"] != qualified["lr"]
    assert hard.ent_coef == other.ent_coef == PPO_PRESETS["smax"]["ent_coef"]  # the rest of "smax" still applies
    assert resolve("mappo", "smax", {"env.scenario": "5m_vs_6m"}).hparams.lr == qualified["lr"]
    assert resolve("ippo", "smax", {"env.scenario": "5m_vs_6m", "lr": 1e-3}).hparams.lr == 1e-3
    assert resolve("ippo", "smax", {"env.scenario": "5m_vs_6m"}, use_preset=False).hparams.lr != qualified["lr"]
    # "ippo/smax[scenario=6h_vs_8z]" is IPPO's alone, and matches the map whatever the enemy's rule.
    ippo_only = PPO_PRESETS["ippo/smax[scenario=6h_vs_8z]"]
    for env_kwargs in ({"env.scenario": "6h_vs_8z"}, {"env.scenario": "6h_vs_8z", "env.advance": "random_visible"}):
        assert resolve("ippo", "smax", env_kwargs).hparams.lr == ippo_only["lr"]
        assert resolve("mappo", "smax", env_kwargs).hparams.lr == PPO_PRESETS["smax"]["lr"] != ippo_only["lr"]


def test_every_ppo_preset_key_names_a_registered_env():
    # A misspelt preset key would silently never apply: each must be ENV, ALGO/ENV, either with [KEY=VALUE]
    # naming a field of the env's config, or "continuous".
    import dataclasses
    import re

    from jmarl.core.registry import env_class, registered_envs

    for key in PPO_PRESETS:
        if key == "continuous":
            continue
        match = re.fullmatch(r"(?:(ippo|mappo)/)?([a-z0-9_]+)(?:\[(\w+)=([^\]]+)\])?", key)
        assert match and match[2] in registered_envs(), key
        if match[3]:
            assert match[3] in {f.name for f in dataclasses.fields(env_class(match[2]).Config)}, key
