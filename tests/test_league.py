"""Competitive schedules and the league (jmarl/agents/league.py, algos/ppo.py ``schedule=``).

A tiny PPO program with two learning teams costs several seconds of compile time on a 2-core CPU (a tiny mpe_tag
one 15-20 s), so the trained tests share one pool run and one alternating run on the rock-paper-scissors duel of
``duel_env.py`` (two teams, a scripted policy, 4-round episodes). The pool run (prioritised draws, two seeds in one
vmapped program, a snapshot every 2 updates into 3 slots, the default references) shows the pool holds the
snapshots of the right updates, that a run cut after chunk 1 and resumed from its checkpoint is bitwise the
uninterrupted one (pools, win counts and draws included), that "latest" plays as simultaneous self-play and that
the references are reported; the alternating run shows the frozen side takes no step. The rest are hand-made
checks of the league's functions, the reference evaluation against a direct one, and the settings refused before
anything compiles (on mpe_tag and mpe_spread).
"""
from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.agents import league
from jmarl.agents.opponents import make_opponent
from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train
from jmarl.train import checkpoint
from jmarl.train.algorithms import resolve
from jmarl.train.run import Population
from duel_env import Duel

# 8 updates in 4 chunks of 2, one 4-round episode per rollout; 2 sides x 2 groups of 2 envs.
TINY = dict(num_envs=8, num_steps=4, total_timesteps=8 * 4 * 8, num_evals=4, eval_episodes=4, num_minibatches=2,
            num_epochs=1, hidden_dim=8, num_layers=1)
POOL = dict(TINY, schedule="pool", schedule_interval=2, pool_size=3, pool_groups=2, pool_sampling="prioritised")
SIDES = ("hunters", "runners")


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    """The pool run, chunk by chunk: runners[c] is the state after c chunks (2c updates); chunk 1's is saved as a
    checkpoint, as the run directory keeps it."""
    trainer = make_train(PPOConfig(**POOL), Duel())
    keys, hps = Population.grid([PPOHparams()], [0, 1]).stacked()
    runner = jax.jit(jax.vmap(trainer.init))(keys, hps)
    # Compiled ahead of time: the restored state of the resume test runs this very program (jax.jit would compile
    # again for arrays restored from a checkpoint, committed to a device).
    run_chunk = jax.jit(jax.vmap(trainer.run_chunk)).lower(runner, hps).compile()
    runners, metrics = [runner], []
    for _ in range(4):
        runner, m = run_chunk(runner, hps)
        runners.append(runner)
        metrics.append(m)
    root = tmp_path_factory.mktemp("pool") / "checkpoints"
    checkpoint.save(root, 1, runners[2], {"env_steps": int(metrics[1]["env_steps"][0])})
    return SimpleNamespace(trainer=trainer, run_chunk=run_chunk, hps=hps, runners=runners, metrics=metrics,
                           checkpoints=root)


# ----------------------------------------------------------------------------------------------------
# The pool run
# ----------------------------------------------------------------------------------------------------
def test_pool_keeps_the_snapshots_taken_at_the_right_updates(pool_run):
    # A snapshot at update 0, then every 2 updates, into 3 slots written in turn (a ring): after update 8 the slots
    # hold the snapshots of updates 6, 8 and 4.
    expected = {1: [0, 2, -1], 2: [0, 2, 4], 3: [6, 2, 4], 4: [6, 8, 4]}
    for side in SIDES:
        for chunk, stamps in expected.items():
            pool = pool_run.runners[chunk].league[side]
            np.testing.assert_array_equal(pool.stamp, [stamps, stamps])  # both members
            np.testing.assert_array_equal(pool.count, [chunk + 1] * 2)
        # Each kept snapshot is the side's actor as it was after that update, bitwise, in each member.
        final = pool_run.runners[4].league[side].params
        for slot, chunk in ((0, 3), (1, 4), (2, 2)):
            now = pool_run.runners[chunk].params[side]["actor"]
            for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(now)):
                np.testing.assert_array_equal(a[:, slot], b)
        assert not np.array_equal(jax.tree.leaves(final)[0][0], jax.tree.leaves(final)[0][1])  # two seeds, two runs
        # The groups played kept snapshots, and the prioritised draw's win counts are being kept.
        for chunk in range(1, 5):
            pool = pool_run.runners[chunk].league[side]
            for member in (0, 1):
                assert set(np.asarray(pool.playing[member])) <= set(np.asarray(pool_run.runners[chunk - 1].league[side]
                                                                              .stamp[member]))
        assert (np.asarray(pool_run.runners[4].league[side].played) > 0).any()


