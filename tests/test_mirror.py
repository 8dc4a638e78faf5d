"""Symmetric SMAX: the mirror mode of the env (envs/smax/env.py ``mirror=True``) and one PPO policy for both sides
(algos/ppo.py ``share_teams``), trained by self-play.

The env tests build random states by hand and compare a state S with mirror(S), the state with the sides swapped and
every position mirrored through the map centre: enemy j must see in S what ally j sees in mirror(S), and the same
actions, handed to the other team, must give mirrored trajectories. One policy for both sides is checked on 3m mirror
without training (its structure, and its actions in S and mirror(S)); the trained checks (the pool, a cut-and-resume,
loading, warm starts) share one tiny pool run of the rock-paper-scissors duel of duel_env.py, a symmetric game whose
PPO program compiles in about half the time of a SMAX one (scripts/bench_mirror.py runs the SMAX pipeline end to end).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import duel_env
import jmarl
from smax_cases import play_beside
from jmarl.agents.opponents import with_fixed_teams
from jmarl.envs.smax import SMAX, SMAXState
from jmarl.envs.smax.env import mirror_actions
from jmarl.envs.smax.heuristic import NUM_MOVES
from jmarl.envs.smax.scenarios import SCENARIOS, symmetric_scenarios
from jmarl.envs.smax.units import TABLE

# Small programs that run briefly: compile them fast (XLA's backend optimisations cost ~40% of the compile).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def swap(x: jax.Array, n: int) -> jax.Array:
    """Units of one state in the order of the mirrored one: the enemies [n:] first, then the allies."""
    return jnp.concatenate([x[n:], x[:n]])


def mirrored(env: SMAX, state: SMAXState) -> SMAXState:
    """mirror(S): the sides swapped and every position mirrored through the map centre; last moves in the mirrored
    frame (an attack's index names the same foe: foe j of ally j is enemy j and the other way round)."""
    n, size = env.num_allies, env.config.map_size
    return SMAXState(pos=swap(size - state.pos, n), health=swap(state.health, n), cooldown=swap(state.cooldown, n),
                     unit_type=swap(state.unit_type, n), last_action=swap(mirror_actions(state.last_action), n),
                     step=state.step)


def random_state(env: SMAX, key: jax.Array) -> SMAXState:
    """A mid-battle state: units in the middle of the map (so many see and reach each other), about one in five
    dead, random cooldowns, last actions and step."""
    u, size = env.num_units, env.config.map_size
    k_pos, k_health, k_dead, k_cool, k_last, k_step = jax.random.split(key, 6)
    types = jnp.asarray(env.scenario.unit_types)
    full = jnp.asarray(TABLE[:, 0])[types]
    health = full * jax.random.uniform(k_health, (u,), minval=0.1) * (jax.random.uniform(k_dead, (u,)) > 0.2)
    return SMAXState(pos=jax.random.uniform(k_pos, (u, 2), minval=0.35 * size, maxval=0.65 * size), health=health,
                     cooldown=jax.random.uniform(k_cool, (u,), maxval=1.0), unit_type=types,
                     last_action=jax.random.randint(k_last, (u,), 0, NUM_MOVES + env.num_allies),
                     step=jax.random.randint(k_step, (), 0, env.max_steps - 20))


class SwappedNoise(SMAX):
    """The mirror env that hands each unit of mirror(S) the cooldown noise its unit of S draws (the draws are by unit
    index; the sides are swapped)."""

    def cooldown_noise(self, key):
        return swap(super().cooldown_noise(key), self.num_allies)


# ----------------------------------------------------------------------------------------------------
# The env
# ----------------------------------------------------------------------------------------------------
def test_enemies_see_what_allies_see_in_the_mirror_and_trajectories_stay_mirrored():
    """Random mid-battle states S: enemy j sees in S what ally j sees in mirror(S) (observations, available actions).
    Then allies act by a sequence a and enemies by b in S, while in mirror(S) the allies act by b and the enemies by
    a (each side in its own frame: the env turns the enemies' moves): every later state is the mirror of the other's,
    and observations, available actions, rewards and outcomes swap sides."""
    env = jmarl.make("smax", scenario="2s3z", enemy="learning", mirror=True, obs_last_action=True)
    plain = jmarl.make("smax", scenario="2s3z", enemy="learning", obs_last_action=True)  # without the mirror
    assert env.teams["allies"] == env.teams["enemies"]  # one policy can play both sides
    twin = SwappedNoise(env.config)
    n, A, T, size = env.num_allies, env.teams["allies"].num_actions, 16, env.config.map_size

    @jit
    def trajectories(key):
        k_state, k_a, k_b, k_run = jax.random.split(key, 4)
        a, b = jax.random.randint(k_a, (T, n), 0, A), jax.random.randint(k_b, (T, n), 0, A)

        def step(carry, x):
            s, s_m = carry
            k, a, b = x
            ts, s = env.step(k, s, {"allies": a, "enemies": b})
            ts_m, s_m = twin.step(k, s_m, {"allies": b, "enemies": a})
            return (s, s_m), (s, s_m, ts, ts_m)

        s0 = random_state(env, k_state)
        views = (s0, env.observe(s0), env.observe(mirrored(env, s0)), plain.observe(s0))
        return views, jax.lax.scan(step, (s0, mirrored(env, s0)), (jax.random.split(k_run, T), a, b))[1]

    attacks = damage = 0
    for key in jax.random.split(jax.random.key(2), 6):
        (s0, ts, ts_m, ts_plain), (s, s_m, tss, tss_m) = jax.device_get(trajectories(key))
        for team, other in (("enemies", "allies"), ("allies", "enemies")):
            np.testing.assert_allclose(ts.obs[team], ts_m.obs[other], atol=1e-5)
            np.testing.assert_array_equal(ts.avail_actions[team], ts_m.avail_actions[other])
        attacks += ts.avail_actions["enemies"][:, NUM_MOVES:].sum()
        # Own position features: (size - x) / size in the mirrored frame, x / size without the mirror; the allies'
        # view and the global state (the allies' frame: one array for both teams) are the plain env's.
        alive = (s0.health[n:] > 0)[:, None]
        np.testing.assert_allclose(ts.obs["enemies"][:, 1:3], (size - s0.pos[n:]) / size * alive, rtol=1e-6)
        np.testing.assert_allclose(ts_plain.obs["enemies"][:, 1:3], s0.pos[n:] / size * alive, rtol=1e-6)
        np.testing.assert_array_equal(ts.obs["allies"], ts_plain.obs["allies"])
        np.testing.assert_array_equal(ts.global_state, ts_plain.global_state)
        np.testing.assert_allclose(ts.global_state[1:3], s0.pos[0] / size * (s0.health[0] > 0), rtol=1e-6)
        # The trajectories.
        for t in range(T):
            expect = jax.device_get(mirrored(env, jax.tree.map(lambda x: x[t], s)))
            got = jax.tree.map(lambda x: x[t], s_m)
            # f32 rounding of size - x, carried over 16 steps x 8 ticks, scales with the coordinate (up to 32): the
            # drift is ~1e-4 on some CPUs' code paths, where a broken mirror is off by a move (~0.1) or more.
            np.testing.assert_allclose(got.pos, expect.pos, rtol=2e-5, atol=1e-4)
            np.testing.assert_allclose(got.health, expect.health, atol=1e-4)
            np.testing.assert_allclose(got.cooldown, expect.cooldown, atol=1e-5)
            np.testing.assert_array_equal(got.last_action, expect.last_action)
        for team, other in (("allies", "enemies"), ("enemies", "allies")):
            # Mirrored positions round differently (size - x), and 16 steps of 8 ticks carry that along: ~1e-4 in
            # positions (above), ~1e-5 in features that divide position differences by the sight range.
            np.testing.assert_allclose(tss.obs[team], tss_m.obs[other], rtol=1e-4, atol=3e-5)
            np.testing.assert_array_equal(tss.avail_actions[team], tss_m.avail_actions[other])
            np.testing.assert_allclose(tss.reward[team], tss_m.reward[other], atol=1e-6)
        np.testing.assert_array_equal(tss.terminated, tss_m.terminated)
        np.testing.assert_array_equal(tss.info["metrics"]["allies_won"], tss_m.info["metrics"]["enemies_won"])
        damage += (tss.reward["allies"] > 0).sum()
    assert attacks > 0 and damage > 0  # foes in range, and attacks, cooldowns and deaths in the trajectories


def test_start_positions_are_mirror_symmetric_in_distribution():
    """Each side starts uniform in a 4x4 square around its spawn point, and the spawn points are mirror images: the
    draw 1 - u (as uniform as u) puts enemy j at the mirror image of where u puts ally j."""
    from jmarl.envs.smax.scenarios import fixed_positions

    n, size = 3, 32.0
    u = jax.random.uniform(jax.random.key(3), (n, 2))
    pos = fixed_positions(jnp.concatenate([u, 1.0 - u]), n, n, size)
    np.testing.assert_allclose(pos[n:], size - pos[:n], atol=1e-5)
    # And the env's own starts: the allies' positions mirrored have the enemies' mean and spread.
    env = jmarl.make("smax", scenario="3m", enemy="learning", mirror=True)
    states = jit(jax.vmap(lambda k: env.reset(k)[1]))(jax.random.split(jax.random.key(4), 4096))
    allies, enemies = size - np.asarray(states.pos[:, :n]).reshape(-1, 2), np.asarray(states.pos[:, n:]).reshape(-1, 2)
    np.testing.assert_allclose(allies.mean(0), enemies.mean(0), atol=0.05)
    np.testing.assert_allclose(allies.std(0), enemies.std(0), atol=0.05)
    spawn = np.array([0.75 * size, 0.5 * size])  # the enemies' spawn point, the mirror image of the allies'
    assert np.abs(allies - spawn).max() <= 2.0 + 1e-5 and np.abs(enemies - spawn).max() <= 2.0 + 1e-5


def test_scripted_enemy_plays_the_same_game_in_mirror_mode():
    """The heuristic hands its enemies' actions over in their mirrored frame, so a mirror env whose enemies are
    scripted plays exactly the standard env's game (``enemy="heuristic"``): the direct baseline's."""
    plain = jmarl.make("smax", scenario="3m", max_steps=40)
    fixed = with_fixed_teams(jmarl.make("smax", scenario="3m", enemy="learning", mirror=True, max_steps=40),
                             ["enemies"], "heuristic")

    got = play_beside(plain, fixed, jax.random.key(5), 40)
    np.testing.assert_array_equal(got["obs_plain"], got["obs_fixed"])
    # In the map's frame, as the env keeps them.
    np.testing.assert_array_equal(got["enemy_plain"], got["enemy_fixed_state"])
    assert got["done_plain"].any() and (np.asarray(got["enemy_plain"]) >= NUM_MOVES).any()


def test_mirror_refuses_what_it_cannot_mirror():
    with pytest.raises(jmarl.ConfigError, match=r"needs enemy='learning'"):
        jmarl.make("smax", scenario="3m", mirror=True)
    with pytest.raises(jmarl.ConfigError, match=r"valid scenarios: \[.*'2s3z'.*'3m'.*\]") as err:
        jmarl.make("smax", scenario="5m_vs_6m", enemy="learning", mirror=True)
    assert "\n" not in str(err.value)
    assert "5m_vs_6m" not in symmetric_scenarios() and "3s_vs_5z" not in symmetric_scenarios()
    assert {"3m", "2s3z", "smacv2_5_units"} <= set(symmetric_scenarios()) < set(SCENARIOS)


# ----------------------------------------------------------------------------------------------------
# One PPO policy for both sides (share_teams), trained by self-play against a pool of its own snapshots
# ----------------------------------------------------------------------------------------------------
SIDES = ("allies", "enemies")
TINY = dict(num_envs=8, num_steps=8, total_timesteps=8 * 8 * 2, num_evals=1, num_minibatches=2, num_epochs=1,
            hidden_dim=16, num_layers=1)


def test_one_policy_acts_alike_for_either_side():
    """On 3m mirror, ``share_teams`` keeps one parameter set, one optimiser state and one pool (under "allies"), and
    the policy's greedy actions as the enemies in random states S are its actions as the allies in mirror(S)."""
    from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train

    env = jmarl.make("smax", scenario="3m", enemy="learning", mirror=True)
    config = PPOConfig(**TINY, share_teams=SIDES, schedule="pool", schedule_interval=1, pool_size=2, pool_groups=2)
    trainer = make_train(config, env)
    like = jax.eval_shape(trainer.init, jax.random.key(0), PPOHparams())
    assert list(like.params) == list(like.opt_state) == list(like.league) == ["allies"]
    assert like.league["allies"].slots.shape == (2 * 2,)  # the one pool draws for the groups of both sides' halves
    # MAPPO's shared critic also sees which side it values (both sides see one global state).
    critic_in = lambda cfg: jax.eval_shape(make_train(cfg, env).init, jax.random.key(0), PPOHparams()).params[
        "allies"]["critic"]["params"]["Torso_0"]["Dense_0"]["kernel"].shape[0]
    mappo = dataclasses.replace(config, algo="mappo", schedule="simultaneous")
    assert critic_in(mappo) == critic_in(dataclasses.replace(mappo, share_teams=())) + 2

    params = jax.tree.map(lambda x: jax.random.normal(jax.random.key(7), x.shape), like.params)  # varied actions
    hidden = jax.tree.map(lambda x: jnp.zeros((64,) + x.shape[1:]), like.hidden)

    @jit
    def actions(key):
        states = jax.vmap(lambda k: random_state(env, k))(jax.random.split(key, 64))
        act = lambda states: trainer.policy(params, hidden, jax.vmap(env.observe)(states), jnp.ones(64, bool), key,
                                            True)[1]
        return act(states), act(jax.vmap(lambda s: mirrored(env, s))(states))

    direct, mirror = actions(jax.random.key(6))
    np.testing.assert_array_equal(direct["enemies"], mirror["allies"])
    np.testing.assert_array_equal(direct["allies"], mirror["enemies"])
    assert len(np.unique(direct["allies"])) > 3  # moves and attacks: the comparison could fail


# The trained tests: a pool run of the rock-paper-scissors duel of duel_env.py (two teams with equal spaces, a
# symmetric game): its PPO program compiles in about half the time of a tiny SMAX one. 4 updates in 2 chunks, a
# snapshot after every update into 3 slots, 2 sides x 2 groups of 2 envs; the scripted policy as the reference.
DUEL = ("hunters", "runners")
SELF_PLAY = dict(TINY, num_steps=4, total_timesteps=8 * 4 * 4, num_evals=2, eval_episodes=4, share_teams=DUEL,
                 schedule="pool", schedule_interval=1, pool_size=3, pool_groups=2, eval_opponents=("heuristic",))


class Recorded:
    """A compiled program that keeps the arguments of its first call (see ``self_play``)."""

    def __init__(self, compiled):
        self.compiled, self.first_args = compiled, None

    def __call__(self, *args):
        self.first_args = self.first_args or args
        return self.compiled(*args)


@pytest.fixture(scope="module")
def self_play(tmp_path_factory):
    """A tiny pool run of one shared policy by ``jmarl.train.run.train`` (a run directory with a checkpoint per
    chunk). Its chunk program, as ``train`` compiled it, is kept (with its first arguments) for the resume test,
    which so needs no second compile; the curves are not drawn (matplotlib's seconds)."""
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    jmarl.register(duel_env.NAME, duel_env.Duel, overwrite=True)
    run = tmp_path_factory.mktemp("mirror") / "self_play"
    resolved = resolve("ippo", duel_env.NAME, SELF_PLAY, use_preset=False)
    programs = []
    compile_ = jax.stages.Lowered.compile

    def compile_and_keep(self, *args, **kwargs):
        programs.append(Recorded(compile_(self, *args, **kwargs)))
        return programs[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jax.stages.Lowered, "compile", compile_and_keep)
        mp.setattr("jmarl.train.plots.save_panels", lambda panels, path: path)
        train(resolved, Population.grid([resolved.hparams], [0]), run, quiet=True, wandb="disabled",
              final_eval_factor=1, keep_checkpoints=0)
    (chunk,) = programs  # train compiles its chunk program ahead of time, and nothing else
    return run, resolved, chunk


def test_shared_pool_run_keeps_one_policy_and_resumes_bitwise(self_play):
    """The run keeps one parameter set, optimiser state and pool, whose snapshots are of the one policy at the right
    updates; its state after chunk 0, restored from its checkpoint, runs the run's own program to its last
    checkpoint bitwise (parameters, optimiser state, pool, win counts, draws, env states, keys)."""
    import json

    from jmarl.train import checkpoint

    run, _, chunk = self_play
    assert [c.name for c in sorted((run / "checkpoints").glob("chunk_*"))] == ["chunk_000000", "chunk_000001"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        for side in DUEL:  # each side played by the one policy, against the scripted reference
            assert np.isfinite(row[f"eval/vs_heuristic/return/{side}"]) and f"league/{side}/return" in row
        assert "loss/hunters/policy_loss" in row and not any(k.startswith("loss/runners/") for k in row)
        assert "league/hunters/beat_rate" in row and not any(k.startswith("league/runners/pool") for k in row)
    runner, hparams = chunk.first_args
    last = checkpoint.restore(run / "checkpoints" / "chunk_000001", runner)
    assert list(last.params) == list(last.opt_state) == list(last.league) == ["hunters"]
    pool = last.league["hunters"]
    # Snapshots at updates 0 to 4 into 3 slots, written in turn: those of updates 3 and 4 overwrote 0's and 1's.
    np.testing.assert_array_equal(pool.stamp, [[3, 4, 2]])
    for a, b in zip(jax.tree.leaves(pool.params), jax.tree.leaves(last.params["hunters"]["actor"])):
        np.testing.assert_array_equal(a[:, 1], b)  # the newest snapshot is the policy after update 4
    assert pool.slots.shape == (1, 2 * 2) and (np.asarray(pool.played) > 0).any()
    resumed, _ = chunk(checkpoint.restore(run / "checkpoints" / "chunk_000000", runner), hparams)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(last)):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(resumed) == jax.tree.structure(last)


def test_loaded_snapshots_play_either_side_and_warm_start_both(self_play):
    """``jmarl.load`` of any checkpoint acts for both teams with the one policy, and a run whose teams learn apart
    starts both from it (``init_from``)."""
    from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train
    from jmarl.train.load import warm_start_params

    run, resolved, _ = self_play
    first = jmarl.load(run, checkpoint_dir=run / "checkpoints" / "chunk_000000")
    policy = jmarl.load(run)
    assert list(policy.params) == ["hunters"]
    ts = jax.eval_shape(jax.vmap(policy.env.reset), jax.random.split(jax.random.key(0), 4))[0]
    acted = jax.eval_shape(policy.act, jax.random.key(1), ts, policy.init_hidden(4), jnp.ones(4, bool))[1]
    assert {t: a.shape for t, a in acted.items()} == {t: (4, 1) for t in DUEL}  # both teams, by the one policy
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(policy.params)))
    config = PPOConfig(**{**TINY, "init_from": str(run)})  # simultaneous, each team its own parameters
    like = jax.eval_shape(make_train(config, duel_env.Duel()).init, jax.random.key(0), PPOHparams()).params
    warm = warm_start_params(config, duel_env.NAME, like)
    for team in DUEL:
        for a, b in zip(jax.tree.leaves(warm[team]), jax.tree.leaves(policy.params["hunters"])):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_kwargs, overrides, message", [
    (dict(scenario="5m_vs_6m"), {}, r"one policy needs equal spaces, but 'allies' has num_agents 5 and 'enemies' 6"),
    ({}, dict(share_teams=("allies", "foes")), r"'foes' is not a team of the env \['allies', 'enemies'\]"),
    ({}, dict(share_teams=("allies", "enemies"), fixed_teams=("enemies",), fixed_policy="heuristic"),
     r"'enemies' is a fixed team"),
    ({}, dict(share_teams=("allies",)), r"two or more distinct learning teams"),
    ({}, dict(share_teams=("allies", "allies")), r"two or more distinct learning teams"),
    ({}, dict(schedule="alternating", schedule_interval=1), r"valid schedules: 'simultaneous' or 'pool'"),
])
def test_shared_policy_settings_that_cannot_work_are_refused(env_kwargs, overrides, message):
    from jmarl.algos.ppo import PPOConfig, make_train

    env = jmarl.make("smax", enemy="learning", **env_kwargs)
    config = PPOConfig(**{"share_teams": SIDES, "num_envs": 8, "num_steps": 8, "total_timesteps": 8 * 8 * 4,
                          "num_evals": 2, **overrides})
    with pytest.raises(jmarl.ConfigError, match=message) as err:
        make_train(config, env)
    assert "\n" not in str(err.value)
