"""Public entry point of the Delta Delta Net."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.delta_delta_net import chunked, reference

Array = jax.Array

FORMS = make_forms(chunked=Form(chunked.chunked, chunked=True), recurrent=reference.recurrent)


@functools.partial(jax.jit, static_argnames=("eps", "chunk_size", "implementation"))
def delta_delta_net(q: Array, k: Array, v: Array, beta: Array, *, eps: float = 1e-5,
                    initial_state: reference.State | None = None,
                    implementation: str | None = None,
                    chunk_size: int | None = None) -> tuple[Array, reference.State]:
    """Two-level (hierarchical) delta-rule fast weight programmer, causal.

    Args:
      q: queries `[B, T, H, K]`, already feature-mapped and sum-normalised.
      k: keys `[B, T, H, K]`, already feature-mapped and sum-normalised.
      v: first-level values `[B, T, H, 3d+1]`: their read gives the second level's
        `(q, k, v, beta)` logits of sizes `(d, d, d, 1)`.
      beta: first-level write strengths `[B, T, H]`, already sigmoided.
      eps: epsilon of the second level's sum normalisation (official: 1e-5).
      initial_state: `State(W=(W1 [B, H, K, 3d+1], W2 [B, H, d, d]))`; zeros if None.
      implementation: None (the best available) or one of `FORMS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(o [B, T, H, d] in the input dtype, final State in float32)`.
    """
    return dispatch("delta_delta_net", FORMS, implementation, (q, k, v, beta), initial_state=initial_state,
                    chunk_size=chunk_size, eps=eps)
