"""SMAX: shapes, invariants under random play (property-based), action masking, scenarios, the heuristic.

Compiles are the cost here, so each jitted function is built once (cached) and vmaps many episodes.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jmarl
from jmarl.agents.opponents import policy_opponent, with_fixed_teams
from smax_cases import play_beside
from jmarl.envs.smax import SCENARIOS, SMAX, Scenario, SMAXState, register_scenario, team
from jmarl.envs.smax.heuristic import NUM_MOVES, STOP
from jmarl.envs.smax.units import TABLE, UNIT_TYPES

FEW = settings(max_examples=4, deadline=None, derandomize=True)
# These programs are small and run briefly: compile them fast (XLA's backend optimisations cost ~40%).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def random_actions(key, avail):
    """i32[...]: uniform over the available actions, avail bool[..., A] (the one home: Discrete.sample)."""
    return jmarl.Discrete(avail.shape[-1]).sample(key, avail.shape[:-1], avail)


# ----------------------------------------------------------------------------------------------------
# Spaces
# ----------------------------------------------------------------------------------------------------
def test_teams_and_shapes():
    env = jmarl.make("smax", scenario="5m_vs_6m")
    assert list(env.teams) == ["allies"]
    team_ = env.teams["allies"]
    assert (team_.num_agents, team_.action_space.n, team_.obs_shape) == (5, 5 + 6, (10 + 11 * 10,))
    ts, state = jit(env.reset)(jax.random.key(0))
    assert ts.obs["allies"].shape == (5, 120) and ts.obs["allies"].dtype == jnp.float32
    assert ts.avail_actions["allies"].shape == (5, 11) and ts.avail_actions["allies"].dtype == jnp.bool_
    assert ts.global_state.shape == env.global_state_shape == (11 * 10 + 1,)
    assert ts.reward["allies"].shape == (5,)
    assert not ts.done and state.health.shape == (11,)

    two = jmarl.make("smax", scenario="5m_vs_6m", enemy="learning")
    assert list(two.teams) == ["allies", "enemies"]
    assert two.teams["enemies"].action_space.n == 5 + 5 and two.teams["enemies"].num_agents == 6
    ts, _ = jit(two.reset)(jax.random.key(0))
    assert ts.obs["enemies"].shape == (6, 120) and ts.avail_actions["enemies"].shape == (6, 10)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="unknown SMAX scenario"):
        jmarl.make("smax", scenario="3marines")
    with pytest.raises(jmarl.ConfigError):
        jmarl.make("smax", enemy="scripted")
    with pytest.raises(ValueError, match="expected"):
        env = jmarl.make("smax")
        state = jax.eval_shape(env.reset, jax.random.key(0))[1]
        env.step(jax.random.key(0), state, {"allies": jnp.zeros((4,), jnp.int32)})


# ----------------------------------------------------------------------------------------------------
# Invariants under random play: one compiled rollout per (scenario, enemy), many episodes per call
# ----------------------------------------------------------------------------------------------------
MAX_STEPS = 40


@functools.lru_cache(maxsize=None)
def rollout_fn(scenario: str, enemy: str):
    """jit(keys [B] -> per-step records [B, T, ...]) of random play, T = MAX_STEPS + 5 steps."""
    env = jmarl.make("smax", scenario=scenario, enemy=enemy, max_steps=MAX_STEPS)

    def one(key):
        ts, state = env.reset(key)

        def body(carry, key):
            ts, state = carry
            actions = {name: random_actions(k, ts.avail_actions[name])
                       for k, name in zip(jax.random.split(key), env.teams)}
            ts2, state2 = env.step(key, state, actions)
            record = dict(health=state.health, next_health=state2.health, pos=state.pos, next_pos=state2.pos,
                          avail=ts.avail_actions["allies"], obs=ts2.obs["allies"], state=ts2.global_state,
                          reward=ts2.reward["allies"], terminated=ts2.terminated, truncated=ts2.truncated,
                          won=ts2.info["won"], step=state2.step, cooldown=state2.cooldown)
            if enemy == "learning":
                record["enemy_reward"] = ts2.reward["enemies"]
                record["enemy_avail"] = ts.avail_actions["enemies"]
            return (ts2, state2), record

        return jax.lax.scan(body, (ts, state), jax.random.split(key, MAX_STEPS + 5))[1]

    return env, jit(jax.vmap(one))


@pytest.mark.parametrize("scenario, enemy", [("3m", "heuristic"), ("2s3z", "learning"),
                                             ("smacv2_5_units", "heuristic")])
@FEW
@given(seed=st.integers(0, 2**31 - 1))
def test_random_play_invariants(scenario, enemy, seed):
    env, rollout = rollout_fn(scenario, enemy)
    r = jax.tree.map(np.asarray, rollout(jax.random.split(jax.random.key(seed), 32)))
    n, m = env.num_allies, env.num_enemies
    done = r["terminated"] | r["truncated"]  # [B, T]
    first_done = np.argmax(done, axis=1)
    live = np.arange(done.shape[1]) <= first_done[:, None]  # [B, T] steps of the first episode
    # Every episode ends by the time limit: truncated exactly at MAX_STEPS unless terminated before.
    assert done.any(axis=1).all() and (first_done <= MAX_STEPS - 1).all()
    assert not (r["terminated"] & r["truncated"]).any()
    assert (r["truncated"] == (r["step"] >= MAX_STEPS) & ~r["terminated"]).all()
    # Health never rises; dead units stay dead and do not move.
    assert (r["next_health"] <= r["health"] + 1e-6).all() and (r["next_health"] >= 0).all()
    dead = r["health"] <= 0
    assert np.array_equal(r["next_pos"][dead], r["pos"][dead])
    assert (r["next_health"][dead] == 0).all() and (r["cooldown"] >= 0).all()
    # Termination means a team is gone; a win means the enemies are gone and an ally lives.
    alive = r["next_health"] > 0
    assert np.array_equal(r["terminated"], ~alive[..., :n].any(-1) | ~alive[..., n:].any(-1))
    assert np.array_equal(r["won"], alive[..., :n].any(-1) & ~alive[..., n:].any(-1))
    # Dead agents may only stop; nobody may attack a dead unit.
    avail = r["avail"]  # [B, T, N, A]
    only_stop = np.zeros(avail.shape[-1], bool)
    only_stop[STOP] = True
    assert (avail[dead[..., :n]] == only_stop).all()
    assert not (avail[..., NUM_MOVES:] & dead[..., None, n:]).any()
    if enemy == "learning":
        enemy_avail = r["enemy_avail"]
        assert (enemy_avail[dead[..., n:]][:, STOP]).all() and not enemy_avail[dead[..., n:]][:, :STOP].any()
        assert not (enemy_avail[..., NUM_MOVES:] & dead[..., None, :n]).any()
    # Rewards: shared, in [0, 1 + win bonus] per step, damage part of an episode at most 1.
    reward = r["reward"]
    assert (reward == reward[..., :1]).all()
    assert (reward >= -1e-6).all() and (reward <= 2.0 + 1e-5).all()
    episode_damage = np.sum(np.where(live, reward[..., 0] - r["won"], 0.0), axis=1)
    assert (episode_damage <= 1.0 + 1e-4).all()
    # Observations and global state are normalised.
    assert np.abs(r["obs"][live]).max() <= 1.0 + 1e-5 and np.abs(r["state"][live]).max() <= 1.0 + 1e-5


# ----------------------------------------------------------------------------------------------------
# Masking: an attack hits exactly when it is available
# ----------------------------------------------------------------------------------------------------
def battle_state(env: SMAX, pos, health, types=None) -> SMAXState:
    u = env.num_units
    types = np.zeros(u, np.int32) if types is None else np.asarray(types, np.int32)
    return SMAXState(pos=jnp.asarray(pos, jnp.float32), health=jnp.asarray(health, jnp.float32),
                     cooldown=jnp.zeros(u), unit_type=jnp.asarray(types),
                     last_action=jnp.full(u, STOP, jnp.int32), step=jnp.zeros((), jnp.int32))


@functools.lru_cache(maxsize=None)
def two_team_3m():
    env = jmarl.make("smax", scenario="3m", enemy="learning")
    return env, jit(env.step), jit(env.observe)


@FEW
@given(attacker=st.integers(0, 2), target=st.integers(0, 2), dist=st.floats(1.0, 12.0),
       target_dead=st.booleans(), attacker_dead=st.booleans())
def test_attack_lands_iff_available(attacker, target, dist, target_dead, attacker_dead):
    env, step, observe = two_team_3m()
    marine_range = TABLE[UNIT_TYPES.index("marine"), 2]
    dist = dist if abs(dist - marine_range) > 1e-2 else dist + 0.1
    # Allies on a column at x=4, enemies at x=28, 5 apart (beyond every range); then move the target.
    pos = np.array([[4.0, 6.0 + 5 * i] for i in range(3)] + [[28.0, 6.0 + 5 * i] for i in range(3)])
    pos[3 + target] = pos[attacker] + [dist, 0.0]
    if np.any(np.linalg.norm(np.delete(pos, 3 + target, 0) - pos[3 + target], axis=1) < 1.0):
        pos[3 + target, 1] += 0.5  # keep clear of other units, so nothing is pushed
    health = np.full(6, 45.0)
    health[3 + target] = 0.0 if target_dead else 45.0
    health[attacker] = 0.0 if attacker_dead else 45.0
    state = battle_state(env, pos, health)
    ts = observe(state)
    available = bool(ts.avail_actions["allies"][attacker, NUM_MOVES + target])
    in_range = np.linalg.norm(pos[3 + target] - pos[attacker]) < marine_range
    assert available == (not target_dead and not attacker_dead and in_range)
    actions = {"allies": jnp.full(3, STOP, jnp.int32).at[attacker].set(NUM_MOVES + target),
               "enemies": jnp.full(3, STOP, jnp.int32)}
    ts2, state2 = step(jax.random.key(0), state, actions)
    lost = np.asarray(state.health - state2.health)
    if available:
        assert lost[3 + target] > 0 and lost.sum() == lost[3 + target] and ts2.reward["allies"][0] > 0
    else:
        assert (lost == 0).all() and (ts2.reward["allies"] == 0).all()  # an unavailable attack does nothing
    assert np.allclose(state2.pos, state.pos)  # attackers and stoppers stand still


def test_sight_limits_observation():
    env, _, observe = two_team_3m()
    pos = np.array([[10.0, 16.0], [10.0, 20.0], [10.0, 26.0], [15.0, 16.0], [25.0, 16.0], [10.0, 8.0]])
    obs = np.asarray(observe(battle_state(env, pos, np.full(6, 45.0))).obs["allies"][0])
    own, mates, foes = obs[:10], obs[10:32].reshape(2, 11), obs[32:].reshape(3, 11)
    np.testing.assert_allclose(own[:4], [1.0, 10 / 32, 16 / 32, 0.0])
    assert own[4 + UNIT_TYPES.index("marine")] == 1.0
    np.testing.assert_allclose(mates[0, :5], [1.0, 0.0, 4 / 9, 4 / 9, 0.0], rtol=1e-6)  # ally 1, 4 north
    assert (mates[1] == 0).all()  # ally 2 is 10 away: beyond a marine's sight (9)
    np.testing.assert_allclose(foes[0, :4], [1.0, 5 / 9, 0.0, 5 / 9], rtol=1e-6)
    assert (foes[1] == 0).all()  # 15 away: out of sight
    np.testing.assert_allclose(foes[2, :4], [1.0, 0.0, -8 / 9, 8 / 9], rtol=1e-6)


def test_obs_last_action():
    """With obs_last_action a unit block gains a teammate's last move and attack, or the fraction of the
    observer's team that attacked a foe; the rest of the observation is unchanged."""
    from jmarl.envs.smax.heuristic import EAST
    plain = jmarl.make("smax", scenario="3m", enemy="learning")
    env = jmarl.make("smax", scenario="3m", enemy="learning", obs_last_action=True)
    assert env.teams["allies"].obs_shape == (plain.teams["allies"].obs_shape[0] + 3 * 5,)
    # All within sight (9) of ally 2; enemies 3 and 4 within range (5) of allies 0 and 1.
    pos = np.array([[14.0, 16.0], [14.0, 18.0], [12.0, 17.0], [17.0, 16.0], [17.0, 18.0], [18.0, 17.0]])
    state = battle_state(env, pos, np.full(6, 45.0))
    acts = {"allies": jnp.array([NUM_MOVES + 0, EAST, STOP]), "enemies": jnp.array([NUM_MOVES + 2, STOP, STOP])}
    ts, state = jit(env.step)(jax.random.key(0), state, acts)
    obs = np.asarray(ts.obs["allies"][2])
    mates, foes = obs[10:38].reshape(2, 14), obs[38:].reshape(3, 14)
    np.testing.assert_allclose(mates[:, -3:], [[0, 0, 1], [1, 0, 0]])  # ally 0 attacked, ally 1 moved east
    np.testing.assert_allclose(foes[:, -3:], [[0, 0, 1 / 3], [0, 0, 0], [0, 0, 0]])  # enemy 3 by 1 of 3
    enemy_obs = np.asarray(ts.obs["enemies"][1])  # enemy 4 sees enemy 3 attack, and no ally targeted
    np.testing.assert_allclose(enemy_obs[10:38].reshape(2, 14)[0, -3:], [0, 0, 1])
    np.testing.assert_allclose(enemy_obs[38:].reshape(3, 14)[:, -1], [0, 0, 1 / 3])
    # The first F_UNIT features of each block are the plain observation's.
    ts_plain, _ = jit(plain.step)(jax.random.key(0), battle_state(plain, pos, np.full(6, 45.0)), acts)
    plain_obs = np.asarray(ts_plain.obs["allies"][2])
    np.testing.assert_allclose(obs[:10], plain_obs[:10])
    np.testing.assert_allclose(np.concatenate([mates, foes])[:, :11], plain_obs[10:].reshape(5, 11))


