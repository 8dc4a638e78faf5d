"""The algorithm contract, written once: what an algorithm module provides and what the run machinery
(``jmarl train`` / ``sweep`` / ``--resume``, ``jmarl.load``, ``jmarl render``, ``jmarl reproduce``) relies on.

An algorithm is a Python module (a built-in name such as ``ippo``, a file path such as ``my_ppo.py``, or a
dotted module path) that provides:

- ``Config``: a frozen dataclass of **static** settings (they fix shapes: changing one recompiles), deriving
  from ``RunConfig`` below so the shared fields and the chunked schedule are declared once;
- ``Hparams``: a ``flax.struct`` dataclass of **traced** float hyperparameters; a population of
  seeds x hyperparameters is ``jax.vmap`` over a stacked ``Hparams`` (one compile, one program);
- ``PRESETS``: ``{key: overrides}``, applied before command-line overrides; keys are an env name
  (``"mpe_spread"``), ``"algo/env"``, ``"env[key=value]"``, ``"algo/env[key=value]"`` and ``"continuous"``
  (see ``jmarl.train.algorithms.resolve``);
- ``make_train(config, env) -> Trainer``: pure functions of one run (below). It validates ``config``
  against ``env`` and raises ``ConfigError`` before anything compiles.
- optionally ``HPARAM_RANGES``: ``{hyperparameter: "(0, inf)"}``, the interval each must lie in; the run checks
  every population member's on the host before compiling (every hyperparameter must be finite in any case).

The run keeps a ``RunnerState``-like NamedTuple (the algorithm's own type) with at least ``params``
({team: that team's parameters}), ``key`` (PRNG key) and ``update`` (i32[] updates done), which is what
``chunked_run``, the checkpoints and warm starts (``init_from``) handle; a ``target_params`` field of the same
tree (target networks) is warm-started with ``params``. Each algorithm file ends with::

    if __name__ == "__main__":
        from jmarl.tools.cli import main_for_file
        raise SystemExit(main_for_file(__file__))

so ``python my_ppo.py --env mpe_spread lr=1e-3`` is ``jmarl train my_ppo.py --env mpe_spread lr=1e-3``.

Shape legend: P population members, B envs of a batch, N agents in a team.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax

from jmarl.core.config import ChunkedSchedule, ConfigError
from jmarl.core.env import Environment, TimeStep


@dataclass(frozen=True)
class RunConfig(ChunkedSchedule):
    """Static fields every algorithm's ``Config`` shares (derive from this; redeclare a field only to change
    its default). The budget is ``total_timesteps`` env steps, taken ``num_envs`` x ``num_steps`` per update
    and cut into ``num_evals`` chunks, each ending with a greedy evaluation on ``eval_episodes`` episodes."""

    num_envs: int = 64
    num_steps: int = 128
    total_timesteps: int = 1_000_000
    num_evals: int = 10  # evaluations over the run; the run is cut into this many chunks
    eval_episodes: int = 32
    fixed_teams: tuple[str, ...] = ()  # teams that do not learn: they play fixed_policy (jmarl.agents.opponents)
    fixed_policy: str = "random"  # "random", "heuristic" (the env's scripted policy) or a run directory
    # The headline of results.json, sweeps and reproduce rows, and what "best" maximises: return/TEAM, return,
    # win_rate or metric/NAME, a leading "-" to minimise; "" takes the env's (jmarl.agents.rollout.resolve_objective).
    objective: str = ""
    # Warm start (jmarl.train.load.warm_start_params): the run directory whose member 0 gives the initial
    # parameters of init_from_teams, each "TEAM" or "SOURCE_TEAM:TEAM" (empty: every learning team, same names).
    init_from: str = ""
    init_from_teams: tuple[str, ...] = ()
    # Fields that change how fast a run computes, never what it computes (up to floating-point summation order):
    # a run resumes across a change of them, and a results row is not marked as trained at other settings.
    speed_only: ClassVar[tuple[str, ...]] = ()


# act(params, hidden, timestep [B], starts bool[B], key, greedy) -> (hidden, {team: actions [B, N, ...]}, extras)
PolicyFn = Callable[[Any, Any, TimeStep, jax.Array, jax.Array, bool], tuple[Any, dict, Any]]


class Trainer(NamedTuple):
    """Pure functions of one training run; vmap ``init``/``run_chunk``/``train``/``evaluate`` over keys [P]
    and hparams (leaves [P]) for a population.

    - ``init(key, hparams) -> runner``
    - ``run_chunk(runner, hparams) -> (runner, metrics)``: ``config.updates_per_chunk`` updates, then a
      greedy evaluation of the params just updated; metrics are per-update values f32[U] and the
      evaluation's scalars (``eval/return/{team}``, ``eval/win_rate``, ``eval/metric/{name}``, ...).
    - ``train(key, hparams) -> (runner, metrics)``: the whole run in one program (metrics [num_chunks, ...]).
    - ``evaluate(params, key, num_episodes=config.eval_episodes) -> metrics`` (with each episode's values
      f32[num_episodes]: ``eval/episode_returns/{team}``, ...; ``jmarl.agents.rollout.evaluate_episodes``).
    - ``policy(params, hidden, timestep, starts, key, greedy) -> (hidden, actions, extras)``: acting, batched
      over envs; ``hidden`` has the layout of ``runner.hidden`` without the population axis (``()`` when the
      algorithm keeps no recurrent state).
    """

    config: Any
    env: Environment  # the env the algorithm acts in (wrapped: auto-reset, episode statistics, fixed teams)
    init: Callable[[jax.Array, Any], Any]
    run_chunk: Callable[[Any, Any], tuple[Any, dict]]
    train: Callable[[jax.Array, Any], tuple[Any, dict]]
    evaluate: Callable[..., dict]
    policy: PolicyFn


@runtime_checkable
class AlgorithmModule(Protocol):
    """What ``jmarl.train.algorithms`` looks for in an algorithm module (see the module doc)."""

    Config: type
    Hparams: type
    PRESETS: dict[str, dict[str, Any]]

    def make_train(self, config: Any, env: Environment) -> Trainer: ...


def check_algorithm(module: ModuleType, where: str) -> None:
    """Raise ConfigError naming what ``module`` (loaded from ``where``) lacks of the contract."""
    missing = [name for name in ("Config", "Hparams", "PRESETS", "make_train") if not hasattr(module, name)]
    if missing:
        raise ConfigError(f"algorithm {where}: missing {missing}; an algorithm module provides Config (static "
                          f"dataclass), Hparams (traced pytree), PRESETS (dict) and make_train(config, env) "
                          f"(see jmarl/train/contract.py)")
    problems = []
    if not (dataclasses.is_dataclass(module.Config) and module.Config.__dataclass_params__.frozen):
        problems.append("Config is not a frozen dataclass")
    elif not issubclass(module.Config, ChunkedSchedule):
        problems.append("Config does not derive from jmarl.train.contract.RunConfig")
    else:
        fields = {f.name for f in dataclasses.fields(module.Config)}
        lacking = sorted({f.name for f in dataclasses.fields(RunConfig)} - fields)
        if lacking:
            problems.append(f"Config lacks the shared fields {lacking} (derive from RunConfig)")
    if not dataclasses.is_dataclass(module.Hparams):
        problems.append("Hparams is not a dataclass (use flax.struct.dataclass)")
    else:
        hints = {f.name: f.type for f in dataclasses.fields(module.Hparams)}
        not_float = [k for k, t in hints.items() if t not in (float, "float")]
        if not_float:
            problems.append(f"Hparams fields {not_float} are not floats (traced leaves are floats)")
    if not isinstance(module.PRESETS, dict):
        problems.append("PRESETS is not a dict")
    if not callable(module.make_train):
        problems.append("make_train is not callable")
    if problems:
        raise ConfigError(f"algorithm {where}: " + "; ".join(problems) + " (see jmarl/train/contract.py)")
