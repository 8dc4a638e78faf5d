"""Every environment JaxMARL registers, trained under jmarl: the check that ``test_jaxmarl_envs.py`` and
``test_jaxmarl_envs_more.py`` run on their halves of JaxMARL's registry (two files, so that pytest-xdist's
``--dist loadfile`` runs the halves on two workers). Not a test module itself.

One compiled program per environment both plays whole episodes and trains: two IPPO updates of a tiny
network in 2 envs whose rollouts are ``max_steps`` long, so every env plays at least one whole episode, with
random legal actions while the policy is near uniform, then two greedy evaluation episodes. What a separate
episode test used to check is measured inside that program by ``Checked``, a wrapper that reports it as
episode metrics (``train/metric/NAME``, ``eval/metric/NAME``): every action the learner took was legal,
observations and rewards finite, no step both terminated and truncated, a truncation exactly at
``max_steps`` and every episode over by then.

Cost: compiling is all the time these programs take (they run for milliseconds): 4-21 CPU s per env, 208 for
the two files (docs/benchmarks.md, "JaxMARL registry in CI"). So they compile with XLA's CPU optimisations
and its MLIR fusion emitters off (the emitters alone took half of the compile time; the older emitters
generate the same computation), evaluate on 2 envs rather than 1 (see ``check_builds_steps_and_trains``),
and envs are made small where they have a size setting.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import jaxmarl
import jmarl
from jmarl.adapters.jaxmarl import FromJaxMARL, from_jaxmarl, missing_dependency
from jmarl.agents.rollout import resolve_objective
from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train
from jmarl.core.env import TimeStep
from jmarl.core.spaces import Discrete
from jmarl.core.wrappers import Wrapper

# XLA options for programs that run once: compile fast, run slowly.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
                "xla_cpu_use_fusion_emitters": False}

# Settings that keep an env small (and its episodes short); {} for the defaults.
SMALL = {
    "SMAX": dict(scenario="3m", max_steps=20),
    "HeuristicEnemySMAX": dict(scenario="3m", max_steps=20),
    "LearnedPolicyEnemySMAX": dict(scenario="3m", max_steps=20),
    "storm": dict(num_inner_steps=8), "storm_2p": dict(num_inner_steps=8), "storm_np": dict(num_inner_steps=8),
    "coin_game": dict(num_inner_steps=4, num_outer_steps=2),
    "overcooked": dict(max_steps=16, shaped_reward_coef=1.0, shaped_reward_anneal_steps=24),
    "overcooked_v2": dict(max_steps=16),
    "jaxnav": dict(max_steps=16, lidar_num_beams=16),
    # MABrax (needs brax): 8-transition episodes
    **{n: dict(episode_length=8) for n in ("ant_4x2", "halfcheetah_6x1", "hopper_3x1", "humanoid_9|8", "walker2d_2x3")},
}
MPE_SMALL = dict(max_steps=8)  # MPE episodes of 9 transitions

# The names test_jaxmarl_envs_more.py trains (the rest, JaxMARL's new envs included, test_jaxmarl_envs.py does),
# chosen so that the two files take about the same CPU time (about 100 s each; STORM's programs the most).
SECOND_HALF = ("SMAX", "HeuristicEnemySMAX", "LearnedPolicyEnemySMAX", "storm", "storm_2p", "storm_np", "hanabi",
               "jaxnav", "MPE_simple_facmac_9a_v1")

# The headline of the competitive JaxMARL envs: {name: (jmarl's native counterpart, its objective, the JaxMARL
# env's)}: the same team in JaxMARL's names (never the sum of opposing teams). Every other env: the sum where
# its teams share one goal, else its one team's return.
OBJECTIVES = {
    "MPE_simple_tag_v3": ("mpe_tag", "return/adversaries", "return/adversary"),
    "MPE_simple_world_comm_v3": ("mpe_world_comm", "return/adversaries", "return/adversary"),
    "MPE_simple_push_v3": ("mpe_push", "return/agents", "return/agent"),
    "MPE_simple_adversary_v3": ("mpe_adversary", "return/agents", "return/agent"),
    "MPE_simple_crypto_v3": ("mpe_crypto", "return/listener", "return/bob"),  # Bob listens
    "MPE_simple_speaker_listener_v4": ("mpe_speaker_listener", "return", "return"),
    "MPE_simple_facmac_v1": ("mpe_tag", "return/adversaries", "return/adversary"),  # predators and prey, as tag
    "MPE_simple_facmac_3a_v1": ("mpe_tag", "return/adversaries", "return/adversary"),
    "MPE_simple_facmac_6a_v1": ("mpe_tag", "return/adversaries", "return/adversary"),
    "MPE_simple_facmac_9a_v1": ("mpe_tag", "return/adversaries", "return/adversary"),
    "SMAX": ("smax", "win_rate", "win_rate"),
    "HeuristicEnemySMAX": ("smax", "win_rate", "win_rate"),
    "LearnedPolicyEnemySMAX": ("smax", "win_rate", "win_rate"),
    "overcooked": (None, None, "metric/unshaped_reward"),  # shaped (SMALL): the task's own reward
}

# The checks of an episode, as episode metrics: each counts what should never happen (all must be 0).
CHECKS = ("illegal_actions", "nonfinite", "terminated_and_truncated", "truncated_early", "past_max_steps")


class UniformEnemy:
    """The enemy policy LearnedPolicyEnemySMAX needs (``apply(params, obs) -> (pi, value)``): uniform over the
    enemies' actions, its params a scalar offset of the logits."""

    def __init__(self, num_actions: int):
        self.num_actions = num_actions

    def apply(self, params, obs):
        logits = jnp.zeros(obs.shape[:-1] + (self.num_actions,)) + params
        return distrax.Categorical(logits=logits), None


