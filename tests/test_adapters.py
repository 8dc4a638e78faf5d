"""Adapters both ways with JaxMARL's dict API: ``from_jaxmarl`` on JaxMARL's own environments checked
against the JaxMARL env itself (and its generic paths on a small fake env: integer agents, tuples, Dict
observations, MultiDiscrete actions, shaped rewards), ``to_jaxmarl`` on jmarl envs checked against JaxMARL's
API and code (its LogWrappers, the loops of its IPPO baselines, and JaxMARL's own tests, adapted where
docs/interop.md says a semantic choice differs), and the round trip ``from_jaxmarl(to_jaxmarl(env))``.

Episodes here are short and envs small, to keep the file cheap on a 2-core CPU."""
from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmarl
from flax import struct
from jaxmarl.environments import spaces as jm_spaces
from jaxmarl.environments.multi_agent_env import MultiAgentEnv
from jaxmarl.environments.smax import map_name_to_scenario
from jaxmarl.wrappers.baselines import LogWrapper, MPELogWrapper, SMAXLogWrapper

import jmarl
from jmarl import AutoReset, Discrete, Environment, EpisodeStats, Team, TimeStep
from jmarl.adapters.jaxmarl import FromJaxMARL, ToJaxMARLState, from_jaxmarl, to_jaxmarl
from jmarl.adapters.jaxmarl import _prefix_name
from jmarl.core.config import ConfigError
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


@lru_cache(maxsize=None)
def jitted_step(env: Environment):
    """``jax.jit(env.step)``, one per env object: tests that step the same env share its compiled step."""
    return jax.jit(env.step)


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


def test_explicit_teams_and_found_max_steps():
    coin = jaxmarl.make("coin_game", num_inner_steps=3, num_outer_steps=4)  # agents "0", "1": no prefix
    env = from_jaxmarl(coin)  # no max_steps attribute: inner x outer steps, found without the user
    assert list(env.teams) == ["team_0"] and env.max_steps == 12
    env = from_jaxmarl(coin, teams={"red": ["0"], "blue": ["1"]}, max_steps=100)
    assert list(env.teams) == ["red", "blue"] and env.teams["blue"].num_agents == 1 and env.max_steps == 100
    with pytest.raises(ValueError, match="unknown agent"):
        from_jaxmarl(coin, teams={"red": ["agent_0"]})


def test_full_smax_splits_allies_and_enemies():
    """JaxMARL's SMAX (both sides act): allies and enemies share spaces but are two teams, by name."""
    env = from_jaxmarl(jaxmarl.make("SMAX", scenario=map_name_to_scenario("3m")))
    assert list(env.teams) == ["ally", "enemy"] and env.teams["enemy"].num_agents == 3


def test_coin_game_time_limit_is_truncation():
    """coin_game's outer episode ends at num_inner x num_outer steps: a time limit, so truncated (it was
    labelled terminated, which stops value bootstrapping); inner-episode boundaries end nothing."""
    env = from_jaxmarl(jaxmarl.make("coin_game", num_inner_steps=2, num_outer_steps=2))
    ts = _run(env, {"team_0": jnp.zeros(2, jnp.int32)}, 5)
    np.testing.assert_array_equal(ts.truncated, [False, False, False, True, True])
    assert not np.asarray(ts.terminated).any()
    np.testing.assert_array_equal(ts.info["inner_episode_done"], [False, True, False, True, False])


