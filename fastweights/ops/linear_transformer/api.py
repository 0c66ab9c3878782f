"""Public entry point of the Linear Transformer (sum rule)."""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.linear_transformer import chunked, pallas_gpu_chunked, pallas_tpu_chunked, reference

Array = jax.Array

def _kernel_check(kernel):
    """The kernel's `supported`, ignoring the options it does not read (`normalize`, `eps`)."""
    return lambda q, k, v, *, chunk_size, **_: kernel.supported(q, k, v, chunk_size=chunk_size)


FORMS = make_forms(
    chunked=Form(chunked.chunked, chunked=True),
    pallas_gpu_chunked=Form(pallas_gpu_chunked.linear_transformer, chunked=True, backend="gpu",
                            supported=_kernel_check(pallas_gpu_chunked)),
    pallas_tpu_chunked=Form(pallas_tpu_chunked.linear_transformer, chunked=True, backend="tpu",
                            supported=_kernel_check(pallas_tpu_chunked)),
    recurrent=reference.recurrent,
)


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
      implementation: None (the best available) or one of `FORMS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(o [B, T, H, V] in the input dtype, final State in float32)`. No `1/sqrt(d)` scale:
      that belongs to the layer.
    """
    return dispatch("linear_transformer", FORMS, implementation, (q, k, v), initial_state=initial_state,
                    chunk_size=chunk_size, normalize=normalize, eps=eps)
