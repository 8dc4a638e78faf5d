"""Many hosts on one machine: two processes on 127.0.0.1 (one CPU device each, gloo collectives) train a sweep with
``jmarl sweep --coordinator ... --num-processes 2`` (process id from JMARL_PROCESS_ID), are killed after a checkpoint
and resumed with ``--resume``; the numbers are those of the same sweep in one process. The population (3 members)
does not divide the device count (2): it is padded to 4 and the copy dropped. A checkpoint saved with another
padding (another device count) restores; bad cluster settings fail with one line."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmarl.tools.cli import main
from jmarl.train import checkpoint
from jmarl.train.distributed import Cluster, population_layout

# 3 members (seeds) x 3 chunks of one PPO update each; chunk 0 is checkpointed before the kill.
SWEEP = ["sweep", "ippo", "--env", "probe_two_step", "--seeds", "3", "--wandb", "disabled", "num_envs=8",
         "num_steps=4", "total_timesteps=96", "num_minibatches=2", "num_evals=3", "eval_episodes=4", "hidden_dim=8"]

# One process of the cluster: the jmarl command, except that with STOP_AFTER_CHUNK=c it stops for good once the
# checkpoint of chunk c is saved (saying so in a file), so that the test kills it at a known point.
WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from jmarl.train import checkpoint

    stop = int(os.environ.get("STOP_AFTER_CHUNK", "-1"))
    save = checkpoint.save

    def save_then_stop(root, chunk, *args, **kwargs):
        path = save(root, chunk, *args, **kwargs)
        if chunk == stop:
            Path(os.environ["STOPPED_DIR"], os.environ["JMARL_PROCESS_ID"]).touch()
            time.sleep(600)
        return path

    checkpoint.save = save_then_stop
    from jmarl.tools.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(args: list[str], tmp: Path, stop_after: int = -1) -> list[subprocess.Popen]:
    """Two processes of one jmarl command (process id from JMARL_PROCESS_ID), stdout and stderr in files."""
    port = _free_port()
    procs = []
    for i in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", JMARL_PROCESS_ID=str(i), STOP_AFTER_CHUNK=str(stop_after),
                   STOPPED_DIR=str(tmp), JMARL_COMPILE_CACHE=str(tmp / "compile_cache"))
        # One CPU device per process: drop a simulated device count, keep the other flags (conftest's).
        env["XLA_FLAGS"] = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
        out = open(tmp / f"out{i}_{port}.txt", "w")
        err = open(tmp / f"err{i}_{port}.txt", "w")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, *args, "--coordinator", f"127.0.0.1:{port}",
                                       "--num-processes", "2"], env=env, stdout=out, stderr=err))
        procs[-1].files = (out.name, err.name)
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, Path(p.files[0]).read_text(), Path(p.files[1]).read_text()) for p in procs]


def _without_gloo(text: str) -> str:
    """stdout without the line gloo (the CPU collectives, in C++) prints when it connects."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("[Gloo]"))


def _rows(run_dir: Path) -> list[dict]:
    return sorted((json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line),
                  key=lambda r: (r["chunk"], r["member"]))


def _assert_same_numbers(run: Path, reference: Path) -> None:
    """Every metric of every member and chunk, and the final greedy returns: the same up to float rounding (the
    per-device batch differs: 2 members per device, 3 on one)."""
    rows, ref = _rows(run), _rows(reference)
    assert [(r["chunk"], r["member"], r["seed"]) for r in rows] == [(r["chunk"], r["member"], r["seed"]) for r in ref]
    for r, q in zip(rows, ref):
        keys = sorted(k for k in q if isinstance(q[k], float))
        assert keys and sorted(k for k in r if isinstance(r[k], float)) == keys
        np.testing.assert_allclose([r[k] for k in keys], [q[k] for k in keys], rtol=1e-4, atol=1e-6,
                                   err_msg=f"chunk {q['chunk']} member {q['member']}")
    got, want = (json.loads((d / "results.json").read_text()) for d in (run, reference))
    assert [c["returns"] for c in got["configs"]] == [c["returns"] for c in want["configs"]]
    assert [c["seeds"] for c in got["configs"]] == [[0, 1, 2]]


