"""A test algorithm that meets the algorithm contract (jmarl/train/contract.py) at the least compile time: each
learning team acts greedily with a linear policy (actions = argmax over available actions of obs @ W), and an
"update" moves W a Gaussian step of size ``lr`` (a random walk: nothing is learnt). Tests of the tools around runs
(crossplay, ratings, exploit) get real run directories, checkpoints and policies from it in seconds, where a PPO
run on mpe_tag compiles for about 20 s. Discrete actions only.

Shape legend: B envs, N agents in a team, O observation, A actions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.agents.opponents import with_fixed_teams
from jmarl.agents.rollout import chunked_run, evaluate_episodes
from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, TimeStep
from jmarl.core.spaces import Discrete
from jmarl.core.wrappers import AutoReset, EpisodeStats
from jmarl.train.contract import RunConfig, Trainer


@dataclass(frozen=True)
class Config(RunConfig):
    init_scale: float = 0.1  # standard deviation of W at init


@struct.dataclass
class Hparams:
    lr: float = 0.05  # standard deviation of each update's step


PRESETS: dict[str, dict[str, Any]] = {}


class Runner(NamedTuple):
    params: dict  # {team: {"w": f32[O, A]}}
    key: jax.Array
    update: jax.Array  # i32[]


def make_train(config: Config, env: Environment) -> Trainer:
    config.check_schedule("drift")
    env = AutoReset(EpisodeStats(with_fixed_teams(env, config.fixed_teams, config.fixed_policy)))
    teams = env.teams
    for t, team in teams.items():
        if not isinstance(team.action_space, Discrete):
            raise ConfigError(f"drift: team {t!r} has {team.action_space}; this test algorithm takes Discrete only")

    def init(key: jax.Array, hp: Hparams) -> Runner:
        k_params, k_run = jax.random.split(key)
        keys = jax.random.split(k_params, len(teams))
        params = {t: {"w": config.init_scale * jax.random.normal(k, (math.prod(team.obs_shape), team.action_space.n))}
                  for k, (t, team) in zip(keys, teams.items())}
        return Runner(params, k_run, jnp.zeros((), jnp.int32))

    def policy(params, hidden, timestep: TimeStep, starts, key, greedy: bool):
        """Greedy linear actions of every learning team for a batch of envs: {team: i32[B, N]}."""
        actions = {}
        for t in teams:
            obs = timestep.obs[t].reshape(timestep.obs[t].shape[:2] + (-1,))  # f32[B, N, O]
            logits = jnp.where(timestep.avail_actions[t], obs @ params[t]["w"], -jnp.inf)
            actions[t] = jnp.argmax(logits, -1).astype(jnp.int32)
        return hidden, actions, {}

    def update(runner: Runner, hp: Hparams):
        key, k_step = jax.random.split(runner.key)
        leaves, tree = jax.tree.flatten(runner.params)
        steps = [hp.lr * jax.random.normal(k, x.shape) for k, x in zip(jax.random.split(k_step, len(leaves)), leaves)]
        params = jax.tree.unflatten(tree, [x + s for x, s in zip(leaves, steps)])
        return runner._replace(params=params, key=key, update=runner.update + 1), {"loss/step_loss": jnp.zeros(())}

    def evaluate(params, key, num_episodes: int = config.eval_episodes) -> dict:
        act = lambda p, h, ts, starts, k: policy(p, h, ts, starts, k, True)[:2]  # noqa: E731
        return evaluate_episodes(env, act, params, (), key, num_episodes)

    run_chunk, train = chunked_run(init, update, evaluate, config)
    return Trainer(config, env, init, run_chunk, train, evaluate, policy)