def build(name: str) -> FromJaxMARL:
    """``jaxmarl:NAME`` made small, or, for the env needing Python objects, built with ``from_jaxmarl``."""
    if name == "LearnedPolicyEnemySMAX":
        from jaxmarl.environments.smax import map_name_to_scenario

        kwargs = dict(SMALL[name], scenario=map_name_to_scenario("3m"))
        enemy = jaxmarl.make("SMAX", **kwargs)
        return from_jaxmarl(jaxmarl.make(name, policy=UniformEnemy(enemy.action_space("enemy_0").n),
                                         params=jnp.zeros(()), **kwargs))
    fields = {f.name for f in dataclasses.fields(jmarl.core.registry.env_class(f"jaxmarl:{name}").Config)}
    # FACMAC's 3a/6a/9a take no settings (26-step episodes).
    settings = SMALL.get(name, MPE_SMALL if name.startswith("MPE_") and "max_steps" in fields else {})
    return jmarl.make(f"jaxmarl:{name}", **settings)


@struct.dataclass
class CheckedState:
    env_state: Any
    t: jax.Array  # i32[]: transitions so far in this episode
    avail: dict  # {team: bool[N, A]}: the actions available at this step


class Checked(Wrapper):
    """Adds ``CHECKS`` to ``info["metrics"]`` (1 on a step where it happened), so that ``EpisodeStats`` sums
    them per episode and a training run reports them for its rollouts and its evaluation."""

    def _reset(self, key):
        ts, state = self.env.reset(key)
        zeros = {k: jnp.zeros((), jnp.float32) for k in CHECKS}
        return self._with(ts, zeros), CheckedState(state, jnp.zeros((), jnp.int32), ts.avail_actions)

    def _step(self, key, state: CheckedState, actions):
        ts, env_state = self.env.step(key, state.env_state, actions)
        t = state.t + 1
        illegal = sum(jnp.sum(~jnp.take_along_axis(state.avail[k], actions[k][:, None], 1))
                      for k, team in self.teams.items() if isinstance(team.action_space, Discrete))
        finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves((ts.obs, ts.reward))]))
        checks = {"illegal_actions": illegal, "nonfinite": ~finite,
                  "terminated_and_truncated": ts.terminated & ts.truncated,
                  "truncated_early": ts.truncated & (t != self.max_steps),
                  "past_max_steps": (t >= self.max_steps) & ~ts.done}
        checks = {k: jnp.asarray(v, jnp.float32) for k, v in checks.items()}
        return self._with(ts, checks), CheckedState(env_state, t, ts.avail_actions)

    @staticmethod
    def _with(ts: TimeStep, checks: dict) -> TimeStep:
        return ts.replace(info=dict(ts.info, metrics={**ts.info.get("metrics", {}), **checks}))


