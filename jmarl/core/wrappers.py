"""Wrappers: auto-reset that keeps the final observation, episode statistics, and user metrics."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.env import Environment, TimeStep


def tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Pick whole pytrees by a scalar bool (a select, so it is cheap under vmap)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Wrapper(Environment):
    """Forwards everything to ``env``; subclasses override reset/step."""

    _checks_action_values = False  # the wrapped env checks action values (checks mode), once per step

    def __init__(self, env: Environment):
        self.env = env
        self.name = env.name

    @property
    def teams(self):
        return self.env.teams

    @property
    def global_state_shape(self):
        return self.env.global_state_shape

    @property
    def max_steps(self):
        return self.env.max_steps

    @property
    def unwrapped(self) -> Environment:
        return getattr(self.env, "unwrapped", self.env)

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not yet set (e.g. while unpickling): avoid recursing forever
            raise AttributeError(name)
        return getattr(self.env, name)

    def _reset(self, key):
        return self.env.reset(key)

    def _step(self, key, state, actions):
        return self.env.step(key, state, actions)


@struct.dataclass
class Persistent:
    """A part of an env's state that outlives its episodes: ``AutoReset`` carries it from a finished episode's
    last state into the next episode's first state, where everything else is the reset's. An env (or wrapper)
    marks such a field by holding its value in ``Persistent(value)``; ``reset`` starts it. Use: a count of the
    env's transitions for a schedule over training (``jmarl.adapters.jaxmarl``'s shaped-reward annealing)."""

    value: Any


def carry_over(stepped: Any, fresh: Any) -> Any:
    """``fresh`` (a state from ``reset``) with every ``Persistent`` part taken from ``stepped`` (a state of the
    same env, so of the same structure)."""
    persistent = lambda x: isinstance(x, Persistent)  # noqa: E731
    return jax.tree.map(lambda s, f: s if persistent(s) else f, stepped, fresh, is_leaf=persistent)


class AutoReset(Wrapper):
    """Starts a new episode when one ends, keeping what the finished episode's last step observed.

    After a done step, ``obs``/``global_state``/``avail_actions`` are the new episode's first ones;
    ``info["final_obs"]`` ({team: f32[N, *O]}), ``info["final_global_state"]`` (f32[G]) and
    ``info["final_avail_actions"]`` ({team: bool[N, A]}) are the finished episode's last ones, so a learner
    can bootstrap V(final) or max over the available actions of Q(final) at truncation. The state's
    ``Persistent`` parts go on from the finished episode (``carry_over``).
    """

    def _step(self, key, state, actions):
        key_step, key_reset = jax.random.split(key)
        ts, state = self.env.step(key_step, state, actions)
        reset_ts, reset_state = self.env.reset(key_reset)
        done = ts.done
        info = dict(ts.info, final_obs=ts.obs, final_global_state=ts.global_state,
                    final_avail_actions=ts.avail_actions)
        ts = ts.replace(
            obs=tree_select(done, reset_ts.obs, ts.obs),
            global_state=jnp.where(done, reset_ts.global_state, ts.global_state),
            avail_actions=tree_select(done, reset_ts.avail_actions, ts.avail_actions),
            info=info,
        )
        return ts, tree_select(done, carry_over(state, reset_state), state)

    def _reset(self, key):
        ts, state = self.env.reset(key)
        info = dict(ts.info, final_obs=ts.obs, final_global_state=ts.global_state,
                    final_avail_actions=ts.avail_actions)
        return ts.replace(info=info), state


@struct.dataclass
class EpisodeStatsState:
    env_state: Any
    returns: dict[str, jax.Array]  # {team: f32[N]} return so far this episode
    length: jax.Array  # i32[]
    metrics: dict[str, jax.Array]  # {name: f32[]} the env's metrics summed so far this episode


class EpisodeStats(Wrapper):
    """Adds ``info["episode_return"]`` ({team: f32[N]}), ``info["episode_length"]`` (i32[]),
    ``info["episode_done"]`` (bool[]) and ``info["episode_metrics"]`` ({name: f32[]}, the env's per-step
    ``info["metrics"]`` summed over the episode): running totals that include this step, so on a done step
    they are the finished episode's. Place it inside AutoReset so the totals restart with the episode:
    ``AutoReset(EpisodeStats(env))``.

    Metrics: an env (or ``WithMetrics``) that puts ``info["metrics"] = {name: f32[]}`` in every TimeStep
    (zeros on reset) has them summed per episode; report a count per step (collisions) or a value on the
    episode's last step only (landmarks covered at the end). They reach metrics.jsonl (``train/metric/NAME``,
    ``eval/metric/NAME``), results.json (with CIs), wandb and the curves.
    """

    def _reset(self, key):
        ts, env_state = self.env.reset(key)
        returns = jax.tree.map(jnp.zeros_like, ts.reward)
        metrics = {k: jnp.zeros((), jnp.float32) for k in ts.info.get("metrics", {})}
        state = EpisodeStatsState(env_state, returns, jnp.zeros((), jnp.int32), metrics)
        return self._with_info(ts, state), state

    def _step(self, key, state, actions):
        ts, env_state = self.env.step(key, state.env_state, actions)
        returns = jax.tree.map(jnp.add, state.returns, ts.reward)
        step_metrics = ts.info.get("metrics", {})
        metrics = {k: v + jnp.asarray(step_metrics[k], jnp.float32) for k, v in state.metrics.items()}
        state = EpisodeStatsState(env_state, returns, state.length + 1, metrics)
        return self._with_info(ts, state), state

    @staticmethod
    def _with_info(ts: TimeStep, state: EpisodeStatsState) -> TimeStep:
        info = dict(ts.info, episode_return=state.returns, episode_length=state.length, episode_done=ts.done,
                    episode_metrics=state.metrics)
        return ts.replace(info=info)


# fn(state, actions, timestep) -> {name: f32[]}: a metric of one step (``state`` before it, ``actions`` every
# team's, ``timestep`` its result), summed over the episode by EpisodeStats.
MetricFn = Callable[[Any, dict, TimeStep], dict]


class WithMetrics(Wrapper):
    """Adds the user's per-step metrics ``fns`` to ``info["metrics"]`` (beside the env's own), so they are
    summed per episode by ``EpisodeStats`` and flow into training logs and results with no kernel edit::

        def collisions(state, actions, ts):          # any jittable function of one step
            return {"far": (ts.reward["agents"] < -3).sum().astype(jnp.float32)}
        env = WithMetrics(jmarl.make("mpe_spread"), [collisions])

    On the command line: ``jmarl train ippo --env mpe_spread --metric my_metrics.py:collisions``.
    """

    def __init__(self, env: Environment, fns: Sequence[MetricFn]):
        super().__init__(env)
        self.fns = tuple(fns)

    def _names(self, key) -> list[str]:
        ts, state = jax.eval_shape(self.env.reset, key)
        actions = jax.eval_shape(self.env.sample_actions, key)
        names = []
        for fn in self.fns:
            out = jax.eval_shape(fn, state, actions, ts)
            if not isinstance(out, dict) or any(v.shape != () for v in out.values()):
                raise ValueError(f"metric function {getattr(fn, '__name__', fn)} must return a dict of scalars "
                                 f"{{name: f32[]}}; got {out}")
            names += list(out)
        return names

    def _reset(self, key):
        ts, state = self.env.reset(key)
        zeros = {name: jnp.zeros((), jnp.float32) for name in self._names(key)}
        return ts.replace(info=dict(ts.info, metrics={**ts.info.get("metrics", {}), **zeros})), state

    def _step(self, key, state, actions):
        ts, next_state = self.env.step(key, state, actions)
        mine = {}
        for fn in self.fns:
            mine.update({k: jnp.asarray(v, jnp.float32) for k, v in fn(state, actions, ts).items()})
        return ts.replace(info=dict(ts.info, metrics={**ts.info.get("metrics", {}), **mine})), next_state


def team_episode_return(info: Mapping[str, Any]) -> jax.Array:
    """f32[]: sum over every agent of every team of the episode return (the MPE 'team return')."""
    return sum(jnp.sum(r) for r in info["episode_return"].values())
