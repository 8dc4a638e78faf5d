"""Adapters both ways with JaxMARL's dict API: ``from_jaxmarl`` on JaxMARL's own environments checked
against the JaxMARL env itself, ``to_jaxmarl`` on a tiny jmarl env checked against JaxMARL's API and
code (LogWrapper), and the round trip ``from_jaxmarl(to_jaxmarl(env))`` checked against ``env``."""
from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmarl
from jaxmarl.environments import spaces as jm_spaces
from jaxmarl.environments.smax import map_name_to_scenario
from jaxmarl.wrappers.baselines import LogWrapper

from jmarl import AutoReset, Discrete, Environment, EpisodeStats, Team, TimeStep
from jmarl.adapters.jaxmarl import FromJaxMARL, from_jaxmarl, to_jaxmarl
from jmarl.adapters.jaxmarl import _prefix_name
from tiny_env import GO, STOP, Counter

ENVS = {  # name -> (jaxmarl id, kwargs); short time limits keep the rollouts short
    "spread": ("MPE_simple_spread_v3", dict(max_steps=5)),
    "tag": ("MPE_simple_tag_v3", dict(max_steps=3)),
    "smax": ("HeuristicEnemySMAX", dict(scenario=map_name_to_scenario("3m"), max_steps=4)),
    "riddle": ("switch_riddle", dict(num_agents=3)),
}
SMAX_STOP = 4  # the "stop" action of a SMAX unit: always available


@lru_cache(maxsize=None)
def jaxmarl_env(name: str):
    env_id, kwargs = ENVS[name]
    return jaxmarl.make(env_id, **kwargs)


@lru_cache(maxsize=None)
def adapted(name: str) -> FromJaxMARL:
    return from_jaxmarl(jaxmarl_env(name))


def stack(per_agent: dict, agents) -> np.ndarray:
    """{agent: x} -> x[N, ...] for ``agents`` in order."""
    return np.stack([np.asarray(per_agent[a]) for a in agents])


def to_agent_dict(env: FromJaxMARL, actions: dict) -> dict:
    return {a: actions[t][i] for t, agents in env.agent_teams.items() for i, a in enumerate(agents)}


def assert_trees_equal(x, y, rtol: float = 0.0) -> None:
    """Same structure and leaves (within ``rtol``, for code fused differently by XLA)."""
    assert jax.tree.structure(x) == jax.tree.structure(y)
    for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol)


# --------------------------------------------------------------------------------------------------
# from_jaxmarl: teams, spaces, global state, avail actions
# --------------------------------------------------------------------------------------------------

def test_team_names_come_from_the_common_prefix():
    assert _prefix_name(["agent_0", "agent_1", "agent_2"]) == "agent"
    assert _prefix_name(["adversary_0", "adversary_1"]) == "adversary"
    assert _prefix_name(["ally_0"]) == "ally"
    assert _prefix_name(["agent_10", "agent_11"]) == "agent"
    assert _prefix_name(["adversary_0", "agent_0"]) == ""  # "a" is not a whole word
    assert _prefix_name(["0", "1"]) == ""


def test_spread_is_one_team_with_concatenated_global_state():
    env, je = adapted("spread"), jaxmarl_env("spread")
    assert dict(env.teams) == {"agent": Team(3, (18,), Discrete(5))}
    assert env.agent_teams == {"agent": ("agent_0", "agent_1", "agent_2")}
    assert env.global_state_shape == (54,)
    assert env.max_steps == je.max_steps + 1  # MPE runs max_steps + 1 transitions

    key = jax.random.PRNGKey(3)
    ts, state = env.reset(key)
    obs, jstate = je.reset(key)
    np.testing.assert_array_equal(ts.obs["agent"], stack(obs, je.agents))
    np.testing.assert_array_equal(ts.global_state, np.concatenate([obs[a] for a in je.agents]))
    assert ts.avail_actions["agent"].shape == (3, 5) and bool(ts.avail_actions["agent"].all())
    assert not ts.terminated and not ts.truncated and ts.reward["agent"].dtype == jnp.float32


def test_tag_has_two_teams_in_agent_order():
    env = adapted("tag")
    assert list(env.teams) == ["adversary", "agent"]
    assert env.teams["adversary"] == Team(3, (16,), Discrete(5))
    assert env.teams["agent"] == Team(1, (14,), Discrete(5))
    assert env.global_state_shape == (3 * 16 + 14,)


