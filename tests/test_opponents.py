"""Fixed teams (jmarl/agents/opponents.py): MPE scripted heuristics, the fixed-team wrapper as PPO and Q-learning use
it, checkpoint opponents, and the config errors raised before anything compiles."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.train.algorithms import resolve
from jmarl.algos import ppo, qlearning
from jmarl.envs.mpe.core import World, action_force, steer
from jmarl.agents.opponents import Opponent, policy_opponent, random_opponent, with_fixed_teams
from jmarl.agents.rollout import random_actions
from jmarl.train.run import Population, train

EPISODES = 300


def mean_captures(env, pred_heuristic, prey_heuristic, key) -> np.ndarray:
    """Captures per episode (predator team return / (10 x predators)) of EPISODES episodes for each
    setting: ``pred_heuristic``, ``prey_heuristic`` bool[S] pick each team's policy (scripted or uniform
    random). All settings run in one program: f32[S]."""
    na = env.teams["adversaries"].num_agents

    def act(key, state, ts, team, heuristic):
        scripted = env.heuristic_actions(key, state, team)
        random = random_actions(env.teams[team].action_space, key, ts.avail_actions[team][None])[0]
        pick = heuristic.reshape((1,) * scripted.ndim)
        return jnp.where(pick, scripted, random)

    def episode(key, pred_h, prey_h):
        k_reset, k_run = jax.random.split(key)
        ts, state = env.reset(k_reset)

        def step(carry, key):
            ts, state = carry
            k_pred, k_prey, k_env = jax.random.split(key, 3)
            actions = {"adversaries": act(k_pred, state, ts, "adversaries", pred_h),
                       "prey": act(k_prey, state, ts, "prey", prey_h)}
            ts, state = env.step(k_env, state, actions)
            return (ts, state), ts.reward["adversaries"].sum()

        _, reward = jax.lax.scan(step, (ts, state), jax.random.split(k_run, env.max_steps))
        return reward.sum() / (10.0 * na)

    def setting(pred_h, prey_h):
        return jax.vmap(episode, (0, None, None))(jax.random.split(key, EPISODES), pred_h, prey_h).mean()

    return np.asarray(jax.jit(jax.vmap(setting))(jnp.asarray(pred_heuristic), jnp.asarray(prey_heuristic)))


def test_tag_heuristics_beat_random():
    env = jmarl.make("mpe_tag")
    random, chase, flee = mean_captures(env, [False, True, False], [False, False, True], jax.random.PRNGKey(0))
    # Measured: random vs random 0.46 captures per episode, chasing predators 4.3, fleeing prey 0.08.
    assert chase > 3 * random + 0.5, (random, chase)
    assert flee < 0.5 * random, (random, flee)


def test_steer_moves_along_the_direction():
    direction = jnp.array([[0.3, -0.1], [-2.0, 1.0], [0.1, 0.4], [0.0, -1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(steer(direction, continuous=False), [2, 1, 4, 3, 0])  # right left up down no-op
    world = World(agent_size=(0.1,) * 5, landmark_size=(), agent_accel=(1.0,) * 5)
    force = action_force(world, steer(direction, continuous=True), continuous=True)
    # Continuous actions push along the direction itself, the dominant axis at full strength.
    np.testing.assert_allclose(force, direction / np.maximum(np.abs(direction).max(1, keepdims=True), 1e-6),
                               atol=1e-6)


def test_mpe_heuristics_give_valid_actions():
    envs = [jmarl.make(name, continuous_actions=c) for name in ("mpe_spread", "mpe_tag", "mpe_adversary")
            for c in (False, True)]

    @jax.jit
    def scripted(key):  # every env and team in one program
        return [{t: env.heuristic_actions(key, env.reset(key)[1], t) for t in env.teams} for env in envs]

    for env, actions in zip(envs, scripted(jax.random.PRNGKey(0))):
        jmarl.check_actions(env.teams, actions, env.name)  # shapes and dtypes
        assert all(team.action_space.contains(actions[t]) for t, team in env.teams.items()), env.name


def rollout_fixed(env, probe, key, num_envs=4, num_steps=60):
    """Step a trainer's env (fixed teams act inside it) with random learner actions, as a training rollout
    does. Per step [T, E, ...]: the fixed teams' actions (``info["fixed_actions"]``), ``probe(key, state)``
    of the fixed-team wrapper's state they acted in, and the rewards."""
    split = jax.random.split

    def run(key):
        ts, state = jax.vmap(env.reset)(split(key, num_envs))

        def step(carry, key):
            ts, state = carry
            k_act, k_env, k_probe = split(key, 3)
            expected = probe(k_probe, state.env_state)  # EpisodeStats' state holds the wrapper's
            actions = jax.vmap(env.sample_actions)(split(k_act, num_envs))
            ts, state = jax.vmap(env.step)(split(k_env, num_envs), state, actions)
            return (ts, state), (ts.info["fixed_actions"], expected, ts.reward)

        return jax.lax.scan(step, (ts, state), split(key, num_steps))[1]

    return jax.jit(run)(key)


