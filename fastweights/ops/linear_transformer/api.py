"""Public entry point of the Linear Transformer (sum rule)."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import auto_order, select_implementation
from fastweights.ops.linear_transformer import chunked, pallas_gpu_chunked, pallas_tpu_chunked, reference

Array = jax.Array

IMPLEMENTATIONS = {
    "chunked": chunked.chunked, "pallas_gpu": pallas_gpu_chunked.linear_transformer,
    "pallas_tpu": pallas_tpu_chunked.linear_transformer, "recurrent": reference.recurrent,
}


@functools.partial(jax.jit, static_argnames=("normalize", "eps", "chunk_size", "implementation"))
def linear_transformer(q: Array, k: Array, v: Array, *, normalize: bool = False, eps: float = 1e-5,
                       initial_state: reference.State | None = None,
                       implementation: str | None = None,
                       chunk_size: int | None = None) -> tuple[Array, reference.State]:
    """Sum-rule fast weight programmer (linear attention), causal.

    Args:
      q: queries `[B, T, H, K]`, already feature-mapped (e.g. `elu_p1`, `dpfp`).
      k: keys `[B, T, H, K]`, already feature-mapped.
      v: values `[B, T, H, V]`.
      normalize: divide each read by `z_t . q_t + eps`, where `z_t` is the running key sum
        including step t (the official `attn_type` 34 without `--skip_attn_normalization`).
      eps: added to the normaliser.
      initial_state: `State(W [B, H, K, V], z [B, H, K])`; zeros if None.
      implementation: None (the best available) or one of `IMPLEMENTATIONS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`. No `1/sqrt(d)` scale:
      that belongs to the layer.
    """
    name = select_implementation(
        "linear_transformer", implementation, IMPLEMENTATIONS,
        order=auto_order(q.shape[1], q.shape[-1], q.dtype, gpu_kernel_measured=True, tpu_kernel=True),
        supported={"pallas_gpu": lambda: pallas_gpu_chunked.supported(q, k, v, chunk_size=chunk_size),
                   "pallas_tpu": lambda: pallas_tpu_chunked.supported(q, k, v, chunk_size=chunk_size)})
    options = dict(chunk_size=chunk_size) if name in ("chunked", "pallas_gpu", "pallas_tpu") else {}
    return IMPLEMENTATIONS[name](q, k, v, normalize=normalize, eps=eps, initial_state=initial_state,
                                 **options)
