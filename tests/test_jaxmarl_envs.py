"""Every environment JaxMARL registers, under jmarl: built by name (``jmarl.make("jaxmarl:NAME")``), its
shapes checked, and either trained for two updates of a tiny IPPO config or played through a compiled
episode (see Cost); environments whose optional package is missing are skipped naming it, and the one that
needs Python objects (LearnedPolicyEnemySMAX) is built in Python.

Cost: a training program (rollout, update, evaluation) of a JaxMARL env takes 10-35 s to compile on a CPU
core (STORM's and JaxNav's the most), 25 of them several minutes. So the suite trains one env of each kind
the learner treats differently (``TRAINED``: discrete and Box actions, one and several teams, legal-action
masks, image observations) and plays every other one through a whole episode with random legal actions,
checking how it ends (test_adapters.py checks switch_riddle's and coin_game's ends and steps in detail). With
``JMARL_TEST_TRAIN_ALL_JAXMARL=1`` every env is trained (all 25 that run here pass; docs/interop.md).
Programs are compiled with XLA's CPU optimisations off (they run two updates: compile time is all that
matters) and envs are made small where they have a size setting.
"""
from __future__ import annotations

import dataclasses
import os

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmarl
import jmarl
from jmarl.adapters.jaxmarl import FromJaxMARL, from_jaxmarl, jaxmarl_env_names, missing_dependency
from jmarl.algos.ppo import PPOConfig, PPOHparams, make_train
from jmarl.core.spaces import Discrete

# XLA options for programs that run once: compile fast, run slowly.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# Settings that keep an env small (and its episodes short, so evaluation episodes end); {} for the defaults.
SMALL = {
    "SMAX": dict(scenario="3m", max_steps=20),
    "HeuristicEnemySMAX": dict(scenario="3m", max_steps=20),
    "LearnedPolicyEnemySMAX": dict(scenario="3m", max_steps=20),
    "storm": dict(num_inner_steps=8), "storm_2p": dict(num_inner_steps=8), "storm_np": dict(num_inner_steps=8),
    "coin_game": dict(num_inner_steps=4, num_outer_steps=2),
    "overcooked": dict(max_steps=16, shaped_reward_coef=1.0), "overcooked_v2": dict(max_steps=16),
    "jaxnav": dict(max_steps=16, lidar_num_beams=16),
    "switch_riddle": {},
    "hanabi": {},
}
NAMES = jaxmarl_env_names()
# Small max_steps for MPE envs: evaluation episodes then take 9 steps.
MPE_SMALL = dict(max_steps=8)
TRAIN_ALL = os.environ.get("JMARL_TEST_TRAIN_ALL_JAXMARL", "") not in ("", "0")
TRAINED = ("MPE_simple_spread_v3",  # discrete actions, one team
           "MPE_simple_facmac_v1",  # Box actions, two teams with the same spaces (split by name)
           "HeuristicEnemySMAX",  # legal-action masks, world_state as global state
           "overcooked_v2")  # image observations [H, W, C]


def trained(name: str) -> bool:
    """Whether the suite trains on ``name`` (see the module doc), else it plays an episode of it."""
    return TRAIN_ALL or name in TRAINED


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
    settings = SMALL.get(name, MPE_SMALL if name.startswith("MPE_") else {})
    fields = {f.name for f in dataclasses.fields(jmarl.core.registry.env_class(f"jaxmarl:{name}").Config)}
    return jmarl.make(f"jaxmarl:{name}", **{k: v for k, v in settings.items() if k in fields})


def test_names_are_jaxmarls_registry():
    """The parametrisation below is JaxMARL's own list (a new JaxMARL env is tested without an edit here)."""
    from jaxmarl.registration import registered_envs

    assert NAMES == list(registered_envs) and len(NAMES) >= 30


