"""Faults that need training (issue 23), on tiny probe runs: a run killed with SIGKILL, between chunks or while a
checkpoint is being written, resumes bitwise for Q-learning (replay buffer included) and MADDPG (PPO: test_run.py);
a run that goes non-finite stops with exit status 3 naming the member, its hyperparameters and the first
non-finite update, keeping its last finite checkpoint; a sweep marks diverged members and never picks them."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jmarl.tools.cli import main as cli
from jmarl.train import checkpoint
from jmarl.train.algorithms import resolve
from jmarl.train.run import Population, RunDirectoryError, train

# Tiny budgets: 4 chunks of 4 updates (Q-learning, MADDPG: one env step per update, learning from update 3).
RUNS = {
    # IQL, feed-forward: the replay buffer, target network and epsilon schedule at the least compile time.
    "iql": ("probe_matrix", dict(num_envs=8, num_steps=1, total_timesteps=128, num_evals=4, eval_episodes=4,
                                 buffer_size=128, sample_batch_size=8, learning_starts=16, hidden_dim=8,
                                 recurrent=False)),
    "maddpg": ("probe_continuous", dict(num_envs=8, num_steps=1, total_timesteps=128, num_evals=4, eval_episodes=4,
                                        buffer_size=256, sample_batch_size=16, grad_steps=1, learning_starts=16,
                                        hidden_dim=8)),
}
PPO_SMALL = ["num_envs=8", "num_steps=4", "total_timesteps=256", "num_minibatches=2", "num_evals=4", "eval_episodes=8"]


CACHE_SETTINGS = {"jax_compilation_cache_dir": None, "jax_persistent_cache_min_compile_time_secs": 0.0,
                  "jax_persistent_cache_min_entry_size_bytes": 0}


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory):
    """A persistent compilation cache for this module, shared with the killed subprocesses: the uninterrupted,
    killed and resumed runs of a test are the same XLA programs, compiled once (the runs still execute)."""
    from jax._src import compilation_cache

    settings = dict(CACHE_SETTINGS, jax_compilation_cache_dir=str(tmp_path_factory.mktemp("jax_cache")))
    previous = {k: getattr(jax.config, k) for k in settings}
    for k, v in settings.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()
    os.environ.update({k.upper(): str(v) for k, v in settings.items()})
    yield
    for k, v in previous.items():
        jax.config.update(k, v)
        os.environ.pop(k.upper(), None)
    compilation_cache.reset_cache()


def _train(algo: str, run_dir, resume: bool = False, on_chunk=None) -> dict:
    env, overrides = RUNS[algo]
    resolved = resolve(algo, env, overrides)
    return train(resolved, Population.grid([resolved.hparams], [0, 1]), run_dir, resume=resume, quiet=True,
                 wandb="disabled", keep_checkpoints=10, final_eval_factor=1, on_chunk=on_chunk)


KILLED = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from jmarl.train import checkpoint
    from test_faults import _train
    when = {when!r}
    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a machine failure
    if when == "while saving chunk 2":
        files = checkpoint._files
        # Orbax has written chunk 2's arrays, its manifest is not yet written: killed mid-save.
        checkpoint._files = lambda path: die() if path.name == "chunk_000002" else files(path)
        _train({algo!r}, {run_dir!r})
    else:
        _train({algo!r}, {run_dir!r}, on_chunk=lambda chunk, rows: die() if chunk == 1 else None)
""")


def _leaves(run_dir: Path):
    from orbax.checkpoint import StandardCheckpointer

    path, meta = checkpoint.latest_intact(Path(run_dir) / "checkpoints")
    return meta["chunk"], StandardCheckpointer().restore(path.absolute())


