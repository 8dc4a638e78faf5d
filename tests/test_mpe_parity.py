"""jmarl's MPE environments against PettingZoo's reference implementation (the ``mpe2`` package).

Step parity: mpe2 runs random-policy episodes in Python and we record every transition (state before,
actions, what mpe2 computed after). jmarl then evaluates all recorded transitions at once, its step
jitted and vmapped, from mpe2's state copied in. Before each transition mpe2's float64 state is rounded
to float32 values, so the copy is exact and only jmarl's float32 arithmetic is measured. Observations,
rewards, positions and velocities must agree to an absolute 1e-5: states stay O(1) over 25 steps, so
no relative tolerance is needed.

One exception, measured and bounded: a collision reward is a step function of a distance, so when
mpe2's distance lies within 1e-5 of the contact threshold float32 may legitimately land on the other
side; such transitions (a tiny fraction, asserted) are excluded from the reward comparison only.

The recorder calls mpe2's world step directly (fast); a short test checks that PettingZoo's public
ParallelEnv API gives the same transitions.

Reset parity: initial positions (mean and mean square, i.e. location and range) and random-policy team
returns match mpe2's in distribution: means within 3 standard errors, 2000 episodes each side. About 20
such comparisons would, over random seeds, raise a false alarm about 5% of the time; the seeds are
fixed, so the outcome is deterministic (the largest |z| with these seeds is about 2).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

mpe2 = pytest.importorskip("mpe2")
from mpe2 import simple_adversary_v3, simple_spread_v3, simple_tag_v3  # noqa: E402

import jmarl  # noqa: E402
from jmarl.envs.mpe.adversary import AdversaryState  # noqa: E402
from jmarl.envs.mpe.core import MPEState  # noqa: E402

ATOL = 1e-5
THRESHOLD_MARGIN = 1e-5  # collision-reward transitions this close to the threshold are not compared
DIST_EPISODES = 2000  # reset parity (and the default-config step parity reuses these episodes)
STEP_EPISODES = 200  # step parity for the other configurations


@dataclass(frozen=True)
class Case:
    """One environment configuration, as jmarl and mpe2 spell it."""

    jmarl_name: str
    jmarl_kwargs: tuple  # ((key, value), ...): hashable, for the recording cache
    mpe2_module: object
    mpe2_kwargs: tuple
    collision_pairs: tuple = ()  # ((agent i, agent j, summed radius), ...) whose contact is rewarded

    @property
    def id(self) -> str:
        short = {"continuous_actions": "cont", "num_agents": "n", "num_good": "good",
                 "num_adversaries": "adv", "num_obstacles": "obst", "local_ratio": "local"}
        return self.jmarl_name + "".join(f"-{short.get(k, k)}{int(v) if isinstance(v, bool) else v}"
                                         for k, v in self.jmarl_kwargs)


def spread(n: int, continuous: bool = False, local_ratio: float = 0.5) -> Case:
    pairs = tuple((i, j, 0.3) for i in range(n) for j in range(i + 1, n))
    return Case("mpe_spread", (("num_agents", n), ("local_ratio", local_ratio), ("continuous_actions", continuous)),
                simple_spread_v3, (("N", n), ("local_ratio", local_ratio), ("continuous_actions", continuous)), pairs)


def tag(continuous: bool = False, num_good: int = 1, num_adversaries: int = 3, num_obstacles: int = 2) -> Case:
    sizes = (("num_good", num_good), ("num_adversaries", num_adversaries), ("num_obstacles", num_obstacles),
             ("continuous_actions", continuous))
    pairs = tuple((g, a, 0.125) for g in range(num_adversaries, num_adversaries + num_good)
                  for a in range(num_adversaries))  # each prey vs each adversary
    return Case("mpe_tag", sizes, simple_tag_v3, sizes, pairs)


def adversary(continuous: bool = False, n: int = 2) -> Case:
    return Case("mpe_adversary", (("num_good", n), ("continuous_actions", continuous)), simple_adversary_v3,
                (("N", n), ("continuous_actions", continuous)))


DEFAULT_CASES = [spread(3), tag(), adversary()]
STEP_CASES = DEFAULT_CASES + [spread(2), spread(5), spread(3, local_ratio=0.25), spread(2, True), spread(3, True),
                              spread(5, True),
                              tag(True), tag(num_good=2, num_adversaries=4, num_obstacles=3), adversary(True),
                              adversary(n=3)]


# --- mpe2 side: run episodes in Python and record every transition ----------------------------------
@functools.lru_cache(maxsize=None)
def record(case: Case, num_episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random-policy mpe2 episodes, driven through its world step (what the AEC API calls once every
    agent has acted). Arrays are [T, ...] over all transitions, or [num_episodes, ...] for ``init_*``."""
    kwargs = dict(case.mpe2_kwargs)
    continuous = kwargs.get("continuous_actions", False)
    env = case.mpe2_module.raw_env(**kwargs)
    env.reset(seed=seed)
    world, scenario = env.world, env.scenario
    agents, landmarks = world.agents, world.landmarks
    rng = np.random.default_rng(seed + 1)
    horizon, n, num_landmarks = env.max_cycles, len(agents), len(landmarks)
    size = num_episodes * horizon
    rec = {key: np.zeros(shape, dtype) for key, shape, dtype in [
        ("pos", (size, n, 2), np.float64), ("vel", (size, n, 2), np.float64),
        ("landmark_pos", (size, num_landmarks, 2), np.float64), ("step", (size,), np.int32),
        ("goal", (size,), np.int32), ("next_pos", (size, n, 2), np.float64),
        ("next_vel", (size, n, 2), np.float64), ("reward", (size, n), np.float64),
        ("truncated", (size,), bool), ("init_pos", (num_episodes, n, 2), np.float64),
        ("init_landmark_pos", (num_episodes, num_landmarks, 2), np.float64),
        ("init_goal", (num_episodes,), np.int32), ("returns", (num_episodes, n), np.float64)]}
    rec["actions"] = (np.zeros((size, n, 5), np.float32) if continuous else np.zeros((size, n), np.int32))
    obs_rows = []
    for ep in range(num_episodes):
        env.reset()
        goal = landmarks.index(agents[0].goal_a) if hasattr(agents[0], "_goal_a") else 0
        rec["init_pos"][ep] = [a.state.p_pos for a in agents]
        rec["init_landmark_pos"][ep] = [lm.state.p_pos for lm in landmarks]
        rec["init_goal"][ep] = goal
        for t in range(horizon):
            i = ep * horizon + t
            _round_to_float32(agents, landmarks)
            rec["pos"][i] = [a.state.p_pos for a in agents]
            rec["vel"][i] = [a.state.p_vel for a in agents]
            rec["landmark_pos"][i] = [lm.state.p_pos for lm in landmarks]
            rec["step"][i], rec["goal"][i] = env.steps, goal
            actions = (rng.random((n, 5), dtype=np.float32) if continuous
                       else rng.integers(0, 5, n).astype(np.int32))
            rec["actions"][i] = actions
            env.current_actions = list(actions) if continuous else [int(a) for a in actions]
            env._execute_world_step()
            env.steps += 1
            rec["next_pos"][i] = [a.state.p_pos for a in agents]
            rec["next_vel"][i] = [a.state.p_vel for a in agents]
            rec["reward"][i] = [env.rewards[a.name] for a in agents]
            rec["truncated"][i] = env.steps >= env.max_cycles
            obs_rows.append(np.concatenate([scenario.observation(a, world) for a in agents]))
        rec["returns"][ep] = rec["reward"][ep * horizon:(ep + 1) * horizon].sum(0)
    rec["global_state"] = np.stack(obs_rows)  # f64[T, sum of obs sizes]: mpe2's state()
    return rec


