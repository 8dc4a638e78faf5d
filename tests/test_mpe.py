"""API-level tests of the MPE environments: teams and shapes, episode length, action checking, config
errors, vmap. Agreement with PettingZoo's numbers is tested in test_mpe_parity.py."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.core.wrappers import AutoReset

# (name, kwargs, {team: (num_agents, obs size)}); obs sizes as in mpe2.
SHAPES = [
    ("mpe_spread", {}, {"agents": (3, 18)}),
    ("mpe_spread", {"num_agents": 2}, {"agents": (2, 12)}),
    ("mpe_spread", {"num_agents": 5}, {"agents": (5, 30)}),
    ("mpe_spread", {"num_agents": 4, "num_landmarks": 2}, {"agents": (4, 20)}),
    ("mpe_tag", {}, {"adversaries": (3, 16), "prey": (1, 14)}),
    ("mpe_tag", {"num_good": 2, "num_adversaries": 4, "num_obstacles": 3}, {"adversaries": (4, 24), "prey": (2, 22)}),
    ("mpe_adversary", {}, {"adversaries": (1, 8), "agents": (2, 10)}),
    ("mpe_adversary", {"num_good": 3}, {"adversaries": (1, 12), "agents": (3, 14)}),
]
ENVS = ["mpe_spread", "mpe_tag", "mpe_adversary"]


CASES = [(*case, False) for case in SHAPES] + [(*case, True) for case in SHAPES if not case[1]]


@pytest.mark.parametrize("name,kwargs,expected,continuous", CASES,
                         ids=[f"{n}-{k}-{'continuous' if c else 'discrete'}" for n, k, _, c in CASES])
def test_teams_and_shapes(name, kwargs, expected, continuous):
    env = jmarl.make(name, continuous_actions=continuous, **kwargs)
    assert {t: (team.num_agents, team.obs_shape) for t, team in env.teams.items()} == \
        {t: (n, (o,)) for t, (n, o) in expected.items()}
    assert list(env.teams) == list(expected)  # team order = mpe2's agent order
    space = jmarl.Box(0.0, 1.0, (5,)) if continuous else jmarl.Discrete(5)
    assert all(team.action_space == space for team in env.teams.values())
    assert env.global_state_shape == (sum(n * o for n, o in expected.values()),)
    assert env.max_steps == 25

    @jax.jit
    def reset_and_step(key):
        _, state = env.reset(key)
        return env.step(key, state, env.sample_actions(jax.random.fold_in(key, 1)))

    ts, state = reset_and_step(jax.random.key(0))
    width = 1 if continuous else 5
    for t, (n, o) in expected.items():
        assert ts.obs[t].shape == (n, o) and ts.obs[t].dtype == jnp.float32
        assert ts.reward[t].shape == (n,) and ts.reward[t].dtype == jnp.float32
        assert ts.avail_actions[t].shape == (n, width) and bool(ts.avail_actions[t].all())
    assert ts.global_state.shape == env.global_state_shape
    np.testing.assert_array_equal(ts.global_state, jnp.concatenate([ts.obs[t].reshape(-1) for t in env.teams]))
    assert ts.terminated.shape == () and ts.truncated.shape == ()
    assert state.agent_pos.dtype == jnp.float32 and int(state.step) == 1


@pytest.mark.parametrize("name", ENVS)
def test_reset_is_deterministic_and_zero_reward(name):
    env = jmarl.make(name)
    (ts1, s1), (ts2, s2) = env.reset(jax.random.key(3)), env.reset(jax.random.key(3))
    np.testing.assert_array_equal(s1.agent_pos, s2.agent_pos)
    np.testing.assert_array_equal(ts1.global_state, ts2.global_state)
    assert all(float(jnp.abs(r).sum()) == 0.0 for r in ts1.reward.values())
    assert not bool(ts1.done) and int(s1.step) == 0
    np.testing.assert_array_equal(s1.agent_vel, 0.0)


@pytest.mark.parametrize("max_steps", [25, 7])
@pytest.mark.parametrize("name", ENVS)
def test_episode_is_exactly_max_steps_with_autoreset(name, max_steps):
    env = AutoReset(jmarl.make(name, max_steps=max_steps))
    num_steps = 3 * max_steps + 2

    def body(state, key):
        key_act, key_step = jax.random.split(key)
        ts, state = env.step(key_step, state, env.sample_actions(key_act))
        return state, (ts.truncated, ts.terminated, ts.info["final_obs"], ts.obs, state.step)

    _, state = env.reset(jax.random.key(0))
    _, (truncated, terminated, final_obs, obs, steps) = jax.jit(
        lambda s, k: jax.lax.scan(body, s, jax.random.split(k, num_steps)))(state, jax.random.key(1))
    ends = np.flatnonzero(np.asarray(truncated)) + 1  # transitions counted from 1
    np.testing.assert_array_equal(ends, [max_steps, 2 * max_steps, 3 * max_steps])
    assert not np.any(terminated)
    # After a done step the state is a fresh episode and final_obs keeps the last observation.
    np.testing.assert_array_equal(np.asarray(steps)[ends - 1], 0)
    team = next(iter(env.teams))
    assert not np.allclose(final_obs[team][ends - 1], obs[team][ends - 1])
    np.testing.assert_array_equal(final_obs[team][ends - 2], obs[team][ends - 2])


@pytest.mark.parametrize("name", ENVS)
def test_bad_actions_raise_before_compiling(name):
    env = jmarl.make(name)
    _, state = env.reset(jax.random.key(0))
    good = env.sample_actions(jax.random.key(1))
    team = next(iter(env.teams))
    n = env.teams[team].num_agents
    step = jax.jit(env.step)
    bad_cases = [
        {**good, team: jnp.zeros((n + 1,), jnp.int32)},  # wrong number of agents
        {**good, team: jnp.zeros((n, 5), jnp.int32)},  # continuous shape for a discrete env
        {**good, team: jnp.zeros((n,), jnp.float32)},  # floats for a discrete env
        {t: a for t, a in good.items() if t != team} or {"nobody": good[team]},  # a team missing
        [good[team]],  # not a dict
    ]
    for bad in bad_cases:
        with pytest.raises(ValueError):
            step(jax.random.key(2), state, bad)
    cont = jmarl.make(name, continuous_actions=True)
    _, cstate = cont.reset(jax.random.key(0))
    with pytest.raises(ValueError):  # integers for a continuous env
        jax.jit(cont.step)(jax.random.key(2), cstate, {t: jnp.zeros((tm.num_agents, 5), jnp.int32)
                                                       for t, tm in cont.teams.items()})


@pytest.mark.parametrize("name", ENVS)
def test_unknown_or_bad_config_raises_config_error(name):
    with pytest.raises(jmarl.ConfigError, match="unknown key"):
        jmarl.make(name, not_a_field=1)
    with pytest.raises(jmarl.ConfigError):
        jmarl.make(name, max_steps="many")


def test_config_is_frozen_and_hashable():
    env = jmarl.make("mpe_spread", num_agents="4", local_ratio="0.25")  # strings coerced, as from a CLI
    assert env.config.num_agents == 4 and env.config.local_ratio == 0.25
    hash(env.config), hash(env.world)
    with pytest.raises(Exception):
        env.config.num_agents = 5


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
@pytest.mark.parametrize("name", ENVS)
def test_vmap_over_64_envs(name, continuous):
    env = jmarl.make(name, continuous_actions=continuous)
    keys = jax.random.split(jax.random.key(0), 64)

    @jax.jit
    def run(keys):
        _, state = jax.vmap(env.reset)(keys)
        actions = jax.vmap(env.sample_actions)(keys)
        batched = jax.vmap(env.step)(keys, state, actions)
        one = env.step(keys[5], jax.tree.map(lambda x: x[5], state), jax.tree.map(lambda x: x[5], actions))
        return batched, one

    (ts, state), (ts0, _) = run(keys)
    for t, team in env.teams.items():
        assert ts.obs[t].shape == (64, team.num_agents) + team.obs_shape
        assert ts.reward[t].shape == (64, team.num_agents)
        assert bool(jnp.all(jnp.isfinite(ts.obs[t])))
    assert ts.global_state.shape == (64,) + env.global_state_shape
    assert len(np.unique(np.asarray(state.agent_pos[:, 0, 0]))) == 64  # independent episodes
    # vmapped = one at a time
    np.testing.assert_allclose(ts.global_state[5], ts0.global_state, rtol=1e-6, atol=1e-6)


def test_spread_rewards_by_hand():
    """Two agents touching, one landmark under each: coverage 0, each agent -1 for the collision."""
    from jmarl.envs.mpe.core import MPEState

    env = jmarl.make("mpe_spread", num_agents=2, local_ratio=0.5)
    pos = jnp.array([[0.0, 0.0], [0.2, 0.0]])
    state = MPEState(pos, jnp.zeros((2, 2)), pos, jnp.zeros((), jnp.int32))
    ts, new = env.step(jax.random.key(0), state, {"agents": jnp.zeros((2,), jnp.int32)})
    dist = float(new.agent_pos[1, 0] - new.agent_pos[0, 0])  # contact pushed them apart a little
    assert dist > 0.2 and float(new.agent_vel[0, 0]) < 0 < float(new.agent_vel[1, 0])
    # Positions move with the old (zero) velocity first, as in mpe2: landmarks are still covered.
    np.testing.assert_allclose(ts.reward["agents"], [-0.5, -0.5], atol=1e-6)


def test_tag_out_of_bounds_penalty():
    from jmarl.envs.mpe.tag import out_of_bounds_penalty

    x = jnp.array([[0.5, 0.0], [0.95, 0.0], [1.0, -1.2], [3.0, 0.0]])
    expected = [0.0, 0.5, 1.0 + np.exp(0.4), 10.0]
    np.testing.assert_allclose(out_of_bounds_penalty(x), expected, rtol=1e-6)