# ----------------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------------
def test_every_scenario_runs_jitted():
    for name, scenario in SCENARIOS.items():
        env = jmarl.make("smax", scenario=name)

        @jit
        def run(key):
            ts, state = env.reset(key)
            for k in jax.random.split(key, 2):
                ts, state = env.step(k, state, {"allies": random_actions(k, ts.avail_actions["allies"])})
            return ts, state

        ts, state = run(jax.random.key(1))
        assert ts.obs["allies"].shape == (scenario.num_allies,) + env.teams["allies"].obs_shape, name
        assert state.step == 2 and np.isfinite(np.asarray(ts.obs["allies"])).all(), name


def test_register_scenario():
    register_scenario("test_4m_vs_2z", Scenario(team(marine=4), team(zealot=2)), overwrite=True)
    env = jmarl.make("smax", scenario="test_4m_vs_2z")
    assert (env.num_allies, env.num_enemies) == (4, 2)
    _, state = jit(env.reset)(jax.random.key(0))
    np.testing.assert_allclose(state.health, [45.0] * 4 + [150.0] * 2)
    with pytest.raises(ValueError, match="already registered"):
        register_scenario("test_4m_vs_2z", Scenario(team(marine=1), team(marine=1)))
    with pytest.raises(ValueError, match="unknown unit type"):
        Scenario(team(marines=1), team(marine=1))