def _round_to_float32(agents, landmarks) -> None:
    """Make mpe2's state exactly representable in float32, so copying it into jmarl is lossless and the
    comparison measures jmarl's arithmetic, not the rounding of its input (which deep contacts amplify
    by contact_force * dt / dist, up to ~1e3). Each recorded transition is still mpe2's own."""
    for e in agents + landmarks:
        e.state.p_pos = e.state.p_pos.astype(np.float32).astype(np.float64)
        e.state.p_vel = e.state.p_vel.astype(np.float32).astype(np.float64)


def make_env(case: Case) -> jmarl.Environment:
    return jmarl.make(case.jmarl_name, **dict(case.jmarl_kwargs))


def _split_actions(env: jmarl.Environment, actions: jax.Array, axis: int = 0) -> dict[str, jax.Array]:
    """Actions of all agents in mpe2's order -> {team: actions of its agents} (teams follow that order)."""
    out, start = {}, 0
    for name, team in env.teams.items():
        out[name] = jax.lax.slice_in_dim(actions, start, start + team.num_agents, axis=axis)
        start += team.num_agents
    return out


def near_threshold(case: Case, rec: dict[str, np.ndarray]) -> np.ndarray:
    """bool[T]: after the step, a rewarded contact distance lies within THRESHOLD_MARGIN of its threshold."""
    out = np.zeros(len(rec["next_pos"]), bool)
    for i, j, radius in case.collision_pairs:
        dist = np.linalg.norm(rec["next_pos"][:, i] - rec["next_pos"][:, j], axis=-1)
        out |= np.abs(dist - radius) < THRESHOLD_MARGIN
    return out


