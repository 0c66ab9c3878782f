"""Public entry point of the Delta Net."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import select_implementation
from fastweights.ops.delta_net import reference

Array = jax.Array

# Preferred first: `implementation=None` takes the first entry.
IMPLEMENTATIONS = {"recurrent": reference.recurrent}


@functools.partial(jax.jit, static_argnames=("implementation",))
def delta_net(q: Array, k: Array, v: Array, beta: Array, *,
              initial_state: reference.State | None = None,
              implementation: str | None = None) -> tuple[Array, reference.State]:
    """Delta-rule fast weight programmer, causal.

    Args:
      q: queries `[B, T, H, K]`, already feature-mapped and sum-normalised.
      k: keys `[B, T, H, K]`, already feature-mapped and sum-normalised.
      v: values `[B, T, H, V]`.
      beta: write strengths `[B, T, H]`, already sigmoided.
      initial_state: `State(W [B, H, K, V])`; zeros if None.
      implementation: None (the best available) or one of `IMPLEMENTATIONS`.

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`.
    """
    fn = select_implementation("delta_net", implementation, IMPLEMENTATIONS)
    return fn(q, k, v, beta, initial_state=initial_state)
