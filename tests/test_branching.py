"""Branching env states (jmarl.agents.branching): layout, and exactness of the branched trajectories."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.agents.branching import branch, branch_keys, groups, pick, ungroup
from jmarl.core.wrappers import AutoReset, EpisodeStats

E, K, STEPS = 3, 4, 30  # 30 steps: past the end of a 25-step MPE episode, so the auto-reset's key counts too


def test_layout_is_group_major_and_invertible():
    x = {"a": jnp.arange(E * 2).reshape(E, 2), "b": jnp.arange(E).astype(jnp.float32)}
    y = branch(x, K)
    assert y["a"].shape == (E * K, 2) and y["b"].shape == (E * K,)
    grouped = groups(y, K)
    for k in range(K):  # branch k of root e is a copy of root e
        np.testing.assert_array_equal(grouped["a"][:, k], x["a"])
    np.testing.assert_array_equal(ungroup(grouped)["a"], y["a"])
    marked = y["b"] + jnp.arange(E * K) % K * 100.0  # tell the branches of a group apart
    np.testing.assert_array_equal(pick(marked, K, jnp.array([0, 3, 1])), x["b"] + jnp.array([0.0, 300.0, 100.0]))
    with pytest.raises(ValueError):
        branch(x, 0)


def test_branch_keys():
    key = jax.random.PRNGKey(0)
    distinct = branch_keys(key, E, K)
    assert distinct.shape == (E * K, 2) and len({tuple(k) for k in np.asarray(distinct)}) == E * K
    same = groups(branch_keys(key, E, K, same=True), K)
    assert (same == same[:, :1]).all() and len({tuple(k) for k in np.asarray(same[:, 0])}) == E
    typed = branch(jax.random.split(jax.random.key(0), E), K)  # new-style typed keys branch too
    assert typed.shape == (E * K,) and jnp.array_equal(jax.random.key_data(typed[1]), jax.random.key_data(typed[0]))


def _play(env, state, ts, keys):
    """STEPS random-action steps of a batch of envs [b], env i drawing from its own key stream keys[i].
    Returns the final (state, timestep) and every step's observations and rewards [STEPS, b, ...]."""

    def step(carry, _):
        state, ts, keys = carry
        keys, k_act, k_env = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, 3))(keys), 1, 0)
        actions = jax.vmap(env.sample_actions)(k_act, ts.avail_actions)
        ts, state = jax.vmap(env.step)(k_env, state, actions)
        return (state, ts, keys), (ts.obs, ts.reward)

    (state, ts, _), history = jax.lax.scan(step, (state, ts, keys), None, STEPS)
    return (state, ts), history


@pytest.fixture(scope="module")
def running():
    """E mpe_spread roots 5 steps into their second episode (branching mid-episode, not just at a reset),
    and the jitted player (one compile: every call plays E x K envs)."""
    env = AutoReset(EpisodeStats(jmarl.make("mpe_spread")))
    play = jax.jit(lambda s, t, k: _play(env, s, t, k))
    ts, state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(1), E))
    (state, ts), _ = play(branch(state, K), branch(ts, K), branch_keys(jax.random.PRNGKey(2), E, K, same=True))
    first = jnp.zeros(E, jnp.int32)
    state, ts = pick(state, K, first), pick(ts, K, first)
    assert int(state.env_state.step[0]) == STEPS - 25  # the step counter of an MPE episode, mid-episode
    return state, ts, play


def test_same_keys_replay_exactly(running):
    state, ts, play = running
    (end, _), (obs, reward) = play(branch(state, K), branch(ts, K), branch_keys(jax.random.PRNGKey(3), E, K, same=True))
    # Every branch of a group is bitwise the same trajectory, through an auto-reset's random new episode.
    for x in (jnp.moveaxis(obs["agents"], 0, 1), jnp.moveaxis(reward["agents"], 0, 1), end.env_state.agent_pos):
        grouped = groups(x, K)  # [E, K, ...]
        np.testing.assert_array_equal(grouped, jnp.broadcast_to(grouped[:, :1], grouped.shape))
    # ... and the roots really differ from one another (a group of copies of one root would pass the above).
    assert not np.allclose(obs["agents"][:, 0], obs["agents"][:, K])


def test_different_keys_diverge(running):
    state, ts, play = running
    _, (obs, _) = play(branch(state, K), branch(ts, K), branch_keys(jax.random.PRNGKey(3), E, K))
    grouped = groups(jnp.moveaxis(obs["agents"], 0, 1), K)  # [E, K, STEPS, N, O]
    for e in range(E):  # every branch of every group went its own way
        for k in range(1, K):
            assert not np.allclose(grouped[e, k], grouped[e, 0])
