"""IPPO/MAPPO with Box actions: a diagonal Gaussian policy with a state-independent log-std, actions clipped to
the box, learning the continuous probe's optimum."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.algos.ppo import PPOConfig, PPOHparams, hparams_as_arrays, make_train

PROBE = dict(num_envs=16, num_steps=8, total_timesteps=16 * 8 * 60, num_minibatches=2, num_evals=2, eval_episodes=64)


@pytest.mark.parametrize("algo,shared_params", [("ippo", True), ("mappo", False)])
def test_gaussian_policy_reaches_continuous_optimum(algo, shared_params):
    # probe_continuous: team return 0 at the optimum (a_i = target_i), -0.85 for the untrained mean (0, 0).
    env = jmarl.make("probe_continuous")
    trainer = make_train(PPOConfig(algo=algo, shared_params=shared_params, **PROBE), env)
    runner, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0), hparams_as_arrays(PPOHparams()))
    assert float(metrics["eval/return"][-1]) > -0.05
    log_std = runner.params["agents"]["actor"]["params"]["log_std"]
    assert log_std.shape == ((2,) if shared_params else (2, 2))  # state-independent: one per action dim
    assert float(log_std.max()) < -0.5  # narrower than at init: the policy became confident

    # Sampled actions are clipped into the box (the log-prob is of the unclipped sample, as stored).
    ts, _ = jax.vmap(trainer.env.reset)(jax.random.split(jax.random.PRNGKey(1), 256))
    wide = jax.tree.map(lambda p: p, runner.params)  # a copy of the containers
    wide["agents"]["actor"]["params"]["log_std"] = jnp.full_like(log_std, 1.0)  # std e: most samples leave the box
    hidden = jax.tree.map(lambda h: jnp.zeros((256,) + h.shape[1:]), runner.hidden)
    policy = lambda params, greedy: trainer.policy(params, hidden, ts, jnp.ones(256, bool),
                                                   jax.random.PRNGKey(2), greedy)
    _, actions, extras = policy(wide, False)
    a, raw = np.asarray(actions["agents"]), np.asarray(extras["agents"][0])
    assert a.shape == (256, 2, 2) and a.min() >= -1.0 and a.max() <= 1.0
    assert np.abs(raw).max() > 1.5  # the raw samples did leave it
    np.testing.assert_array_equal(a, np.clip(raw, -1.0, 1.0))
    # The greedy action is the mean: close to the observed target after training.
    _, greedy, _ = policy(runner.params, True)
    assert float(np.abs(np.asarray(greedy["agents"] - ts.obs["agents"])).mean()) < 0.1
