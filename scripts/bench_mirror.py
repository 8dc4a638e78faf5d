"""Symmetric SMAX: one IPPO policy trained by self-play on both sides of a mirror scenario, against the same IPPO
trained on the scripted enemy directly.

For each scenario (3m and 2s3z by default), at the same budget and seeds:

(a) self-play: ``smax enemy=learning mirror=True``, one policy for both sides (``share_teams=allies,enemies``), in a
    pool of its own snapshots (``schedule=pool pool_sampling=uniform``: fictitious self-play) and, as a second
    variant, simultaneous self-play (``schedule=simultaneous``); a checkpoint after every chunk, all kept;
(b) direct: the same IPPO against the scripted enemy (today's ``smax`` preset, ``enemy=heuristic``);
(c) cross-play of the pool run's successive checkpoints (member 0) with ``heuristic`` and ``random``, every entry
    playing both sides, and Bradley-Terry ratings (``jmarl.tools.ratings``; a draw counts half a win): do the
    snapshots' ratings rise with training?
(d) the greedy win rate against the scripted enemy of every seed's final policy, self-play (as the allies) and direct,
    on the same number of episodes, with 95% bootstrap CIs over seeds.

Every training run is a jmarl run directory under ``--out`` (default runs/bench_mirror/SCENARIO/VARIANT), so a killed
benchmark continues with ``--resume`` (finished runs are kept, a cut one resumes from its checkpoint, cross-play and
evaluations done are read back). Results: ``--out/SCENARIO/summary.json``; ``write`` composes the section
"## Symmetric SMAX: self-play against the scripted enemy" of docs/benchmarks.md from them.

    python scripts/bench_mirror.py run --steps 3000000 --seeds 4              # both scenarios, both self-play variants
    python scripts/bench_mirror.py run --steps 3000000 --seeds 4 --resume     # after a kill
    python scripts/bench_mirror.py run --scenarios 3m --variants pool --steps 20000 --seeds 1 \\
        --set num_envs=16 num_steps=16 --episodes 8 --eval-episodes 16          # a smoke run (minutes)
    python scripts/bench_mirror.py write                                       # docs/benchmarks.md

``write`` refuses summaries of budgets under 1e6 env steps (a smoke run) unless ``--allow-small``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import machine, write_section  # scripts/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Symmetric SMAX: self-play against the scripted enemy"
SIDES = ("allies", "enemies")
VARIANTS = ("pool", "simultaneous")
MIN_WRITE_STEPS = 1_000_000
REFERENCES = ("heuristic", "random")


def settings(variant: str, scenario: str, steps: int, extra: dict) -> dict:
    """The overrides of one training run (on top of the algorithm's smax preset)."""
    common = {"total_timesteps": steps, "env.scenario": scenario, **extra}
    if variant == "direct":
        return common
    return {**common, "env.enemy": "learning", "env.mirror": True, "share_teams": SIDES, "schedule": variant,
            "eval_opponents": REFERENCES}


def pool_settings(resolved) -> dict:
    """Snapshot interval and pool size that fit the run: a snapshot every 10 updates into 8 slots at full budget,
    fewer for a short run (``league.check_schedule`` refuses a pool the run cannot fill)."""
    updates = resolved.config.num_updates
    interval = max(1, min(10, updates // 8))
    return {"schedule_interval": interval, "pool_size": max(1, min(8, 1 + updates // interval))}


def train_run(variant: str, scenario: str, args, extra: dict) -> dict:
    """Train (or resume, or read back) one run; returns its results.json and directory."""
    from jmarl.train.algorithms import resolve
    from jmarl.train.run import Population, train

    out = Path(args.out) / scenario / variant
    overrides = settings(variant, scenario, args.steps, extra)
    resolved = resolve("ippo", "smax", overrides)
    if variant == "pool":
        resolved = resolve("ippo", "smax", {**overrides, **pool_settings(resolved)})
    if (out / "results.json").is_file() and args.resume:
        print(f"{out}: finished, read back", flush=True)
        return {"dir": str(out), "results": json.loads((out / "results.json").read_text()),
                "config": resolved.to_dict()}
    print(f"training {out} ({variant}, {scenario}, {args.steps:.3g} env steps x {args.seeds} seeds)", flush=True)
    start = time.perf_counter()
    results = train(resolved, Population.grid([resolved.hparams], list(range(args.seeds))), out,
                    resume=args.resume and (out / "config.json").is_file(), quiet=not args.verbose,
                    wandb="disabled", keep_checkpoints=0 if variant == "pool" else 1)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return {"dir": str(out), "results": results, "config": resolved.to_dict()}


def chunk_dirs(run: str) -> list[Path]:
    return sorted((Path(run) / "checkpoints").glob("chunk_*"))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation of two sequences (ties broken by order; enough for a trend over checkpoints)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1]) if len(x) > 1 and rx.std() > 0 and ry.std() > 0 else float("nan")


def crossplay_snapshots(run: str, out: Path, args) -> dict:
    """(c): every checkpoint of ``run`` (member 0) and the references, each playing both sides, in one program;
    ratings with a draw as half a win. Returns per checkpoint its env steps and both sides' ratings."""
    from jmarl.tools import crossplay as cp
    from jmarl.tools.ratings import ratings_from_matrix
    from jmarl.train import checkpoint

    done = out / "snapshot_ratings.json"
    if done.is_file() and args.resume:
        return json.loads(done.read_text())
    chunks = chunk_dirs(run)
    matrix = cp.crossplay([str(c) for c in chunks] + list(REFERENCES), episodes=args.episodes, seed=0)
    cp.write_crossplay(matrix, out / "crossplay", reps=args.bootstrap)  # the matrix, heat maps, ratings
    ep = matrix["episodes"]
    fit = ratings_from_matrix(matrix, reps=args.bootstrap)  # a draw (SMAX's time-out) is half a win
    fit = {s: {q: [p[q] for p in fit[s]["players"]] for q in ("rating", "lo", "hi")} for s in ("rows", "cols")}
    steps = [checkpoint.verify(c).get("env_steps") for c in chunks]  # per member: env steps of one seed
    labels = matrix["rows"]
    players = []
    for k, label in enumerate(labels):
        players.append({"label": label, "env_steps": steps[k] if k < len(chunks) else None,
                        **{f"{side}_{q}": float(fit[s][q][k]) for side, s in zip(SIDES, ("rows", "cols"))
                           for q in ("rating", "lo", "hi")},
                        "win_vs_heuristic_as_allies": float(np.asarray(ep["win_rate"])[k, labels.index("heuristic")]
                                                            .mean())})
    n = len(chunks)
    summary = {"players": players, "episodes_per_cell": args.episodes, "programs": matrix["programs"],
               "trend_allies": spearman(np.arange(n), np.array([p["allies_rating"] for p in players[:n]])),
               "trend_enemies": spearman(np.arange(n), np.array([p["enemies_rating"] for p in players[:n]]))}
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(summary, indent=1))
    return summary


def win_rates_vs_heuristic(selfplay: str, direct: str, seeds: int, episodes: int) -> dict:
    """(d): every seed's final greedy policy against the scripted enemy on ``episodes`` episodes: the self-play
    policy as the allies of its mirror env (the scripted enemy there plays the same game as ``enemy=heuristic``:
    tests/test_mirror.py), the direct one in its own env. Per-seed win rates and the mean with a 95% bootstrap CI."""
    import jax

    import jmarl
    from jmarl.agents.rollout import evaluate_episodes
    from jmarl.tools import crossplay as cp
    from jmarl.train.load import load
    from jmarl.train.stats import stratified_bootstrap_ci

    keys = cp.episode_keys(1, episodes)
    entries = [cp.parse_entry(f"{selfplay}#{k}") for k in range(seeds)]
    base = cp.game_env(entries)
    rows = cp.load_entries(entries, base)
    (ref,) = cp.load_entries([cp.parse_entry("heuristic")], base)
    values = cp.play(base, rows, [ref], keys)["values"]
    per_seed = {"self-play": np.asarray(values["win_rate"])[:, 0].mean(-1)}
    direct_rates = []
    for k in range(seeds):
        policy = load(direct, k)
        env = jmarl.AutoReset(jmarl.EpisodeStats(policy.env))
        act = lambda params, hidden, ts, starts, key, policy=policy: policy.act(key, ts, hidden, starts)  # noqa: E731
        one = lambda key, env=env, act=act, policy=policy: evaluate_episodes(env, act, None, policy.init_hidden(1), key,
                                                                             1)["eval/win_rate"]
        direct_rates.append(float(np.mean(jax.jit(jax.vmap(one))(keys))))
    per_seed["direct"] = np.asarray(direct_rates)
    out = {}
    for name, rates in per_seed.items():
        lo, hi = stratified_bootstrap_ci(rates, np.mean, 2000, seed=0)
        out[name] = {"mean": float(rates.mean()), "lo": lo, "hi": hi, "per_seed": rates.tolist()}
    out["episodes_per_seed"] = episodes
    return out


def run(args) -> None:
    extra = dict(kv.split("=", 1) for kv in args.set)
    for scenario in args.scenarios:
        base = Path(args.out) / scenario
        runs = {v: train_run(v, scenario, args, extra) for v in (*args.variants, "direct")}
        summary = {"scenario": scenario, "steps": args.steps, "seeds": args.seeds, "variants": list(args.variants),
                   "date": datetime.date.today().isoformat(), "machine": machine(),
                   "load_average": os.getloadavg()[0],
                   "command": "python scripts/bench_mirror.py " + " ".join(sys.argv[1:]),
                   "runs": {v: {"dir": r["dir"], "config": r["config"],
                                "train_seconds": r["results"].get("train_seconds"),
                                "env_steps_per_second": r["results"].get("env_steps_per_second")}
                            for v, r in runs.items()}}
        if "pool" in runs:
            print(f"cross-play of {runs['pool']['dir']}'s checkpoints", flush=True)
            summary["snapshots"] = crossplay_snapshots(runs["pool"]["dir"], base, args)
        summary["vs_heuristic"] = {}
        for variant in args.variants:
            done = base / f"vs_heuristic_{variant}.json"
            if done.is_file() and args.resume:
                rates = json.loads(done.read_text())
            else:
                print(f"win rates against the scripted enemy: {variant} self-play and direct", flush=True)
                rates = win_rates_vs_heuristic(runs[variant]["dir"], runs["direct"]["dir"], args.seeds,
                                               args.eval_episodes)
                done.write_text(json.dumps(rates, indent=1))
            summary["vs_heuristic"][variant] = rates["self-play"]
            summary["vs_heuristic"]["direct"] = rates["direct"]
            summary["vs_heuristic"]["episodes_per_seed"] = rates["episodes_per_seed"]
        (base / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary["vs_heuristic"], indent=1), flush=True)


def rate(x: dict) -> str:
    return f"{x['mean']:.0%} [{x['lo']:.0%}, {x['hi']:.0%}] ({', '.join(f'{v:.0%}' for v in x['per_seed'])})"


def section(summaries: list[dict], write_command: str = "python scripts/bench_mirror.py write") -> str:
    first = summaries[0]
    cfg = first["runs"]["direct"]["config"]
    keys = ("num_envs", "num_steps", "num_epochs", "num_minibatches", "hidden_dim", "recurrent", "num_evals")
    preset = {**{k: cfg["config"][k] for k in keys}, **cfg["hparams"]}
    pool = first["runs"].get("pool", {}).get("config", {}).get("config", {})
    pool_text = (f"pool: a snapshot every {pool['schedule_interval']} updates into {pool['pool_size']} slots, "
                 f"{pool['pool_groups']} groups of envs per side" if pool else "")
    runs_text = "\n".join(f"- {s['scenario']}: {s['machine']}; load average {s['load_average']:.1f}; date "
                          f"{s['date']}; `{s['command']}`" for s in summaries)
    runs_text += f"\n- This section: `{write_command}`"
    parts = [f"""{SECTION}

One IPPO policy for both sides of a mirror scenario (`smax enemy=learning mirror=True share_teams=allies,enemies`:
the enemies see and act in the frame mirrored through the map centre, so the same network plays either side),
trained by self-play only: against a pool of its own snapshots (`schedule=pool pool_sampling=uniform`, fictitious
self-play){' and, second variant, simultaneous self-play' if 'simultaneous' in first['variants'] else ''}. It never
meets the scripted enemy in training (which only watches: `eval_opponents=heuristic,random`). Against it, the same
IPPO trained on the scripted enemy directly (the `smax` preset). Same budget and seeds for every run.

{runs_text}
- Settings (the `smax` preset of `algos/ppo.py`): {json.dumps(preset)}; {pool_text}
- Win rates: the greedy policy of every seed's final checkpoint against the scripted enemy, {first['vs_heuristic']
  ['episodes_per_seed']} episodes per seed; mean with a 95% bootstrap CI over seeds, then each seed's. Self-play
  plays the allies' side (the scripted enemy plays the same game in the mirror env as in `enemy=heuristic`).
- Ratings: cross-play of the pool run's successive checkpoints (seed 0) with `heuristic` and `random`, every entry
  on both sides ({first.get('snapshots', {}).get('episodes_per_cell', '-')} episodes per cell); Bradley-Terry in
  Elo points with a draw as half a win, 95% CIs by a bootstrap over episodes; 0 is the prior's virtual player.
  "Trend": the rank correlation of the ratings with the checkpoint's order (1: rising throughout).
"""]
    for s in summaries:
        steps = s["steps"]
        vs = s["vs_heuristic"]
        lines = [f"### {s['scenario']} ({steps:.2g} env steps x {s['seeds']} seeds)", "",
                 "| policy | win rate against the scripted enemy | training env steps/s |", "|---|---|---:|"]
        for v in (*s["variants"], "direct"):
            name = {"pool": "self-play, pool (uniform)", "simultaneous": "self-play, simultaneous",
                    "direct": "direct: trained against the scripted enemy"}[v]
            sps = s["runs"][v]["env_steps_per_second"]
            lines.append(f"| {name} | {rate(vs[v])} | {sps:.3g} |" if sps else f"| {name} | {rate(vs[v])} | - |")
        if "snapshots" in s:
            snap = s["snapshots"]
            lines += ["", f"Successive checkpoints of the pool run (seed 0): trend of the ratings "
                      f"{snap['trend_allies']:.2f} as the allies, {snap['trend_enemies']:.2f} as the enemies.", "",
                      "| entry | env steps | rating as allies | rating as enemies | won against heuristic, as allies |",
                      "|---|---:|---:|---:|---:|"]
            for p in snap["players"]:
                name = p["label"].split("@")[-1] if p["env_steps"] is not None else p["label"]
                steps_ = f"{p['env_steps']:.2g}" if p["env_steps"] is not None else "-"
                lines.append(f"| {name} | {steps_} | {p['allies_rating']:.0f} [{p['allies_lo']:.0f}, "
                             f"{p['allies_hi']:.0f}] | {p['enemies_rating']:.0f} [{p['enemies_lo']:.0f}, "
                             f"{p['enemies_hi']:.0f}] | {p['win_vs_heuristic_as_allies']:.0%} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def write(args) -> None:
    files = [Path(f) for f in args.summaries] or [Path(args.out) / sc / "summary.json" for sc in args.scenarios]
    summaries = [json.loads(f.read_text()) for f in files if f.is_file()]
    if not summaries:
        raise SystemExit(f"no summary.json under {args.out}/SCENARIO: run `python scripts/bench_mirror.py run` first")
    small = [s["scenario"] for s in summaries if s["steps"] < MIN_WRITE_STEPS]
    if small and not args.allow_small:
        raise SystemExit(f"{small}: budgets under {MIN_WRITE_STEPS:.0e} env steps are smoke runs, not benchmark "
                         f"numbers; rerun with --steps, or pass --allow-small")
    text = section(summaries, "python scripts/bench_mirror.py write" +
                   (" --summaries " + " ".join(args.summaries) if args.summaries else ""))
    write_section(SECTION, text, Path(args.doc))
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train, cross-play and evaluate; saves OUT/SCENARIO/summary.json")
    r.add_argument("--steps", type=int, default=3_000_000, help="env steps per run")
    r.add_argument("--seeds", type=int, default=4)
    r.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="self-play schedules")
    r.add_argument("--episodes", type=int, default=64, help="episodes per cross-play cell")
    r.add_argument("--eval-episodes", type=int, default=256, help="episodes per seed against the scripted enemy")
    r.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates of the ratings")
    r.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides for every training run")
    r.add_argument("--resume", action="store_true", help="keep finished runs and results, resume cut runs")
    r.add_argument("--verbose", action="store_true", help="progress bars of the training runs")
    w = sub.add_parser("write", help="compose the docs/benchmarks.md section from the summaries")
    w.add_argument("--allow-small", action="store_true", help="write budgets under 1e6 env steps too")
    w.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    w.add_argument("--summaries", nargs="*", default=[],
                   help="summary.json files to write, in order (default: --out/SCENARIO/summary.json)")
    for q in (r, w):
        q.add_argument("--scenarios", nargs="+", default=["3m", "2s3z"])
        q.add_argument("--out", default=str(ROOT / "runs" / "bench_mirror"))
    args = p.parse_args()
    run(args) if args.command == "run" else write(args)


if __name__ == "__main__":
    main()
