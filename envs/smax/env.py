"""SMAX: a StarCraft-lite on a continuous 2-D map, for cooperative multi-agent RL.

Shape legend: N allies, M enemies, U = N + M units (allies first), T unit types, F_OWN = 10 own
features, F_UNIT = 11 features per other unit, O = F_OWN + F_UNIT * (U - 1), A = 5 + (number of foes).

Actions (both teams): 0 north (+y), 1 east (+x), 2 south (-y), 3 west (-x), 4 stop, 5 + j attack foe j
(allies' foe j is enemy j; enemies' foe j is ally j). A unit that attacks stands still; it hits when its
target is alive and within attack range (centre to centre) and its weapon is off cooldown. Moves are
always available to living units (the map edge stops them); attacks are available for living foes in
range; dead units may only stop. An unavailable action does nothing (the unit stands).

One env step is ``step_seconds`` = 0.5 s of game time (SMAC's 8 game loops at 16 per second), simulated
in ``micro_ticks`` = 8 ticks, so a tick is one game loop. Each tick computes the pairwise displacements
once and uses them for everything in it: (1) attacks resolve simultaneously from the tick's starting
state (so both sides can die at once: a draw); (2) cooldowns run down; (3) units still alive move, and
units alive at the tick's start are pushed apart by half their overlap each (soft collision); positions
are clamped to the map. The cooldown after an attack is the unit type's plus a draw in [-1, +2] game
loops, as in SC2 and JaxMARL, drawn once per unit per step.

Observations, per unit of the team (zeros when dead):
  own [F_OWN]: health fraction, x / map size, y / map size, cooldown fraction, one-hot type [T]
  then for every other unit of the same team (index order, self skipped), then every foe [F_UNIT] each:
    health fraction, dx / sight, dy / sight, distance / sight, cooldown fraction, one-hot type [T]
    (zeros unless both are alive and the unit is within the observer's sight range).
  With ``obs_last_action`` every unit block has F_ACT = 3 more features, from last step's actions: for a
    teammate its move (x and y in {-1, 0, 1}) and whether it attacked; for a foe 0, 0 and the fraction of
    the observer's team that attacked it (so a team can coordinate focus fire, as JaxMARL's and SMAC's
    last-action features allow).
Global state [U * F_OWN + 1]: every unit's own features (allies first), then step / max_steps; always in the
allies' frame (also in mirror mode: it is one array for both teams).
Reward (shared within a team): the fraction of health the foes lost this step, averaged over foes
(a whole battle's damage sums to at most 1, as in JaxMARL), plus ``win_bonus`` on the step the last foe
dies while a teammate lives. Terminated when a team is eliminated; truncated at ``max_steps``.
``info["won"]``: the allies won on this step. ``info["metrics"]`` (episode metrics): ``allies_won``,
``enemies_won`` and ``draw`` (neither side won: both eliminated at once, or the time limit), 1 on the step
that ends the episode: the win rate of each side. The default objective is the allies' win rate. Combat
metrics, summed per episode: ``damage_dealt`` and ``damage_taken`` (health fractions the enemies and the allies
lost: 3 is three units' worth), ``allies_alive`` and ``enemies_alive`` (units alive at the end), ``attacks``
(attack actions of living allies) and ``focused_attacks`` (those aimed at the enemy most attacked on their step):
focus fire is ``focused_attacks / attacks`` (1: every step's attacks on one enemy).

Mirror mode (``mirror=True``, with ``enemy="learning"`` and a scenario whose sides are alike:
``scenarios.symmetric_scenarios()``, e.g. 3m, 2s3z): the enemies see, and act, in the frame mirrored through the map
centre, (x, y) -> (size - x, size - y), so that one policy can play both sides. Their own position features are
(size - x) / size and (size - y) / size, every relative dx, dy is negated (and a teammate's last move), and
their moves are turned on the way in: north <-> south, east <-> west (attacks and stop are unchanged). Their
blocks are ordered as the allies' are (own, teammates in index order, foes in index order), so enemy j in a state S
sees exactly what ally j sees in mirror(S), the state with the sides swapped and every position mirrored (up to
float rounding of the relative positions), and the same holds for available actions, rewards and what follows
from an action. The start positions are mirror-symmetric in distribution (``scenarios.fixed_positions``; the
SMACv2 scenarios' "reflect" and "surround" starts are too), so both sides meet the same game. The heuristic plays
the enemies in their mirrored frame as well (``heuristic_actions``), so a scripted enemy plays as it does without
the mirror; ``info["won"]``, the metrics and the global state stay the allies'.

Differences from JaxMARL's SMAX (whose unit stats, map, timing, cooldown noise and reward scale these
are): the map edge stops units instead of killing them (SC2 has no lethal walls); the scripted enemy
advances on the closest living foe instead of a random visible one (``advance="random_visible"`` is
JaxMARL's rule, except that with no foe in sight it still advances on the closest one rather than on the
mirror image of its start through the map centre); cooldown noise is drawn once per
step, not per tick; collisions use each tick's starting positions; enemies number their foes in index
order (not reversed); observations put own features first, add distance, and carry last actions only with
``obs_last_action`` (in their own encoding: JaxMARL's gives each unit's last move and its target's index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jmarl.core.config import ConfigError, require_at_least
from jmarl.core.env import Environment, Team, TimeStep
from jmarl.core.scene import Scene
from jmarl.envs.smax.heuristic import EAST, NORTH, NUM_MOVES, SOUTH, STOP, WEST, heuristic_actions
from jmarl.envs.smax.scenarios import (NUM_DRAWS, NUM_SCALAR_DRAWS, fixed_positions, get_scenario, smacv2_positions,
                                       smacv2_types, symmetric_scenarios)
from jmarl.envs.smax.scene import smax_scene
from jmarl.envs.smax.units import NUM_UNIT_TYPES, unit_stats
from jmarl.core.spaces import Discrete

F_OWN = 4 + NUM_UNIT_TYPES
F_UNIT = 5 + NUM_UNIT_TYPES
F_ACT = 3  # per unit block with obs_last_action
GAME_LOOP = 1.0 / 16  # seconds per SC2 game loop at "normal" speed
COMBAT_METRICS = ("damage_dealt", "damage_taken", "attacks", "focused_attacks")  # per step (module doc)


def mirror_actions(actions: jax.Array) -> jax.Array:
    """Actions between the map's frame and the one mirrored through its centre (an involution): north <-> south,
    east <-> west; stop and attacks unchanged. i32[...] -> i32[...]."""
    return jnp.where(actions < STOP, (actions + 2) % 4, actions)


@struct.dataclass
class SMAXState:
    pos: jax.Array  # f32[U, 2]
    health: jax.Array  # f32[U]; a unit is alive while its health is positive
    cooldown: jax.Array  # f32[U] seconds until the unit may attack again
    unit_type: jax.Array  # i32[U]
    last_action: jax.Array  # i32[U] (the heuristic keeps its target)
    step: jax.Array  # i32[]


def pairwise(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """dx[i, j] = x[i] - x[j], dy likewise, and squared distances: each f32[U, U].

    x and y stay separate arrays: a trailing axis of 2 vectorises badly on CPU.
    """
    dx, dy = x[:, None] - x[None, :], y[:, None] - y[None, :]
    return dx, dy, dx * dx + dy * dy


def drop_diagonal(x: jax.Array) -> jax.Array:
    """[n, n, F] -> [n, n - 1, F]: row i without column i, by reshapes (no gather)."""
    n, f = x.shape[0], x.shape[2]
    return x.reshape(n * n, f)[1:].reshape(n - 1, n + 1, f)[:, :n].reshape(n, n - 1, f)


class SMAX(Environment[SMAXState]):
    """SMAX battles; teams "allies" (and "enemies" when ``enemy="learning"``). See the module doc.

    ``enemy="heuristic"`` plays the scripted enemy inside the step (no wrapper, no second team's
    observations: the fast path). For any other fixed enemy, make ``enemy="learning"`` and hold the
    "enemies" team to an opponent: ``jmarl.agents.opponents.with_fixed_teams(env, ["enemies"], spec)``.
    """

    objective = "win_rate"  # the headline of a run (jmarl.agents.rollout): the allies' win rate

    @dataclass(frozen=True)
    class Config:
        scenario: str = "3m"  # a name in jmarl.envs.smax.SCENARIOS (see register_scenario)
        enemy: Literal["heuristic", "learning"] = "heuristic"  # learning: "enemies" is a second team
        target_mode: Literal["closest", "lowest_health", "random"] = "closest"  # the heuristic's choice
        advance: Literal["closest", "random_visible"] = "closest"  # the heuristic's move; JaxMARL's: random_visible
        obs_last_action: bool = False  # teammates' last moves and attacks, and how many attacked each foe
        mirror: bool = False  # the enemies see and act in the frame mirrored through the map centre (module doc)
        max_steps: int = 100
        micro_ticks: int = 8  # simulation ticks per env step
        step_seconds: float = 0.5  # game time per env step
        win_bonus: float = 1.0
        map_size: float = 32.0

    name = "smax"

    def __init__(self, config: Config | None = None):
        self.config = config = config or SMAX.Config()
        require_at_least("smax", config, micro_ticks=1, max_steps=1)
        for name in ("step_seconds", "map_size"):
            if not getattr(config, name) > 0:
                raise ValueError(f"smax: {name} must be positive, got {getattr(config, name)}")
        self.scenario = get_scenario(config.scenario)
        if config.mirror and config.enemy != "learning":
            raise ConfigError(f"smax: mirror=True mirrors the learning enemies' frame, so it needs enemy='learning' "
                              f"(got enemy={config.enemy!r}); valid: enemy='learning' mirror=True, or mirror=False")
        if config.mirror and not self.scenario.symmetric:
            sc = self.scenario
            raise ConfigError(f"smax: mirror=True needs a scenario whose two sides have the same unit types, not "
                              f"{config.scenario!r} ({sc.num_allies} allies {sorted(set(sc.allies))} vs "
                              f"{sc.num_enemies} enemies {sorted(set(sc.enemies))}); valid scenarios: "
                              f"{symmetric_scenarios()}")
        self.num_allies, self.num_enemies = self.scenario.num_allies, self.scenario.num_enemies
        self.num_units = self.num_allies + self.num_enemies
        self.dt = config.step_seconds / config.micro_ticks
        # Fixed unit types are numpy: every per-unit stat becomes an XLA constant.
        self._types = None if self.scenario.random_types else self.scenario.unit_types
        is_ally = np.arange(self.num_units) < self.num_allies
        self._foe = is_ally[:, None] != is_ally[None, :]  # bool[U, U]: j is i's foe
        self._target_offset = np.where(is_ally, self.num_allies - NUM_MOVES, -NUM_MOVES)  # action -> unit id

    # ------------------------------------------------------------------------------------------------
    # Spaces
    # ------------------------------------------------------------------------------------------------
    @property
    def teams(self) -> dict[str, Team]:
        obs = (F_OWN + (F_UNIT + F_ACT * self.config.obs_last_action) * (self.num_units - 1),)
        teams = {"allies": Team(self.num_allies, obs, Discrete(NUM_MOVES + self.num_enemies))}
        if self.config.enemy == "learning":
            teams["enemies"] = Team(self.num_enemies, obs, Discrete(NUM_MOVES + self.num_allies))
        return teams

    @property
    def global_state_shape(self) -> tuple[int, ...]:
        return (self.num_units * F_OWN + 1,)

    @property
    def max_steps(self) -> int:
        return self.config.max_steps

    # ------------------------------------------------------------------------------------------------
    # Reset and step
    # ------------------------------------------------------------------------------------------------
    def _units(self, unit_type: jax.Array):
        """One-hot types f32[U, T] and per-unit stats."""
        if self._types is not None:  # fixed types: numpy, so every per-unit stat is an XLA constant
            onehot = np.eye(NUM_UNIT_TYPES, dtype=np.float32)[self._types]
        else:
            onehot = jax.nn.one_hot(unit_type, NUM_UNIT_TYPES)
        return onehot, unit_stats(onehot)

    def _reset(self, key: jax.Array) -> tuple[TimeStep, SMAXState]:
        sc, n, m, size = self.scenario, self.num_allies, self.num_enemies, self.config.map_size
        if sc.random_positions or sc.random_types:  # one RNG call: AutoReset runs reset every step
            flat = jax.random.uniform(key, (self.num_units * NUM_DRAWS + NUM_SCALAR_DRAWS,))
            draw, scalars = flat[:-NUM_SCALAR_DRAWS].reshape(self.num_units, NUM_DRAWS), flat[-NUM_SCALAR_DRAWS:]
        else:
            draw = jax.random.uniform(key, (self.num_units, 2))
        pos = smacv2_positions(draw, scalars, n, m, size) if sc.random_positions else fixed_positions(draw, n, m, size)
        unit_type = smacv2_types(draw, n, m) if sc.random_types else jnp.asarray(self._types)
        onehot, stats = self._units(unit_type)
        state = SMAXState(
            pos=pos, health=jnp.broadcast_to(stats.health, (self.num_units,)),
            cooldown=jnp.zeros((self.num_units,)), unit_type=unit_type,
            last_action=jnp.full((self.num_units,), STOP, jnp.int32), step=jnp.zeros((), jnp.int32))
        false = jnp.zeros((), bool)
        return self._timestep(state, onehot, stats, (0.0, 0.0), false, false, false), state

    def cooldown_noise(self, key: jax.Array) -> jax.Array:
        """f32[U]: each unit's cooldown noise for one step, uniform in [-1, +2] game loops (by unit index: a test
        of mirror mode hands the mirrored state the same unit's draw)."""
        return jax.random.uniform(key, (self.num_units,), minval=-GAME_LOOP, maxval=2 * GAME_LOOP)

    def observe(self, state: SMAXState) -> TimeStep:
        """The TimeStep of ``state`` with zero rewards (e.g. for a state built by hand)."""
        onehot, stats = self._units(state.unit_type)
        alive = state.health > 0
        allies, enemies = jnp.any(alive[:self.num_allies]), jnp.any(alive[self.num_allies:])
        terminated = ~(allies & enemies)
        truncated = (state.step >= self.config.max_steps) & ~terminated
        return self._timestep(state, onehot, stats, (0.0, 0.0), terminated, truncated, allies & ~enemies)

    def _step(self, key: jax.Array, state: SMAXState, actions) -> tuple[TimeStep, SMAXState]:
        n, u, cfg = self.num_allies, self.num_units, self.config
        onehot, stats = self._units(state.unit_type)
        x, y = state.pos[:, 0], state.pos[:, 1]
        alive = state.health > 0
        random_enemy = cfg.target_mode == "random" or cfg.advance == "random_visible"
        k_noise, k_enemy = jax.random.split(key) if random_enemy else (key, key)
        if cfg.enemy == "heuristic":
            dx, dy, d2 = pairwise(x, y)
            enemy_actions = heuristic_actions(
                k_enemy, -dx[n:, :n], -dy[n:, :n], d2[n:, :n], alive[n:], alive[:n],
                (state.health / stats.health)[:n], stats.attack_range[n:], state.last_action[n:], cfg.target_mode,
                cfg.advance, stats.sight_range[n:])
        else:
            enemy_actions = mirror_actions(actions["enemies"]) if cfg.mirror else actions["enemies"]
        act = jnp.where(alive, jnp.concatenate([actions["allies"], enemy_actions]).astype(jnp.int32), STOP)

        # Fixed for the whole step: velocities, who attacks whom, the cooldown after an attack.
        step_len = stats.speed * self.dt
        vx = ((act == EAST).astype(jnp.float32) - (act == WEST)) * step_len  # [U]
        vy = ((act == NORTH).astype(jnp.float32) - (act == SOUTH)) * step_len
        targets = ((act + self._target_offset)[:, None] == np.arange(u)) & self._foe  # bool[U, U]: i attacks j
        damage_in = jnp.where(targets.T, stats.damage[None, :], 0.0)  # [U, U]: j takes from i per attack
        reach2 = stats.attack_range[:, None] ** 2  # [U, 1]
        next_cooldown = stats.cooldown + self.cooldown_noise(k_noise)
        radius_sum = stats.radius[:, None] + stats.radius[None, :]
        not_self = ~np.eye(u, dtype=bool)

        def tick(carry, _):
            x, y, health, cooldown = carry
            dx, dy, d2 = pairwise(x, y)
            alive = health > 0
            # Attacks resolve simultaneously: who fires depends only on the state at the tick's start.
            fire = alive & (cooldown <= 0) & jnp.any(targets & alive & (d2 < reach2), axis=1)  # [U]
            health = jnp.maximum(health - jnp.sum(jnp.where(fire, damage_in, 0.0), axis=1), 0.0)
            cooldown = jnp.maximum(jnp.where(fire, next_cooldown, cooldown) - self.dt, 0.0)
            # Soft collision between units alive at the tick's start: overlapping pairs are pushed
            # apart by half the overlap each.
            both = alive[:, None] & alive[None, :] & not_self
            push = jnp.where(both, 0.5 * jax.nn.relu(radius_sum * jax.lax.rsqrt(d2 + 1e-6) - 1.0), 0.0)
            alive = health > 0
            x = jnp.where(alive, jnp.clip(x + vx + jnp.sum(dx * push, axis=1), 0.0, cfg.map_size), x)
            y = jnp.where(alive, jnp.clip(y + vy + jnp.sum(dy * push, axis=1), 0.0, cfg.map_size), y)
            return (x, y, health, cooldown), None

        (x, y, health, cooldown), _ = jax.lax.scan(
            tick, (x, y, state.health, state.cooldown), length=cfg.micro_ticks)

        # Rewards and episode end.
        lost = (state.health - health) / stats.health  # [U] fraction of health lost this step
        alive = health > 0
        allies_alive, enemies_alive = jnp.any(alive[:n]), jnp.any(alive[n:])
        allies_won, enemies_won = allies_alive & ~enemies_alive, enemies_alive & ~allies_alive
        reward_allies = jnp.mean(lost[n:]) + cfg.win_bonus * allies_won
        reward_enemies = jnp.mean(lost[:n]) + cfg.win_bonus * enemies_won
        terminated = ~(allies_alive & enemies_alive)
        state = SMAXState(jnp.stack([x, y], -1), health, cooldown, state.unit_type, act, state.step + 1)
        truncated = (state.step >= cfg.max_steps) & ~terminated
        # Combat metrics of this step (the module doc): who lost what, and how concentrated the allies' attacks were.
        per_enemy = jnp.sum(targets[:n, n:], axis=0, dtype=jnp.float32)  # [M] allies attacking each enemy
        combat = {"damage_dealt": jnp.sum(lost[n:]), "damage_taken": jnp.sum(lost[:n]),
                  "attacks": jnp.sum(per_enemy), "focused_attacks": jnp.max(per_enemy)}
        ts = self._timestep(state, onehot, stats, (reward_allies, reward_enemies), terminated, truncated, allies_won,
                            combat)
        return ts, state

    # ------------------------------------------------------------------------------------------------
    # Observations
    # ------------------------------------------------------------------------------------------------
    def _timestep(self, state, onehot, stats, rewards, terminated, truncated, won, combat=None) -> TimeStep:
        n, m, size = self.num_allies, self.num_enemies, self.config.map_size
        dx, dy, d2 = pairwise(state.pos[:, 0], state.pos[:, 1])
        alive = state.health > 0
        health = state.health / stats.health
        cooldown = jnp.clip(state.cooldown / stats.cooldown, 0.0, 1.0)
        onehot = jnp.broadcast_to(onehot, (self.num_units, NUM_UNIT_TYPES))

        def own_features(pos):  # [U, F_OWN]
            own = jnp.concatenate([health[:, None], pos / size, cooldown[:, None], onehot], -1)
            return jnp.where(alive[:, None], own, 0.0)

        own = own_features(state.pos)
        seen = (health, cooldown, onehot, alive, stats.sight_range)
        obs = {"allies": self._team_obs(0, n, own, *seen, dx, dy, d2, state.last_action)}
        avail = {"allies": self._team_avail(slice(0, n), slice(n, None), alive, stats.attack_range, d2)}
        reward = {"allies": jnp.full((n,), rewards[0])}
        if self.config.enemy == "learning":
            if self.config.mirror:  # the enemies' frame is mirrored through the centre: positions and moves flip
                obs["enemies"] = self._team_obs(n, self.num_units, own_features(size - state.pos), *seen, -dx, -dy,
                                                d2, state.last_action, flip=True)
                avail["enemies"] = self._team_avail(slice(n, None), slice(0, n), alive, stats.attack_range, d2,
                                                    flip=True)
            else:
                obs["enemies"] = self._team_obs(n, self.num_units, own, *seen, dx, dy, d2, state.last_action)
                avail["enemies"] = self._team_avail(slice(n, None), slice(0, n), alive, stats.attack_range, d2)
            reward["enemies"] = jnp.full((m,), rewards[1])
        global_state = jnp.concatenate([own.reshape(-1), (state.step / self.config.max_steps)[None]])
        # Win rate per side (episode metrics, eval/metric/NAME): 1 on the step that ends the episode, so the three
        # sum to 1 per episode; a draw is an end without a winner (both sides eliminated at once, or max_steps).
        enemies_won = terminated & jnp.any(alive[n:]) & ~jnp.any(alive[:n])
        draw = (terminated | truncated) & ~won & ~enemies_won
        outcome = {"allies_won": won, "enemies_won": enemies_won, "draw": draw}
        # Units alive at the episode's end; combat metrics of the step (zeros after a reset).
        done = (terminated | truncated).astype(jnp.float32)
        outcome.update(allies_alive=jnp.sum(alive[:n], dtype=jnp.float32) * done,
                       enemies_alive=jnp.sum(alive[n:], dtype=jnp.float32) * done,
                       **(combat or {k: jnp.zeros(()) for k in COMBAT_METRICS}))
        return TimeStep(obs=obs, reward=reward, terminated=terminated, truncated=truncated,
                        global_state=global_state, avail_actions=avail,
                        info={"won": won, "metrics": {k: v.astype(jnp.float32) for k, v in outcome.items()}})

    def _team_obs(self, lo, hi, own, health, cooldown, onehot, alive, sight, dx, dy, d2, last_action,
                  flip: bool = False) -> jax.Array:
        """f32[n, O] for the units lo:hi (one team): own features, teammates, then foes. ``own`` [U, F_OWN] and
        ``dx``, ``dy`` [U, U] are in the team's frame; ``flip``: its frame is mirrored (teammates' moves flip)."""
        n, u = hi - lo, self.num_units
        inv_sight = 1.0 / sight[lo:hi, None]  # [n, 1]
        visible = alive[lo:hi, None] & alive[None, :] & (d2[lo:hi] * inv_sight ** 2 < 1.0)  # [n, U]
        blocks = [
            jnp.broadcast_to(health[None, :, None], (n, u, 1)),
            (-dx[lo:hi] * inv_sight)[..., None],  # position of the other unit relative to the observer
            (-dy[lo:hi] * inv_sight)[..., None],
            (jnp.sqrt(d2[lo:hi]) * inv_sight)[..., None],
            jnp.broadcast_to(cooldown[None, :, None], (n, u, 1)),
            jnp.broadcast_to(onehot[None], (n, u, NUM_UNIT_TYPES)),
        ]
        if self.config.obs_last_action:
            blocks.append(jnp.broadcast_to(self._last_action_features(lo, hi, last_action, flip)[None], (n, u, F_ACT)))
        feats = jnp.where(visible[..., None], jnp.concatenate(blocks, -1), 0.0)  # [n, U, F_UNIT (+ F_ACT)]
        mates = drop_diagonal(feats[:, lo:hi])
        foes = feats[:, self.num_allies:] if lo == 0 else feats[:, :self.num_allies]
        return jnp.concatenate([own[lo:hi], mates.reshape(n, -1), foes.reshape(n, -1)], -1)

    def _last_action_features(self, lo: int, hi: int, last_action: jax.Array, flip: bool = False) -> jax.Array:
        """f32[U, F_ACT] as the team lo:hi sees last step's actions (``last_action``: in the map's frame): a
        teammate's move x, move y (in the team's frame: ``flip`` mirrors them) and whether it attacked; for a foe
        0, 0 and the fraction of the team that attacked it."""
        move = mirror_actions(last_action) if flip else last_action
        move_x = (move == EAST).astype(jnp.float32) - (move == WEST)
        move_y = (move == NORTH).astype(jnp.float32) - (move == SOUTH)
        attacked = last_action >= NUM_MOVES  # [U]
        # i attacked j; a move's offset index is never i's foe, so the foe mask alone leaves only attacks.
        hits = ((last_action + self._target_offset)[:, None] == np.arange(self.num_units)) & self._foe  # [U, U]
        targeted = jnp.sum(hits[lo:hi], axis=0) / (hi - lo)  # [U]
        is_mate = (np.arange(self.num_units) >= lo) & (np.arange(self.num_units) < hi)
        mate = jnp.stack([move_x, move_y, attacked.astype(jnp.float32)], -1)
        foe = jnp.stack([jnp.zeros_like(targeted), jnp.zeros_like(targeted), targeted], -1)
        return jnp.where(is_mate[:, None], mate, foe)

    @staticmethod
    def _team_avail(team: slice, foes: slice, alive, attack_range, d2, flip: bool = False) -> jax.Array:
        """bool[n, 5 + foes]: moves if alive, stop always, attack living foes in range. ``flip``: the moves in
        the mirrored frame (north <-> south, east <-> west; the same mask while every move is available alike)."""
        me = alive[team]
        in_range = me[:, None] & alive[foes] & (d2[team, foes] < attack_range[team, None] ** 2)
        moves = jnp.broadcast_to(me[:, None], (me.shape[0], NUM_MOVES - 1))
        if flip:
            moves = moves[:, [SOUTH, WEST, NORTH, EAST]]  # the mirrored frame's north is the map's south, ...
        return jnp.concatenate([moves, jnp.ones_like(me)[:, None], in_range], -1)

    # ------------------------------------------------------------------------------------------------
    # The scripted policy, for either team
    # ------------------------------------------------------------------------------------------------
    def heuristic_actions(self, key: jax.Array, state: SMAXState, team: str = "allies",
                          mode: str | None = None) -> jax.Array:
        """i32[n]: the scripted policy's actions for ``team`` ("allies" or "enemies") in this state, as the team
        hands them to ``step`` (the enemies' mirrored frame in mirror mode: the game played is the same)."""
        n = self.num_allies
        me, foe = (slice(0, n), slice(n, None)) if team == "allies" else (slice(n, None), slice(0, n))
        _, stats = self._units(state.unit_type)
        dx, dy, d2 = pairwise(state.pos[:, 0], state.pos[:, 1])
        alive = state.health > 0
        actions = heuristic_actions(key, -dx[me, foe], -dy[me, foe], d2[me, foe], alive[me], alive[foe],
                                    (state.health / stats.health)[foe], stats.attack_range[me],
                                    state.last_action[me], mode or self.config.target_mode, self.config.advance,
                                    stats.sight_range[me])
        return mirror_actions(actions) if self.config.mirror and team == "enemies" else actions

    # ------------------------------------------------------------------------------------------------
    # Rendering
    # ------------------------------------------------------------------------------------------------
    def render_scene(self, states: SMAXState) -> Scene:
        """The render scene of one episode (``states``: leaves [F, ...], numpy); see ``envs/smax/scene.py``."""
        return smax_scene(self, states)


# Removed names: the opponent machinery has one home, jmarl.agents.opponents.
_REMOVED = {
    "PolicyEnemy": "PolicyEnemy(env, policy_fn) is gone: write with_fixed_teams(jmarl.make('smax', enemy='learning'), "
                   "['enemies'], opponent) with opponent = jmarl.agents.opponents.policy_opponent('enemies', "
                   "lambda key, obs, avail: ...) (or 'random', 'heuristic', a run directory, any Opponent)",
    "PolicyEnemyState": "PolicyEnemyState is gone with PolicyEnemy: the fixed-team wrapper's state is "
                        "jmarl.agents.opponents.FixedTeamsState",
    "random_policy": "random_policy is gone: a random opponent is with_fixed_teams(env, ['enemies'], 'random') "
                     "(jmarl.agents.opponents), and masked uniform actions are Discrete.sample(key, shape, avail) "
                     "(jmarl.core.spaces)",
}


def __getattr__(name: str):
    # ImportError, not AttributeError: ``from ... import PolicyEnemy`` then shows this message, not a bare
    # "cannot import name".
    if name in _REMOVED:
        raise ImportError(_REMOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