def test_cut_pool_run_resumes_bitwise(pool_run):
    """Cut after chunk 1: restored from its checkpoint, the run's chunks 2 and 3 are the uninterrupted run's."""
    runner = checkpoint.restore(pool_run.checkpoints / "chunk_000001", pool_run.runners[2])
    for chunk in (2, 3):
        runner, metrics = pool_run.run_chunk(runner, pool_run.hps)
        for a, b in zip(jax.tree.leaves((runner, metrics)), jax.tree.leaves((pool_run.runners[chunk + 1],
                                                                             pool_run.metrics[chunk]))):
            np.testing.assert_array_equal(a, b)  # params, optimiser, pools, win counts, draws, env states, keys
    assert jax.tree.structure(runner) == jax.tree.structure(pool_run.runners[4])


def test_pool_run_reports_the_league_and_the_references(pool_run):
    for m in pool_run.metrics:
        for side in SIDES:
            for key in (f"eval/vs_random/return/{side}", f"eval/vs_heuristic/return/{side}",
                        f"eval/return/{side}", f"league/{side}/return", f"league/{side}/beat_rate",
                        f"league/{side}/opponent_age"):
                assert np.isfinite(m[key]).all(), key
            assert ((m[f"league/{side}/pool_size"] >= 1) & (m[f"league/{side}/pool_size"] <= 3)).all()
            # Each of the 4 rounds is won by one team or drawn: the side's and the reference's wins and the draws
            # of one pairing's episodes add up to 4.
            other = SIDES[1 - SIDES.index(side)]
            for ref in ("random", "heuristic"):
                rounds = (m[f"eval/vs_{ref}/return/{side}"] + m[f"eval/vs_{ref}/{side}/return/{other}"]
                          + m[f"eval/vs_{ref}/{side}/metric/draws"])
                np.testing.assert_allclose(rounds, 4.0, rtol=1e-6)
        assert not any(k.startswith("eval/vs_") and k.endswith("/return") for k in m)  # never a sum over both teams


def test_latest_snapshot_plays_as_simultaneous_self_play(pool_run):
    """pool_sampling="latest": every env's opponents act with the newest snapshot. When it was taken at this update
    (here: the pool run's last, update 8) it is the learner's current parameters, and a pool rollout acts exactly as
    simultaneous self-play does: same key, same actions and log-probabilities in all 8 envs (each side then learns
    from its own half)."""
    self_play = make_train(PPOConfig(**TINY), Duel())
    runner = jax.tree.map(lambda x: x[0], pool_run.runners[4])  # member 0 after update 8
    key, ts, starts = jax.random.PRNGKey(3), runner.timestep, runner.starts

    def play(slots):
        snapshots = {t: league.gather(runner.league[t], slots[t]) for t in SIDES}
        return pool_run.trainer.policy(runner.params, runner.hidden, ts, starts, key, False, snapshots=snapshots)

    def all_three():
        latest = {t: league.draw(key, runner.league[t], 2, "latest") for t in SIDES}
        of_update_4 = {t: jnp.full(2, jnp.argmax(runner.league[t].stamp == 4)) for t in SIDES}
        stamps = {t: runner.league[t].stamp[latest[t]] for t in SIDES}
        return stamps, play(latest), play(of_update_4), self_play.policy(runner.params, runner.hidden, ts, starts,
                                                                          key, False)

    stamps, (_, actions, extras), (_, _, stale), (_, expected, expected_extras) = jax.jit(all_three)()
    assert all((np.asarray(stamps[t]) == 8).all() for t in SIDES)
    for t in SIDES:
        np.testing.assert_array_equal(actions[t], expected[t])
        np.testing.assert_allclose(extras[t][1], expected_extras[t][1], rtol=1e-5, atol=1e-6)
    # The snapshot of update 4 acts otherwise where it plays (the other side's half): the check can fail.
    for s, t in enumerate(SIDES):
        theirs = league.side_layout(8, 2, 2).opponent[s]
        assert not np.allclose(stale[t][1][theirs], expected_extras[t][1][theirs], atol=1e-4), t


