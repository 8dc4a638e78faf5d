"""simple_crypto (PettingZoo ``simple_crypto_v3``): Alice sends Bob a goal under a shared key; Eve, who
hears the message but not the key, tries to read it.

Teams, in mpe2's order: "adversaries" (``eve_0``), "listener" (``bob_0``) and "speaker" (``alice_0``),
one agent each. Nobody moves (positions are drawn but observed by no one). Two landmarks; their
"colours" are one-hot words of size C = 4 (landmark j: word j). The goal and the key are landmarks drawn
independently and uniformly; the goal's word is the message, the key's word is the key.

Actions, as mpe2 composes them: every agent only speaks. Discrete(4): the word, said as a one-hot
vector; or Box(0, 1, (4,)): the utterance itself (clipped to [0, 1]).

Observations (the utterances are those of the step just taken, zeros after reset):
- Eve f32[4]: ``[Alice's utterance (4)]``
- Bob f32[8]: ``[key (4), Alice's utterance (4)]``
- Alice f32[8]: ``[goal (4), key (4)]``

Rewards (an agent whose utterance is all zeros counts as silent and adds nothing):
- Eve: ``-|eve - goal|^2``
- Bob and Alice (the same): ``|eve - goal|^2 - |bob - goal|^2``

``info["goal"]`` and ``info["key"]`` (i32[]): the goal's and the key's landmark indices.

``comm_randomised=True``: Bob and Eve hear a uniformly random word (or vector) instead of Alice's (``core.py``);
Bob's and Eve's own words, which the rewards score, are kept.

Scripted heuristic (``heuristic_actions``): Alice says ``(goal + key) mod 2``; Bob says ``(heard - key)
mod 2``, the goal (from his observation only); Eve repeats what she heard, which, the key being uniform,
is the goal half of the time. Measured over 200 episodes, all three scripted: Eve -24.3, Bob and Alice +23.4
each (random play: -37.8 and +0.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from jmarl.core.scene import Scene
from jmarl.envs.mpe.core import DEFAULT_ACCEL, CommState, Geometry, MPEEnv, World, uniform
from jmarl.envs.mpe.palette import recolor

ENTITY_SIZE = 0.05  # mpe2's default size, for agents and landmarks
NUM_LANDMARKS = 2
DIM_C = 4
EVE, BOB, ALICE = 0, 1, 2  # mpe2's agent order


@struct.dataclass
class CryptoState(CommState):
    goal: jax.Array  # i32[]  the message: a landmark index
    key: jax.Array  # i32[]  the shared key: a landmark index


class SimpleCrypto(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        max_steps: int = 25
        continuous_actions: bool = False
        comm_randomised: bool = False  # heard utterances replaced by random ones (causal value; core.py)

    name = "mpe_crypto"
    objective = "return/listener"  # the headline: Bob and Alice (one reward) against Eve
    # Only Alice is heard (Bob's and Eve's words are their guesses, scored by the reward); Bob is the receiver
    # the channel is for (Eve, who also hears it, is an opposing team: its return is reported on its own).
    comm_heard, comm_receivers = (ALICE,), ("listener",)

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.world = World(agent_size=(ENTITY_SIZE,) * 3, landmark_size=(ENTITY_SIZE,) * NUM_LANDMARKS,
                           agent_accel=(DEFAULT_ACCEL,) * 3, agent_movable=(False,) * 3,
                           agent_silent=(False,) * 3, dim_c=DIM_C)
        self.team_sizes = {"adversaries": 1, "listener": 1, "speaker": 1}
        self.obs_sizes = {"adversaries": DIM_C, "listener": 2 * DIM_C, "speaker": 2 * DIM_C}

    def _initial_state(self, key: jax.Array) -> CryptoState:
        # One draw for the positions, the goal and the key (a reset runs every step under AutoReset).
        u = uniform(key, 2 * (3 + NUM_LANDMARKS) + 2)
        pos = (2.0 * u[:-2] - 1.0).reshape(3 + NUM_LANDMARKS, 2)
        goal, secret = jnp.minimum((u[-2:] * NUM_LANDMARKS).astype(jnp.int32), NUM_LANDMARKS - 1)
        return CryptoState(pos[:3], jnp.zeros((3, 2), jnp.float32), pos[3:], jnp.zeros((), jnp.int32),
                           jnp.zeros((3, DIM_C), jnp.float32), goal, secret)

    def _observe(self, state: CryptoState, geo: Geometry) -> dict[str, jax.Array]:
        goal, secret = jax.nn.one_hot(state.goal, DIM_C), jax.nn.one_hot(state.key, DIM_C)  # f32[C] each
        alice = state.comm[ALICE]
        return {"adversaries": alice[None], "listener": jnp.concatenate([secret, alice])[None],
                "speaker": jnp.concatenate([goal, secret])[None]}

    def _rewards(self, state: CryptoState, geo: Geometry) -> dict[str, jax.Array]:
        goal = jax.nn.one_hot(state.goal, DIM_C)
        said = jnp.any(state.comm != 0.0, axis=1)  # bool[3]; mpe2 skips an all-zero utterance
        error = jnp.where(said, jnp.sum(jnp.square(state.comm - goal), axis=1), 0.0)  # f32[3]
        good = jnp.full((1,), error[EVE] - error[BOB], jnp.float32)
        return {"adversaries": -error[EVE:EVE + 1], "listener": good, "speaker": good}

    def _info(self, state: CryptoState) -> dict[str, jax.Array]:
        return {"goal": state.goal, "key": state.key}

    def heuristic_actions(self, key: jax.Array, state: CryptoState, team: str) -> jax.Array:
        """The scripted policy of ``team`` (deterministic; ``key`` is unused): i32[1] the word, or f32[1, 4]
        its one-hot vector with ``continuous_actions``. Bob and Eve read only their observations."""
        heard = jnp.argmax(state.comm[ALICE])  # 0 before Alice has spoken
        if team == "speaker":
            word = (state.goal + state.key) % NUM_LANDMARKS
        elif team == "listener":
            word = (heard - state.key) % NUM_LANDMARKS
        elif team == "adversaries":
            word = heard
        else:
            raise ValueError(f"mpe_crypto: no team {team!r}; teams are {list(self.team_sizes)}")
        word = word.astype(jnp.int32)[None]
        return jax.nn.one_hot(word, DIM_C) if self.config.continuous_actions else word

    def render_scene(self, states: CryptoState) -> Scene:
        """Nothing moves; the goal landmark is drawn as a star (mpe2's landmark "colours" are words)."""
        return recolor(super().render_scene(states), 3, ["#404040"] * NUM_LANDMARKS, goals=states.goal[:1],
                       team_sizes=self.team_sizes)
