"""Q-learning benchmarks: replay memory of the default configs (and the peak memory of a 16-seed sweep on
mpe_spread in one program), and learning on mpe_spread (greedy team return after a budget, seeds in one
program).

    python scripts/bench_qlearning.py memory --write
    python scripts/bench_qlearning.py learn --algos vdn qmix iql --seeds 4 --steps 10000000 --write

Team return = sum over agents of the episode return, 25-step episodes, greedy actions.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import jmarl
from jmarl.train.algorithms import resolve
from jmarl.algos.qlearning import replay_memory_bytes
from benchlib import learning_rows, learning_section, machine, write_section

MEMORY_ENVS = {"mpe_spread": {}, "smax (3m)": {"scenario": "3m"}, "smax (2s3z)": {"scenario": "2s3z"}}

# Run in a fresh process so that its peak resident memory is the sweep's alone.
_SWEEP_PROBE = """
import resource, sys, json
from jmarl.tools.cli import main
rc = main(["sweep", "vdn", "--env", "mpe_spread", "--seeds", sys.argv[1], "--out", sys.argv[2], "--quiet",
           "--wandb", "disabled", "total_timesteps=20000", "learning_starts=2000", "num_evals=2"])
print(json.dumps({"rc": rc, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def memory(args) -> str:
    rows = []
    for algo in ("iql", "vdn", "qmix"):
        for label, env_kwargs in MEMORY_ENVS.items():
            env_name = label.split(" ")[0]
            resolved = resolve(algo, env_name, {f"env.{k}": v for k, v in env_kwargs.items()})
            cfg = resolved.config
            size = replay_memory_bytes(cfg, jmarl.make(env_name, **env_kwargs))
            rows.append(f"| {algo} | {label} | {cfg.buffer_size:,} | {size / cfg.buffer_size:.0f} B | "
                        f"{size / 2**20:.0f} MiB | {args.seeds * size / 2**30:.2f} GiB |")
            print(rows[-1], flush=True)
    probe = subprocess.run([sys.executable, "-c", _SWEEP_PROBE, str(args.seeds), str(Path(args.out) / "sweep")],
                           capture_output=True, text=True, check=True)
    measured = json.loads(probe.stdout.strip().splitlines()[-1])
    vdn_bytes = replay_memory_bytes(resolve("vdn", "mpe_spread").config, jmarl.make("mpe_spread"))
    return f"""## Q-learning replay memory

Bytes of one run's flashbax episode buffer (computed from the buffer state's shapes: nothing allocated),
per stored env step and in all, for the presets of `algos/qlearning.py`; a population of seeds holds one
buffer per member. QMIX also stores the global state (and its final value) for its mixer; IQL and VDN do not.

- Machine: {machine()}
- Date: {datetime.date.today().isoformat()}
- Command: `python scripts/bench_qlearning.py memory --seeds {args.seeds} --write`

| algo | env | buffer (env steps) | per step | one run | {args.seeds} seeds |
|---|---|---:|---:|---:|---:|
{chr(10).join(rows)}

Measured: a `jmarl sweep vdn --env mpe_spread --seeds {args.seeds}` (the preset's buffers, a short budget)
run in a fresh process peaked at **{measured['peak_rss_bytes'] / 2**30:.2f} GiB** resident
({args.seeds} x {vdn_bytes / 2**20:.0f} MiB of buffers, plus JAX, the compiled program and the networks):
it fits this machine's 24 GiB with room to spare. JaxMARL users hit out-of-memory from vmapped buffers
because its buffers keep whole padded episodes of every agent's dict entries.
"""


def learn(args) -> str:
    rows, resolved, command = learning_rows("bench_qlearning.py", args)
    keys = ("num_envs", "num_steps", "buffer_size", "sample_batch_size", "sample_sequence_length", "hidden_dim",
            "learning_starts", "algo_variant")
    return learning_section("Q-learning on mpe_spread (learning)", rows, resolved, keys, command,
                            "preset `mpe_spread` in algos/qlearning.py: JaxMARL's ql_rnn_mpe, 16 envs instead of 8", SCALE_NOTE)


SCALE_NOTE = """For scale (`../shared/ANCHORS.md`): random about -80; JaxMARL's paper shows about -33 (VDN), -40 (IQL),
-50 (QMIX) after about 1e7 steps; a hand-written assignment controller -22.9."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("memory")
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--out", default="/tmp/jmarl_bench/qlearning")
    p.add_argument("--write", action="store_true")
    p = sub.add_parser("learn")
    p.add_argument("--algos", nargs="+", default=["vdn", "qmix"])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=10_000_000)
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE override for every algorithm")
    p.add_argument("--out", default="/tmp/jmarl_bench/qlearning")
    p.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text = memory(args) if args.command == "memory" else learn(args)
    if args.write:
        write_section(text.splitlines()[0], text)
    print(text)


if __name__ == "__main__":
    main()
