"""Shared MPE physics, geometry and the scenario base class (the one home for what every MPE env does).

Semantics follow PettingZoo's MPE (the ``mpe2`` package) exactly: the same integration order, soft
contact forces, action decoding and episode length. A scenario (spread, tag, adversary, ...) only says
which entities exist (``World``), where they start, what each team observes and how it is rewarded.

Communication (speaker_listener, reference, crypto, world_comm): an agent that is not ``silent`` says
one of ``dim_c`` words (discrete) or a vector in [0, 1]^dim_c (continuous) as part of its action, and
the utterance is kept in ``CommState.comm`` for the others to observe after the step. The action
space is composed as mpe2 composes it (``action_space_of``): a moving speaker's discrete action is
``move + 5 * word`` (Discrete(5 * dim_c)), its continuous one ``[move (5), word (dim_c)]``; an agent
that cannot move only speaks (Discrete(dim_c) or Box(dim_c)).

The causal value of these channels: a scenario whose Config has ``comm_randomised`` (``env.comm_randomised=true``)
replaces, on every step, each utterance that others hear (``MPEEnv.comm_heard``) with a uniformly random one of
the same kind: a one-hot of a uniform word (discrete actions) or a uniform vector in [0, 1]^C (continuous), drawn
from the step's key. Nothing else changes: positions, velocities and rewards are those of the same actions
(no scenario's reward reads a heard utterance), so a trained policy's return with and without it measures what
the channel is worth to its receivers (``MPEEnv.comm_receivers``; ``jmarl rollout``). Off (the default), the
step is mpe2's, and the key is unused as before.

Shape legend: A agents (all teams, in mpe2's agent order), L landmarks, K = L + A - 1 entities an
agent sees (landmarks, then the other agents in ascending order, as mpe2 lists them), 2 = (x, y),
C = dim_c (the size of an utterance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.config import require_at_least
from jmarl.core.env import Environment, Team, TimeStep
from jmarl.core.scene import Scene
from jmarl.core.spaces import Box, Discrete
from jmarl.envs.mpe.scene import mpe_scene

# mpe2 World / SimpleEnv constants.
DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 100.0
CONTACT_MARGIN = 1e-3
DEFAULT_ACCEL = 5.0  # mpe2's "sensitivity" when an agent has no ``accel``
DIM_C = 2  # communication size: silent agents still show the zero utterances of others (spread)
NUM_ACTIONS = 5  # no-op, left, right, down, up


@dataclass(frozen=True)
class World:
    """Static physical description of a scenario's entities (tuples: hashable, baked into the program).

    Every entity has unit mass. Landmarks never move. Agents only push each other (and bump into
    landmarks) when both sides ``collide``.
    """

    agent_size: tuple[float, ...]  # [A]
    landmark_size: tuple[float, ...]  # [L]
    agent_accel: tuple[float, ...]  # [A] action force scale
    agent_max_speed: Optional[tuple[float, ...]] = None  # [A] speed cap; None: no cap
    agents_collide: bool = False
    landmarks_collide: bool = False
    # Per landmark, when only some collide (world_comm: obstacles do, food and forests do not); None:
    # every landmark follows ``landmarks_collide``.
    landmark_collide: Optional[tuple[bool, ...]] = None  # [L]
    agent_movable: Optional[tuple[bool, ...]] = None  # [A]; None: every agent moves (a speaker may not)
    agent_silent: Optional[tuple[bool, ...]] = None  # [A]; None: every agent is silent
    dim_c: int = 0  # words an agent that speaks can say (mpe2's world.dim_c); 0: nobody speaks

    @property
    def num_agents(self) -> int:
        return len(self.agent_size)

    @property
    def num_landmarks(self) -> int:
        return len(self.landmark_size)

    @property
    def landmark_collides(self) -> tuple[bool, ...]:
        """[L]: which landmarks agents bump into (when agents collide at all)."""
        if self.landmark_collide is not None:
            return tuple(self.landmark_collide)
        return (self.landmarks_collide,) * self.num_landmarks

    @property
    def movable(self) -> tuple[bool, ...]:
        return (True,) * self.num_agents if self.agent_movable is None else tuple(self.agent_movable)

    @property
    def silent(self) -> tuple[bool, ...]:
        return (True,) * self.num_agents if self.agent_silent is None else tuple(self.agent_silent)

    @property
    def talks(self) -> bool:
        """Some agent speaks, or some agent cannot move: the general action decoding is needed."""
        return not all(self.silent) or not all(self.movable)


@struct.dataclass
class MPEState:
    agent_pos: jax.Array  # f32[A, 2]
    agent_vel: jax.Array  # f32[A, 2]
    landmark_pos: jax.Array  # f32[L, 2]  (landmarks never move and have zero velocity)
    step: jax.Array  # i32[]  transitions taken in this episode


@struct.dataclass
class CommState(MPEState):
    """The state of a scenario in which some agent speaks."""

    comm: jax.Array  # f32[A, C]  each agent's latest utterance (mpe2's state.c; zeros if silent or after reset)


class Geometry(NamedTuple):
    """What each agent sees of the other entities, computed once per state (XLA drops unused parts).

    Columns (K = L + A - 1): the L landmarks, then the A-1 other agents in ascending order, which is
    mpe2's observation order. x and y are kept apart: arrays with a trailing (x, y) axis of size 2 make
    XLA's CPU loops several times slower than two [A, K] arrays.
    """

    dx: jax.Array  # f32[A, K]  the entity's x minus the agent's
    dy: jax.Array  # f32[A, K]
    dist: jax.Array  # f32[A, K]

    def relative(self) -> jax.Array:
        """f32[A, 2K]: relative positions as observed, (x, y) per entity."""
        return jnp.stack([self.dx, self.dy], axis=-1).reshape(self.dx.shape[0], -1)


def drop_diagonal(x: jax.Array) -> jax.Array:
    """[A, A, ...] -> [A, A-1, ...]: row i keeps columns j != i in order. Slices only, no gather
    (works on numpy and jax arrays)."""
    n, rest = x.shape[0], x.shape[2:]
    flat = x.reshape((n * n,) + rest)[1:]  # the diagonal now sits at the end of each row of n+1
    return flat.reshape((n - 1, n + 1) + rest)[:, :n].reshape((n, n - 1) + rest)


def geometry(agent_pos: jax.Array, landmark_pos: jax.Array) -> Geometry:
    """Relative positions and distances of the landmarks and the other agents, seen from each agent."""

    def rel(a: jax.Array, lm: jax.Array) -> jax.Array:  # one coordinate: f32[A], f32[L] -> f32[A, K]
        return jnp.concatenate([lm[None, :] - a[:, None], drop_diagonal(a[None, :] - a[:, None])], axis=1)

    dx = rel(agent_pos[:, 0], landmark_pos[:, 0])
    dy = rel(agent_pos[:, 1], landmark_pos[:, 1])
    return Geometry(dx, dy, jnp.sqrt(jnp.square(dx) + jnp.square(dy)))


def contact_distance(world: World) -> np.ndarray:
    """f32[A, K]: summed radii of the agent and each entity in ``Geometry``'s columns."""
    a = np.asarray(world.agent_size, np.float32)
    lm = np.asarray(world.landmark_size, np.float32)
    return np.concatenate([a[:, None] + lm[None, :], drop_diagonal(a[:, None] + a[None, :])], axis=1)


