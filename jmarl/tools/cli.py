"""The ``jmarl`` command.

  jmarl train ippo --env mpe_spread [KEY=VALUE ...]            one run (or --seeds N in one program)
  jmarl train ippo --resume runs/ippo_mpe_spread_...            continue a run from its last checkpoint
  jmarl train my_ppo.py --env mpe_spread                       an algorithm file (copied and edited)
  jmarl sweep ippo --env mpe_spread --seeds 4 lr=1e-3,3e-3 ent_coef=0,0.01
  jmarl sweep ippo --env mpe_spread --samples 16 lr=log:1e-4:1e-2   random search
  jmarl reproduce jmarl_mpe --seeds 4                          a preset of published settings (--list)
  jmarl render RUN_DIR --out episode.gif                       draw episodes of a trained run (or --random)
  jmarl rollout RUN_DIR --episodes 64 --out traj.npz           trajectories out; messages, channel value, roles
  jmarl compare RUN_A RUN_B ...                                one table (mean, IQM, CIs, P(X > Y)) and curves
  jmarl crossplay RUN_A RUN_B random heuristic                 every pairing of two teams' policies; ratings
  jmarl exploit RUN --team prey --steps 1000000                train a best response to RUN's frozen prey
  jmarl list                                                   environments and algorithms
  python my_ppo.py --env mpe_spread [KEY=VALUE ...]            an algorithm file runs itself

KEY=VALUE sets static config (num_envs=...), traced hyperparameters (lr=...) or environment keys
(env.num_agents=...). Unknown or ill-typed keys fail before anything compiles, listing what is valid.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from jmarl.core.config import ConfigError, Interval, build


def _parse_overrides(tokens: Sequence[str]) -> dict[str, str]:
    out = {}
    for token in tokens:
        if "=" not in token:
            raise ConfigError(f"expected KEY=VALUE, got {token!r}")
        key, value = token.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _sweep_axes(module, overrides: dict[str, str], samples: int | None, seed: int, algo: str, env: str):
    """Split overrides into fixed ones, swept hyperparameters and swept static settings; return (fixed, list of
    hparam dicts, list of static dicts).

    A swept hyperparameter is a grid ``lr=1e-3,3e-3`` or a random range ``lr=log:1e-4:1e-2`` /
    ``uniform:LOW:HIGH`` drawn ``samples`` times; all of them train in one program. A swept static setting or
    env key (``hidden_dim=64,128``, ``env.num_agents=3,5``; a grid only) changes shapes: every combination is a
    program of its own, trained one after another (``_static_sweep``). A tuple-valued key (``fixed_teams=a,b``)
    takes its commas as the tuple. Raises ConfigError naming the key: an unknown key (with close matches), a
    random range on a static key, a malformed or empty range, ``--samples`` without a range or a range without
    ``--samples``.
    """
    import dataclasses
    import typing

    from jmarl.train.algorithms import unknown_key

    hparam_keys = [f.name for f in dataclasses.fields(module.Hparams)]
    static_keys = [f.name for f in dataclasses.fields(module.Config)]
    hints = typing.get_type_hints(module.Config)
    tuple_keys = {k for k in static_keys if typing.get_origin(hints[k]) in (tuple, list)}
    statics: dict[str, list[str]] = {}
    fixed, grid, randoms = {}, {}, {}
    for key, value in overrides.items():
        swept = ("," in value and key not in tuple_keys) or value.startswith(("log:", "uniform:"))
        if not key.startswith("env.") and key not in hparam_keys and key not in static_keys:
            raise unknown_key(module, key, algo, env)
        mistyped_range = re.match(r"\s*[A-Za-z_]+\s*[:(]", value) and not value.startswith(("log:", "uniform:"))
        if key in hparam_keys and mistyped_range:
            raise ConfigError(f"{key}={value}: not a value, a grid ({key}=A,B) or a random range; random ranges are "
                              f"written log:LOW:HIGH or uniform:LOW:HIGH")
        if swept and "," in value and not all(v.strip() for v in value.split(",")):
            raise ConfigError(f"{key}={value}: an empty entry in the grid; list the values to sweep between commas, "
                              f"e.g. {key}=A,B")
        if not swept:
            fixed[key] = value
        elif key not in hparam_keys:
            if value.startswith(("log:", "uniform:")):
                raise ConfigError(f"{key}={value}: a random range needs a traced hyperparameter ({hparam_keys}); a "
                                  f"static or env key is swept over a grid ({key}=A,B), one program per value")
            statics[key] = value.split(",")
        elif value.startswith(("log:", "uniform:")):
            randoms[key] = _parse_range(key, value)
        else:
            grid[key] = value.split(",")
    if randoms and not samples:
        raise ConfigError(f"random ranges for {sorted(randoms)} need --samples N (the number of draws)")
    if samples and not randoms:
        raise ConfigError(f"--samples {samples} draws from random ranges, and none was given: add one such as "
                          f"lr=log:1e-4:1e-2 or ent_coef=uniform:0:0.05 (a grid lr=1e-3,3e-3 needs no --samples)")
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
    static_points = [dict(zip(statics, combo)) for combo in itertools.product(*statics.values())] or [{}]
    return fixed, points, static_points


def _parse_range(key: str, value: str) -> tuple[str, float, float]:
    """``log:LOW:HIGH`` (0 < LOW < HIGH, drawn log-uniformly) or ``uniform:LOW:HIGH`` (LOW < HIGH, finite)."""
    parts = value.split(":")
    if len(parts) != 3:
        raise ConfigError(f"{key}={value}: a random range is log:LOW:HIGH or uniform:LOW:HIGH")
    kind, lo, hi = parts
    try:
        lo, hi = float(lo), float(hi)
    except ValueError:
        raise ConfigError(f"{key}={value}: LOW and HIGH of a {kind}: range must be numbers") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ConfigError(f"{key}={value}: a {kind}: range needs finite LOW < HIGH")
    if kind == "log" and lo <= 0:
        raise ConfigError(f"{key}={value}: a log: range needs 0 < LOW < HIGH (use uniform:{lo:g}:{hi:g} to include "
                          f"{lo:g})")
    return kind, lo, hi


def compile_cache(enabled: bool = True) -> Path | None:
    """Turn on JAX's persistent compilation cache for the command (``$JMARL_COMPILE_CACHE``, default
    ``~/.cache/jmarl/jax``; ``JMARL_COMPILE_CACHE=0`` or ``--no-compile-cache`` switch it off), so re-running
    or resuming a run does not compile its programs again. Returns the directory, or None when off."""
    import os

    import jax

    setting = os.environ.get("JMARL_COMPILE_CACHE", "")
    if not enabled or setting.lower() in ("0", "off", "false", "no"):
        return None
    path = Path(setting or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jmarl" / "jax")
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)  # small programs compile faster than read
    return path


def _run(args, sweep: bool) -> int:
    from jmarl.train.algorithms import ResolvedConfig, algorithm_module, resolve
    from jmarl.train.run import Population, read_config, train

    overrides = _parse_overrides(args.overrides)
    if args.resume and (Path(args.resume) / STATIC_SWEEP_FILE).is_file():
        if overrides:
            raise ConfigError(f"--resume {args.resume}: a resumed sweep keeps its own settings; drop KEY=VALUE")
        return _static_sweep(args, _read_plan(Path(args.resume)), Path(args.resume), resume=True)
    if args.resume:
        saved = read_config(args.resume)  # names the file, and what is wrong with it
        _refuse_resume_conflicts(args, saved, overrides, sweep)
        if list(args.metric) != list(saved.get("metrics", [])):
            raise ConfigError(f"--resume {args.resume}: the run was trained with --metric {saved.get('metrics', [])}"
                              f", not {list(args.metric)}; give the same metrics again")
        # The algorithm positional, if given, names the run's algorithm file again (see trusted_algorithm).
        resolved = ResolvedConfig.from_dict(saved, algorithm=args.algo, trust=args.trust_algorithm,
                                            allow_changed=args.allow_changed, where=f"--resume {args.resume}")
        module = algorithm_module(resolved.algo)
        hparams = [build(module.Hparams, h, what=f"--resume {args.resume}, its config.json: member_hparams[{i}]",
                         base=resolved.hparams) for i, h in enumerate(saved["member_hparams"])]
        pop = Population(hparams, saved["seeds"], saved["config_ids"])
        run_dir = Path(args.resume)
    else:
        if not args.algo or not args.env:
            raise ConfigError("give an algorithm and --env, e.g. `jmarl train ippo --env mpe_spread`")
        module = algorithm_module(args.algo)
        fixed, points, statics = (_sweep_axes(module, overrides, args.samples, args.seed, args.algo, args.env) if sweep
                                  else (overrides, [{}], [{}]))
        if statics != [{}]:
            name = Path(args.algo).stem if args.algo.endswith(".py") else args.algo.rsplit(".", 1)[-1]
            out = Path(args.out or f"runs/{name}_{args.env.replace(':', '-')}_{time.strftime('%Y%m%d-%H%M%S')}")
            plan = {"algo": args.algo, "env": args.env, "fixed": fixed, "points": points, "statics": statics,
                    "seeds": [args.seed + s for s in range(args.seeds)], "metrics": list(args.metric)}
            return _static_sweep(args, plan, out, resume=False)
        resolved = resolve(args.algo, args.env, fixed)
        hparams = [build(module.Hparams, p, what=f"{args.algo} hyperparameters", base=resolved.hparams) for p in points]
        pop = Population.grid(hparams, [args.seed + s for s in range(args.seeds)])
        name = Path(args.algo).stem if args.algo.endswith(".py") else args.algo.rsplit(".", 1)[-1]
        run_dir = Path(args.out or f"runs/{name}_{args.env.replace(':', '-')}_{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = resolved.config

    def announce() -> None:  # once everything is checked: a refused run prints its one error line alone
        if not args.quiet:
            print(f"jmarl: {resolved.algo} on {resolved.env} {resolved.env_kwargs or ''}: {len(pop)} run(s) "
                  f"({len(set(pop.config_ids))} config(s) x {len(set(pop.seeds))} seed(s)) in one program, "
                  f"{cfg.num_updates * cfg.batch_size:,} env steps each -> {run_dir}")

    compile_cache(not args.no_compile_cache)
    results = train(resolved, pop, run_dir, resume=bool(args.resume), quiet=args.quiet, wandb=args.wandb,
                    checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
                    metrics=args.metric, on_diverge="mark" if sweep else "stop", on_start=announce)
    status = _report(results, run_dir)
    from jmarl.core.registry import make
    from jmarl.tools.rollout import causal_channel, format_report, rollout_run

    if not results.get("diverged") and causal_channel(make(resolved.env, **resolved.env_kwargs)) is not None:
        # A channel (learned, or the env's own words): what it carries (entropy, MI) and its causal value go into
        # results.json too.
        report = rollout_run(run_dir, episodes=getattr(cfg, "eval_episodes", 8) * 10,
                             algorithm=args.algo, trust=True)  # the algorithm this command just ran
        print(format_report(report))
    return status


STATIC_SWEEP_FILE = "static_sweep.json"
# What a static sweep's plan holds (written by ``_run``), with the types ``_static_sweep`` relies on.
_PLAN_KEYS = {"algo": str, "env": str, "fixed": dict, "points": list, "statics": list, "seeds": list}


def _read_plan(out: Path) -> dict:
    """The plan of the static sweep in ``out``, checked; a damaged one is named."""
    from jmarl.train.files import RunDirectoryError, read_json

    path = out / STATIC_SWEEP_FILE
    plan = read_json(path, "the sweep's plan")
    wrong = sorted(k for k, t in _PLAN_KEYS.items() if not isinstance(plan, dict) or not isinstance(plan.get(k), t))
    if wrong or not all(isinstance(x, dict) for x in plan["points"] + plan["statics"]):
        raise RunDirectoryError(f"{path} is damaged or not a sweep's plan: "
                                + (f"{', '.join(wrong)} missing or of the wrong type" if wrong
                                   else "points and statics must be lists of settings"))
    return plan


def _static_sweep(args, plan: dict, out: Path, resume: bool) -> int:
    """A sweep over static settings: one program (run directory ``out/static_K``) per combination of the swept
    static and env keys, each with every seed x hyperparameter point in it, trained one after another; then one
    summary of every member (``out/sweep_summary.json``). Every combination is resolved and checked before
    anything trains; ``--resume out`` skips finished combinations and resumes a cut-short one."""
    from jmarl.core.registry import make
    from jmarl.train.algorithms import algorithm_module, resolve
    from jmarl.train.files import read_results, write_json
    from jmarl.train.run import Population, best_config, format_results, train

    module = algorithm_module(plan["algo"])
    combos = []
    for i, static in enumerate(plan["statics"]):
        resolved = resolve(plan["algo"], plan["env"], {**plan["fixed"], **static})
        module.make_train(resolved.config, make(resolved.env, **resolved.env_kwargs))  # sizes checked, no compile
        hparams = [build(module.Hparams, p, what=f"{plan['algo']} hyperparameters", base=resolved.hparams)
                   for p in plan["points"]]
        combos.append((static, resolved, Population.grid(hparams, plan["seeds"]), out / f"static_{i}"))
    from jmarl.train import distributed

    def start() -> None:  # process 0 alone in a cluster: the others would see its plan file and refuse
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file, not a directory: choose a directory for the sweep (--out)")
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            if (out / STATIC_SWEEP_FILE).exists() or any(out.iterdir()):
                raise ConfigError(f"{out} is not empty: resume the sweep there (`jmarl sweep --resume {out}`) or "
                                  f"choose a new --out")
            write_json(out / STATIC_SWEEP_FILE, plan)

    distributed.from_writer(start, f"starting the sweep in {out}")
    compile_cache(not args.no_compile_cache)
    summary = []
    for i, (static, resolved, pop, run_dir) in enumerate(combos):
        if not args.quiet:
            print(f"jmarl: static combination {i + 1}/{len(combos)} {static}: {len(pop)} run(s) in one program "
                  f"-> {run_dir}")
        if (run_dir / "results.json").is_file():
            results = read_results(run_dir)  # finished before: nothing to do (a damaged file is named)
        else:
            results = train(resolved, pop, run_dir, resume=(run_dir / "config.json").is_file(), quiet=args.quiet,
                            wandb=args.wandb, checkpoint_every=args.checkpoint_every,
                            keep_checkpoints=args.keep_checkpoints, metrics=plan.get("metrics", []), on_diverge="mark")
        if not args.quiet:
            print(format_results(results))
        for c in results["configs"]:
            summary.append({"static": static, "run_dir": str(run_dir), "objective": results.get("objective", "return"),
                            **c})
    scored = [c for c in summary if c.get("mean") is not None and not c.get("diverged_members")]
    # "Best" by the runs' objective; combinations with different objectives have no common scale.
    objectives = sorted({c["objective"] for c in summary})
    best = best_config(scored, objectives[0]) if len(objectives) == 1 else None
    if distributed.is_writer():
        (out / "sweep_summary.json").write_text(json.dumps({"members": summary, "best": best}, indent=1))
    print(f"{len(summary)} configuration(s) over {len(combos)} static combination(s):")
    for c in summary:
        hp = ", ".join(f"{k}={v:g}" for k, v in c["hparams"].items())
        score = "diverged" if c.get("mean") is None or c.get("diverged_members") else (
            f"{c['mean']:.2f} [{c['mean_lo']:.2f}, {c['mean_hi']:.2f}]")
        print(f"  {c['static']} config {c['config_id']}: {c['objective']} {score} ({hp})")
    if len(objectives) > 1:
        print(f"jmarl: the static combinations report different objectives {objectives}, not on one scale: no "
              f"best is chosen (see {out}/sweep_summary.json)")
        return 0
    if best is None:
        print(f"jmarl: error: every configuration diverged (see {out}/sweep_summary.json)", file=sys.stderr)
        from jmarl.train.run import EXIT_DIVERGED
        return EXIT_DIVERGED
    print(f"best: {best['static']} config {best['config_id']} with greedy {best['objective']} {best['mean']:.2f} -> "
          f"{out}/sweep_summary.json")
    return 0


def _list(_args) -> int:
    from jmarl.core.registry import registered_envs
    from jmarl.train.algorithms import registered_algorithms

    print("environments:", ", ".join(registered_envs()), "(and JaxMARL's as jaxmarl:NAME; docs/interop.md)")
    print("algorithms:  ", ", ".join(registered_algorithms()), "(or the path of an algorithm file)")
    return 0


def _reproduce(args) -> int:
    """``jmarl reproduce PRESET``: train a preset's entries, append rows to the results store, redraw the table."""
    from jmarl.tools import reproduce

    if args.list:
        print(reproduce.describe_presets(args.preset))
        return 0
    if args.overrides:
        raise ConfigError(f"reproduce runs presets as published; KEY=VALUE settings {args.overrides} are not taken")
    if not args.preset:
        raise ConfigError(f"give a preset: {sorted(reproduce.REPRODUCTION_PRESETS)} (see `jmarl reproduce --list`)")
    command = reproduce.command_line(args.preset, args.seeds, args.steps, args.scale, args.only, args.algo)
    rows = reproduce.reproduce(args.preset, seeds=args.seeds, steps=args.steps, scale=args.scale, only=args.only,
                               out=args.out, results_file=args.results, command=command, quiet=args.quiet,
                               resume=args.resume, algorithm=args.algo)
    print(f"{len(rows)} row(s) appended to {args.results}; table: {Path(args.results).with_suffix('.md')}")
    return 0