def learnt_teams(trainer) -> set:
    runner = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), ppo.hparams_as_arrays(ppo.PPOHparams()))
    return set(runner.params)


def test_fixed_heuristic_prey_from_command_line_strings():
    # As `jmarl train ippo --env mpe_tag fixed_teams=prey fixed_policy=heuristic` parses them.
    resolved = resolve("ippo", "mpe_tag", {"fixed_teams": "prey", "fixed_policy": "heuristic"})
    assert resolved.config.fixed_teams == ("prey",) and resolved.config.fixed_policy == "heuristic"
    trainer = ppo.make_train(resolved.config, jmarl.make("mpe_tag"))
    assert list(trainer.env.teams) == ["adversaries"] and learnt_teams(trainer) == {"adversaries"}
    base = jmarl.make("mpe_tag")
    scripted = lambda k, s: jax.vmap(lambda st: base.heuristic_actions(k, st, "prey"))(s.env_state)  # noqa: E731
    fixed, expected, reward = rollout_fixed(trainer.env, scripted, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(fixed["prey"], expected)  # every step, across auto-resets (60 > 2 episodes)
    assert len(np.unique(expected)) > 1
    assert reward["prey"].shape == (60, 4, 1)  # the fixed team's reward is still reported (episode statistics)


def test_qlearning_fixed_heuristic_team():
    config = qlearning.QLearningConfig(mixer="vdn", fixed_teams=("prey",), fixed_policy="heuristic", num_envs=4,
                                       buffer_size=400, learning_starts=100, total_timesteps=1000)
    trainer = qlearning.make_train(config, jmarl.make("mpe_tag"))
    runner = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), qlearning.QLearningHparams())
    assert set(runner.params) == {"adversaries"} and set(runner.buffer.experience.action) == {"adversaries"}


def test_config_errors_before_compiling(tmp_path):
    tag = jmarl.make("mpe_tag")
    with pytest.raises(jmarl.ConfigError,
                       match=r"policy 'heurstic' for team '\w+' is not valid.*\['random', 'heuristic'\]"):
        ppo.make_train(ppo.PPOConfig(fixed_teams=("prey",), fixed_policy="heurstic"), tag)
    with pytest.raises(jmarl.ConfigError, match="needs fixed_teams"):
        ppo.make_train(ppo.PPOConfig(fixed_policy="heuristic"), tag)
    with pytest.raises(jmarl.ConfigError, match="has no scripted policy"):  # a wrapper's state is not tag's
        ppo.make_train(ppo.PPOConfig(fixed_teams=("prey",), fixed_policy="heuristic"), jmarl.AutoReset(tag))
    with pytest.raises(jmarl.ConfigError, match="at least one must learn"):
        qlearning.make_train(qlearning.QLearningConfig(fixed_teams=("adversaries", "prey")), tag)
    with pytest.raises(jmarl.ConfigError, match="not valid"):  # a directory that is not a run
        ppo.make_train(ppo.PPOConfig(fixed_teams=("prey",), fixed_policy=str(tmp_path)), tag)


def test_a_users_opponent_plugs_in():
    """``with_fixed_teams`` takes an Opponent (or {team: Opponent or name}) besides the names: a policy of the
    user's own plays the team, with its own recurrent state reset with each episode."""
    tag = jmarl.make("mpe_tag")
    up = policy_opponent("prey", lambda key, obs, avail: jnp.full(obs.shape[0], 4, jnp.int32))  # always "up"

    def count_act(key, env_state, ts, hidden, starts):  # a recurrent opponent: steps since the episode began
        return hidden + 1, jnp.full((1,), hidden % 5, jnp.int32)

    counting = Opponent(lambda: jnp.zeros((), jnp.int32), count_act)
    for spec, expected in [(up, np.full(60, 4)), ({"prey": counting}, np.arange(60) % 25 % 5)]:
        env = jmarl.AutoReset(jmarl.EpisodeStats(with_fixed_teams(tag, ["prey"], spec)))
        assert list(env.teams) == ["adversaries"]
        fixed, _, _ = rollout_fixed(env, lambda k, s: 0, jax.random.PRNGKey(0), num_envs=2)
        np.testing.assert_array_equal(fixed["prey"][:, :, 0], np.stack([expected] * 2, 1))  # across auto-resets

    with pytest.raises(jmarl.ConfigError, match=r"dict has teams \['adversaries'\].*fixed teams are \['prey'\]"):
        with_fixed_teams(tag, ["prey"], {"adversaries": up})
    with pytest.raises(jmarl.ConfigError, match="must be a policy name .* got function"):
        with_fixed_teams(tag, ["prey"], lambda key, obs, avail: obs)
    with pytest.raises(jmarl.ConfigError, match=r"an opponent \(Opponent\) needs fixed_teams"):
        with_fixed_teams(tag, [], up)