def test_smax_uses_world_state_and_avail_actions():
    env, je = adapted("smax"), jaxmarl_env("smax")
    assert dict(env.teams) == {"ally": Team(3, (75,), Discrete(8))}
    assert env.global_state_shape == (72,)
    key = jax.random.PRNGKey(0)
    ts, state = env.reset(key)
    obs, _ = je.reset(key)
    np.testing.assert_array_equal(ts.global_state, obs["world_state"])
    avail = stack(je.get_avail_actions(state), je.agents).astype(bool)
    np.testing.assert_array_equal(ts.avail_actions["ally"], avail)
    assert ts.avail_actions["ally"].dtype == jnp.bool_
    assert not avail.all()  # nothing in range to shoot at the start: the mask is not trivial
    actions = env.sample_actions(jax.random.PRNGKey(1), ts.avail_actions)
    assert bool(jnp.take_along_axis(ts.avail_actions["ally"], actions["ally"][:, None], 1).all())


def test_explicit_teams_and_missing_max_steps():
    coin = jaxmarl.make("coin_game")  # agents "0" and "1": no prefix; no max_steps attribute
    with pytest.raises(ValueError, match="max_steps"):
        from_jaxmarl(coin)
    env = from_jaxmarl(coin, max_steps=100)
    assert list(env.teams) == ["team_0"] and env.max_steps == 100
    env = from_jaxmarl(coin, teams={"red": ["0"], "blue": ["1"]}, max_steps=100)
    assert list(env.teams) == ["red", "blue"] and env.teams["blue"].num_agents == 1
    with pytest.raises(ValueError, match="unknown agent"):
        from_jaxmarl(coin, teams={"red": ["agent_0"]}, max_steps=100)


# --------------------------------------------------------------------------------------------------
# from_jaxmarl: transitions equal JaxMARL's for the same keys and actions
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ENVS))
def test_step_matches_jaxmarl_step_env(name):
    """Observations, rewards and done equal JaxMARL's raw step_env for the same keys and actions."""
    env, je = adapted(name), jaxmarl_env(name)
    key = jax.random.PRNGKey(7)
    ts, state = env.reset(key)
    for t in range(2):
        k_act, k_step = jax.random.split(jax.random.fold_in(key, t))
        actions = env.sample_actions(k_act, ts.avail_actions)
        obs, next_state, rewards, dones, _ = je.step_env(k_step, state, to_agent_dict(env, actions))
        ts, state = env.step(k_step, state, actions)
        for team, agents in env.agent_teams.items():
            np.testing.assert_array_equal(ts.obs[team], stack(obs, agents).astype(np.float32))
            np.testing.assert_array_equal(ts.reward[team], stack(rewards, agents).astype(np.float32))
        assert bool(ts.done) == bool(dones["__all__"])
        assert_trees_equal(state, next_state)


@pytest.mark.parametrize("name", ["spread", "riddle"])
def test_autoreset_matches_jaxmarl_step(name):
    """AutoReset splits the key as JaxMARL's auto-resetting ``step`` does: the same episodes result."""
    env, je = AutoReset(adapted(name)), jaxmarl_env(name)
    key = jax.random.PRNGKey(7)
    ts, state = env.reset(key)
    _, jstate = je.reset(key)
    dones = []
    for t in range(7):
        k_act, k_step = jax.random.split(jax.random.fold_in(key, t))
        actions = env.sample_actions(k_act, ts.avail_actions)
        obs, jstate, _, jdones, _ = je.step(k_step, jstate, to_agent_dict(adapted(name), actions))
        ts, state = env.step(k_step, state, actions)
        for team, agents in adapted(name).agent_teams.items():  # XLA fuses je.step differently
            np.testing.assert_allclose(ts.obs[team], stack(obs, agents), rtol=1e-5, atol=1e-6)
        assert_trees_equal(state, jstate, rtol=1e-5)
        dones.append(bool(jdones["__all__"]))
    assert any(dones)  # an episode ended (and was reset) along the way


def _run(env: Environment, actions: dict, num_steps: int, key=jax.random.PRNGKey(0)) -> TimeStep:
    """``num_steps`` raw steps (no reset) with fixed ``actions``; the TimeSteps stacked on axis 0.

    A Python loop: it reuses the compiled JaxMARL ``step_env`` rather than compiling a scan."""
    _, state = env.reset(key)
    out = []
    for k in jax.random.split(key, num_steps):
        ts, state = env.step(k, state, actions)
        out.append(ts)
    return jax.tree.map(lambda *x: jnp.stack(x), *out)