def _add_reproduce_parser(sub) -> None:
    from jmarl.tools.reproduce import RESULTS_JSONL

    p = sub.add_parser("reproduce", help="run a preset of published settings; append rows to the results table")
    p.add_argument("preset", nargs="?", help="preset name (see --list)")
    p.add_argument("--list", action="store_true", help="show the presets (or PRESET), their entries and budgets")
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
    p.add_argument("--algo", help="train the entries with this algorithm file or module instead (an edited copy "
                   "of algos/ppo.py); its rows are labelled with the file's name and record its source hash")
    _add_cluster_options(p)
    p.set_defaults(func=_reproduce, takes_settings=True)  # to refuse them, saying why


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Options to run one command as one process of several (docs/distributed.md)."""
    g = p.add_argument_group("cluster (jax.distributed: start the same command on every host; docs/distributed.md)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address and a free port on it ($JMARL_COORDINATOR)")
    g.add_argument("--num-processes", metavar="N", help="number of processes ($JMARL_NUM_PROCESSES)")
    g.add_argument("--process-id", metavar="I", help="this process, 0 .. N-1; 0 writes the run directory "
                   "($JMARL_PROCESS_ID)")
    g.add_argument("--auto-distributed", action="store_true",
                   help="let JAX find the cluster (SLURM, Open MPI, Cloud TPU; $JMARL_AUTO_DISTRIBUTED=1)")


def _join_cluster(args) -> bool:
    """Join the cluster the options (or JMARL_* variables) describe, before anything touches a device; returns
    whether this process stays silent on stdout (not process 0: progress and results are shown once)."""
    from jmarl.train import distributed

    cluster = distributed.Cluster.from_settings(args.coordinator, args.num_processes, args.process_id,
                                                args.auto_distributed)
    return distributed.initialize(cluster) and not distributed.is_writer()


def _process_tag() -> str:
    """`` (process I of N)`` once this process is in a cluster, for its error lines."""
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return ""
    from jmarl.train.distributed import process_tag

    return process_tag()


def _render(args) -> int:
    """``jmarl render RUN_DIR``: draw episodes of a trained run (or of a random policy) to a GIF or MP4."""
    from jmarl.tools import render
    from jmarl.train.load import load
    from jmarl.core.registry import make

    if args.run_dir and "=" in args.run_dir and not Path(args.run_dir).exists():  # argparse took KEY=VALUE
        args.overrides, args.run_dir = [args.run_dir, *args.overrides], None
    overrides = _parse_overrides(args.overrides)
    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes}: must be at least 1")
    if not 0 < args.fps < float("inf"):
        raise ConfigError(f"--fps {args.fps}: must be a positive number of frames per second")
    if args.run_dir:
        if args.env or overrides:
            raise ConfigError("a run is rendered on the environment it was trained on; drop --env and KEY=VALUE")
        from jmarl.train.run import read_config

        read_config(args.run_dir)  # a missing, foreign or damaged run directory: one line naming it
        policy = load(args.run_dir, member=args.member, algorithm=args.algo, trust=args.trust_algorithm,
                      allow_changed=args.allow_changed)
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


def _rollout(args) -> int:
    """``jmarl rollout RUN_DIR --episodes N --out FILE.npz``: trajectories out (npz and PNG), and what emerged
    (messages, causal value of the channel, roles) into the run's results.json (jmarl/tools/rollout.py)."""
    from jmarl.tools.rollout import format_report, rollout_run
    from jmarl.train.run import read_config

    read_config(args.run_dir)  # a missing, foreign or damaged run directory: one line naming it
    report = rollout_run(args.run_dir, args.episodes, args.out, args.png, args.member, args.seed,
                         write_results=not args.no_results, algorithm=args.algo, trust=args.trust_algorithm,
                         allow_changed=args.allow_changed)
    print(format_report(report))
    wrote = [report[k] for k in ("npz", "png") if k in report] + ([] if args.no_results else
                                                                   [f"{args.run_dir}/results.json"])
    print(f"jmarl: wrote {', '.join(map(str, wrote)) or 'nothing'}")
    return 0


