"""The rest of MPE (simple, push, speaker_listener, reference, crypto, world_comm) against PettingZoo's
reference implementation (``mpe2``), plus their API, communication mapping and scripted heuristics.

Step parity follows test_mpe_parity.py: mpe2 plays random-policy episodes in Python (its world step
driven directly, its state rounded to float32 before each transition so the copy into jmarl is exact),
and jmarl evaluates every recorded transition in one jitted, vmapped step from the copied state.
Positions, velocities, utterances, observations (per team and as the global state) and rewards must
agree to an absolute 1e-5, for discrete and continuous actions: per scenario, 500 episodes of discrete
actions (world_comm: 200, its mpe2 step costs ~1 ms in Python) and 200 of continuous ones, plus a
non-default configuration of reference (200) and world_comm (50). Two episodes of PettingZoo's public
ParallelEnv (its wrappers, action composition, clipping and truncation) join each default configuration's
batch.
Step functions of a distance (world_comm's captures and food, which are rewarded, and its forests, which
hide agents in observations) may legitimately fall on the other side in float32 when mpe2's distance
lies within 1e-5 of the threshold; such transitions (a tiny fraction, asserted) are left out of the
reward and observation comparison only.

Reset parity: initial positions (mean and mean square per episode), goal and key indices, and random-policy
team returns agree with mpe2's in distribution (means within 3 standard errors; fixed seeds).

Also: the composed action spaces and observation sizes are mpe2's, the communication mapping, episodes of
exactly max_steps with the info entries, the scripted heuristics against random play, the render scenes.
"""
from __future__ import annotations

import functools
import importlib
import warnings
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

mpe2 = pytest.importorskip("mpe2")

import jmarl  # noqa: E402
from jmarl.core.wrappers import AutoReset, EpisodeStats  # noqa: E402
from jmarl.envs.mpe.core import CommState, MPEState  # noqa: E402
from jmarl.envs.mpe.crypto import CryptoState  # noqa: E402
from jmarl.envs.mpe.push import PushState  # noqa: E402
from jmarl.envs.mpe.reference import ReferenceState  # noqa: E402
from jmarl.envs.mpe.speaker_listener import SpeakerListenerState  # noqa: E402

ATOL = 1e-5
THRESHOLD_MARGIN = 1e-5
STEP_EPISODES = 200  # continuous actions, and the extra configurations (world_comm's: 50)
DIST_EPISODES = 500  # the discrete default configurations: step parity and the return distribution
RESETS = 2000  # reset distribution


# --- what each scenario is in mpe2 and in jmarl ------------------------------------------------------
def _landmark_index(world, entity) -> int:
    return [lm is entity for lm in world.landmarks].index(True)


def _no_extra(world) -> dict:
    return {}


def _push_extra(world) -> dict:
    return {"goal": _landmark_index(world, world.agents[0].goal_a)}


def _speaker_listener_extra(world) -> dict:
    return {"goal": _landmark_index(world, world.agents[0].goal_b)}


def _reference_extra(world) -> dict:
    return {"goals": [_landmark_index(world, a.goal_b) for a in world.agents]}


def _crypto_extra(world) -> dict:
    # Landmark j's colour (mpe2's word) is one-hot j; the key is such a colour.
    return {"goal": _landmark_index(world, world.agents[0].goal_a), "key": int(np.argmax(world.agents[2].key))}


def _no_thresholds(world) -> list:
    return []


def _world_comm_thresholds(world) -> list:
    """(agent i, landmark? , entity j, radius, what): distances at which a reward or observation jumps."""
    agents, landmarks = world.agents, world.landmarks
    out = []
    for i, a in enumerate(agents):
        for j, b in enumerate(agents):
            if not a.adversary and b.adversary:
                out.append((i, False, j, a.size + b.size, "reward"))  # capture
        for j, lm in enumerate(landmarks):
            if lm in world.food and not a.adversary:
                out.append((i, True, j, a.size + lm.size, "reward"))  # eating
            if lm in world.forests:
                out.append((i, True, j, a.size + lm.size, "obs"))  # hiding (obs), shown as +1/-1 too
    return out


