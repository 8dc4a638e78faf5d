"""The ``jmarl`` command.

  jmarl train ippo --env mpe_spread [KEY=VALUE ...]            one run (or --seeds N in one program)
  jmarl train ippo --resume runs/ippo_mpe_spread_...            continue a run from its last checkpoint
  jmarl sweep ippo --env mpe_spread --seeds 4 lr=1e-3,3e-3 ent_coef=0,0.01
  jmarl sweep ippo --env mpe_spread --samples 16 lr=log:1e-4:1e-2   random search
  jmarl reproduce jmarl_mpe --seeds 4                          a preset of published settings (--list)
  jmarl render RUN_DIR --out episode.gif                       draw episodes of a trained run (or --random)
  jmarl list                                                   environments and algorithms

KEY=VALUE sets static config (num_envs=...), traced hyperparameters (lr=...) or environment keys
(env.num_agents=...). Unknown or ill-typed keys fail before anything compiles, listing what is valid.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from jmarl.core.config import ConfigError, build


def _parse_overrides(tokens: Sequence[str]) -> dict[str, str]:
    out = {}
    for token in tokens:
        if "=" not in token:
            raise ConfigError(f"expected KEY=VALUE, got {token!r}")
        key, value = token.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _sweep_axes(module, overrides: dict[str, str], samples: int, seed: int):
    """Split overrides into fixed ones and swept hyperparameters; return (fixed, list of hparam dicts)."""
    hparam_keys = {f.name for f in __import__("dataclasses").fields(module.Hparams)}
    fixed, grid, randoms = {}, {}, {}
    for key, value in overrides.items():
        swept = "," in value or value.startswith(("log:", "uniform:"))
        if not swept:
            fixed[key] = value
        elif key not in hparam_keys:
            raise ConfigError(f"{key} cannot be swept in one program: only traced hyperparameters can "
                              f"({sorted(hparam_keys)}); static keys fix shapes, so run them separately")
        elif value.startswith(("log:", "uniform:")):
            kind, lo, hi = value.split(":")
            randoms[key] = (kind, float(lo), float(hi))
        else:
            grid[key] = [v for v in value.split(",") if v]
    if randoms and not samples:
        raise ConfigError(f"random ranges for {sorted(randoms)} need --samples N")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    if randoms:
        rng = np.random.default_rng(seed)
        drawn = []
        for _ in range(samples):
            draw = {}
            for key, (kind, lo, hi) in randoms.items():
                draw[key] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))) if kind == "log" else rng.uniform(lo, hi))
            drawn.append(draw)
        points = [{**p, **d} for p in points for d in drawn]
    return fixed, points


def _run(args, sweep: bool) -> int:
    from jmarl.train.algorithms import ResolvedConfig, algorithm_module, resolve
    from jmarl.train.run import Population, format_results, train

    overrides = _parse_overrides(args.overrides)
    if args.resume:
        config_path = Path(args.resume) / "config.json"
        if not config_path.exists():
            raise ConfigError(f"--resume {args.resume}: no config.json there (not a jmarl run directory)")
        saved = json.loads(config_path.read_text())
        if overrides:
            raise ConfigError("--resume continues a run as it was started; drop the KEY=VALUE overrides")
        resolved = ResolvedConfig.from_dict(saved)
        module = algorithm_module(resolved.algo)
        hparams = [build(module.Hparams, h, base=resolved.hparams) for h in saved["member_hparams"]]
        pop = Population(hparams, saved["seeds"], saved["config_ids"])
        run_dir = Path(args.resume)
    else:
        if not args.algo or not args.env:
            raise ConfigError("give an algorithm and --env, e.g. `jmarl train ippo --env mpe_spread`")
        module = algorithm_module(args.algo)
        fixed, points = _sweep_axes(module, overrides, args.samples, args.seed) if sweep else (overrides, [{}])
        resolved = resolve(args.algo, args.env, fixed)
        hparams = [build(module.Hparams, p, what=f"{args.algo} hyperparameters", base=resolved.hparams) for p in points]
        pop = Population.grid(hparams, [args.seed + s for s in range(args.seeds)])
        run_dir = Path(args.out or f"runs/{args.algo}_{args.env}_{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = resolved.config
    if not args.quiet:
        print(f"jmarl: {resolved.algo} on {resolved.env} {resolved.env_kwargs or ''}: {len(pop)} run(s) "
              f"({len(set(pop.config_ids))} config(s) x {len(set(pop.seeds))} seed(s)) in one program, "
              f"{cfg.num_updates * cfg.batch_size:,} env steps each -> {run_dir}")
    results = train(resolved, pop, run_dir, resume=bool(args.resume), quiet=args.quiet, wandb=args.wandb,
                    checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints)
    print(format_results(results))
    print(f"final greedy return: {results['best']['mean']:.2f}   "
          f"({results['env_steps_per_second']:,.0f} env steps/s after {results['compile_seconds']:.1f} s compile)")
    print(f"results saved in {run_dir}/ (config.json, metrics.jsonl, results.json, curve.png, checkpoints/)")
    return 0


def _list(_args) -> int:
    from jmarl.train.algorithms import ALGORITHMS
    from jmarl.core.registry import registered_envs

    print("environments:", ", ".join(registered_envs()))
    print("algorithms:  ", ", ".join(sorted(ALGORITHMS)))
    return 0


def _reproduce(args) -> int:
    """``jmarl reproduce PRESET``: train a preset's entries, append rows to the results store, redraw the table."""
    from jmarl.tools import reproduce

    if args.list:
        print(reproduce.describe_presets())
        return 0
    if args.overrides:
        raise ConfigError(f"reproduce runs presets as published; KEY=VALUE settings {args.overrides} are not taken")
    if not args.preset:
        raise ConfigError(f"give a preset: {sorted(reproduce.PRESETS)} (see `jmarl reproduce --list`)")
    command = reproduce.command_line(args.preset, args.seeds, args.steps, args.scale, args.only)
    rows = reproduce.reproduce(args.preset, seeds=args.seeds, steps=args.steps, scale=args.scale, only=args.only,
                               out=args.out, results_file=args.results, command=command, quiet=args.quiet,
                               resume=args.resume)
    print(f"{len(rows)} row(s) appended to {args.results}; table: {Path(args.results).with_suffix('.md')}")
    return 0