@pytest.mark.parametrize("name", NAMES)
def test_jaxmarl_env_builds_steps_and_trains(name):
    if (package := missing_dependency(name)) is not None:
        with pytest.raises(ValueError, match=package):  # refused by name, saying which package is missing
            jmarl.make(f"jaxmarl:{name}")
        pytest.skip(f"jaxmarl:{name} needs the optional package {package!r}, which is not installed")
    env = build(name)
    # Constructs: teams and spaces are consistent with the JaxMARL env's agents.
    assert sum(t.num_agents for t in env.teams.values()) == len(env.env.agents)
    assert env.max_steps >= 1 and env.limit is not None
    # Steps (traced only: the compiled step is the training program's): shapes as declared.
    ts, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    actions = jax.eval_shape(env.sample_actions, jax.random.PRNGKey(1), ts.avail_actions)
    ts, _ = jax.eval_shape(env.step, jax.random.PRNGKey(2), state, actions)
    for t, team in env.teams.items():
        assert ts.obs[t].shape == (team.num_agents,) + team.obs_shape and ts.obs[t].dtype == jnp.float32
        assert ts.reward[t].shape == (team.num_agents,)
        width = team.action_space.n if isinstance(team.action_space, Discrete) else 1
        assert ts.avail_actions[t].shape == (team.num_agents, width)
    assert ts.global_state.shape == env.global_state_shape and ts.terminated.shape == ts.truncated.shape == ()
    if not trained(name):
        if name != "hanabi":  # hanabi's episode is played in test_hanabi_masks_are_jaxmarls_legal_moves
            play_episode(env)
        return

    # Trains: two IPPO updates (of two epochs) on 2 envs x 4 steps (every team learns), one evaluation episode.
    cfg = PPOConfig(num_envs=2, num_steps=4, total_timesteps=16, num_epochs=2, num_minibatches=1, hidden_dim=8,
                    num_layers=1, num_evals=1, eval_episodes=1)
    trainer = make_train(cfg, env)
    train = jax.jit(trainer.train).lower(jax.random.PRNGKey(0), PPOHparams()).compile(FAST_COMPILE)
    runner, metrics = train(jax.random.PRNGKey(0), PPOHparams())
    assert int(runner.update) == cfg.num_updates == 2
    losses = {k: np.asarray(v) for k, v in metrics.items() if k.startswith("loss/")}
    assert losses and all(np.isfinite(v).all() for v in losses.values()), losses
    assert np.isfinite(np.asarray(metrics["eval/return"])).all()
    # The policy changed: every learning team's second epoch sees a policy moved by its first (a KL above 0).
    kls = [np.asarray(v) for k, v in metrics.items() if k.startswith("loss/") and k.endswith("/approx_kl")]
    assert len(kls) == len(env.teams) and all(np.abs(kl).max() > 0 for kl in kls), kls


def play_episode(env: FromJaxMARL) -> None:
    """One episode (up to ``max_steps`` transitions) of uniformly random legal actions, compiled: it ends by
    ``max_steps``; a truncation comes exactly at ``max_steps`` (every time limit jmarl reads off a JaxMARL
    env is an episode length), never together with a termination; observations and rewards are finite and
    every action sampled was legal."""
    def rollout(key):
        ts, state = env.reset(key)

        def body(carry, k):
            ts, state = carry
            k_act, k_step = jax.random.split(k)
            actions = env.sample_actions(k_act, ts.avail_actions)
            legal = jnp.all(jnp.stack([jnp.take_along_axis(ts.avail_actions[t], actions[t][:, None], 1).all()
                                       for t, team in env.teams.items() if isinstance(team.action_space, Discrete)]
                                      + [jnp.ones((), bool)]))
            ts, state = env.step(k_step, state, actions)
            finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves((ts.obs, ts.reward))]))
            return (ts, state), (ts.terminated, ts.truncated, legal, finite)

        return jax.lax.scan(body, (ts, state), jax.random.split(key, env.max_steps))[1]

    terminated, truncated, legal, finite = map(np.asarray, jax.jit(rollout)(jax.random.PRNGKey(0)))
    done = terminated | truncated
    assert done.any(), f"no episode end within max_steps={env.max_steps}"
    end = int(np.argmax(done))  # the first episode's last transition; the env is not reset after it
    assert not (terminated[end] and truncated[end])
    if truncated[end]:
        assert end == env.max_steps - 1, f"truncated after {end + 1} of max_steps={env.max_steps} transitions"
    assert legal[:end + 1].all() and finite[:end + 1].all()


