"""Competitive play (#25): per-team results, a declared objective, the envs' competitive metrics, warm starts.

One tiny IPPO sweep on mpe_tag (two learning rates; the prey play uniformly at random, so one team's network
is compiled) is shared by the module; it is also the source of the warm starts. The rest are hand-made
rollouts and settings that must fail before anything compiles. Programs compile with XLA's optimisations off
(``jax_disable_most_optimizations``): these tests check bookkeeping, not speed."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
import jmarl.train.run as run_module
from jmarl.agents.rollout import objective_names, resolve_objective
from jmarl.algos import ppo
from jmarl.core.config import ConfigError
from jmarl.envs.mpe.tag import ADVERSARY_SIZE, PREY_SIZE
from jmarl.train.algorithms import resolve
from jmarl.train.load import warm_start_params
from jmarl.train.run import Population, format_results, initial_runner, population_sharding, summarise_configs, train

TINY = dict(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 2, num_minibatches=1, num_epochs=1, hidden_dim=8,
            num_layers=1, num_evals=2, eval_episodes=4, fixed_teams=("prey",), fixed_policy="random")
QUIET = dict(quiet=True, wandb="disabled", final_eval_factor=2)


def _resolve(env="mpe_tag", **over):
    return resolve("ippo", env, {**TINY, **over}, use_preset=False)


@pytest.fixture(scope="module", autouse=True)
def fast_compile():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two configurations, one seed each: (run directory, results)."""
    run_dir = tmp_path_factory.mktemp("competitive") / "sweep"
    resolved = _resolve()
    pop = Population.grid([resolved.hparams, resolved.hparams.replace(lr=1e-2)], [0])
    return run_dir, train(resolved, pop, run_dir, **QUIET)


def test_results_are_per_team_and_headed_by_the_objective(sweep):
    run_dir, results = sweep
    assert results == json.loads((run_dir / "results.json").read_text())
    assert results["objective"] == "return/adversaries" and results["higher_is_better"]  # mpe_tag's default
    assert json.loads((run_dir / "config.json").read_text())["objective"] == "return/adversaries"
    for c in results["configs"]:
        # Both teams, the fixed prey too; opposing teams are never summed.
        assert set(c["teams"]) == {"adversaries", "prey"} and "returns" not in c
        assert c["scores"] == c["teams"]["adversaries"]["values"] and c["mean"] == c["teams"]["adversaries"]["mean"]
        for team in c["teams"].values():
            assert team["mean_lo"] <= team["mean"] <= team["mean_hi"] and len(team["values"]) == 1
        # Every capture pays each of the 3 predators 10 (envs/mpe/tag.py): the metric and the return agree.
        captures = c["metrics"]["captures"]["values"][0]
        assert c["teams"]["adversaries"]["values"][0] == pytest.approx(30 * captures)
        assert 0 < c["metrics"]["time_to_first_capture"]["values"][0] <= 25
    means = [c["teams"]["adversaries"]["mean"] for c in results["configs"]]
    assert results["best"]["config_id"] == int(np.argmax(means))
    assert set(results["teams"]) == {"adversaries", "prey"}
    printed = format_results(results)
    assert "config 0: return/adversaries" in printed and "per team: return/adversaries" in printed
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * TINY["num_evals"]
    for row in rows:
        assert {"eval/return/adversaries", "eval/return/prey", "train/return/adversaries", "train/return/prey",
                "eval/metric/captures", "eval/metric/time_to_first_capture"} <= set(row)
        assert "eval/return" not in row and "train/return" not in row  # nor in the logs
        assert not any(k.startswith("eval/episode_") for k in row)  # per-episode values stay in results.json
    assert (run_dir / "curve.png").is_file() and (run_dir / "curve_teams.png").is_file()
    marl_eval = json.loads((run_dir / "marl_eval.json").read_text())
    finals = [run["absolute_metrics"]["return"] for run in marl_eval["mpe_tag"]["{}"]["ippo"].values()]
    assert [np.mean(f) for f in finals] == pytest.approx(means)  # the objective's episodes


def test_best_config_follows_the_objective_not_the_sum():
    """Config 0's predators catch more, config 1's prey lose less: the sum of both teams would pick config 1
    (-5 > -10), the predators' objective picks config 0, the prey's config 1, a '-' objective the lowest."""
    pop = Population.grid([ppo.PPOHparams(lr=1e-3), ppo.PPOHparams(lr=2e-3)], [0, 1])
    episodes = lambda *v: np.repeat(np.asarray(v, np.float32)[:, None], 3, axis=1)  # noqa: E731  f32[P, E]
    final = {"eval/episode_returns/adversaries": episodes(30, 30, 10, 10),
             "eval/episode_returns/prey": episodes(-40, -40, -15, -15),
             "eval/episode_metrics/captures": episodes(1, 1, 1 / 3, 1 / 3)}
    predators = summarise_configs(final, pop, "return/adversaries")
    assert predators["best"]["config_id"] == 0 and predators["best"]["mean"] == 30
    assert predators["configs"][1]["teams"]["prey"]["values"] == [-15.0, -15.0]
    assert summarise_configs(final, pop, "return/prey")["best"]["config_id"] == 1
    fewest = summarise_configs(final, pop, "-metric/captures")
    assert fewest["best"]["config_id"] == 1 and not fewest["higher_is_better"]
    # A diverged member has no score and its configuration is never best.
    gone = summarise_configs(final, pop, "return/adversaries", gone={1})
    assert gone["configs"][0]["scores"] == [30.0, None] and gone["best"]["config_id"] == 1


