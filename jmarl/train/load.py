"""Policies outside training: ``jmarl.load(run_dir)`` returns a jittable policy for the env it was trained on
(used by evaluation, rendering and fixed-policy opponents)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.train import checkpoint
from jmarl.train.files import read_config
from jmarl.train.algorithms import ResolvedConfig, algorithm_module
from jmarl.core.env import Environment, TimeStep
from jmarl.agents.league import param_owner
from jmarl.agents.opponents import Opponent, set_run_opponent, with_fixed_teams
from jmarl.core.config import ConfigError
from jmarl.core.registry import make


class Policy(NamedTuple):
    """A trained policy. ``act`` is pure and jittable, batched over envs [B]:
    ``act(key, timestep, hidden, starts bool[B]) -> (hidden, {team: actions [B, N, ...]})``; ``starts``
    marks timesteps that begin an episode (recurrent state is reset there). ``apply(params, key, timestep,
    hidden, starts)`` is the same with the parameters as an argument: any of this structure (another member or
    snapshot of a run of this program, or traced ones stacked along an axis and vmapped, as crossplay does)."""

    env: Environment
    params: Any
    resolved: ResolvedConfig
    act: Callable[..., tuple[Any, dict]]
    init_hidden: Callable[[int], Any]
    apply: Callable[..., tuple[Any, dict]]
    checkpoint: Path | None = None  # the checkpoint the parameters came from (RUN/checkpoints/chunk_NNNNNN)


def load(run_dir: str | Path, member: int = 0, greedy: bool = True, algorithm: str | None = None,
         trust: bool = False, allow_changed: bool = False, checkpoint_dir: str | Path | None = None) -> Policy:
    """Load population ``member`` of the run in ``run_dir`` from its newest intact checkpoint (or from
    ``checkpoint_dir``, one of its checkpoints ``RUN/checkpoints/chunk_NNNNNN``: an earlier snapshot).

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
    if checkpoint_dir is not None:
        found = (Path(checkpoint_dir), checkpoint.verify(checkpoint_dir))  # names a partial or damaged one
    else:
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

    def apply(params, key: jax.Array, timestep: TimeStep, hidden, starts: jax.Array):
        hidden, actions, _ = trainer.policy(params, hidden, timestep, starts, key, greedy)
        return hidden, actions

    def act(key: jax.Array, timestep: TimeStep, hidden, starts: jax.Array):
        return apply(params, key, timestep, hidden, starts)

    return Policy(env, params, resolved, act, init_hidden, apply, found[0])


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
    where = f"fixed_policy={run_dir}"
    check_run_team(ResolvedConfig.from_dict(read_config(run_dir), where=where), env, team, where)
    return loaded_opponent(load(run_dir), team)


def check_run_team(resolved: ResolvedConfig, env: Environment, team: str, where: str) -> None:
    """Raise ConfigError (``where``: what named the run) unless the run ``resolved`` was trained on ``env``'s
    environment with ``team`` learning, in the spaces ``team`` has in ``env``."""
    saved = make(resolved.env, **resolved.env_kwargs)
    saved_fixed = getattr(resolved.config, "fixed_teams", ())
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


def loaded_opponent(policy: Policy, team: str, params: Any = None) -> Opponent:
    """``team`` of a loaded policy as an ``Opponent`` (acting on the base env's TimeStep, which has every team's
    observations), with the policy's own parameters or ``params`` of the same structure (traced ones too)."""
    params = policy.params if params is None else params

    def act(key, env_state, ts: TimeStep, hidden, starts):
        # The loaded policy is batched over envs: act on a batch of one (its hidden state keeps that axis).
        batch = jax.tree.map(lambda x: x[None], ts)
        hidden, actions = policy.apply(params, key, batch, hidden, starts[None])
        return hidden, actions[team][0]

    return Opponent(lambda: policy.init_hidden(1), act)


