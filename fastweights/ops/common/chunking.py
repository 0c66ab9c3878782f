"""Helpers of the chunkwise-parallel forms: cut `[B, T, H, ...]` into zero-padded chunks.

Zero padding is exact for the sum and delta rules: a zero key (and zero beta) writes
nothing, and the outputs of padded steps are dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


# Default steps per chunk of the pure-JAX chunked forms, measured (BENCHMARKS.md): on CPU
# 16 (B8 H8 d64 T512: 1.3x faster to train than 64; d16: 2.1x), elsewhere 64 (the tile size
# of the GPU kernels and of flash-linear-attention).
DEFAULT_CHUNK_SIZE = {"cpu": 16}


def check_chunk_size(op: str, chunk_size: int | None) -> int:
    """`chunk_size`, or the platform default for None; refuses anything but a positive int."""
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE.get(jax.default_backend(), 64)
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


@jax.custom_vjp
def unit_lower_inverse(strictly_lower: Array) -> Array:
    """`(I + L)^-1` for strictly lower-triangular `L` `[..., C, C]`, by forward substitution.

    Row i of the inverse is `e_i - L[i, :i] @ T[:i]`: C - 1 batched vector-matrix products.
    (XLA's batched triangular solve is several times slower on CPU.) The custom VJP uses
    `d(M^-1) = -M^-1 dM M^-1` instead of differentiating through the loop, which would keep
    C copies of the matrix.
    """
    c = strictly_lower.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(c, dtype=strictly_lower.dtype), strictly_lower.shape)

    def row(i, inverse):
        new = eye[..., i, :] - jnp.einsum("...j,...jk->...k", strictly_lower[..., i, :], inverse,
                                  precision=jax.lax.Precision.HIGHEST)
        return inverse.at[..., i, :].set(new)

    return jax.lax.fori_loop(1, c, row, eye)


def _unit_lower_inverse_fwd(strictly_lower):
    inverse = unit_lower_inverse(strictly_lower)
    return inverse, inverse


def _unit_lower_inverse_bwd(inverse, grad):
    # T = (I + L)^-1  =>  dL = -T^T dT T^T, restricted to the strictly lower part L lives on.
    t = jnp.swapaxes(inverse, -1, -2)
    full = -jnp.einsum("...ij,...jk,...kl->...il", t, grad, t, precision=jax.lax.Precision.HIGHEST)
    return (jnp.tril(full, -1),)


unit_lower_inverse.defvjp(_unit_lower_inverse_fwd, _unit_lower_inverse_bwd)
