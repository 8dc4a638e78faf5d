"""Action and observation spaces: a Discrete choice or a Box of floats."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Discrete:
    """One of ``n`` actions, encoded as an integer in ``[0, n)``."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self):
        return jnp.int32

    def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """i32[*shape] uniform over the ``n`` actions."""
        return jax.random.randint(key, shape, 0, self.n, dtype=jnp.int32)

    def contains(self, x) -> bool:
        x = np.asarray(x)
        return bool(np.issubdtype(x.dtype, np.integer) and np.all((x >= 0) & (x < self.n)))


@dataclass(frozen=True)
class Box:
    """Floats in ``[low, high]`` of a fixed shape (bounds are scalars, shared by every entry)."""

    low: float
    high: float
    shape: tuple[int, ...]

    @property
    def dtype(self):
        return jnp.float32

    def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """f32[*shape, *self.shape] uniform in the box."""
        return jax.random.uniform(key, shape + self.shape, jnp.float32, self.low, self.high)

    def contains(self, x) -> bool:
        x = np.asarray(x)
        batch = x.ndim - len(self.shape)  # leading batch axes, as in ``sample(key, shape)``
        return bool(batch >= 0 and x.shape[batch:] == self.shape and np.all((x >= self.low) & (x <= self.high)))


Space = Union[Discrete, Box]
