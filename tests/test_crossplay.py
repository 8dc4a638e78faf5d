"""Cross-play (jmarl/tools/crossplay.py), Bradley-Terry ratings (jmarl/tools/ratings.py) and the exploitability
proxy: a matrix of the right shape whose cells equal direct evaluations of each pairing on the same episode keys,
ratings checked by hand and on a synthetic game of known strengths, and bad input refused before compiling.

The runs are of ``drift_algo.py`` (a linear greedy policy whose weights take a random walk: the algorithm contract
at the least compile time) on ``duel_env.py`` (rock-paper-scissors between two teams); crossplay and exploit only
see the algorithm contract and the env API, so they work the same for PPO on mpe_tag (whose training alone compiles
for about 20 s, the budget of this whole file)."""
import json

import drift_algo
import duel_env
import jax
import numpy as np
import pytest

import jmarl
from jmarl.tools import crossplay as cp
from jmarl.tools.cli import main
from jmarl.tools.ratings import ELO, WinRule, bootstrap_ratings, fit_bradley_terry, ratings_from_matrix
from jmarl.train.algorithms import register_algorithm, resolve
from jmarl.train.run import Population, train

TINY = dict(num_envs=4, num_steps=4, total_timesteps=32, num_evals=1, eval_episodes=4)
EPISODES = 16
WIN = "hunters:return/hunters>1"  # the hunters win an episode of 4 rounds by winning 2 or more


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny run of the duel (both teams learn, two seeds = two members), and ``jmarl exploit`` of its runners:
    a best response (hunters only) trained against member 0's frozen runners."""
    register_algorithm("drift", drift_algo, overwrite=True)
    jmarl.register(duel_env.NAME, duel_env.Duel, overwrite=True)
    root = tmp_path_factory.mktemp("crossplay")
    run = root / "duel"
    resolved = resolve("drift", duel_env.NAME, TINY, use_preset=False)
    train(resolved, Population.grid([resolved.hparams], [0, 1]), run, quiet=True, wandb="disabled",
          final_eval_factor=1)
    report = cp.exploit(run, "runners", 64, root / "exploit", episodes=EPISODES)
    return run, report, root


@pytest.fixture(scope="module")
def matrix(runs):
    """``jmarl crossplay`` of both members and the two references."""
    run, report, root = runs
    out = root / "matrix"
    code = main(["crossplay", f"{run}#0", f"{run}#1", "random", "heuristic", "--episodes", str(EPISODES),
                 "--out", str(out), "--bootstrap", "200", "--win", WIN])
    assert code == 0
    saved = json.loads((out / "crossplay.json").read_text())
    with np.load(out / "crossplay_episodes.npz") as f:
        saved["episodes"] = {k.replace("__", "/"): f[k] for k in f.files}
    return saved, out


def direct(policy, params) -> dict:
    """Direct evaluation: the run's own ``trainer.evaluate``, one episode per crossplay key (vmapped over the keys;
    ``params`` may carry a leading members axis, vmapped too) -> {key: f32[..., E]}."""
    trainer = drift_algo.make_train(policy.resolved.config, policy.env)
    keys = cp.episode_keys(0, EPISODES)
    evaluate = jax.vmap(lambda p, k: trainer.evaluate(p, k, 1), (None, 0))
    if jax.tree.leaves(params)[0].ndim == 3:  # [members, O, A]
        evaluate = jax.vmap(evaluate, (0, None))
    return jax.tree.map(np.asarray, jax.jit(evaluate)(params, keys))


def test_matrix_shape_and_cells_equal_direct_evaluation(runs, matrix):
    run, report, _ = runs
    m, out = matrix
    assert m["rows"] == m["cols"] == ["duel#0", "duel#1", "random", "heuristic"]
    assert (m["row_team"], m["col_team"]) == duel_env.TEAMS
    assert len(m["programs"]) == 1  # both members stacked; the references are branches of the same program
    assert "return" not in m["mean"]  # opposing teams are never summed
    for key in ("return/hunters", "return/runners", "metric/draws"):
        assert np.shape(m["mean"][key]) == (4, 4) and m["episodes"][key].shape == (4, 4, EPISODES)
        np.testing.assert_allclose(m["mean"][key], m["episodes"][key].mean(-1), rtol=1e-6)
    adv, prey = m["episodes"]["return/hunters"], m["episodes"]["return/runners"]
    # Every round is won by one team or drawn; the scripted policy against itself draws every round.
    np.testing.assert_array_equal(adv + prey + m["episodes"]["metric/draws"], 4)
    assert prey[3, 3].sum() == adv[3, 3].sum() == 0

    # Members 0 and 1 against themselves: the run's own evaluation, both teams learning, each member's params.
    loaded = [jmarl.load(run, member=k) for k in (0, 1)]
    both = direct(loaded[0], jax.tree.map(lambda *x: np.stack(x), *[p.params for p in loaded]))
    for k in (0, 1):
        np.testing.assert_allclose(both["eval/return/hunters"][k], adv[k, k], rtol=1e-6)
        np.testing.assert_allclose(both["eval/return/runners"][k], prey[k, k], rtol=1e-6)
    assert np.any(adv[0, 0] != adv[1, 1]) or np.any(prey[0, 0] != prey[1, 1])  # not one policy twice

    # Heat map and ratings were written; every entry that plays a team is rated, CIs around the estimate.
    assert (out / "crossplay.png").stat().st_size > 0 and (out / "ratings.png").stat().st_size > 0
    ratings = json.loads((out / "ratings.json").read_text())
    assert ratings["rule"] == WIN == m["win_rule"]
    assert [p["label"] for p in ratings["rows"]["players"]] == m["rows"]
    assert [p["label"] for p in ratings["cols"]["players"]] == m["cols"]
    for p in ratings["rows"]["players"] + ratings["cols"]["players"]:
        assert p["lo"] <= p["rating"] + 1e-9 and p["rating"] <= p["hi"] + 1e-9
    np.testing.assert_allclose(ratings["row_win_rate"], (adv > 1).mean(-1))