def test_random_actions_have_one_home():
    """Masked uniform actions are ``Space.sample(key, shape, avail)``; ``Environment.sample_actions``,
    ``random_actions`` and the random opponent call it, and keep the random stream they always drew
    (Gumbel-max over 0 / -inf logits)."""
    space, key = jmarl.Discrete(6), jax.random.PRNGKey(7)
    avail = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (4000, 3, 6)).at[..., 5].set(True)  # [B, N, A]
    drawn = np.asarray(space.sample(key, (4000, 3), avail))
    np.testing.assert_array_equal(drawn, jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf)))
    np.testing.assert_array_equal(drawn, random_actions(space, key, avail))
    assert np.take_along_axis(np.asarray(avail), drawn[..., None], -1).all()  # only available actions ...
    mask = np.asarray(avail)
    expected = (mask / mask.sum(-1, keepdims=True)).reshape(-1, 6).sum(0)  # ... uniform among them
    np.testing.assert_allclose(np.bincount(drawn.ravel(), minlength=6), expected, rtol=0.1)  # ~5 sigma
    with pytest.raises(ValueError, match=r"avail has shape \(4000, 3, 6\), expected \(3, 6\)"):
        space.sample(key, (3,), avail)

    tag = jmarl.make("mpe_tag")  # every action available ([N, 5] masks all True)
    ts, state = tag.reset(key)
    keys = jax.random.split(key, 2)
    sampled = tag.sample_actions(key, ts.avail_actions)
    for k, (t, team) in zip(keys, tag.teams.items()):
        np.testing.assert_array_equal(sampled[t], team.action_space.sample(k, (team.num_agents,), ts.avail_actions[t]))
    _, prey = random_opponent(tag, "prey").act(key, state, ts, (), jnp.ones((), bool))
    batch_of_one = random_actions(tag.teams["prey"].action_space, key, ts.avail_actions["prey"][None])[0]
    np.testing.assert_array_equal(prey, batch_of_one)
    box = jmarl.Box(-1.0, 1.0, (5,))  # a box has nothing to mask: avail [B, N, 1] is accepted and ignored
    np.testing.assert_array_equal(random_actions(box, key, jnp.ones((2, 3, 1), bool)), box.sample(key, (2, 3)))


# ----------------------------------------------------------------------------------------------------
# Checkpoint opponents
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def both_learning_run(tmp_path_factory):
    """A tiny IPPO run on mpe_tag with both teams learning (two updates), saved as a run directory."""
    run_dir = tmp_path_factory.mktemp("runs") / "both"
    resolved = resolve("ippo", "mpe_tag", dict(num_envs=8, num_steps=25, total_timesteps=400, num_minibatches=1,
                                               num_epochs=1, num_evals=1, eval_episodes=4, hidden_dim=16),
                       use_preset=False)
    train(resolved, Population.grid([resolved.hparams], [0]), run_dir, quiet=True, wandb="disabled",
          final_eval_factor=1)
    return run_dir


def test_checkpoint_prey_acts_as_the_loaded_policy(both_learning_run):
    config = ppo.PPOConfig(num_envs=8, num_steps=25, fixed_teams=("prey",), fixed_policy=str(both_learning_run))
    trainer = ppo.make_train(config, jmarl.make("mpe_tag"))
    assert learnt_teams(trainer) == {"adversaries"}  # nothing of the prey is learnt
    loaded = jmarl.load(both_learning_run)
    assert set(loaded.env.teams) == {"adversaries", "prey"}  # nothing was fixed in that run

    def reference(key, state):  # the loaded policy on the base env's TimeStep (both teams' observations)
        return loaded.act(key, state.timestep, loaded.init_hidden(8), jnp.zeros(8, bool))[1]["prey"]

    fixed, expected, _ = rollout_fixed(trainer.env, reference, jax.random.PRNGKey(1), num_envs=8, num_steps=30)
    np.testing.assert_array_equal(fixed["prey"], expected)  # greedy: the same actions, from different keys
    assert len(np.unique(expected)) > 1  # and not a constant that anything would match


def test_checkpoint_that_does_not_fit_raises(both_learning_run, tmp_path):
    run = str(both_learning_run)
    with pytest.raises(jmarl.ConfigError, match=r"team 'prey' has obs_shape \(14,\) in that run but \(16,\) here"):
        ppo.make_train(ppo.PPOConfig(fixed_teams=("prey",), fixed_policy=run), jmarl.make("mpe_tag", num_adversaries=4))
    with pytest.raises(jmarl.ConfigError, match="trained on mpe_tag, not mpe_adversary"):
        ppo.make_train(ppo.PPOConfig(fixed_teams=("agents",), fixed_policy=run), jmarl.make("mpe_adversary"))
    # A run in which the prey did not learn has no prey policy to load.
    fixed = tmp_path / "prey_fixed"
    shutil.copytree(both_learning_run, fixed)
    meta = json.loads((fixed / "config.json").read_text())
    meta["config"]["fixed_teams"] = ["prey"]
    (fixed / "config.json").write_text(json.dumps(meta))
    with pytest.raises(jmarl.ConfigError, match=r"team 'prey' did not learn in that run; .* \['adversaries'\]"):
        ppo.make_train(ppo.PPOConfig(fixed_teams=("prey",), fixed_policy=str(fixed)), jmarl.make("mpe_tag"))