def take_columns(x: jax.Array | np.ndarray, columns: np.ndarray) -> jax.Array | np.ndarray:
    """x[:, columns] for static, sorted ``columns``, as slices of their contiguous runs (no gather)."""
    if len(columns) == 0:
        return x[:, :0]
    breaks = np.flatnonzero(np.diff(columns) != 1) + 1
    runs = np.split(columns, breaks)
    parts = [x[:, int(r[0]):int(r[-1]) + 1] for r in runs]
    if isinstance(x, np.ndarray):
        return np.concatenate(parts, axis=1)
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)


def action_force(world: World, actions: jax.Array, continuous: bool) -> jax.Array:
    """f32[A, 2] force from i32[A] discrete actions or f32[A, 5] continuous ones (mpe2 semantics).

    Discrete: 1 left, 2 right, 3 down, 4 up, 0 (or anything else) nothing. Continuous: clipped to
    [0, 1] (as PettingZoo's ClipOutOfBoundsWrapper does), force = (right - left, up - down).
    """
    accel = jnp.asarray(world.agent_accel, jnp.float32)[:, None]
    if continuous:
        a = jnp.clip(actions, 0.0, 1.0)
        u = jnp.stack([a[:, 2] - a[:, 1], a[:, 4] - a[:, 3]], axis=-1)
    else:
        a = actions
        u = jnp.stack([(a == 2).astype(jnp.float32) - (a == 1), (a == 4).astype(jnp.float32) - (a == 3)], axis=-1)
    return u * accel


