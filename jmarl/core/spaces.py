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

    def sample(self, key: jax.Array, shape: tuple[int, ...] = (), avail: jax.Array | None = None) -> jax.Array:
        """i32[*shape] uniform over the ``n`` actions, or, given ``avail`` bool[*shape, n], uniform over the
        available ones (an entry with none available gets action 0).

        This is the one home of masked uniform random actions: ``Environment.sample_actions``,
        ``jmarl.agents.rollout.random_actions`` and the random opponent all call it."""
        if avail is None:
            return jax.random.randint(key, shape, 0, self.n, dtype=jnp.int32)
        if tuple(avail.shape) != tuple(shape) + (self.n,):
            raise ValueError(f"{self}.sample: avail has shape {tuple(avail.shape)}, expected "
                             f"{tuple(shape) + (self.n,)} (shape + (n,))")
        # Gumbel-max over logits 0 (available) and -inf (not): uniform over the available actions.
        return jax.random.categorical(key, jnp.where(avail, 0.0, -jnp.inf)).astype(jnp.int32)

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

    def sample(self, key: jax.Array, shape: tuple[int, ...] = (), avail: jax.Array | None = None) -> jax.Array:
        """f32[*shape, *self.shape] uniform in the box. ``avail`` (bool[*shape, 1] in a TimeStep) is accepted
        for symmetry with ``Discrete.sample`` and ignored: every point of a box is available."""
        return jax.random.uniform(key, tuple(shape) + self.shape, jnp.float32, self.low, self.high)

    def contains(self, x) -> bool:
        x = np.asarray(x)
        batch = x.ndim - len(self.shape)  # leading batch axes, as in ``sample(key, shape)``
        return bool(batch >= 0 and x.shape[batch:] == self.shape and np.all((x >= self.low) & (x <= self.high)))


Space = Union[Discrete, Box]