@dataclass(frozen=True)
class Scenario:
    jmarl_name: str
    mpe2_module: str
    state_cls: type
    extra: Callable = _no_extra  # mpe2 world -> {state field: value} beyond positions and utterances
    thresholds: Callable = _no_thresholds


SCENARIOS = {
    "mpe_simple": Scenario("mpe_simple", "simple_v3", MPEState),
    "mpe_push": Scenario("mpe_push", "simple_push_v3", PushState, _push_extra),
    "mpe_speaker_listener": Scenario("mpe_speaker_listener", "simple_speaker_listener_v4", SpeakerListenerState,
                                     _speaker_listener_extra),
    "mpe_reference": Scenario("mpe_reference", "simple_reference_v3", ReferenceState, _reference_extra),
    "mpe_crypto": Scenario("mpe_crypto", "simple_crypto_v3", CryptoState, _crypto_extra),
    "mpe_world_comm": Scenario("mpe_world_comm", "simple_world_comm_v3", CommState, thresholds=_world_comm_thresholds),
}
NAMES = list(SCENARIOS)


@dataclass(frozen=True)
class Case:
    name: str
    kwargs: tuple = ()  # ((key, value), ...), the same for jmarl and mpe2 (their names agree)
    continuous: bool = False

    @property
    def scenario(self) -> Scenario:
        return SCENARIOS[self.name]

    @property
    def id(self) -> str:
        return self.name + "".join(f"-{k}{v}" for k, v in self.kwargs) + ("-cont" if self.continuous else "")

    @property
    def episodes(self) -> int:
        """Recorded episodes: the discrete default configuration also measures the return distribution,
        so it gets more (but world_comm's mpe2 step costs ~1 ms in Python: 200)."""
        if self in DEFAULT_CASES:
            return STEP_EPISODES if self.name == "mpe_world_comm" else DIST_EPISODES
        return STEP_EPISODES if not self.kwargs or self.name != "mpe_world_comm" else STEP_EPISODES // 4

    def mpe2_env(self, **extra):
        module = importlib.import_module(f"mpe2.{self.scenario.mpe2_module}")
        return module, dict(self.kwargs, continuous_actions=self.continuous, **extra)

    def jmarl_env(self) -> jmarl.Environment:
        return jmarl.make(self.name, continuous_actions=self.continuous, **dict(self.kwargs))


DEFAULT_CASES = [Case(n) for n in NAMES]
STEP_CASES = DEFAULT_CASES + [Case(n, continuous=True) for n in NAMES] + [
    Case("mpe_reference", (("local_ratio", 0.2),)),
    Case("mpe_world_comm", (("num_good", 3), ("num_adversaries", 3), ("num_obstacles", 2), ("num_food", 1),
                            ("num_forests", 3))),
]


# --- mpe2 side ---------------------------------------------------------------------------------------
def _round_to_float32(world) -> None:
    """mpe2's state made exactly representable in float32, so copying it into jmarl is lossless."""
    for e in world.agents + world.landmarks:
        e.state.p_pos = e.state.p_pos.astype(np.float32).astype(np.float64)
        e.state.p_vel = e.state.p_vel.astype(np.float32).astype(np.float64)


def _snapshot(case: Case, world, steps: int) -> dict:
    """jmarl state fields of mpe2's current state (numpy)."""
    agents, landmarks = world.agents, world.landmarks
    fields = dict(agent_pos=np.array([a.state.p_pos for a in agents]),
                  agent_vel=np.array([a.state.p_vel for a in agents]),
                  landmark_pos=np.array([lm.state.p_pos for lm in landmarks]).reshape(-1, 2), step=steps)
    if issubclass(case.scenario.state_cls, CommState):
        fields["comm"] = np.array([a.state.c for a in agents], np.float64).reshape(len(agents), -1)
    fields.update(case.scenario.extra(world))
    return fields


