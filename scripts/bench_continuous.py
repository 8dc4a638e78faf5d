"""Continuous-action benchmark: MADDPG, IPPO and MAPPO on continuous mpe_spread, MADDPG vs MADDPG on mpe_tag.

The runs themselves are plain CLI runs (each population in one program), e.g.

    nice -n 10 /usr/bin/time -v jmarl train maddpg --env mpe_spread --seeds 2 env.continuous_actions=True \
        total_timesteps=2000000 --out OUT/maddpg_spread --quiet --wandb disabled > OUT/maddpg_spread.log 2>&1

(the same for ippo and mappo; ``--env mpe_tag ... --out OUT/maddpg_tag`` for tag). This script reads their
run directories (results.json, metrics.jsonl, and the ``/usr/bin/time -v`` log beside each for CPU time) and
prints the "## Continuous actions" section of docs/benchmarks.md, with a uniformly random policy's return
for scale:

    python scripts/bench_continuous.py OUT
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import jax
import numpy as np

import jmarl
from benchlib import machine
from jmarl.agents.rollout import evaluate_episodes, random_actions
from jmarl.core.wrappers import AutoReset, EpisodeStats


def random_return(env_name: str, episodes: int = 1000, **kwargs) -> dict:
    """Mean episode return per team (and in total) of uniformly random actions."""
    env = AutoReset(EpisodeStats(jmarl.make(env_name, **kwargs)))

    def act(params, hidden, ts, starts, key):
        keys = jax.random.split(key, len(env.teams))
        return hidden, {t: random_actions(env.teams[t].action_space, k, ts.avail_actions[t])
                        for t, k in zip(env.teams, keys)}

    out = jax.jit(lambda key: evaluate_episodes(env, act, None, {}, key, episodes))(jax.random.PRNGKey(0))
    return {k: float(v) for k, v in out.items() if k.startswith("eval/return")}


def time_log(run_dir: Path) -> dict:
    """Wall and CPU seconds from the ``/usr/bin/time -v`` log ``run_dir.log``, where there is one."""
    log = run_dir.with_suffix(".log")
    if not log.exists():
        return {}
    text = log.read_text()
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    return {"cpu": cpu, "wall": seconds}


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def spread_row(run_dir: Path) -> str:
    res = json.loads((run_dir / "results.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    agg, t = res["aggregate"], time_log(run_dir)
    steps = max(r["env_steps"] for r in rows(run_dir))
    wall = f"{t['wall']:.0f} s" if t.get("wall") else "-"
    cpu = f"{t['cpu']:.0f} s" if t.get("cpu") else "-"
    return (f"| {cfg['algo']} | {steps:.2e} | {agg['runs']} | {agg['mean']:.1f} [{agg['mean_lo']:.1f}, "
            f"{agg['mean_hi']:.1f}] | {agg['iqm']:.1f} | {', '.join(f'{r:.1f}' for r in res['configs'][0]['returns'])} "
            f"| {res['env_steps_per_second']:.3g} | {res['compile_seconds']:.0f} s | {wall} | {cpu} |")


def spread_curve(run_dirs: list[Path]) -> list[str]:
    """Greedy team return after each chunk, mean over seeds, one column per run (the 2e6 and 1e7 rows in one)."""
    curves = []
    for d in run_dirs:
        by_steps: dict[int, list[float]] = {}
        for r in rows(d):
            by_steps.setdefault(r["env_steps"], []).append(r["eval/return"])
        curves.append({s: float(np.mean(v)) for s, v in by_steps.items()})
    names = [json.loads((d / "config.json").read_text())["algo"] for d in run_dirs]
    out = ["| env steps | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for i in range(max(len(c) for c in curves)):
        cells = [f"{list(c.values())[i]:.1f}" if i < len(c) else "" for c in curves]
        out.append(f"| {list(curves[0])[min(i, len(curves[0]) - 1)]:.2e} | " + " | ".join(cells) + " |")
    return out


def tag_rows(run_dir: Path) -> list[str]:
    """Captures per episode per chunk: predator team return / (10 x num_adversaries), mean over seeds."""
    cfg = json.loads((run_dir / "config.json").read_text())
    na = cfg["env_kwargs"].get("num_adversaries", 3)
    by_chunk: dict[int, list[dict]] = {}
    for r in rows(run_dir):
        by_chunk.setdefault(r["chunk"], []).append(r)
    out = []
    for chunk in sorted(by_chunk):
        rs = by_chunk[chunk]
        mean = lambda k: float(np.mean([r[k] for r in rs]))
        out.append(f"| {rs[0]['env_steps']:.2e} | {mean('train/return/adversaries') / (10 * na):.2f} | "
                   f"{mean('eval/return/adversaries') / (10 * na):.2f} | {mean('eval/return/prey'):.1f} |")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="parent of the run directories (ALGO_spread, maddpg_tag)")
    args = parser.parse_args(argv)
    spread = [args.out / f"{a}_spread" for a in ("maddpg", "ippo", "mappo")]
    spread = [d for d in spread if (d / "results.json").exists()]
    rand_spread = random_return("mpe_spread", continuous_actions=True)
    rand_tag = random_return("mpe_tag", continuous_actions=True)
    print("## Continuous actions\n")
    print(f"- Machine: {machine()}; shared with other jobs while measured (runs under `nice -n 10`), so speeds "
          f"are noisy and low\n- Date: {time.strftime('%Y-%m-%d')}\n")
    print("| algo | env steps | seeds | return (95% CI) | IQM | per seed | env steps/s | compile | wall | CPU |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for d in spread:
        print(spread_row(d))
    print(f"\nUniformly random actions: {rand_spread['eval/return']:.1f} (1000 episodes).")
    print("\nGreedy team return after each chunk (32 episodes per seed, mean over seeds):\n")
    print("\n".join(spread_curve(spread)))
    tag = args.out / "maddpg_tag"
    if (tag / "metrics.jsonl").exists():
        print("\n| env steps | captures / episode (training, noisy) | captures / episode (greedy eval) | prey return (eval) |")
        print("|---:|---:|---:|---:|")
        print("\n".join(tag_rows(tag)))
        print(f"\nUniformly random actions on tag: {rand_tag['eval/return/adversaries'] / 30:.2f} captures per "
              f"episode, prey return {rand_tag['eval/return/prey']:.1f}.")
        t = time_log(tag)
        res = json.loads((tag / "results.json").read_text()) if (tag / "results.json").exists() else {}
        if res:
            print(f"Tag: {res['env_steps_per_second']:.3g} env steps/s, compile {res['compile_seconds']:.0f} s, "
                  f"wall {t.get('wall', 0):.0f} s, CPU {t.get('cpu', 0):.0f} s.")


if __name__ == "__main__":
    main()
