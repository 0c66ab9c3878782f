"""Public entry point of the Delta MLP."""

from __future__ import annotations

import functools

from collections.abc import Sequence

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.delta_mlp import chunked, reference

Array = jax.Array

FORMS = make_forms(chunked=Form(chunked.chunked, chunked=True), recurrent=reference.recurrent)


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
      implementation: None (the best available) or one of `FORMS`.
      chunk_size: steps per chunk of the chunked forms (any T: the last chunk is padded);
        None: 32 on CPU, 64 elsewhere (measured, BENCHMARKS.md).

    Returns:
      `(a_depth [B, T, H, d] in the input dtype, final State in float32)`.
    """
    return dispatch("delta_mlp", FORMS, implementation, (q, k, v, beta, ln_scale, ln_bias), initial_state=initial_state,
                    chunk_size=chunk_size, depth=depth, eps=eps, ln_eps=ln_eps)
