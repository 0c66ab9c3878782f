"""Chunkwise-parallel Delta MLP: two chunked delta-rule passes per fast layer.

Every fast matrix is written from the inputs alone (its keys, values and betas do not depend
on the fast net's activations), so fast layer l can run over the whole sequence once layer
l-1 has: its query `u = sum_norm_eps(elu_p1(LN_l(a_l)))` is pointwise in `a_l`. Exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from fastweights.ops.common.sequence import dtype_policy, prepare_state
from fastweights.ops.delta_mlp.reference import State, check_inputs, fast_hidden, fast_query, init_state
from fastweights.ops.delta_net import chunked as delta_net_chunked
from fastweights.ops.delta_net.reference import State as DeltaNetState

Array = jax.Array


def chunked(q: Array, k: Sequence[Array], v: Sequence[Array], beta: Array, ln_scale: Array,
            ln_bias: Array, *, depth: int | None = None, eps: float = 1e-5, ln_eps: float = 1e-5,
            chunk_size: int | None = None, initial_state: State | None = None) -> tuple[Array, State]:
    """Chunkwise-parallel `delta_mlp`; same arguments and results as `recurrent`."""
    depth, inputs, _, _, n = check_inputs(q, k, v, beta, ln_scale, ln_bias, depth)
    out_dtype, acc = dtype_policy(*inputs.values())
    W = list(prepare_state("delta_mlp", initial_state,
                           init_state(n["B"], n["H"], n["K"], n["F"], depth, acc)).W)
    a = q.astype(acc)
    for layer in range(depth):
        i, j = 2 * layer, 2 * layer + 1
        u = fast_query(a, ln_scale[layer], ln_bias[layer], eps, ln_eps)
        h, first = delta_net_chunked.chunked(u, k[i].astype(acc), v[i].astype(acc), beta[..., i].astype(acc),
                                             chunk_size=chunk_size, initial_state=DeltaNetState(W[i]))
        o, second = delta_net_chunked.chunked(fast_hidden(h, eps), k[j].astype(acc), v[j].astype(acc),
                                              beta[..., j].astype(acc), chunk_size=chunk_size,
                                              initial_state=DeltaNetState(W[j]))
        W[i], W[j] = first.W, second.W
        a = a + o
    return a.astype(out_dtype), State(W=tuple(W))
