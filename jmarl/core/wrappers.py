"""Wrappers: auto-reset that keeps the final observation, and episode statistics."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.env import Environment, TimeStep


def tree_select(pred: jax.Array, on_true, on_false):
    """Pick whole pytrees by a scalar bool (a select, so it is cheap under vmap)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Wrapper(Environment):
    """Forwards everything to ``env``; subclasses override reset/step."""

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


class AutoReset(Wrapper):
    """Starts a new episode when one ends, keeping what the finished episode's last step observed.

    After a done step, ``obs``/``global_state``/``avail_actions`` are the new episode's first ones;
    ``info["final_obs"]`` ({team: f32[N, *O]}), ``info["final_global_state"]`` (f32[G]) and
    ``info["final_avail_actions"]`` ({team: bool[N, A]}) are the finished episode's last ones, so a learner
    can bootstrap V(final) or max over the available actions of Q(final) at truncation.
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
        return ts, tree_select(done, reset_state, state)

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


class EpisodeStats(Wrapper):
    """Adds ``info["episode_return"]`` ({team: f32[N]}), ``info["episode_length"]`` (i32[]) and
    ``info["episode_done"]`` (bool[]): running totals that include this step, so on a done step they
    are the finished episode's. Place it inside AutoReset so the totals restart with the episode:
    ``AutoReset(EpisodeStats(env))``.
    """

    def _reset(self, key):
        ts, env_state = self.env.reset(key)
        returns = jax.tree.map(jnp.zeros_like, ts.reward)
        state = EpisodeStatsState(env_state, returns, jnp.zeros((), jnp.int32))
        return self._with_info(ts, state), state

    def _step(self, key, state, actions):
        ts, env_state = self.env.step(key, state.env_state, actions)
        returns = jax.tree.map(jnp.add, state.returns, ts.reward)
        state = EpisodeStatsState(env_state, returns, state.length + 1)
        return self._with_info(ts, state), state

    @staticmethod
    def _with_info(ts: TimeStep, state: EpisodeStatsState) -> TimeStep:
        info = dict(ts.info, episode_return=state.returns, episode_length=state.length, episode_done=ts.done)
        return ts.replace(info=info)


def team_episode_return(info: Mapping[str, Any]) -> jax.Array:
    """f32[]: sum over every agent of every team of the episode return (the MPE 'team return')."""
    return sum(jnp.sum(r) for r in info["episode_return"].values())