def _compare(args) -> int:
    """``jmarl compare RUN ...``: mean, IQM, CIs and probability of improvement; overlaid curves."""
    from jmarl.tools import compare

    methods = compare.load_methods(args.runs, args.metric, args.allow_mixed)
    result = compare.compare(methods)
    for m in methods:
        if m.no_score:
            print(f"jmarl: warning: {m.label}: {m.no_score} of {m.no_score + len(m.scores)} seed(s) diverged (no "
                  f"score); left out of its statistics and of P(X > Y)", file=sys.stderr)
    print(compare.format_table(result, args.metric))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.out:
        compare.plot_curves(methods, args.out, args.metric)
        print(f"curves -> {args.out}")
    return 0


def _add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare finished runs: one table (mean, IQM, CIs, P(X > Y)) and curves")
    p.add_argument("runs", nargs="+", help="run directories (each configuration of a sweep is a method)")
    p.add_argument("--metric", default="return", help="return (default; return/TEAM: one team's), win_rate, or an episode metric's name")
    p.add_argument("--out", default="compare.png", help="overlaid learning curves (PNG); '' for none")
    p.add_argument("--json", help="also write the table as JSON here")
    p.add_argument("--allow-mixed", action="store_true", help="compare runs of different envs or env settings")
    p.set_defaults(func=_compare)