# --------------------------------------------------------------------------------------------------
# from_jaxmarl: transitions equal JaxMARL's for the same keys and actions
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ENVS))
def test_step_matches_jaxmarl_step_env(name):
    """Observations, rewards and done equal JaxMARL's raw step_env for the same keys and actions (both
    compiled; bit for bit)."""
    env, je = adapted(name), jaxmarl_env(name)
    key = jax.random.PRNGKey(7)
    ts, state = env.reset(key)
    step, step_env = jitted_step(env), jax.jit(je.step_env)
    for t in range(2):
        k_act, k_step = jax.random.split(jax.random.fold_in(key, t))
        actions = env.sample_actions(k_act, ts.avail_actions)
        obs, next_state, rewards, dones, _ = step_env(k_step, state, to_agent_dict(env, actions))
        ts, state = step(k_step, state, actions)
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

    A Python loop over one compiled step (JaxMARL's ``step_env`` is not jitted: eagerly, a SMAX step
    dispatches thousands of operations)."""
    _, state = env.reset(key)
    step = jitted_step(env)
    out = []
    for k in jax.random.split(key, num_steps):
        ts, state = step(k, state, actions)
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
# from_jaxmarl's generic paths, on a fake JaxMARL env in STORM's style
# --------------------------------------------------------------------------------------------------

@struct.dataclass
class FakeState:
    step: jax.Array
    last: jax.Array  # i32[2, 2]: the decoded actions of the last step


class Fake(MultiAgentEnv):
    """STORM-style quirks in a few lines: integer agents that read actions positionally (a tuple), a tuple
    of Dict observations, a reward tuple, MultiDiscrete([2, 3]) actions, a shaped reward in the infos,
    and no ``max_steps``. Agent i's reward is 10 * a0 + a1 of its decoded action; shaped reward: -1."""

    def __init__(self):
        super().__init__(2)
        self.agents = [0, 1]
        self.action_spaces = {a: jm_spaces.MultiDiscrete([2, 3]) for a in self.agents}
        self.observation_spaces = {a: {"pos": jm_spaces.Box(0, 1, (2,)), "inv": jm_spaces.Box(0, 9, (3,))}
                                   for a in self.agents}

    def get_obs(self, state):
        return tuple({"inv": jnp.full((3,), i, jnp.int32), "pos": state.last[i].astype(jnp.float32)}
                     for i in range(2))

    def reset(self, key):
        state = FakeState(jnp.zeros((), jnp.int32), jnp.zeros((2, 2), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, actions):
        a0, a1 = actions  # unpacked positionally, as STORM 2p does: a dict would give its keys
        last = jnp.stack([a0, a1])
        state = FakeState(state.step + 1, last)
        rewards = tuple((10 * last[i, 0] + last[i, 1]).astype(jnp.float32) for i in range(2))
        done = state.step >= 3
        return self.get_obs(state), state, rewards, {"__all__": done}, {"shaped_reward": {0: -1.0, 1: -1.0}}


def test_generic_paths_on_a_storm_style_env():
    with pytest.raises(ValueError, match="max_steps"):
        from_jaxmarl(Fake())  # nothing says how long its episodes are: the user must
    env = from_jaxmarl(Fake(), max_steps=3, shaped_reward_coef=0.5)
    # Dict observations flattened (keys in order: inv, pos); MultiDiscrete([2, 3]) -> Discrete(6)
    assert dict(env.teams) == {"team_0": Team(2, (5,), Discrete(6))}
    ts, state = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(ts.obs["team_0"][1], [1, 1, 1, 0, 0])
    ts, state = env.step(jax.random.PRNGKey(1), state, {"team_0": jnp.array([5, 3], jnp.int32)})
    # action 5 = (1, 2) and 3 = (1, 0), row-major; rewards 12 and 10, plus 0.5 x the shaped -1
    np.testing.assert_array_equal(state.last, [[1, 2], [1, 0]])
    np.testing.assert_allclose(ts.reward["team_0"], [11.5, 9.5])
    np.testing.assert_array_equal(ts.obs["team_0"][0], [0, 0, 0, 1, 2])
    assert set(ts.info["shaped_reward"]) == {0, 1}  # the env's infos, as it gives them
    with pytest.raises(ValueError, match="shaped_reward"):
        from_jaxmarl(jaxmarl.make("MPE_simple_spread_v3"), shaped_reward_coef=1.0)  # no such info there


def test_shaped_reward_anneals_across_episode_resets():
    """``shaped_reward_anneal_steps=N``: the shaped reward's weight falls linearly from ``shaped_reward_coef``
    to 0 over the env's first N transitions, counted on across the episodes ``AutoReset`` starts (the count
    is ``Persistent`` state), and starts again from a fresh ``reset``; the env's own reward is the episode
    metric ``unshaped_reward``, the objective (shaping is how the task is learnt, not the task)."""
    env = AutoReset(EpisodeStats(from_jaxmarl(Fake(), max_steps=3, shaped_reward_coef=0.5,
                                              shaped_reward_anneal_steps=5)))
    actions = {"team_0": jnp.array([5, 3], jnp.int32)}  # rewards 12 and 10, plus coef x the shaped -1

    def rollout(key):
        def body(state, k):
            ts, state = env.step(k, state, actions)
            return state, ts

        traj = jax.lax.scan(body, env.reset(key)[1], jax.random.split(key, 8))[1]
        fresh = env.step(key, env.reset(key)[1], actions)[0]
        return traj, fresh

    ts, fresh = jax.jit(rollout)(jax.random.PRNGKey(0))
    coef = 0.5 * np.clip(1 - np.arange(8) / 5, 0, 1)  # 0.5, 0.4, ..., 0.1, then 0
    np.testing.assert_array_equal(ts.done, np.arange(8) % 3 == 2)  # two resets on the way
    np.testing.assert_allclose(ts.info["shaped_reward_coef"], coef, atol=1e-6)
    np.testing.assert_allclose(ts.reward["team_0"], np.stack([12 - coef, 10 - coef], -1), atol=1e-6)
    np.testing.assert_allclose(ts.info["metrics"]["unshaped_reward"], np.full(8, 22.0))
    np.testing.assert_allclose(fresh.info["shaped_reward_coef"], 0.5)
    assert env.objective == "metric/unshaped_reward"
    with pytest.raises(ConfigError, match="shaped_reward_coef"):
        from_jaxmarl(Fake(), max_steps=3, shaped_reward_anneal_steps=5)  # nothing to anneal
    with pytest.raises(ConfigError, match="shaped_reward_anneal_steps"):
        from_jaxmarl(Fake(), max_steps=3, shaped_reward_coef=1.0, shaped_reward_anneal_steps=-1)


def test_smax_reports_dead_units_and_wins():
    """JaxMARL's per-agent dones reach ``info["agent_done"]``: an ally killed while the episode goes on is
    done alone (and may only stop, so a masked policy has no choice); every agent is done when the episode
    ends. ``info["won"]`` is the allies' win (every enemy down, an ally standing), the objective's number."""
    env = adapted("smax")
    _, state = env.reset(jax.random.PRNGKey(0))
    alive = np.ones(6, bool)
    one_ally_down, enemies_down = alive.copy(), alive.copy()
    one_ally_down[0] = False
    enemies_down[3:] = False
    states = jax.tree.map(lambda *x: jnp.stack(x), *[
        state.replace(state=state.state.replace(unit_alive=jnp.asarray(a),
                                                unit_health=jnp.where(a, state.state.unit_health, 0.0)))
        for a in (one_ally_down, enemies_down)])
    stop = {"ally": jnp.full((3,), SMAX_STOP, jnp.int32)}
    steps = [jitted_step(env)(jax.random.PRNGKey(i), jax.tree.map(lambda x, i=i: x[i], states), stop)[0]
             for i in range(2)]
    ts = jax.tree.map(lambda *x: jnp.stack(x), *steps)
    np.testing.assert_array_equal(ts.info["agent_done"]["ally"], [[True, False, False], [True, True, True]])
    np.testing.assert_array_equal(ts.terminated, [False, True])
    np.testing.assert_array_equal(ts.info["won"], [False, True])
    assert ts.avail_actions["ally"][0, 0].sum() == 1 and ts.avail_actions["ally"][0, 0, SMAX_STOP]
    assert env.objective == "win_rate"


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
    # A competitive env keeps its headline (never the sum of opposing teams) through the round trip.
    assert from_jaxmarl(to_jaxmarl(jmarl.make("mpe_tag"))).objective == "return/adversaries"


# --------------------------------------------------------------------------------------------------
# to_jaxmarl: what JaxMARL code sends and expects
# --------------------------------------------------------------------------------------------------

def test_to_jaxmarl_accepts_actions_in_every_form_jaxmarl_envs_accept():
    """ippo_ff_mpe's ``unbatchify`` leaves each agent's action shaped (1,); other code sends Python ints or
    floats: every form with the space's number of entries is the same action. A wrong size is refused."""
    view = to_jaxmarl(tiny())
    _, state = view.reset(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    canonical = view.step_env(key, state, agent_actions(GO))
    forms = [{"runners_0": jnp.array([0]), "runners_1": 1.0, "pilot_0": jnp.array([[0.25, -0.25]])},
             {"runners_0": 0, "runners_1": np.int64(1), "pilot_0": np.array([0.25, -0.25], np.float64)}]
    for actions in forms:
        assert_trees_equal(view.step_env(key, state, actions), canonical)
    with pytest.raises(ValueError, match="runners_0.*shape"):
        view.step_env(key, state, {"runners_0": jnp.array([0, 1]), "runners_1": 1, "pilot_0": jnp.zeros(2)})


def test_to_jaxmarl_infos_are_per_agent_and_round_trip():
    """Every info entry has the agent axis JaxMARL's baselines reshape by (scalars repeated, per-team entries
    concatenated, nested dicts entry by entry), and from_jaxmarl gives the env's own info back."""
    env = EpisodeStats(tiny())
    view = to_jaxmarl(env)
    _, state = view.reset(jax.random.PRNGKey(0))
    *_, infos = view.step_env(jax.random.PRNGKey(1), state, agent_actions(GO))
    for key, value in jax.tree_util.tree_leaves_with_path(infos):
        assert np.shape(value)[:1] == (3,), (key, np.shape(value))
    np.testing.assert_array_equal(infos["episode_length"], [1, 1, 1])
    np.testing.assert_array_equal(infos["episode_return"], [1.0, 2.0, 1.0])  # runners (GO: 0, 1), pilot

    trip = AutoReset(from_jaxmarl(view))
    a, key = AutoReset(env), jax.random.PRNGKey(2)
    ts_a, s_a = a.reset(key)
    ts_b, s_b = trip.reset(key)
    for t, actions in enumerate([GO, GO, GO, STOP]):
        ts_a, s_a = a.step(jax.random.fold_in(key, t), s_a, actions)
        ts_b, s_b = trip.step(jax.random.fold_in(key, t), s_b, actions)
        assert_trees_equal(ts_a, ts_b)


def test_to_jaxmarl_step_counter_is_the_envs():
    """The step counter a JaxMARL user sets in the state is the one the env reads (it was a copy): one step
    from step=2 reaches the 3-step limit; other attributes read through to the env state."""
    view = to_jaxmarl(tiny())
    _, state = view.reset(jax.random.PRNGKey(0))
    _, after, _, dones, infos = view.step_env(jax.random.PRNGKey(1), state.replace(step=2), agent_actions(GO))
    assert bool(dones["__all__"]) and bool(infos["truncated"].all()) and int(after.step) == 3
    assert int(after.env_state.step) == 3
    np.testing.assert_array_equal(state.total, state.env_state.total)  # read through to the env's state


def test_to_jaxmarl_jaxmarl_episode_length():
    """episode_length="jaxmarl": done once step >= max_steps *before* the step, so 4 transitions for a limit of
    3, as JaxMARL's MPE and SMAX count; a termination still ends the episode at once."""
    view = to_jaxmarl(tiny(), episode_length="jaxmarl")
    assert view.transitions == 4 and from_jaxmarl(view).max_steps == 4
    _, state = view.reset(jax.random.PRNGKey(0))
    done = []
    for t in range(5):
        _, state, _, dones, infos = view.step(jax.random.PRNGKey(t), state, agent_actions(GO))
        done.append(bool(dones["__all__"]))
    assert done == [False, False, False, True, False] and int(state.step) == 1
    _, _, _, dones, infos = view.step_env(jax.random.PRNGKey(9), view.reset(jax.random.PRNGKey(0))[1],
                                          agent_actions(STOP))
    assert bool(dones["__all__"]) and bool(infos["terminated"].all()) and not bool(infos["truncated"].any())


# --------------------------------------------------------------------------------------------------
# JaxMARL's own tests against to_jaxmarl (tests/test_jaxmarl_api.py, test_envs_implement_base_api.py,
# tests/mpe/test_mpe.py in FLAIROx/JaxMARL), adapted only as docs/interop.md records
# --------------------------------------------------------------------------------------------------

def test_jaxmarl_auto_reset_to_specific_state():
    """JaxMARL's test_auto_reset_to_specific_state on to_jaxmarl(mpe_spread). Adaptation: JaxMARL's MPE
    state names positions ``p_pos``, jmarl's ``agent_pos`` (read through the adapter's state)."""
    env = to_jaxmarl(jmarl.make("mpe_spread"))
    rng = jax.random.PRNGKey(0)
    rng, rng_reset1, rng_reset2 = jax.random.split(rng, 3)
    _, state1 = env.reset(rng_reset1)
    _, state2 = env.reset(rng_reset2)
    rng, rng_act = jax.random.split(rng)
    rng_act = jax.random.split(rng_act, env.num_agents)
    actions = {a: env.action_space(a).sample(rng_act[i]) for i, a in enumerate(env.agents)}
    _, next_state, _, dones, _ = env.step(rng, state1, actions, reset_state=state2)
    assert not dones["__all__"]
    assert not jnp.array_equal(state2.agent_pos, next_state.agent_pos)

    state1 = state1.replace(step=env.max_steps)  # auto reset to a specific state
    rng, rng_act = jax.random.split(rng)
    rng_act = jax.random.split(rng_act, env.num_agents)
    actions = {a: env.action_space(a).sample(rng_act[i]) for i, a in enumerate(env.agents)}
    _, next_state, _, dones, _ = env.step(rng, state1, actions, reset_state=state2)
    assert dones["__all__"]
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), state2, next_state)


