"""Nothing silent (issue 23): each input that used to give a plausible wrong result or a raw traceback now fails
with one line that names what is wrong, before anything compiles. Fast: none of these trains (the run-directory
tests stub out the chunk loop), except the action checks, which jit a two-step rollout of the tiny env.
Divergence and kill/resume faults, which need training, are in test_faults.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.core.config import ConfigError, Interval
from jmarl.core.env import ActionError, action_checks
from jmarl.tools.cli import main as cli
from jmarl.train import run as run_module
from jmarl.train.algorithms import resolve
from jmarl.train.run import LOCK_FILE, Population, RunDirectory, RunDirectoryError, read_metrics, train
from tiny_env import Counter, actions

SMALL = ["num_envs=8", "num_steps=4", "total_timesteps=256", "num_minibatches=2", "num_evals=4", "eval_episodes=8"]


def jmarl_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the ``jmarl`` command in this process: (exit status, stdout, stderr)."""
    rc = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert err.count("jmarl: error: ") == 1 and "Traceback" not in err, err  # (skipped checkpoints are listed above)
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# --------------------------------------------------------------------------------------------------
# Sizes and hyperparameters: checked before anything compiles, the valid range in the message
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting, fragment", [
    ("num_envs=0", "num_envs=0 must be at least 1"),
    ("num_envs=-1", "num_envs=-1 must be at least 1"),
    ("num_steps=0", "num_steps=0 must be at least 1"),
    ("num_evals=0", "num_evals=0 must be at least 1"),
    ("num_minibatches=0", "num_minibatches=0 must be at least 1"),
    ("eval_episodes=0", "eval_episodes=0 must be at least 1"),
    ("hidden_dim=0", "hidden_dim=0 must be at least 1"),
    ("chunk_rows=-1", "chunk_rows=-1: rows per network pass must be >= 0"),
    ("total_timesteps=16", "valid: total_timesteps >= 32"),
    ("lr=nan", "lr=nan is out of range; valid: lr in (0, inf)"),
    ("lr=inf", "lr=inf is out of range"),
    ("lr=-1", "lr=-1 is out of range"),
    ("gamma=2", "gamma=2 is out of range; valid: gamma in (0, 1]"),
    ("clip_eps=-0.1", "valid: clip_eps in [0, inf)"),
    ("ent_coef=-0.01", "valid: ent_coef in [0, inf)"),
])
def test_ppo_sizes_and_hparams_out_of_range(setting, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "probe_matrix", "--out", out, "--quiet",
                           "--wandb", "disabled", *SMALL, setting)
    assert_one_line_error(rc, err, fragment)
    assert not out.exists()  # refused before the run directory was touched


def test_refused_run_prints_its_error_alone(tmp_path, capsys):
    """Without --quiet the run is announced ("N run(s) ... -> DIR") only once its settings have been checked: a
    refused one prints no announcement of a run that never starts (here one of -150 env steps)."""
    out = tmp_path / "run"
    rc, stdout, err = jmarl_cli(capsys, "train", "ippo", "--env", "probe_matrix", "--out", out, "--wandb",
                                "disabled", *SMALL, "num_envs=-3")
    assert_one_line_error(rc, err, "num_envs=-3 must be at least 1")
    assert stdout == "" and not out.exists(), stdout


@pytest.mark.parametrize("algo, env, setting, fragment", [
    ("qmix", "probe_matrix", "sample_batch_size=0", "sample_batch_size=0 must be at least 1"),
    ("qmix", "probe_matrix", "tau=0", "valid: tau in (0, 1]"),
    ("iql", "probe_matrix", "eps_finish=1.5", "valid: eps_finish in [0, 1]"),
    ("maddpg", "probe_continuous", "grad_steps=0", "grad_steps=0 must be at least 1"),
    ("maddpg", "probe_continuous", "critic_lr=0", "valid: critic_lr in (0, inf)"),
    ("grpo", "probe_matrix", "lr=-1", "valid: lr in (0, inf)"),  # GRPO's were unchecked
    ("grpo", "probe_matrix", "kl_coef=-0.1", "valid: kl_coef in [0, inf)"),
    ("grpo", "probe_matrix", "num_minibatches=0", "grpo: num_minibatches=0 must be at least 1"),
])
def test_other_algorithms_sizes_and_hparams(algo, env, setting, fragment, tmp_path, capsys):
    rc, _, err = jmarl_cli(capsys, "train", algo, "--env", env, "--out", tmp_path / "run", "--quiet", setting)
    assert_one_line_error(rc, err, fragment)


