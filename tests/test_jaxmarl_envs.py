"""JaxMARL's registry under jmarl: every environment JaxMARL registers is built by name
(``jmarl.make("jaxmarl:NAME")``), plays whole episodes and trains (``jaxmarl_cases.check_builds_steps_and_trains``;
this file takes the names not in ``jaxmarl_cases.SECOND_HALF``, ``test_jaxmarl_envs_more.py`` those);
environments whose optional package is missing are skipped naming it, and the one that needs Python objects
(LearnedPolicyEnemySMAX) is built in Python. Hanabi's legal moves, settings by name, names everywhere and
scenes are checked here too.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jaxmarl_cases import OBJECTIVES, SECOND_HALF, check_builds_steps_and_trains
from jmarl.adapters.jaxmarl import jaxmarl_env_names

NAMES = jaxmarl_env_names()


def test_names_are_jaxmarls_registry():
    """The parametrisation below is JaxMARL's own list (a new JaxMARL env is tested without an edit here), and
    the two files' halves cover it."""
    from jaxmarl.registration import registered_envs

    assert NAMES == list(registered_envs) and len(NAMES) >= 30
    assert set(SECOND_HALF) < set(NAMES)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in SECOND_HALF])
def test_jaxmarl_env_builds_steps_and_trains(name):
    check_builds_steps_and_trains(name)


def test_competitive_jaxmarl_envs_declare_their_native_counterparts_objective():
    """The objectives the JaxMARL envs are checked against (``OBJECTIVES``, checked per env by the training
    tests) are their native counterparts' (mpe_tag's predators, mpe_push's agent, ...), in JaxMARL's team
    names; none of them sums opposing teams."""
    from jmarl.agents.rollout import resolve_objective

    for name, (native, native_objective, objective) in OBJECTIVES.items():
        if native is None:
            continue
        env = jmarl.make(native)
        assert resolve_objective("", env) == native_objective, name
        # The same team in JaxMARL's names (crypto's listener is Bob).
        jaxmarl_team = {"return/adversaries": "return/adversary", "return/agents": "return/agent",
                        "return/listener": "return/bob"}
        assert objective == jaxmarl_team.get(native_objective, native_objective), name


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
    assert {"layout", "max_steps", "shaped_reward_coef", "shaped_reward_anneal_steps"} <= fields


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