def test_exploit_reports_both_numbers(runs, matrix):
    run, report, root = runs
    m, _ = matrix
    assert (report["team"], report["learner"], report["baseline"]) == ("runners", "hunters", str(run))
    # The best response acts for the hunters alone: a program of its own beside the run's.
    assert [p["rows"] for p in report["programs"]] == [["duel#0 (own)"], ["best response"]]
    # The best response's number is its direct evaluation: how its own training evaluates (fixed_policy=RUN,
    # member 0's runners), on the same episode keys.
    br = jmarl.load(report["best_response_run"])
    assert list(br.env.teams) == ["hunters"]
    br_direct = direct(br, br.params)["eval/return/hunters"]
    np.testing.assert_allclose(report["best_response"]["return/hunters"]["mean"], br_direct.mean(), rtol=1e-6)
    # The run's own hunters against its own runners: the matrix's cell (member 0, member 0), same episodes.
    own = m["episodes"]["return/hunters"][0, 0]
    np.testing.assert_allclose(report["own"]["return/hunters"]["mean"], own.mean(), rtol=1e-6)
    np.testing.assert_allclose(report["gain"]["mean"], br_direct.mean() - own.mean(), rtol=1e-6, atol=1e-6)
    for side in ("own", "best_response"):
        ci = report[side]["return/runners"]
        assert ci["lo"] <= ci["mean"] <= ci["hi"]
    assert json.loads((root / "exploit" / "exploit.json").read_text())["gain"] == report["gain"]


# ----------------------------------------------------------------------------------------------------
# Ratings
# ----------------------------------------------------------------------------------------------------
def test_bradley_terry_by_hand():
    # Row A won 3 of 4 against column C, row B 1 of 4: sigmoid(a - c) = 3/4, sigmoid(b - c) = 1/4, so
    # a - b = 2 log 3 (381.7 Elo points) and, centred without a prior, c = 0.
    rows, cols = fit_bradley_terry(np.array([[3.0], [1.0]]), np.array([[4.0], [4.0]]), prior=0)
    np.testing.assert_allclose(rows, [np.log(3), -np.log(3)], atol=1e-9)
    np.testing.assert_allclose(cols, [0.0], atol=1e-9)
    assert abs((rows[0] - rows[1]) * ELO - 400 * np.log10(9)) < 1e-6
    # A 2x2 game: at the estimate every player's expected wins equal its wins (the likelihood equations).
    wins, games = np.array([[7.0, 2.0], [5.0, 9.0]]), np.array([[10.0, 4.0], [10.0, 12.0]])
    rows, cols = fit_bradley_terry(wins, games, prior=0)
    p = 1 / (1 + np.exp(cols[None] - rows[:, None]))
    np.testing.assert_allclose((games * p).sum(1), wins.sum(1), atol=1e-8)
    np.testing.assert_allclose((games * (1 - p)).sum(0), (games - wins).sum(0), atol=1e-8)
    # A row that won everything: infinite without a prior, finite (and on top) with one.
    rows, cols = fit_bradley_terry(np.array([[4.0], [2.0]]), np.array([[4.0], [4.0]]), prior=1)
    assert np.all(np.isfinite(rows)) and rows[0] > rows[1] > cols[0] - 1