def _random_actions(rng, spaces, continuous: bool, low: float = 0.0, high: float = 1.0) -> list:
    if continuous:
        return [(low + (high - low) * rng.random(s.shape[0], dtype=np.float32)).astype(np.float32) for s in spaces]
    return [int(rng.integers(0, s.n)) for s in spaces]


def _team_actions(env: jmarl.Environment, actions: list) -> dict:
    """Per-agent actions in mpe2's order -> {team: array [N, ...]} (teams follow that order)."""
    out, start = {}, 0
    for name, team in env.teams.items():
        out[name] = np.stack(actions[start:start + team.num_agents])
        start += team.num_agents
    return out


def _stack(rows: list[dict]) -> dict:
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


@functools.lru_cache(maxsize=None)
def record(case: Case, num_episodes: int, seed: int = 0) -> dict:
    """Random-policy mpe2 episodes through its world step. Returns transitions (leaves [T, ...]):
    ``state`` (jmarl fields before), ``actions`` ({team: [T, N, ...]}), ``next`` (fields after),
    ``obs`` ({team: [T, N, O]}), ``reward`` f64[T, A], ``truncated``, ``near`` ({"reward"/"obs": bool[T]}),
    and ``returns`` f64[E, A]."""
    module, kwargs = case.mpe2_env()
    raw = module.raw_env(**kwargs)
    raw.reset(seed=seed)
    world, scenario = raw.world, raw.scenario
    env = case.jmarl_env()
    spaces = [raw.action_spaces[a.name] for a in world.agents]
    thresholds = case.scenario.thresholds(world)
    rng = np.random.default_rng(seed + 1)
    states, nexts, actions, obs, rewards, truncated = [], [], [], [], [], []
    for _ in range(num_episodes):
        raw.reset()
        for _ in range(raw.max_cycles):
            _round_to_float32(world)
            states.append(_snapshot(case, world, raw.steps))
            act = _random_actions(rng, spaces, case.continuous)
            actions.append(_team_actions(env, act))
            raw.current_actions = act
            raw._execute_world_step()
            raw.steps += 1
            nexts.append(_snapshot(case, world, raw.steps))
            rewards.append([raw.rewards[a.name] for a in world.agents])
            truncated.append(raw.steps >= raw.max_cycles)
            per_agent = [scenario.observation(a, world) for a in world.agents]
            obs.append(_team_actions(env, per_agent))
    rewards, nexts = np.array(rewards), _stack(nexts)
    near = {"reward": np.zeros(len(rewards), bool), "obs": np.zeros(len(rewards), bool)}
    for i, is_landmark, j, radius, what in thresholds:  # distances after the step, all transitions at once
        other = nexts["landmark_pos" if is_landmark else "agent_pos"][:, j]
        near[what] |= np.abs(np.linalg.norm(nexts["agent_pos"][:, i] - other, axis=-1) - radius) < THRESHOLD_MARGIN
    return dict(state=_stack(states), next=nexts, actions=_stack(actions), obs=_stack(obs), reward=rewards,
                truncated=np.array(truncated), near=near,
                returns=rewards.reshape(num_episodes, raw.max_cycles, -1).sum(1))


def _jmarl_state(case: Case, fields: dict):
    """A (batched) jmarl state from recorded fields: floats as float32, indices as int32."""
    cast = {k: jnp.asarray(v, jnp.int32 if k in ("step", "goal", "goals", "key") else jnp.float32)
            for k, v in fields.items()}
    return case.scenario.state_cls(**cast)