# One env of each kind the adapter distinguishes: two teams of different observation sizes, masked actions
# and infos, Box actions, a one-step game. (Every jmarl env passes PettingZoo's API test: test_pettingzoo.py.)
BASE_API_ENVS = ["mpe_tag", "smax", "probe_continuous", "probe_two_step"]


@pytest.mark.parametrize("name", BASE_API_ENVS)
def test_jaxmarl_base_api_on_jmarl_envs(name):
    """JaxMARL's test_envs_implement_base_api checks, unchanged, on jmarl envs through to_jaxmarl."""
    from jaxmarl.environments.spaces import Space

    env = to_jaxmarl(jmarl.make(name))
    assert isinstance(env, MultiAgentEnv)
    for agent in env.observation_spaces:
        assert env.observation_spaces[agent] == env.observation_space(agent)
        assert isinstance(env.observation_spaces[agent], Space)
    for agent in env.action_spaces:
        assert env.action_spaces[agent] == env.action_space(agent) and isinstance(env.action_spaces[agent], Space)
    rng = jax.random.PRNGKey(0)
    initial_obs, _ = env.reset(rng)
    for agent in env.observation_spaces:
        assert env.observation_spaces[agent].contains(initial_obs[agent])
    rng, _rng = jax.random.split(rng)
    _, initial_state = env.reset(_rng)
    rng, _rng = jax.random.split(rng)
    actions = {a: env.action_space(a).sample(_rng) for a in env.agents}
    rng, _rng = jax.random.split(rng)
    result = env.step(_rng, initial_state, actions)
    assert isinstance(result, tuple) and len(result) == 5
    next_obs, next_state, reward, done, info = result
    for agent in env.observation_spaces:
        assert env.observation_spaces[agent].contains(next_obs[agent])
    assert isinstance(reward, dict) and isinstance(done, dict) and "__all__" in done and isinstance(info, dict)