# Unit force of each discrete move (mpe2 encoding): 0 no-op, 1 left, 2 right, 3 down, 4 up.
MOVES = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], np.float32)


def steer(direction: jax.Array, continuous: bool) -> jax.Array:
    """Actions that push along ``direction`` f32[N, 2] (the scripted heuristics' output layer).

    Discrete: i32[N], the move best aligned with the direction (the dominant axis; no-op for a zero
    direction). Continuous: f32[N, 5], each move's alignment scaled so the dominant axis is 1, which
    ``action_force`` decodes to a force along ``direction`` itself.
    """
    alignment = direction @ MOVES.T  # f32[N, 5]; column 0 (no-op) is 0
    if not continuous:
        return jnp.argmax(alignment, axis=-1).astype(jnp.int32)
    scale = jnp.maximum(jnp.max(jnp.abs(direction), axis=-1, keepdims=True), 1e-6)
    return jnp.clip(alignment / scale, 0.0, 1.0)


def contact_forces(world: World, geo: Geometry) -> jax.Array:
    """f32[A, 2]: mpe2's softened contact force on each agent, summed over the entities it collides
    with (landmarks are immovable, so nothing acts on them)."""
    if world.landmark_collide is None:
        first = 0 if world.landmarks_collide else world.num_landmarks  # columns that can touch
        dx, dy, dist = geo.dx[:, first:], geo.dy[:, first:], geo.dist[:, first:]
        reach = contact_distance(world)[:, first:]
    else:  # some landmarks collide (world_comm's obstacles), others not (its food and forests)
        columns = np.concatenate([np.flatnonzero(world.landmark_collides),
                                  np.arange(world.num_landmarks, world.num_landmarks + world.num_agents - 1)])
        dx, dy, dist = (take_columns(x, columns) for x in (geo.dx, geo.dy, geo.dist))
        reach = take_columns(contact_distance(world), columns)
    penetration = CONTACT_MARGIN * jax.nn.softplus((reach - dist) / CONTACT_MARGIN)
    magnitude = CONTACT_FORCE * penetration / dist  # f32[A, K']; pushes away from the other entity
    return -jnp.stack([jnp.sum(magnitude * dx, axis=1), jnp.sum(magnitude * dy, axis=1)], axis=-1)


