"""Public entry point of the Delta MLP."""

from __future__ import annotations

import functools

from collections.abc import Sequence

import jax

from fastweights.ops.common.sequence import auto_order, select_implementation
from fastweights.ops.delta_mlp import chunked, reference

Array = jax.Array

IMPLEMENTATIONS = {"chunked": chunked.chunked, "recurrent": reference.recurrent}


@functools.partial(jax.jit, static_argnames=("depth", "eps", "ln_eps", "chunk_size", "implementation"))
def delta_mlp(q: Array, k: Sequence[Array], v: Sequence[Array], beta: Array, ln_scale: Array,
              ln_bias: Array, *, depth: int | None = None, eps: float = 1e-5, ln_eps: float = 1e-5,
              initial_state: reference.State | None = None,
              implementation: str | None = None, chunk_size: int | None = None) -> tuple[Array, reference.State]:
    """Deep delta-rule fast net (residual MLP of fast layers), causal.

    Args:
      q: the raw query `[B, T, H, d]` (the input `a_0` of the fast net; no feature map).
      k: `2*depth` key arrays, feature-mapped and sum-normalised: `k[2l]` `[B, T, H, d]`,
        `k[2l+1]` `[B, T, H, f]`.
      v: `2*depth` value arrays: `v[2l]` `[B, T, H, f]`, `v[2l+1]` `[B, T, H, d]`.
      beta: write strengths `[B, T, H, 2*depth]`, already sigmoided.
      ln_scale, ln_bias: affine parameters `[depth, d]` of the LayerNorm in front of each
        fast layer (shared by the heads, as in the official layer).
      depth: number of fast layers; inferred from `len(k)` if None.
      eps: sum-normalisation epsilon of the inner feature maps (official: 1e-5).
      ln_eps: LayerNorm epsilon.
      initial_state: `State(W=(2*depth matrices))`; zeros if None. (The official layer
        ignores carried fast weights; here they are used.)
      implementation: None (the best available) or one of `IMPLEMENTATIONS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(a_depth [B, T, H, d] in the input dtype, final State in float32)`.
    """
    name = select_implementation("delta_mlp", implementation, IMPLEMENTATIONS,
                                 order=auto_order(q.shape[1], q.shape[-1], q.dtype, gpu_kernel_measured=False))
    options = dict(chunk_size=chunk_size) if name == "chunked" else {}
    return IMPLEMENTATIONS[name](q, k, v, beta, ln_scale, ln_bias, depth=depth, eps=eps,
                                 ln_eps=ln_eps, initial_state=initial_state, **options)