@pytest.mark.parametrize("option, fragment", [
    (["--seeds", "0"], "--seeds 0: must be at least 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every 0: must be at least 1"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints -1: must be at least 0"),
])
def test_cli_options_out_of_range(option, fragment, tmp_path, capsys):
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "probe_matrix", "--out", tmp_path / "r", *option, *SMALL)
    assert_one_line_error(rc, err, fragment)


@pytest.mark.parametrize("option, fragment", [(["--episodes", "0"], "--episodes 0: must be at least 1"),
                                              (["--fps", "0"], "--fps 0.0: must be a positive number"),
                                              (["--fps", "nan"], "--fps nan: must be a positive number")])
def test_render_options_out_of_range(option, fragment, tmp_path, capsys):
    """Checked before an episode is played (they used to fail with a ZeroDivisionError, --fps after drawing)."""
    rc, _, err = jmarl_cli(capsys, "render", "--env", "probe_matrix", "--out", tmp_path / "a.gif", *option)
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_out_that_is_a_file_is_refused(command, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    rc, _, err = jmarl_cli(capsys, command, "ippo", "--env", "probe_matrix", "--out", tmp_path / "afile", "--quiet",
                           *SMALL, *(["lr=1e-3,2e-3", "num_envs=8,16"] if command == "sweep" else []))
    assert_one_line_error(rc, err, f"{tmp_path / 'afile'} is a file, not a directory")
    assert (tmp_path / "afile").read_text() == "mine"


def test_python_api_checks_the_same(tmp_path):
    resolved = resolve("ippo", "probe_matrix", {"lr": -1.0})
    with pytest.raises(ConfigError, match=r"member 1, config 1\): lr=-1 is out of range"):
        train(resolved, Population.grid([resolved.hparams.replace(lr=1e-3), resolved.hparams], [0]), tmp_path / "r")
    ok = resolve("ippo", "probe_matrix")
    with pytest.raises(ConfigError, match="population is empty"):
        train(ok, Population.grid([ok.hparams], []), tmp_path / "r")
    with pytest.raises(ConfigError, match="checkpoint_every=0"):
        train(ok, Population.grid([ok.hparams], [0]), tmp_path / "r", checkpoint_every=0)
    assert not (tmp_path / "r").exists()


def test_intervals():
    assert 1.0 in Interval.parse("(0, 1]") and 0.0 not in Interval.parse("(0, 1]")
    assert float("nan") not in Interval.parse("(-inf, inf)") and float("inf") not in Interval.parse("(0, inf)")
    assert str(Interval.parse("[0, inf)")) == "[0, inf)"


# --------------------------------------------------------------------------------------------------
# Environment keys: the field at fault is named; typos get close matches
# --------------------------------------------------------------------------------------------------
def test_env_config_errors_name_the_field(tmp_path, capsys):
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "mpe_spread", "--out", tmp_path / "r", "env.num_agents=0")
    assert_one_line_error(rc, err, "environment 'mpe_spread': num_agents=0 is not valid")
    with pytest.raises(ConfigError, match=r"local_ratio=2\.0 is not valid"):
        jmarl.make("mpe_spread", num_agents=2, local_ratio=2.0)  # the valid num_agents=2 is not blamed
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "mpe_spread", "env.num_agnts=2")
    assert_one_line_error(rc, err, "unknown key 'num_agnts'. Did you mean ['num_agents'")
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "mpe_sprad")
    assert_one_line_error(rc, err, "Did you mean ['mpe_spread'")


