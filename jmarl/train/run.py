"""Run management: a population (seeds x hyperparameters) trained as one program, cut into chunks.

Between compiled chunks the host writes metrics (JSONL, wandb), draws progress, and checkpoints the whole
runner state; ``resume=True`` continues from the newest intact checkpoint and gives bitwise the same
result as an uninterrupted run. The population axis is sharded over every device.

A run directory holds: ``config.json`` (resolved config, seeds, hyperparameters of every member),
``metrics.jsonl`` (one row per chunk and member), ``checkpoints/``, ``results.json`` (final evaluation
on 10x the episodes, aggregated over seeds), ``marl_eval.json`` and ``curve.png``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jmarl
from jmarl.train import checkpoint
from jmarl.train.algorithms import ResolvedConfig, algorithm_module
from jmarl.core.config import ConfigError
from jmarl.core.registry import make
from jmarl.train.stats import aggregate, marl_eval_json


@dataclasses.dataclass
class Population:
    """Members of a run: ``hparams[i]`` trained with seed ``seeds[i]``; ``config_ids[i]`` groups seeds."""

    hparams: list[Any]
    seeds: list[int]
    config_ids: list[int]

    @classmethod
    def grid(cls, hparam_configs: Sequence[Any], seeds: Sequence[int]) -> "Population":
        members = [(h, s, c) for c, h in enumerate(hparam_configs) for s in seeds]
        return cls([m[0] for m in members], [m[1] for m in members], [m[2] for m in members])

    def __len__(self) -> int:
        return len(self.seeds)

    def stacked(self):
        """(keys [P, 2], hparams with leaves f32[P])."""
        keys = jnp.stack([jax.random.PRNGKey(s) for s in self.seeds])
        hparams = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *self.hparams)
        return keys, hparams


def population_sharding(size: int) -> NamedSharding:
    """Shard the leading (population) axis over as many devices as divide it."""
    devices = jax.devices()
    count = max(d for d in range(1, len(devices) + 1) if size % d == 0)
    return NamedSharding(Mesh(np.array(devices[:count]), ("pop",)), PartitionSpec("pop"))


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _chunk_rows(metrics: dict, pop: Population, chunk: int) -> list[dict]:
    """One JSON row per member: per-update metrics averaged over the chunk, evaluation scalars as they are."""
    rows = []
    for i in range(len(pop)):
        row = {"chunk": chunk, "member": i, "config_id": pop.config_ids[i], "seed": pop.seeds[i]}
        for k, v in metrics.items():
            if k == "eval/episode_returns":
                continue
            v = np.asarray(v[i])
            row[k] = float(v.mean()) if v.ndim else (int(v) if k == "env_steps" else float(v))
        rows.append(row)
    return rows


class _Progress:
    """A tqdm bar over env steps with steps/s and the latest return; silent when quiet."""

    def __init__(self, total: int, quiet: bool, start: int = 0):
        self.bar = None
        if not quiet:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, dynamic_ncols=True,
                            file=sys.stdout, desc="train")

    def update(self, steps: int, rows: list[dict]):
        if self.bar is None:
            return
        ret = np.mean([r.get("eval/return", np.nan) for r in rows])
        self.bar.set_postfix_str(f"eval return {ret:.2f}")
        self.bar.update(steps)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _wandb_run(mode: str, run_dir: Path, resolved: ResolvedConfig, pop: Population):
    if mode == "disabled":
        return None
    import wandb
    return wandb.init(project="jmarl", dir=str(run_dir), mode=mode, name=run_dir.name, reinit="finish_previous",
                      config={**resolved.to_dict(), "seeds": pop.seeds})


def train(resolved: ResolvedConfig, pop: Population, run_dir: str | Path, *, resume: bool = False,
          checkpoint_every: int = 1, keep_checkpoints: int = 3, quiet: bool = False, wandb: str = "offline",
          final_eval_factor: int = 10, on_chunk: Callable[[int, dict], None] | None = None) -> dict:
    """Train every member of ``pop`` in one program; returns the results written to ``results.json``.

    ``on_chunk(chunk, rows)`` is called on the host after each chunk is logged and checkpointed.
    Checkpoints carry the run's training seconds so far, so a resumed run reports the time of every command
    (``earlier_train_seconds``: those before this one; None after a checkpoint older than that clock).
    """
    if wandb not in ("offline", "online", "disabled"):
        raise ConfigError(f"wandb={wandb!r}: choose offline, online or disabled")
    run_dir = Path(run_dir)
    module = algorithm_module(resolved.algo)
    env = make(resolved.env, **resolved.env_kwargs)
    trainer = module.make_train(resolved.config, env)  # validates sizes before anything compiles
    cfg = trainer.config
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"jmarl_version": jmarl.__version__, **resolved.to_dict(), "seeds": pop.seeds,
            "config_ids": pop.config_ids, "member_hparams": [_hparams_dict(h) for h in pop.hparams],
            "env_spec": {t: {"num_agents": team.num_agents, "obs_shape": list(team.obs_shape),
                             "action_space": repr(team.action_space)} for t, team in env.teams.items()}}
    _check_or_write_config(run_dir, meta, resume)

    sharding = population_sharding(len(pop))
    keys, hparams = jax.device_put(pop.stacked(), sharding)
    init = jax.jit(jax.vmap(trainer.init))
    run_chunk = jax.jit(jax.vmap(trainer.run_chunk))
    # Placed like the population so run_chunk's compiled input shardings match on every device count.
    runner = jax.device_put(init(keys, hparams), sharding)

    start_chunk, earlier_s = 0, 0.0  # earlier_s: training seconds of the commands this one resumes
    ckpt_root = run_dir / "checkpoints"
    if resume:
        found = checkpoint.latest_intact(ckpt_root)
        if found is not None:
            path, ckpt_meta = found
            runner = jax.device_put(checkpoint.restore(path, runner), sharding)
            start_chunk = ckpt_meta["chunk"] + 1
            earlier_s = ckpt_meta.get("train_seconds")  # None: saved before runs kept their clock
            if not quiet:
                print(f"jmarl: resumed from {path} (chunk {start_chunk} of {cfg.num_chunks})")
    metrics_path = run_dir / "metrics.jsonl"
    _truncate_metrics(metrics_path, start_chunk)

    steps_per_chunk = cfg.updates_per_chunk * cfg.batch_size * len(pop)
    progress = _Progress(cfg.num_chunks * steps_per_chunk, quiet, start_chunk * steps_per_chunk)
    logger = _wandb_run(wandb, run_dir, resolved, pop)
    t_compile = time.perf_counter()
    compiled = run_chunk.lower(runner, hparams).compile()
    compile_s = time.perf_counter() - t_compile
    t0 = time.perf_counter()
    for chunk in range(start_chunk, cfg.num_chunks):
        runner, metrics = compiled(runner, hparams)
        metrics = _host(metrics)
        rows = _chunk_rows(metrics, pop, chunk)
        with open(metrics_path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        if logger is not None:
            logger.log({k: float(np.mean([r[k] for r in rows])) for k in rows[0] if "/" in k}
                       | {"env_steps": rows[0]["env_steps"]})
        progress.update(steps_per_chunk, rows)
        if (chunk + 1) % checkpoint_every == 0 or chunk + 1 == cfg.num_chunks:
            clock = None if earlier_s is None else earlier_s + time.perf_counter() - t0  # unknown stays unknown
            checkpoint.save(ckpt_root, chunk, runner, {"env_steps": rows[0]["env_steps"], "train_seconds": clock},
                            keep=keep_checkpoints)
        if on_chunk is not None:
            on_chunk(chunk, rows)
    train_s = time.perf_counter() - t0
    progress.close()

    # Final evaluation of the last parameters on 10x as many episodes, in one vmapped call.
    final_episodes = cfg.eval_episodes * final_eval_factor
    evaluate = jax.jit(jax.vmap(functools.partial(trainer.evaluate, num_episodes=final_episodes)))
    final = _host(evaluate(runner.params, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)))
    results = _summarise(run_dir, resolved, pop, final, env, compile_s, train_s,
                         (cfg.num_chunks - start_chunk) * steps_per_chunk,
                         {"resumed_at_chunk": start_chunk, "earlier_train_seconds": earlier_s})
    if logger is not None:
        logger.summary.update({"final_return": results["aggregate"]["mean"]})
        logger.finish()
    return results


def _hparams_dict(h) -> dict:
    return {f.name: float(getattr(h, f.name)) for f in dataclasses.fields(h)}


def _check_or_write_config(run_dir: Path, meta: dict, resume: bool):
    path = run_dir / "config.json"
    if resume and path.exists():
        old = json.loads(path.read_text())
        keys = ("algo", "env", "env_kwargs", "config", "member_hparams", "seeds")
        diff = [k for k in keys if old.get(k) != json.loads(json.dumps(meta)).get(k)]
        if diff:
            raise ConfigError(f"--resume {run_dir}: the run was started with different {diff}; "
                              f"resume with the same settings or use a new directory")
    path.write_text(json.dumps(meta, indent=1))


def _truncate_metrics(path: Path, start_chunk: int):
    """Drop rows of chunks after the checkpoint being resumed from (they will be recomputed)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["chunk"] < start_chunk]
    path.write_text("".join(r + "\n" for r in rows))