def test_references_are_direct_evaluations_against_fixed_teams(pool_run):
    """eval/vs_heuristic/return/hunters is the hunters' return against the runners played by the scripted policy as
    a fixed team (jmarl.agents.opponents), as a run with fixed_teams=runners fixed_policy=heuristic evaluates it:
    greedy acting, the scripted policy and the duel are deterministic, so the two agree exactly."""
    env = Duel()
    trainer = pool_run.trainer
    vs_scripted = make_train(PPOConfig(**TINY, fixed_teams=("runners",), fixed_policy="heuristic"), env)
    params = jax.tree.map(lambda x: x[0], pool_run.runners[4].params)
    hidden = jax.tree.map(lambda x: x[0, :4], pool_run.runners[4].hidden)
    act = lambda p, h, ts, starts, k: trainer.policy(p, h, ts, starts, k, True)[:2]  # noqa: E731
    refs = {"heuristic": {t: make_opponent(env, t, "heuristic") for t in SIDES}}
    key = jax.random.PRNGKey(7)

    def both(params):
        ours = league.evaluate_vs_references(env, act, params, hidden, key, 4, refs)
        # Matchups in order: (hunters, heuristic), (runners, heuristic).
        direct = vs_scripted.evaluate({"hunters": params["hunters"]}, jax.random.split(key, 2)[0], 4)
        return ours, direct

    ours, direct = jax.jit(both)(params)
    for ours_key, direct_key in (("return/hunters", "return/hunters"), ("hunters/return/runners", "return/runners"),
                                 ("hunters/metric/draws", "metric/draws"), ("hunters/length", "length")):
        np.testing.assert_array_equal(ours[f"eval/vs_heuristic/{ours_key}"], direct[f"eval/{direct_key}"])
    assert float(direct["eval/return/runners"]) > 0  # the scripted runners won rounds: the check can fail
    assert set(ours) >= {"eval/vs_heuristic/return/hunters", "eval/vs_heuristic/return/runners"}


# ----------------------------------------------------------------------------------------------------
# Alternating
# ----------------------------------------------------------------------------------------------------
def test_alternating_freezes_the_side_that_is_not_learning(pool_run):
    # 2 updates a turn = one chunk: chunks 0 and 2 train the hunters, 1 and 3 the runners.
    trainer = make_train(PPOConfig(**TINY, schedule="alternating", schedule_interval=2, eval_opponents=()), Duel())
    hp = jax.tree.map(lambda x: x[0], pool_run.hps)
    # trainer.init's state is the pool run's initial state without its pools (the same function of the same key).
    runner = jax.tree.map(lambda x: x[0], pool_run.runners[0])._replace(league={})
    assert jax.tree.structure(runner) == jax.tree.structure(jax.eval_shape(trainer.init, jax.random.PRNGKey(0), hp))
    run_chunk = jax.jit(trainer.run_chunk)
    for chunk in range(4):
        learner, frozen = SIDES[chunk % 2], SIDES[1 - chunk % 2]
        before = runner
        runner, metrics = run_chunk(runner, hp)
        np.testing.assert_array_equal(metrics[f"league/{learner}/learning"], [1.0, 1.0])
        np.testing.assert_array_equal(metrics[f"league/{frozen}/learning"], [0.0, 0.0])
        for x, y in zip(jax.tree.leaves((before.params[frozen], before.opt_state[frozen])),
                        jax.tree.leaves((runner.params[frozen], runner.opt_state[frozen]))):
            np.testing.assert_array_equal(x, y)  # no gradient step, no optimiser-state change
        moved = [not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(before.params[learner]["actor"]),
                                                          jax.tree.leaves(runner.params[learner]["actor"]))]
        assert any(moved), learner


