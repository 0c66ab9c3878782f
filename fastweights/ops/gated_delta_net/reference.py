"""Gated Delta Net: the delta rule with a per-step decay (Yang, Kautz, Hatamizadeh, ICLR 2025).

Per head and step t, with q_t, k_t already feature-mapped and normalised, beta_t in (0, 1)
(already sigmoided) and the log decay g_t <= 0, a_t = exp(g_t):
    S     = a_t W_{t-1}                   decay first,
    v_old = S^T k_t                       then the delta rule reads the decayed state,
    W_t   = S + k_t (beta_t (v_t - v_old))^T
    o_t   = W_t^T q_t                     (the step's own write is visible to its read)
i.e. W_t = a_t (I - beta_t k_t k_t^T) W_{t-1} + beta_t k_t v_t^T, the paper's
S_t = S_{t-1} (a_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T in our [key, value] layout.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import delta_update, read
from fastweights.ops.common.sequence import run_recurrent

Array = jax.Array


class State(NamedTuple):
    W: Array  # [B, H, K, V] fast weights


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int,
               dtype=jnp.float32) -> State:
    """Zero state: `W` `[B, H, K, V]`."""
    return State(W=jnp.zeros((batch_size, num_heads, key_dim, value_dim), dtype))


def step(state: State, q: Array, k: Array, v: Array, beta: Array, g: Array) -> tuple[State, Array]:
    """One step: decay `W` by `exp(g)`, then the delta write of `(k, v, beta)` into the
    decayed `W` (its read `W^T k` sees the decay), then `o = W^T q`. The order of the
    paper's recurrence and of flash-linear-attention's reference loop.

    Shapes: `q, k` `[..., K]`, `v` `[..., V]`, `beta, g` `[...]`, state `W` `[..., K, V]`.
    """
    W = delta_update(jnp.exp(g)[..., None, None] * state.W, k, v, beta)
    return State(W), read(W, q)


def recurrent(q: Array, k: Array, v: Array, beta: Array, g: Array, *,
              initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `gated_delta_net` for arguments."""
    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["V"], dtype)

    return run_recurrent("gated_delta_net", step, dict(q=q, k=k, v=v, beta=beta, g=g),
                         dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH", g="BTH"), make_state, initial_state)
