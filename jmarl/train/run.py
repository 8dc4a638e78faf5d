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
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jmarl
from jmarl.train import checkpoint, distributed
from jmarl.train.files import (CONFIG_FILE, LOCK_FILE, METRICS_FILE, RESULTS_FILE, _CONFIG_KEYS,
                               RunDirectoryError, read_config, read_metrics, read_results, write_json)
from jmarl.core.wrappers import WithMetrics
from jmarl.train.algorithms import ResolvedConfig, algorithm_module, metric_function
from jmarl.core.config import ConfigError, check_ranges
from jmarl.core.registry import make
from jmarl.train.stats import aggregate, marl_eval_json
from jmarl.agents.rollout import episodes_key, higher_is_better, objective_key, resolve_objective


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
    """Shard the leading (population) axis of an unpadded population over as many devices as divide it (for
    ``jax.device_put(pop.stacked(), ...)`` in Python). ``train`` pads instead and uses every device of every
    host: ``jmarl.train.distributed.population_layout``."""
    devices = jax.devices()
    count = max(d for d in range(1, len(devices) + 1) if size % d == 0)
    return NamedSharding(Mesh(np.array(devices[:count]), ("pop",)), PartitionSpec("pop"))


def _chunk_rows(metrics: dict, pop: Population, chunk: int) -> list[dict]:
    """One JSON row per member: per-update metrics averaged over the chunk, evaluation scalars as they are."""
    rows = []
    for i in range(len(pop)):
        row = {"chunk": chunk, "member": i, "config_id": pop.config_ids[i], "seed": pop.seeds[i]}
        for k, v in metrics.items():
            if k.startswith("eval/episode_"):  # each evaluation episode's values: results.json summarises them
                continue
            v = np.asarray(v[i])
            row[k] = float(v.mean()) if v.ndim else (int(v) if k == "env_steps" else float(v))
        rows.append(row)
    return rows


class _Progress:
    """A tqdm bar over env steps with steps/s and the latest evaluation of ``key`` (the objective's); silent
    when quiet."""

    def __init__(self, total: int, quiet: bool, start: int = 0, key: str = "eval/return"):
        self.bar, self.key = None, key
        if not quiet:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, dynamic_ncols=True,
                            file=sys.stdout, desc="train")

    def update(self, steps: int, rows: list[dict]):
        if self.bar is None:
            return
        ret = np.mean([r.get(self.key, np.nan) for r in rows])
        self.bar.set_postfix_str(f"{self.key} {ret:.2f}")
        self.bar.update(steps)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _wandb_run(mode: str, run_dir: Path, resolved: ResolvedConfig, pop: Population):
    if mode == "disabled" or _wandb_disabled_by_env():
        return None
    import wandb
    return wandb.init(project="jmarl", dir=str(run_dir), mode=mode, name=run_dir.name, reinit="finish_previous",
                      config={**resolved.to_dict(), "seeds": pop.seeds})