# ----------------------------------------------------------------------------------------------------
# The league's functions
# ----------------------------------------------------------------------------------------------------
def test_pool_ring_buffer_and_draws():
    def scenario(key):
        pool = league.init_pool({"w": jnp.zeros(2)}, size=3, num_groups=4)
        for update in (5, 10, 15):  # the 4th snapshot overwrites the oldest (update 0)
            pool = league.add_snapshot(pool, {"w": jnp.full(2, float(update))}, update)
        pool = league.add_snapshot(pool, {"w": jnp.ones(2)}, 20, add=False)  # not due: nothing changes
        young = league.add_snapshot(league.init_pool({"w": jnp.zeros(2)}, size=3, num_groups=1), {"w": jnp.ones(2)}, 5)
        # Groups 0 and 1 play slot 0 and beat the learner in 6 of 6 episodes, slot 1 in 0 of 4, slot 2 in 1 of 2.
        scored = league.record(pool._replace(slots=jnp.array([0, 0, 1, 2])), jnp.array([3.0, 3.0, 0.0, 1.0]),
                               jnp.array([3.0, 3.0, 4.0, 2.0]))
        return dict(pool=pool, latest=league.latest_slot(pool), drawn_latest=league.draw(key, pool, 4, "latest"),
                    gathered=league.gather(pool, jnp.array([1, 0])), uniform=league.draw(key, young, 20000, "uniform"),
                    scored=scored, prioritised=league.draw(key, scored, 40000, "prioritised"),
                    decayed=league.record(scored, jnp.zeros(4), jnp.zeros(4)),
                    fresh=league.add_snapshot(scored, {"w": jnp.ones(2)}, 25))  # overwrites slot 1

    key = jax.random.PRNGKey(0)
    out = jax.tree.map(np.asarray, jax.jit(scenario)(key))
    np.testing.assert_array_equal(out["pool"].stamp, [15, 5, 10])
    np.testing.assert_array_equal(out["pool"].params["w"][:, 0], [15, 5, 10])
    assert out["latest"] == 0
    np.testing.assert_array_equal(out["drawn_latest"], [0, 0, 0, 0])
    np.testing.assert_array_equal(out["gathered"]["w"][:, 0], [5, 15])
    # Uniform over the kept slots only; prioritised in proportion to the snapshots' beat rates.
    assert set(np.unique(out["uniform"])) == {0, 1} and abs((out["uniform"] == 0).mean() - 0.5) < 0.02
    rates = np.asarray(league.beat_rate(out["scored"]))
    np.testing.assert_allclose(rates, [7 / 8, 1 / 6, 2 / 4])
    drawn = out["prioritised"]
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / drawn.size, rates / rates.sum(), atol=0.01)
    # Counts decay with every record, and restart when a slot gets a new snapshot.
    np.testing.assert_allclose(out["decayed"].played, league.BEAT_RATE_DECAY * out["scored"].played)
    assert out["fresh"].played[1] == 0 and out["fresh"].played[0] == 6 and out["fresh"].stamp[1] == 25