@pytest.mark.parametrize("env, setting, fragment", [
    ("mpe_spread", "num_agents=0", "num_agents must be at least 1, got 0"),
    ("mpe_spread", "max_steps=0", "max_steps must be at least 1, got 0"),  # was accepted: every step truncated
    ("mpe_world_comm", "num_adversaries=1", "num_adversaries must be at least 2, got 1"),
    ("smax", "map_size=0", "map_size must be positive, got 0.0"),  # was accepted
    ("smax", "step_seconds=-1", "step_seconds must be positive, got -1.0"),  # was accepted
])
def test_env_config_errors_say_what_is_valid(env, setting, fragment, tmp_path, capsys):
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", env, "--out", tmp_path / "r", f"env.{setting}")
    assert_one_line_error(rc, err, f"environment {env!r}: {setting.split('=')[0]}=", fragment)
    assert "Config(" not in err and len(err.strip().splitlines()) == 1, err  # not the whole config dumped


def test_a_jaxmarl_setting_its_constructor_fails_on_is_named(tmp_path, capsys):
    """JaxMARL checks few of its settings: spread with num_agents=0 fails inside its step (a ZeroDivisionError
    that printed as an unexpected error); the failure is named with the settings that caused it."""
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "jaxmarl:MPE_simple_spread_v3", "--out",
                           tmp_path / "r", "env.num_agents=0")
    assert_one_line_error(rc, err, "environment 'jaxmarl:MPE_simple_spread_v3': num_agents=0 is not valid",
                          "JaxMARL's MPE_simple_spread_v3 does not build or step with the settings {'num_agents': 0}",
                          "ZeroDivisionError")
    assert "unexpected error" not in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command, setting", [("train", "lrr=1e-3"), ("sweep", "lrr=1e-3,2e-3")])
def test_unknown_key_is_one_line_with_where_every_key_is_listed(command, setting, capsys):
    rc, _, err = jmarl_cli(capsys, command, "ippo", "--env", "probe_matrix", setting)
    assert_one_line_error(rc, err, "unknown key 'lrr'. Did you mean ['lr']", "'num_envs'", "'gamma'",
                          "`jmarl config ippo --env probe_matrix`")
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, fragment", [
    (["train", "ippo", "--seeds", "x"], "jmarl train: error: argument --seeds: invalid int value: 'x'"),
    (["train", "ippo", "--wandb", "x"], "jmarl train: error: argument --wandb: invalid choice: 'x'"),
    (["train", "ippo", "--bogus"], "jmarl train: error: unrecognised arguments ['--bogus']"),
    (["frobnicate"], "jmarl: error: argument command: invalid choice: 'frobnicate'"),
    (["compare"], "jmarl compare: error: the following arguments are required: runs"),
    (["list", "a=b"], "jmarl list: error: unrecognised arguments ['a=b'] ("),  # was ignored silently
    (["rollout", "runs/x", "lr=1"], "jmarl rollout: error: unrecognised arguments ['lr=1'] ("),  # was ignored
])
def test_argument_errors_are_one_line_not_the_usage_block(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and fragment in err and "--help` lists the options" in err, err
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err, err
    rc, out, err = jmarl_cli(capsys, "config")  # handled before argparse: the same one line, no usage block
    assert_one_line_error(rc, err, "give an algorithm: jmarl config ALGO", "`jmarl config ippo --env mpe_spread`")
    assert out == "" and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------------------------------
# Sweep specs: the key named, typos suggested, --samples needs a range
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, fragment", [
    (["lrr=1e-3,2e-3"], "unknown key 'lrr'. Did you mean ['lr']"),
    (["lr=log:0:1e-2", "--samples", "4"], "lr=log:0:1e-2: a log: range needs 0 < LOW < HIGH"),
    (["lr=log:1e-2:1e-4", "--samples", "4"], "lr=log:1e-2:1e-4: a log: range needs finite LOW < HIGH"),
    (["lr=uniform:a:1", "--samples", "4"], "lr=uniform:a:1: LOW and HIGH"),
    (["lr=log:1e-4", "--samples", "4"], "lr=log:1e-4: a random range is log:LOW:HIGH"),
    (["lr=1e-3,2e-3", "--samples", "4"], "--samples 4 draws from random ranges, and none was given"),
    (["lr=log:1e-4:1e-2"], "random ranges for ['lr'] need --samples N"),
    (["lr=log:1e-4:1e-2", "--samples", "0"], "--samples 0: must be at least 1"),  # was "need --samples N"
    (["num_envs=8,-1"], "num_envs=-1"),  # a static sweep checks every combination before compiling
    (["num_envs=log:8:16", "--samples", "2"], "num_envs=log:8:16: a random range needs a traced hyperparameter"),
    (["lr=abc,1e-3"], "lr='abc' is not a valid float"),
    (["lr=1e-3,-1"], "lr=-1 is out of range"),
    (["lr=exp:1:2", "--samples", "2"], "lr=exp:1:2: not a value, a grid (lr=A,B) or a random range; random ranges "
                                       "are written log:LOW:HIGH or uniform:LOW:HIGH"),
    (["lr=log(0,1)"], "lr=log(0,1): not a value, a grid"),
    (["lr=1e-3,,3e-3"], "lr=1e-3,,3e-3: an empty entry in the grid"),  # it used to train 2 configs silently
    (["lr=,"], "lr=,: an empty entry in the grid"),
    (["num_envs=8,"], "num_envs=8,: an empty entry in the grid"),
])
def test_sweep_spec_errors(settings, fragment, tmp_path, capsys):
    rc, _, err = jmarl_cli(capsys, "sweep", "ippo", "--env", "probe_matrix", "--out", tmp_path / "s", "--quiet",
                           *settings)
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------------------------------
# Help that teaches
# --------------------------------------------------------------------------------------------------
def test_train_help_lists_every_key_with_type_default_and_preset(capsys):
    rc, out, _ = jmarl_cli(capsys, "train", "--help")  # without an algorithm: the options, and how to see keys
    assert rc == 0 and "--resume" in out and "jmarl train ippo --env mpe_spread --help" in out
    rc, out, _ = jmarl_cli(capsys, "train", "ippo", "--env", "mpe_spread", "--help")
    assert rc == 0 and "--checkpoint-every" in out  # the command's options, then the keys
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert lines["num_envs"][1:] == ["int", "64", "128"]  # type, default, the mpe_spread preset's value
    assert lines["activation"][-1] == "'relu'"  # ippo/mpe_spread's own preset
    assert lines["lr"][1:4] == ["float", "in", "(0,"]  # the valid range of a hyperparameter
    assert lines["env.num_agents"][1:3] == ["int", "3"]
    rc, out, _ = jmarl_cli(capsys, "config", "qmix", "--env", "smax", "lr=1e-3")
    assert rc == 0 and "mixer_embed_dim" in out and "env.scenario" in out and "given" in out


