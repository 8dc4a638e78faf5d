"""The tiny environment the kernel and adapter tests share: small enough to check by hand, with two teams
(one discrete, one continuous), an action that ends the episode and is masked on the first step, and a
time limit."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from jmarl import Box, Discrete, Environment, Team, TimeStep

NAME = "test_counter"


@struct.dataclass
class CounterState:
    step: jax.Array  # i32[]
    total: jax.Array  # f32[]


class Counter(Environment):
    """Two runners (Discrete(3); action 2 ends the episode, and is unavailable on the first step) and a
    pilot (Box(-1, 1, (2,))). ``total`` starts random and adds up every action (times ``scale``), plus
    ``noise`` times a uniform draw from the step's key.

    Observations: runner i sees (total, step, i), the pilot (total, -step); the global state is
    (total, step). Rewards: runner i gets its action + 1; the pilot gets the step number (1, 2, ...).
    Truncated after ``max_steps`` transitions unless terminated.
    """

    @dataclass(frozen=True)
    class Config:
        max_steps: int = 4
        scale: float = 1.0
        noise: float = 0.0

    name = NAME

    def __init__(self, config: Config = Config()):
        self.config = config

    @property
    def teams(self):
        return {"runners": Team(2, (3,), Discrete(3)), "pilot": Team(1, (2,), Box(-1.0, 1.0, (2,)))}

    @property
    def global_state_shape(self):
        return (2,)

    @property
    def max_steps(self):
        return self.config.max_steps

    def _timestep(self, state, reward, terminated, truncated):
        step = state.step.astype(jnp.float32)
        return TimeStep(
            obs={"runners": jnp.stack([jnp.stack([state.total, step, float(i)]) for i in range(2)]),
                 "pilot": jnp.stack([state.total, -step])[None]},
            reward=reward, terminated=terminated, truncated=truncated,
            global_state=jnp.stack([state.total, step]),
            avail_actions={"runners": jnp.tile(jnp.array([True, True, False]).at[2].set(state.step > 0), (2, 1)),
                           "pilot": jnp.ones((1, 1), bool)})

    def _reset(self, key):
        state = CounterState(jnp.zeros((), jnp.int32), jax.random.uniform(key))
        reward = {"runners": jnp.zeros(2), "pilot": jnp.zeros(1)}
        return self._timestep(state, reward, jnp.zeros((), bool), jnp.zeros((), bool)), state

    def _step(self, key, state, actions):
        runners = actions["runners"]
        moved = self.config.scale * (jnp.sum(runners) + jnp.sum(actions["pilot"]))
        state = CounterState(state.step + 1, state.total + moved + self.config.noise * jax.random.uniform(key))
        reward = {"runners": runners.astype(jnp.float32) + 1.0, "pilot": state.step.astype(jnp.float32)[None]}
        terminated = jnp.any(runners == 2)
        truncated = (state.step >= self.max_steps) & ~terminated
        return self._timestep(state, reward, terminated, truncated), state


def actions(runners, pilot=(0.25, -0.25)) -> dict:
    return {"runners": jnp.array(runners, jnp.int32), "pilot": jnp.array([pilot], jnp.float32)}


GO, STOP = actions([0, 1]), actions([2, 0])