MPE_CASES = {  # JaxMARL id -> (jmarl env, mpe2 module name); the scenarios jmarl's parity test covers
    "MPE_simple_spread_v3": ("mpe_spread", "simple_spread_v3"),
    "MPE_simple_tag_v3": ("mpe_tag", "simple_tag_v3"),
    "MPE_simple_adversary_v3": ("mpe_adversary", "simple_adversary_v3"),
}


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
@pytest.mark.parametrize("zoo_env_name", list(MPE_CASES))
def test_jaxmarl_mpe_vs_pettingzoo(zoo_env_name, continuous):
    """JaxMARL's test_mpe_vs_pettingzoo on to_jaxmarl(jmarl's env, episode_length="jaxmarl"): each step starts
    from PettingZoo's state and must give its observations, rewards and terminations (``dones``: PettingZoo's
    third return value) to 1e-4, and its next state. Adaptations: the state is built in jmarl's state class
    (``agent_pos``/``agent_vel``/``landmark_pos``/``goal``; jmarl keeps no communication state ``c``: its MPE
    agents are silent), agents are matched by position (JaxMARL's names are PettingZoo's), random actions and
    resets are seeded, and 4 episodes instead of 500. With jmarl's own episode length (the default) the 25th
    step is done, as a truncation: ``infos["terminated"]`` stays False, checked at the end."""
    pytest.importorskip("mpe2", reason="mpe2 (PettingZoo's MPE, a dev extra) is not installed")
    import importlib

    from jmarl.envs.mpe.adversary import AdversaryState
    from jmarl.envs.mpe.core import MPEState

    jmarl_name, zoo_module = MPE_CASES[zoo_env_name]
    env_zoo = importlib.import_module(f"mpe2.{zoo_module}").parallel_env(max_cycles=25, continuous_actions=continuous)
    env_jax = to_jaxmarl(jmarl.make(jmarl_name, continuous_actions=continuous), episode_length="jaxmarl")
    zoo_to_jax = dict(zip(env_zoo.possible_agents, env_jax.agents))
    inner = env_jax.env
    blank = dict(obs={t: jnp.zeros((team.num_agents,) + team.obs_shape) for t, team in inner.teams.items()},
                 global_state=jnp.zeros(inner.global_state_shape),
                 avail_actions={t: jnp.ones((team.num_agents, team.num_actions if not continuous else 1), bool)
                                for t, team in inner.teams.items()})

    def state_from_zoo():
        world = env_zoo.aec_env.env.world
        fields = dict(agent_pos=jnp.array([a.state.p_pos for a in world.agents], jnp.float32),
                      agent_vel=jnp.array([a.state.p_vel for a in world.agents], jnp.float32),
                      landmark_pos=jnp.array([lm.state.p_pos for lm in world.landmarks], jnp.float32),
                      step=jnp.asarray(env_zoo.aec_env.env.steps, jnp.int32))
        if jmarl_name == "mpe_adversary":
            env_state = AdversaryState(**fields, goal=jnp.asarray(world.landmarks.index(world.agents[0].goal_a)))
        else:
            env_state = MPEState(**fields)
        return ToJaxMARLState(done=jnp.zeros((), bool), step=fields["step"], env_state=env_state, **blank)

    step = jax.jit(env_jax.step)
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(0)
    for ep in range(4):
        env_zoo.reset(seed=ep)
        for s in range(25):
            actions = {a: (rng.random(5, dtype=np.float32) if continuous else int(rng.integers(5)))
                       for a in env_zoo.agents}
            state = state_from_zoo()
            obs_zoo, rew_zoo, done_zoo, _, _ = env_zoo.step(actions)
            key, key_step = jax.random.split(key)
            obs_jax, state_jax, rew_jax, done_jax, _ = step(key_step, state, {zoo_to_jax[a]: v for a, v in actions.items()})
            for agent, jax_agent in zoo_to_jax.items():
                np.testing.assert_allclose(obs_zoo[agent], obs_jax[jax_agent], atol=1e-4, err_msg=f"step {s} obs {agent}")
                np.testing.assert_allclose(rew_zoo[agent], rew_jax[jax_agent], atol=1e-4, err_msg=f"step {s} rew {agent}")
                assert done_zoo[agent] == bool(done_jax[jax_agent]), f"step {s} done {agent}"
            if not all(done_zoo.values()):
                world = env_zoo.aec_env.env.world
                np.testing.assert_allclose(state_jax.agent_pos, [a.state.p_pos for a in world.agents], atol=1e-4)
                np.testing.assert_allclose(state_jax.agent_vel, [a.state.p_vel for a in world.agents], atol=1e-4)
    # jmarl's own episode length: the 25th transition is done, a truncation, not a termination
    view = to_jaxmarl(jmarl.make(jmarl_name, continuous_actions=continuous))
    _, state = view.reset(jax.random.PRNGKey(0))
    _, _, _, dones, infos = view.step_env(jax.random.PRNGKey(1), state.replace(step=24),
                                          {a: env_jax.action_space(a).sample(jax.random.PRNGKey(2)) for a in view.agents})
    assert bool(dones["__all__"]) and not bool(infos["terminated"].any()) and bool(infos["truncated"].all())