@functools.lru_cache(maxsize=None)
def record_parallel(case: Case, num_episodes: int = 2, seed: int = 7) -> dict:
    """Episodes through PettingZoo's public ParallelEnv (its wrappers, agent cycling, action composition and
    truncation), recorded like ``record``: ``state``, ``actions``, ``global_state`` (the observations of
    every agent, concatenated), ``reward`` and ``truncated``. Continuous actions are drawn from [-0.5, 1.5],
    so PettingZoo's clipping to the Box is exercised too."""
    module, kwargs = case.mpe2_env()
    par = module.parallel_env(**kwargs)
    par.reset(seed=seed)
    raw, names = par.unwrapped, list(par.possible_agents)
    env = case.jmarl_env()
    spaces = [raw.action_spaces[a] for a in names]
    rng = np.random.default_rng(seed)
    states, actions, obs, rewards, truncated = [], [], [], [], []
    for episode in range(num_episodes):
        if episode:
            par.reset()
        for _ in range(env.max_steps):
            _round_to_float32(raw.world)
            states.append(_snapshot(case, raw.world, raw.steps))
            act = _random_actions(rng, spaces, case.continuous, -0.5, 1.5)
            actions.append(_team_actions(env, act))
            with warnings.catch_warnings():  # PettingZoo warns when it clips an action: expected here
                warnings.simplefilter("ignore")
                o, r, term, trunc, _ = par.step(dict(zip(names, act)))
            assert not any(term.values())
            obs.append(np.concatenate([o[a] for a in names]))
            rewards.append([r[a] for a in names])
            truncated.append(all(trunc.values()))
        assert not par.agents  # the episode ended after exactly max_steps
    return dict(state=_stack(states), actions=_stack(actions), global_state=np.array(obs), reward=np.array(rewards),
                truncated=np.array(truncated))


def _concat(a: dict, b: dict) -> dict:
    return jax.tree.map(lambda x, y: np.concatenate([x, y]), a, b)