@pytest.mark.parametrize("name, steps", [("spread", 6), ("smax", 5), ("riddle", 6)])
def test_truncated_exactly_at_the_time_limit(name, steps):
    """JaxMARL's episode of ``steps`` transitions ends truncated, not terminated, and not before."""
    env = adapted(name)
    stay = {"spread": 0, "smax": SMAX_STOP, "riddle": 0}[name]  # no-op / stop / do nothing
    actions = {t: jnp.full((team.num_agents,), stay, jnp.int32) for t, team in env.teams.items()}
    ts = _run(env, actions, steps)
    expected = np.arange(steps) == steps - 1
    np.testing.assert_array_equal(ts.truncated, expected)
    np.testing.assert_array_equal(ts.terminated, np.zeros(steps, bool))
    assert steps <= env.max_steps


def test_riddle_tell_terminates():
    """Telling ends switch_riddle inside the MDP: terminated, not truncated, with the penalty."""
    env = adapted("riddle")
    ts = _run(env, {"agent": jnp.full((3,), 2, jnp.int32)}, 1)  # 2 = TELL before all visited
    assert bool(ts.terminated[0]) and not bool(ts.truncated[0])
    np.testing.assert_array_equal(ts.reward["agent"][0], [-1.0, -1.0, -1.0])


def test_vmapped_scan_rollout_with_autoreset():
    """A jitted, vmapped lax.scan rollout of simple_tag (two teams) auto-resets every 4 transitions."""
    env = AutoReset(EpisodeStats(adapted("tag")))
    num_envs, num_steps = 4, 10

    def rollout(key):
        ts, state = env.reset(key)

        def body(carry, k):
            ts, state = carry
            k_act, k_step = jax.random.split(k)
            ts, state = env.step(k_step, state, env.sample_actions(k_act))
            return (ts, state), ts

        return jax.lax.scan(body, (ts, state), jax.random.split(key, num_steps))[1]

    ts = jax.jit(jax.vmap(rollout))(jax.random.split(jax.random.PRNGKey(0), num_envs))
    assert ts.obs["adversary"].shape == (num_envs, num_steps, 3, 16)
    assert ts.obs["agent"].shape == (num_envs, num_steps, 1, 14)
    assert ts.info["final_obs"]["agent"].shape == (num_envs, num_steps, 1, 14)
    done_at = (np.arange(num_steps) % 4) == 3
    np.testing.assert_array_equal(ts.truncated, np.broadcast_to(done_at, (num_envs, num_steps)))
    assert not ts.terminated.any()
    np.testing.assert_array_equal(ts.info["episode_length"], np.broadcast_to(np.arange(num_steps) % 4 + 1,
                                                                             (num_envs, num_steps)))
    # the prey's episode return is the sum of its rewards since the last reset
    rewards = np.asarray(ts.reward["agent"][..., 0])
    returns = np.asarray(ts.info["episode_return"]["agent"][..., 0])
    np.testing.assert_allclose(returns[:, 3], rewards[:, :4].sum(1), rtol=1e-6)
    np.testing.assert_allclose(returns[:, 7], rewards[:, 4:8].sum(1), rtol=1e-6)
    assert np.isfinite(np.asarray(ts.obs["adversary"])).all()


# --------------------------------------------------------------------------------------------------
# to_jaxmarl: a tiny jmarl env under JaxMARL's API
# --------------------------------------------------------------------------------------------------

def tiny() -> Counter:
    """The shared tiny env with a 3-step limit and key noise in its steps (so the keys the adapters pass on
    show in the state)."""
    return Counter(Counter.Config(max_steps=3, noise=1.0))


def agent_actions(actions: dict) -> dict:
    return {"runners_0": actions["runners"][0], "runners_1": actions["runners"][1], "pilot_0": actions["pilot"][0]}


