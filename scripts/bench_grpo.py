"""GRPO benchmarks: a sweep of the group size K and horizon H, GRPO against IPPO and MAPPO at equal env steps and
at equal wall-clock, and the cost of branching (speed and memory against K).

Each command saves its measurements as JSON under ``--out`` (default runs/bench_grpo); ``write`` composes the
"GRPO" section of docs/benchmarks.md from whichever of them exist.

    python scripts/bench_grpo.py sweep --steps 1000000 --seeds 2 --configs "group_size=8 horizon=25" \\
        "group_size=4 horizon=25" "group_size=8 horizon=10 branch_at=running num_steps=3"
    python scripts/bench_grpo.py learn --algos grpo ippo mappo --seeds 2 --steps 2000000 --set-grpo group_size=8
    python scripts/bench_grpo.py branching --ks 2 4 8 16 32
    python scripts/bench_grpo.py write
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_section  # noqa: E402

HEADING = "## GRPO (group-relative, no critic) against IPPO and MAPPO"


def _train(algo: str, env: str, overrides: dict, seeds: int, out: Path, resume: bool = False) -> dict:
    """One run of ``seeds`` seeds in one program, in ``out`` (a previous run there, this script's own output,
    is replaced; with ``resume`` it is continued from its newest checkpoint, or read when finished); returns the
    results plus per-chunk evaluation returns."""
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train
    from jmarl.train.stats import aggregate

    resolved = resolve(algo, env, overrides)
    pop = Population.grid([resolved.hparams], list(range(seeds)))
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    results = train(resolved, pop, out, resume=resume, quiet=True, wandb="disabled")
    wall = time.perf_counter() - t0
    if results.get("resumed_at_chunk"):  # the seconds of the earlier, cut-short invocations count too
        results["train_seconds"] += results.get("earlier_train_seconds") or 0.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    chunks = sorted({r["chunk"] for r in rows})
    cfg = resolved.config
    # Chunks run the same compiled program, so chunk c ends at about (c + 1) / C of the training seconds.
    curve = [{"chunk": c, "env_steps": next(r["env_steps"] for r in rows if r["chunk"] == c),
              "train_seconds": results["train_seconds"] * (c + 1) / len(chunks),
              "returns": [r["eval/return"] for r in rows if r["chunk"] == c]} for c in chunks]
    agg = results["aggregate"]
    return {"algo": algo, "env": env, "overrides": overrides, "seeds": seeds, "config": resolved.to_dict(),
            "env_steps": cfg.num_updates * cfg.batch_size, "final": agg, "per_seed": results["configs"][0]["returns"],
            "steps_per_second": results["env_steps_per_second"], "compile_seconds": results["compile_seconds"],
            "train_seconds": results["train_seconds"], "wall_seconds": wall, "curve": curve,
            "load": [load0, os.getloadavg()[0]], "aggregate_fn": "jmarl.train.stats.aggregate",
            "final_episodes": results["final_episodes"]}


def _save(out: Path, name: str, data) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(data, indent=1, default=float))


def _load(out: Path, name: str):
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


def _kv(text: str) -> dict:
    return dict(kv.split("=", 1) for kv in shlex.split(text))


def _cmd(argv) -> str:
    return "python scripts/bench_grpo.py " + " ".join(shlex.quote(a) for a in argv)


# ----------------------------------------------------------------------------------------------------
def sweep(args) -> None:
    """K x H (x roots) configurations, each its own program (they are static), at a small budget."""
    out = Path(args.out)
    done = _load(out, "sweep.json") or {"runs": []}
    for text in args.configs:
        overrides = {"total_timesteps": args.steps, **_kv(text)}
        name = text.replace(" ", "_").replace("=", "")
        run = _train("grpo", args.env, overrides, args.seeds, out / "sweep" / name)
        run["label"], run["command"] = text, _cmd(sys.argv[1:])
        done["runs"] = [r for r in done["runs"] if r["label"] != text] + [run]
        f = run["final"]
        print(f"{text:50s} {f['mean']:7.1f} [{f['mean_lo']:.1f}, {f['mean_hi']:.1f}]  "
              f"{run['steps_per_second']:.3g} steps/s  {run['wall_seconds']:.0f} s", flush=True)
        done.update(date=datetime.date.today().isoformat(), machine=machine())
        _save(out, "sweep.json", done)


def learn(args) -> None:
    """Each algorithm at the same env-step budget, one after another."""
    out = Path(args.out)
    done = _load(out, "learn.json") or {"runs": []}
    for algo in args.algos:
        extra = _kv(" ".join(args.set_grpo)) if algo == "grpo" else {}
        label = " ".join([algo, *(f"{k}={v}" for k, v in extra.items())])
        run = _train(algo, args.env, {"total_timesteps": args.steps, **extra}, args.seeds,
                     out / "learn" / label.replace(" ", "_").replace("=", ""), resume=args.resume)
        run["command"], run["label"] = _cmd(sys.argv[1:]), label
        done["runs"] = [r for r in done["runs"] if r.get("label", r["algo"]) != label] + [run]
        f = run["final"]
        print(f"{algo:6s} {f['mean']:7.1f} [{f['mean_lo']:.1f}, {f['mean_hi']:.1f}]  {run['steps_per_second']:.3g} "
              f"steps/s  {run['wall_seconds']:.0f} s", flush=True)
        done.update(date=datetime.date.today().isoformat(), machine=machine())
        _save(out, "learn.json", done)


def branching(args) -> None:
    """(1) The branch operation on a batch of env states; (2) one GRPO update against K at a fixed number of roots."""
    import jmarl
    from jmarl.agents.branching import branch
    from jmarl.algos.grpo import GRPOConfig, GRPOHparams, hparams_as_arrays, make_train
    from jmarl.core.wrappers import AutoReset, EpisodeStats

    def timed(fn, *xs, repeats=20):
        jax.block_until_ready(fn(*xs))
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(repeats):
                jax.block_until_ready(fn(*xs))
            best = min(best, (time.perf_counter() - t) / repeats)
        return best

    op_rows = []
    for env_name, kwargs in (("mpe_spread", {}), ("smax", {"scenario": "3m"})):
        env = AutoReset(EpisodeStats(jmarl.make(env_name, **kwargs)))
        ts, state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), args.roots))
        per_env = sum(x.nbytes for x in jax.tree.leaves((state, ts))) / args.roots
        for k in args.ks:
            fn = jax.jit(lambda s, k=k: branch(s, k))
            op_rows.append({"env": env_name + "".join(f" {v}" for v in kwargs.values()), "bytes_per_env": per_env,
                            "k": k, "roots": args.roots, "seconds": timed(fn, (state, ts)),
                            "out_bytes": per_env * args.roots * k})
            print(op_rows[-1], flush=True)

    update_rows = []
    env = jmarl.make("mpe_spread")
    for k in args.ks:
        cfg = GRPOConfig(num_envs=args.update_roots, group_size=k, horizon=25, num_minibatches=4, num_evals=1,
                         total_timesteps=args.update_roots * k * 25, eval_episodes=8)
        trainer = make_train(cfg, env)
        hp = hparams_as_arrays(GRPOHparams())
        runner = jax.jit(trainer.init)(jax.random.PRNGKey(0), hp)
        compiled = jax.jit(trainer.run_chunk).lower(runner, hp).compile()  # one update + a small evaluation
        mem = compiled.memory_analysis()
        seconds = timed(compiled, runner, hp, repeats=3)
        update_rows.append({"k": k, "roots": args.update_roots, "branches": args.update_roots * k,
                            "env_steps": cfg.batch_size, "seconds": seconds, "steps_per_second": cfg.batch_size / seconds,
                            "temp_bytes": mem.temp_size_in_bytes, "argument_bytes": mem.argument_size_in_bytes})
        print(update_rows[-1], flush=True)
    _save(Path(args.out), "branching.json", {"op": op_rows, "update": update_rows, "command": _cmd(sys.argv[1:]),
                                             "date": datetime.date.today().isoformat(), "machine": machine(),
                                             "load": os.getloadavg()[0]})


# ----------------------------------------------------------------------------------------------------
def _ci(f: dict) -> str:
    return f"{f['mean']:.1f} [{f['mean_lo']:.1f}, {f['mean_hi']:.1f}]"


def _at_seconds(run: dict, seconds: float) -> tuple[dict | None, int]:
    """The evaluation (per-seed returns, 32 episodes each) of the last chunk finished within ``seconds``."""
    from jmarl.train.stats import aggregate

    inside = [c for c in run["curve"] if c["train_seconds"] <= seconds * 1.0001]
    if not inside:
        return None, 0
    return aggregate(np.array(inside[-1]["returns"])), inside[-1]["env_steps"]


def _learn_table(learn_data: dict) -> list[str]:
    """The equal-env-steps and equal-wall-clock table of one ``learn`` measurement (its learn.json)."""
    parts = []
    runs = learn_data["runs"]
    fastest = min(r["train_seconds"] for r in runs)
    parts += [f"- Machine: {learn_data['machine']}", f"- Date: {learn_data['date']}",
              *[f"- Command: `{c}`" for c in dict.fromkeys(r["command"] for r in runs)], ""]
    parts += ["Equal env steps: greedy team return after the budget (final evaluation, "
              f"{runs[0]['final_episodes']} episodes per seed), mean with 95% bootstrap CI over seeds. Equal "
              f"wall-clock: each algorithm's evaluation (32 episodes per seed) at the last chunk it finished within "
              f"{fastest:.0f} s of training, the fastest algorithm's whole run (compile excluded); chunk times are "
              f"the run's training seconds split evenly over its chunks. Load average at start and end of each run "
              f"in the last column: the machine was shared, so steps/s and wall-clock carry that noise.", "",
              "| algo | env steps | seeds | return, equal env steps (95% CI) | per seed | env steps/s | train s "
              f"| return at {fastest:.0f} s (95% CI) | env steps by then | load |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in runs:
        at, steps = _at_seconds(r, fastest)
        c = r["config"]["config"]
        name = (f"grpo K={c['group_size']} H={c['horizon']} {c['branch_at']}" if r["algo"] == "grpo"
                else r["algo"])
        parts.append(f"| {name} | {r['env_steps']:.2e} | {r['seeds']} | {_ci(r['final'])} | "
                     f"{', '.join(f'{v:.1f}' for v in r['per_seed'])} | {r['steps_per_second']:.3g} | "
                     f"{r['train_seconds']:.0f} | {_ci(at) if at else '-'} | {steps:.2e} | "
                     f"{r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    grpo = next((r for r in runs if r["algo"] == "grpo"), None)
    if grpo:  # the settings every GRPO row shares (K, H and roots are in the row)
        c = grpo["config"]["config"]
        keys = ("num_envs", "num_steps", "advantage", "num_epochs", "num_minibatches", "activation")
        parts += ["", f"GRPO config: {json.dumps({k: c[k] for k in keys})}, hparams "
                      f"{json.dumps(grpo['config']['hparams'])}. IPPO and MAPPO: their `mpe_spread` presets "
                      f"(algos/ppo.py)."]
    return parts


def compose(out: Path, extra: list[Path] = ()) -> str:
    """The section from ``out``'s measurements, plus the ``learn`` tables of ``extra`` directories (e.g. the
    same comparison at a larger budget), each under a heading naming its budget."""
    parts = [HEADING, ""]
    sweep_data, learn_data, cost = _load(out, "sweep.json"), _load(out, "learn.json"), _load(out, "branching.json")
    if learn_data:
        parts += _learn_table(learn_data) + [""]
    for directory in extra:
        more = _load(Path(directory), "learn.json")
        if more:
            budget = max(r["env_steps"] for r in more["runs"])
            parts += [f"### At {budget:.0e} env steps", ""] + _learn_table(more) + [""]
    if sweep_data:
        parts += ["### Sweep of the group size K and horizon H", "",
                  f"- Date: {sweep_data['date']}; machine as above",
                  *[f"- Command: `{c}`" for c in dict.fromkeys(r["command"] for r in sweep_data["runs"])], "",
                  "Every other setting as in the GRPO config above (E = 16 roots).", "",
                  "| K | H | roots | advantage | env steps | seeds | return (95% CI) | per seed | env steps/s | load |",
                  "|---:|---:|---|---|---:|---:|---:|---|---:|---|"]
        for r in sorted(sweep_data["runs"], key=lambda r: -r["final"]["mean"]):
            c = r["config"]["config"]
            parts.append(f"| {c['group_size']} | {c['horizon']} | {c['branch_at']} | {c['advantage']} | "
                         f"{r['env_steps']:.2e} | {r['seeds']} | {_ci(r['final'])} | "
                         f"{', '.join(f'{v:.1f}' for v in r['per_seed'])} | {r['steps_per_second']:.3g} | "
                         f"{r['load'][0]:.1f} / {r['load'][1]:.1f} |")
        parts.append("")
    if cost:
        parts += ["### The cost of branching", "", f"- Date: {cost['date']}; load average {cost['load']:.1f}",
                  f"- Command: `{cost['command']}`", "",
                  "The branch operation (`jmarl.agents.branching.branch`: one `jnp.repeat` per leaf of the env state "
                  "and TimeStep, wrappers' state included), jitted, best of 3 x 20 calls:", "",
                  "| env | state bytes per env | roots | K | time per call | branched bytes |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in cost["op"]:
            parts.append(f"| {r['env']} | {r['bytes_per_env']:.0f} | {r['roots']} | {r['k']} | "
                         f"{r['seconds'] * 1e6:.0f} us | {r['out_bytes'] / 2**20:.2f} MiB |")
        parts += ["", "One GRPO update on mpe_spread (E roots x K branches x 25 steps, 4 epochs x 4 minibatches, plus "
                      "one 8-episode greedy evaluation), best of 3 x 3 calls; memory is XLA's compiled temporary "
                      "buffers (`memory_analysis().temp_size_in_bytes`):", "",
                  "| roots E | K | branches | env steps per update | seconds per update | env steps/s | temp memory |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in cost["update"]:
            parts.append(f"| {r['roots']} | {r['k']} | {r['branches']} | {r['env_steps']} | {r['seconds']:.3f} | "
                         f"{r['steps_per_second']:.3g} | {r['temp_bytes'] / 2**20:.1f} MiB |")
        parts.append("")
    return "\n".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_grpo")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="K x H configurations of GRPO, each its own program")
    s.add_argument("--env", default="mpe_spread")
    s.add_argument("--steps", type=int, default=1_000_000)
    s.add_argument("--seeds", type=int, default=2)
    s.add_argument("--configs", nargs="+", required=True, help='each a quoted "KEY=VALUE ..." over the preset')
    s.set_defaults(func=sweep)
    l = sub.add_parser("learn", help="GRPO, IPPO, MAPPO at equal env steps (and wall-clock)")  # noqa: E741
    l.add_argument("--env", default="mpe_spread")
    l.add_argument("--algos", nargs="+", default=["grpo", "ippo", "mappo"])
    l.add_argument("--steps", type=int, default=2_000_000)
    l.add_argument("--seeds", type=int, default=2)
    l.add_argument("--set-grpo", nargs="*", default=[], help="KEY=VALUE overrides for GRPO (e.g. the sweep's best)")
    l.add_argument("--resume", action="store_true", help="continue cut-short runs (finished ones are read)")
    l.set_defaults(func=learn)
    b = sub.add_parser("branching", help="speed and memory of branching against K")
    b.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    b.add_argument("--roots", type=int, default=256, help="roots of the bare branch operation")
    b.add_argument("--update-roots", type=int, default=16, help="roots E of the GRPO update")
    b.set_defaults(func=branching)
    w = sub.add_parser("write", help="compose the GRPO section of docs/benchmarks.md from the saved JSON")
    w.add_argument("--print", action="store_true", help="print instead of writing")
    w.add_argument("--extra", nargs="*", default=[], help="directories (--out of other learn runs) whose tables follow")
    w.set_defaults(func=None)
    args = parser.parse_args(argv)
    if args.command == "write":
        text = compose(Path(args.out), [Path(d) for d in args.extra])  # its reading is kept (benchlib)
        print(text) if args.print else write_section(HEADING, text)
        return
    args.func(args)


if __name__ == "__main__":
    main()
