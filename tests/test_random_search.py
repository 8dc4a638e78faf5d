"""Random search (`jmarl sweep --samples N lr=log:LOW:HIGH`): draws inside their ranges, log draws spread over
the decades, crossed with a grid, the same draws for the same --seed, and every draw trained in one program."""
import json

import numpy as np

import algos.ppo as ppo
from jmarl.tools.cli import _sweep_axes, main

TINY = ["num_envs=8", "num_steps=4", f"total_timesteps={8 * 4 * 2}", "num_minibatches=2", "num_evals=2",
        "eval_episodes=4"]


def axes(overrides: dict, samples: int, seed: int = 0):
    return _sweep_axes(ppo, overrides, samples, seed, "ippo", "probe_matrix")


def test_draws_lie_in_their_ranges_cross_the_grid_and_repeat_for_a_seed():
    fixed, points, statics = axes({"lr": "log:1e-5:1e-1", "ent_coef": "uniform:0:0.05", "gamma": "0.9,0.99",
                                   "num_envs": "8"}, samples=200)
    assert fixed == {"num_envs": "8"} and statics == [{}]
    assert len(points) == 2 * 200
    assert [p["gamma"] for p in points] == ["0.9"] * 200 + ["0.99"] * 200
    assert points[:200] == [{**p, "gamma": "0.9"} for p in points[200:]]  # each grid value gets the same draws
    lr = np.array([p["lr"] for p in points[:200]])
    ent = np.array([p["ent_coef"] for p in points[:200]])
    assert lr.min() >= 1e-5 and lr.max() <= 1e-1 and 0 <= ent.min() and ent.max() <= 0.05
    # Log-uniform: each of the four decades holds about a quarter of the draws (a uniform draw would put about
    # 90% of them in the top decade).
    decades = np.histogram(np.log10(lr), bins=[-5, -4, -3, -2, -1])[0]
    assert decades.min() >= 25, decades
    assert axes({"lr": "log:1e-5:1e-1"}, samples=5, seed=3)[1] == axes({"lr": "log:1e-5:1e-1"}, samples=5, seed=3)[1]
    assert axes({"lr": "log:1e-5:1e-1"}, samples=5, seed=3)[1] != axes({"lr": "log:1e-5:1e-1"}, samples=5, seed=4)[1]


def test_a_random_search_trains_every_draw_in_one_program(tmp_path):
    out = tmp_path / "search"
    assert main(["sweep", "ippo", "--env", "probe_matrix", "--seeds", "2", "--samples", "3", "--seed", "7",
                 "--out", str(out), "--quiet", "--wandb", "disabled", "lr=log:1e-4:1e-2", *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    lrs = [m["lr"] for m in config["member_hparams"]]
    expected = [p["lr"] for p in axes({"lr": "log:1e-4:1e-2"}, samples=3, seed=7)[1]]
    assert config["config_ids"] == [0, 0, 1, 1, 2, 2] and lrs == [x for x in expected for _ in range(2)]
    results = json.loads((out / "results.json").read_text())
    assert [c["hparams"]["lr"] for c in results["configs"]] == expected
    assert not list(out.glob("static_*"))  # one run directory, one program: no per-draw runs