def _crossplay(args) -> int:
    """``jmarl crossplay ENTRY ...``: the matrix of every pairing (one program per policy structure), ratings."""
    from jmarl.tools import crossplay

    if args.overrides:
        raise ConfigError(f"crossplay plays the runs as they were trained; KEY=VALUE {args.overrides} is not taken")
    if args.prior < 0 or args.bootstrap < 1:
        raise ConfigError(f"--prior {args.prior} must be >= 0 and --bootstrap {args.bootstrap} >= 1")
    matrix = crossplay.crossplay(args.entries, args.env, args.episodes, args.seed, args.algo, args.trust_algorithm,
                                 args.allow_changed, args.win)
    ratings = crossplay.write_crossplay(matrix, args.out, args.prior, args.bootstrap)
    groups = len(matrix["programs"])
    print(f"jmarl: {len(matrix['rows'])} {matrix['row_team']} x {len(matrix['cols'])} {matrix['col_team']} policies, "
          f"{args.episodes} episodes per pairing, in {groups} program(s)"
          + ("" if groups == 1 else " (policies of different algorithms or architectures cannot be stacked)"))
    for key in crossplay.panel_order(list(matrix["mean"]), matrix["row_team"], matrix["col_team"]):
        print(crossplay.format_matrix(matrix, key) + "\n")
    print(crossplay.format_ratings(ratings))
    print(f"-> {args.out}/ (crossplay.json, crossplay_episodes.npz, crossplay.png, ratings.json, ratings.png)")
    return 0


