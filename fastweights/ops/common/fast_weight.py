"""The two fast-weight primitives every variant is built from (PAPER_SPEC 1).

A fast weight matrix is stored `[..., K, V]` (key dim, value dim) and read as `W^T q`.
Leading axes broadcast, so the same code serves one head, `[B, H]`, or a gate axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

# Fast-weight algebra is the numerics under test: never let a backend drop to TF32/bf16 passes.
_PRECISION = jax.lax.Precision.HIGHEST


def read(W: Array, q: Array) -> Array:
    """`W^T q`: `W` `[..., K, V]`, `q` `[..., K]` -> `[..., V]`."""
    return jnp.einsum("...kv,...k->...v", W, q, precision=_PRECISION)


def outer(k: Array, u: Array) -> Array:
    """`k u^T`: `[..., K]`, `[..., V]` -> `[..., K, V]`."""
    return k[..., :, None] * u[..., None, :]


def sum_update(W: Array, k: Array, v: Array) -> Array:
    """Sum rule (linear Transformer): `W + k v^T`."""
    return W + outer(k, v)


def delta_update(W: Array, k: Array, v: Array, beta: Array) -> Array:
    """Delta rule: `W + k (beta (v - W^T k))^T`, with `W^T k` read from the old `W`.

    `beta` is one scalar per matrix, `[...]`.
    """
    v_old = read(W, k)
    return W + outer(k, beta[..., None] * (v - v_old))
