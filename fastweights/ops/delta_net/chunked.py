"""Chunkwise-parallel delta rule (the WY/UT representation of Yang et al., NeurIPS 2024).

Within a chunk of C steps starting from state S (`[K, V]`), write `u_t = beta_t (v_t - S_{t-1}^T k_t)`
for the value actually added, so that `S_t = S + sum_{i<=t} k_i u_i^T`. Then

    u_t = beta_t (v_t - S^T k_t) - beta_t sum_{i<t} (k_i . k_t) u_i
    (I + diag(beta) L) U = diag(beta) (V - K S),       L = strictly-lower(K K^T)

so with the unit-lower-triangular solve `T^-1 = (I + diag(beta) L)^-1`:

    U   = T^-1 diag(beta) V - (T^-1 diag(beta) K) S     (both T^-1 products: all chunks at once)
    O   = Q S + lower(Q K^T) U                          (lower: including the diagonal)
    S'  = S + K^T U

Only the products with S run sequentially over chunks (`chunking.chunk_scan`, one `[K, V]`
state per chunk). Both the WY transform and the chunk scan have hand-written backward
passes, and on CPU the batch runs in groups (`chunking.map_batch_groups`) so that every
intermediate stays the size of one group.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common.chunking import (batch_group_size, causal_scores, check_chunk_size, chunk_scan,
                                             einsum, from_chunks, map_batch_groups, to_chunks,
                                             unit_lower_inverse)
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_net.reference import State, init_state

Array = jax.Array


@jax.custom_vjp
def wy_representation(k: Array, beta: Array, v: Array) -> tuple[Array, Array]:
    """`(T^-1 diag(beta) K, T^-1 diag(beta) V)` per chunk: `k` `[..., C, K]`, `beta` `[..., C]`,
    `v` `[..., C, V]`."""
    return _wy_fwd(k, beta, v)[0]


def _wy_fwd(k, beta, v):
    gram = einsum("...ik,...jk->...ij", k, k)
    t_inv = unit_lower_inverse(jnp.tril(beta[..., :, None] * gram, -1))
    w = einsum("...ij,...jd->...id", t_inv, beta[..., None] * k)
    u = einsum("...ij,...jd->...id", t_inv, beta[..., None] * v)
    return (w, u), (k, beta, v, t_inv, w, u)


def _wy_bwd(residuals, grads):
    k, beta, v, t_inv, w, u = residuals
    d_w, d_u = grads
    d_bk = einsum("...ji,...jd->...id", t_inv, d_w)    # gradients of diag(beta) K and diag(beta) V
    d_bv = einsum("...ji,...jd->...id", t_inv, d_u)
    # M = I + A, T^-1 = M^-1: dA = -T^-T dT^-1 T^-T = -(T^-T dW)(T^-1 bK)^T - ..., strictly lower.
    d_a = -jnp.tril(einsum("...id,...jd->...ij", d_bk, w) + einsum("...id,...jd->...ij", d_bv, u), -1)
    gram = einsum("...ik,...jk->...ij", k, k)          # recomputed: cheaper than keeping it
    d_gram = beta[..., :, None] * d_a
    d_k = einsum("...ij,...jk->...ik", d_gram + jnp.swapaxes(d_gram, -1, -2), k) + beta[..., None] * d_bk
    d_beta = jnp.sum(d_a * gram, -1) + jnp.sum(d_bk * k, -1) + jnp.sum(d_bv * v, -1)
    return d_k, d_beta, beta[..., None] * d_bv


wy_representation.defvjp(_wy_fwd, _wy_bwd)


def _chunked(q: Array, k: Array, v: Array, beta: Array, state: Array, chunk_size: int) -> tuple[Array, Array]:
    qc, kc, vc = (to_chunks(x, chunk_size) for x in (q, k, v))        # [N, B, H, C, D]
    bc = to_chunks(beta[..., None], chunk_size)[..., 0]                # [N, B, H, C]
    w, u = wy_representation(kc, bc, vc)
    attn = causal_scores(qc, kc)
    o, state = chunk_scan(qc, kc, w, u, attn, state)
    return from_chunks(o, q.shape[1]), state


def chunked(q: Array, k: Array, v: Array, beta: Array, *, chunk_size: int | None = None,
            initial_state: State | None = None, batch_group: int | None = None) -> tuple[Array, State]:
    """Chunkwise-parallel `delta_net`; same arguments and results as `recurrent`.

    `batch_group`: batch elements run together (`chunking.batch_group_size`); None: about
    1 MiB per input array on a single CPU device, else the whole batch. Speed only.
    """
    op = "delta_net"
    chunk_size = check_chunk_size(op, chunk_size)
    n = check_shapes(op, dict(q=q, k=k, v=v, beta=beta), dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"))
    out_dtype, acc = dtype_policy(q, k, v, beta)
    state = prepare_state(op, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc))
    c = min(chunk_size, n["T"])
    group = batch_group_size(n["B"], n["T"] * n["H"] * max(n["K"], n["V"]), batch_group)
    o, W = map_batch_groups(lambda *a: _chunked(*a, chunk_size=c), group,
                            *(x.astype(acc) for x in (q, k, v, beta)), state.W)
    return o.astype(out_dtype), State(W)