def _exploit(args) -> int:
    """``jmarl exploit RUN --team TEAM --steps N``: a best response's gain against RUN's frozen TEAM."""
    from jmarl.tools import crossplay

    out = args.out or f"runs/exploit_{Path(args.run).resolve().name}_{args.team}_{time.strftime('%Y%m%d-%H%M%S')}"
    compile_cache()
    report = crossplay.exploit(args.run, args.team, args.steps, out, args.episodes, args.seed, args.algo,
                               _parse_overrides(args.overrides), args.quiet, args.trust_algorithm, args.allow_changed)
    print(crossplay.format_exploit(report))
    print(f"-> {out}/exploit.json (the best response's run: {report['best_response_run']})")
    return 0


def _add_crossplay_parsers(sub) -> None:
    p = sub.add_parser("crossplay", help="play every pairing of two teams' policies (one vmapped program per "
                       "policy structure): matrix, heat map, Bradley-Terry ratings")
    p.add_argument("entries", nargs="+", help="run directories, RUN#K (member K), RUN/checkpoints/chunk_N "
                   "(a snapshot), random, heuristic")
    p.add_argument("--env", help="the environment (default: the runs'; needed when only references are given)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per pairing (the same starts for all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes (and of the bootstrap)")
    p.add_argument("--out", default="crossplay", help="output directory")
    p.add_argument("--win", help="who wins an episode, TEAM:KEY>VALUE (default per env: mpe_tag "
                   "adversaries:return/adversaries>0, a capture; mpe_adversary agents:return/agents>0)")
    p.add_argument("--prior", type=float, default=1.0, help="virtual games per player in the rating fit")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates of the ratings' CIs")
    _add_algorithm_trust(p)
    p.add_argument("--algo", help="the runs' algorithm file (or module), named again to run its code")
    p.set_defaults(func=_crossplay, takes_settings=True)  # to refuse them, saying why
    p = sub.add_parser("exploit", help="exploitability proxy: train a best response to a run's frozen team and "
                       "report its gain over the run's own policy; KEY=VALUE set the best response's training")
    p.add_argument("run", help="run directory whose --team policy is frozen")
    p.add_argument("--team", required=True, help="the team to freeze; the other team learns the best response")
    p.add_argument("--steps", type=int, required=True, help="env steps of the best response's training")
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes (the same for both policies)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and the evaluation episodes")
    p.add_argument("--out", help="output directory (default runs/exploit_RUN_TEAM_TIME)")
    p.add_argument("--algo", help="train the best response with this algorithm (default: the run's, its settings)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_algorithm_trust(p)
    p.set_defaults(func=_exploit, takes_settings=True)


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
    _add_algorithm_trust(p)
    p.add_argument("--algo", help="the run's algorithm file (or module), named again to run its code")
    p.set_defaults(func=_render, takes_settings=True)


def _add_rollout_parser(sub) -> None:
    p = sub.add_parser("rollout", help="export a trained run's trajectories (npz, PNG) and measure what emerged "
                       "(message entropy and MI, causal value of the channel, roles) into its results.json")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--episodes", type=int, default=64, help="greedy episodes per member")
    p.add_argument("--out", help="trajectories of --member as an .npz (and a PNG of them beside it)")
    p.add_argument("--png", help="where the trajectory plot goes (default: --out with .png)")
    p.add_argument("--member", type=int, default=0, help="population member whose trajectories are exported")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' starts")
    p.add_argument("--no-results", action="store_true", help="print the measures, leave results.json as it is")
    _add_algorithm_trust(p)
    p.add_argument("--algo", help="the run's algorithm file (or module), named again to run its code")
    p.set_defaults(func=_rollout)


def _add_algorithm_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-algorithm", action="store_true",
                   help="run the algorithm file or module a run recorded without naming it again")
    p.add_argument("--allow-changed", action="store_true",
                   help="use an algorithm file whose source changed since the run was trained")