def check_builds_steps_and_trains(name: str) -> None:
    """``jaxmarl:NAME`` constructs (teams and spaces consistent with the JaxMARL env's agents, shapes as
    declared, the objective of ``OBJECTIVES``), plays whole episodes as ``Checked`` requires, and trains: two
    IPPO updates whose losses are finite and that move every learning team's policy, reporting a summed
    ``train/return`` only where the objective is that sum. An env whose optional package is missing is refused
    naming the package, and the test skipped saying so."""
    if (package := missing_dependency(name)) is not None:
        with pytest.raises(ValueError, match=package):
            jmarl.make(f"jaxmarl:{name}")
        pytest.skip(f"jaxmarl:{name} needs the optional package {package!r}, which is not installed")
    env = build(name)
    assert sum(t.num_agents for t in env.teams.values()) == len(env.env.agents)
    assert env.max_steps >= 1 and env.limit is not None
    ts, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    actions = jax.eval_shape(env.sample_actions, jax.random.PRNGKey(1), ts.avail_actions)
    ts, _ = jax.eval_shape(env.step, jax.random.PRNGKey(2), state, actions)
    for t, team in env.teams.items():
        assert ts.obs[t].shape == (team.num_agents,) + team.obs_shape and ts.obs[t].dtype == jnp.float32
        assert ts.reward[t].shape == (team.num_agents,)
        width = team.action_space.n if isinstance(team.action_space, Discrete) else 1
        assert ts.avail_actions[t].shape == (team.num_agents, width)
        assert ts.info["agent_done"][t].shape == (team.num_agents,) and ts.info["agent_done"][t].dtype == bool
    assert ts.global_state.shape == env.global_state_shape and ts.terminated.shape == ts.truncated.shape == ()

    objective = OBJECTIVES[name][2] if name in OBJECTIVES else f"return/{next(iter(env.teams))}" \
        if len(env.teams) == 1 else "return"
    assert resolve_objective("", env) == objective

    # 2 envs x max_steps steps x 2 updates (of 2 epochs), then 2 greedy evaluation episodes (not 1: XLA makes
    # much more code of a batch of one env, 1.6x the compile time of SMAX's and STORM's programs).
    E, T = 2, env.max_steps
    cfg = PPOConfig(num_envs=E, num_steps=T, total_timesteps=2 * E * T, num_epochs=2, num_minibatches=1,
                    hidden_dim=8, num_layers=1, num_evals=1, eval_episodes=2)
    trainer = make_train(cfg, Checked(env))
    train = jax.jit(trainer.train).lower(jax.random.PRNGKey(0), PPOHparams()).compile(FAST_COMPILE)
    runner, metrics = train(jax.random.PRNGKey(0), PPOHparams())
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    assert int(runner.update) == cfg.num_updates == 2
    # Episodes: the first rollout starts at a reset and lasts max_steps, so each env ended one in it.
    assert metrics["train/episodes"][0, 0] >= E, f"an episode outlasted max_steps={T}"
    assert metrics["eval/finished"][0] == 1.0 and 1 <= metrics["eval/length"][0] <= T  # both ended in time
    for k in CHECKS:
        assert (metrics[f"train/metric/{k}"] == 0).all() and metrics[f"eval/metric/{k}"][0] == 0, (k, metrics)
    # Training: finite losses, and every learning team's policy moved: its actor's parameters differ from the
    # ones the run started from (a KL can round to 0 in f32 when a huge value loss takes the clipped gradient's
    # norm, e.g. crypto's eve, whose returns are about -6e5).
    losses = {k: v for k, v in metrics.items() if k.startswith("loss/")}
    assert losses and all(np.isfinite(v).all() for v in losses.values()), losses
    assert len([k for k in losses if k.endswith("/approx_kl")]) == len(env.teams)
    start = jax.jit(trainer.init)(jax.random.PRNGKey(0), PPOHparams()).params
    for t in env.teams:
        moved = jax.tree.map(lambda a, b: bool((np.asarray(a) != np.asarray(b)).any()), runner.params[t]["actor"],
                             start[t]["actor"])
        assert any(jax.tree.leaves(moved)), f"{t}'s policy did not move"
    # Opposing teams are never summed; the objective's number is reported.
    assert ("train/return" in metrics) == (len(env.teams) == 1 or objective == "return")
    assert f"eval/{objective}" in metrics
