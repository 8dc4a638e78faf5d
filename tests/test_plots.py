"""Curves against fixed references (jmarl/train/plots.py): which metrics.jsonl keys they plot, from rows as a run
writes them. A run's own curve_references.png is checked on the tiny runs of tests/test_notebooks.py (arms_race)."""
import imageio.v3 as iio

from jmarl.train.plots import reference_curves, reference_keys


def rows_of(keys: dict, seeds: int = 2) -> list[dict]:
    """metrics.jsonl rows of one configuration: two evaluations per seed with ``keys``' values."""
    return [{"config_id": 0, "member": m, "chunk": c, "env_steps": 100 * (c + 1), "eval/return/x": 0.0,
             **{k: v + m + c for k, v in keys.items()}} for m in range(seeds) for c in range(2)]


def test_reference_keys_and_curves(tmp_path):
    tag = rows_of({"eval/vs_random/return/adversaries": 1.0, "eval/vs_random/adversaries/return/prey": -1.0,
                   "eval/vs_random/adversaries/metric/captures": 0.5, "eval/vs_random/return/prey": -2.0,
                   "eval/vs_heuristic/return/adversaries": 3.0, "eval/vs_heuristic/return/prey": -4.0})
    # A side's own return against each reference; never the reference's return in that pairing.
    assert reference_keys(tag) == {
        "adversaries": {"random": "eval/vs_random/return/adversaries",
                        "heuristic": "eval/vs_heuristic/return/adversaries"},
        "prey": {"random": "eval/vs_random/return/prey", "heuristic": "eval/vs_heuristic/return/prey"}}
    # SMAX reports each side's wins as an episode metric: the curve is the side's own win rate, not win_rate
    # (which is the allies' whichever side is evaluated).
    smax = rows_of({f"eval/vs_{r}/return/{s}": 0.0 for r in ("random", "heuristic") for s in ("allies", "enemies")}
                   | {f"eval/vs_{r}/{s}/metric/{s}_won": 0.5 for r in ("random", "heuristic")
                      for s in ("allies", "enemies")}
                   | {f"eval/vs_{r}/{s}/win_rate": 0.5 for r in ("random", "heuristic") for s in ("allies", "enemies")})
    assert reference_keys(smax)["enemies"] == {"random": "eval/vs_random/enemies/metric/enemies_won",
                                               "heuristic": "eval/vs_heuristic/enemies/metric/enemies_won"}
    # Two runs on one figure (a panel per side); rows without references draw nothing.
    png = reference_curves([("pool", tag), ("simultaneous", tag)], tmp_path / "refs.png", title="t")
    assert iio.imread(png).shape[:2] == (400, 1200)
    assert reference_curves([("plain", rows_of({}))], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