# --------------------------------------------------------------------------------------------------
# The loops of JaxMARL's IPPO baselines on jmarl envs
# --------------------------------------------------------------------------------------------------

def batchify(x: dict, agent_list, num_actors):
    """JaxMARL's baselines' batchify (ippo_ff_mpe.py, without its padding: all agents share a size here)."""
    return jnp.stack([x[a] for a in agent_list]).reshape((num_actors, -1))


def unbatchify(x: jnp.ndarray, agent_list, num_envs, num_actors):
    """JaxMARL's baselines' unbatchify: each agent's actions come out shaped (num_envs, 1)."""
    x = x.reshape((num_actors, num_envs, -1))
    return {a: x[i] for i, a in enumerate(agent_list)}


def test_ippo_ff_mpe_loop_runs_on_to_jaxmarl():
    """ippo_ff_mpe.py's rollout and update on to_jaxmarl(mpe_spread), unchanged in what it sends and reads:
    MPELogWrapper, actions from ``unbatchify`` shaped (num_envs, 1) per agent, every info reshaped to
    NUM_ACTORS; one policy-gradient update of a linear policy. (It failed: actions of shape (3, 1).)"""
    env = MPELogWrapper(to_jaxmarl(jmarl.make("mpe_spread", max_steps=5)))
    num_envs, num_steps = 2, 6
    num_actors = env.num_agents * num_envs
    num_actions = env.action_space(env.agents[0]).n
    params = jnp.zeros((env.observation_space(env.agents[0]).shape[0], num_actions))

    def rollout(params, key):
        obsv, env_state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def _env_step(carry, k):
            env_state, last_obs = carry
            obs_batch = batchify(last_obs, env.agents, num_actors)
            k_act, k_step = jax.random.split(k)
            logits = obs_batch @ params
            action = jax.random.categorical(k_act, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], 1)[:, 0]
            env_act = unbatchify(action, env.agents, num_envs, env.num_agents)
            obsv, env_state, reward, done, info = jax.vmap(env.step)(jax.random.split(k_step, num_envs), env_state,
                                                                     env_act)
            info = jax.tree.map(lambda x: x.reshape((num_actors)), info)
            reward = batchify(reward, env.agents, num_actors).squeeze()
            return (env_state, obsv), (log_prob, reward, info)

        _, (log_prob, reward, info) = jax.lax.scan(_env_step, (env_state, obsv), jax.random.split(key, num_steps))
        return -(log_prob * jax.lax.stop_gradient(reward)).mean(), info

    (loss, info), grads = jax.jit(jax.value_and_grad(rollout, has_aux=True))(params, jax.random.PRNGKey(0))
    assert np.isfinite(float(loss)) and float(jnp.abs(grads).max()) > 0
    # MPELogWrapper's episode stats: 5-step episodes end at step 5; returns are num_agents x the rewards
    np.testing.assert_array_equal(info["returned_episode"][:, 0], np.arange(num_steps) == 4)
    assert info["returned_episode_lengths"][4].tolist() == [5] * num_actors


