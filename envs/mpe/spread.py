"""simple_spread (PettingZoo ``simple_spread_v3``): N agents cover N landmarks without bumping.

Team "agents" (N). Observation of agent i, f32[4 + 2L + 4(N-1)] (18 for N = 3):
``[own vel (2), own pos (2), landmark - own pos (2L), other agent - own pos (2(N-1)), others' comm (2(N-1))]``;
agents are silent, so the comm slots are the zeros mpe2 shows.

Reward of agent i: ``(1 - local_ratio) * global + local_ratio * local_i`` with ``global = -sum over
landmarks of the distance to the closest agent`` and ``local_i = -(number of other agents touching i)``.

Episode metrics (``info["metrics"]``, summed per episode by ``EpisodeStats`` into ``eval/metric/NAME`` and
results.json), as mpe2's ``benchmark_data`` measures them:
- ``collisions``: pairs of agents touching, counted on every step (an episode's total);
- ``covered``: landmarks with an agent within 0.1 of their centre at the episode's end (of L);
- ``final_distance``: the mean over landmarks of the closest agent's distance at the episode's end.

Scripted heuristic (``heuristic_actions``, from the state): a greedy assignment of agents to landmarks (the
closest free pair first, recomputed every step), each agent steering for its landmark with a brake on its
velocity (``BRAKE``), so that it stops on the landmark rather than circling it. Measured over 256 episodes
(team return, landmarks covered at the end; ``scripts/bench_comm.py``'s ``scripted_episodes``): N = 3: -25.4,
2.85 of 3; N = 5: -69.2, 4.3 of 5; N = 10: -253, 6.8 of 10 (random moves: -77.5, -178, -550; the fixed
assignment agent i -> landmark i without a brake, the previous heuristic: about -45, 0.2 of 3 and -434, 0.7 of 10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp

from jmarl.core.config import require_at_least
from jmarl.envs.mpe.core import DEFAULT_ACCEL, DIM_C, Geometry, MPEEnv, MPEState, World, steer, uniform_positions

AGENT_SIZE = 0.15
LANDMARK_SIZE = 0.05  # mpe2's default entity size; landmarks do not collide here
COVER_DISTANCE = 0.1  # a landmark is covered by an agent this close (mpe2's benchmark_data "occupied")
BRAKE = 0.3  # the heuristic steers for target - pos - BRAKE * vel (0: it overshoots and circles; 1: too slow)


class SimpleSpread(MPEEnv):
    @dataclass(frozen=True)
    class Config:
        num_agents: int = 3
        num_landmarks: Optional[int] = None  # None: as many as agents (mpe2's only option)
        local_ratio: float = 0.5
        max_steps: int = 25
        continuous_actions: bool = False

    name = "mpe_spread"

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        n = config.num_agents
        num_landmarks = n if config.num_landmarks is None else config.num_landmarks
        require_at_least("mpe_spread", config, num_agents=1, num_landmarks=0)
        if not 0.0 <= config.local_ratio <= 1.0:
            raise ValueError(f"mpe_spread: local_ratio must be in [0, 1], got {config.local_ratio}")
        self.world = World(
            agent_size=(AGENT_SIZE,) * n,
            landmark_size=(LANDMARK_SIZE,) * num_landmarks,
            agent_accel=(DEFAULT_ACCEL,) * n,
            agents_collide=True,
        )
        self.team_sizes = {"agents": n}
        self.obs_sizes = {"agents": 4 + 2 * num_landmarks + 2 * (n - 1) + DIM_C * (n - 1)}

    def _initial_state(self, key: jax.Array) -> MPEState:
        agent_pos, landmark_pos = uniform_positions(key, self.world)
        return MPEState(agent_pos, jnp.zeros_like(agent_pos), landmark_pos, jnp.zeros((), jnp.int32))

    def _observe(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        n = self.world.num_agents
        comm = jnp.zeros((n, DIM_C * (n - 1)), jnp.float32)
        obs = jnp.concatenate([state.agent_vel, state.agent_pos, geo.relative(), comm], axis=1)
        return {"agents": obs}

    def _rewards(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        num_landmarks = self.world.num_landmarks
        local = -jnp.sum(geo.dist[:, num_landmarks:] < 2 * AGENT_SIZE, axis=1, dtype=jnp.float32)  # f32[N]
        coverage = -jnp.sum(jnp.min(geo.dist[:, :num_landmarks], axis=0))  # f32[]: closest agent per landmark
        ratio = self.config.local_ratio
        return {"agents": coverage * (1.0 - ratio) + local * ratio}

    def _timestep(self, state: MPEState, geo: Geometry, reward: dict[str, jax.Array]):
        ts = super()._timestep(state, geo, reward)
        return ts.replace(info={**ts.info, "metrics": self.episode_metrics(state, geo)})

    def episode_metrics(self, state: MPEState, geo: Geometry) -> dict[str, jax.Array]:
        """{name: f32[]} of this state (the module doc): collisions on every step after a reset, coverage and
        distance on the episode's last step only, so their episode sums are the values at its end."""
        num_landmarks = self.world.num_landmarks
        stepped = (state.step > 0).astype(jnp.float32)  # zeros after reset
        last = (state.step >= self.config.max_steps).astype(jnp.float32)
        touching = jnp.sum(geo.dist[:, num_landmarks:] < 2 * AGENT_SIZE, dtype=jnp.float32) / 2.0  # pairs
        if num_landmarks == 0:
            zero = jnp.zeros((), jnp.float32)
            return {"collisions": touching * stepped, "covered": zero, "final_distance": zero}
        closest = jnp.min(geo.dist[:, :num_landmarks], axis=0)  # f32[L]
        return {"collisions": touching * stepped,
                "covered": jnp.sum(closest < COVER_DISTANCE, dtype=jnp.float32) * last,
                "final_distance": jnp.mean(closest) * last}

    def heuristic_actions(self, key: jax.Array, state: MPEState, team: str = "agents") -> jax.Array:
        """The scripted policy (deterministic; module doc): each agent steers, braking, for the landmark a greedy
        assignment gives it (no landmarks: stay). i32[N] moves, or f32[N, 5] with ``continuous_actions``."""
        if team != "agents":
            raise ValueError(f"mpe_spread: no team {team!r}; the team is 'agents'")
        n, num_landmarks = self.world.num_agents, self.world.num_landmarks
        if num_landmarks == 0:
            return steer(jnp.zeros((n, 2)), self.config.continuous_actions)
        dist = jnp.linalg.norm(state.agent_pos[:, None] - state.landmark_pos[None], axis=-1)  # f32[N, L]
        target = state.landmark_pos[greedy_assignment(dist)]  # f32[N, 2]
        return steer(target - state.agent_pos - BRAKE * state.agent_vel, self.config.continuous_actions)


def greedy_assignment(dist: jax.Array) -> jax.Array:
    """i32[N]: a landmark for each agent from distances f32[N, L], the closest unassigned (agent, landmark) pair
    first, min(N, L) times; agents left over (more agents than landmarks) keep landmark i mod L."""
    n, num_landmarks = dist.shape

    def assign(_, carry):
        chosen, free = carry
        pair = jnp.argmin(free)  # over the flattened [N, L]
        agent, landmark = pair // num_landmarks, pair % num_landmarks
        free = free.at[agent, :].set(jnp.inf).at[:, landmark].set(jnp.inf)  # both taken
        return chosen.at[agent].set(landmark), free

    start = (jnp.arange(n) % num_landmarks).astype(jnp.int32)
    return jax.lax.fori_loop(0, min(n, num_landmarks), assign, (start, dist))[0]
