"""Run management: kill-and-resume is bitwise exact, damaged checkpoints are reported and skipped,
the run directory holds config, metrics, checkpoints, results and a curve; aggregation statistics."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jmarl
from jmarl.train import checkpoint
from jmarl.train.algorithms import resolve
from jmarl.tools.cli import main as cli_main
from jmarl.train.run import Population, add_segment, machine, train
from jmarl.train.stats import aggregate, iqm, stratified_bootstrap_ci

SMALL = dict(num_envs=8, num_steps=4, total_timesteps=8 * 4 * 2 * 4, num_minibatches=2, num_evals=4, eval_episodes=8)


def _run(run_dir, resume=False, on_chunk=None, seeds=(0, 1)):
    resolved = resolve("ippo", "probe_two_step", SMALL)
    pop = Population.grid([resolved.hparams, resolved.hparams.replace(lr=1e-3)], list(seeds))
    return train(resolved, pop, run_dir, resume=resume, quiet=True, wandb="disabled", on_chunk=on_chunk,
                 keep_checkpoints=10, final_eval_factor=2)


def _final_state(run_dir):
    path, meta = checkpoint.latest_intact(Path(run_dir) / "checkpoints")
    return meta["chunk"], path


def _leaves(run_dir):
    chunk, path = _final_state(run_dir)
    from orbax.checkpoint import StandardCheckpointer
    return chunk, jax.tree.leaves(StandardCheckpointer().restore(path.absolute()))


KILLED = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_run import _run
    def die(chunk, rows):
        if chunk == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a machine failure
    _run({run_dir!r}, on_chunk=die)
""")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    return run_dir, _run(run_dir)


def test_run_directory_contents(uninterrupted):
    run_dir, results = uninterrupted
    for name in ("config.json", "metrics.jsonl", "results.json", "curve.png", "marl_eval.json"):
        assert (run_dir / name).stat().st_size > 0, name
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 4  # chunks x members, one row each
    assert {r["config_id"] for r in rows} == {0, 1} and {r["seed"] for r in rows} == {0, 1}
    assert sorted({r["env_steps"] for r in rows}) == [64, 128, 192, 256]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["num_envs"] == 8 and config["member_hparams"][2]["lr"] == pytest.approx(1e-3)
    assert len(results["configs"]) == 2 and results["final_episodes"] == 16
    assert results["resumed_at_chunk"] == 0 and results["earlier_train_seconds"] == 0
    (trained_on,) = results["machines"]  # one command on one machine: one segment of every chunk
    assert trained_on["machine"] == machine() and trained_on["chunks"] == [0, 4]
    assert 0 < trained_on["train_seconds"] <= results["train_seconds"]
    assert results["best"]["mean"] == max(c["mean"] for c in results["configs"])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"chunk_{i:06d}" for i in range(4)]
    marl = json.loads((run_dir / "marl_eval.json").read_text())
    runs = marl["probe_two_step"]["{}"]["ippo"]
    assert len(runs) == 4 and len(runs["run_0"]["absolute_metrics"]["return"]) == 16


def test_machine_segments_merge_only_on_a_known_same_machine():
    a = {"machine": "A", "chunks": [0, 2], "train_seconds": 5.0}
    assert add_segment([], a) == [a]
    assert add_segment([a], {"machine": "A", "chunks": [2, 3], "train_seconds": 1.0}) == [
        {"machine": "A", "chunks": [0, 3], "train_seconds": 6.0}]
    b = {"machine": "B", "chunks": [2, 3], "train_seconds": 1.0}
    assert add_segment([a], b) == [a, b]
    unknown = {"machine": None, "chunks": [0, 2], "train_seconds": None}
    later = {"machine": None, "chunks": [2, 3], "train_seconds": 1.0}
    assert add_segment([unknown], later) == [unknown, later]  # two unrecorded machines need not be one
    assert add_segment([dict(a, train_seconds=None)], dict(a, chunks=[2, 4]))[0]["train_seconds"] is None


def test_killed_run_resumes_bitwise(uninterrupted, tmp_path):
    full_dir, _ = uninterrupted
    run_dir = tmp_path / "killed"
    script = KILLED.format(tests=str(Path(__file__).parent), run_dir=str(run_dir))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _final_state(run_dir)[0] == 1  # chunks 0 and 1 were saved before the kill
    rows_before = (run_dir / "metrics.jsonl").read_text().splitlines()
    # As a checkpoint saved before runs kept their clock: the earlier time is unknown, and stays unknown.
    manifest = run_dir / "checkpoints" / "chunk_000001" / checkpoint.MANIFEST
    saved = json.loads(manifest.read_text())
    assert saved["meta"].pop("train_seconds") > 0
    # ... and before checkpoints named their machine: the chunks before it ran on a machine not recorded.
    assert saved["meta"].pop("machines")[0]["chunks"] == [0, 2]
    manifest.write_text(json.dumps(saved))
    resumed_results = _run(run_dir, resume=True)
    assert resumed_results["resumed_at_chunk"] == 2 and resumed_results["earlier_train_seconds"] is None
    assert checkpoint.latest_intact(run_dir / "checkpoints")[1]["train_seconds"] is None
    before, after = resumed_results["machines"]
    assert before == {"machine": None, "chunks": [0, 2], "train_seconds": None}
    assert after["machine"] == machine() and after["chunks"] == [2, 4] and after["train_seconds"] > 0
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert rows[:len(rows_before)] == rows_before and len(rows) == 16  # nothing lost, nothing repeated
    chunk_a, full = _leaves(full_dir)
    chunk_b, resumed = _leaves(run_dir)
    assert chunk_a == chunk_b == 3
    assert len(full) == len(resumed)
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)  # bitwise: params, optimiser, env states, keys, counters
    assert (full_dir / "metrics.jsonl").read_text() == (run_dir / "metrics.jsonl").read_text()


