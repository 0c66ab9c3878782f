"""Chunkwise-parallel sum rule (linear attention, Katharopoulos et al. 2020).

Within a chunk of C steps starting from state (S `[K, V]`, z `[K]`):

    O   = Q S + lower(Q K^T) V             (lower: including the diagonal, write-then-read)
    den = Q z + rowsum(lower(Q K^T)) + eps (normalize=True: O / den)
    S'  = S + K^T V,   z' = z + sum_t k_t

Only the state update runs sequentially over chunks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common.chunking import check_chunk_size, from_chunks, to_chunks
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.linear_transformer.reference import State, init_state

Array = jax.Array
_HIGHEST = jax.lax.Precision.HIGHEST


def chunked(q: Array, k: Array, v: Array, *, normalize: bool = False, eps: float = 1e-5,
            chunk_size: int | None = None, initial_state: State | None = None) -> tuple[Array, State]:
    """Chunkwise-parallel `linear_transformer`; same arguments and results as `recurrent`."""
    op = "linear_transformer"
    chunk_size = check_chunk_size(op, chunk_size)
    n = check_shapes(op, dict(q=q, k=k, v=v), dict(q="BTHK", k="BTHK", v="BTHV"))
    out_dtype, acc = dtype_policy(q, k, v)
    state = prepare_state(op, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc))
    c = min(chunk_size, n["T"])
    qc, kc, vc = (to_chunks(x.astype(acc), c) for x in (q, k, v))        # [B, H, N, C, D]
    attn = jnp.tril(jnp.einsum("...ik,...jk->...ij", qc, kc, precision=_HIGHEST))  # causal, incl. diagonal

    def chunk_step(carry, xs):
        S, z = carry
        q_c, k_c, v_c, a_c = xs
        o = (jnp.einsum("bhck,bhkv->bhcv", q_c, S, precision=_HIGHEST)
             + jnp.einsum("bhij,bhjv->bhiv", a_c, v_c, precision=_HIGHEST))
        if normalize:
            den = jnp.einsum("bhck,bhk->bhc", q_c, z, precision=_HIGHEST) + jnp.sum(a_c, axis=-1)
            o = o / (den + eps)[..., None]
        S = S + jnp.einsum("bhck,bhcv->bhkv", k_c, v_c, precision=_HIGHEST)
        z = z + jnp.sum(k_c, axis=-2)
        return (S, z), o

    xs = tuple(jnp.moveaxis(x, 2, 0) for x in (qc, kc, vc, attn))
    (W, z), o = jax.lax.scan(chunk_step, (state.W, state.z), xs)
    return from_chunks(jnp.moveaxis(o, 0, 2), n["T"]).astype(out_dtype), State(W, z)
