"""The GPU rows, in one process on one accelerator: environment throughput at 1e4-1e6 envs (jmarl vs JaxMARL, the
same env, interleaved), PPO training speed (jmarl's IPPO vs JaxMARL's ``ippo_ff_mpe`` script, side by side), a sweep
of 1024 IPPO runs in one program, and, with the time left, jmarl's recurrent IPPO on SMAX 27m_vs_30m.

    python scripts/bench_gpu.py run --out OUT --deadline 500 --jaxmarl-script ippo_ff_mpe.py   # on the GPU
    python scripts/bench_gpu.py write OUT/gpu.jsonl     # rewrite docs/benchmarks.md's GPU section from the rows

``run`` appends one JSON row per measurement to ``OUT/gpu.jsonl`` as soon as it is taken, and skips what would not
finish before ``--deadline`` seconds (a skipped row says so), so a run cut short still returns every row it took.
It runs on a CPU too (small ``--sizes`` and ``--ppo-steps``, to check it before a GPU run).
The measurement protocols are those of ``bench_envs.py`` / ``bench_smax.py`` (random actions, auto-reset, a
checksum carried by the scan; medians of alternating repeats) and ``bench_ppo.py speed`` (whole training runs,
compile excluded).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax
import numpy as np

from benchlib import machine, write_section
import bench_envs
import bench_smax

SECTION = "## On a GPU: throughput, PPO speed, a sweep of 1024 runs"
# label: (env steps per timed call, jmarl runner, JaxMARL runner). The per-call work keeps each timed call well
# past launch overhead and its scan short enough to time three times.
ENVS = {
    "mpe_spread": (2 ** 25, lambda n, s: bench_envs.jmarl_runner(bench_envs.PAIRS[0], n, s),
                   lambda n, s: bench_envs.jaxmarl_runner(bench_envs.PAIRS[0], n, s)),
    "mpe_tag": (2 ** 25, lambda n, s: bench_envs.jmarl_runner(bench_envs.PAIRS[1], n, s),
                lambda n, s: bench_envs.jaxmarl_runner(bench_envs.PAIRS[1], n, s)),
    "smax 2s3z": (2 ** 23, lambda n, s: bench_smax.jmarl_runner("2s3z", n, s),
                  lambda n, s: bench_smax.jaxmarl_runner("2s3z", n, s)),
    "smax 27m_vs_30m": (2 ** 21, lambda n, s: bench_smax.jmarl_runner("27m_vs_30m", n, s),
                        lambda n, s: bench_smax.jaxmarl_runner("27m_vs_30m", n, s)),
}

# 27m_vs_30m's observations alone are 27 x 626 f32 per env: 68 GB at 1e6 envs, so its rows stop at 1e5.
MAX_ENVS_27M = 100_000


class Log:
    """Rows to ``OUT/gpu.jsonl`` (flushed per row) and a clock against the deadline."""

    def __init__(self, out: Path, deadline: float):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.start, self.deadline = out / "gpu.jsonl", time.time(), deadline

    def left(self) -> float:
        return self.deadline - (time.time() - self.start)

    def row(self, kind: str, **row) -> None:
        row = {"kind": kind, "t": round(time.time() - self.start, 1), **row}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def guarded(self, kind: str, need: float, fn, **ident) -> dict | None:
        """``fn()``'s dict as a row, or a row saying why not (too little time left, or its error's last line)."""
        if self.left() < need:
            self.row(kind, **ident, skipped=f"{self.left():.0f} s left, about {need:.0f} s needed")
            return None
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001  (an out-of-memory size must not end the other rows)
            self.row(kind, **ident, error=(str(e).strip().splitlines() or [repr(e)])[-1][:300])
            traceback.print_exc()
            return None
        self.row(kind, **ident, **out)
        return out


def _timed(fns: dict, key, repeats: int) -> dict:
    """Compile seconds (first call) and median seconds of ``repeats`` alternating calls per function (the env rows;
    PPO's runs are compiled already and timed as ``bench_ppo speed`` times them)."""
    compile_s, times = {}, {k: [] for k in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(key))
        compile_s[name] = time.perf_counter() - t0
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name](jax.random.fold_in(key, r)))
            times[name].append(time.perf_counter() - t0)
    return {"compile_s": {k: round(v, 1) for k, v in compile_s.items()},
            "seconds": {k: float(np.median(v)) for k, v in times.items()}}


