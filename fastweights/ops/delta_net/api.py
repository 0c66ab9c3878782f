"""Public entry point of the Delta Net."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import select_implementation
from fastweights.ops.delta_net import chunked, reference

Array = jax.Array

IMPLEMENTATIONS = {"chunked": chunked.chunked, "recurrent": reference.recurrent}


@functools.partial(jax.jit, static_argnames=("chunk_size", "implementation"))
def delta_net(q: Array, k: Array, v: Array, beta: Array, *,
              initial_state: reference.State | None = None, implementation: str | None = None,
              chunk_size: int = 64) -> tuple[Array, reference.State]:
    """Delta-rule fast weight programmer, causal.

    Args:
      q: queries `[B, T, H, K]`, already feature-mapped and sum-normalised.
      k: keys `[B, T, H, K]`, already feature-mapped and sum-normalised.
      v: values `[B, T, H, V]`.
      beta: write strengths `[B, T, H]`, already sigmoided.
      initial_state: `State(W [B, H, K, V])`; zeros if None.
      implementation: None (the best available) or one of `IMPLEMENTATIONS`.
      chunk_size: steps per chunk of the `chunked` form (any T: the last chunk is padded).

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`.
    """
    name = select_implementation("delta_net", implementation, IMPLEMENTATIONS, time=q.shape[1])
    options = dict(chunk_size=chunk_size) if name == "chunked" else {}
    return IMPLEMENTATIONS[name](q, k, v, beta, initial_state=initial_state, **options)