def test_to_jaxmarl_dict_api():
    env = tiny()
    view = to_jaxmarl(env)
    assert isinstance(view, jaxmarl.environments.MultiAgentEnv)
    assert view.agents == ["runners_0", "runners_1", "pilot_0"] and view.num_agents == 3
    assert view.agent_classes == {"runners": ["runners_0", "runners_1"], "pilot": ["pilot_0"]}
    assert isinstance(view.action_space("runners_1"), jm_spaces.Discrete) and view.action_space("runners_1").n == 3
    assert isinstance(view.action_space("pilot_0"), jm_spaces.Box) and view.action_space("pilot_0").shape == (2,)
    assert view.observation_space("runners_0").shape == (3,) and view.observation_space("pilot_0").shape == (2,)
    assert view.max_steps == 3

    key = jax.random.PRNGKey(1)
    obs, state = view.reset(key)
    ts, _ = env.reset(key)
    assert set(obs) == {"runners_0", "runners_1", "pilot_0", "world_state"}
    np.testing.assert_array_equal(obs["runners_1"], ts.obs["runners"][1])
    np.testing.assert_array_equal(obs["pilot_0"], ts.obs["pilot"][0])
    np.testing.assert_array_equal(obs["world_state"], ts.global_state)
    np.testing.assert_array_equal(view.get_avail_actions(state)["runners_0"], [True, True, False])
    assert set(to_jaxmarl(env, world_state=False).reset(key)[0]) == {"runners_0", "runners_1", "pilot_0"}

    obs, state, rewards, dones, infos = view.step_env(key, state, agent_actions(GO))
    ts, _ = env.step(key, env.reset(key)[1], GO)
    np.testing.assert_array_equal(rewards["runners_1"], ts.reward["runners"][1])
    np.testing.assert_array_equal(rewards["pilot_0"], ts.reward["pilot"][0])
    assert set(dones) == {"runners_0", "runners_1", "pilot_0", "__all__"} and not bool(dones["__all__"])
    assert infos["terminated"].shape == (3,) and not bool(infos["truncated"].any())
    np.testing.assert_array_equal(view.get_avail_actions(state)["runners_1"], [True, True, True])


def test_to_jaxmarl_auto_resets_on_done():
    view = to_jaxmarl(tiny())
    _, state = view.reset(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    obs, after, rewards, dones, infos = view.step(key, state, agent_actions(STOP))
    assert bool(dones["__all__"]) and bool(dones["pilot_0"])
    assert bool(infos["terminated"].all()) and not bool(infos["truncated"].any())
    reset_obs, reset_state = view.reset(jax.random.split(key)[1])  # JaxMARL's step resets with this key
    assert_trees_equal(obs, reset_obs)
    assert_trees_equal(after, reset_state)
    assert int(after.step) == 0
    raw = view.step_env(jax.random.split(key)[0], state, agent_actions(STOP))
    np.testing.assert_array_equal(rewards["runners_0"], raw[2]["runners_0"])  # reward of the done step

    for t in range(3):  # truncation at the time limit
        obs, state, rewards, dones, infos = view.step(jax.random.PRNGKey(t), state, agent_actions(GO))
        assert bool(dones["__all__"]) == (t == 2)
    assert bool(infos["truncated"].all()) and not bool(infos["terminated"].any()) and int(state.step) == 0


def test_to_jaxmarl_runs_under_jaxmarl_log_wrapper():
    """JaxMARL's own LogWrapper, in a jitted scan, sees the episode returns of the jmarl env."""
    env = LogWrapper(to_jaxmarl(tiny()))

    @jax.jit
    def run(key):
        _, state = env.reset(key)

        def body(state, k):
            _, state, reward, done, info = env.step(k, state, agent_actions(GO))
            return state, (reward, info)

        return jax.lax.scan(body, state, jax.random.split(key, 7))[1]

    rewards, info = run(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(info["returned_episode"][:, 0], np.arange(7) % 3 == 2)
    np.testing.assert_allclose(info["returned_episode_returns"][2, 2], rewards["pilot_0"][:3].sum(), rtol=1e-6)
    np.testing.assert_allclose(info["returned_episode_returns"][5, 0], rewards["runners_0"][3:6].sum(), rtol=1e-6)
    np.testing.assert_array_equal(info["returned_episode_lengths"][5], [3, 3, 3])


# --------------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------------

def test_round_trip_behaves_like_the_env():
    env = tiny()
    trip = from_jaxmarl(to_jaxmarl(env))
    assert dict(trip.teams) == dict(env.teams)
    assert trip.max_steps == env.max_steps and trip.global_state_shape == env.global_state_shape

    a, b = AutoReset(env), AutoReset(trip)
    key = jax.random.PRNGKey(2)
    ts_a, state_a = a.reset(key)
    ts_b, state_b = b.reset(key)
    assert_trees_equal(ts_a, ts_b)
    ends = []
    for t, actions in enumerate([GO, STOP, GO, GO, GO, GO]):  # one termination, one truncation
        k = jax.random.fold_in(key, t)
        ts_a, state_a = a.step(k, state_a, actions)
        ts_b, state_b = b.step(k, state_b, actions)
        assert_trees_equal(ts_a, ts_b)
        ends.append((bool(ts_a.terminated), bool(ts_a.truncated)))
    assert ends == [(False, False), (True, False), (False, False), (False, False), (False, True), (False, False)]