# --- step parity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.id)
def test_step_matches_mpe2(case: Case):
    """Every recorded transition, and (default configurations) two episodes of PettingZoo's public
    ParallelEnv evaluated in the same batch: one compiled step per configuration."""
    rec = record(case, case.episodes)
    par = record_parallel(case) if not case.kwargs else None
    env = case.jmarl_env()
    fields, acts = rec["state"], rec["actions"]
    if par is not None:
        fields, acts = _concat(fields, par["state"]), _concat(acts, par["actions"])
    dtype = jnp.float32 if case.continuous else jnp.int32
    actions = {t: jnp.asarray(a, dtype) for t, a in acts.items()}
    ts, nxt = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0)))(jax.random.key(0), _jmarl_state(case, fields), actions)
    ts, nxt = jax.tree.map(np.asarray, (ts, nxt))
    size = len(rec["reward"])
    ours, theirs = jax.tree.map(lambda x: x[:size], (ts, nxt)), jax.tree.map(lambda x: x[size:], (ts, nxt))

    ts, nxt = ours
    np.testing.assert_allclose(nxt.agent_pos, rec["next"]["agent_pos"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(nxt.agent_vel, rec["next"]["agent_vel"], rtol=0, atol=ATOL)
    np.testing.assert_array_equal(nxt.landmark_pos, rec["state"]["landmark_pos"].astype(np.float32))
    if "comm" in rec["next"]:  # what was said this step
        np.testing.assert_allclose(nxt.comm, rec["next"]["comm"], rtol=0, atol=ATOL)
    np.testing.assert_array_equal(ts.truncated, rec["truncated"])
    assert not np.any(ts.terminated)

    for what in ("reward", "obs"):
        assert rec["near"][what].mean() < 1e-3, f"{rec['near'][what].sum()} transitions near a {what} threshold"
    keep = ~rec["near"]["obs"]
    for team in env.teams:
        np.testing.assert_allclose(ts.obs[team][keep], rec["obs"][team][keep], rtol=0, atol=ATOL,
                                   err_msg=f"{case.id}: team {team!r} observations")
    global_state = np.concatenate([rec["obs"][t].reshape(size, -1) for t in env.teams], axis=1)
    np.testing.assert_allclose(ts.global_state[keep], global_state[keep], rtol=0, atol=ATOL)
    keep = ~rec["near"]["reward"]
    reward = np.concatenate([ts.reward[t] for t in env.teams], axis=1)
    np.testing.assert_allclose(reward[keep], rec["reward"][keep], rtol=0, atol=ATOL)

    if par is not None:  # the public API (two short episodes: no threshold exclusions needed)
        ts, _ = theirs
        np.testing.assert_allclose(ts.global_state, par["global_state"], rtol=0, atol=ATOL)
        reward = np.concatenate([ts.reward[t] for t in env.teams], axis=1)
        np.testing.assert_allclose(reward, par["reward"], rtol=0, atol=ATOL)
        np.testing.assert_array_equal(ts.truncated, par["truncated"])


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
@pytest.mark.parametrize("name", NAMES)
def test_spaces_are_mpe2s(name: str, continuous: bool):
    """Teams (in mpe2's agent order), observation sizes and the composed action spaces are mpe2's."""
    case = Case(name, continuous=continuous)
    module, kwargs = case.mpe2_env()
    raw = module.raw_env(**kwargs)
    env = case.jmarl_env()
    ours = [(team.obs_shape, team.action_space) for team in env.teams.values() for _ in range(team.num_agents)]
    assert len(ours) == len(raw.possible_agents)
    for (obs_shape, space), agent in zip(ours, raw.possible_agents):
        ref = raw.action_spaces[agent]
        assert obs_shape == raw.observation_spaces[agent].shape, agent
        if continuous:
            assert isinstance(space, jmarl.Box) and space.shape == ref.shape and (space.low, space.high) == (0.0, 1.0)
        else:
            assert isinstance(space, jmarl.Discrete) and space.n == ref.n, (agent, space, ref)
    assert env.global_state_shape == raw.state_space.shape


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_and_actions_raise_before_compiling(name: str):
    with pytest.raises(jmarl.ConfigError, match="unknown key"):
        jmarl.make(name, not_a_field=1)
    env = jmarl.make(name)
    state_shape = jax.eval_shape(env.reset, jax.random.key(0))[1]
    good = jax.eval_shape(env.sample_actions, jax.random.key(0))
    team = list(env.teams)[-1]
    width = env.teams[team].action_space.n
    for bad in ({**good, team: jax.ShapeDtypeStruct(good[team].shape, jnp.float32)},  # floats for Discrete
                {**good, team: jax.ShapeDtypeStruct(good[team].shape + (width,), jnp.int32)}):  # a Box's shape
        with pytest.raises(ValueError, match=repr(team)):  # while tracing: nothing compiles
            jax.eval_shape(env.step, jax.random.key(0), state_shape, bad)


def test_world_comm_needs_a_leader_and_a_follower():
    with pytest.raises(ValueError, match="num_adversaries must be at least 2"):
        jmarl.make("mpe_world_comm", num_adversaries=1)


# --- reset and return distributions, episodes, info --------------------------------------------------
def _within_3_se(what: str, ours, ref) -> None:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    se = np.sqrt(ours.var(0, ddof=1) / len(ours) + ref.var(0, ddof=1) / len(ref))
    gap = np.abs(ours.mean(0) - ref.mean(0))
    assert np.all(gap <= 3 * se + 1e-12), f"{what}: jmarl {ours.mean(0)} vs mpe2 {ref.mean(0)} (se {se})"


def _mpe2_resets(case: Case, n: int, seed: int = 3) -> dict:
    module, kwargs = case.mpe2_env()
    raw = module.raw_env(**kwargs)
    raw.reset(seed=seed)
    rows = []
    for _ in range(n):
        raw.reset()
        rows.append(_snapshot(case, raw.world, raw.steps))
    return _stack(rows)


INFO_KEYS = {"mpe_push": ("goal",), "mpe_speaker_listener": ("goal",), "mpe_reference": ("goals",),
             "mpe_crypto": ("goal", "key")}


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c.id)
def test_resets_returns_and_episodes(case: Case):
    """In one program, random-policy envs under AutoReset(EpisodeStats) for two episodes each:
    - reset parity: initial positions (location and range), goal and key indices match mpe2's in
      distribution (RESETS resets each side), velocities and utterances start at zero;
    - random-policy team returns (the first episode's EpisodeStats return) match mpe2's recorded ones;
    - every episode is exactly max_steps transitions, truncated and never terminated;
    - ``info``'s goal entries describe the episode a step belongs to (the finished one on a done step)."""
    env = AutoReset(EpisodeStats(case.jmarl_env()))
    rec = record(case, case.episodes)
    ref = _mpe2_resets(case, RESETS)
    horizon, keys = env.max_steps, INFO_KEYS.get(case.name, ())

    def run(key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, RESETS))

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            actions = jax.vmap(env.sample_actions)(jax.random.split(k_act, RESETS))
            ts, state = jax.vmap(env.step)(jax.random.split(k_step, RESETS), state, actions)
            out = dict(truncated=ts.truncated, terminated=ts.terminated, returns=ts.info["episode_return"],
                       info={k: ts.info[k] for k in keys}, state={k: getattr(state.env_state, k) for k in keys})
            return state, out

        return state.env_state, jax.lax.scan(body, state, jax.random.split(key, 2 * horizon))[1]

    init, out = jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(1)))

    for what in ("agent_pos", "landmark_pos"):
        ours, theirs = getattr(init, what).reshape(RESETS, -1), ref[what].reshape(RESETS, -1)
        _within_3_se(f"{case.id} {what}", ours.mean(1), theirs.mean(1))  # location
        _within_3_se(f"{case.id} {what} squared", (ours ** 2).mean(1), (theirs ** 2).mean(1))  # range
        assert np.abs(ours).max() <= np.abs(theirs).max() + 0.01  # same support
    np.testing.assert_array_equal(init.agent_vel, 0.0)
    if hasattr(init, "comm"):
        np.testing.assert_array_equal(init.comm, 0.0)  # nothing said yet, as mpe2 resets state.c
    for what in ("goal", "goals", "key"):
        assert (what in ref) == hasattr(init, what)
        if what in ref:
            ours, theirs = getattr(init, what), ref[what]
            assert set(np.unique(ours)) == set(np.unique(theirs)), what  # every landmark, nothing else
            _within_3_se(f"{case.id} {what}", ours.reshape(RESETS, -1), theirs.reshape(RESETS, -1))

    ends = np.arange(2 * horizon) % horizon == horizon - 1  # after transitions 25 and 50
    np.testing.assert_array_equal(out["truncated"], np.broadcast_to(ends[:, None], out["truncated"].shape))
    assert not out["terminated"].any()
    start = 0
    for name, team in env.teams.items():  # team return: the sum over the team's agents
        sl = slice(start, start + team.num_agents)
        ours = out["returns"][name][horizon - 1].sum(-1)  # RESETS episodes
        _within_3_se(f"{case.id} {name} return", ours, rec["returns"][:, sl].sum(1))
        start += team.num_agents
    done = out["truncated"][:, 0]
    for key in keys:
        told, true = out["info"][key], out["state"][key]  # [T, E, ...]
        np.testing.assert_array_equal(told[~done], true[~done])
        np.testing.assert_array_equal(told[done], true[np.flatnonzero(done) - 1])
        np.testing.assert_array_equal(told[:horizon], np.broadcast_to(init.__getattribute__(key), told[:horizon].shape))


