"""A learned message channel for any environment: messages are actions.

``with_messages(env, vocab=V)`` widens the action of every agent that speaks with a token of a V-word
vocabulary; ``with_messages(env, dim=D)`` with a vector of D numbers. The step's messages are delivered in
the next observation of the receivers (``receivers="team"``: teammates; ``"all"``: every other agent), and
zeros after a reset. Because a message is part of the action, every algorithm (IPPO, MAPPO, the
Q-learners, MADDPG) trains it unchanged, and execution stays decentralised: an agent's message is a
function of its own observation, and it hears only what was said.

Every environment takes the channel as keywords of ``jmarl.make`` (``MessageOptions``)::

    env = jmarl.make("mpe_spread", messages=2)                    # a 1-bit channel between teammates
    jmarl train ippo --env probe_comm env.messages=2             # the same on the command line

How a message is composed with the env's action (``MessageChannel.split``):

- ``Discrete(B)`` action and a vocabulary of V words: ``Discrete(B * V)``, ``action = base + B * token``
  (mpe2's own composition of a move and a word). One categorical head or one Q-value per (base, token)
  pair, which every algorithm here already handles; jmarl has no product space, and for the small
  vocabularies of emergent-communication studies B * V outputs cost nothing. Availability of ``base``
  carries over to every token.
- ``Box(low, high, (S,))`` action: ``Box(low, high, (S + W,))``, the message entries last. With ``dim=D``
  the message is those D entries clipped to [low, high], heard as they are; with ``vocab=V`` it is the
  token ``argmax`` of the V entries, heard as a one-hot vector (so a continuous learner can use a
  discrete channel). A ``Discrete`` action cannot carry a continuous message (no mixed spaces): use
  ``vocab`` or the env's continuous actions.

Heard messages: token t is heard as one-hot(t) f32[V] (zeros: nothing said yet), a vector as f32[D]; an
agent hears its senders (teammates or every other agent, self excluded, in agent order) appended to its
observation, and the global state (what a centralised critic sees) gets every sender's message.

``randomised=True`` replaces every heard message with a uniformly random one (an independent token, or a
uniform vector in the box), drawn each step: the channel then carries no information, which is how the
**causal value of the channel** is measured (a trained policy's return with and without it;
``jmarl.tools.rollout.communication_report``).

Shape legend: A agents of all teams (in team order), N agents of a team, S senders an agent hears,
W message width (V for tokens, D for vectors), B the env's own discrete actions, O observation size.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.config import ConfigError
from jmarl.core.env import Environment, Team, TimeStep
from jmarl.core.spaces import Box, Discrete
from jmarl.core.wrappers import Wrapper

Receivers = Literal["team", "all"]


@dataclass(frozen=True)
class MessageOptions:
    """The message-channel keys every environment takes in ``jmarl.make(name, **kwargs)`` (and as ``env.KEY``
    on the command line), beside its own ``Config``; all defaults: no channel."""

    messages: int = 0  # vocabulary size V of a discrete token (0: no discrete channel)
    message_dim: int = 0  # size D of a continuous message, in the Box action's bounds (0: none)
    message_receivers: Receivers = "team"  # who hears: "team" (teammates) or "all" (every other agent)
    messages_randomised: bool = False  # heard messages replaced by random ones (the channel's causal value)


MESSAGE_KEYS = tuple(f.name for f in dataclasses.fields(MessageOptions))


def message_option_types() -> dict[str, Any]:
    """{key: type} of ``MessageOptions`` (resolved, so another module's dataclass can declare them)."""
    return typing.get_type_hints(MessageOptions)


@struct.dataclass
class MessageState:
    env_state: Any  # the wrapped env's state
    heard: jax.Array  # f32[A, W]: each agent's message of the step just taken, as heard (zeros after reset)


class MessageChannel(Wrapper):
    """``env`` with a message in every speaking agent's action, heard in the receivers' next observation.
    Build it with ``with_messages`` (or ``jmarl.make(name, messages=V)``); see the module doc."""

    # The widened actions are checked here (checks mode); the env then checks the base actions it gets.
    _checks_action_values = True

    def __init__(self, env: Environment, vocab: int = 0, dim: int = 0, receivers: Receivers = "team",
                 randomised: bool = False):
        super().__init__(env)
        self.vocab, self.dim, self.receivers, self.randomised = int(vocab), int(dim), receivers, bool(randomised)
        where = f"{env.name} with messages"
        if self.vocab < 0 or self.dim < 0 or (self.vocab > 0) == (self.dim > 0):
            raise ConfigError(f"{where}: give one of messages=V (a token of V >= 2 words) or message_dim=D (a "
                              f"vector of D >= 1 numbers); got messages={vocab}, message_dim={dim}")
        if self.vocab == 1:
            raise ConfigError(f"{where}: messages=1 is a one-word vocabulary, which says nothing; valid: messages "
                              f">= 2 (or 0 for no channel)")
        if receivers not in typing.get_args(Receivers):
            raise ConfigError(f"{where}: message_receivers={receivers!r}; valid: {list(typing.get_args(Receivers))}")
        base = env.teams
        self.width = self.vocab or self.dim  # W
        sizes = {t: team.num_agents for t, team in base.items()}
        starts = dict(zip(base, np.cumsum([0] + list(sizes.values()))[:-1].tolist()))
        total = sum(sizes.values())
        # Who hears whom (static): {team: i32[N, S]} the agent indexes (all teams, team order) each agent hears.
        self.hears: dict[str, np.ndarray] = {}
        for t, n in sizes.items():
            if receivers == "team":
                rows = [[starts[t] + j for j in range(n) if j != i] for i in range(n)]
            else:
                rows = [[j for j in range(total) if j != starts[t] + i] for i in range(n)]
            if rows and rows[0]:
                self.hears[t] = np.asarray(rows, np.int32)
        heard_by_someone = sorted({int(j) for rows in self.hears.values() for j in rows.ravel()})
        if not heard_by_someone:
            raise ConfigError(f"{where}: nobody would hear a message with message_receivers={receivers!r} (every "
                              f"team has one agent: {sizes}); use message_receivers='all'")
        # Teams that speak: those some agent hears (under "team", a team of one agent neither speaks nor hears).
        self.speakers = [t for t in base if any(starts[t] <= j < starts[t] + sizes[t] for j in heard_by_someone)]
        self.starts, self.sizes, self.total = starts, sizes, total
        self.speaking = np.zeros(total, bool)  # bool[A]
        for t in self.speakers:
            self.speaking[starts[t]:starts[t] + sizes[t]] = True
        for t, team in base.items():
            if len(team.obs_shape) != 1 and t in self.hears:
                raise ConfigError(f"{where}: team {t!r} observes shape {team.obs_shape}; heard messages are appended "
                                  f"to flat observations only")
            space = team.action_space
            if t in self.speakers and isinstance(space, Discrete) and self.dim:
                raise ConfigError(f"{where}: team {t!r} acts in {space}, which cannot carry a continuous message "
                                  f"(message_dim={self.dim}); use messages=V (a token), or the env's continuous "
                                  f"actions")
            if t in self.speakers and isinstance(space, Box) and len(space.shape) != 1:
                raise ConfigError(f"{where}: team {t!r} acts in {space}; a message extends flat Box actions only")
        if len(env.global_state_shape) != 1:
            raise ConfigError(f"{where}: the global state has shape {env.global_state_shape}; heard messages are "
                              f"appended to a flat global state only")

    # --- spaces --------------------------------------------------------------------------------------
    @property
    def teams(self) -> dict[str, Team]:
        out = {}
        for t, team in self.env.teams.items():
            obs = (team.obs_shape[0] + self.hears[t].shape[1] * self.width,) if t in self.hears else team.obs_shape
            out[t] = Team(team.num_agents, obs, self._space(team.action_space) if t in self.speakers
                          else team.action_space)
        return out

    def _space(self, space):
        if isinstance(space, Discrete):
            return Discrete(space.n * self.vocab)
        return Box(space.low, space.high, (space.shape[0] + self.width,))

    @property
    def global_state_shape(self) -> tuple[int, ...]:
        return (self.env.global_state_shape[0] + int(self.speaking.sum()) * self.width,)

    # --- actions <-> (env action, message) ------------------------------------------------------------
    def split(self, actions: dict[str, jax.Array]) -> tuple[dict[str, jax.Array], jax.Array]:
        """Widened actions {team: i32[N] or f32[N, S + W]} -> (the env's actions {team: ...}, every agent's
        message f32[A, W]: a token one-hot, a vector clipped to the box; zeros for agents that do not speak).
        Works on a leading batch axis too ([..., N] -> messages [..., A, W])."""
        base, said = {}, []
        for t, team in self.env.teams.items():
            a, space = actions[t], team.action_space
            if t not in self.speakers:
                base[t] = a
                lead = a.shape[:-1] if isinstance(space, Box) else a.shape
                said.append(jnp.zeros(lead + (self.width,), jnp.float32))
            elif isinstance(space, Discrete):
                base[t], token = a % space.n, a // space.n
                said.append(jax.nn.one_hot(token, self.vocab, dtype=jnp.float32))
            else:
                s = space.shape[0]
                base[t], part = a[..., :s], a[..., s:]
                said.append(jax.nn.one_hot(jnp.argmax(part, -1), self.vocab, dtype=jnp.float32) if self.vocab
                            else jnp.clip(part, space.low, space.high).astype(jnp.float32))
        return base, jnp.concatenate(said, axis=-2)

    def tokens(self, messages: jax.Array) -> jax.Array:
        """i32[..., A] the token of each message f32[..., A, W] (-1 where nothing is said: an all-zero
        message); for a discrete vocabulary only."""
        return jnp.where(jnp.any(messages != 0, -1), jnp.argmax(messages, -1), -1).astype(jnp.int32)

    def compose(self, team: str, base: jax.Array, message: jax.Array | None = None) -> jax.Array:
        """The widened action of ``team``'s agents from the env's ``base`` action (i32[N] or f32[N, S]) and a
        message (i32[N] tokens, f32[N, W] for a Box team; None: token 0 / a zero vector)."""
        if team not in self.speakers:
            return base
        space, n = self.env.teams[team].action_space, base.shape[0]
        if isinstance(space, Discrete):
            token = jnp.zeros((n,), jnp.int32) if message is None else message
            return (base + space.n * token).astype(jnp.int32)
        part = jnp.zeros((n, self.width), jnp.float32) if message is None else message
        return jnp.concatenate([base, part.astype(base.dtype)], axis=-1)

    # --- reset and step ---------------------------------------------------------------------------------
    def _reset(self, key):
        ts, env_state = self.env.reset(key)
        heard = jnp.zeros((self.total, self.width), jnp.float32)
        return self._hear(ts, heard), MessageState(env_state, heard)

    def _step(self, key, state: MessageState, actions):
        base, said = self.split(actions)
        if self.randomised:  # the env's own key stream stays as it is without the option
            key, k_msg = jax.random.split(key)
            said = self._random_messages(k_msg)
        ts, env_state = self.env.step(key, state.env_state, base)
        return self._hear(ts, said), MessageState(env_state, said)

    def _random_messages(self, key: jax.Array) -> jax.Array:
        """f32[A, W]: an independent uniform token (one-hot), or a uniform vector in each team's box, per agent
        that speaks; zeros for the others."""
        if self.vocab:
            said = jax.nn.one_hot(jax.random.randint(key, (self.total,), 0, self.vocab), self.vocab)
        else:
            low = np.zeros(self.total, np.float32)
            high = np.zeros(self.total, np.float32)
            for t, team in self.env.teams.items():
                sl = slice(self.starts[t], self.starts[t] + self.sizes[t])
                low[sl], high[sl] = team.action_space.low, team.action_space.high
            said = jax.random.uniform(key, (self.total, self.dim), jnp.float32, low[:, None], high[:, None])
        return jnp.where(self.speaking[:, None], said, 0.0)

    def _hear(self, ts: TimeStep, heard: jax.Array) -> TimeStep:
        """Append what each receiver hears (f32[N, S * W]) to its observation, every speaker's message to the
        global state, and tile discrete availability over the tokens."""
        obs = dict(ts.obs)
        for t, rows in self.hears.items():  # rows i32[N, S] (static): a gather of whole rows
            obs[t] = jnp.concatenate([ts.obs[t], heard[rows].reshape(rows.shape[0], -1)], axis=-1)
        avail = {t: jnp.tile(a, (1, self.vocab)) if t in self.speakers and isinstance(
            self.env.teams[t].action_space, Discrete) else a for t, a in ts.avail_actions.items()}
        global_state = jnp.concatenate([ts.global_state, heard[np.flatnonzero(self.speaking)].reshape(-1)])
        return ts.replace(obs=obs, global_state=global_state, avail_actions=avail)

    # --- a scripted policy, where the env has one -----------------------------------------------------
    def heuristic_actions(self, key: jax.Array, state: MessageState, team: str, **kwargs) -> jax.Array:
        """The env's scripted policy, saying token 0 (or a zero vector): it does not use the channel."""
        inner = getattr(type(self.env), "heuristic_actions", None)
        if not callable(inner):
            raise ConfigError(f"fixed_policy='heuristic': {self.env.name} has no scripted policy (heuristic_actions)")
        return self.compose(team, self.env.heuristic_actions(key, state.env_state, team, **kwargs))

    def __repr__(self) -> str:
        kind = f"vocab={self.vocab}" if self.vocab else f"dim={self.dim}"
        teams = ", ".join(f"{n}: {t.num_agents}x{t.obs_shape} -> {t.action_space}" for n, t in self.teams.items())
        return (f"MessageChannel({self.name}, {kind}, receivers={self.receivers}"
                f"{', randomised' if self.randomised else ''}; {teams})")


def with_messages(env: Environment, vocab: int = 0, dim: int = 0, receivers: Receivers = "team",
                  randomised: bool = False) -> MessageChannel:
    """``env`` with a learned message channel: a token of ``vocab`` words or a vector of ``dim`` numbers in each
    speaking agent's action, heard by ``receivers`` on the next step (see the module doc). ConfigError, before
    anything compiles, for a channel that cannot be built (and says what is valid)."""
    return MessageChannel(env, vocab, dim, receivers, randomised)


def apply_message_options(env: Environment, options: MessageOptions) -> Environment:
    """``env`` wrapped as ``options`` say (``jmarl.make``'s message keys); unchanged without a channel. Options
    that need a channel given without one raise ConfigError (nothing is ignored silently)."""
    if options.messages == 0 and options.message_dim == 0:
        given = [k for k in ("message_receivers", "messages_randomised")
                 if getattr(options, k) != getattr(MessageOptions(), k)]
        if given:
            raise ConfigError(f"{env.name}: {', '.join(f'{k}={getattr(options, k)!r}' for k in given)} needs a "
                              f"message channel: add messages=V (a token of V words) or message_dim=D")
        return env
    return with_messages(env, options.messages, options.message_dim, options.message_receivers,
                         options.messages_randomised)


def message_channel(env: Environment) -> MessageChannel | None:
    """The ``MessageChannel`` among ``env`` and the envs it wraps, or None."""
    while env is not None:
        if isinstance(env, MessageChannel):
            return env
        env = getattr(env, "env", None) if isinstance(env, Wrapper) else None
    return None
