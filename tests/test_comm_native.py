"""The causal value of MPE's own channels (speaker_listener, reference, crypto, world_comm): ``comm_randomised``
(envs/mpe/core.py) replaces every heard utterance with a random one and changes nothing else, and ``jmarl
rollout``'s analysis (jmarl/tools/rollout.py) measures entropy, mutual information and causal value on them.
Scripted policies stand in for trained ones: a speaker that says the goal and one that speaks at random."""
from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmarl
from jmarl.core.config import ConfigError
from jmarl.envs.mpe.core import steer

NATIVE = ["mpe_speaker_listener", "mpe_reference", "mpe_crypto", "mpe_world_comm"]


def test_who_is_heard_and_who_hears():
    heard = {n: (jmarl.make(n).heard_speakers, jmarl.make(n).comm_receivers) for n in NATIVE}
    assert heard == {"mpe_speaker_listener": ((0,), ("listener",)), "mpe_reference": ((0, 1), ("agents",)),
                     "mpe_crypto": ((2,), ("listener",)),  # Alice only: Bob's and Eve's words are scored guesses
                     "mpe_world_comm": ((0,), ("adversaries",))}


# Crypto: discrete words, one speaker heard among three that speak; reference: continuous utterances, both heard.
# (Speaker_listener's randomised channel is exercised by the report test below; world_comm shares the code.)
@pytest.mark.parametrize("name, continuous", [("mpe_crypto", False), ("mpe_reference", True)])
def test_comm_randomised_changes_only_what_is_heard(name, continuous):
    plain = jmarl.make(name, continuous_actions=continuous)
    noisy = jmarl.make(name, continuous_actions=continuous, comm_randomised=True)
    heard = np.zeros(plain.world.num_agents, bool)
    heard[list(plain.heard_speakers)] = True

    def one(key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        ts, state = plain.reset(k_reset)
        actions = plain.sample_actions(k_act, ts.avail_actions)
        return plain.step(k_step, state, actions), noisy.step(k_step, state, actions)

    (ts, after), (ts_r, after_r) = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), 512))
    # The physics and the rewards are those of the same actions (no reward reads a heard utterance).
    np.testing.assert_array_equal(after_r.agent_pos, after.agent_pos)
    np.testing.assert_array_equal(after_r.agent_vel, after.agent_vel)
    for t in ts.reward:
        np.testing.assert_array_equal(ts_r.reward[t], ts.reward[t])
    said, random = np.asarray(after.comm), np.asarray(after_r.comm)  # f32[B, A, C]
    np.testing.assert_array_equal(random[:, ~heard], said[:, ~heard])  # unheard words (crypto's guesses) kept
    random = random[:, heard]
    c = random.shape[-1]
    if continuous:  # a uniform vector in [0, 1]^C, whatever was said
        assert random.min() >= 0.0 and random.max() <= 1.0
        assert abs(random.mean() - 0.5) < 0.02 and abs(np.corrcoef(random.ravel(), said[:, heard].ravel())[0, 1]) < 0.1
    else:  # one-hot words, uniform, and the same as the word said only by chance (1 / C)
        np.testing.assert_array_equal(random.sum(-1), 1.0)
        counts = np.bincount(random.argmax(-1).ravel(), minlength=c) / random[..., 0].size
        assert np.all(np.abs(counts - 1 / c) < 0.06), counts
        same = (random.argmax(-1) == said[:, heard].argmax(-1)).mean()
        assert abs(same - 1 / c) < 0.06, same
    # What the receivers observe changed with it: the step's observations differ where a word is heard.
    assert any(not np.array_equal(ts_r.obs[t], ts.obs[t]) for t in plain.comm_receivers)


def test_comm_randomised_only_where_agents_speak():
    with pytest.raises(ConfigError, match="unknown key 'comm_randomised'"):
        jmarl.make("mpe_spread", comm_randomised=True)


# ----------------------------------------------------------------------------------------------------
# jmarl rollout's analysis on speaker_listener with scripted players
# ----------------------------------------------------------------------------------------------------
def _scripted_speaker_listener():
    """A ``Policy`` of two members: member 0's speaker says the goal (argmax of the goal colour it sees), member
    1's says a uniformly random word; both listeners head for the landmark last named (from their observation
    ``[vel (2), landmark - own pos (6), heard word (3)]``), as the env's heuristic does."""
    from jmarl.train.load import Policy

    def apply(p, key, ts, hidden, starts):  # p f32[]: 1 scripted speaker, 0 random speaker
        goal = jnp.argmax(ts.obs["speaker"][:, 0], -1)  # i32[B]
        word = jnp.where(p > 0.5, goal, jax.random.randint(key, goal.shape, 0, 3))
        obs = ts.obs["listener"][:, 0]  # f32[B, 11]
        rel, heard = obs[:, 2:8].reshape(-1, 3, 2), obs[:, 8:]
        named = jax.nn.one_hot(jnp.argmax(heard, -1), 3) * jnp.any(heard > 0, -1, keepdims=True)  # zeros: nothing yet
        move = steer(jnp.einsum("bl,blx->bx", named, rel), False)
        return hidden, {"speaker": word[:, None].astype(jnp.int32), "listener": move[:, None]}

    resolved = SimpleNamespace(env="mpe_speaker_listener", env_kwargs={}, config=SimpleNamespace(), algo="scripted")
    params = jnp.array([1.0, 0.0])
    return Policy(jmarl.make("mpe_speaker_listener"), params[0], resolved, None, lambda batch: (), apply), params


