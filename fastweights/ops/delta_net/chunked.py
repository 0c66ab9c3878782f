"""Chunkwise-parallel delta rule (the WY/UT representation of Yang et al., NeurIPS 2024).

Within a chunk of C steps starting from state S (`[K, V]`), write `u_t = beta_t (v_t - S_{t-1}^T k_t)`
for the value actually added, so that `S_t = S + sum_{i<=t} k_i u_i^T`. Then

    u_t = beta_t (v_t - S^T k_t) - beta_t sum_{i<t} (k_i . k_t) u_i
    (I + diag(beta) L) U = diag(beta) (V - K S),       L = strictly-lower(K K^T)

so with the unit-lower-triangular solve `T^-1 = (I + diag(beta) L)^-1`:

    U   = T^-1 diag(beta) V - (T^-1 diag(beta) K) S     (both T^-1 products: all chunks at once)
    O   = Q S + lower(Q K^T) U                          (lower: including the diagonal)
    S'  = S + K^T U

Only the last three lines run sequentially over chunks (one `[K, V]` state per chunk).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common.chunking import check_chunk_size, from_chunks, to_chunks, unit_lower_inverse
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_net.reference import State, init_state

Array = jax.Array
_HIGHEST = jax.lax.Precision.HIGHEST


def wy_representation(k: Array, beta: Array, v: Array) -> tuple[Array, Array]:
    """`(T^-1 diag(beta) K, T^-1 diag(beta) V)` per chunk: `k` `[..., C, K]`, `beta` `[..., C]`,
    `v` `[..., C, V]`."""
    gram = jnp.einsum("...ik,...jk->...ij", k, k, precision=_HIGHEST)
    t_inv = unit_lower_inverse(jnp.tril(beta[..., :, None] * gram, -1))
    solve = lambda x: jnp.einsum("...ij,...jd->...id", t_inv, beta[..., None] * x, precision=_HIGHEST)  # noqa: E731
    return solve(k), solve(v)


def chunked(q: Array, k: Array, v: Array, beta: Array, *, chunk_size: int | None = None,
            initial_state: State | None = None) -> tuple[Array, State]:
    """Chunkwise-parallel `delta_net`; same arguments and results as `recurrent`."""
    op = "delta_net"
    chunk_size = check_chunk_size(op, chunk_size)
    n = check_shapes(op, dict(q=q, k=k, v=v, beta=beta), dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"))
    out_dtype, acc = dtype_policy(q, k, v, beta)
    state = prepare_state(op, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc))
    c = min(chunk_size, n["T"])
    qc, kc, vc = (to_chunks(x.astype(acc), c) for x in (q, k, v))        # [B, H, N, C, D]
    bc = to_chunks(beta.astype(acc)[..., None], c)[..., 0]             # [B, H, N, C]
    w, u_v = wy_representation(kc, bc, vc)
    attn = jnp.tril(jnp.einsum("...ik,...jk->...ij", qc, kc, precision=_HIGHEST))  # causal, incl. diagonal

    def chunk_step(S, xs):  # S [B, H, K, V]; per chunk [B, H, C, .]
        q_c, k_c, w_c, u_v_c, a_c = xs
        u = u_v_c - jnp.einsum("bhck,bhkv->bhcv", w_c, S, precision=_HIGHEST)
        o = (jnp.einsum("bhck,bhkv->bhcv", q_c, S, precision=_HIGHEST)
             + jnp.einsum("bhij,bhjv->bhiv", a_c, u, precision=_HIGHEST))
        S = S + jnp.einsum("bhck,bhcv->bhkv", k_c, u, precision=_HIGHEST)
        return S, o

    xs = tuple(jnp.moveaxis(x, 2, 0) for x in (qc, kc, w, u_v, attn))   # chunks first
    W, o = jax.lax.scan(chunk_step, state.W, xs)
    return from_chunks(jnp.moveaxis(o, 0, 2), n["T"]).astype(out_dtype), State(W)