def test_damaged_checkpoint_is_reported_and_skipped(uninterrupted, tmp_path, capsys):
    import shutil
    root = tmp_path / "checkpoints"
    shutil.copytree(uninterrupted[0] / "checkpoints", root)
    newest = root / "chunk_000003"
    victim = max((p for p in newest.rglob("*") if p.is_file() and p.name != checkpoint.MANIFEST),
                 key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    path, meta = checkpoint.latest_intact(root)
    assert path.name == "chunk_000002" and meta["chunk"] == 2
    assert "chunk_000003 is damaged" in capsys.readouterr().err
    with pytest.raises(checkpoint.CheckpointError, match="chunk_000003"):
        checkpoint.restore(newest, None)
    # A checkpoint whose manifest was never written (killed while saving) is partial: skipped too.
    (root / "chunk_000002" / checkpoint.MANIFEST).unlink()
    path, _ = checkpoint.latest_intact(root)
    assert path.name == "chunk_000001"
    assert "chunk_000002 is partial" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(uninterrupted):
    run_dir, _ = uninterrupted
    resolved = resolve("ippo", "probe_two_step", {**SMALL, "lr": 0.5})
    with pytest.raises(jmarl.ConfigError, match="different"):
        train(resolved, Population.grid([resolved.hparams], [0]), run_dir, resume=True, quiet=True, wandb="disabled")


def test_resume_across_a_speed_only_setting(uninterrupted):
    """chunk_rows changes how fast a run computes, not what (PPOConfig.speed_only): the run resumes across it."""
    run_dir, _ = uninterrupted
    resolved = resolve("ippo", "probe_two_step", {**SMALL, "chunk_rows": 64})
    pop = Population.grid([resolved.hparams, resolved.hparams.replace(lr=1e-3)], [0, 1])
    done = train(resolved, pop, run_dir, resume=True, quiet=True, wandb="disabled")  # finished: nothing to train
    assert done == json.loads((run_dir / "results.json").read_text())
    assert json.loads((run_dir / "config.json").read_text())["config"]["chunk_rows"] is None  # left as it was


def test_load_returns_a_jittable_policy(uninterrupted):
    policy = jmarl.load(uninterrupted[0], member=2)
    env = jmarl.AutoReset(policy.env)
    ts, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 3))
    _, actions = jax.jit(policy.act)(jax.random.PRNGKey(1), ts, policy.init_hidden(3), np.ones(3, bool))
    assert actions["agents"].shape == (3, 2) and actions["agents"].dtype == np.int32
    with pytest.raises(ValueError, match="members 0..3"):
        jmarl.load(uninterrupted[0], member=7)


def test_cli_train_writes_run_and_prints_score(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "ippo", "--env", "probe_matrix", "--out", str(out), "--quiet", "--wandb", "offline"]
    assert cli_main(args + [f"{k}={v}" for k, v in SMALL.items()]) == 0
    printed = capsys.readouterr().out
    assert "final greedy return" in printed and str(out) in printed
    assert any((out / "wandb").rglob("*.wandb"))  # offline wandb run written inside the run directory
    assert cli_main(["train", "ippo", "--env", "probe_matrix", "num_envs=lots"]) == 2
    assert "not a valid int" in capsys.readouterr().err


def test_aggregate_statistics():
    x = np.arange(1.0, 9.0)  # 1..8: the middle half is 3..6
    assert iqm(x) == pytest.approx(4.5)
    agg = aggregate(x)
    assert agg["mean"] == pytest.approx(4.5) and agg["median"] == pytest.approx(4.5)
    assert agg["mean_lo"] < 4.5 < agg["mean_hi"]
    assert stratified_bootstrap_ci(np.full(5, 2.0), np.mean) == (2.0, 2.0)
    # Stratified: resampling happens within each task (column), so a constant task adds no width.
    two_tasks = np.stack([np.full(6, 10.0), np.linspace(0, 1, 6)], axis=1)
    lo, hi = stratified_bootstrap_ci(two_tasks[:, :1], np.mean)
    assert lo == hi == 10.0


MULTI_DEVICE = textwrap.dedent("""
    import json, sys
    import jax
    assert len(jax.devices()) == 4, jax.devices()
    from jmarl.tools.cli import main
    out = sys.argv[1]
    rc = main(["sweep", "ippo", "--env", "probe_two_step", "--seeds", "2", "--out", out, "--quiet", "--wandb",
               "disabled", "lr=1e-3,3e-3", "num_envs=8", "num_steps=4", "total_timesteps=256", "num_minibatches=2",
               "num_evals=4", "eval_episodes=8", "hidden_dim=16", "num_layers=1"])
    assert rc == 0
    rows = [json.loads(line) for line in open(out + "/metrics.jsonl")]
    print(json.dumps(sorted({r["chunk"] for r in rows})))
""")


def test_sweep_runs_every_chunk_on_four_devices(tmp_path):
    # The population axis is sharded over 4 (simulated) devices; chunk 2 onwards must reuse the compiled
    # program, which needs the runner placed as the program expects from the first chunk on.
    env = dict(os.environ, JAX_PLATFORMS="cpu",  # keeps conftest's flags
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE, str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0, 1, 2, 3]