def test_smacv2_draws_types_and_positions():
    env = jmarl.make("smax", scenario="smacv2_10_units")
    states = jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 64))[1]
    types = np.asarray(states.unit_type)
    assert len(np.unique(types)) == len(UNIT_TYPES)
    assert (types[:, :10] == types[:, 10:]).all()  # enemies mirror allies
    assert np.asarray(states.pos).std(axis=0).min() > 1.0  # positions vary between episodes
    np.testing.assert_allclose(states.health, TABLE[types, 0])


# ----------------------------------------------------------------------------------------------------
# The heuristic, and a fixed-policy enemy
# ----------------------------------------------------------------------------------------------------
def first_episode_wins(env, ally_policy, num_episodes: int, seed: int = 0) -> np.ndarray:
    """bool[num_episodes]: did the allies win their first episode (vmapped, one compile)."""

    def one(key):
        ts, state = env.reset(key)

        def body(carry, key):
            ts, state, over, won = carry
            k_act, k_step = jax.random.split(key)
            ts, state = env.step(k_step, state, {"allies": ally_policy(k_act, ts, state)})
            return (ts, state, over | ts.done, won | (~over & ts.info["won"])), None

        carry = (ts, state, jnp.zeros((), bool), jnp.zeros((), bool))
        return jax.lax.scan(body, carry, jax.random.split(key, env.max_steps))[0][3]

    return np.asarray(jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), num_episodes)))


