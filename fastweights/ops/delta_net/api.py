"""Public entry point of the Delta Net."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import auto_order, select_implementation
from fastweights.ops.delta_net import (chunked, pallas_gpu_chunked, pallas_gpu_sequential,
                                       pallas_tpu_chunked, pallas_tpu_sequential, reference)

Array = jax.Array

IMPLEMENTATIONS = {
    "chunked": chunked.chunked, "pallas_gpu": pallas_gpu_chunked.delta_net,
    "pallas_gpu_recurrent": pallas_gpu_sequential.delta_net, "pallas_tpu": pallas_tpu_chunked.delta_net,
    "pallas_tpu_recurrent": pallas_tpu_sequential.delta_net, "recurrent": reference.recurrent,
}


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
      implementation: None (the best available) or one of `IMPLEMENTATIONS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`.
    """
    name = select_implementation(
        "delta_net", implementation, IMPLEMENTATIONS,
        order=auto_order(q.shape[1], q.shape[-1], q.dtype, gpu_kernel_measured=True, tpu_kernel=True),
        supported={"pallas_gpu": lambda: pallas_gpu_chunked.supported(q, k, v, beta, chunk_size=chunk_size),
                   "pallas_tpu": lambda: pallas_tpu_chunked.supported(q, k, v, beta, chunk_size=chunk_size)})
    options = dict(chunk_size=chunk_size) if name in ("chunked", "pallas_gpu", "pallas_tpu") else {}
    return IMPLEMENTATIONS[name](q, k, v, beta, initial_state=initial_state, **options)