# --------------------------------------------------------------------------------------------------
# Run directories: refused when reused, conflicts listed, damaged files named, one writer
# --------------------------------------------------------------------------------------------------
RESULTS = {"configs": [], "best": {"config_id": 0, "mean": 1.0}, "final_episodes": 80, "compile_seconds": 0.0,
           "env_steps_per_second": 1.0}


@pytest.fixture
def stub_run(tmp_path, monkeypatch):
    """A run directory as ``jmarl train ippo --env probe_matrix`` leaves it after 4 chunks (config.json, metrics
    rows, checkpoint directories, results.json), made without training: the chunk loop is stubbed out."""
    calls = []

    def fake_chunks(directory, *args, **kwargs):
        calls.append(directory.path)
        return RESULTS

    monkeypatch.setattr(run_module, "_train_chunks", fake_chunks)
    run_dir = tmp_path / "run"
    assert cli(["train", "ippo", "--env", "probe_matrix", "--out", str(run_dir), "--quiet", *SMALL]) == 0
    assert (run_dir / "config.json").exists() and calls == [run_dir]
    rows = [{"chunk": c, "member": 0, "config_id": 0, "env_steps": 64 * (c + 1), "eval/return": 1.0} for c in range(4)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir, calls


def _finish(run_dir: Path) -> None:
    for c in range(4):
        (run_dir / "checkpoints" / f"chunk_{c:06d}").mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps({**RESULTS, "best": {"config_id": 0, "mean": 7.0}}))


