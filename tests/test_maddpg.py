"""MADDPG: a continuous probe with a known optimum, Gumbel-softmax on a discrete one, critic targets from the
target actors, no gradient path between agents' actors, and config errors before compiling."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.train.algorithms import resolve
from jmarl.algos.maddpg import MADDPGConfig, MADDPGHparams, Transition, gumbel_softmax, make_train

HP = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), MADDPGHparams())


def train_preset(env_name, seed=0, env_kwargs=None, **overrides):
    resolved = resolve("maddpg", env_name, overrides)
    trainer = make_train(resolved.config, jmarl.make(env_name, **{**resolved.env_kwargs, **(env_kwargs or {})}))
    hp = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), resolved.hparams)
    return jax.jit(trainer.train)(jax.random.PRNGKey(seed), hp)


def test_continuous_probe_reaches_optimum_and_stores_final_obs():
    # Team return = 2 x (-mean_i ||a_i - target_i||^2): 0 at the optimum, about -2.2 for random actions and
    # -0.85 for the untrained actors' mid-box action (0, 0).
    runner, metrics = train_preset("probe_continuous")
    assert float(metrics["eval/return"][-1]) > -0.05
    # Every stored step ended its episode; next_obs must be the final observation (the episode's target),
    # not the next episode's first one that AutoReset put in timestep.obs.
    stored = runner.buffer.experience
    assert bool(runner.buffer.is_full) and bool(stored.terminated.all())
    np.testing.assert_array_equal(stored.next_obs["agents"], stored.obs["agents"])


def test_gumbel_softmax_is_one_hot_forward_and_relaxed_backward():
    logits = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    key, w = jax.random.PRNGKey(3), jnp.arange(3.0)
    soft = lambda l: jax.nn.softmax((l + jax.random.gumbel(key, l.shape)) / 0.5)  # the same noise, relaxed
    sample, grad, soft_grad = jax.jit(lambda l: (
        gumbel_softmax(key, l, 0.5), jax.grad(lambda l: (gumbel_softmax(key, l, 0.5) * w).sum())(l),
        jax.grad(lambda l: (soft(l) * w).sum())(l)))(logits)
    np.testing.assert_array_equal(sample.sum(-1), 1.0)
    assert set(np.unique(sample).tolist()) == {0.0, 1.0}
    np.testing.assert_allclose(grad, soft_grad, rtol=1e-5, atol=1e-6)


def test_gumbel_maddpg_coordinates_on_discrete_matrix_game():
    # probe_matrix pays (0, 0) 5, (1, 1) 2, (2, 2) 10 each and nothing off the diagonal: random play scores a
    # team return of about 3.8. With the other agent's action taken from the buffer, MADDPG's actor gradient
    # is local and may settle in the (0, 0) equilibrium (team 10) instead of (2, 2) (team 20): both pass.
    cfg = dict(num_envs=16, num_steps=1, buffer_size=2048, sample_batch_size=128, grad_steps=2, learning_starts=256,
               total_timesteps=16 * 250, num_evals=2, eval_episodes=16, hidden_dim=32, gumbel=True,
               actor_lr=3e-3, critic_lr=3e-3)
    _, metrics = train_preset("probe_matrix", **cfg)
    assert float(metrics["eval/return"][-1]) in (pytest.approx(10.0), pytest.approx(20.0))


# --- hand-made batches on mpe_tag (two learning teams); functions jitted (eager dispatch is slower) -------
@functools.lru_cache(maxsize=None)
def tag_trainer(shared_params: bool):
    """(trainer, params, params of another seed) on continuous mpe_tag."""
    env = jmarl.make("mpe_tag", continuous_actions=True)
    cfg = MADDPGConfig(num_envs=2, num_steps=1, total_timesteps=10, buffer_size=64, sample_batch_size=8,
                       learning_starts=0, shared_params=shared_params)
    trainer = make_train(cfg, env)
    init = jax.jit(lambda key: trainer.init(key, HP).params)
    return trainer, init(jax.random.PRNGKey(0)), init(jax.random.PRNGKey(1))


def random_batch(trainer, key, terminated, B=8) -> Transition:
    return jax.jit(functools.partial(_random_batch, trainer.env.teams, B=B))(key, terminated)


def _random_batch(teams, key, terminated, B) -> Transition:
    keys = iter(jax.random.split(key, 4 * len(teams)))
    per_team = lambda f: {t: f(t) for t in teams}
    shape = lambda t, *rest: (B, teams[t].num_agents) + rest
    return Transition(
        obs=per_team(lambda t: jax.random.normal(next(keys), shape(t, *teams[t].obs_shape))),
        action=per_team(lambda t: jax.random.uniform(next(keys), shape(t, teams[t].num_actions))),
        reward=per_team(lambda t: jax.random.normal(next(keys), shape(t))),
        next_obs=per_team(lambda t: jax.random.normal(next(keys), shape(t, *teams[t].obs_shape))),
        avail=per_team(lambda t: jnp.ones(shape(t, 1), bool)),
        next_avail=per_team(lambda t: jnp.ones(shape(t, 1), bool)),
        terminated=jnp.full((B,), terminated))


@jax.jit
def perturb(tree):
    return jax.tree.map(lambda x: 1.5 * x + 0.1, tree)


def with_actor(params, team, actor):
    return {**params, team: {**params[team], "actor": actor}}


def test_critic_targets_use_target_actors_and_respect_termination():
    trainer, params, target = tag_trainer(shared_params=False)
    batch = random_batch(trainer, jax.random.PRNGKey(2), terminated=False)
    td_targets = jax.jit(lambda params, target, batch: trainer.td_targets(params, target, batch, jax.random.PRNGKey(4), HP))
    y = td_targets(params, target, batch)
    # The online actors (and critics) must not matter.
    changed_online = perturb(params)
    for team, y_team in td_targets(changed_online, target, batch).items():
        np.testing.assert_array_equal(y_team, y[team])
    # The target prey actor changes the prey's *and* the predators' targets (each critic sees every action).
    changed_target = with_actor(target, "prey", perturb(target["prey"]["actor"]))
    for team, y_team in td_targets(params, changed_target, batch).items():
        assert np.abs(np.asarray(y_team - y[team])).max() > 1e-4, team
    # After termination the target is the reward alone, whatever the target networks say.
    done = batch._replace(terminated=jnp.ones_like(batch.terminated))
    for team, y_team in td_targets(params, changed_target, done).items():
        np.testing.assert_allclose(y_team, batch.reward[team], rtol=1e-6)
        assert y_team.shape == batch.reward[team].shape


def test_actor_gradients_do_not_reach_other_agents_actors():
    trainer, params, _ = tag_trainer(shared_params=False)  # one actor per predator: the paths can be told apart
    batch = random_batch(trainer, jax.random.PRNGKey(2), terminated=False)
    n = trainer.env.teams["adversaries"].num_agents
    # d(loss of predator i) / d(every parameter): [N, ...param shape]
    jac = jax.jit(jax.jacobian(lambda p: trainer.actor_loss(p, "adversaries", batch, jax.random.PRNGKey(3), HP)))(params)
    # The prey's actor is never on the path of a predator's loss (its action comes from the buffer).
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(jac["prey"]["actor"]))
    actor = jac["adversaries"]["actor"]  # leaves [N (loss of predator i), N (actor of predator j), ...]
    for i in range(n):
        for j in range(n):
            size = max(float(jnp.abs(g[i, j]).max()) for g in jax.tree.leaves(actor))
            assert (size > 0.0) if i == j else (size == 0.0), (i, j, size)


def test_config_errors_before_compiling():
    with pytest.raises(jmarl.ConfigError, match=r"gumbel=True.*Discrete\(n=5\).*continuous_actions=True"):
        make_train(MADDPGConfig(), jmarl.make("mpe_spread"))
    spread = jmarl.make("mpe_spread", continuous_actions=True)
    with pytest.raises(jmarl.ConfigError, match=r"buffer_size=1000 cannot hold.*need buffer_size >= 1600"):
        make_train(MADDPGConfig(num_envs=64, num_steps=25, buffer_size=1000), spread)
    with pytest.raises(jmarl.ConfigError, match="learning_starts=5000 >= total_timesteps=4000"):
        make_train(MADDPGConfig(num_envs=16, num_steps=1, total_timesteps=4000, learning_starts=5000,
                                buffer_size=2048, sample_batch_size=64), spread)
    with pytest.raises(jmarl.ConfigError, match="grad_steps=0 must be at least 1"):
        make_train(MADDPGConfig(grad_steps=0), spread)
    tag = jmarl.make("mpe_tag", continuous_actions=True)
    with pytest.raises(jmarl.ConfigError, match="not teams of mpe_tag"):
        make_train(MADDPGConfig(fixed_teams=("wolves",)), tag)
    # A fixed team plays inside the env: only the predators learn (and their critic sees only them).
    assert list(make_train(MADDPGConfig(fixed_teams=("prey",), fixed_policy="heuristic"), tag).env.teams) == ["adversaries"]
    # Through the registry: the MPE preset turns continuous actions on; turning them off needs gumbel.
    assert resolve("maddpg", "mpe_spread").env_kwargs == {"continuous_actions": True}
    with pytest.raises(jmarl.ConfigError, match="gumbel"):
        resolved = resolve("maddpg", "mpe_spread", {"env.continuous_actions": False})
        make_train(resolved.config, jmarl.make("mpe_spread", **resolved.env_kwargs))