def test_tag_metrics_count_contacts_from_positions():
    """Predators chase, prey flee (the scripted policies); the episode metrics equal a count made from the
    positions: (prey, predator) pairs closer than their radii after each step, and the first such step."""
    env = jmarl.EpisodeStats(jmarl.make("mpe_tag"))
    base, E = env.unwrapped, 16

    def episode(key):
        _, state = env.reset(key)

        def step(state, _):
            acts = {t: base.heuristic_actions(key, state.env_state, t) for t in ("adversaries", "prey")}
            ts, state = env.step(key, state, acts)
            return state, (state.env_state.agent_pos, ts.info["episode_metrics"], ts.info["episode_return"])

        return jax.lax.scan(step, state, None, base.max_steps)[1]

    pos, metrics, returns = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(3), E))
    pos = np.asarray(pos, np.float64)  # [E, T, A, 2]: predators 0..2, the prey 3
    dist = np.linalg.norm(pos[:, :, 3:, None] - pos[:, :, None, :3], axis=-1)  # [E, T, 1, 3]
    touching = (dist < ADVERSARY_SIZE + PREY_SIZE).sum((2, 3))  # [E, T]
    first = np.where(touching.any(1), np.argmax(touching > 0, axis=1) + 1, base.max_steps)
    np.testing.assert_array_equal(metrics["captures"][:, -1], touching.sum(1))
    np.testing.assert_array_equal(metrics["time_to_first_capture"][:, -1], first)
    np.testing.assert_allclose(returns["adversaries"][:, -1, 0], 10 * touching.sum(1))  # as the reward counts
    assert 0 < (first < base.max_steps).sum() < E  # episodes with and without captures