def test_reusing_a_run_directory_without_resume_is_refused(stub_run, capsys):
    run_dir, calls = stub_run
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "probe_matrix", "--out", run_dir, "lr=1e-3", *SMALL)
    assert_one_line_error(rc, err, f"{run_dir} already holds a run", f"jmarl train --resume {run_dir}", "--out")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before and len(calls) == 1
    (run_dir.parent / "other").mkdir()
    (run_dir.parent / "other" / "notes.txt").write_text("mine")
    rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "probe_matrix", "--out", run_dir.parent / "other")
    assert_one_line_error(rc, err, "already holds files (notes.txt)")
    rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir.parent / "other")
    assert_one_line_error(rc, err, "is not a jmarl run directory")


@pytest.mark.parametrize("argv, fragments", [
    (["mappo", "--env", "smax"], ["algorithm: ippo in the run, mappo given", "--env: probe_matrix in the run, smax"]),
    (["--seeds", "4"], ["--seeds: 1 in the run, 4 given"]),
    (["--seed", "3"], ["--seed: 0 in the run, 3 given"]),
    (["lr=0.5"], ["KEY=VALUE lr=0.5"]),
])
def test_resume_refuses_what_contradicts_the_run(stub_run, capsys, argv, fragments):
    run_dir, calls = stub_run
    capsys.readouterr()
    rc, _, err = jmarl_cli(capsys, "train", *argv, "--resume", run_dir)
    assert_one_line_error(rc, err, "the run was started with different settings", *fragments)
    assert len(calls) == 1


def test_resume_refuses_a_python_population_that_differs(stub_run):
    run_dir, _ = stub_run
    resolved = resolve("ippo", "probe_matrix", dict(s.split("=") for s in SMALL))
    with pytest.raises(RunDirectoryError, match=r"seeds: \[0\] in the run, \[0, 1\] now"):
        train(resolved, Population.grid([resolved.hparams], [0, 1]), run_dir, resume=True)
    with pytest.raises(RunDirectoryError, match=r"config.num_envs: 8 in the run, 16 now"):
        other = resolve("ippo", "probe_matrix", {**dict(s.split("=") for s in SMALL), "num_envs": 16})
        train(other, Population.grid([other.hparams], [0]), run_dir, resume=True)


def test_a_run_older_than_a_setting_resumes_when_the_setting_keeps_its_default(stub_run, capsys):
    """A run started before jmarl gained a setting has no entry for it in config.json: resuming it at the
    setting's default is the same run; at another value it is not."""
    run_dir, calls = stub_run
    _finish(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    added = {k: saved["config"].pop(k) for k in ("objective", "schedule", "init_from")}
    assert added["schedule"] == "simultaneous"  # defaults: these runs trained as before the settings existed
    saved["config"].pop("num_envs")  # 8 in this run, 64 by default
    (run_dir / "config.json").write_text(json.dumps(saved))
    resolved = resolve("ippo", "probe_matrix", dict(s.split("=") for s in SMALL))  # num_envs=8: not the default
    with pytest.raises(RunDirectoryError, match=r"started with different settings: config.num_envs: '\(unset\)' "
                                                r"in the run, 8 now\. Resume"):  # nothing about the new settings
        train(resolved, Population.grid([resolved.hparams], [0]), run_dir, resume=True)
    capsys.readouterr()
    saved["config"]["num_envs"] = 8
    (run_dir / "config.json").write_text(json.dumps(saved))
    rc, out, err = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert rc == 0 and "is finished" in out and len(calls) == 1, err


def test_resuming_a_finished_run_changes_nothing(stub_run, capsys):
    run_dir, calls = stub_run
    _finish(run_dir)
    capsys.readouterr()
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    rc, out, _ = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert rc == 0 and "is finished (all 4 chunks trained" in out and "final greedy return: 7.00" in out
    assert "nothing to do" in out and len(calls) == 1  # not trained again
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # results.json untouched


def test_nothing_intact_to_resume_from_is_an_error(stub_run, capsys):
    run_dir, calls = stub_run
    for c in range(2):  # checkpoints whose manifests were never written (killed while saving)
        (run_dir / "checkpoints" / f"chunk_{c:06d}").mkdir(parents=True)
    metrics = (run_dir / "metrics.jsonl").read_text()
    capsys.readouterr()
    rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert_one_line_error(rc, err, "nothing intact to resume from: all 2 checkpoint(s) are damaged or partial")
    assert "skipping checkpoint" in err and "chunk_000001 is partial" in err  # each one reported
    assert (run_dir / "metrics.jsonl").read_text() == metrics and len(calls) == 1  # nothing erased, no restart
    for c in range(2):
        (run_dir / "checkpoints" / f"chunk_{c:06d}").rmdir()
    rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir)  # rows, but no checkpoint at all
    assert_one_line_error(rc, err, "nothing to resume from: metrics.jsonl has rows but no checkpoint was saved")


