"""Helpers of the chunkwise-parallel forms: cut `[B, T, H, ...]` into zero-padded chunks.

Zero padding is exact for the sum and delta rules: a zero key (and zero beta) writes
nothing, and the outputs of padded steps are dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def check_chunk_size(op: str, chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def to_chunks(x: Array, chunk_size: int) -> Array:
    """`[B, T, H, *rest]` -> `[B, H, N, C, *rest]`, zero-padding T up to `N * C`."""
    B, T, H = x.shape[:3]
    n = -(-T // chunk_size)
    pad = [(0, 0), (0, n * chunk_size - T)] + [(0, 0)] * (x.ndim - 2)
    x = jnp.pad(x, pad)
    x = x.reshape(B, n, chunk_size, H, *x.shape[3:])
    return jnp.moveaxis(x, 3, 1)


def from_chunks(x: Array, time: int) -> Array:
    """`[B, H, N, C, *rest]` -> `[B, T, H, *rest]`, dropping the padding."""
    B, H, n, c = x.shape[:4]
    x = jnp.moveaxis(x, 1, 3).reshape(B, n * c, H, *x.shape[4:])
    return x[:, :time]