def test_adversary_and_smax_metrics():
    """mpe_adversary: per-episode means of the distances to the goal; SMAX: one outcome per episode."""
    env = jmarl.EpisodeStats(jmarl.make("mpe_adversary"))
    base = env.unwrapped

    def episode(key):
        _, state = env.reset(key)

        def step(state, _):
            ts, state = env.step(key, state, {t: base.heuristic_actions(key, state.env_state, t) for t in base.teams})
            return state, (state.env_state, ts.info["episode_metrics"])

        return jax.lax.scan(step, state, None, base.max_steps)[1]

    states, metrics = jax.jit(episode)(jax.random.PRNGKey(0))
    goal = np.asarray(states.landmark_pos)[0, int(states.goal[0])]
    to_goal = np.linalg.norm(np.asarray(states.agent_pos) - goal, axis=-1)  # [T, A]: the adversary first
    np.testing.assert_allclose(metrics["adversary_to_goal"][-1], to_goal[:, 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["good_to_goal"][-1], to_goal[:, 1:].min(1).mean(), rtol=1e-5)

    smax = jmarl.make("smax", scenario="3m")
    _, state = smax.reset(jax.random.PRNGKey(0))
    n, every = smax.num_allies, jnp.ones(smax.num_units, bool)
    # Battles that ended: enemies dead, allies dead, both; the time limit; one still on (stacked states).
    alive = jnp.stack([every.at[n:].set(False), every.at[:n].set(False), ~every, every, every])
    states = jax.tree.map(lambda x: jnp.stack([x] * 5), state)
    states = states.replace(health=jnp.where(alive, states.health, 0.0),
                            step=jnp.asarray([1, 1, 1, smax.config.max_steps, 1]))
    info = jax.jit(jax.vmap(smax.observe))(states).info
    got = np.stack([info["metrics"][k] for k in ("allies_won", "enemies_won", "draw")], 1)
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(info["won"], got[:, 0])
    assert resolve_objective("", smax) == "win_rate"


def test_warm_start_starts_from_the_source_run(sweep, monkeypatch, tmp_path):
    """A run with ``init_from`` gets the source's member 0 as its predators' parameters, in every member
    of its population; its optimiser state starts fresh; its config records where it started from."""
    source, _ = sweep
    theirs = jmarl.load(source).params["adversaries"]
    resolved = _resolve(init_from=str(source), init_from_teams=("adversaries:adversaries",))
    # What `train` hands its chunk loop (stubbed: nothing compiles), and what its config.json records.
    handed = []
    monkeypatch.setattr(run_module, "_train_chunks", lambda *args: handed.append(args[-1]) or {"configs": []})
    train(resolved, Population.grid([resolved.hparams], [0, 1]), tmp_path / "warm", **QUIET)
    (warm,) = handed
    assert list(warm) == ["adversaries"]
    meta = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert meta["config"]["init_from"] == str(source)
    assert meta["config"]["init_from_teams"] == ["adversaries:adversaries"]
    # The population's first runner, as the chunk loop builds it.
    trainer = ppo.make_train(resolved.config, jmarl.make("mpe_tag"))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    hps = jax.tree.map(lambda x: jnp.full((2,), x, jnp.float32), resolved.hparams)
    runner = initial_runner(trainer, keys, hps, population_sharding(2), warm)
    for a, b in zip(jax.tree.leaves(theirs), jax.tree.leaves(runner.params["adversaries"]), strict=True):
        np.testing.assert_array_equal(b, np.broadcast_to(a, b.shape))
    assert all(not np.any(x) for x in jax.tree.leaves(runner.opt_state))  # Adam's moments and count: zero


@pytest.mark.parametrize("over, error", [
    (dict(hidden_dim=16), r"team 'adversaries' of that run does not fit team 'adversaries' here: leaf "
                          r"actor/params/Dense_0/kernel has shape \(8, 5\) there, \(16, 5\) here"),
    ({"env.num_obstacles": 3}, r"leaf actor/params/Torso_0/Dense_0/kernel has shape \(19, 8\) there, \(21, 8\) here"),
    (dict(init_from_teams=("predators",)), r"'predators' is not a learning team of this run; its learning teams "
                                           r"are \['adversaries'\] \(write SOURCE_TEAM:TEAM to map names\)"),
    (dict(fixed_teams=(), init_from_teams=("prey",)), r"team 'prey' did not learn in that run; its learning "
                                                      r"teams are \['adversaries'\]"),
    (dict(env="mpe_adversary", fixed_teams=()), "that run trained on mpe_tag, this one on mpe_adversary"),
    (dict(init_from="/no/such/run"), "init_from: /no/such/run: no such run directory"),
    (dict(objective="return/predators"), r"objective='return/predators' is not one mpe_tag reports; valid: "
                                         r"\['return/adversaries', 'return/prey', 'metric/captures', "
                                         r"'metric/time_to_first_capture'\]"),
    (dict(objective="return"), r"objective='return' is not one mpe_tag reports"),  # opposing teams: no sum
], ids=["hidden_dim", "obs_size", "unknown_team", "source_team_fixed", "other_env", "no_run", "unknown_objective",
        "sum_of_opponents"])
def test_bad_competitive_settings_fail_before_compiling(sweep, tmp_path, over, error):
    resolved = _resolve(**{"init_from": str(sweep[0]), **over})
    run_dir = tmp_path / "never"
    with pytest.raises(ConfigError, match=error) as raised:
        train(resolved, Population.grid([resolved.hparams], [0]), run_dir, **QUIET)
    assert "\n" not in str(raised.value) and not run_dir.exists()  # one line; nothing written


def test_objectives_each_env_offers():
    assert objective_names(jmarl.make("mpe_spread"))[:2] == ["return/agents", "return"]
    assert resolve_objective("", jmarl.make("mpe_spread")) == "return/agents"  # its headline, as before
    assert resolve_objective("", jmarl.make("mpe_adversary")) == "return/agents"
    assert resolve_objective("-metric/good_to_goal", jmarl.make("mpe_adversary")) == "-metric/good_to_goal"
    assert resolve_objective("", jmarl.make("mpe_speaker_listener")) == "return"  # one goal: the sum
    with pytest.raises(ConfigError, match="metric/captures"):
        resolve_objective("metric/capture", jmarl.make("mpe_tag"))


def test_training_return_sums_teams_only_where_they_share_a_goal():
    """``train/return`` (what every algorithm logs per update) adds the teams' returns for a cooperative
    multi-team env (speaker_listener: one reward) and never for opposing teams (tag)."""
    from jmarl.agents.rollout import episode_metrics

    stats = {"episode_done": jnp.array([[True, False]]), "episode_length": jnp.array([[25, 3]]),
             "episode_metrics": {},
             "episode_return": {"a": jnp.array([[[1.0, 2.0], [9.0, 9.0]]]), "b": jnp.array([[[4.0], [9.0]]])}}
    shared = episode_metrics(stats, jmarl.make("mpe_speaker_listener"))
    assert float(shared["train/return"]) == 7.0 and float(shared["train/return/b"]) == 4.0
    opposed = episode_metrics(stats, jmarl.make("mpe_tag"))
    assert "train/return" not in opposed and float(opposed["train/return/a"]) == 3.0