def _wandb_disabled_by_env() -> bool:
    """wandb's own switches: WANDB_MODE=disabled or WANDB_DISABLED=true turn logging off, files included."""
    return (os.environ.get("WANDB_MODE", "").lower() == "disabled"
            or os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"))


# ----------------------------------------------------------------------------------------------------
# What fails loudly: divergence, damaged or reused run directories, two writers
# ----------------------------------------------------------------------------------------------------
EXIT_DIVERGED = 3  # the CLI's exit status when training went non-finite (2: a configuration error)


class Diverged(RuntimeError):
    """Training went non-finite (NaN or inf in a loss, the gradients or the parameters). ``members``: one dict
    per diverged member (member, config_id, seed, hparams, update: the first non-finite update, 1-based,
    chunk, what). Raised between chunks; the checkpoints saved before it are kept (the last one is finite)."""

    def __init__(self, message: str, members: list[dict]):
        super().__init__(message)
        self.members = members


def _differences(old, new, where: str = "") -> list[str]:
    """``key: A in the run, B now`` for every leaf where two JSON-like values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k, "(unset)"), new.get(k, "(unset)"), f"{where}.{k}" if where else k)]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and where != "seeds":
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{where}[{i}]")]
    if old == new:
        return []
    if isinstance(old, list) and isinstance(new, list) and where != "seeds":
        return [f"{where}: {len(old)} entries in the run, {len(new)} now"]
    short = lambda v: repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."  # noqa: E731
    return [f"{where}: {short(old)} in the run, {short(new)} now"]


def _setting_defaults(resolved: ResolvedConfig) -> dict:
    """{"config": ..., "hparams": ...}: the defaults of the algorithm's Config and Hparams fields, as JSON; "speed_only":
    its Config's fields that change speed, not results."""
    fields = lambda cls: {f.name: f.default for f in dataclasses.fields(cls)  # noqa: E731
                          if f.default is not dataclasses.MISSING}
    return json.loads(json.dumps({"config": fields(type(resolved.config)), "hparams": fields(type(resolved.hparams)),
                                  "speed_only": list(getattr(type(resolved.config), "speed_only", ()))},
                                 default=str))


def _adopt_new_defaults(old: dict, new: dict, defaults: dict) -> None:
    """Settings that jmarl gained after a run was started are absent from its config.json; where the resumed
    run keeps such a setting at its default, the run's config takes it (in place), so that an older run
    resumes. ``defaults``: {"config": {key: default}, "hparams": {key: default}} as JSON values."""
    for section, members in (("config", None), ("hparams", "member_hparams")):
        for key, default in defaults.get(section, {}).items():
            if key in old.get(section, {}) or new.get(section, {}).get(key, default) != default:
                continue
            old.setdefault(section, {})[key] = default
            for member in (old.get(members, []) if members else []):
                if isinstance(member, dict) and key not in member:
                    member[key] = default


class RunDirectory:
    """A run directory with one writer. ``open(meta, resume)`` takes the lock, a ``.jmarl.lock`` file holding
    the owner's pid and host, locked with ``flock`` (the kernel releases it when the owner dies, so the lock a
    killed run leaves is recognised as stale and taken over); then refuses what would mix two runs:

    - without ``resume``, a directory that is not empty (say how to resume, or choose a new directory);
    - with ``resume``, a run started with other settings (the differences listed), or nothing intact to
      resume from; a finished run is reported as finished and left as it is.

    Use as a context manager (``with RunDirectory(path) as d: d.open(meta, resume)``): the lock is released
    on the way out, also on errors and KeyboardInterrupt.
    """

    # What a resumed run must share with the one in the directory.
    COMPARED = ("algo", "env", "env_kwargs", "config", "hparams", "seeds", "config_ids", "member_hparams")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    # --- the lock ------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the directory's lock or raise RunDirectoryError naming the process that holds it."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"{self.path} is a file, not a directory: choose a run directory (--out)")
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK_FILE
        try:
            import fcntl
        except ImportError:  # no flock (Windows): a pid file, stale when its process is gone
            fcntl = None
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            previous = os.read(fd, 4096).decode(errors="replace").strip()
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                elif previous and _pid_alive(previous):
                    raise BlockingIOError
            except BlockingIOError:
                os.close(fd)
                raise RunDirectoryError(f"{self.path} is in use by another jmarl process ({previous or 'pid unknown'}); "
                                        f"wait for it to finish, or choose another directory (--out)") from None
            # The file may have been unlinked by its last owner between our open and flock: lock the one there.
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if previous:
            print(f"jmarl: {self.path}: taking over a stale lock ({previous}: that process is gone)", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                 .encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is None:
            return
        # Unlink first, then release: a process that opened the old file re-checks the inode after flock.
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    # --- opening ---------------------------------------------------------------------------------------
    def open(self, meta: dict, resume: bool, num_chunks: int, defaults: dict | None = None) -> bool:
        """Lock, check and write ``config.json``; returns whether there is a run to continue (``resume`` into
        a directory holding one). ``resume`` into an empty or missing directory starts a new run."""
        self.lock()
        held = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)
        has_run = (self.path / CONFIG_FILE).exists()
        if not resume and held:
            what = "a run" if has_run else "files"
            raise RunDirectoryError(
                f"{self.path} already holds {what} ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}); "
                + (f"continue it with `jmarl train --resume {self.path}` (resume=True), or " if has_run else "")
                + "choose a new directory (--out)")
        if resume and held and not has_run:
            raise RunDirectoryError(f"--resume {self.path}: not a jmarl run directory (no {CONFIG_FILE}; it holds "
                                    f"{', '.join(held[:5])})")
        if has_run:
            old = read_config(self.path)
            new = json.loads(json.dumps(meta))  # as it would be saved: tuples as lists
            _adopt_new_defaults(old, new, defaults or {})
            for key in (defaults or {}).get("speed_only", ()):  # how fast, not what: a run resumes across them
                for meta_ in (old, new):
                    meta_.get("config", {}).pop(key, None)
            diff = [d for k in self.COMPARED for d in _differences(old.get(k), new.get(k), k)]
            if diff:
                raise RunDirectoryError(
                    f"--resume {self.path}: the run was started with different settings: {'; '.join(diff[:8])}"
                    f"{f' (and {len(diff) - 8} more)' if len(diff) > 8 else ''}. Resume it as it was started, or "
                    f"train these settings in a new directory (--out)")
        if not has_run or not self.finished(num_chunks):
            stale = checkpoint.remove_unfinished(self.checkpoints)  # we hold the lock: no save is in progress
            if stale:
                print(f"jmarl: removed {len(stale)} unfinished checkpoint director{'y' if len(stale) == 1 else 'ies'} "
                      f"(a save was killed): {', '.join(p.name for p in stale)}", file=sys.stderr)
            write_json(self.path / CONFIG_FILE, meta)  # atomic: a kill leaves the old file or the new, never half
        return has_run

    def finished(self, num_chunks: int) -> bool:
        """Whether the run wrote its results after the checkpoint of its last chunk (nothing is left to train)."""
        chunks = checkpoint.chunk_dirs(self.checkpoints)
        return (self.path / RESULTS_FILE).exists() and bool(chunks) and chunks[-1][0] + 1 >= num_chunks

    def resume_point(self) -> tuple[Path, dict] | None:
        """The newest intact checkpoint, or None where the run stopped before saving any (and logged nothing);
        raises RunDirectoryError where there are checkpoints but none intact, or rows but no checkpoint."""
        found = checkpoint.latest_intact(self.checkpoints)  # reports every damaged one on stderr
        if found is not None:
            return found
        damaged = checkpoint.chunk_dirs(self.checkpoints)
        if damaged:
            raise RunDirectoryError(
                f"--resume {self.path}: nothing intact to resume from: all {len(damaged)} checkpoint(s) are damaged "
                f"or partial (reported above). The run's files are left as they are; start a new run (--out)")
        if read_metrics(self.path / METRICS_FILE):
            raise RunDirectoryError(
                f"--resume {self.path}: nothing to resume from: {METRICS_FILE} has rows but no checkpoint was saved "
                f"(the run stopped before its first checkpoint). Start a new run (--out)")
        return None

    def check_metrics(self, resume_chunk: int, members: int) -> None:
        """Read ``metrics.jsonl`` before anything compiles (a damaged line is an error naming it), and warn,
        naming them, of chunks before ``resume_chunk`` that lack a member's row: the checkpoint resumed from
        covers them, so they are not recomputed and the learning curve has a gap there."""
        path = self.path / METRICS_FILE
        have = {(r["chunk"], r["member"]) for r in read_metrics(path, warn=False)}
        gaps = [c for c in range(resume_chunk) if any((c, m) not in have for m in range(members))]
        if gaps:
            print(f"jmarl: warning: {path} lacks rows of chunk(s) {gaps}, which the checkpoint resumed from covers "
                  f"(the file was damaged): they are not recomputed, and the learning curve has a gap there",
                  file=sys.stderr)

    def keep_metrics_before(self, chunk: int) -> list[dict]:
        """Drop the metric rows of chunk ``chunk`` on (they will be recomputed); returns the rows kept."""
        path = self.path / METRICS_FILE
        rows = [r for r in read_metrics(path) if r["chunk"] < chunk]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, path)
        return rows