# --- the communication mapping -----------------------------------------------------------------------
def _reset_and_step(env: jmarl.Environment, actions: dict, seed: int) -> tuple:
    """(state, TimeStep, next state) of one step from a reset, in one compiled program."""

    def run(key):
        state = env.reset(key)[1]
        return (state, *env.step(key, state, actions))

    return jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(seed)))


def test_communication_mapping():
    """mpe2's composition: a moving speaker's discrete action is move + 5 * word, its continuous one
    [move (5), utterance]; an utterance reaches the listeners' observations after the step."""
    _, ts, new = _reset_and_step(jmarl.make("mpe_reference"), {"agents": jnp.array([2 + 5 * 7, 0 + 5 * 3])}, 0)
    np.testing.assert_array_equal(new.comm, np.eye(10)[[7, 3]])
    np.testing.assert_array_equal(ts.obs["agents"][:, -10:], np.eye(10)[[3, 7]])  # each hears the other
    assert new.agent_vel[0, 0] > 0 and new.agent_vel[1, 0] == 0  # agent 0 moved right, agent 1 not at all
    said = jnp.array([[0, 0, 1, 0, 0] + [0.2] * 9 + [1.7], [0] * 5 + [-1.0] + [0.5] * 9], jnp.float32)
    _, ts, new = _reset_and_step(jmarl.make("mpe_reference", continuous_actions=True), {"agents": said}, 0)
    np.testing.assert_allclose(new.comm, np.clip(said[:, 5:], 0, 1))  # clipped to the Box, as PettingZoo does
    np.testing.assert_allclose(ts.obs["agents"][0, -10:], np.clip(said[1, 5:], 0, 1))

    env = jmarl.make("mpe_speaker_listener")
    state, ts, new = _reset_and_step(env, {"speaker": jnp.array([2]), "listener": jnp.array([4])}, 2)
    np.testing.assert_array_equal(ts.obs["listener"][0, -3:], [0, 0, 1])
    np.testing.assert_array_equal(new.agent_pos[0], state.agent_pos[0])  # the speaker cannot move
    assert new.agent_vel[1, 1] > 0  # the listener moved up