def _summarise(run_dir, resolved, pop, final, env, compile_s, train_s, steps, resumed: dict) -> dict:
    """results.json (per-configuration aggregates over seeds, best configuration), marl_eval.json, curve.png."""
    final_returns = np.asarray(final["eval/episode_returns"])  # [P, episodes]
    per_member = final_returns.mean(-1)
    configs = []
    for c in sorted(set(pop.config_ids)):
        members = [i for i in range(len(pop)) if pop.config_ids[i] == c]
        agg = aggregate(per_member[members])
        configs.append({"config_id": c, "hparams": _hparams_dict(pop.hparams[members[0]]),
                        "seeds": [pop.seeds[i] for i in members], "returns": per_member[members].tolist(), **agg})
        if "eval/win_rate" in final:  # envs that report wins (SMAX): the final win rate of each seed too
            configs[-1]["win_rates"] = np.asarray(final["eval/win_rate"])[members].tolist()
    best = max(configs, key=lambda r: r["mean"])
    results = {"algo": resolved.algo, "env": resolved.env, "final_episodes": int(final_returns.shape[1]),
               "configs": configs, "best": best, "aggregate": aggregate(per_member),
               "compile_seconds": compile_s, "train_seconds": train_s,
               "env_steps_per_second": steps / max(train_s, 1e-9), **resumed,
               "devices": [str(d) for d in jax.devices()]}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    _export_marl_eval(run_dir, resolved, pop, rows, final_returns)
    from jmarl.train.plots import learning_curves
    learning_curves(rows, run_dir / "curve.png", title=f"{resolved.algo} on {resolved.env}")
    return results