def test_ippo_rnn_smax_loop_runs_on_to_jaxmarl():
    """ippo_rnn_smax.py's use of the env on to_jaxmarl(jmarl's smax), with its own SMAXLogWrapper unchanged:
    available actions from ``get_avail_actions(env_state.env_state)``, masked sampling, every info reshaped
    to NUM_ACTORS (SMAX's ``won`` included: it was per env while the rest was per agent)."""
    env = SMAXLogWrapper(to_jaxmarl(jmarl.make("smax", scenario="3m", max_steps=4)))
    num_envs, num_steps = 2, 5
    num_actors = env.num_agents * num_envs

    def rollout(key):
        obsv, env_state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def _env_step(carry, k):
            env_state, last_obs = carry
            avail_actions = jax.vmap(env.get_avail_actions)(env_state.env_state)
            avail_actions = batchify(avail_actions, env.agents, num_actors)
            k_act, k_step = jax.random.split(k)
            logits = jnp.zeros(avail_actions.shape) - (1 - avail_actions) * 1e10
            action = jax.random.categorical(k_act, logits)
            env_act = unbatchify(action, env.agents, num_envs, env.num_agents)
            env_act = {k: v.squeeze() for k, v in env_act.items()}
            obsv, env_state, reward, done, info = jax.vmap(env.step)(jax.random.split(k_step, num_envs), env_state,
                                                                     env_act)
            info = jax.tree.map(lambda x: x.reshape((num_actors)), info)
            return (env_state, obsv), (info, jnp.take_along_axis(avail_actions, action[:, None], 1))

        return jax.lax.scan(_env_step, (env_state, obsv), jax.random.split(key, num_steps))[1]

    info, chosen_available = jax.jit(rollout)(jax.random.PRNGKey(0))
    assert bool(chosen_available.all())
    assert info["won"].shape == info["returned_won_episode"].shape == (num_steps, num_actors)
    done = np.asarray(info["returned_episode"])
    assert done.any() and (done == done[:, :1]).all()  # the episode ends for every actor of an env at once
