"""Scaling from one process to two (``jax.distributed`` on 127.0.0.1, one CPU device each): the same sweep, P members
in one program, trained by

- one process with one device (the baseline),
- two processes with one device each (``jmarl.train.distributed.initialize`` with a coordinator on 127.0.0.1),
- one process with two simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), for
  comparison: the same split of the population without a second process.

Each is a fresh set of processes running ``jmarl.train.run.train`` (what ``jmarl sweep`` runs). Timed per process
between the end of the first chunk and the end of the last (compile and the first chunk excluded; checkpoints,
gathers and logging between chunks included): wall-clock and CPU seconds (``time.process_time``, every thread).

- env steps/s: every member's steps over the wall-clock; scaling efficiency = steps/s / (devices x steps/s of 1).
- env steps per CPU-second: every member's steps over the CPU seconds of all processes; on a machine shared with
  other jobs this is what to read: the scheduler's share of the cores changes the wall-clock, not the work.

  python scripts/bench_distributed.py                 # print the table
  python scripts/bench_distributed.py --write         # and write it into docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

HEADING = "## Multi-process scaling (jax.distributed, one machine)"
DEFAULTS = ["num_envs=64", "num_steps=25", "total_timesteps=64000", "num_evals=4"]


def worker(args) -> None:
    """One process of a configuration: join the cluster (if any), train, write this process's timing."""
    from jmarl.train import distributed

    if args.processes > 1:
        distributed.initialize(distributed.Cluster(f"127.0.0.1:{args.port}", args.processes, args.process_id))
    from jmarl.tools.cli import _parse_overrides
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    resolved = resolve(args.algo, args.env, _parse_overrides(args.overrides))
    pop = Population.grid([resolved.hparams], list(range(args.members)))
    marks = []  # (wall, cpu) at the end of every chunk, on this process
    results = train(resolved, pop, args.out, quiet=True, wandb="disabled",
                    on_chunk=lambda chunk, rows: marks.append((time.perf_counter(), time.process_time())))
    cfg = resolved.config
    Path(args.out, f"timing_{args.process_id}.json").write_text(json.dumps({
        "wall": marks[-1][0] - marks[0][0], "cpu": marks[-1][1] - marks[0][1],
        "steps": (len(marks) - 1) * cfg.updates_per_chunk * cfg.batch_size * len(pop),
        "compile": results["compile_seconds"], "devices": len(results["devices"])}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args, out: Path, processes: int, devices_per_process: int = 1) -> dict:
    """One configuration: its processes started together; their timings combined (wall: the slowest)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JMARL_COMPILE_CACHE="0")
    env.pop("XLA_FLAGS", None)
    if devices_per_process > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
    port = _free_port()
    base = [sys.executable, __file__, "--worker", "--out", str(out), "--processes", str(processes), "--port",
            str(port), "--algo", args.algo, "--env", args.env, "--members", str(args.members), *args.overrides]
    procs = [subprocess.Popen(base + ["--process-id", str(i)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(processes)]
    errors = [p.communicate()[1] for p in procs]
    for p, err in zip(procs, errors):
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(base)} failed ({p.returncode}):\n{err[-3000:]}")
    timings = [json.loads((out / f"timing_{i}.json").read_text()) for i in range(processes)]
    wall = max(t["wall"] for t in timings)
    return {"devices": timings[0]["devices"], "steps_per_s": timings[0]["steps"] / wall,
            "steps_per_cpu_s": timings[0]["steps"] / sum(t["cpu"] for t in timings),
            "compile": max(t["compile"] for t in timings), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ippo")
    parser.add_argument("--env", default="mpe_spread")
    parser.add_argument("--members", type=int, default=4, help="population size (seeds), one program")
    parser.add_argument("overrides", nargs="*", default=DEFAULTS, help="KEY=VALUE settings of the sweep")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes, devices in [("1 process x 1 device", 1, 1), ("2 processes x 1 device", 2, 1),
                                          ("1 process x 2 simulated devices", 1, 2)]:
            r = measure(args, Path(tmp) / label.replace(" ", "_"), processes, devices)
            rows.append((label, r))
            load = max(load, os.getloadavg()[0])
            print(f"{label}: {r}", flush=True)
    one = rows[0][1]
    table = ["| layout | devices | env steps/s | efficiency (wall) | env steps per CPU-s | efficiency (CPU) | "
             "compile |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r in rows:
        table.append(f"| {label} | {r['devices']} | {r['steps_per_s']:,.0f} | "
                     f"{r['steps_per_s'] / (r['devices'] * one['steps_per_s']):.0%} | {r['steps_per_cpu_s']:,.0f} | "
                     f"{r['steps_per_cpu_s'] / one['steps_per_cpu_s']:.0%} | {r['compile']:.1f} s |")
    print("\n".join(table))
    if args.write:
        from benchlib import machine, write_section

        command = "python scripts/bench_distributed.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
        write_section(HEADING, f"""{HEADING}

The same sweep ({args.algo} on {args.env}, {args.members} members in one program, {' '.join(args.overrides)}) as
one process, as two processes joined by `jax.distributed` on 127.0.0.1 (one CPU device each, gloo collectives:
what `tests/test_distributed.py` runs through `jmarl sweep`), and as one process with two simulated CPU devices.
Timed from the end of the first chunk to the end of the last (compile excluded; checkpoints and the gathers
between chunks included). Env steps count every member. Efficiency (wall) = steps/s / (devices x steps/s of one
device); efficiency (CPU) = env steps per CPU-second (all processes, all threads) / that of one process.

- Machine: {machine()}; load average up to {load:.1f} during the runs (other jobs shared the two cores, so
  the wall-clock numbers depend on the scheduler's share; read the CPU columns)
- Date: {datetime.date.today().isoformat()}
- Command: `{command}`

{chr(10).join(table)}

On two cores one process already uses both (XLA's CPU threads), so this measures what splitting a run over
processes costs on one machine, not what a second host adds. No multi-GPU or multi-host machine was available to
measure.
""")
        print(f"written to {HEADING!r} in docs/benchmarks.md")


if __name__ == "__main__":
    main()