def test_damaged_run_files_are_named(stub_run, capsys):
    run_dir, _ = stub_run
    config = run_dir / "config.json"
    good = config.read_text()
    config.write_text("garbage")
    rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert_one_line_error(rc, err, f"{config} is damaged: not valid JSON")
    config.write_text("{}")
    rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert_one_line_error(rc, err, f"{config} is damaged or not a jmarl run config: missing keys ['algo', 'env'")
    config.write_text(json.dumps({**json.loads(good), "seeds": "0"}))
    rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert_one_line_error(rc, err, "wrong types: seeds (a str, not a list)")


def _row(chunk: int, member: int = 0) -> str:
    return json.dumps({"chunk": chunk, "member": member, "config_id": 0, "env_steps": 64 * (chunk + 1)})


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text(f'{_row(0)}\n{_row(1)}\n{{"chunk": 2, "mem')
    assert [r["chunk"] for r in read_metrics(path)] == [0, 1]
    assert "dropped the cut-off last line 3" in capsys.readouterr().err
    path.write_text(f'{_row(0)}\nnot json\n{_row(1)}\n')
    with pytest.raises(RunDirectoryError, match=r"metrics.jsonl is damaged: line 2 is not a metrics row"):
        read_metrics(path)


def test_metrics_rows_are_checked_and_gaps_before_the_resume_point_are_named(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"\xff\xfe" + _row(0).encode() + b"\n")
    with pytest.raises(RunDirectoryError, match=r"metrics.jsonl is damaged: not UTF-8 text"):
        read_metrics(path)
    path.write_text(_row(0) + "\n" + json.dumps({"chunk": 1, "config_id": 0, "env_steps": 128}) + "\n")
    with pytest.raises(RunDirectoryError, match=r"line 2 is not a metrics row \(no integer member\)"):
        read_metrics(path)
    # Chunk 1's rows lost, and chunk 3's second row cut off: the checkpoint of chunk 2 (resume at 3) covers
    # chunk 1, which is not recomputed; with the checkpoint of chunk 3, chunk 3 is a gap too.
    path.write_text("".join(_row(c, m) + "\n" for c in (0, 2) for m in (0, 1)) + _row(3) + "\n" + _row(3, 1)[:20])
    directory = RunDirectory(tmp_path)
    directory.check_metrics(3, members=2)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and f"{path} lacks rows of chunk(s) [1], which the checkpoint" in err, err
    directory.check_metrics(4, members=2)
    assert "lacks rows of chunk(s) [1, 3]" in capsys.readouterr().err
    directory.check_metrics(1, members=2)
    assert capsys.readouterr().err == ""


def test_damaged_member_lists_and_saved_settings_are_named(stub_run, capsys):
    """config.json values that parse but cannot be a run's: named as coming from the file, before anything
    compiles (each of these used to surface as a bare TypeError or a message about the command line)."""
    run_dir, calls = stub_run
    config = run_dir / "config.json"
    good = json.loads(config.read_text())
    for damaged, fragment in [({"seeds": ["x"]}, f'{config} is damaged: seeds must hold one int per member, not "x"'),
                              ({"config_ids": [True]}, "config_ids must hold one int per member, not true"),
                              ({"member_hparams": ["x"]}, 'member_hparams must hold one dict per member, not "x"'),
                              ({"config": {**good["config"], "num_envs": "eight"}},
                               f"--resume {run_dir}, its config.json: ippo: num_envs='eight' is not a valid int"),
                              ({"member_hparams": [{"lr": "abc"}]},
                               f"--resume {run_dir}, its config.json: member_hparams[0]: lr='abc' is not a valid")]:
        config.write_text(json.dumps({**good, **damaged}))
        rc, _, err = jmarl_cli(capsys, "train", "--resume", run_dir)
        assert_one_line_error(rc, err, fragment)
    assert len(calls) == 1


