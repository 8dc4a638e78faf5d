"""Probe environments with a known optimum, for testing that learners learn (and as examples of the
team API: each is a complete environment in a few dozen lines).

- ``probe_matrix``: a one-step cooperative matrix game. Two agents pick one of 3 actions; the shared
  reward is ``PAYOFF[a0, a1]``, best at (2, 2) = 10, with a weaker optimum at (0, 0) = 5.
- ``probe_two_step``: the two-step game of the QMIX paper. Agent 0's first action picks matrix A
  (every joint action pays 7) or matrix B ([[0, 1], [1, 8]]); the reward comes only at step two, so
  the first choice needs credit assigned through time. Optimum 8.
- ``probe_continuous``: a one-step cooperative game with Box actions: each agent should output the
  target it observes. Optimum 0 (see ``ContinuousProbe``).
- ``probe_comm``: a referential game in which communication is necessary: a speaker sees a private
  goal, a listener who sees nothing must act on it. Without a channel the best return is chance; with
  one (``messages=V``, ``jmarl.core.messages``) it is 1 per agent (see ``CommProbe``).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.env import Environment, Team, TimeStep
from jmarl.core.spaces import Box, Discrete

MATRIX_PAYOFF = jnp.array([[5.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 10.0]])
TWO_STEP_B = jnp.array([[0.0, 1.0], [1.0, 8.0]])


@struct.dataclass
class ProbeState:
    step: jax.Array  # i32[]
    stage: jax.Array  # i32[]: which observation the agents see (0: first step, 1: matrix A, 2: matrix B)


class _Probe(Environment):
    """Two agents in team "agents"; observation = one-hot of the stage; episodes end after max_steps."""

    num_stages: int
    num_actions: int

    def __init__(self, config):
        self.config = config

    @property
    def teams(self):
        return {"agents": Team(2, (self.num_stages,), Discrete(self.num_actions))}

    @property
    def global_state_shape(self):
        return (self.num_stages,)

    def _timestep(self, state, reward, done):
        onehot = jax.nn.one_hot(state.stage, self.num_stages)
        return TimeStep(
            obs={"agents": jnp.tile(onehot, (2, 1))},
            reward={"agents": jnp.full((2,), reward, jnp.float32)},
            terminated=done, truncated=jnp.zeros((), bool), global_state=onehot,
            avail_actions={"agents": jnp.ones((2, self.num_actions), bool)})

    def _reset(self, key):
        state = ProbeState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        return self._timestep(state, 0.0, jnp.zeros((), bool)), state


class MatrixGame(_Probe):
    @dataclass(frozen=True)
    class Config:
        pass

    name, num_stages, num_actions, max_steps = "probe_matrix", 1, 3, 1

    def _step(self, key, state, actions):
        a = actions["agents"]
        state = state.replace(step=state.step + 1)
        return self._timestep(state, MATRIX_PAYOFF[a[0], a[1]], jnp.ones((), bool)), state


class TwoStepGame(_Probe):
    @dataclass(frozen=True)
    class Config:
        pass

    name, num_stages, num_actions, max_steps = "probe_two_step", 3, 2, 2

    def _step(self, key, state, actions):
        a = actions["agents"]
        first = state.step == 0
        reward = jnp.where(first, 0.0, jnp.where(state.stage == 1, 7.0, TWO_STEP_B[a[0], a[1]]))
        stage = jnp.where(first, 1 + a[0], state.stage)
        state = ProbeState(state.step + 1, stage)
        return self._timestep(state, reward, ~first), state


@struct.dataclass
class ContinuousProbeState:
    target: jax.Array  # f32[2, 2]: where each agent should put its action


class ContinuousProbe(Environment):
    """``probe_continuous``: a one-step cooperative game with Box actions and a known optimum.

    Two agents in team "agents", actions f32[2, 2] in [-1, 1]^2. Each episode draws a target per agent,
    uniform in [-0.8, 0.8]^2, and shows agent i its own target (obs f32[2, 2]; the global state is both,
    f32[4]). The shared reward is ``-mean_i ||a_i - target_i||^2``, so the optimum is a_i = target_i with
    team return 0; uniformly random actions score about -2.2 (team return: sum over the 2 agents).
    """

    @dataclass(frozen=True)
    class Config:
        pass

    name, max_steps = "probe_continuous", 1

    def __init__(self, config=Config()):
        self.config = config

    @property
    def teams(self):
        return {"agents": Team(2, (2,), Box(-1.0, 1.0, (2,)))}

    @property
    def global_state_shape(self):
        return (4,)

    def _timestep(self, state, reward, done):
        return TimeStep(
            obs={"agents": state.target}, reward={"agents": jnp.full((2,), reward, jnp.float32)},
            terminated=done, truncated=jnp.zeros((), bool), global_state=state.target.reshape(-1),
            avail_actions={"agents": jnp.ones((2, 1), bool)})

    def _reset(self, key):
        state = ContinuousProbeState(jax.random.uniform(key, (2, 2), jnp.float32, -0.8, 0.8))
        return self._timestep(state, 0.0, jnp.zeros((), bool)), state

    def _step(self, key, state, actions):
        a = jnp.clip(actions["agents"], -1.0, 1.0)
        reward = -jnp.mean(jnp.sum(jnp.square(a - state.target), axis=-1))
        return self._timestep(state, reward, jnp.ones((), bool)), state


@struct.dataclass
class CommProbeState:
    goal: jax.Array  # i32[]: the speaker's private goal
    step: jax.Array  # i32[]


class CommProbe(Environment):
    """``probe_comm``: a speaker knows a goal, a listener must name it, and nothing but a message links them.

    Team "agents": agent 0 the speaker, agent 1 the listener; actions Discrete(``num_goals``). Episodes are
    two steps: the goal (uniform) is shown to the speaker only, obs f32[num_goals + 2] = ``[one-hot goal,
    is speaker, is listener]`` (the listener's goal part is zeros). The second step pays both agents 1 if
    the listener's action is the goal, else 0 (the first step pays nothing); the speaker's actions do not
    matter. So the listener can do better than chance (1 / num_goals) only by hearing, on the second step, a
    message the speaker sent on the first: with ``messages=V >= num_goals`` the optimum is a team return of
    2 (1 per agent); with no channel, or a randomised one (``messages_randomised=True``), it is
    2 / num_goals. ``info["goal"]`` (i32[]) is the speaker's private information.
    """

    @dataclass(frozen=True)
    class Config:
        num_goals: int = 2

    name, max_steps = "probe_comm", 2

    def __init__(self, config: Config = Config()):
        if config.num_goals < 2:
            raise ValueError(f"num_goals={config.num_goals}: a goal is one of at least 2")
        self.config = config

    @property
    def teams(self):
        k = self.config.num_goals
        return {"agents": Team(2, (k + 2,), Discrete(k))}

    @property
    def global_state_shape(self):
        return (self.config.num_goals + 1,)

    def _timestep(self, state, reward, done):
        k = self.config.num_goals
        goal = jax.nn.one_hot(state.goal, k)
        obs = jnp.stack([jnp.concatenate([goal, jnp.array([1.0, 0.0])]),
                         jnp.concatenate([jnp.zeros(k), jnp.array([0.0, 1.0])])])
        return TimeStep(
            obs={"agents": obs}, reward={"agents": jnp.full((2,), reward, jnp.float32)},
            terminated=done, truncated=jnp.zeros((), bool),
            global_state=jnp.concatenate([goal, state.step[None].astype(jnp.float32)]),
            avail_actions={"agents": jnp.ones((2, k), bool)}, info={"goal": state.goal})

    def _reset(self, key):
        state = CommProbeState(jax.random.randint(key, (), 0, self.config.num_goals), jnp.zeros((), jnp.int32))
        return self._timestep(state, 0.0, jnp.zeros((), bool)), state

    def _step(self, key, state, actions):
        last = state.step == 1
        reward = jnp.where(last & (actions["agents"][1] == state.goal), 1.0, 0.0)
        state = state.replace(step=state.step + 1)
        return self._timestep(state, reward, last), state