# --- scripted heuristics -----------------------------------------------------------------------------
HEURISTIC_EPISODES = 200
# Teams whose heuristic alone (the others random) cannot beat random: a speaker whose listener ignores it,
# and Eve repeating a random Alice. They are measured with every team scripted instead.
NEEDS_PARTNER = {("mpe_speaker_listener", "speaker"), ("mpe_crypto", "speaker"), ("mpe_crypto", "adversaries")}


def _team_returns(env: jmarl.Environment, scripted: dict, key: jax.Array, also: jmarl.Environment) -> tuple:
    """Mean team return over HEURISTIC_EPISODES episodes for each setting: ``scripted`` {team: bool[S]} picks
    each team's policy (the heuristic or uniformly random); {team: f32[S]}. In the same program (one
    compile), the heuristic's actions in a reset state of ``also`` (the env with the other action kind)."""

    def episode(key, use):
        k_reset, k_run = jax.random.split(key)
        _, state = env.reset(k_reset)

        def body(state, key):
            k_act, k_rand, k_step = jax.random.split(key, 3)
            rand = env.sample_actions(k_rand)
            actions = {t: jnp.where(use[t], env.heuristic_actions(k_act, state, t).astype(rand[t].dtype), rand[t])
                       for t in env.teams}
            ts, state = env.step(k_step, state, actions)
            return state, {t: r.sum() for t, r in ts.reward.items()}

        _, rewards = jax.lax.scan(body, state, jax.random.split(k_run, env.max_steps))
        return {t: r.sum() for t, r in rewards.items()}

    def run(use, key):
        keys = jax.random.split(key, HEURISTIC_EPISODES)
        means = jax.vmap(lambda u: jax.tree.map(jnp.mean, jax.vmap(episode, (0, None))(keys, u)))(use)
        state = also.reset(key)[1]
        return means, {t: also.heuristic_actions(key, state, t) for t in also.teams}

    return jax.tree.map(np.asarray, jax.jit(run)({t: jnp.asarray(v) for t, v in scripted.items()}, key))


