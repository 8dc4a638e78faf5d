"""PettingZoo both ways: ``to_pettingzoo`` passes PettingZoo's own ``parallel_api_test`` on every registered jmarl
environment and gives the jmarl env's transitions in numpy, seeded as PettingZoo seeds; ``from_pettingzoo`` runs
mpe2's simple_spread (a PettingZoo ParallelEnv) under jmarl's wrappers and IPPO through host callbacks."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pettingzoo = pytest.importorskip("pettingzoo", reason="pettingzoo is not installed (it comes with mpe2, a dev extra)")
from pettingzoo.test import parallel_api_test  # noqa: E402

import jmarl  # noqa: E402
from jmarl import AutoReset  # noqa: E402
from jmarl.adapters.pettingzoo import from_pettingzoo, to_pettingzoo  # noqa: E402
from tiny_env import Counter  # noqa: E402

# Settings that make an env's episodes short (the API test plays two whole episodes of each env).
SHORT = {"smax": dict(scenario="3m", max_steps=30)}


@pytest.mark.parametrize("name", jmarl.registered_envs())
def test_parallel_api_test_on_every_jmarl_env(name):
    env = to_pettingzoo(jmarl.make(name, **SHORT.get(name, {})))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=1000)
    # PettingZoo's test only warns about missing or extra entries for live agents; jmarl's must have none.
    assert not [str(w.message) for w in caught if "agent" in str(w.message).lower()]
    assert env.agents == []  # the episode ran to its end: every agent terminated or truncated


def test_numpy_transitions_and_seeding_match_the_jmarl_env():
    """reset(seed=s) is the jmarl env's reset from PRNGKey(s) (split once, as every step splits); the same
    seed replays the same episode, reset() continues the random stream; actions of any numeric form work."""
    jm = Counter(Counter.Config(max_steps=3, noise=1.0))
    env = to_pettingzoo(jm)
    assert env.possible_agents == ["runners_0", "runners_1", "pilot_0"]
    obs, infos = env.reset(seed=7)
    ts, state = jm.reset(jax.random.split(jax.random.PRNGKey(7))[1])
    assert isinstance(obs["runners_1"], np.ndarray) and obs["runners_1"].dtype == np.float32
    np.testing.assert_array_equal(obs["runners_1"], ts.obs["runners"][1])
    np.testing.assert_array_equal(infos["runners_0"]["action_mask"], [1, 1, 0])  # action 2 masked at first
    assert "action_mask" not in infos["pilot_0"]  # a Box agent has no mask
    np.testing.assert_array_equal(env.state(), ts.global_state)

    actions = {"runners_0": 1, "runners_1": np.int64(0), "pilot_0": np.array([0.25, -0.25], np.float64)}
    first = env.step(actions)
    obs, rewards, terms, truncs, infos = first
    assert rewards == {"runners_0": 2.0, "runners_1": 1.0, "pilot_0": 1.0}
    assert terms == truncs == {a: False for a in env.possible_agents}
    for _ in range(2):
        *_, terms, truncs, _ = env.step(actions)
    assert all(truncs.values()) and not any(terms.values()) and env.agents == []  # the 3-step time limit

    again = env.reset(seed=7)  # the same seed: the same episode
    np.testing.assert_array_equal(again[0]["pilot_0"], jm.reset(jax.random.split(jax.random.PRNGKey(7))[1])[0].obs["pilot"][0])
    np.testing.assert_array_equal(env.step(actions)[0]["runners_0"], first[0]["runners_0"])
    other = env.reset()  # no seed: the stream goes on, a different start
    assert not np.array_equal(other[0]["pilot_0"], again[0]["pilot_0"])
    with pytest.raises(ValueError, match="no action"):
        env.step({"runners_0": 0})


def test_action_mask_in_observation():
    """With mask_in_obs, observations are PettingZoo's {"observation", "action_mask"} Dicts, in their space."""
    env = to_pettingzoo(jmarl.make("smax", scenario="3m", max_steps=5), mask_in_obs=True)
    obs, _ = env.reset(seed=0)
    agent = env.possible_agents[0]
    assert env.observation_space(agent).contains(obs[agent])
    assert obs[agent]["action_mask"].dtype == np.int8 and 0 < obs[agent]["action_mask"].sum() < len(obs[agent]["action_mask"])