def main_for_file(path: str, argv: Sequence[str] | None = None) -> int:
    """``python my_algo.py [train|sweep] --env ENV KEY=VALUE ...``: the CLI with this algorithm file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("train", "sweep") else "train"
    return main([command, str(Path(path).resolve()), *argv])


def _refuse_resume_conflicts(args, saved: dict, overrides: dict[str, str], sweep: bool) -> None:
    """Raise ConfigError listing every command-line setting that contradicts the run being resumed (a resumed
    run keeps its algorithm, environment, seeds and keys; giving them again is fine when they agree)."""
    from jmarl.train.algorithms import registered_algorithms

    seeds = sorted(set(saved["seeds"]))
    diff = []
    if args.algo and args.algo in registered_algorithms() and args.algo != saved["algo"]:
        diff.append(f"algorithm: {saved['algo']} in the run, {args.algo} given")
    if args.env and args.env != saved["env"]:
        diff.append(f"--env: {saved['env']} in the run, {args.env} given")
    if getattr(args, "seeds_given", False) and args.seeds != len(seeds):
        diff.append(f"--seeds: {len(seeds)} in the run, {args.seeds} given")
    if getattr(args, "seed_given", False) and args.seed != seeds[0]:
        diff.append(f"--seed: {seeds[0]} in the run, {args.seed} given")
    if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        diff.append(f"--out: the run lives in {args.resume}, {args.out} given")
    if sweep and args.samples:
        diff.append(f"--samples {args.samples}: the run's population is fixed")
    if overrides:
        diff.append(f"KEY=VALUE {' '.join(f'{k}={v}' for k, v in overrides.items())}: a resumed run keeps its own "
                    f"(see {args.resume}/config.json)")
    if diff:
        raise ConfigError(f"--resume {args.resume}: the run was started with different settings: {'; '.join(diff)}. "
                          f"Resume it as it was started (`jmarl train --resume {args.resume}`), or train these "
                          f"settings in a new directory (--out)")


def _report(results: dict, run_dir: Path) -> int:
    """Print a run's results; the exit status: 0, or EXIT_DIVERGED (3) where no configuration kept finite."""
    from jmarl.train.run import EXIT_DIVERGED, format_results

    print(format_results(results))
    best = results.get("best")
    if best is None:
        print(f"jmarl: error: every configuration has a diverged member: no final return (see {run_dir}/results.json)",
              file=sys.stderr)
        return EXIT_DIVERGED
    speed = results.get("env_steps_per_second")
    speed = "no steps trained by this command" if speed is None else f"{speed:,.0f} env steps/s"
    print(f"final greedy {results.get('objective', 'return')}: {best['mean']:.2f}   ({speed} after "
          f"{results['compile_seconds']:.1f} s compile)")
    if results.get("diverged"):
        print(f"jmarl: warning: {len(results['diverged'])} member(s) diverged and are excluded from best "
              f"(results.json: diverged)", file=sys.stderr)
    print(f"results saved in {run_dir}/ (config.json, metrics.jsonl, results.json, curve.png, checkpoints/)")
    return 0


