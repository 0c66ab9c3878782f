"""Public entry point of the Delta Net."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.delta_net import (chunked, pallas_gpu_chunked, pallas_gpu_sequential, pallas_tpu_chunked,
                                       pallas_tpu_sequential, reference)

Array = jax.Array

FORMS = make_forms(
    chunked=Form(chunked.chunked, chunked=True),
    pallas_gpu_chunked=Form(pallas_gpu_chunked.delta_net, chunked=True, backend="gpu",
                            supported=pallas_gpu_chunked.supported),
    pallas_gpu_sequential=Form(pallas_gpu_sequential.delta_net, backend="gpu", auto=False),
    pallas_tpu_chunked=Form(pallas_tpu_chunked.delta_net, chunked=True, backend="tpu",
                            supported=pallas_tpu_chunked.supported),
    pallas_tpu_sequential=Form(pallas_tpu_sequential.delta_net, backend="tpu", auto=False),
    recurrent=reference.recurrent,
)


@functools.partial(jax.jit, static_argnames=("chunk_size", "implementation"))
def delta_net(q: Array, k: Array, v: Array, beta: Array, *,
              initial_state: reference.State | None = None, implementation: str | None = None,
              chunk_size: int | None = None) -> tuple[Array, reference.State]:
    """Delta-rule fast weight programmer, causal.

    Args:
      q: queries `[B, T, H, K]`, already feature-mapped and sum-normalised.
      k: keys `[B, T, H, K]`, already feature-mapped and sum-normalised.
      v: values `[B, T, H, V]`.
      beta: write strengths `[B, T, H]`, already sigmoided.
      initial_state: `State(W [B, H, K, V])`; zeros if None.
      implementation: None (the best available) or one of `FORMS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`.
    """
    return dispatch("delta_net", FORMS, implementation, (q, k, v, beta), initial_state=initial_state,
                    chunk_size=chunk_size)
