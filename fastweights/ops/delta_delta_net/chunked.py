"""Chunkwise-parallel Delta Delta Net: two chunked delta-rule passes.

The first level's writes depend only on the inputs, so its reads `p_t = W1_t^T q_t` for the
whole sequence are one chunked delta-rule pass; the second level's `(q, k, v, beta)` are
pointwise functions of `p`, so the second level is another. Exact (not an approximation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_delta_net.reference import State, init_state, second_level_dim, second_level_inputs
from fastweights.ops.delta_net import chunked as delta_net_chunked
from fastweights.ops.delta_net.reference import State as DeltaNetState

Array = jax.Array


def chunked(q: Array, k: Array, v: Array, beta: Array, *, eps: float = 1e-5, chunk_size: int | None = None,
            initial_state: State | None = None) -> tuple[Array, State]:
    """Chunkwise-parallel `delta_delta_net`; same arguments and results as `recurrent`."""
    op = "delta_delta_net"
    second_level_dim(jnp.shape(v)[-1])
    n = check_shapes(op, dict(q=q, k=k, v=v, beta=beta), dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"))
    out_dtype, acc = dtype_policy(q, k, v, beta)
    W1, W2 = prepare_state(op, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc)).W
    inputs = [x.astype(acc) for x in (q, k, v, beta)]  # the second level reads float32 p
    p, first = delta_net_chunked.chunked(*inputs, chunk_size=chunk_size, initial_state=DeltaNetState(W1))
    o, second = delta_net_chunked.chunked(*second_level_inputs(p, eps), chunk_size=chunk_size,
                                          initial_state=DeltaNetState(W2))
    return o.astype(out_dtype), State(W=(first.W, second.W))