def test_heuristic_beats_random_allies():
    env = jmarl.make("smax", scenario="3m", max_steps=60)
    wins = first_episode_wins(env, lambda k, ts, s: random_actions(k, ts.avail_actions["allies"]), 256)
    assert wins.mean() <= 0.05, f"random allies won {wins.mean():.1%} of 3m episodes"


def test_heuristic_mirror_match_is_even():
    env = jmarl.make("smax", scenario="3m", max_steps=60, target_mode="lowest_health")
    wins = first_episode_wins(env, lambda k, ts, s: env.heuristic_actions(k, s, "allies"), 256)
    assert 0.3 <= wins.mean() <= 0.7, f"heuristic allies won {wins.mean():.1%} against the same heuristic"


def test_heuristic_advance_modes():
    """With no foe in range, "closest" advances on the closest living foe; "random_visible" (JaxMARL's rule)
    on a foe in sight drawn anew each step, and on the closest when none is in sight."""
    from jmarl.envs.smax.heuristic import NORTH, SOUTH
    # 3m: allies 0-2, enemies 3-5. Enemy 3 at the centre; ally 0 7 north, ally 1 6 south (both in sight
    # 9, out of range 5); ally 2 and the other enemies dead.
    near = [[16, 23], [16, 10], [0, 0], [16, 16], [0, 0], [0, 0]]
    far = [[16, 30], [16, 4], [0, 0], [16, 16], [0, 0], [0, 0]]  # 14 north, 12 south: none in sight
    keys = jax.random.split(jax.random.key(0), 64)

    def moves(advance, pos):
        env = jmarl.make("smax", scenario="3m", advance=advance)
        state = battle_state(env, pos, [45, 45, 0, 45, 0, 0])
        return np.asarray(jit(jax.vmap(lambda k: env.heuristic_actions(k, state, "enemies")[0]))(keys))

    assert (moves("closest", near) == SOUTH).all() and (moves("closest", far) == SOUTH).all()
    drawn = moves("random_visible", near)
    assert set(drawn.tolist()) == {NORTH, SOUTH} and 0.2 < (drawn == NORTH).mean() < 0.8
    assert (moves("random_visible", far) == SOUTH).all()
    with pytest.raises(jmarl.ConfigError, match="random_visible"):
        jmarl.make("smax", advance="random")


