"""Public entry point of the Gated Delta Net."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.gated_delta_net import chunked, reference

Array = jax.Array

FORMS = make_forms(chunked=Form(chunked.chunked, chunked=True), recurrent=reference.recurrent)


@functools.partial(jax.jit, static_argnames=("chunk_size", "implementation"))
def gated_delta_net(q: Array, k: Array, v: Array, beta: Array, g: Array, *,
                    initial_state: reference.State | None = None, implementation: str | None = None,
                    chunk_size: int | None = None) -> tuple[Array, reference.State]:
    """Gated delta-rule fast weight programmer, causal.

    Args:
      q: queries `[B, T, H, K]`, already feature-mapped and normalised (the layer applies
        any scale; none is applied here).
      k: keys `[B, T, H, K]`, already feature-mapped and normalised.
      v: values `[B, T, H, V]`.
      beta: write strengths `[B, T, H]`, already sigmoided.
      g: log decays `[B, T, H]`, `<= 0` (the state is multiplied by `exp(g_t)` at step t).
      initial_state: `State(W [B, H, K, V])`; zeros if None.
      implementation: None (the best available) or one of `FORMS`.
      chunk_size: steps per chunk of the chunked form (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured for the delta rule, BENCHMARKS.md).

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`.
    """
    return dispatch("gated_delta_net", FORMS, implementation, (q, k, v, beta, g), initial_state=initial_state,
                    chunk_size=chunk_size)