# --- step parity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.id)
def test_step_matches_mpe2(case: Case):
    episodes = DIST_EPISODES if case in DEFAULT_CASES else STEP_EPISODES
    rec = record(case, episodes)
    env = make_env(case)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    fields = dict(agent_pos=f32(rec["pos"]), agent_vel=f32(rec["vel"]),
                  landmark_pos=f32(rec["landmark_pos"]), step=jnp.asarray(rec["step"]))
    states = (AdversaryState(**fields, goal=jnp.asarray(rec["goal"])) if case.jmarl_name == "mpe_adversary"
              else MPEState(**fields))
    actions = _split_actions(env, jnp.asarray(rec["actions"]), axis=1)
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0)))
    ts, next_states = step(jax.random.key(0), states, actions)

    np.testing.assert_allclose(next_states.agent_pos, rec["next_pos"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(next_states.agent_vel, rec["next_vel"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(ts.global_state, rec["global_state"], rtol=0, atol=ATOL)
    obs = np.concatenate([np.asarray(ts.obs[name]).reshape(len(rec["pos"]), -1) for name in env.teams], 1)
    np.testing.assert_allclose(obs, rec["global_state"], rtol=0, atol=ATOL)  # per-team obs, in order
    np.testing.assert_array_equal(ts.truncated, rec["truncated"])
    assert not np.any(ts.terminated)

    skip = near_threshold(case, rec)
    assert skip.mean() < 1e-3, f"{skip.sum()} transitions near a collision threshold"
    reward = np.concatenate([np.asarray(ts.reward[name]) for name in env.teams], 1)
    np.testing.assert_allclose(reward[~skip], rec["reward"][~skip], rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c.id)
def test_public_parallel_api_agrees(case: Case):
    """The recorder drives mpe2's world step directly; check the public ParallelEnv (with PettingZoo's
    wrappers, agent cycling and truncation) gives jmarl's transitions too, for two episodes."""
    par = case.mpe2_module.parallel_env(**dict(case.mpe2_kwargs))
    par.reset(seed=7)
    raw, names = par.unwrapped, list(par.possible_agents)
    env = make_env(case)
    step = jax.jit(env.step)
    rng = np.random.default_rng(7)
    for episode in range(2):
        if episode:
            par.reset()
        goal = raw.world.landmarks.index(raw.world.agents[0].goal_a) if hasattr(raw.world.agents[0], "_goal_a") else 0
        for _ in range(env.max_steps):
            _round_to_float32(raw.world.agents, raw.world.landmarks)
            state = MPEState(*(jnp.asarray([e.state.p_pos for e in raw.world.agents], jnp.float32),
                               jnp.asarray([e.state.p_vel for e in raw.world.agents], jnp.float32),
                               jnp.asarray([e.state.p_pos for e in raw.world.landmarks], jnp.float32).reshape(-1, 2),
                               jnp.asarray(raw.steps, jnp.int32)))
            if case.jmarl_name == "mpe_adversary":
                state = AdversaryState(state.agent_pos, state.agent_vel, state.landmark_pos, state.step,
                                       jnp.asarray(goal, jnp.int32))
            actions = rng.integers(0, 5, len(names))
            obs, reward, terminated, truncated, _ = par.step({a: int(x) for a, x in zip(names, actions)})
            ts, _ = step(jax.random.key(0), state, _split_actions(env, jnp.asarray(actions, jnp.int32)))
            np.testing.assert_allclose(ts.global_state, np.concatenate([obs[a] for a in names]), rtol=0, atol=ATOL)
            ours = np.concatenate([np.asarray(ts.reward[t]) for t in env.teams])
            np.testing.assert_allclose(ours, [reward[a] for a in names], rtol=0, atol=ATOL)
            assert all(truncated[a] == bool(ts.truncated) for a in names)
            assert not any(terminated.values())
        assert not par.agents  # the episode ended after exactly max_steps


# --- reset parity (distribution) -------------------------------------------------------------------
def _within_3_se(name: str, ours: np.ndarray, ref: np.ndarray):
    """Means of ``ours`` and ``ref`` (samples on axis 0) agree within 3 standard errors, entrywise."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    se = np.sqrt(ours.var(0, ddof=1) / len(ours) + ref.var(0, ddof=1) / len(ref))
    gap = np.abs(ours.mean(0) - ref.mean(0))
    assert np.all(gap <= 3 * se + 1e-12), f"{name}: jmarl {ours.mean(0)} vs mpe2 {ref.mean(0)} (se {se})"


def _random_episodes(env: jmarl.Environment, key: jax.Array, num_episodes: int):
    """Initial states and per-agent returns f32[E, A] of ``num_episodes`` random-policy episodes."""

    def episode(key):
        key_reset, key_run = jax.random.split(key)
        ts, state = env.reset(key_reset)

        def body(carry, key):
            state, ret = carry
            key_act, key_step = jax.random.split(key)
            ts, state = env.step(key_step, state, env.sample_actions(key_act))
            return (state, ret + jnp.concatenate([ts.reward[t] for t in env.teams])), None

        (_, ret), _ = jax.lax.scan(body, (state, jnp.zeros(env.num_agents)), jax.random.split(key_run, env.max_steps))
        return state, ret

    return jax.jit(jax.vmap(episode))(jax.random.split(key, num_episodes))


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c.id)
def test_reset_and_returns_match_mpe2_in_distribution(case: Case):
    rec = record(case, DIST_EPISODES)
    env = make_env(case)
    init, returns = _random_episodes(env, jax.random.key(0), DIST_EPISODES)
    for what, ours, ref in [("agent positions", init.agent_pos, rec["init_pos"]),
                            ("landmark positions", init.landmark_pos, rec["init_landmark_pos"])]:
        ours, ref = np.asarray(ours).reshape(DIST_EPISODES, -1), ref.reshape(DIST_EPISODES, -1)
        _within_3_se(f"{case.id} {what}", ours.mean(1), ref.mean(1))  # location
        _within_3_se(f"{case.id} {what} squared", (ours ** 2).mean(1), (ref ** 2).mean(1))  # spread: range
        assert np.abs(ours).max() <= np.abs(ref).max() + 0.01  # same support
    if case.jmarl_name == "mpe_adversary":
        _within_3_se(f"{case.id} goal", np.asarray(init.goal), rec["init_goal"])
    start = 0
    for name, team in env.teams.items():  # team return: the sum over the team's agents
        sl = slice(start, start + team.num_agents)
        _within_3_se(f"{case.id} {name} return", np.asarray(returns[:, sl]).sum(1), rec["returns"][:, sl].sum(1))
        start += team.num_agents
