"""Chunkwise-parallel sum rule (linear attention, Katharopoulos et al. 2020).

Within a chunk of C steps starting from state (S `[K, V]`, z `[K]`):

    O   = Q S + lower(Q K^T) V             (lower: including the diagonal, write-then-read)
    den = Q z + rowsum(lower(Q K^T)) + eps (normalize=True: O / den)
    S'  = S + K^T V,   z' = z + sum_t k_t

The normaliser is one more value column: with `[V | 1]` as values and `[S | z]` as state,
the last output column is `den - eps`. So this is the delta rule's chunk scan
(`chunking.chunk_scan`) without its delta term; on CPU the batch runs in groups.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common.chunking import (batch_group_size, causal_scores, check_chunk_size, chunk_scan,
                                             from_chunks, map_batch_groups, to_chunks)
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.linear_transformer.reference import State, init_state

Array = jax.Array


def _chunked(q: Array, k: Array, v: Array, state: Array, chunk_size: int) -> tuple[Array, Array]:
    qc, kc, vc = (to_chunks(x, chunk_size) for x in (q, k, v))        # [N, B, H, C, D]
    o, state = chunk_scan(qc, kc, None, vc, causal_scores(qc, kc), state)
    return from_chunks(o, q.shape[1]), state


def chunked(q: Array, k: Array, v: Array, *, normalize: bool = False, eps: float = 1e-5,
            chunk_size: int | None = None, initial_state: State | None = None,
            batch_group: int | None = None) -> tuple[Array, State]:
    """Chunkwise-parallel `linear_transformer`; same arguments and results as `recurrent`.
    `batch_group`: as in `delta_net.chunked.chunked` (speed only)."""
    op = "linear_transformer"
    chunk_size = check_chunk_size(op, chunk_size)
    n = check_shapes(op, dict(q=q, k=k, v=v), dict(q="BTHK", k="BTHK", v="BTHV"))
    out_dtype, acc = dtype_policy(q, k, v)
    state = prepare_state(op, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc))
    q, k, v = (x.astype(acc) for x in (q, k, v))
    W = state.W
    if normalize:
        v = jnp.concatenate([v, jnp.ones_like(v[..., :1])], axis=-1)
        W = jnp.concatenate([W, state.z[..., None]], axis=-1)
    c = min(chunk_size, n["T"])
    group = batch_group_size(n["B"], n["T"] * n["H"] * max(n["K"], n["V"]), batch_group)
    o, W = map_batch_groups(lambda *a: _chunked(*a, chunk_size=c), group, q, k, v, W)
    if not normalize:
        return o.astype(out_dtype), State(W, state.z + jnp.sum(k, axis=1))
    o = o[..., :-1] / (o[..., -1:] + eps)
    return o.astype(out_dtype), State(W[..., :-1], W[..., -1])