def _pid_alive(owner: str) -> bool:
    """Whether the ``pid N ...`` of a lock file (written by ``RunDirectory.lock``) is a live process."""
    try:
        os.kill(int(owner.split()[1]), 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _check_train_arguments(module, resolved: ResolvedConfig, pop: Population, checkpoint_every: int,
                           keep_checkpoints: int, final_eval_factor: int, on_diverge: str) -> None:
    """Raise ConfigError, before anything is built or compiled, for arguments and hyperparameters out of range."""
    if len(pop) == 0:
        raise ConfigError("the population is empty: give at least one seed (--seeds N, N >= 1)")
    if checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every={checkpoint_every} must be at least 1 (--checkpoint-every N, N >= 1)")
    if keep_checkpoints < 0:
        raise ConfigError(f"keep_checkpoints={keep_checkpoints} must be at least 0 (0 keeps every checkpoint)")
    if final_eval_factor < 1:
        raise ConfigError(f"final_eval_factor={final_eval_factor} must be at least 1")
    if on_diverge not in ("stop", "mark"):
        raise ConfigError(f"on_diverge={on_diverge!r}: choose 'stop' or 'mark'")
    if hasattr(resolved.config, "check_schedule"):
        resolved.config.check_schedule(resolved.algo)  # sizes below 1 would divide by zero below
    # Every hyperparameter finite, and in its algorithm's range (``HPARAM_RANGES``) where it declares one.
    ranges = {f.name: "(-inf, inf)" for f in dataclasses.fields(module.Hparams)}
    ranges.update(getattr(module, "HPARAM_RANGES", {}))
    for i, h in enumerate(pop.hparams):
        what = f"{resolved.algo} hyperparameters" + (f" (member {i}, config {pop.config_ids[i]})" if len(pop) > 1 else "")
        check_ranges(h, ranges, what)


def _nonfinite_what(mask: int) -> list[str]:
    from jmarl.agents.rollout import NONFINITE_NAMES
    return [name for bit, name in NONFINITE_NAMES.items() if mask & bit]


def _divergence_message(diverged: list[dict], num_updates: int, population: int, last_ckpt: Path | None) -> str:
    lines = [f"training diverged: {len(diverged)} of {population} member(s) went non-finite"]
    for d in diverged:
        hp = ", ".join(f"{k}={v:g}" for k, v in d["hparams"].items())
        lines.append(f"  member {d['member']} (config {d['config_id']}, seed {d['seed']}; {hp}): non-finite "
                     f"{', '.join(d['what'])} from update {d['update']} of {num_updates} (chunk {d['chunk']})")
    lines.append(f"The last checkpoint, {last_ckpt}, is from before (--resume continues from it)" if last_ckpt
                 else "No checkpoint was saved before it.")
    lines.append("Lower the learning rate or max_grad_norm, or check the environment's rewards.")
    return "\n".join(lines)


def train(resolved: ResolvedConfig, pop: Population, run_dir: str | Path, *, resume: bool = False,
          checkpoint_every: int = 1, keep_checkpoints: int = 3, quiet: bool = False, wandb: str = "offline",
          final_eval_factor: int = 10, on_chunk: Callable[[int, dict], None] | None = None,
          metrics: Sequence[str | Callable] = (), on_diverge: str = "stop",
          on_start: Callable[[], None] | None = None) -> dict:
    """Train every member of ``pop`` in one program; returns the results written to ``results.json``.

    ``on_start()`` is called on the host once the arguments, environment and sizes have been checked, before the
    run directory is opened or anything compiles (a caller announces the run there, never before a refusal).
    ``on_chunk(chunk, rows)`` is called on the host after each chunk is logged and checkpointed. ``metrics``
    are the user's per-step metric functions (or ``"file.py:fn"`` specs; see ``jmarl.core.wrappers.WithMetrics``),
    reported beside the env's own in metrics.jsonl, results.json (with CIs), wandb and ``curve_<name>.png``.
    Checkpoints carry the run's training seconds so far, so a resumed run reports the time of every command
    (``earlier_train_seconds``: those before this one; None after a checkpoint older than that clock) and the
    machines they ran on (``machines``: segments of chunks, see ``add_segment``).

    Fails loudly (README, "What fails loudly"): arguments and hyperparameters out of range raise ConfigError
    before anything compiles; the run directory is locked, and refused when it holds another run (see
    ``RunDirectory``). A member whose loss, gradients or parameters go non-finite raises ``Diverged`` between
    chunks (``on_diverge="stop"``: any member; ``"mark"``, for sweeps: only when every member has, the others
    training on, the diverged ones listed in the results and never chosen as "best").
    """
    if wandb not in ("offline", "online", "disabled"):
        raise ConfigError(f"wandb={wandb!r}: choose offline, online or disabled")
    run_dir = Path(run_dir)
    module = algorithm_module(resolved.algo)
    _check_train_arguments(module, resolved, pop, checkpoint_every, keep_checkpoints, final_eval_factor, on_diverge)
    env = make(resolved.env, **resolved.env_kwargs)
    if metrics:
        env = WithMetrics(env, [metric_function(m) for m in metrics])
    trainer = module.make_train(resolved.config, env)  # validates sizes before anything compiles
    cfg = trainer.config
    # The headline (results.json, best configuration) and a warm start, both checked before anything compiles.
    objective = resolve_objective(getattr(cfg, "objective", ""), env)
    warm = _warm_start(cfg, resolved, trainer, pop) if getattr(cfg, "init_from", "") and not resume else None
    meta = {"jmarl_version": jmarl.__version__, **resolved.to_dict(), "objective": objective, "seeds": pop.seeds,
            "config_ids": pop.config_ids, "member_hparams": [_hparams_dict(h) for h in pop.hparams],
            "metrics": [m if isinstance(m, str) else getattr(m, "__qualname__", repr(m)) for m in metrics],
            "env_spec": {t: {"num_agents": team.num_agents, "obs_shape": list(team.obs_shape),
                             "action_space": repr(team.action_space)} for t, team in env.teams.items()}}
    if on_start is not None:
        on_start()
    directory = RunDirectory(run_dir)
    with directory:  # holds the run directory's lock until training is over (or fails)

        def open_run() -> dict:  # process 0 alone (distributed.from_writer): lock, checks, config.json
            continuing = directory.open(meta, resume, cfg.num_chunks, _setting_defaults(resolved))
            if continuing and directory.finished(cfg.num_chunks):
                try:  # a damaged one is named, before "nothing to do"
                    finished = read_results(run_dir)
                except RunDirectoryError as e:
                    raise RunDirectoryError(f"{e}. Every chunk is trained: delete {RESULTS_FILE} and resume again "
                                            f"to recompute the final evaluation from the last checkpoint") from None
                if not quiet:
                    print(f"jmarl: {run_dir} is finished (all {cfg.num_chunks} chunks trained, {RESULTS_FILE} "
                          f"written); nothing to do, nothing changed")
                return {"finished": finished}
            # Where to resume from, found before anything compiles (None: from chunk 0); nothing intact is an error.
            found = directory.resume_point() if continuing else None
            if found is not None:
                directory.check_metrics(found[1]["chunk"] + 1, len(pop))
            if continuing and found is None and not quiet:
                print(f"jmarl: {run_dir} stopped before its first checkpoint: starting from chunk 0")
            return {"found": None if found is None else [str(found[0]), found[1]]}

        opened = distributed.from_writer(open_run, f"opening {run_dir}")
        if "finished" in opened:
            return opened["finished"]
        distributed.check_shared(run_dir / CONFIG_FILE)  # every host reads the directory process 0 wrote
        found = None if opened["found"] is None else (Path(opened["found"][0]), opened["found"][1])
        if getattr(cfg, "init_from", "") and warm is None and found is None:  # resumed before its first checkpoint
            warm = _warm_start(cfg, resolved, trainer, pop)
        return _train_chunks(directory, resolved, pop, trainer, env, found, checkpoint_every, keep_checkpoints,
                             quiet or not distributed.is_writer(), wandb, final_eval_factor, on_chunk, on_diverge,
                             objective, warm)


def initial_runner(trainer, keys: jax.Array, hparams: Any, sharding: NamedSharding, warm: dict | None = None):
    """Every member's runner before its first update: ``trainer.init`` vmapped over ``keys`` [P, 2] and
    ``hparams`` (leaves [P]), placed by ``sharding``; with ``warm`` ({team: parameters}: a warm start) those
    teams' parameters replaced in the same program (``jmarl.train.load.apply_warm_start``; they are constants
    of it)."""
    from jmarl.train.load import apply_warm_start  # load imports this module

    def init(keys, hparams):
        runner = jax.vmap(trainer.init)(keys, hparams)
        return runner if warm is None else apply_warm_start(runner, warm)

    return jax.jit(init, out_shardings=sharding)(keys, hparams)


def _warm_start(cfg, resolved: ResolvedConfig, trainer, pop: Population) -> dict:
    """{team: initial parameters} from the run ``cfg.init_from`` names (``jmarl.train.load.warm_start_params``),
    checked against the shapes of this run's (traced by ``jax.eval_shape``: nothing compiles)."""
    from jmarl.train.load import warm_start_params  # load imports this module

    like = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), jax.tree.map(jnp.asarray, pop.hparams[0])).params
    return warm_start_params(cfg, resolved.env, like)