def env_row(label: str, num_envs: int, repeats: int) -> dict:
    work, ours, theirs = ENVS[label]
    num_steps = max(4, min(1000, work // num_envs))
    timed = _timed({"jmarl": ours(num_envs, num_steps), "jaxmarl": theirs(num_envs, num_steps)},
                   jax.random.key(0), repeats)
    rate = {k: num_envs * num_steps / s for k, s in timed["seconds"].items()}
    return dict(num_steps=num_steps, jmarl=rate["jmarl"], jaxmarl=rate["jaxmarl"],
                ratio=rate["jmarl"] / rate["jaxmarl"], compile_s=timed["compile_s"])


def ppo_row(peer, num_envs: int, num_steps: int, steps: int, repeats: int, chunk_rows: int | None) -> dict:
    from bench_ppo import JAXMARL_YAML, _runners, _timed as timed_runs

    batch = num_envs * num_steps
    steps = max(1, steps // batch) * batch
    cfg = dict(num_envs=num_envs, num_steps=num_steps, num_epochs=4, num_minibatches=4, hidden_dim=64,
               num_layers=2, activation="tanh", **({} if chunk_rows is None else {"chunk_rows": chunk_rows}))
    t0 = time.perf_counter()
    runners = _runners(peer, JAXMARL_YAML, cfg, steps)
    compile_both = time.perf_counter() - t0
    wall, _ = timed_runs(runners, repeats)  # bench_ppo speed's protocol: warm-up, then interleaved repeats
    rate = {k: steps / s for k, s in wall.items()}
    return dict(steps=steps, jmarl=rate["jmarl"], jaxmarl=rate["jaxmarl"], ratio=rate["jmarl"] / rate["jaxmarl"],
                compile_s=round(compile_both, 1), chunk_rows=chunk_rows)


def sweep_row(out: Path, members: int, seeds: int, rate: float, seconds: float, steps: int | None = None,
              chunk_rows: int | None = None) -> dict:
    """IPPO on mpe_spread at its preset, ``members // seeds`` learning rates (log-spaced 1e-4..1e-2) x ``seeds``
    seeds, every member in one program, trained by ``jmarl.train.run.train`` (chunks, checkpoints, final eval).
    Each member's budget is sized so the sweep trains for about ``seconds`` at ``rate`` env steps/s (at most 1e6)."""
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    preset = resolve("ippo", "mpe_spread", {})
    chunk = preset.config.num_envs * preset.config.num_steps * 4  # 4 chunks (num_evals)
    steps = steps or int(min(1_000_000, max(2 * chunk, rate * seconds / members // chunk * chunk)))
    extra = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
    resolved = resolve("ippo", "mpe_spread", {"total_timesteps": steps, "num_evals": 4, **extra})
    lrs = np.geomspace(1e-4, 1e-2, members // seeds)
    pop = Population.grid([resolved.hparams.replace(lr=float(lr)) for lr in lrs], seeds=list(range(seeds)))
    chunk_t, t0 = [], time.perf_counter()
    results = train(resolved, pop, out / "sweep_run", quiet=True, wandb="disabled",
                    on_chunk=lambda c, rows: chunk_t.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    cfg = resolved.config
    per_member = (cfg.total_timesteps // (cfg.num_envs * cfg.num_steps)) * cfg.num_envs * cfg.num_steps
    later = np.diff(chunk_t)  # chunks after the first: no compile
    train_s = float(np.sum(later) * len(chunk_t) / max(len(later), 1))
    best = results.get("best", {})
    return dict(chunk_rows=cfg.chunk_rows, members=len(pop), configs=len(lrs), seeds=seeds, num_envs=cfg.num_envs, num_steps=cfg.num_steps,
                steps_per_member=int(per_member), wall_s=round(wall, 1), chunk_s=[round(t, 1) for t in chunk_t],
                steps_per_s_after_compile=len(pop) * per_member / train_s if len(later) else None,
                best={k: best.get(k) for k in ("hparams", "mean", "iqm") if k in best})


def train27_row(work: Path, out: Path, seconds: float) -> dict:
    """jmarl's recurrent IPPO (its SMAX preset) on 27m_vs_30m, 2 seeds, for at most ``seconds``: the eval curve it
    reached (metrics.jsonl) and its speed; a row of the results store if it finishes 1e7 steps."""
    work, out = work.resolve(), out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "jmarl.tools.cli", "reproduce", "jmarl_smax", "--seeds", "2", "--only",
           "ippo/smax_27m_vs_30m", "--out", str(work / "r27"), "--results", str(out / "results.jsonl"), "--quiet"]
    t0 = time.perf_counter()
    try:
        # cwd: not the checkout, whose jmarl/ is not the installed package (its envs/ and algos/ live beside it)
        proc = subprocess.run(cmd, timeout=seconds, capture_output=True, text=True, cwd=work)
        status = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        status = "cut at the deadline"
    rows = []
    for path in (work / "r27").glob("*/metrics.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    curve = [{k: r[k] for k in ("chunk", "member", "env_steps", "eval/win_rate") if k in r} for r in rows]
    return dict(status=status, wall_s=round(time.perf_counter() - t0, 1), curve=curve)


def run(args) -> None:
    log = Log(Path(args.out), args.deadline)
    log.row("meta", machine=machine(), date=datetime.date.today().isoformat(), devices=[str(d) for d in jax.devices()],
            jax=jax.__version__, command=shlex.join(sys.argv))
    # Every env at the smaller sizes, then PPO and the sweep, then the largest size: a run cut by the deadline
    # still has every kind of row.
    def env_rows(sizes):
        for num_envs in sizes:
            for label in args.envs:
                if "27m" in label and num_envs > MAX_ENVS_27M:
                    continue
                log.guarded("env", 60 if "27m" in label else 25, lambda: env_row(label, num_envs, args.repeats),
                            env=label, num_envs=num_envs)

    env_rows(args.sizes[:-1])
    peer = None
    if args.jaxmarl_script:
        try:
            import wandb  # noqa: F401
        except ImportError:  # the peer script imports it at the top; its calls go to a no-op (bench_ppo)
            sys.modules["wandb"] = type(sys)("wandb")
        from bench_ppo import _load_peer

        try:
            peer, _ = _load_peer(args.jaxmarl_script)
        except Exception as e:  # noqa: BLE001  (the sweep and the largest size still run)
            log.row("ppo", error=f"JaxMARL's script did not load: {e!r}"[:300])
            traceback.print_exc()
    fastest = None
    for size in args.ppo_sizes:
        if peer is None:
            break
        num_envs, num_steps = map(int, size.split("x"))
        steps = args.ppo_steps * max(1, round((num_envs * num_steps / 2048) ** 0.66))  # wider runs: more steps
        got = log.guarded("ppo", 60, lambda: ppo_row(peer, num_envs, num_steps, steps, args.ppo_repeats, args.chunk_rows),
                          num_envs=num_envs, num_steps=num_steps)
        if got:
            fastest = got["jmarl"]
    env_rows(args.sizes[-1:])
    if args.sweep:  # each member's budget from the widest PPO row's speed (or --sweep-steps)
        log.guarded("sweep", args.sweep_seconds + 60,
                    lambda: sweep_row(Path(args.work), args.sweep, 4, fastest or 1e6, args.sweep_seconds,
                                      args.sweep_steps, args.chunk_rows))
    if args.train27 and log.left() > 90:
        log.guarded("train27", 90, lambda: train27_row(Path(args.work), Path(args.out), log.left() - 15))
    log.row("done", left_s=round(log.left(), 1))


def _fmt(x: float) -> str:
    return f"{x:.3g}" if x < 1e6 else f"{x:.2e}"


def _portable(command: str) -> str:
    """A run's command as a reader types it: the output folder and JaxMARL's script by name, not where they were."""
    return command.replace("/root/out", "OUT").replace(".gpu/ippo_ff_mpe.py", "ippo_ff_mpe.py")


def _rows_label(chunk_rows) -> str:
    return {None: "512 (the default before it followed the backend)", 0: "0 (one pass; the GPU default)"}.get(
        chunk_rows, str(chunk_rows))


def write(args) -> None:
    """docs/benchmarks.md's GPU section from the rows of one or more ``run`` commands (one machine)."""
    rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines() if line.strip()]
    metas = [r for r in rows if r["kind"] == "meta"]
    failed = lambda r: r.get("error") or r.get("skipped")  # noqa: E731
    env = sorted((r for r in rows if r["kind"] == "env"), key=lambda r: (list(ENVS).index(r["env"]), r["num_envs"]))
    env_lines = [f"| {r['env']} | {r['num_envs']:,} | " + (f"{failed(r)} | | | | |" if failed(r) else
                 f"{r['num_steps']} | {_fmt(r['jmarl'])} | {_fmt(r['jaxmarl'])} | **{r['ratio']:.2f}x** | "
                 f"{r['compile_s']['jmarl']} / {r['compile_s']['jaxmarl']} |") for r in env]
    ppo_lines = [f"| {r['num_envs']} x {r['num_steps']} | " + (f"{failed(r)} | | | | |" if failed(r) else
                 f"{_rows_label(r.get('chunk_rows'))} | {r['steps']:.2e} | {_fmt(r['jmarl'])} | {_fmt(r['jaxmarl'])} | "
                 f"**{r['ratio']:.2f}x** |") for r in rows if r["kind"] == "ppo"]
    sweep_lines = [f"| {_rows_label(r.get('chunk_rows'))} | {r['members']} ({r['configs']} x {r['seeds']}) | "
                   f"{r['steps_per_member']:.2e} | {r['members'] * r['steps_per_member']:.2e} | {r['wall_s']:.0f} | "
                   f"{r['chunk_s'][0]:.0f} | {_fmt(r['steps_per_s_after_compile'])} | "
                   f"{r['best']['hparams']['lr']:.2e} | {r['best']['iqm']:.1f} |"
                   for r in rows if r["kind"] == "sweep" and not failed(r)]
    text = f"""{SECTION}

- Machine: {metas[0]['machine']}; {args.gpu}
- Date: {metas[0]['date']}
- Commands (the rows: `docs/bench_gpu.jsonl`; this section: `python scripts/bench_gpu.py write docs/bench_gpu.jsonl`):
""" + "\n".join(f"  `python {_portable(m['command'])}`" for m in metas) + f"""

### Environment throughput

Env steps per second, random actions, auto-reset, observations and rewards consumed (`bench_envs.py` /
`bench_smax.py`'s protocol: SMAX samples valid actions from the masks); median of {args.repeats} alternating repeats after
a compile-and-warm-up call each, jmarl and JaxMARL in the same process. SMAX 27m_vs_30m stops at 1e5 envs: its
observations alone (27 x 626 f32 per env) would take 68 GB at 1e6.

| env | num envs | scan length | jmarl | JaxMARL | jmarl / JaxMARL | compile s (jmarl / JaxMARL) |
|---|---:|---:|---:|---:|---:|---:|
""" + "\n".join(env_lines) + """

### PPO training speed

IPPO on mpe_spread, jmarl (`algos/ppo.py`) against JaxMARL's `baselines/IPPO/ippo_ff_mpe.py` as published, at its
configuration (2x64 tanh MLPs, 4 epochs x 4 minibatches, annealed Adam; `bench_ppo.py speed`'s protocol, whole
training runs, compile excluded, median of 2 interleaved repeats). jmarl's `chunk_rows` = rows per network pass in
the minibatch gradients and the critic's pass over a rollout: slices run one after another.

| envs x steps | jmarl chunk_rows | env steps per run | jmarl steps/s | JaxMARL steps/s | jmarl / JaxMARL |
|---|---|---:|---:|---:|---:|
""" + "\n".join(ppo_lines) + """

### A sweep of 1024 runs in one program

IPPO on mpe_spread at its preset (128 envs x 50 steps per member), 256 learning rates log-spaced over 1e-4..1e-2
x 4 seeds, every member in one program, trained by `jmarl.train.run.train` (the path of `jmarl sweep`: 4 chunks,
checkpoints, evaluations and a final evaluation of every member between them). Wall seconds include compiling (the
first chunk) and the host work between chunks.

| chunk_rows | members | env steps per member | env steps in all | wall s | first chunk s | env steps/s after it | best lr | its IQM return |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
""" + "\n".join(sweep_lines) + "\n"
    write_section(SECTION, text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/bench_gpu", help="the sweep's and 27m_vs_30m's run directories")
    r.add_argument("--deadline", type=float, default=500.0, help="seconds from start; later rows are skipped")
    r.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    r.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--jaxmarl-script", default=None, help="JaxMARL's baselines/IPPO/ippo_ff_mpe.py")
    r.add_argument("--ppo-sizes", nargs="*", default=["16x128", "1024x25", "16384x25"],
                   help="ENVSxSTEPS of each PPO row (the first: JaxMARL's ippo_ff_mpe config)")
    r.add_argument("--ppo-repeats", type=int, default=2)
    r.add_argument("--ppo-steps", type=int, default=500_000,
                   help="env steps of a 16 x 128 run; wider runs get more (1024 x 25: x5, 16384 x 25: x33)")
    r.add_argument("--sweep", type=int, default=1024, help="members of the sweep (0: none)")
    r.add_argument("--sweep-seconds", type=float, default=30.0)
    r.add_argument("--sweep-steps", type=int, default=None, help="env steps per member (default: from --sweep-seconds)")
    r.add_argument("--chunk-rows", type=int, default=None, help="jmarl PPO's chunk_rows (default: the preset's)")
    r.add_argument("--train27", action="store_true", help="with the time left, IPPO on SMAX 27m_vs_30m")
    w = sub.add_parser("write")
    w.add_argument("rows")
    w.add_argument("--repeats", type=int, default=3, help="the env rows' repeats, as run")
    w.add_argument("--gpu", default="NVIDIA H200, 143771 MiB, driver 580.159.04",
                   help="the GPU as nvidia-smi names it (the run's smi.txt)")
    args = p.parse_args(argv)
    run(args) if args.cmd == "run" else write(args)


if __name__ == "__main__":
    main()