def _export_marl_eval(run_dir, resolved, pop, rows, final_returns):
    chunks = sorted({r["chunk"] for r in rows})
    steps = np.array([next(r["env_steps"] for r in rows if r["chunk"] == c) for c in chunks])
    means = np.full((len(pop), len(chunks), 1), np.nan)
    for r in rows:
        means[r["member"], chunks.index(r["chunk"]), 0] = r.get("eval/return", np.nan)
    out = marl_eval_json(resolved.env, json.dumps(resolved.env_kwargs, sort_keys=True) or "default",
                         resolved.algo, steps, means, final_returns)
    (run_dir / "marl_eval.json").write_text(json.dumps(out))


def format_results(results: dict) -> str:
    """Human-readable summary: one line per configuration, then the best."""
    lines = []
    for c in results["configs"]:
        hp = ", ".join(f"{k}={v:g}" for k, v in c["hparams"].items())
        lines.append(f"  config {c['config_id']}: return {c['mean']:.2f} "
                     f"[95% CI {c['mean_lo']:.2f}, {c['mean_hi']:.2f}] over {c['runs']} seeds ({hp})")
    b = results["best"]
    lines.append(f"best: config {b['config_id']} with greedy return {b['mean']:.2f} "
                 f"({results['final_episodes']} episodes per seed)")
    return "\n".join(lines)