# --------------------------------------------------------------------------------------------------
# PettingZoo -> jmarl
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def mpe2():
    return pytest.importorskip("mpe2", reason="mpe2 (PettingZoo's MPE, a dev extra) is not installed")


def spread_env():
    """mpe2's simple_spread with 2 agents and 5-step episodes, a PettingZoo ParallelEnv."""
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(N=2, max_cycles=5)


def test_from_pettingzoo_matches_pettingzoo_and_auto_resets(mpe2):
    """A vmapped, jitted scan over mpe2's simple_spread: each copy's first observation is PettingZoo's own for
    the seed the reset key draws; episodes end truncated at max_cycles and AutoReset starts new ones."""
    env = from_pettingzoo(spread_env, max_envs=4)
    assert dict(env.teams) == {"agent": jmarl.Team(2, (12,), jmarl.Discrete(5))} and env.max_steps == 5
    ts, state = env.reset(jax.random.PRNGKey(3))
    seed = int(jax.random.randint(jax.random.PRNGKey(3), (), 0, 2 ** 31 - 1))
    ref = spread_env()
    ref_obs, _ = ref.reset(seed=seed)
    np.testing.assert_allclose(ts.obs["agent"], np.stack([ref_obs["agent_0"], ref_obs["agent_1"]]), rtol=1e-6)
    ts, _ = env.step(jax.random.PRNGKey(4), state, {"agent": jnp.array([1, 2], jnp.int32)})
    ref_obs, ref_rew, *_ = ref.step({"agent_0": 1, "agent_1": 2})
    np.testing.assert_allclose(ts.obs["agent"][1], ref_obs["agent_1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ts.reward["agent"], [ref_rew["agent_0"], ref_rew["agent_1"]], rtol=1e-5)

    wrapped = AutoReset(env)
    num_envs, num_steps = 3, 12

    def rollout(key):
        ts, state = jax.vmap(wrapped.reset)(jax.random.split(key, num_envs))

        def body(carry, k):
            ts, state = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.vmap(wrapped.sample_actions)(jax.random.split(k_act, num_envs), ts.avail_actions)
            ts, state = jax.vmap(wrapped.step)(jax.random.split(k_step, num_envs), state, actions)
            return (ts, state), (ts.truncated, ts.terminated, state.step)

        return jax.lax.scan(body, (ts, state), jax.random.split(key, num_steps))[1]

    truncated, terminated, steps = jax.jit(rollout)(jax.random.PRNGKey(0))
    done_at = (np.arange(num_steps) % 5) == 4
    np.testing.assert_array_equal(truncated, np.broadcast_to(done_at[:, None], (num_steps, num_envs)))
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(steps[:, 0], np.where(done_at, 0, np.arange(num_steps) % 5 + 1))


def test_from_pettingzoo_trains_with_ippo(mpe2):
    """jmarl's IPPO runs on the PettingZoo env: two updates of a tiny config, finite losses, params moved."""
    from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train

    env = from_pettingzoo(spread_env, max_envs=4)
    cfg = PPOConfig(num_envs=2, num_steps=5, total_timesteps=20, num_epochs=1, num_minibatches=1, hidden_dim=8,
                    num_layers=1, num_evals=1, eval_episodes=2)
    trainer = make_train(cfg, env)
    runner, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0), PPOHparams())
    assert int(runner.update) == 2
    assert all(np.isfinite(np.asarray(v)).all() for k, v in metrics.items() if k.startswith("loss/"))
    assert np.isfinite(np.asarray(metrics["eval/return"])).all()


def test_from_pettingzoo_recycles_and_names_max_envs(mpe2):
    """Stepping an episode whose handle was recycled fails on the host, naming max_envs."""
    env = from_pettingzoo(spread_env, max_envs=1)
    _, state = env.reset(jax.random.PRNGKey(0))
    for k in range(4):  # more unstepped resets than the pool keeps for max_envs=1
        env.reset(jax.random.PRNGKey(k + 1))
    with pytest.raises(Exception, match="max_envs"):
        jax.block_until_ready(env.step(jax.random.PRNGKey(0), state, {"agent": jnp.zeros(2, jnp.int32)}))
