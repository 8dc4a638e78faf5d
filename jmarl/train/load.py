"""Policies outside training: ``jmarl.load(run_dir)`` returns a jittable policy for the env it was trained on
(used by evaluation, rendering and fixed-policy opponents)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.train import checkpoint
from jmarl.train.run import read_config
from jmarl.train.algorithms import ResolvedConfig, algorithm_module
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.opponents import Opponent, set_run_opponent, with_fixed_teams
from jmarl.core.config import ConfigError
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


def load(run_dir: str | Path, member: int = 0, greedy: bool = True, algorithm: str | None = None,
         trust: bool = False, allow_changed: bool = False) -> Policy:
    """Load population ``member`` of the run in ``run_dir`` from its newest intact checkpoint.

    A run whose algorithm is a file or module (not built in, nor registered in this process) runs that code
    only when ``algorithm`` names it again or ``trust`` is set; a file whose source changed since the run needs
    ``allow_changed`` (see ``jmarl.train.algorithms.trusted_algorithm``)."""
    run_dir = Path(run_dir)
    meta = read_config(run_dir)  # names the directory or file, and what is wrong with it
    if not 0 <= member < len(meta["seeds"]):
        raise ValueError(f"member={member}: the run in {run_dir} has members 0..{len(meta['seeds']) - 1}")
    resolved = ResolvedConfig.from_dict(meta, algorithm, trust, allow_changed, where=f"the run in {run_dir}")
    # The run's fixed teams (jmarl.agents.opponents) play inside the env it acts in, as in training; built
    # once here and handed to make_train, which keeps an env that already plays them.
    cfg = resolved.config
    env = with_fixed_teams(make(resolved.env, **resolved.env_kwargs), getattr(cfg, "fixed_teams", ()),
                           getattr(cfg, "fixed_policy", "random"))
    trainer = algorithm_module(resolved.algo).make_train(cfg, env)
    found = checkpoint.latest_intact(run_dir / "checkpoints")
    if found is None:
        raise checkpoint.CheckpointError(f"no intact checkpoint under {run_dir / 'checkpoints'}")
    population = len(meta["seeds"])
    keys = jnp.zeros((population, 2), jnp.uint32)
    hparams = jax.tree.map(lambda x: jnp.zeros((population,), jnp.float32), resolved.hparams)
    like = jax.eval_shape(jax.vmap(trainer.init), keys, hparams)
    params = jax.tree.map(lambda x: x[member], _restore_params(found[0], like.params))
    hidden_like = getattr(like, "hidden", {})

    def init_hidden(batch: int):
        return jax.tree.map(lambda x: jnp.zeros((batch,) + x.shape[2:], x.dtype), hidden_like)

    def act(key: jax.Array, timestep: TimeStep, hidden, starts: jax.Array):
        hidden, actions, _ = trainer.policy(params, hidden, timestep, starts, key, greedy)
        return hidden, actions

    return Policy(env, params, resolved, act, init_hidden)


def _restore_params(path: Path, like: Any) -> Any:
    """The ``params`` of a checkpointed runner state, shaped like ``like`` (leaves [P, ...]). Only the parameters
    are read, so a policy loads whatever else the run kept (env wrappers' states, user metrics, buffers)."""
    import orbax.checkpoint as ocp

    try:
        saved = ocp.StandardCheckpointer().restore(Path(path).absolute())["params"]
    except Exception as e:  # orbax raises many types for unreadable data
        raise checkpoint.CheckpointError(f"checkpoint {path} could not be loaded: {type(e).__name__}: {e}") from e
    leaves, want = jax.tree.leaves(saved), jax.tree.leaves(like)
    if [np.shape(x) for x in leaves] != [x.shape for x in want]:
        raise checkpoint.CheckpointError(f"checkpoint {path}: its parameters do not have the shapes this config "
                                         f"builds (was the algorithm file edited? see allow_changed)")
    return jax.tree.unflatten(jax.tree.structure(like), [jnp.asarray(x, w.dtype) for x, w in zip(leaves, want)])


def checkpoint_opponent(env: Environment, team: str, run_dir: str) -> Opponent:
    """Greedy actions of ``team``'s policy in the saved run ``run_dir`` (member 0). The run's config is
    checked against ``env`` before its checkpoint is read."""
    resolved = ResolvedConfig.from_dict(read_config(run_dir), where=f"fixed_policy={run_dir}")
    saved = make(resolved.env, **resolved.env_kwargs)
    saved_fixed = getattr(resolved.config, "fixed_teams", ())
    where = f"fixed_policy={run_dir}"
    if saved.name != env.name:
        raise ConfigError(f"{where}: the run was trained on {saved.name}, not {env.name}")
    if team not in saved.teams or team in saved_fixed:
        learnt = [t for t in saved.teams if t not in saved_fixed]
        raise ConfigError(f"{where}: team {team!r} did not learn in that run; its learning teams are {learnt}")
    mine, theirs = env.teams[team], saved.teams[team]
    for field in ("num_agents", "obs_shape", "action_space"):
        if getattr(mine, field) != getattr(theirs, field):
            raise ConfigError(f"{where}: team {team!r} has {field} {getattr(theirs, field)} in that run but "
                              f"{getattr(mine, field)} here (that run's env kwargs: {resolved.env_kwargs})")
    policy = load(run_dir)

    def act(key, env_state, ts: TimeStep, hidden, starts):
        # The loaded policy is batched over envs: act on a batch of one (its hidden state keeps that axis).
        batch = jax.tree.map(lambda x: x[None], ts)
        hidden, actions = policy.act(key, batch, hidden, starts[None])
        return hidden, actions[team][0]

    return Opponent(lambda: policy.init_hidden(1), act)


set_run_opponent(checkpoint_opponent)