def config_listing(algo: str, env: str | None = None, overrides: dict[str, str] | None = None) -> str:
    """Every key of ``algo`` (on ``env``): its type (with the valid range of a hyperparameter), its default, the
    value the algorithm's preset for ``env`` sets, and the value ``overrides`` give. ``jmarl train ALGO --env ENV
    --help`` and ``jmarl config ALGO --env ENV`` print it."""
    import dataclasses

    from jmarl.core.config import field_types, type_name
    from jmarl.core.registry import env_config_class
    from jmarl.train.algorithms import algorithm_module, resolve

    module = algorithm_module(algo)
    ranges = getattr(module, "HPARAM_RANGES", {})
    preset = resolve(algo, env, {}) if env else None
    given = resolve(algo, env, overrides) if env and overrides else None

    def default_of(f):
        if f.default is not dataclasses.MISSING:
            return f.default
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)"

    def section(title: str, cls, prefix: str, value_of) -> list[list[str]]:
        types = field_types(cls)
        rows = [[title]]
        for f in dataclasses.fields(cls):
            tp = type_name(types[f.name]) + (f" in {Interval.parse(ranges[f.name])}" if f.name in ranges else "")
            default = default_of(f)
            row = [f"{prefix}{f.name}", tp, repr(default)]
            if preset is not None:
                p = value_of(preset, f.name, default)
                row.append(repr(p) if p != default else "")
                if given is not None:
                    g = value_of(given, f.name, default)
                    row.append(repr(g) if g != p else "")
            rows.append(row)
        return rows

    head = ["key", "type", "default"] + ([f"{algo} on {env}"] if preset else []) + (["given"] if given else [])
    rows = [head]
    rows += section("static config (fixes shapes; one value per program):", module.Config, "",
                    lambda r, k, d: getattr(r.config, k))
    rows += section("traced hyperparameters (sweepable: KEY=A,B or KEY=log:LOW:HIGH):", module.Hparams, "",
                    lambda r, k, d: float(getattr(r.hparams, k)))
    if env:
        rows += section(f"environment {env!r} (env.KEY=VALUE):", env_config_class(env), "env.",
                        lambda r, k, d: r.env_kwargs.get(k, d))
    widths = [max(len(r[i]) for r in rows if len(r) > 1 and i < len(r)) for i in range(len(head))]
    lines = []
    for r in rows:
        lines.append(r[0] if len(r) == 1 else "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    where = (f"; the column '{algo} on {env}' is the value its preset sets where that differs from the default"
             if env else "; give --env ENV for the environment's keys and the preset's values")
    return (f"{algo}: every key, its type and default{where}" + ("; 'given': your KEY=VALUE" if given else "")
            + "\n" + "\n".join(lines))