@pytest.mark.parametrize("name", NAMES)
def test_heuristics_are_valid_and_beat_random(name: str):
    env, cont = jmarl.make(name), jmarl.make(name, continuous_actions=True)
    with pytest.raises(ValueError, match="no team"):  # raised while tracing: nothing compiles
        jax.eval_shape(lambda k: env.heuristic_actions(k, env.reset(k)[1], "nobody"), jax.random.key(0))
    teams = list(env.teams)
    # Settings: 0 everybody random, 1..T team t alone scripted (the others random), T + 1 everybody scripted.
    scripted = {t: [False] + [t == u for u in teams] + [True] for t in teams}
    returns, cont_actions = _team_returns(env, scripted, jax.random.key(1), cont)
    for t, team in cont.teams.items():  # valid continuous actions (the discrete ones were just played)
        act = cont_actions[t]
        assert act.shape == (team.num_agents,) + team.action_space.shape and team.action_space.contains(act), t
    for i, t in enumerate(teams, start=1):
        random, alone = returns[t][0], returns[t][i]
        if (name, t) not in NEEDS_PARTNER:  # measured: better by 2x to 10x
            assert alone > random + 0.1 * abs(random) + 0.5, (t, random, alone)
    everybody = {t: r[-1] for t, r in returns.items()}
    if name == "mpe_speaker_listener":
        # Told the goal, the listener ends on it (measured -9 per episode; following a random speaker's
        # words -19, random -38).
        assert everybody["listener"] > 0.7 * returns["listener"][2], (everybody, returns["listener"])
    if name == "mpe_crypto":
        # good + Eve's return = -(Bob's squared errors): Bob reads the goal from Alice's first message on, so
        # only the first step can be wrong (2 with probability 1/2). Eve, repeating what she hears, is right
        # half of the time: about -25 per episode, and the good team about +24 (random: -38 and 0).
        bob_errors = -(everybody["listener"] + everybody["adversaries"])
        assert 0.0 <= bob_errors <= 2.0, everybody
        assert everybody["adversaries"] < -15 and everybody["listener"] > 15, everybody
        np.testing.assert_allclose(everybody["speaker"], everybody["listener"])


# --- rendering ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_render_scene_uses_mpe2_colours(name: str):
    """Each scenario's scene (``render_scene``, drawn by ``jmarl render``): every agent and landmark, one
    frame per state, goal landmarks as stars, world_comm's forests under the agents."""
    from jmarl.envs.mpe.palette import GOAL_MARKER

    env = jmarl.make(name)
    # Three frames of a made-up state of the env's own structure (no reset: nothing compiles), goals 1 and 0.
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(env.reset, jax.random.key(0))[1]
    state = jax.tree.map(lambda x: rng.uniform(-1, 1, x.shape).astype(x.dtype) if x.dtype == np.float32
                         else np.zeros(x.shape, x.dtype), shapes)
    for what in ("goal", "goals"):
        if hasattr(state, what):
            state = state.replace(**{what: (1 - np.arange(np.size(getattr(state, what)))).reshape(
                np.shape(getattr(state, what))).astype(np.int32)})
    states = jax.tree.map(lambda x: np.stack([x] * 3), state)
    scene = env.render_scene(states)
    world = env.world
    k = world.num_agents + world.num_landmarks
    assert scene.pos.shape == (3, k, 2) and len(scene.color) == k
    stars = [i - world.num_agents for i, m in enumerate(scene.marker) if m == GOAL_MARKER]
    goals = sorted(set(np.asarray(getattr(state, "goal", getattr(state, "goals", []))).reshape(-1).tolist()))
    assert stars == [int(g) for g in goals] and (("goal" in scene.legend) == bool(goals))
    if name == "mpe_world_comm":
        forests = world.landmark_size[-env.config.num_forests:]
        np.testing.assert_allclose(scene.radius[:len(forests)], forests)  # drawn first: agents show on top
        assert set(scene.legend) == {"leader", "adversaries", "agents", "food", "forest"}
    elif name != "mpe_crypto":  # landmarks in mpe2's colours, not the default grey
        assert "#404040" not in scene.color[world.num_agents:]