@pytest.mark.parametrize("algo, when", [("iql", "while saving chunk 2"), ("maddpg", "after chunk 1")])
def test_killed_run_resumes_bitwise(algo, when, tmp_path, capsys):
    full_dir, run_dir = tmp_path / "full", tmp_path / "killed"
    full = _train(algo, full_dir)
    script = KILLED.format(tests=str(Path(__file__).parent), when=when, algo=algo, run_dir=str(run_dir))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    chunks = [p.name for _, p in checkpoint.chunk_dirs(run_dir / "checkpoints")]
    if when == "while saving chunk 2":
        assert chunks == ["chunk_000000", "chunk_000001", "chunk_000002"]
        assert not (run_dir / "checkpoints" / "chunk_000002" / checkpoint.MANIFEST).exists()  # partial
        # What orbax leaves when killed inside its own save: a temporary directory, removed on resume.
        (run_dir / "checkpoints" / "chunk_000003.orbax-checkpoint-tmp-1").mkdir()
    else:
        assert chunks == ["chunk_000000", "chunk_000001"]
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"chunk": 2, "member": 0, "env_st')  # what a kill while writing a row leaves
    capsys.readouterr()
    resumed = _train(algo, run_dir, resume=True)
    err = capsys.readouterr().err
    assert "dropped the cut-off last line" in err
    if when == "while saving chunk 2":
        assert "chunk_000002 is partial" in err and "removed 1 unfinished checkpoint directory" in err
    assert resumed["resumed_at_chunk"] == 2
    chunk_a, a = _leaves(full_dir)
    chunk_b, b = _leaves(run_dir)
    assert chunk_a == chunk_b == 3
    assert "buffer" in a  # the replay buffer is part of the state that resumes bitwise
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)  # params, optimiser, targets, buffer, env states, keys, counters
    assert (full_dir / "metrics.jsonl").read_text() == (run_dir / "metrics.jsonl").read_text()
    assert resumed["configs"][0]["returns"] == full["configs"][0]["returns"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"chunk_{c:06d}" for c in range(4)]
    # Resuming the finished run says so and changes nothing.
    before = (run_dir / "results.json").read_bytes()
    assert _train(algo, run_dir, resume=True) == json.loads(before)
    assert (run_dir / "results.json").read_bytes() == before
    # A finished run whose results.json was damaged: named and left as it is; once deleted, a resume recomputes
    # the final evaluation from the last checkpoint, the same as before.
    (run_dir / "results.json").write_bytes(before[:100])
    with pytest.raises(RunDirectoryError, match=r"results.json is damaged: not valid JSON .*delete results.json "
                                                r"and resume again"):
        _train(algo, run_dir, resume=True)
    assert (run_dir / "results.json").read_bytes() == before[:100]
    (run_dir / "results.json").unlink()
    again = _train(algo, run_dir, resume=True)
    assert again["resumed_at_chunk"] == 4 and again["configs"] == json.loads(before)["configs"]


def test_divergence_stops_with_exit_3_and_keeps_the_last_finite_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    resolved = resolve("ippo", "probe_matrix", dict(s.split("=") for s in PPO_SMALL))

    def stop(chunk, rows):
        if chunk == 1:
            raise KeyboardInterrupt  # chunks 0 and 1 trained and checkpointed, finite

    with pytest.raises(KeyboardInterrupt):
        train(resolved, Population.grid([resolved.hparams], [0, 1]), run_dir, quiet=True, wandb="disabled",
              on_chunk=stop)
    # The run continues with a learning rate that sends everything to NaN from its next update (update 5 of 8).
    config = json.loads((run_dir / "config.json").read_text())
    config["hparams"]["lr"] = config["member_hparams"][0]["lr"] = config["member_hparams"][1]["lr"] = 1e30
    (run_dir / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    rc = cli(["train", "--resume", str(run_dir), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 3, err
    assert "jmarl: error: training diverged: 2 of 2 member(s) went non-finite" in err and "Traceback" not in err
    assert "member 1 (config 0, seed 1; lr=1e+30" in err and "from update 5 of 8 (chunk 2)" in err
    assert f"The last checkpoint, {run_dir / 'checkpoints' / 'chunk_000001'}, is from before" in err
    assert "final greedy return" not in out and not (run_dir / "results.json").exists()  # no headline
    assert [p.name for _, p in checkpoint.chunk_dirs(run_dir / "checkpoints")] == ["chunk_000000", "chunk_000001"]
    _, state = _leaves(run_dir)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["chunk"], r["nonfinite"]) for r in rows][:4] == [(0, 0), (0, 0), (1, 0), (1, 0)]
    assert rows[4]["chunk"] == 2 and rows[4]["nonfinite"] and rows[4]["nonfinite_update"] == 5


def test_a_sweep_marks_diverged_members_and_never_picks_them(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = cli(["sweep", "ippo", "--env", "probe_matrix", "--seeds", "1", "--out", str(out), "--quiet", "--wandb",
              "disabled", "lr=1e30,2.5e-3", *PPO_SMALL])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    diverged, healthy = results["configs"]
    assert diverged["diverged_members"] == [0] and diverged["mean"] is None and diverged["returns"] == [None]
    assert healthy["diverged_members"] == [] and math.isfinite(healthy["mean"])
    assert results["best"]["config_id"] == 1 and results["aggregate"]["runs"] == 1
    assert results["diverged"][0]["member"] == 0 and results["diverged"][0]["update"] == 1
    assert "config 0: no score, every seed diverged" in stdout and "went non-finite" in stdout
    assert "diverged and are excluded from best" in err