def test_ratings_recover_a_known_ordering():
    rng = np.random.default_rng(1)
    true_rows, true_cols = np.array([1.5, 0.5, -0.5, -1.5]), np.array([1.0, 0.0, -1.0])
    p = 1 / (1 + np.exp(true_cols[None] - true_rows[:, None]))
    outcomes = (rng.random((4, 3, 400)) < p[..., None]).astype(float)  # [I, J, E]
    fit = bootstrap_ratings(outcomes, prior=1.0, reps=300)
    rows, cols = fit["rows"], fit["cols"]
    assert np.all(np.diff(rows["rating"]) < 0) and np.all(np.diff(cols["rating"]) < 0)
    # Differences within a side, on the Elo scale, inside the bootstrap's spread of the truth.
    est = rows["rating"] - rows["rating"].mean()
    truth = ELO * (true_rows - true_rows.mean())
    assert np.all(np.abs(est - truth) < 3 * (rows["hi"] - rows["lo"]) / 4), (est, truth)
    assert np.all(rows["lo"] < rows["rating"]) and np.all(rows["rating"] < rows["hi"])
    np.testing.assert_allclose(fit["predicted"], fit["win_rate"], atol=0.1)

    # From a matrix dict, with the win defined on a per-episode quantity (tag: a capture).
    matrix = {"env": "mpe_tag", "row_team": "adversaries", "col_team": "prey", "rows": list("abcd"),
              "cols": list("xyz"), "episodes": {"return/adversaries": 30.0 * outcomes}}
    ratings = ratings_from_matrix(matrix, reps=50)
    assert ratings["rule"] == "adversaries:return/adversaries>0"
    np.testing.assert_allclose([q["rating"] for q in ratings["rows"]["players"]], rows["rating"], atol=1e-6)
    flipped = ratings_from_matrix(matrix, "prey:return/adversaries<1", reps=50)  # the same rule, from the prey
    np.testing.assert_allclose([q["rating"] for q in flipped["cols"]["players"]], cols["rating"], atol=1e-6)

    # An env that reports draws (SMAX): a draw is half a win for either side, whatever the rule says of it.
    won, draw = (outcomes > 0.5).astype(float), np.zeros_like(outcomes)
    draw[:, :, ::4] = 1.0
    won[:, :, ::4] = 0.0
    smax = {"env": "smax", "row_team": "allies", "col_team": "enemies", "rows": list("abcd"), "cols": list("xyz"),
            "episodes": {"win_rate": won, "metric/draw": draw}}
    halves = ratings_from_matrix(smax, reps=10)
    assert halves["rule"] == "allies:win_rate>0.5 (a draw: half a win)"
    np.testing.assert_allclose(halves["row_win_rate"], np.where(draw > 0.5, 0.5, won).mean(-1))
    without = ratings_from_matrix({**smax, "episodes": {"win_rate": won}}, reps=10)  # draws unknown: lost
    np.testing.assert_allclose(without["row_win_rate"], won.mean(-1))


# ----------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing compiled or trained
# ----------------------------------------------------------------------------------------------------
def test_bad_input_before_compiling(runs, tmp_path, capsys, monkeypatch):
    run = runs[0]

    def refuse(*a, **k):
        raise AssertionError("compiled or trained before refusing bad input")

    monkeypatch.setattr(cp, "play", refuse)
    monkeypatch.setattr("jmarl.train.run.train", refuse)
    other = tmp_path / "adversary_run"  # a run of another env: its config is all that is read
    other.mkdir()
    meta = json.loads((run / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**meta, "env": "mpe_adversary"}))
    cases = [
        (["crossplay", str(run), str(other)], "trained on mpe_adversary, not test_duel"),
        (["crossplay", str(run), "--env", "mpe_adversary"], "trained on test_duel, not mpe_adversary"),
        (["crossplay", "random", "heuristic", "--env", "mpe_spread"], "two teams; mpe_spread has 1: ['agents']"),
        (["crossplay", f"{run}#5"], "has members 0..1"),
        (["crossplay", str(tmp_path)], "neither a run directory"),
        (["exploit", str(run), "--team", "wolves", "--steps", "64"], "'wolves' is not a team of test_duel"),
        (["exploit", str(other), "--team", "runners", "--steps", "64"], "'runners' is not a team of mpe_adversary"),
        (["exploit", str(run), "--team", "runners", "--steps", "0"], "--steps 0: must be at least 1"),
        (["exploit", str(run), "--team", "runners", "--steps", "64", "--episodes", "0"], "--episodes 0: must be"),
        (["exploit", runs[1]["best_response_run"], "--team", "runners", "--steps", "64"],
         "team 'runners' did not learn in that run; its learning teams are ['hunters']"),
        (["crossplay", str(run), "--win", "wolves:return/runners>0"], "not a team of the game"),
        (["crossplay", str(run), "--win", "hunters:metric/nothing>0"], "no per-episode 'metric/nothing'"),
    ]
    for argv, message in cases:
        if "--win" in argv:  # the rule is checked on the traced program's keys, before it compiles
            monkeypatch.undo()
            monkeypatch.setattr("jmarl.train.run.train", refuse)
            monkeypatch.setattr(jax.stages.Lowered, "compile", refuse)
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("jmarl: error:") and message in err and len(err.splitlines()) == 1, (argv, err)
    with pytest.raises(jmarl.ConfigError, match="write TEAM:KEY>VALUE"):
        WinRule.parse("captures")
