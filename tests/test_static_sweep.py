"""Sweeps over static settings: one program per combination of the swept static keys, every member in one
summary, a cut-short sweep resumed without retraining what finished."""
import json
import shutil

from jmarl.tools.cli import main

TINY = ["num_envs=8", "num_steps=4", f"total_timesteps={8 * 4 * 2}", "num_minibatches=2", "num_evals=2",
        "eval_episodes=4"]


def test_static_keys_sweep_one_program_each_and_resume(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "ippo", "--env", "probe_matrix", "--seeds", "1", "--out", str(out), "--quiet", "--wandb",
            "disabled", "hidden_dim=8,16", "lr=1e-3,3e-3", *TINY]
    assert main(args) == 0
    summary = json.loads((out / "sweep_summary.json").read_text())
    members = summary["members"]
    assert [(m["static"]["hidden_dim"], m["hparams"]["lr"]) for m in members] == [
        ("8", 1e-3), ("8", 3e-3), ("16", 1e-3), ("16", 3e-3)]
    assert summary["best"]["mean"] == max(m["mean"] for m in members)
    for i, width in enumerate((8, 16)):  # each combination is its own run, at its own static value
        config = json.loads((out / f"static_{i}" / "config.json").read_text())
        assert config["config"]["hidden_dim"] == width
    assert "4 configuration(s) over 2 static combination(s)" in capsys.readouterr().out
    # Cut short: the second combination is lost; resuming trains it again and leaves the first alone.
    first = (out / "static_0" / "results.json").read_text()
    shutil.rmtree(out / "static_1")
    assert main(["sweep", "--resume", str(out), "--quiet", "--wandb", "disabled"]) == 0
    assert (out / "static_0" / "results.json").read_text() == first
    assert json.loads((out / "sweep_summary.json").read_text())["members"] == members
    # A new sweep into the same directory is refused.
    assert main(args) == 2 and "resume the sweep there" in capsys.readouterr().err
