"""Public entry point of the Delta LSTM."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.delta_lstm import pallas_gpu_sequential, pallas_tpu_sequential, reference

Array = jax.Array

FORMS = make_forms(
    pallas_gpu_sequential=Form(pallas_gpu_sequential.delta_lstm, backend="gpu", auto=False),
    pallas_tpu_sequential=Form(pallas_tpu_sequential.delta_lstm, backend="tpu",
                               supported=pallas_tpu_sequential.supported),
    recurrent=reference.recurrent,
)


@functools.partial(jax.jit, static_argnames=("version", "implementation"))
def delta_lstm(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
               version: int = 4, initial_state: reference.State | None = None,
               implementation: str | None = None) -> tuple[Array, reference.State]:
    """Delta LSTM: three gates, each with delta-rule feed-forward and recurrent fast weights.

    Every input has a gate axis of size 3 after the heads, ordered (input, update, output).

    Args:
      q: queries `[B, T, H, 3, K]`, feature-mapped and sum-normalised.
      k: keys `[B, T, H, 3, K]`, feature-mapped and sum-normalised.
      v: values `[B, T, H, 3, V]`.
      beta: feed-forward write strengths `[B, T, H, 3]`, already sigmoided.
      rk: recurrent keys `[B, T, H, 3, V]`, already softmaxed.
      rv: recurrent values `[B, T, H, 3, V]`.
      rbeta: recurrent write strengths `[B, T, H, 3]`, already sigmoided.
      version: 1-4 (official `attn_type` 224, 234, 244, 254); 4 is the paper's Delta LSTM.
      initial_state: `State(W [B, H, 3, K, V], R [B, H, 3, V, V], h [B, H, V], c [B, H, V])`;
        zeros if None.
      implementation: None (the best available) or one of `FORMS`.

    Returns:
      `(h [B, T, H, V] in the input dtype, final State in float32)`.
    """
    return dispatch("delta_lstm", FORMS, implementation, (q, k, v, beta, rk, rv, rbeta), initial_state=initial_state,
                    version=version)