def _help(argv: list[str]) -> int:
    """``jmarl train|sweep ALGO [--env ENV] [KEY=VALUE ...] --help`` and ``jmarl config ALGO --env ENV``: the
    command's options (train/sweep), then every config key with its type, default and preset value."""
    command = argv[0]
    rest = [a for a in argv[1:] if a not in ("-h", "--help")]
    parser = build_parser()
    if command != "config":
        sub = next(a for a in parser._subparsers._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[command].print_help()
    args, extra = parser.parse_known_args(["train", *rest])
    if not args.algo:
        if command == "config":
            raise ConfigError("give an algorithm: jmarl config ALGO [--env ENV] [KEY=VALUE ...], e.g. "
                              "`jmarl config ippo --env mpe_spread`")
        print(f"\ngive an algorithm to list its keys: `jmarl {command} ippo --env mpe_spread --help`")
        return 0
    if args.env:
        _check_env_keys(args.env, extra)
    print(("\n" if command != "config" else "") + config_listing(args.algo, args.env, _parse_overrides(extra)))
    return 0


def _check_env_keys(env: str, tokens: Sequence[str]) -> None:
    """Raise for an unknown environment (with close matches) or an unknown ``env.KEY`` (with close matches)."""
    import dataclasses

    from jmarl.core.registry import env_config_class
    from jmarl.train.algorithms import unknown_env_key

    keys = [f.name for f in dataclasses.fields(env_config_class(env))]  # the env's and the message channel's
    for token in tokens:
        key = token.split("=", 1)[0].strip()
        if key.startswith("env.") and key[4:] not in keys:
            raise unknown_env_key(env, key[4:])


def _check_run_arguments(args) -> None:
    """Sizes of ``jmarl train``/``sweep`` options, before anything is resolved or compiled."""
    for option, value, least in [("--seeds", args.seeds, 1), ("--checkpoint-every", args.checkpoint_every, 1),
                                 ("--keep-checkpoints", args.keep_checkpoints, 0), ("--samples", args.samples, 1)]:
        if value is not None and value < least:
            raise ConfigError(f"{option} {value}: must be at least {least}")
    if args.env and not args.resume:
        _check_env_keys(args.env, args.overrides)


def _one_line(e: BaseException) -> str:
    """The message of an error as one line to show (an action check's message out of XLA's runtime error)."""
    text = str(e)
    found = re.search(r"jmarl action check:[^\n]*", text)
    if found:
        return found.group(0)
    return text if isinstance(e, (ConfigError, ValueError)) or type(e).__name__ == "Diverged" else (
        f"{type(e).__name__}: {text.splitlines()[0] if text else ''}")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (what was wrong, and where the valid options are listed) instead
    of the usage block; the subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``jmarl`` command's parser: one subparser per command; errors are one line (``_Parser``)."""
    parser = _Parser(prog="jmarl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [("train", "train one configuration"), ("sweep", "sweep hyperparameters x seeds in one program")]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("algo", nargs="?", help="ippo, mappo, iql, vdn, qmix, maddpg, a registered name, the path "
                       "of an algorithm file (my_ppo.py) or a dotted module; then KEY=VALUE settings (static "
                       "config, hyperparameters, env.KEY). With --resume: the run's algorithm file, named again")
        _add_algorithm_trust(p)
        p.add_argument("--no-compile-cache", action="store_true",
                       help="do not use JAX's persistent compilation cache (~/.cache/jmarl/jax, or "
                            "$JMARL_COMPILE_CACHE; JMARL_COMPILE_CACHE=0 switches it off too)")
        p.add_argument("--metric", action="append", default=[], metavar="FILE.py:FN",
                       help="a per-step metric function fn(state, actions, timestep) -> {name: f32[]}, summed per "
                            "episode and reported with the return (repeatable; MODULE:FN works too)")
        p.add_argument("--env", help="environment name (see `jmarl list`)")
        p.add_argument("--seeds", type=int, default=4 if name == "sweep" else 1, help="seeds per configuration")
        p.add_argument("--seed", type=int, default=0, help="first seed")
        p.add_argument("--out", help="run directory (default runs/ALGO_ENV_TIME)")
        p.add_argument("--resume", help="continue the run in this directory from its newest intact checkpoint")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--wandb", default="offline", choices=["offline", "online", "disabled"])
        p.add_argument("--checkpoint-every", type=int, default=1, help="chunks between checkpoints")
        p.add_argument("--keep-checkpoints", type=int, default=3)
        p.add_argument("--check-actions", action="store_true",
                       help="raise on an action outside its space (docs/env_api.md); slower: a check every step")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        if name == "sweep":
            p.add_argument("--samples", type=int, help="random-search draws for log:/uniform: ranges")
        _add_cluster_options(p)
        p.set_defaults(func=lambda a, sweep=(name == "sweep"): _run(a, sweep), samples=None, takes_settings=True)
    sub.add_parser("list", help="environments and algorithms").set_defaults(func=_list)
    sub.add_parser("config", help="every key of ALGO (--env ENV): type, default, preset value (jmarl config ippo "
                   "--env mpe_spread)", add_help=False)
    _add_render_parser(sub)
    _add_rollout_parser(sub)
    _add_compare_parser(sub)
    _add_crossplay_parsers(sub)
    _add_reproduce_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``jmarl`` command. Exit status: 0 done, 2 an error in what was asked (one ``jmarl: error:`` line;
    ``--debug`` shows the traceback), 3 training diverged (non-finite loss, gradients or parameters), 1 an
    unexpected error, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        if argv and (argv[0] == "config" or (argv[0] in ("train", "sweep") and {"-h", "--help"} & set(argv))):
            return _help(argv)
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        settings = getattr(args, "takes_settings", False)  # KEY=VALUE tokens: set by the commands that read them
        unknown = [t for t in extra if t.startswith("-") or "=" not in t or not settings]
        if unknown:
            how = "; settings are given as KEY=VALUE" if settings else ""
            parser.exit(2, f"jmarl {args.command}: error: unrecognised arguments {unknown}{how} "
                           f"(`jmarl {args.command} --help` lists the options)\n")
        args.overrides = extra
        # Join a cluster first: importing an environment may already touch a device.
        silent = args.command in ("train", "sweep", "reproduce") and _join_cluster(args)
        if args.command in ("train", "sweep"):
            if args.algo and "=" in args.algo and not Path(args.algo).exists():  # argparse took a KEY=VALUE
                args.overrides, args.algo = [args.algo, *args.overrides], None
            # Whether --seeds/--seed were given (not defaulted): a resumed run refuses ones that disagree.
            args.seeds_given = any(a == "--seeds" or a.startswith("--seeds=") for a in argv)
            args.seed_given = any(a == "--seed" or a.startswith("--seed=") for a in argv)
            _check_run_arguments(args)
            if args.check_actions:
                from jmarl.core.env import set_action_checks

                set_action_checks(True)  # read while tracing: on before anything compiles
        if silent:
            args.quiet = True  # another process of a cluster: process 0 shows progress and results
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                return args.func(args)
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("jmarl: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(f"jmarl: error{_process_tag()}: {_one_line(e)}", file=sys.stderr)
        if type(e).__name__ == "Diverged":
            from jmarl.train.run import EXIT_DIVERGED

            return EXIT_DIVERGED
        known = isinstance(e, (ConfigError, ValueError, OSError)) or "jmarl action check:" in str(e) or \
            type(e).__name__ == "CheckpointError"
        if not known:
            print("jmarl: (an unexpected error: run again with --debug for the traceback)", file=sys.stderr)
        return 2 if known else 1

if __name__ == "__main__":
    sys.exit(main())
