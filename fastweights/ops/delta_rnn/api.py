"""Public entry point of the Delta RNN."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.delta_rnn import pallas_gpu_sequential, pallas_tpu_sequential, reference

Array = jax.Array

FORMS = make_forms(
    pallas_gpu_sequential=Form(pallas_gpu_sequential.delta_rnn, backend="gpu", auto=False),
    pallas_tpu_sequential=Form(pallas_tpu_sequential.delta_rnn, backend="tpu",
                               supported=pallas_tpu_sequential.supported),
    recurrent=reference.recurrent,
)


@functools.partial(jax.jit, static_argnames=("version", "implementation"))
def delta_rnn(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 2, initial_state: reference.State | None = None,
              implementation: str | None = None) -> tuple[Array, reference.State]:
    """Delta RNN: `y_t = R_t^T f(y_{t-1}) + W_t^T q_t` with delta-rule fast `W` and `R`.

    Args:
      q: queries `[B, T, H, K]`, feature-mapped and sum-normalised (v2) or softmaxed (v1).
      k: keys `[B, T, H, K]`, mapped like `q`.
      v: values `[B, T, H, V]`.
      beta: feed-forward write strengths `[B, T, H]`, already sigmoided.
      rk: recurrent keys `[B, T, H, V]`, already softmaxed.
      rv: recurrent values `[B, T, H, V]`.
      rbeta: recurrent write strengths `[B, T, H]`, already sigmoided.
      version: 2 (default; the paper's Delta RNN, official `attn_type` 134) applies
        `softmax_eps` to the previous raw output inside; 1 (`attn_type` 124) applies an
        exact softmax to the new output.
      initial_state: `State(W [B, H, K, V], R [B, H, V, V], y [B, H, V])`; zeros if None.
      implementation: None (the best available) or one of `FORMS`.

    Returns:
      `(y [B, T, H, V] in the input dtype, final State in float32)`.
    """
    return dispatch("delta_rnn", FORMS, implementation, (q, k, v, beta, rk, rv, rbeta), initial_state=initial_state,
                    version=version)
