"""Delta Delta Net: a fast net whose own weights are programmed by a delta-rule fast net
(Irie et al., NeurIPS 2021, hierarchical FWP; PAPER_SPEC 2.7).

Per head and step t, with q_t, k_t feature-mapped and sum-normalised, beta_t sigmoided and
v_t of width 3d+1:
    W1_t = delta write of (k_t, v_t, beta_t) into W1          W1: [K, 3d+1]
    p_t  = W1_t^T q_t = [q2, k2, v2, b2]                       sizes (d, d, d, 1)
    q2, k2 = sum_norm_eps(elu_p1(.)),  beta2 = sigmoid(b2)
    W2_t = delta write of (k2, v2, beta2) into W2              W2: [d, d]
    o_t  = W2_t^T q2
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import delta_update, read
from fastweights.ops.common.feature_maps import elu_p1, sum_norm
from fastweights.ops.common.sequence import run_recurrent

Array = jax.Array


class State(NamedTuple):
    W: tuple[Array, Array]  # (first level [B, H, K, 3d+1], second level [B, H, d, d])


def second_level_dim(value_dim: int) -> int:
    """`d` from the width `3d + 1` of the first-level values."""
    if value_dim < 4 or (value_dim - 1) % 3:
        raise ValueError(f"delta_delta_net: v must have width 3*d + 1 (d >= 1), got {value_dim}")
    return (value_dim - 1) // 3


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int,
               dtype=jnp.float32) -> State:
    """Zero state for values of width `value_dim = 3d + 1`."""
    d = second_level_dim(value_dim)
    return State(W=(jnp.zeros((batch_size, num_heads, key_dim, value_dim), dtype),
                    jnp.zeros((batch_size, num_heads, d, d), dtype)))


def second_level_inputs(p: Array, eps: float) -> tuple[Array, Array, Array, Array]:
    """The first level's read `p` `[..., 3d+1]` -> the second level's `(q, k, v, beta)`."""
    d = second_level_dim(p.shape[-1])
    q2 = sum_norm(elu_p1(p[..., :d]), eps)
    k2 = sum_norm(elu_p1(p[..., d:2 * d]), eps)
    return q2, k2, p[..., 2 * d:3 * d], jax.nn.sigmoid(p[..., 3 * d])


def step(state: State, q: Array, k: Array, v: Array, beta: Array, *,
         eps: float = 1e-5) -> tuple[State, Array]:
    """One step (see the module docstring). `q, k` `[..., K]`, `v` `[..., 3d+1]`, `beta` `[...]`;
    `eps` is the second level's sum-normalisation epsilon."""
    W1, W2 = state.W
    W1 = delta_update(W1, k, v, beta)
    q2, k2, v2, beta2 = second_level_inputs(read(W1, q), eps)
    W2 = delta_update(W2, k2, v2, beta2)
    return State(W=(W1, W2)), read(W2, q2)


def recurrent(q: Array, k: Array, v: Array, beta: Array, *, eps: float = 1e-5,
              initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `delta_delta_net` for arguments."""
    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["V"], dtype)

    second_level_dim(jnp.shape(v)[-1])  # a clear error before anything else
    return run_recurrent("delta_delta_net", lambda s, *x: step(s, *x, eps=eps),
                         dict(q=q, k=k, v=v, beta=beta),
                         dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"), make_state, initial_state)
