"""A two-team toy game for tests of competitive tools (crossplay, ratings, exploit) that compiles in a fraction of
a second: rock-paper-scissors between team "hunters" and team "runners", one agent each, ``max_steps`` rounds."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from jmarl import Discrete, Environment, Team, TimeStep

NAME = "test_duel"
TEAMS = ("hunters", "runners")


@struct.dataclass
class DuelState:
    last: jax.Array  # i32[2]: each team's last move (-1 before the first round)
    step: jax.Array  # i32[]


class Duel(Environment):
    """Each round both teams play 0 rock, 1 paper or 2 scissors; the winner of the round gets 1 (a draw pays
    nothing). An agent observes [the other team's last move one-hot (3, zeros before the first round), the
    round / max_steps]. Episode metric ``draws``: rounds drawn. Scripted policy: the move that beats the other
    team's last one (rock first)."""

    @dataclass(frozen=True)
    class Config:
        max_steps: int = 4

    name = NAME

    def __init__(self, config: Config = Config()):
        self.config = config

    @property
    def teams(self):
        return {t: Team(1, (4,), Discrete(3)) for t in TEAMS}

    @property
    def global_state_shape(self):
        return (8,)

    @property
    def max_steps(self):
        return self.config.max_steps

    def _timestep(self, state: DuelState, reward, draw, done) -> TimeStep:
        seen = jax.nn.one_hot(state.last[::-1], 3)  # f32[2, 3]: team i sees the other's last move
        round_ = jnp.full((2, 1), state.step / self.config.max_steps, jnp.float32)
        obs = jnp.concatenate([seen, round_], 1)
        return TimeStep(obs={t: obs[i][None] for i, t in enumerate(TEAMS)},
                        reward={t: reward[i][None] for i, t in enumerate(TEAMS)},
                        terminated=jnp.zeros((), bool), truncated=done, global_state=obs.reshape(-1),
                        avail_actions={t: jnp.ones((1, 3), bool) for t in TEAMS},
                        info={"metrics": {"draws": draw}})

    def _reset(self, key):
        state = DuelState(jnp.full((2,), -1, jnp.int32), jnp.zeros((), jnp.int32))
        return self._timestep(state, jnp.zeros(2), jnp.zeros(()), jnp.zeros((), bool)), state

    def _step(self, key, state, actions):
        moves = jnp.stack([actions[t][0] for t in TEAMS])  # i32[2]
        beats = (moves - moves[::-1]) % 3 == 1  # bool[2]: paper beats rock, scissors paper, rock scissors
        state = DuelState(moves, state.step + 1)
        draw = (moves[0] == moves[1]).astype(jnp.float32)
        return self._timestep(state, beats.astype(jnp.float32), draw, state.step >= self.config.max_steps), state

    def heuristic_actions(self, key: jax.Array, state: DuelState, team: str) -> jax.Array:
        """i32[1]: the move that beats the other team's last one (rock before the first round)."""
        other = state.last[1 - TEAMS.index(team)]
        return jnp.where(other < 0, 0, (other + 1) % 3)[None].astype(jnp.int32)
