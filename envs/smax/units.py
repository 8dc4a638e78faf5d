"""The unit-type table: one row per unit type, one column per stat.

The numbers are JaxMARL SMAX's (SC2-like; protoss health includes shields), kept as they are so that
win rates are comparable with published SMAX results. Times are in game seconds, distances in map
units. Shape legend: U units, T = NUM_UNIT_TYPES.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import jax
import numpy as np

UNIT_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")
NUM_UNIT_TYPES = len(UNIT_TYPES)

Array = Union[np.ndarray, jax.Array]


class UnitStats(NamedTuple):
    """Per-unit stats, each f32[U] (or f32[T] for the table's rows)."""

    health: Array  # hit points (+ shields)
    damage: Array  # damage per attack
    attack_range: Array  # centre-to-centre distance within which an attack lands
    sight_range: Array  # observation radius
    speed: Array  # map units per second
    radius: Array  # collision radius
    cooldown: Array  # seconds between attacks


#                     health damage range sight speed radius cooldown
_ROWS = {"marine":    (45.0, 9.0, 5.0, 9.0, 3.15, 0.375, 0.61),
         "marauder":  (125.0, 10.0, 6.0, 10.0, 2.25, 0.5625, 1.07),
         "stalker":   (160.0, 13.0, 6.0, 10.0, 4.13, 0.625, 1.87),
         "zealot":    (150.0, 8.0, 2.0, 9.0, 3.15, 0.5, 0.86),
         "zergling":  (35.0, 5.0, 2.0, 8.0, 4.13, 0.375, 0.5),
         "hydralisk": (80.0, 12.0, 5.0, 9.0, 3.15, 0.625, 0.59)}

TABLE = np.array([_ROWS[name] for name in UNIT_TYPES], np.float32)  # f32[T, 7]: columns as in UnitStats


def type_index(name: str) -> int:
    """Index of a unit type name in UNIT_TYPES (raises with the valid names)."""
    if name not in UNIT_TYPES:
        raise ValueError(f"unknown unit type {name!r}; valid: {list(UNIT_TYPES)}")
    return UNIT_TYPES.index(name)


def unit_stats(type_onehot: Array) -> UnitStats:
    """Stats of each unit from its one-hot type (f32[U, T]) by a mask-multiply, not a gather.

    A numpy one-hot (scenarios with fixed unit types) gives numpy stats, which XLA sees as constants.
    """
    stats = type_onehot @ TABLE  # [U, 7]
    return UnitStats(*(stats[:, i] for i in range(TABLE.shape[1])))