def test_two_processes_kill_resume_match_one_process(tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"
    # Two processes, stopped for good after the checkpoint of chunk 0 (both then wait), and killed.
    procs = _start_cluster([*SWEEP, "--out", str(run)], tmp_path, stop_after=0)
    try:
        # Meanwhile, the same sweep in this process (one device, no cluster): the reference numbers.
        assert main([*SWEEP, "--out", str(ref), "--quiet"]) == 0
        deadline = time.time() + 240
        while not all((tmp_path / str(i)).exists() for i in range(2)):
            assert all(p.poll() is None for p in procs), _finish(procs)
            assert time.time() < deadline, "the cluster never reached its checkpoint"
            time.sleep(0.2)
        for p in procs:
            p.send_signal(signal.SIGKILL)
    finally:
        outcome = _finish(procs)
    assert [rc for rc, _, _ in outcome] == [-signal.SIGKILL] * 2
    assert (run / "checkpoints" / "chunk_000000" / "jmarl_manifest.json").is_file()  # complete: every shard in
    assert not (run / "results.json").exists() and {r["chunk"] for r in _rows(run)} == {0}
    ckpt = json.loads((run / "checkpoints" / "chunk_000000" / "jmarl_manifest.json").read_text())["meta"]
    assert ckpt["padded_population"] == 4  # 3 members on 2 devices: one copy

    # Resumed by two processes (the killed run's lock is stale: taken over).
    outcome = _finish(_start_cluster(["sweep", "--resume", str(run), "--quiet", "--wandb", "disabled"], tmp_path))
    assert [rc for rc, _, _ in outcome] == [0, 0], [err[-2000:] for _, _, err in outcome]
    (out0, err0), (out1, _) = [(_without_gloo(o), e) for _, o, e in outcome]
    assert "final greedy return" in out0 and out1 == ""  # results are shown once, by process 0
    assert "taking over a stale lock" in err0
    results = json.loads((run / "results.json").read_text())
    assert results["processes"] == 2 and results["padded_population"] == 4 and results["resumed_at_chunk"] == 1
    assert len(results["devices"]) == 2
    _assert_same_numbers(run, ref)


@pytest.mark.parametrize("options, message", [
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "--coordinator 'localhost': give HOST:PORT"),
    (["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"], "give HOST:PORT"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"], "--process-id 2: must be 0 .. 1"),
    (["--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"], "--num-processes 0: must be at least 1"),
    (["--coordinator", "h:1234", "--num-processes", "two", "--process-id", "0"], "'two' is not a whole number"),
    (["--coordinator", "h:1234"], "(--num-processes, --process-id missing"),
    (["--process-id", "1"], "(--coordinator, --num-processes missing"),
])
def test_bad_cluster_settings_fail_with_one_line(options, message, capsys, tmp_path):
    assert main([*SWEEP, "--out", str(tmp_path / "never"), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jmarl: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "never").exists()


def test_unreachable_or_busy_coordinator_fails_with_one_line(capsys, tmp_path, monkeypatch):
    # Without these checks JAX aborts the process (a C++ fatal log) after its timeout.
    monkeypatch.setenv("JMARL_DISTRIBUTED_TIMEOUT", "1")
    port = _free_port()  # nothing listens there
    assert main([*SWEEP, "--out", str(tmp_path / "a"), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                 "--process-id", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"nothing answered at --coordinator 127.0.0.1:{port} within 1 s" in err and len(err.splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert main([*SWEEP, "--out", str(tmp_path / "b"), "--coordinator", f"127.0.0.1:{taken}", "--num-processes",
                     "2", "--process-id", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"process 0 cannot listen on port {taken}" in err and len(err.splitlines()) == 1


def test_no_cluster_to_detect_fails_with_one_line():
    # --auto-distributed where JAX finds no cluster (no SLURM, Open MPI or Cloud TPU here): in a fresh process,
    # since jax.distributed must start before any device.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI_", "TPU_"))}
    proc = subprocess.run([sys.executable, "-m", "jmarl.tools.cli", "train", "ippo", "--env", "probe_matrix",
                           "--auto-distributed"], env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "jmarl: error: could not join the cluster with JAX's auto-detection: coordinator_address should be defined; "
        "--auto-distributed works under SLURM, Open MPI and on Cloud TPU: elsewhere give --coordinator, "
        "--num-processes and --process-id"], proc.stderr


def test_cluster_settings_from_the_environment():
    env = {"JMARL_COORDINATOR": "10.0.0.1:1234", "JMARL_NUM_PROCESSES": "4", "JMARL_PROCESS_ID": "3"}
    assert Cluster.from_settings(environ=env) == Cluster("10.0.0.1:1234", 4, 3)
    assert Cluster.from_settings(process_id="1", environ=env).process_id == 1  # the option wins
    assert not Cluster.from_settings(environ={}).enabled
    assert Cluster.from_settings(environ={"JMARL_AUTO_DISTRIBUTED": "1"}).auto
    with pytest.raises(Exception, match="JMARL_PROCESS_ID='x': 'x' is not a whole number"):
        Cluster.from_settings(environ={"JMARL_PROCESS_ID": "x"})
    assert Cluster.from_settings(environ={"JMARL_DISTRIBUTED_TIMEOUT": "20"}).timeout_s == 20
    with pytest.raises(Exception, match="JMARL_DISTRIBUTED_TIMEOUT=0: give the seconds"):
        Cluster.from_settings(environ={"JMARL_DISTRIBUTED_TIMEOUT": "0"})


def test_checkpoint_of_another_device_count_restores(tmp_path):
    # Saved by 4 slots (3 members + 1 copy, as on 2 devices), restored where 3 members fill 3 slots (1 device):
    # the members in order, the weak type of a leaf kept (else the resumed program would differ).
    saved = {"w": jnp.arange(8.0).reshape(4, 2), "n": jax.lax.broadcast(jnp.asarray(7), (4,)) + jnp.arange(4)}
    path = checkpoint.save(tmp_path / "checkpoints", 0, saved, {"padded_population": 4})
    layout = population_layout(3)
    assert (layout.size, layout.padded, layout.slots.tolist()) == (3, 3, [0, 1, 2])
    like = {"w": layout.place(np.zeros((3, 2), np.float32)), "n": jax.lax.broadcast(jnp.asarray(0), (3,))}
    got = layout.repad(checkpoint.restore(path, layout.saved_like(like, 4)))
    np.testing.assert_array_equal(got["w"], np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(got["n"], [7, 8, 9])
    assert got["n"].weak_type and got["w"].sharding == layout.sharding


def test_population_layout_pads_to_every_device():
    devices = jax.devices()
    layout = population_layout(3, devices)
    assert layout.padded == -(-3 // len(devices)) * len(devices) and layout.padded % len(devices) == 0
    padded = layout.pad({"seed": np.array([10, 11, 12])})["seed"]
    assert padded[:3].tolist() == [10, 11, 12] and set(padded[3:]) <= {10, 11, 12}
    assert layout.members({"x": np.arange(layout.padded)})["x"].tolist() == [0, 1, 2]
    with pytest.raises(Exception, match="at least one member"):
        population_layout(0)
