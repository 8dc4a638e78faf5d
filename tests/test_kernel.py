"""The kernel, on the tiny environment of ``tiny_env.py``: registry and typed config (``jmarl.make``,
``jmarl.core.config.build``), action checking, the AutoReset and EpisodeStats wrappers, and the spaces."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl import AutoReset, Box, ConfigError, Discrete, EpisodeStats
from jmarl.core.config import build
from jmarl.core.registry import _REGISTRY
from jmarl.core.wrappers import team_episode_return
from tiny_env import GO, NAME, STOP, Counter


@pytest.fixture
def registered():
    jmarl.register(NAME, Counter, overwrite=True)
    yield NAME
    _REGISTRY.pop(NAME, None)


def assert_trees_equal(x, y) -> None:
    assert jax.tree.structure(x) == jax.tree.structure(y)
    for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------------------------------
# Registry: jmarl.make
# --------------------------------------------------------------------------------------------------

def test_make_builds_a_registered_env_with_coerced_kwargs(registered):
    env = jmarl.make(registered, max_steps="7", scale=2)
    assert isinstance(env, Counter)
    assert env.config == Counter.Config(max_steps=7, scale=2.0) and env.max_steps == 7
    assert registered in jmarl.registered_envs()


def test_make_unknown_env_lists_the_registered_ones(registered):
    with pytest.raises(ValueError, match="unknown environment 'no_such_env'") as err:
        jmarl.make("no_such_env")
    assert registered in str(err.value) and "mpe_spread" in str(err.value)
    with pytest.raises(ValueError, match="Did you mean"):
        jmarl.make(NAME[:-1])


def test_make_unknown_kwarg_names_it_and_lists_valid_keys(registered):
    with pytest.raises(ConfigError, match="unknown key 'max_step'") as err:
        jmarl.make(registered, max_step=3)
    message = str(err.value)
    assert "Did you mean ['max_steps']" in message
    assert "Valid keys: ['max_steps', 'scale'," in message and "'messages'" in message and "\n" not in message


def test_make_ill_typed_kwarg_names_it(registered):
    with pytest.raises(ConfigError, match="max_steps='many' is not a valid int"):
        jmarl.make(registered, max_steps="many")
    with pytest.raises(ConfigError, match="scale=True is not a valid float"):
        jmarl.make(registered, scale=True)


def test_register_refuses_to_overwrite_silently(registered):
    with pytest.raises(ValueError, match="already registered"):
        jmarl.register(registered, Counter)


# --------------------------------------------------------------------------------------------------
# Typed config: jmarl.core.config.build
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knobs:
    num_envs: int = 4
    lr: float = 3e-4
    anneal: bool = True
    layers: tuple[int, ...] = (64, 64)
    seed: Optional[int] = None
    mixer: Literal["vdn", "qmix"] = "qmix"
    num_agents: Literal[3, 5] = 3
    tag: str = "run"


@pytest.mark.parametrize("key, value, expected", [
    ("num_envs", "64", 64), ("num_envs", "1e3", 1000), ("num_envs", 8, 8),
    ("lr", "3e-4", 3e-4), ("lr", 1, 1.0), ("lr", "0.5", 0.5),
    ("anneal", "false", False), ("anneal", "Yes", True), ("anneal", "0", False), ("anneal", False, False),
    ("layers", "(32, 16)", (32, 16)), ("layers", "8,8,8", (8, 8, 8)), ("layers", [4], (4,)),
    ("seed", "None", None), ("seed", "3", 3), ("seed", None, None),
    ("mixer", "vdn", "vdn"), ("num_agents", "5", 5), ("num_agents", 5, 5),
    ("tag", "x", "x"),
])
def test_build_coerces(key, value, expected):
    built = build(Knobs, {key: value})
    assert getattr(built, key) == expected
    assert type(getattr(built, key)) is type(expected)


@pytest.mark.parametrize("key, value, pattern", [
    ("num_envs", "2.5", "num_envs='2.5' is not a valid int"),
    ("num_envs", True, "num_envs=True is not a valid int"),
    ("lr", "fast", "lr='fast' is not a valid float"),
    ("anneal", "maybe", "anneal='maybe' is not a valid bool"),
    ("anneal", 1, "anneal=1 is not a valid bool"),
    ("layers", 64, "layers must be a sequence"),
    ("layers", "64,x", "layers='x' is not a valid int"),
    ("seed", "soon", "seed='soon' is not a valid int"),
    ("mixer", "qtran", r"mixer='qtran' is not one of \['vdn', 'qmix'\]"),
    ("num_agents", "4", r"num_agents='4' is not one of \[3, 5\]"),
    ("tag", 3, "tag=3 is not a valid str"),
])
def test_build_rejects_ill_typed_values(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build(Knobs, {key: value}, what="knobs")


def test_build_unknown_key_base_and_required():
    with pytest.raises(ConfigError, match="knobs: unknown key 'nm_envs'.*Did you mean") as err:
        build(Knobs, {"nm_envs": 3}, what="knobs")
    assert "\n" not in str(err.value) and "'num_envs'" in str(err.value) and "'layers'" in str(err.value)
    base = Knobs(num_envs=16, lr=0.1)
    assert build(Knobs, {"lr": "0.2"}, base=base) == Knobs(num_envs=16, lr=0.2)
    assert build(Knobs) == Knobs()

    @dataclass(frozen=True)
    class Needs:
        size: int

    with pytest.raises(ConfigError, match=r"missing required keys \['size'\]. Valid keys: \['size'\]$"):
        build(Needs, {})


# --------------------------------------------------------------------------------------------------
# Action checking
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, patterns", [
    ({"runners": GO["runners"]}, ["teams ['runners']", "teams are ['runners', 'pilot']"]),
    (dict(GO, extra=jnp.zeros(1)), ["'extra'", "teams are ['runners', 'pilot']"]),
    (dict(GO, runners=jnp.zeros(3, jnp.int32)), ["team 'runners'", "shape (3,)", "expected (2,)", "Discrete(n=3)"]),
    (dict(GO, pilot=jnp.zeros((1,), jnp.float32)), ["team 'pilot'", "shape (1,)", "expected (1, 2)"]),
    (dict(GO, runners=jnp.zeros(2, jnp.float32)), ["team 'runners'", "dtype float32", "integers in [0, 3)"]),
    (dict(GO, pilot=jnp.zeros((1, 2), jnp.int32)), ["team 'pilot'", "dtype int32", "floats in [-1.0, 1.0]"]),
    ([GO["runners"], GO["pilot"]], ["must be a dict", "got list"]),
])
def test_check_actions_errors_say_what_was_given_and_what_is_valid(bad, patterns):
    env = Counter()
    _, state = env.reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError) as err:
        env.step(jax.random.PRNGKey(1), state, bad)
    for pattern in patterns:
        assert pattern in str(err.value)
    assert NAME in str(err.value)
    with pytest.raises(ValueError) as err:  # while tracing under jit: the same ValueError, before XLA
        jax.jit(env.step)(jax.random.PRNGKey(1), state, bad)
    assert patterns[0] in str(err.value)


def test_check_actions_accepts_valid_actions_through_wrappers():
    env = AutoReset(EpisodeStats(Counter()))
    _, state = env.reset(jax.random.PRNGKey(0))
    env.step(jax.random.PRNGKey(1), state, GO)
    jmarl.check_actions(env.teams, {"runners": np.array([0, 2]), "pilot": np.zeros((1, 2), np.float64)})
    with pytest.raises(ValueError, match="team 'runners' actions have shape"):
        env.step(jax.random.PRNGKey(1), state, dict(GO, runners=jnp.zeros((2, 1), jnp.int32)))


def test_sample_actions_respects_avail_actions():
    env = Counter()
    ts, _ = env.reset(jax.random.PRNGKey(0))  # action 2 unavailable on the first step
    runners = jax.vmap(lambda k: env.sample_actions(k, ts.avail_actions)["runners"])(
        jax.random.split(jax.random.PRNGKey(1), 64))
    assert set(np.unique(runners)) == {0, 1}
    sampled = env.sample_actions(jax.random.PRNGKey(2))
    assert sampled["pilot"].shape == (1, 2) and Box(-1.0, 1.0, (2,)).contains(sampled["pilot"])
    jmarl.check_actions(env.teams, sampled)


# --------------------------------------------------------------------------------------------------
# Wrappers
# --------------------------------------------------------------------------------------------------

def test_wrapper_forwards_the_description():
    env = Counter(Counter.Config(max_steps=9))
    wrapped = AutoReset(EpisodeStats(env))
    assert wrapped.teams == env.teams and wrapped.max_steps == 9 and wrapped.global_state_shape == (2,)
    assert wrapped.unwrapped is env and wrapped.config is env.config and wrapped.num_agents == 3
    assert wrapped.teams["runners"].num_actions == 3 and wrapped.teams["pilot"].num_actions == 2


def test_autoreset_passes_through_steps_that_do_not_end():
    env, wrapped = Counter(), AutoReset(Counter())
    _, state = wrapped.reset(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    raw_ts, raw_state = env.step(jax.random.split(key)[0], state, GO)
    ts, after = wrapped.step(key, state, GO)
    assert not bool(ts.done)
    assert_trees_equal(ts.obs, raw_ts.obs)
    assert_trees_equal(ts.info["final_obs"], raw_ts.obs)
    assert_trees_equal(after, raw_state)


def test_autoreset_keeps_the_final_obs_and_resets_on_done():
    env, wrapped = Counter(), AutoReset(Counter())
    _, state = wrapped.reset(jax.random.PRNGKey(0))
    state = wrapped.step(jax.random.PRNGKey(1), state, GO)[1]
    key = jax.random.PRNGKey(2)
    key_step, key_reset = jax.random.split(key)
    raw_ts, _ = env.step(key_step, state, STOP)  # what the raw env returns at the done step
    reset_ts, reset_state = env.reset(key_reset)
    for ts, after in [wrapped.step(key, state, STOP), jax.jit(wrapped.step)(key, state, STOP)]:
        assert bool(ts.terminated) and not bool(ts.truncated)
        assert_trees_equal(ts.info["final_obs"], raw_ts.obs)
        np.testing.assert_array_equal(ts.info["final_global_state"], raw_ts.global_state)
        assert_trees_equal(ts.info["final_avail_actions"], raw_ts.avail_actions)
        assert_trees_equal(ts.obs, reset_ts.obs)
        np.testing.assert_array_equal(ts.global_state, reset_ts.global_state)
        assert_trees_equal(ts.avail_actions, reset_ts.avail_actions)
        assert_trees_equal(ts.reward, raw_ts.reward)  # the reward of the final transition is kept
        assert_trees_equal(after, reset_state)
    assert not np.allclose(raw_ts.obs["runners"], reset_ts.obs["runners"])  # the test can tell them apart
    # the masks differ too: action 2 is unavailable on a first step only
    assert not bool(reset_ts.avail_actions["runners"][:, 2].any()) and bool(raw_ts.avail_actions["runners"][:, 2].all())


SEQUENCE = [[0, 1], [2, 0], [0, 0], [1, 1], [0, 0], [1, 0], [0, 0]]  # ends: step 2 (terminated), 6 (truncated)


def test_episode_stats_restart_with_each_episode():
    """Per-agent returns and lengths of AutoReset(EpisodeStats(env)), against sums done by hand."""
    env = AutoReset(EpisodeStats(Counter(Counter.Config(max_steps=4))))
    runners = jnp.array(SEQUENCE, jnp.int32)
    pilot = jnp.full((len(SEQUENCE), 1, 2), 0.5, jnp.float32)

    @jax.jit
    def run(key):
        ts, state = env.reset(key)

        def body(state, xs):
            k, acts = xs
            ts, state = env.step(k, state, acts)
            return state, ts

        keys = jax.random.split(key, len(SEQUENCE))
        return ts, jax.lax.scan(body, state, (keys, {"runners": runners, "pilot": pilot}))[1]

    first, ts = run(jax.random.PRNGKey(0))
    assert int(first.info["episode_length"]) == 0 and not bool(first.info["episode_done"])
    np.testing.assert_array_equal(ts.info["episode_length"], [1, 2, 1, 2, 3, 4, 1])
    np.testing.assert_array_equal(ts.info["episode_done"], [0, 1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(ts.terminated, [0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(ts.truncated, [0, 0, 0, 0, 0, 1, 0])
    returns = ts.info["episode_return"]
    np.testing.assert_array_equal(returns["runners"][1], [1 + 3, 2 + 1])
    np.testing.assert_array_equal(returns["runners"][5], [1 + 2 + 1 + 2, 1 + 2 + 1 + 1])
    np.testing.assert_array_equal(returns["runners"][6], [1, 1])
    np.testing.assert_array_equal(returns["pilot"][:, 0], [1, 3, 1, 3, 6, 10, 1])
    np.testing.assert_array_equal(np.asarray(jax.vmap(team_episode_return)(ts.info))[[1, 5]], [4 + 3 + 3, 6 + 5 + 10])


# --------------------------------------------------------------------------------------------------
# Spaces and TimeStep
# --------------------------------------------------------------------------------------------------

def test_discrete_sample_and_contains():
    space = Discrete(4)
    x = space.sample(jax.random.PRNGKey(0), (1000,))
    assert x.shape == (1000,) and x.dtype == jnp.int32 and space.shape == ()
    assert set(np.unique(x)) == {0, 1, 2, 3}
    assert space.contains(x) and space.contains(3) and space.contains(np.array([[0, 1]]))
    assert not space.contains(4) and not space.contains(-1) and not space.contains(np.array([0, 4]))
    assert not space.contains(np.array([0.0, 1.0]))  # floats are not actions of a Discrete space


def test_box_sample_and_contains():
    space = Box(-1.0, 2.0, (3,))
    x = space.sample(jax.random.PRNGKey(0), (500,))
    assert x.shape == (500, 3) and x.dtype == jnp.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 2.0 and float(x.max()) > 1.5
    assert space.contains(x) and space.contains(np.zeros(3))
    assert not space.contains(np.full(3, 2.5)) and not space.contains(np.zeros(2)) and not space.contains(0.0)
    scalar = Box(0.0, 1.0, ())
    assert scalar.contains(0.5) and scalar.contains(scalar.sample(jax.random.PRNGKey(1), (8,)))
    assert not scalar.contains(np.array([0.5, 1.5]))


def test_timestep_done_is_terminated_or_truncated():
    ts, _ = Counter().reset(jax.random.PRNGKey(0))
    flags = [(False, False), (True, False), (False, True), (True, True)]
    assert [bool(ts.replace(terminated=jnp.array(a), truncated=jnp.array(b)).done) for a, b in flags] == \
        [False, True, True, True]