def test_outcomes_credit_the_snapshot_each_group_played():
    # One side's slice of 4 envs over 3 steps: episodes end at steps 1 (envs 0, 1) and 2 (envs 2, 3).
    ret = jnp.array([[0.0, 0, 0, 0], [1.0, 5, 0, 0], [0.0, 0, 2, 8]])
    done = jnp.array([[False] * 4, [True, True, False, False], [False, False, True, True]])
    beaten, played = league.side_outcomes(ret, done)  # mean learner return 4: envs 0 and 2 lost to the snapshot
    np.testing.assert_array_equal(beaten, [1, 0, 1, 0])
    np.testing.assert_array_equal(played, [1, 1, 1, 1])
    layout = league.side_layout(8, 2, 2)  # side 0 learns in envs 0-3, side 1 in 4-7; groups of 2 envs
    np.testing.assert_array_equal(layout.opponent[0], [4, 5, 6, 7])
    other = (jnp.array([1.0, 1, 0, 1]), jnp.ones(4))
    # Side 1's snapshots play in side 0's slice: its groups (envs 0-1, 2-3) beat the learner once each.
    b, p = league.pool_outcomes(layout, 1, [beaten, other[0]], [played, other[1]])
    np.testing.assert_array_equal(b, [1, 1])
    np.testing.assert_array_equal(p, [2, 2])
    np.testing.assert_array_equal(league.alternating_learners(jnp.arange(6)[:, None], 2, 2),
                                  [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0]])


# ----------------------------------------------------------------------------------------------------
# Settings refused before anything compiles
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env, overrides, message", [
    ("mpe_spread", dict(schedule="pool"),
     r"schedule='pool' needs two or more learning teams, but mpe_spread has \['agents'\] learning .*valid here: "
     r"schedule='simultaneous'"),
    ("mpe_tag", dict(schedule="alternating", fixed_teams=("prey",)), r"needs two or more learning teams"),
    ("mpe_tag", dict(schedule="alternating", schedule_interval=5),
     r"schedule_interval=5 does not fit the run: 8 updates for 2 alternating sides; valid schedule_interval: 1..4"),
    ("mpe_tag", dict(schedule="pool", schedule_interval=9),
     r"a snapshot every 9 updates, but the run has 8; valid schedule_interval: 1..8"),
    ("mpe_tag", dict(schedule="pool", schedule_interval=4, pool_size=4),
     r"pool_size=4 does not fit the run: it takes only 3 snapshots .*valid pool_size: 1..3"),
    ("mpe_tag", dict(schedule="pool", schedule_interval=1, pool_groups=3),
     r"num_envs=8 does not split into 2 sides x pool_groups=3 groups; valid pool_groups: \[1, 2, 4\]"),
    ("mpe_tag", dict(schedule="pool", schedule_interval=1, num_minibatches=3),
     r"num_minibatches=3 does not divide a side's 4 envs x num_steps = 16"),
    ("mpe_tag", dict(fixed_teams=("prey",), eval_opponents=("random",)), r"eval_opponents=\['random'\] needs two"),
    ("mpe_tag", dict(eval_opponents=("bogus",)), r"policy 'bogus' for team '\w+' is not valid \(fixed_policy and eval_opponents"),
])
def test_bad_settings_are_refused_in_one_line(env, overrides, message):
    resolved = resolve("ippo", env, {**TINY, **overrides}, use_preset=False)
    with pytest.raises(jmarl.ConfigError, match=message) as error:
        make_train(resolved.config, jmarl.make(env))
    assert "\n" not in str(error.value)


def test_schedule_settings_parse_from_the_command_line():
    resolved = resolve("ippo", "mpe_tag", {"schedule": "pool", "pool_sampling": "uniform", "schedule_interval": "2",
                                           "eval_opponents": "random,heuristic"})
    assert (resolved.config.schedule, resolved.config.schedule_interval) == ("pool", 2)
    assert resolved.config.eval_opponents == ("random", "heuristic")
    with pytest.raises(jmarl.ConfigError, match=r"schedule='league' is not one of \['simultaneous', 'alternating', "
                                                 r"'pool'\]"):
        resolve("ippo", "mpe_tag", {"schedule": "league"})