@pytest.mark.parametrize("text, fragment", [('{"configs": [{"config_id"', "is damaged: not valid JSON"),
                                            ("", "is damaged: not valid JSON"),
                                            ("[]", "is damaged or not a run's results")])
def test_a_damaged_results_file_is_named_and_left_alone(stub_run, capsys, text, fragment):
    """A finished run's results.json, damaged: `--resume` (which would report it as the run's result),
    `rollout` (which adds to it) and `compare` (which reads it) name it, before anything loads or compiles."""
    run_dir, calls = stub_run
    _finish(run_dir)
    results = run_dir / "results.json"
    results.write_text(text)
    capsys.readouterr()
    rc, out, err = jmarl_cli(capsys, "train", "--resume", run_dir)
    assert_one_line_error(rc, err, f"{results} {fragment}", "delete results.json and resume again")
    assert "nothing to do" not in out
    rc, _, err = jmarl_cli(capsys, "rollout", run_dir)  # checked before the (here missing) checkpoints are read
    assert_one_line_error(rc, err, f"{results} {fragment}")
    rc, _, err = jmarl_cli(capsys, "compare", run_dir)
    assert_one_line_error(rc, err, f"{results} {fragment}")
    assert results.read_text() == text and len(calls) == 1


def test_a_damaged_sweep_plan_is_named(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    plan = out / "static_sweep.json"
    plan.write_text('{"algo": "ippo", "env')
    rc, _, err = jmarl_cli(capsys, "sweep", "--resume", out)
    assert_one_line_error(rc, err, f"{plan} is damaged: not valid JSON")
    plan.write_text('{"algo": "ippo"}')
    rc, _, err = jmarl_cli(capsys, "sweep", "--resume", out)
    assert_one_line_error(rc, err, f"{plan} is damaged or not a sweep's plan: env, fixed, points, seeds, statics "
                                   f"missing or of the wrong type")


def test_a_damaged_results_store_is_named_and_never_appended_to(tmp_path):
    from jmarl.tools import reproduce

    store = tmp_path / "results.jsonl"
    store.write_text('{"run_dir": "a", "mean": 1.0}\n{"run_dir": "b", "me')  # a kill while appending
    with pytest.raises(ConfigError, match=r"results.jsonl is damaged: line 2 is not a results row .*delete the "
                                          r"cut-off line"):
        reproduce.read_rows(store)
    before = store.read_bytes()
    with pytest.raises(ConfigError, match=r"its last line is cut off \(no newline\), so the row of c was not"):
        reproduce.append_row(store, {"run_dir": "c"})
    assert store.read_bytes() == before  # not glued onto the cut-off line
    with pytest.raises(ConfigError, match=r"results.jsonl is damaged"):  # refused before anything trains
        reproduce.reproduce("smoke", out=tmp_path / "out", results_file=store, quiet=True)
    assert not (tmp_path / "out").exists()
    store.write_text('{"run_dir": "a"}\n')
    reproduce.append_row(store, {"run_dir": "c"})
    assert [r["run_dir"] for r in reproduce.read_rows(store)] == ["a", "c"]


def test_saving_over_later_checkpoints_says_so(tmp_path, capsys):
    """After a resume from an earlier checkpoint, the later (damaged, skipped) ones are replaced: said, not
    done silently."""
    from jmarl.train import checkpoint

    (tmp_path / "chunk_000005").mkdir()
    checkpoint.save(tmp_path, 2, {"a": jnp.zeros(2)}, {}, keep=0)
    assert "deleting checkpoint(s) chunk_000005 of later chunks" in capsys.readouterr().err
    assert [c for c, _ in checkpoint.chunk_dirs(tmp_path)] == [2]
    # A checkpoint named that is not there is said to be missing (not "partial"), beside the ones there are.
    with pytest.raises(checkpoint.CheckpointError, match=r"chunk_000099: no such directory; .* holds \['chunk_000002'\]"):
        checkpoint.verify(tmp_path / "chunk_000099")


def test_render_of_a_missing_or_foreign_directory(tmp_path, capsys):
    rc, _, err = jmarl_cli(capsys, "render", tmp_path / "nowhere")
    assert_one_line_error(rc, err, "nowhere: no such run directory")
    rc, _, err = jmarl_cli(capsys, "render", tmp_path)
    assert_one_line_error(rc, err, "is not a jmarl run directory: it has no config.json")


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"pid {os.getpid()} on testhost, since now".encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_one_writer_per_directory_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir / LOCK_FILE)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = jmarl_cli(capsys, "train", "ippo", "--env", "probe_matrix", "--out", run_dir, *SMALL)
        assert_one_line_error(rc, err, f"{run_dir} is in use by another jmarl process (pid {holder.pid} on testhost")
        with pytest.raises(RunDirectoryError, match="in use"):
            RunDirectory(run_dir).lock()
    finally:
        holder.kill()  # as kill -9: the lock file stays, with the dead owner's pid; the kernel drops the flock
        holder.wait()
    assert (run_dir / LOCK_FILE).exists()
    with RunDirectory(run_dir) as directory:
        directory.lock()
        assert f"taking over a stale lock (pid {holder.pid} on testhost" in capsys.readouterr().err
        assert (run_dir / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")
    assert not (run_dir / LOCK_FILE).exists()  # released on the way out


def test_wandb_mode_disabled_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing wandb would fail: it must not be reached
    assert run_module._wandb_run("offline", tmp_path, resolve("ippo", "probe_matrix"), Population([], [], [])) is None


# --------------------------------------------------------------------------------------------------
# Actions outside the space: raise in checks mode, with env, team, agent and value
# --------------------------------------------------------------------------------------------------
def _two_steps(env):
    """A jitted reset and two steps of ``env`` with the given actions: (first, second) -> obs."""
    def run(first, second):
        key = jax.random.PRNGKey(0)
        ts, state = env.reset(key)
        ts, state = env.step(key, state, first)
        ts, state = env.step(key, state, second)
        return ts.obs
    return jax.jit(run)


@pytest.fixture(scope="module")
def checked_steps():
    """Traced (once) with action checks on: the checks are part of the compiled program."""
    with action_checks():
        steps = _two_steps(jmarl.AutoReset(jmarl.EpisodeStats(Counter())))
        jax.block_until_ready(steps(actions([0, 1]), actions([0, 1])))  # valid actions pass
    return steps


@pytest.mark.parametrize("bad", [3, 7, -1, 1000])
def test_out_of_range_discrete_actions_raise_in_checks_mode(checked_steps, bad):
    with pytest.raises(Exception, match=rf"jmarl action check: test_counter: team 'runners' got actions outside "
                                        rf"Discrete\(n=3\): agent 1: {bad}; valid: integers in \[0, 3\)"):
        jax.block_until_ready(checked_steps(actions([0, 1]), actions([0, bad])))


def test_non_finite_continuous_actions_raise_in_checks_mode(checked_steps):
    jax.block_until_ready(checked_steps(actions([0, 0], (5.0, -5.0)), actions([0, 0])))  # finite: the env clips
    with pytest.raises(Exception, match=r"team 'pilot' got actions outside Box.*agent 0: \[nan, 0.0\]"):
        jax.block_until_ready(checked_steps(actions([0, 0]), actions([0, 0], (float("nan"), 0.0))))


def test_without_checks_out_of_range_actions_are_not_checked():
    # The documented default (docs/env_api.md): no host callback per step, so no error; the env decides.
    obs = _two_steps(Counter())(actions([0, 1]), actions([0, 7]))
    assert np.isfinite(np.asarray(obs["runners"])).all()


def test_cli_check_actions_flag_turns_checks_on(monkeypatch, capsys):
    import jmarl.core.env as env_module

    seen = []
    monkeypatch.setattr(env_module, "_ACTION_CHECKS", False)
    monkeypatch.setattr("jmarl.tools.cli._run", lambda args, sweep: seen.append(env_module._ACTION_CHECKS) or 0)
    assert cli(["train", "ippo", "--env", "probe_matrix", "--check-actions"]) == 0 and seen == [True]