def integrate(world: World, pos: jax.Array, vel: jax.Array, force: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One mpe2 Euler step for the agents: position moves with the *old* velocity, then the velocity
    is damped, accelerated (unit mass) and capped at the agent's max speed."""
    pos = pos + vel * DT
    vel = vel * (1.0 - DAMPING) + force * DT
    if world.agent_max_speed is not None:
        max_speed = jnp.asarray(world.agent_max_speed, jnp.float32)[:, None]
        speed = jnp.sqrt(jnp.square(vel[:, :1]) + jnp.square(vel[:, 1:]))  # f32[A, 1]
        vel = jnp.where(speed > max_speed, vel / speed * max_speed, vel)
    return pos, vel


def world_step(world: World, state: MPEState, force: jax.Array) -> MPEState:
    """Apply action forces plus contact forces (from the positions before the step) and integrate.
    Agents that cannot move (mpe2's ``movable=False``: speakers) keep their position and zero velocity."""
    movable = world.movable
    if not any(movable):  # simple_crypto: nothing moves
        return state.replace(step=state.step + 1)
    if world.agents_collide and (world.num_agents > 1 or any(world.landmark_collides)):
        force = force + contact_forces(world, geometry(state.agent_pos, state.landmark_pos))
    pos, vel = integrate(world, state.agent_pos, state.agent_vel, force)
    if not all(movable):
        keep = ~np.asarray(movable)[:, None]
        pos, vel = jnp.where(keep, state.agent_pos, pos), jnp.where(keep, state.agent_vel, vel)
    return state.replace(agent_pos=pos, agent_vel=vel, step=state.step + 1)


def action_space_of(world: World, agent: int, continuous: bool) -> Box | Discrete:
    """An agent's action space as mpe2 composes it: 5 moves if it moves (1 choice, or 0 entries of a Box,
    if not), times (discrete) or plus (continuous) ``dim_c`` words if it speaks."""
    moves = NUM_ACTIONS if world.movable[agent] else (0 if continuous else 1)
    if not world.silent[agent]:
        moves = moves + world.dim_c if continuous else moves * world.dim_c
    return Box(0.0, 1.0, (moves,)) if continuous else Discrete(moves)


def decode_actions(world: World, first: int, actions: jax.Array, continuous: bool) -> tuple[jax.Array, jax.Array]:
    """Force f32[N, 2] and utterance f32[N, C] of N agents ``first, first + 1, ...`` that share movability
    and silence (one team), from mpe2-composed actions: i32[N] or f32[N, S] (see ``action_space_of``).

    Discrete: move = action % 5 and word = action // 5 for a moving speaker; the word is said as a one-hot
    vector. Continuous: entries clipped to [0, 1] (PettingZoo's ClipOutOfBoundsWrapper), the first 5 the
    move, the next C the utterance itself."""
    n, c = actions.shape[0], world.dim_c
    sub = World(agent_size=world.agent_size[first:first + n], landmark_size=(),
                agent_accel=world.agent_accel[first:first + n])
    movable, silent = world.movable[first], world.silent[first]
    if len(set(world.movable[first:first + n])) > 1 or len(set(world.silent[first:first + n])) > 1:
        raise ValueError(f"agents {first}..{first + n - 1} form one team but differ in movability or silence")
    if continuous:
        a = jnp.clip(actions, 0.0, 1.0)
        force = action_force(sub, a[:, :NUM_ACTIONS], True) if movable else jnp.zeros((n, 2), jnp.float32)
        word = a[:, NUM_ACTIONS if movable else 0:] if not silent else jnp.zeros((n, c), jnp.float32)
        return force, word
    move, say = (actions % NUM_ACTIONS, actions // NUM_ACTIONS) if movable and not silent else (actions, actions)
    force = action_force(sub, move, False) if movable else jnp.zeros((n, 2), jnp.float32)
    word = jax.nn.one_hot(say, c, dtype=jnp.float32) if not silent else jnp.zeros((n, c), jnp.float32)
    return force, word


def uniform(key: jax.Array, n: int) -> jax.Array:
    """f32[n] uniform in [0, 1): one flat draw padded to a power of two, the shape for which XLA's CPU
    loops for the threefry hash are fastest (measured; a [n/2, 2] draw costs twice as much). AutoReset
    computes a reset on every step, so this is a visible part of an MPE step's cost."""
    return jax.random.uniform(key, (1 << max(n - 1, 0).bit_length(),), jnp.float32)[:n]


def uniform_positions(key: jax.Array, world: World, landmark_range: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Agents uniform in [-1, 1]^2, landmarks in [-landmark_range, landmark_range]^2, from one draw."""
    n, num_landmarks = world.num_agents, world.num_landmarks
    u = (2.0 * uniform(key, 2 * (n + num_landmarks)) - 1.0).reshape(n + num_landmarks, 2)
    return u[:n], u[n:] * landmark_range


class MPEEnv(Environment[MPEState]):
    """An MPE scenario: subclasses set ``Config`` and ``name``, build ``self.world`` and the team
    layout in ``__init__``, and define ``_initial_state``, ``_observe`` and ``_rewards``. They inherit
    ``render_scene`` (``envs/mpe/scene.py``), so ``jmarl render`` draws them."""

    world: World
    team_sizes: Mapping[str, int]  # team -> number of agents, in mpe2's agent order
    obs_sizes: Mapping[str, int]  # team -> observation size
    # Native communication (scenarios where some agent speaks): the agents whose utterances another agent
    # observes (None: every agent that is not silent), which ``comm_randomised`` replaces with random ones, and
    # the teams that hear them, whose return the channel's causal value is measured on (jmarl/tools/rollout.py).
    comm_heard: Optional[tuple[int, ...]] = None
    comm_receivers: tuple[str, ...] = ()

    def __init__(self, config) -> None:
        require_at_least(self.name, config, max_steps=1)
        self.config = config

    # --- what a scenario defines -------------------------------------------------------------------
    def _initial_state(self, key: jax.Array) -> MPEState:
        raise NotImplementedError

    def _observe(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        """{team: f32[N, O]}"""
        raise NotImplementedError

    def _rewards(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        """{team: f32[N]}"""
        raise NotImplementedError

    # --- the Environment API -----------------------------------------------------------------------
    @property
    def action_space(self):
        if self.config.continuous_actions:
            return Box(0.0, 1.0, (NUM_ACTIONS,))
        return Discrete(NUM_ACTIONS)

    def team_action_space(self, team: str) -> Box | Discrete:
        """The action space of ``team``'s agents (they share movability and silence)."""
        if not self.world.talks:
            return self.action_space
        return action_space_of(self.world, self._team_start(team), self.config.continuous_actions)

    def _team_start(self, team: str) -> int:
        """Index of ``team``'s first agent in mpe2's agent order."""
        names = list(self.team_sizes)
        return sum(self.team_sizes[t] for t in names[:names.index(team)])

    @property
    def teams(self) -> dict[str, Team]:
        return {name: Team(n, (self.obs_sizes[name],), self.team_action_space(name))
                for name, n in self.team_sizes.items()}

    @property
    def global_state_shape(self) -> tuple[int, ...]:
        return (sum(n * self.obs_sizes[t] for t, n in self.team_sizes.items()),)

    @property
    def max_steps(self) -> int:
        return self.config.max_steps

    def _reset(self, key: jax.Array) -> tuple[TimeStep, MPEState]:
        state = self._initial_state(key)
        reward = {t: jnp.zeros((n,), jnp.float32) for t, n in self.team_sizes.items()}
        return self._timestep(state, geometry(state.agent_pos, state.landmark_pos), reward), state

    def _step(self, key: jax.Array, state: MPEState, actions) -> tuple[TimeStep, MPEState]:
        # ``key`` is unused (mpe2's MPE scenarios have no action or communication noise) except by
        # ``comm_randomised``, which draws the random utterances from it.
        continuous = self.config.continuous_actions
        if self.world.talks:
            decoded = [decode_actions(self.world, self._team_start(t), actions[t], continuous) for t in self.team_sizes]
            force = jnp.concatenate([f for f, _ in decoded], axis=0)
            state = world_step(self.world, state, force)
            said = jnp.concatenate([w for _, w in decoded], axis=0)  # f32[A, C]: said this step
            if getattr(self.config, "comm_randomised", False):
                said = self.randomise_comm(key, said)
            state = state.replace(comm=said)
        else:
            acts = [actions[t] for t in self.team_sizes]
            acts = acts[0] if len(acts) == 1 else jnp.concatenate(acts, axis=0)
            state = world_step(self.world, state, action_force(self.world, acts, continuous))
        geo = geometry(state.agent_pos, state.landmark_pos)
        return self._timestep(state, geo, self._rewards(state, geo)), state

    def randomise_comm(self, key: jax.Array, said: jax.Array) -> jax.Array:
        """f32[A, C]: ``said`` with the utterance of every agent that others hear (``comm_heard``) replaced by a
        uniformly random one of the same kind, independent per agent and step: a one-hot of a uniform word
        (discrete actions) or a uniform vector in [0, 1]^C, the clipped range of a continuous utterance."""
        num_agents, c = self.world.num_agents, self.world.dim_c
        heard = np.zeros(num_agents, bool)  # bool[A] (static)
        heard[list(self.heard_speakers)] = True
        if self.config.continuous_actions:
            random = jax.random.uniform(key, (num_agents, c), jnp.float32)
        else:
            random = jax.nn.one_hot(jax.random.randint(key, (num_agents,), 0, c), c, dtype=jnp.float32)
        return jnp.where(heard[:, None], random, said)

    @property
    def heard_speakers(self) -> tuple[int, ...]:
        """The agents (mpe2's order) whose utterances another agent observes: ``comm_heard``, else every agent
        that is not silent."""
        if self.comm_heard is not None:
            return tuple(self.comm_heard)
        return tuple(i for i, silent in enumerate(self.world.silent) if not silent)

    def _info(self, state: MPEState) -> dict[str, jax.Array]:
        """Per-step facts about the episode (e.g. a hidden goal's index); the same keys after reset and step."""
        return {}

    def _timestep(self, state: MPEState, geo: Geometry, reward: dict[str, jax.Array]) -> TimeStep:
        obs = self._observe(state, geo)
        teams = self.teams
        width = {t: 1 if isinstance(teams[t].action_space, Box) else teams[t].action_space.n for t in teams}
        return TimeStep(
            obs=obs,
            reward=reward,
            terminated=jnp.zeros((), bool),
            truncated=state.step >= self.config.max_steps,
            global_state=jnp.concatenate([obs[t].reshape(-1) for t in self.team_sizes]),
            avail_actions={t: jnp.ones((n, width[t]), bool) for t, n in self.team_sizes.items()},
            info=self._info(state),
        )

    # --- rendering ---------------------------------------------------------------------------------
    def render_scene(self, states: MPEState) -> Scene:
        """The render scene of one episode (``states``: leaves [F, ...], numpy); see ``envs/mpe/scene.py``.
        Every scenario inherits it; one that draws its entities differently overrides it."""
        return mpe_scene(self, states)
