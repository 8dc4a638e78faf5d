"""Policies outside training: ``jmarl.load(run_dir)`` returns a jittable policy for the env it was trained on
(used by evaluation, rendering and fixed-policy opponents)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jmarl.train import checkpoint
from jmarl.train.algorithms import ResolvedConfig, algorithm_module
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.opponents import with_fixed_teams
from jmarl.core.registry import make


class Policy(NamedTuple):
    """A trained policy. ``act`` is pure and jittable, batched over envs [B]:
    ``act(key, timestep, hidden, starts bool[B]) -> (hidden, {team: actions [B, N, ...]})``; ``starts``
    marks timesteps that begin an episode (recurrent state is reset there)."""

    env: Environment
    params: Any
    resolved: ResolvedConfig
    act: Callable[..., tuple[Any, dict]]
    init_hidden: Callable[[int], Any]


def load(run_dir: str | Path, member: int = 0, greedy: bool = True) -> Policy:
    """Load population ``member`` of the run in ``run_dir`` from its newest intact checkpoint."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    if not 0 <= member < len(meta["seeds"]):
        raise ValueError(f"member={member}: the run in {run_dir} has members 0..{len(meta['seeds']) - 1}")
    resolved = ResolvedConfig.from_dict(meta)
    env = make(resolved.env, **resolved.env_kwargs)
    trainer = algorithm_module(resolved.algo).make_train(resolved.config, env)
    found = checkpoint.latest_intact(run_dir / "checkpoints")
    if found is None:
        raise checkpoint.CheckpointError(f"no intact checkpoint under {run_dir / 'checkpoints'}")
    population = len(meta["seeds"])
    keys = jnp.zeros((population, 2), jnp.uint32)
    hparams = jax.tree.map(lambda x: jnp.zeros((population,), jnp.float32), resolved.hparams)
    like = jax.eval_shape(jax.vmap(trainer.init), keys, hparams)
    runner = checkpoint.restore(found[0], like)
    params = jax.tree.map(lambda x: x[member], runner.params)
    hidden_like = getattr(like, "hidden", {})

    def init_hidden(batch: int):
        return jax.tree.map(lambda x: jnp.zeros((batch,) + x.shape[2:], x.dtype), hidden_like)

    def act(key: jax.Array, timestep: TimeStep, hidden, starts: jax.Array):
        hidden, actions, _ = trainer.policy(params, hidden, timestep, starts, key, greedy)
        return hidden, actions

    # The run's fixed teams (jmarl.agents.opponents) play inside the env it acts in, as in training.
    cfg = resolved.config
    env = with_fixed_teams(env, getattr(cfg, "fixed_teams", ()), getattr(cfg, "fixed_policy", "random"))
    return Policy(env, params, resolved, act, init_hidden)