def test_enemies_are_opponents_like_any_other():
    """A fixed enemy other than the built-in heuristic is an opponent of jmarl.agents.opponents on the
    two-team env: a user's Opponent, or "random" (uniform over the enemies' available actions)."""
    base = jmarl.make("smax", scenario="3m", enemy="learning")
    stop = policy_opponent("enemies", lambda key, obs, avail: jnp.full(obs.shape[0], STOP, jnp.int32))

    def play(env, key):  # 12 steps of random allies: the enemies' actions and the availability they saw
        ts, state = env.reset(key)

        def step(carry, k):
            ts, state = carry
            seen = state.timestep.avail_actions["enemies"]  # bool[3, 8] what the enemies acted on
            ts, state = env.step(k, state, {"allies": random_actions(k, ts.avail_actions["allies"])})
            return (ts, state), (ts.info["fixed_actions"]["enemies"], seen)

        return jax.lax.scan(step, (ts, state), jax.random.split(key, 12))[1]

    for spec in (stop, {"enemies": "random"}):
        env = with_fixed_teams(base, ["enemies"], spec)
        assert list(env.teams) == ["allies"]
        actions, seen = jit(jax.vmap(lambda k: play(env, k)))(jax.random.split(jax.random.key(0), 4))
        if spec is stop:
            assert (actions == STOP).all()
        else:
            assert np.take_along_axis(np.asarray(seen), np.asarray(actions)[..., None], -1).all()  # available only
            assert len(np.unique(actions)) > 3  # and not a constant: moves and stop at least
    with pytest.raises(ImportError, match=r"with_fixed_teams\(jmarl.make\('smax', enemy='learning'\)"):
        from jmarl.envs.smax import PolicyEnemy  # noqa: F401  the old wrapper says where it went
    with pytest.raises(ImportError, match="'random'"):
        from jmarl.envs.smax.env import random_policy  # noqa: F401