def test_hanabi_masks_are_jaxmarls_legal_moves():
    """Hanabi's legal-move mask reaches jmarl (it was dropped: all 21 actions marked available): through a
    whole game of random legal moves, ``avail_actions`` equals ``get_legal_moves`` for both players, the
    player to move has several legal moves and the other only the no-op; the game ends, terminated (Hanabi
    has no time limit), within ``max_steps``, the longest possible game."""
    env = jmarl.make("jaxmarl:hanabi")
    je = env.env

    def rollout(key):
        ts, state = env.reset(key)

        def body(carry, k):
            ts, state = carry
            legal = je.get_legal_moves(state)
            k_act, k_step = jax.random.split(k)
            out = (ts.avail_actions["agent"], jnp.stack([legal[a] for a in je.agents]) > 0)
            ts, state = env.step(k_step, state, env.sample_actions(k_act, ts.avail_actions))
            return (ts, state), out + (ts.terminated, ts.truncated)

        return jax.lax.scan(body, (ts, state), jax.random.split(key, env.max_steps))[1]

    avail, legal, terminated, truncated = map(np.asarray, jax.jit(rollout)(jax.random.PRNGKey(0)))
    assert terminated.any() and not truncated.any()
    end = int(np.argmax(terminated))  # the game's last move; the env is not reset after it
    np.testing.assert_array_equal(avail[:end + 1], legal[:end + 1])
    counts = np.sort(avail[:end + 1].sum(-1), axis=-1)  # [T, 2]: (the other player, the player to move)
    assert (counts[:, 0] == 1).all() and (counts[:, 1] > 1).all()
    assert env.max_steps == 96 and end > 2


def test_every_jaxmarl_env_has_a_config_key_for_its_size():
    """``env.KEY=VALUE`` reaches the JaxMARL constructor: a setting changes the env built (checked by name for
    two families, one through **kwargs), and an unknown key is refused with the valid ones."""
    env = jmarl.make("jaxmarl:MPE_simple_spread_v3", num_agents=4, max_steps=7)
    assert env.teams["agent"].num_agents == 4 and env.env.max_steps == 7 and env.max_steps == 8
    env = jmarl.make("jaxmarl:HeuristicEnemySMAX", scenario="2s3z")
    assert env.teams["ally"].num_agents == 5
    with pytest.raises(ValueError, match="scenario"):
        jmarl.make("jaxmarl:HeuristicEnemySMAX", scenario="4m")  # not a SMAX map: the valid ones are listed
    with pytest.raises(ValueError, match="num_agents"):
        jmarl.make("jaxmarl:MPE_simple_spread_v3", num_agent=4)
    fields = {f.name for f in dataclasses.fields(jmarl.core.registry.env_class("jaxmarl:overcooked").Config)}
    assert {"layout", "max_steps", "shaped_reward_coef"} <= fields


def test_jaxmarl_names_everywhere_a_jmarl_name_works():
    """``jaxmarl:NAME`` is listed on request, a misspelt one gets "did you mean", a bare JaxMARL name is
    pointed to its ``jaxmarl:`` spelling, and ``import jmarl`` loads neither jaxmarl nor pettingzoo."""
    import subprocess
    import sys

    names = jmarl.registered_envs(jaxmarl=True)
    assert "jaxmarl:overcooked" in names and "mpe_spread" in names and "jaxmarl:overcooked" not in jmarl.registered_envs()
    with pytest.raises(ValueError, match=r"Did you mean \['jaxmarl:MPE_simple_push_v3'"):
        jmarl.make("jaxmarl:MPE_simple_psh_v3")
    with pytest.raises(ValueError, match="jaxmarl:coin_game"):
        jmarl.make("coin_game")
    # What the CLI and sweeps run: resolve() checks and types env.KEY=VALUE against the JaxMARL constructor.
    from jmarl.train.algorithms import resolve

    resolved = resolve("ippo", "jaxmarl:MPE_simple_push_v3", {"env.max_steps": "10", "num_envs": "8"})
    assert resolved.env_kwargs == {"max_steps": 10} and resolved.config.num_envs == 8
    with pytest.raises(ValueError, match="max_steps"):
        resolve("ippo", "jaxmarl:MPE_simple_push_v3", {"env.max_step": "10"})
    code = "import sys, jmarl; jmarl.make('mpe_spread'); print(sorted({'jaxmarl', 'pettingzoo'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_jaxmarl_mpe_and_smax_have_scenes():
    """``jmarl render`` draws JaxMARL's MPE (and SMAX) through the adapter; other families say they cannot."""
    from jmarl.tools import render

    env = jmarl.make("jaxmarl:MPE_simple_tag_v3", max_steps=2)
    frames = render.render_episodes(env, jax.random.PRNGKey(0))
    assert len(frames) == env.max_steps + 1 and frames[0].ndim == 3  # one frame per state, 3 transitions
    with pytest.raises(ValueError, match="no scene"):
        jmarl.make("jaxmarl:coin_game").render_scene(None)