def _add_reproduce_parser(sub) -> None:
    from jmarl.tools.reproduce import RESULTS_JSONL

    p = sub.add_parser("reproduce", help="run a preset of published settings; append rows to the results table")
    p.add_argument("preset", nargs="?", help="preset name (see --list)")
    p.add_argument("--list", action="store_true", help="show the presets, their entries and budgets")
    p.add_argument("--seeds", type=int, help="seeds per entry, all in one program (default: the preset's)")
    p.add_argument("--steps", type=int, help="env steps per seed for every entry instead of the preset's budget")
    p.add_argument("--scale", type=float, help="multiply every entry's budget by this")
    p.add_argument("--only", nargs="+", help="entries to run: algorithm, environment label or entry name")
    p.add_argument("--out", help="parent of the run directories (default runs/reproduce/PRESET_TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue in --out: skip entries that have their row, resume a cut-short one from its "
                        "newest intact checkpoint")
    p.add_argument("--results", default=str(RESULTS_JSONL),
                   help="results store (JSONL); the .md beside it is regenerated")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_reproduce)


def _render(args) -> int:
    """``jmarl render RUN_DIR``: draw episodes of a trained run (or of a random policy) to a GIF or MP4."""
    from jmarl.tools import render
    from jmarl.train.load import load
    from jmarl.core.registry import make

    if args.run_dir and "=" in args.run_dir and not Path(args.run_dir).exists():  # argparse took KEY=VALUE
        args.overrides, args.run_dir = [args.run_dir, *args.overrides], None
    overrides = _parse_overrides(args.overrides)
    if args.run_dir:
        if args.env or overrides:
            raise ConfigError("a run is rendered on the environment it was trained on; drop --env and KEY=VALUE")
        policy = load(args.run_dir, member=args.member)
        env, policy = policy.env, None if args.random else policy
    elif args.env:
        env, policy = make(args.env, **{k.removeprefix("env."): v for k, v in overrides.items()}), None
    else:
        raise ConfigError("give a run directory (`jmarl render runs/mappo_mpe_spread_...`) "
                          "or --env NAME [KEY=VALUE ...] for a random policy")
    frames = render.render_to_file(env, args.out, policy, args.episodes, args.seed, args.fps)
    who = "a random policy" if policy is None else f"{policy.resolved.algo} member {args.member}"
    print(f"jmarl: {args.episodes} episode(s) of {env.name} played by {who}: {frames} frames -> {args.out}")
    return 0


def _add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="draw episodes of a trained run (or a random policy) to a GIF or MP4")
    p.add_argument("run_dir", nargs="?", help="run directory; or --env NAME [KEY=VALUE ...] for a random policy")
    p.add_argument("--env", help="environment for a random policy, without a run")
    p.add_argument("--episodes", type=int, default=1, help="episodes, drawn one after the other")
    p.add_argument("--out", default="episode.gif", help="output file: .gif, or .mp4 with imageio-ffmpeg")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' starts and actions")
    p.add_argument("--member", type=int, default=0, help="population member of the run to play")
    p.add_argument("--random", action="store_true", help="play uniformly random actions on the run's env")
    p.add_argument("--fps", type=float, default=8.0, help="frames per second")
    p.set_defaults(func=_render)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jmarl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [("train", "train one configuration"), ("sweep", "sweep hyperparameters x seeds in one program")]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("algo", nargs="?", help="ippo, mappo, iql, vdn, qmix; then KEY=VALUE settings "
                       "(static config, hyperparameters, env.KEY)")
        p.add_argument("--env", help="environment name (see `jmarl list`)")
        p.add_argument("--seeds", type=int, default=4 if name == "sweep" else 1, help="seeds per configuration")
        p.add_argument("--seed", type=int, default=0, help="first seed")
        p.add_argument("--out", help="run directory (default runs/ALGO_ENV_TIME)")
        p.add_argument("--resume", help="continue the run in this directory from its newest intact checkpoint")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--wandb", default="offline", choices=["offline", "online", "disabled"])
        p.add_argument("--checkpoint-every", type=int, default=1, help="chunks between checkpoints")
        p.add_argument("--keep-checkpoints", type=int, default=3)
        if name == "sweep":
            p.add_argument("--samples", type=int, default=0, help="random-search draws for log:/uniform: ranges")
        p.set_defaults(func=lambda a, sweep=(name == "sweep"): _run(a, sweep), samples=0)
    sub.add_parser("list", help="environments and algorithms").set_defaults(func=_list)
    _add_render_parser(sub)
    _add_reproduce_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [t for t in extra if t.startswith("-") or "=" not in t]
    if unknown:
        parser.error(f"unrecognised arguments {unknown}; settings are given as KEY=VALUE")
    args.overrides = extra
    try:
        return args.func(args)
    except (ConfigError, ValueError) as e:
        print(f"jmarl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
