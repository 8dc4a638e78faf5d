"""Scenarios: who fights whom, and how a battle starts.

A ``Scenario`` lists the allies' and enemies' unit types. Fixed scenarios start each team in a
4x4 square around its side's spawn point (allies at (W/4, H/2), enemies at (3W/4, H/2)).
SMACv2-style scenarios draw, every episode, the unit types (uniform over the six types, the enemies
mirroring the allies) and the start positions ("reflect": allies anywhere in the left half, enemies
mirrored; or "surround": one team at the centre, the other in four groups on the diagonals).

Register your own with ``register_scenario("4m_vs_2z", Scenario(team(marine=4), team(zealot=2)))``,
then ``jmarl.make("smax", scenario="4m_vs_2z")``. Shape legend: N allies, M enemies, U = N + M.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jmarl.core.config import suggest
from jmarl.envs.smax.units import NUM_UNIT_TYPES, UNIT_TYPES, type_index


@dataclass(frozen=True)
class Scenario:
    """A battle. With ``random_types`` the listed types only fix the team sizes."""

    allies: tuple[str, ...]  # unit type names, one per ally
    enemies: tuple[str, ...]  # unit type names, one per enemy
    random_types: bool = False  # SMACv2: draw unit types every episode
    random_positions: bool = False  # SMACv2: "reflect" or "surround" start positions

    def __post_init__(self):
        object.__setattr__(self, "allies", tuple(self.allies))  # lists welcome; stored hashable
        object.__setattr__(self, "enemies", tuple(self.enemies))
        if not self.allies or not self.enemies:
            raise ValueError("a scenario needs at least one ally and one enemy")
        for name in self.allies + self.enemies:
            type_index(name)

    @property
    def num_allies(self) -> int:
        return len(self.allies)

    @property
    def num_enemies(self) -> int:
        return len(self.enemies)

    @property
    def unit_types(self) -> np.ndarray:
        """i32[U]: type indices, allies first."""
        return np.array([type_index(n) for n in self.allies + self.enemies], np.int32)

    @property
    def symmetric(self) -> bool:
        """Whether the two sides are alike, so that SMAX's mirror mode can swap them: the same unit types in the
        same order (with ``random_types``, equal team sizes: enemy j is drawn as ally j's type). The start
        positions of every scenario are then mirror-symmetric in distribution (see ``fixed_positions``)."""
        return self.num_allies == self.num_enemies if self.random_types else self.allies == self.enemies


def team(**counts: int) -> tuple[str, ...]:
    """``team(stalker=2, zealot=3)`` -> ("stalker", "stalker", "zealot", "zealot", "zealot")."""
    return tuple(name for name, count in counts.items() for _ in range(count))


def _battle(allies: dict, enemies: dict | None = None) -> Scenario:
    """A fixed scenario; the enemies mirror the allies unless given."""
    return Scenario(team(**allies), team(**(enemies or allies)))


def _smacv2(n: int) -> Scenario:
    return Scenario(team(marine=n), team(marine=n), random_types=True, random_positions=True)


SCENARIOS: dict[str, Scenario] = {
    "3m": _battle(dict(marine=3)),
    "8m": _battle(dict(marine=8)),
    "25m": _battle(dict(marine=25)),
    "2s3z": _battle(dict(stalker=2, zealot=3)),
    "3s5z": _battle(dict(stalker=3, zealot=5)),
    "5m_vs_6m": _battle(dict(marine=5), dict(marine=6)),
    "10m_vs_11m": _battle(dict(marine=10), dict(marine=11)),
    "27m_vs_30m": _battle(dict(marine=27), dict(marine=30)),
    "3s_vs_5z": _battle(dict(stalker=3), dict(zealot=5)),
    "3s5z_vs_3s6z": _battle(dict(stalker=3, zealot=5), dict(stalker=3, zealot=6)),
    "6h_vs_8z": _battle(dict(hydralisk=6), dict(zealot=8)),
    "smacv2_5_units": _smacv2(5),
    "smacv2_10_units": _smacv2(10),
    "smacv2_20_units": _smacv2(20),
}


def register_scenario(name: str, scenario: Scenario, overwrite: bool = False) -> None:
    """Make ``scenario`` available as ``jmarl.make("smax", scenario=name)``."""
    if name in SCENARIOS and not overwrite:
        raise ValueError(f"scenario {name!r} is already registered; pass overwrite=True to replace it")
    if not isinstance(scenario, Scenario):
        raise TypeError(f"expected a Scenario, got {type(scenario).__name__}")
    SCENARIOS[name] = scenario


def symmetric_scenarios() -> list[str]:
    """The registered scenarios whose sides are alike (``Scenario.symmetric``): those SMAX's mirror mode takes."""
    return sorted(name for name, sc in SCENARIOS.items() if sc.symmetric)


def get_scenario(name: str) -> Scenario:
    """The registered scenario ``name``; ValueError with close matches and every registered name otherwise."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown SMAX scenario {name!r}.{suggest(name, SCENARIOS)} Registered: {sorted(SCENARIOS)}")
    return SCENARIOS[name]


# ----------------------------------------------------------------------------------------------------
# Start conditions: pure functions of uniform draws (reset makes one RNG call: under AutoReset it runs
# every step)
# ----------------------------------------------------------------------------------------------------
NUM_DRAWS = 6  # uniform draws per unit
NUM_SCALAR_DRAWS = 6  # uniform draws per episode


def fixed_positions(draw: jax.Array, n: int, m: int, size: float) -> jax.Array:
    """f32[U, 2]: each team uniform in a 4x4 square around its spawn point. draw: f32[U, >= 2] in [0, 1).

    The spawn points are mirror images through the map centre, so the starts are mirror-symmetric in
    distribution: the draw 1 - u puts a unit at the mirror image (size - x, size - y) of where u puts the unit of
    the same index on the other side, and 1 - u is as uniform as u. (Each episode's start is not an exact mirror
    image: the two sides' draws are independent.)"""
    spawn = np.array([[size / 4, size / 2]] * n + [[3 * size / 4, size / 2]] * m, np.float32)
    return spawn + 4.0 * draw[:, :2] - 2.0


def smacv2_positions(draw: jax.Array, scalars: jax.Array, n: int, m: int, size: float) -> jax.Array:
    """f32[U, 2]: "reflect" or "surround" (each half the time), as SMACv2 draws start positions.

    draw: f32[U, NUM_DRAWS] and scalars: f32[NUM_SCALAR_DRAWS], uniform in [0, 1).
    """
    u = n + m
    # reflect: allies uniform in the left half; enemy j mirrors draw j (ally j's for j < N, an unused
    # draw for the extra enemies j >= N)
    uni = draw[:, :2] * np.array([size / 2, size], np.float32)
    reflect = jnp.concatenate([uni[:n], jnp.stack([size - uni[:m, 0], uni[:m, 1]], -1)])
    # surround: the inside team within 2 of the centre, the outside team in four groups on the diagonals
    centre = np.array([size / 2, size / 2], np.float32)
    corners = np.array([[0, 0], [0, size], [size, 0], [size, size]], np.float32)
    group_pos = centre + (corners - centre) * (0.35 + 0.35 * scalars[:4, None])  # [4, 2]
    group = jnp.floor(draw[:, 4] * 4)  # [U] in {0, 1, 2, 3}
    outside = jnp.sum(jnp.where((group[:, None] == np.arange(4))[..., None], group_pos, 0.0), axis=1)
    is_ally = np.arange(u) < n
    inside = jnp.where(scalars[4] < 0.5, is_ally, ~is_ally)[:, None]
    surround = jnp.where(inside, centre, outside) + 4.0 * draw[:, 2:4] - 2.0
    pos = jnp.where(scalars[5] < 0.5, reflect, surround)
    return jnp.clip(pos, 0.5, size - 0.5)


def smacv2_types(draw: jax.Array, n: int, m: int) -> jax.Array:
    """i32[U]: allies uniform over the unit types; enemy j mirrors ally j (extra enemies fresh).

    draw: f32[U, NUM_DRAWS] uniform in [0, 1).
    """
    types = jnp.minimum(jnp.floor(draw[:, 5] * NUM_UNIT_TYPES), NUM_UNIT_TYPES - 1).astype(jnp.int32)
    return jnp.concatenate([types[:n], types[:m]])  # types[j] for j >= N is not an ally's: fresh


__all__ = ["SCENARIOS", "Scenario", "UNIT_TYPES", "get_scenario", "register_scenario", "symmetric_scenarios", "team"]