def test_builtin_heuristic_equals_the_heuristic_opponent():
    """``enemy="heuristic"`` (the fast path of the published results) plays exactly what the heuristic
    opponent plays on ``enemy="learning"``: the same ally observations, rewards and enemy actions, step by
    step, over whole episodes. With the default target_mode="closest" and advance="closest" the heuristic
    draws nothing; the env's only randomness is the cooldown noise, drawn from the key its step gets. The
    fixed-team wrapper splits its step key (env key first, then one per opponent), so the built-in env is
    handed that same env key: given the wrapper's raw key instead, cooldowns (and so observations) differ
    from the first attack on."""
    plain = jmarl.make("smax", scenario="3m")
    fixed = with_fixed_teams(jmarl.make("smax", scenario="3m", enemy="learning"), ["enemies"], "heuristic")
    assert (plain.config.target_mode, plain.config.advance) == ("closest", "closest")

    got = play_beside(plain, fixed, jax.random.key(0), plain.max_steps)
    np.testing.assert_array_equal(got["obs_plain"], got["obs_fixed"])
    np.testing.assert_array_equal(got["reward_plain"], got["reward_fixed"])
    np.testing.assert_array_equal(got["done_plain"], got["done_fixed"])
    # (a dead enemy's action is STOP on both sides)
    np.testing.assert_array_equal(got["enemy_plain"], got["enemy_fixed_chosen"])
    assert got["done_plain"].any(1).all() and (got["reward_plain"] > 0).any()  # whole battles, with damage dealt
    assert (got["enemy_plain"] >= NUM_MOVES).any()  # the enemies attacked: the cooldown noise mattered


def test_autoreset_keeps_final_observation():
    env = jmarl.AutoReset(jmarl.make("smax", scenario="3m", max_steps=3))
    ts, state = jit(env.reset)(jax.random.key(0))
    step = jit(env.step)
    for k in jax.random.split(jax.random.key(1), 3):
        ts, state = step(k, state, {"allies": random_actions(k, ts.avail_actions["allies"])})
    assert ts.truncated and state.step == 0
    assert not np.array_equal(ts.info["final_obs"]["allies"], ts.obs["allies"])