# ----------------------------------------------------------------------------------------------------
# Warm starts: a run's teams start from the parameters of a saved run (config ``init_from``)
# ----------------------------------------------------------------------------------------------------
def warm_start_params(config: Any, env_name: str, like: dict[str, Any]) -> dict[str, Any]:
    """The initial parameters ``config.init_from`` gives this run: ``{team: parameters}`` of member 0 of the run
    in that directory (its newest intact checkpoint), for each team ``config.init_from_teams`` names (``"TEAM"``
    or ``"SOURCE_TEAM:TEAM"``; none: every learning team of this run, from the team of the same name).

    ``env_name`` is this run's environment (as resolved: ``mpe_tag``, ``jaxmarl:NAME``) and ``like`` the shapes
    of its initial ``params`` (``jax.eval_shape`` of ``trainer.init``, without a population axis). Raises
    ConfigError, before anything compiles, for a source run of another environment, a team that did not learn
    there or does not learn here, and a parameter tree of another structure or shape (naming the first leaf
    that differs)."""
    where = f"init_from={config.init_from}"
    try:
        meta = read_config(config.init_from)
    except ConfigError as e:  # names the directory, and what it lacks
        raise ConfigError(f"init_from: {e}") from None
    saved = ResolvedConfig.from_dict(meta, where=where)
    if saved.env != env_name:
        raise ConfigError(f"{where}: that run trained on {saved.env}, this one on {env_name}; warm starts take "
                          f"parameters from a run of the same environment")
    saved_fixed = getattr(saved.config, "fixed_teams", ())
    learnt = [t for t in make(saved.env, **saved.env_kwargs).teams if t not in saved_fixed]
    pairs: dict[str, str] = {}  # this run's team -> the source run's
    for spec in config.init_from_teams or tuple(like):
        source, _, team = spec.rpartition(":")
        source = source or team
        team = param_owner(team, getattr(config, "share_teams", ()))  # teams that share a policy: its one name
        if team not in like:
            raise ConfigError(f"{where}: init_from_teams entry {spec!r}: {team!r} is not a learning team of this "
                              f"run; its learning teams are {list(like)} (write SOURCE_TEAM:TEAM to map names)")
        if source not in learnt:
            raise ConfigError(f"{where}: init_from_teams entry {spec!r}: team {source!r} did not learn in that "
                              f"run; its learning teams are {learnt}")
        if team in pairs:
            raise ConfigError(f"{where}: init_from_teams names team {team!r} twice")
        pairs[team] = source
    # A run whose teams shared one policy (share_teams) keeps it under the first one's name.
    params = load(config.init_from).params
    pairs = {team: param_owner(source, getattr(saved.config, "share_teams", ())) for team, source in pairs.items()}
    for team, source in pairs.items():
        mismatch = _first_mismatch(params[source], like[team])
        if mismatch:
            raise ConfigError(f"{where}: team {source!r} of that run does not fit team {team!r} here: {mismatch} "
                              f"(that run: {saved.algo}, env kwargs {saved.env_kwargs})")
    return {team: params[source] for team, source in pairs.items()}


def _first_mismatch(theirs: Any, mine: Any) -> str | None:
    """Where two parameter trees first differ (a leaf only one has, or its shape or dtype), or None."""
    def leaves(tree):
        return {"/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path): leaf
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    a, b = leaves(theirs), leaves(mine)
    for name in [*b, *(n for n in a if n not in b)]:
        if name not in a:
            return f"leaf {name} is missing in that run"
        if name not in b:
            return f"leaf {name} is not in this run's parameters"
        if tuple(np.shape(a[name])) != tuple(b[name].shape):
            return f"leaf {name} has shape {tuple(np.shape(a[name]))} there, {tuple(b[name].shape)} here"
        if jnp.result_type(a[name]) != b[name].dtype:
            return f"leaf {name} has dtype {jnp.result_type(a[name])} there, {b[name].dtype} here"
    return None


def apply_warm_start(runner: Any, warm: dict[str, Any]) -> Any:
    """``runner`` (leaves [P, ...]: a population) with every member's ``params[team]``, and ``target_params[team]``
    where the algorithm keeps target networks, set to ``warm[team]`` (leaves without the population axis). The
    optimiser state stays as initialised (fresh): Adam's moments start at zero whatever the parameters."""
    def put(tree: dict) -> dict:
        return {**tree, **{team: jax.tree.map(lambda old, new: jnp.broadcast_to(jnp.asarray(new, old.dtype), old.shape),
                                              tree[team], value) for team, value in warm.items()}}

    runner = runner._replace(params=put(runner.params))
    if isinstance(getattr(runner, "target_params", None), dict):
        runner = runner._replace(target_params=put(runner.target_params))
    return runner


set_run_opponent(checkpoint_opponent)