def _train_chunks(directory: RunDirectory, resolved: ResolvedConfig, pop: Population, trainer, env,
                  found: tuple[Path, dict] | None,
                  checkpoint_every: int, keep_checkpoints: int, quiet: bool, wandb: str, final_eval_factor: int,
                  on_chunk, on_diverge: str, objective: str = "return", warm: dict | None = None) -> dict:
    """The chunk loop of ``train`` in a locked, checked run directory. ``warm``: {team: parameters} every member
    starts from (a warm start; a resumed checkpoint replaces them)."""
    run_dir, cfg = directory.path, trainer.config
    # Every device of every process trains members; copies pad the population to a multiple of the device count
    # and are dropped (``layout.members``) from everything logged, checked or reported.
    layout = distributed.population_layout(len(pop))
    if not quiet and (layout.padded > layout.size or len(jax.devices()) > 1):
        print(f"jmarl: {layout.describe()}")
    keys, hparams = layout.place(pop.stacked())  # [P', 2], leaves f32[P']: P' = layout.padded
    # Placed like the population so run_chunk's compiled input shardings match on every device count.
    run_chunk = jax.jit(jax.vmap(trainer.run_chunk))
    runner = initial_runner(trainer, keys, hparams, layout.sharding, warm)

    start_chunk, earlier_s = 0, 0.0  # earlier_s: training seconds of the commands this one resumes
    machines: list[dict] = []  # the machines of the commands this one resumes (add_segment)
    ckpt_root = directory.checkpoints
    last_ckpt = None
    if found is not None:
        last_ckpt, ckpt_meta = found
        # Saved on another device count (other padding, or before padding: P slots): re-laid out on restore.
        saved = ckpt_meta.get("padded_population", len(pop))
        runner = layout.repad(checkpoint.restore(last_ckpt, layout.saved_like(runner, saved)))
        start_chunk = ckpt_meta["chunk"] + 1
        earlier_s = ckpt_meta.get("train_seconds")  # None: saved before runs kept their clock
        # Saved before checkpoints named their machines: the chunks so far ran on one not recorded.
        machines = ckpt_meta.get("machines") or [{"machine": None, "chunks": [0, start_chunk],
                                                   "train_seconds": earlier_s}]
        if not quiet:
            print(f"jmarl: resumed from {last_ckpt} (chunk {start_chunk} of {cfg.num_chunks})")
    metrics_path = run_dir / METRICS_FILE
    kept_rows = distributed.from_writer(lambda: directory.keep_metrics_before(start_chunk), f"reading {metrics_path}")
    # Members that went non-finite before the checkpoint resumed from (their rows say so; "mark" runs on).
    diverged: dict[int, dict] = {}
    for r in kept_rows:
        if r.get("nonfinite") and r["member"] not in diverged and "nonfinite_update" in r:
            i = r["member"]
            diverged[i] = {"member": i, "config_id": pop.config_ids[i], "seed": pop.seeds[i],
                           "hparams": _hparams_dict(pop.hparams[i]), "update": r["nonfinite_update"],
                           "chunk": r["chunk"], "what": _nonfinite_what(r["nonfinite"])}

    steps_per_chunk = cfg.updates_per_chunk * cfg.batch_size * len(pop)
    progress = _Progress(cfg.num_chunks * steps_per_chunk, quiet, start_chunk * steps_per_chunk,
                         objective_key(objective))
    logger = _wandb_run(wandb if distributed.is_writer() else "disabled", run_dir, resolved, pop)
    try:
        t_compile = time.perf_counter()
        compiled = run_chunk.lower(runner, hparams).compile()
        compile_s = time.perf_counter() - t_compile
        t0 = time.perf_counter()
        here = machine()

        def machines_until(end: int, seconds: float) -> list[dict]:  # with this command's chunks [start_chunk, end)
            return machines if end <= start_chunk else add_segment(
                machines, {"machine": here, "chunks": [start_chunk, end], "train_seconds": seconds})

        for chunk in range(start_chunk, cfg.num_chunks):
            runner, chunk_metrics = compiled(runner, hparams)
            chunk_metrics = layout.members(distributed.gather(chunk_metrics))  # every member, on every process
            # i32[P, U]: what went non-finite in each update (jmarl.agents.rollout.nonfinite_mask); 0: finite.
            nonfinite = np.asarray(chunk_metrics.pop("health/nonfinite"))
            rows = _chunk_rows(chunk_metrics, pop, chunk)
            new = []
            for i, row in enumerate(rows):
                row["nonfinite"] = int(np.bitwise_or.reduce(nonfinite[i]))
                if row["nonfinite"] and i not in diverged:
                    u = int(np.argmax(nonfinite[i] != 0))
                    row["nonfinite_update"] = chunk * cfg.updates_per_chunk + u + 1  # 1-based, over the run
                    diverged[i] = {"member": i, "config_id": pop.config_ids[i], "seed": pop.seeds[i],
                                   "hparams": _hparams_dict(pop.hparams[i]), "update": row["nonfinite_update"],
                                   "chunk": chunk, "what": _nonfinite_what(int(nonfinite[i][u]))}
                    new.append(i)
            if distributed.is_writer():
                with open(metrics_path, "a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
            if logger is not None:
                logger.log({k: float(np.mean([r[k] for r in rows])) for k in rows[0] if "/" in k}
                           | {"env_steps": rows[0]["env_steps"]})
            progress.update(steps_per_chunk, rows)
            if new and (on_diverge == "stop" or len(diverged) == len(pop)):
                # Stop before saving: the checkpoints kept are from before the divergence.
                raise Diverged(_divergence_message([diverged[i] for i in sorted(diverged)], cfg.num_updates,
                                                   len(pop), last_ckpt), [diverged[i] for i in sorted(diverged)])
            if new and not quiet:
                print(f"jmarl: warning: member(s) {new} went non-finite; they are excluded from the results' best "
                      f"(see {METRICS_FILE}: nonfinite)", file=sys.stderr)
            if (chunk + 1) % checkpoint_every == 0 or chunk + 1 == cfg.num_chunks:
                clock = None if earlier_s is None else earlier_s + time.perf_counter() - t0  # unknown stays unknown
                last_ckpt = checkpoint.save(ckpt_root, chunk, runner,
                                            {"env_steps": rows[0]["env_steps"], "train_seconds": clock,
                                             "padded_population": layout.padded,
                                             "machines": machines_until(chunk + 1, time.perf_counter() - t0)},
                                            keep=keep_checkpoints)
            if on_chunk is not None:
                on_chunk(chunk, rows)
        train_s = time.perf_counter() - t0
        trained_on = machines_until(cfg.num_chunks, train_s)
    except BaseException:
        progress.close()
        if logger is not None:
            logger.finish(exit_code=1)
        raise
    progress.close()

    # Final evaluation of the last parameters on 10x as many episodes, in one vmapped call.
    final_episodes = cfg.eval_episodes * final_eval_factor
    evaluate = jax.jit(jax.vmap(functools.partial(trainer.evaluate, num_episodes=final_episodes)))
    final_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    final = layout.members(distributed.gather(evaluate(runner.params, final_keys)))  # every member, every process
    results = _summarise(run_dir, resolved, pop, final, env, compile_s, train_s,
                         (cfg.num_chunks - start_chunk) * steps_per_chunk,
                         {"resumed_at_chunk": start_chunk, "earlier_train_seconds": earlier_s, "machines": trained_on,
                          "diverged": [diverged[i] for i in sorted(diverged)],
                          "processes": jax.process_count(), "padded_population": layout.padded}, objective)
    if logger is not None:
        logger.summary.update({"final_return": (results["aggregate"] or {}).get("mean")})
        logger.finish()
    return results


def machine() -> str:
    """CPU model and cores (or the accelerator), jax version and backend: the machine a run trains on."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        pass
    total = os.cpu_count() or 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    where = f"{total}-core CPU" + (f", pinned to {cores} of them" if cores < total else "")  # taskset
    dev = jax.devices()[0]
    return f"{cpu}, {where}; jax {jax.__version__}, backend {jax.default_backend()} ({dev.device_kind})"


def add_segment(segments: list[dict], segment: dict) -> list[dict]:
    """``segments`` (the machines a run trained on, in order: ``{"machine": str | None, "chunks": [first,
    end), "train_seconds": float | None}``; machine None: not recorded) with ``segment`` after them, merged into
    the last one when it ran on the same machine (seconds add up; an unknown count stays unknown)."""
    if segments and segment["machine"] is not None and segments[-1]["machine"] == segment["machine"]:
        last, seconds = segments[-1], (segments[-1]["train_seconds"], segment["train_seconds"])
        merged = {"machine": last["machine"], "chunks": [last["chunks"][0], segment["chunks"][1]],
                  "train_seconds": None if None in seconds else sum(seconds)}
        return segments[:-1] + [merged]
    return segments + [segment]


def _hparams_dict(h) -> dict:
    return {f.name: float(getattr(h, f.name)) for f in dataclasses.fields(h)}


def summarise_configs(final: dict, pop: Population, objective: str, gone: set[int] = frozenset()) -> dict:
    """What results.json says of the final evaluation ``final`` (leaves [P, ...]; per episode [P, E]): per
    configuration, the objective's value of every seed (``scores``: its per-episode values averaged) with
    mean / median / IQM and 95% CIs over seeds, every team's return the same way (``teams``), the win rate
    and episode metrics; ``best``, the configuration whose mean is best by the objective; the same aggregates
    over every member (``aggregate``, ``teams``). Members in ``gone`` (diverged) have no score (None) and are
    left out of every aggregate; a configuration with one is never best."""
    # A diverged member's parameters are not a policy: it has no score (NaN here, None in results.json).
    finite = np.array([i not in gone for i in range(len(pop))])
    per_episode = np.where(finite[:, None], np.asarray(final[episodes_key(objective)]), np.nan)  # [P, E]
    per_member = per_episode.mean(-1)
    teams = {k.removeprefix("eval/episode_returns/"): np.where(finite, np.asarray(v).mean(-1), np.nan)
             for k, v in final.items() if k.startswith("eval/episode_returns/")}  # {team: [P]}
    summed = np.where(finite, np.asarray(final["eval/episode_returns"]).mean(-1), np.nan) \
        if "eval/episode_returns" in final else None  # the teams' sum, where it means something (one goal)
    none = {"runs": 0, "mean": None}  # every seed diverged
    configs = []
    for c in sorted(set(pop.config_ids)):
        members = [i for i in range(len(pop)) if pop.config_ids[i] == c]
        config = {"config_id": c, "hparams": _hparams_dict(pop.hparams[members[0]]),
                  "seeds": [pop.seeds[i] for i in members], "scores": _json_floats(per_member[members])}
        if summed is not None:
            config["returns"] = _json_floats(summed[members])
        config["diverged_members"] = [i for i in members if not finite[i]]
        config.update(_aggregate_finite(per_member[members]) or none)
        config["teams"] = {t: {"values": _json_floats(v[members]), **(_aggregate_finite(v[members]) or none)}
                           for t, v in teams.items()}
        if "eval/win_rate" in final:  # envs that report wins (SMAX): the final win rate of each seed too
            config["win_rates"] = np.asarray(final["eval/win_rate"])[members].tolist()
        # Episode metrics (the env's info["metrics"] and the user's): per seed, and aggregated with CIs.
        config["metrics"] = {k.removeprefix("eval/metric/"): {
            "values": np.asarray(v)[members].tolist(), **aggregate(np.asarray(v)[members])}
            for k, v in final.items() if k.startswith("eval/metric/")}
        configs.append(config)
    return {"objective": objective, "higher_is_better": higher_is_better(objective),
            "final_episodes": int(per_episode.shape[1]), "configs": configs,
            "best": best_config([c for c in configs if not c["diverged_members"]], objective),
            "aggregate": _aggregate_finite(per_member), "teams": {t: _aggregate_finite(v) for t, v in teams.items()}}


def best_config(configs: Sequence[dict], objective: str) -> dict | None:
    """The configuration (results.json ``configs`` entries, none diverged) whose mean is best by ``objective``
    (highest; lowest for a ``-`` objective); None when there is none."""
    sign = 1.0 if higher_is_better(objective) else -1.0
    return max(configs, key=lambda c: sign * c["mean"]) if configs else None


def _summarise(run_dir, resolved, pop, final, env, compile_s, train_s, steps, resumed: dict,
               objective: str = "return") -> dict:
    """results.json (``summarise_configs``: per-configuration aggregates over seeds of the objective and of
    every team, the best configuration), marl_eval.json, curve.png (the objective), curve_teams.png (every
    team's return, where there are several), curve_NAME.png (each episode metric) and, where the evaluations
    played fixed references (``eval_opponents``), curve_references.png (each side against each reference)."""
    gone = {d["member"] for d in resumed.get("diverged", [])}
    summary = summarise_configs(final, pop, objective, gone)
    results = {"algo": resolved.algo, "env": resolved.env, **summary,
               "compile_seconds": compile_s, "train_seconds": train_s,
               "env_steps_per_second": steps / max(train_s, 1e-9) if steps else None, **resumed,
               "devices": [str(d) for d in jax.devices()]}
    if not distributed.is_writer():  # in a cluster, process 0 writes the run directory; the others just return
        return results
    write_json(run_dir / RESULTS_FILE, results)  # atomic: a kill never leaves half a results.json
    rows = read_metrics(run_dir / METRICS_FILE)
    per_episode = np.where(np.array([i not in gone for i in range(len(pop))])[:, None],
                           np.asarray(final[episodes_key(objective)]), np.nan)
    _export_marl_eval(run_dir, resolved, pop, rows, per_episode, objective_key(objective))
    from jmarl.train.plots import config_curves, learning_curves, reference_curves
    title = f"{resolved.algo} on {resolved.env}"
    learning_curves(rows, run_dir / "curve.png", title=title, metric=objective_key(objective))
    if len(summary["teams"]) > 1:
        learning_curves(rows, run_dir / "curve_teams.png", title=title,
                        metric=[f"eval/return/{t}" for t in summary["teams"]])
    for name in sorted({k for r in rows for k in r if k.startswith("eval/metric/")}):
        learning_curves(rows, run_dir / f"curve_{name.removeprefix('eval/metric/')}.png", title=title, metric=name)
    reference_curves(config_curves(rows), run_dir / "curve_references.png", title=title)  # none without references
    return results


def _aggregate_finite(scores: np.ndarray) -> dict | None:
    """``aggregate`` over the finite scores (diverged members are NaN); None when there are none."""
    scores = np.asarray(scores, np.float64)
    kept = scores[np.isfinite(scores)]
    return aggregate(kept) if kept.size else None


def _json_floats(x: np.ndarray) -> list:
    """Floats for JSON, with None for NaN (a diverged member) rather than the non-standard NaN token."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(x, np.float64)]


def _export_marl_eval(run_dir, resolved, pop, rows, final_returns, key: str = "eval/return"):
    """marl_eval.json of the objective: ``key`` after every chunk, its per-episode values at the end."""
    chunks = sorted({r["chunk"] for r in rows})
    steps = np.array([next(r["env_steps"] for r in rows if r["chunk"] == c) for c in chunks])
    means = np.full((len(pop), len(chunks), 1), np.nan)
    for r in rows:
        means[r["member"], chunks.index(r["chunk"]), 0] = r.get(key, np.nan)
    out = marl_eval_json(resolved.env, json.dumps(resolved.env_kwargs, sort_keys=True) or "default",
                         resolved.algo, steps, means, final_returns)
    (run_dir / "marl_eval.json").write_text(json.dumps(out))


def format_results(results: dict) -> str:
    """Human-readable summary: one line per configuration (its objective; every team's return where there are
    several), then the best."""
    lines = []
    label = results.get("objective", "return")  # runs from before objectives were declared: the return
    for c in results["configs"]:
        hp = ", ".join(f"{k}={v:g}" for k, v in c["hparams"].items())
        gone = c.get("diverged_members") or []
        note = f"; diverged: member(s) {gone}, excluded from best" if gone else ""
        if c.get("mean") is None:
            lines.append(f"  config {c['config_id']}: no score, every seed diverged ({hp})")
        else:
            lines.append(f"  config {c['config_id']}: {label} {c['mean']:.2f} [95% CI {c['mean_lo']:.2f}, "
                         f"{c['mean_hi']:.2f}] over {c['runs']} seeds{note} ({hp})")
            teams = c.get("teams", {})
            if len(teams) > 1:
                lines.append("    per team: " + "; ".join(
                    f"return/{t} {v['mean']:.2f} [{v['mean_lo']:.2f}, {v['mean_hi']:.2f}]"
                    for t, v in teams.items() if v.get("mean") is not None))
    for d in results.get("diverged", []):
        lines.append(f"  member {d['member']} (config {d['config_id']}, seed {d['seed']}) went non-finite "
                     f"({', '.join(d['what'])}) at update {d['update']}")
    b = results["best"]
    if b is None:
        lines.append("best: none: every configuration has a diverged member")
    else:
        lines.append(f"best: config {b['config_id']} with greedy {label} {b['mean']:.2f} "
                     f"({results['final_episodes']} episodes per seed)")
    return "\n".join(lines)