def test_native_channel_report_speaker_listener(tmp_path):
    import json

    from jmarl.tools.rollout import emergent_report, format_report, write_report

    policy, params = _scripted_speaker_listener()
    report = emergent_report(policy, params, episodes=48)
    comm = report["communication"]
    mi, entropy = comm["message_mi"]["speaker_0"]["values"], comm["message_entropy"]["speaker_0"]["values"]
    # The scripted speaker's word is the goal: MI = H(goal), log2(3) bits up to the sample's own goal frequencies.
    assert abs(mi[0] - np.log2(3)) < 0.1 and abs(mi[0] - entropy[0]) < 1e-9
    assert mi[1] < 0.05 and entropy[1] > 1.5  # a random speaker: every word, no information
    assert comm["receivers"] == ["listener"]
    value = comm["causal_value"]["values"]
    assert value[0] > 4.0  # the listener led to the goal, against led astray by random words (about -9 vs -18)
    assert abs(value[1]) < 1.5  # a random speaker's words were worth nothing to begin with
    np.testing.assert_allclose(comm["return"]["values"][0] - comm["return_randomised"]["values"][0], value[0])
    assert set(comm["causal_value_by_team"]) == {"speaker", "listener"}
    assert "causal value of the channel" in format_report(report)
    (tmp_path / "results.json").write_text('{"configs": []}')
    written = json.loads(write_report(tmp_path, report).read_text())
    assert written["communication"]["causal_value"]["values"] == value
    (tmp_path / "results.json").write_text('{"configs": [')  # damaged: named, and left as it is
    with pytest.raises(ConfigError, match=r"results.json is damaged: not valid JSON"):
        write_report(tmp_path, report)
    assert (tmp_path / "results.json").read_text() == '{"configs": ['



# ----------------------------------------------------------------------------------------------------
# More agents: spread's scripted policy at any N
# ----------------------------------------------------------------------------------------------------
def test_spread_heuristic_assigns_and_covers_at_five_agents():
    from jmarl.core.wrappers import EpisodeStats
    from jmarl.envs.mpe.spread import greedy_assignment

    dist = np.random.default_rng(0).random((10, 10))
    chosen = np.asarray(greedy_assignment(jnp.asarray(dist)))
    assert sorted(chosen) == list(range(10))  # a matching: every landmark has an agent
    i, j = np.unravel_index(dist.argmin(), dist.shape)
    assert chosen[i] == j  # the closest pair first
    np.testing.assert_array_equal(greedy_assignment(jnp.ones((4, 2))), [0, 1, 0, 1])  # leftovers: i mod L

    env = EpisodeStats(jmarl.make("mpe_spread", num_agents=5))

    def episode(key):
        ts, state = env.reset(key)

        def step(carry, key):
            ts, state = carry
            return env.step(key, state, {"agents": env.unwrapped.heuristic_actions(key, state.env_state)}), None

        (ts, _), _ = jax.lax.scan(step, (ts, state), jax.random.split(key, env.max_steps))
        return ts.info["episode_metrics"]["covered"]

    covered = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), 32))
    assert float(covered.mean()) > 3.5  # of 5 (measured 4.3 over 256 episodes; random moves 0.1)


def test_spread_presets_for_more_agents():
    from jmarl.train.algorithms import resolve

    for algo in ("ippo", "mappo"):
        minibatches = [resolve(algo, "mpe_spread", {"env.num_agents": n}).config.num_minibatches for n in (3, 5, 10)]
        assert minibatches == [4, 8, 16]  # about 4000-4800 agent samples per minibatch at every N
    assert resolve("ippo", "mpe_spread", {"env.num_agents": 10, "num_minibatches": 2}).config.num_minibatches == 2


def test_train_reports_the_native_channel(tmp_path):
    """``jmarl train`` on an env with its own channel measures it (as it does a learned one) into results.json;
    an env without a channel gets no such report."""
    import json

    from jmarl.tools.cli import main
    from jmarl.tools.rollout import causal_channel

    assert all(causal_channel(jmarl.make(n)) is not None for n in NATIVE)
    assert causal_channel(jmarl.make("mpe_spread")) is None
    run_dir = tmp_path / "run"
    tiny = ["num_envs=4", "num_steps=8", "total_timesteps=64", "num_evals=1", "eval_episodes=2", "hidden_dim=8",
            "num_minibatches=1", "num_epochs=1"]
    assert main(["train", "ippo", "--env", "mpe_speaker_listener", *tiny, "--out", str(run_dir), "--quiet",
                 "--wandb", "disabled"]) == 0
    comm = json.loads((run_dir / "results.json").read_text())["communication"]
    assert comm["receivers"] == ["listener"] and len(comm["causal_value"]["values"]) == 1
