"""Delta Net: the delta update rule (Schlag, Irie, Schmidhuber, ICML 2021; PAPER_SPEC 2.4).

Per head and step t, with q_t, k_t already feature-mapped and sum-normalised and
beta_t in (0, 1) (already sigmoided):
    v_old = W_{t-1}^T k_t
    W_t   = W_{t-1} + k_t (beta_t (v_t - v_old))^T
    o_t   = W_t^T q_t            (the step's own write is visible to its read)
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


def step(state: State, q: Array, k: Array, v: Array, beta: Array) -> tuple[State, Array]:
    """One step: delta write of `(k, v, beta)` into `W`, then `o = W^T q`.

    Shapes: `q, k` `[..., K]`, `v` `[..., V]`, `beta` `[...]`, state `W` `[..., K, V]`.
    """
    W = delta_update(state.W, k, v, beta)
    return State(W), read(W, q)


def recurrent(q: Array, k: Array, v: Array, beta: Array, *,
              initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `delta_net` for arguments."""
    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["V"], dtype)

    return run_recurrent("delta_net", step, dict(q=q, k=k, v=v, beta=beta),
                         dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"), make_state, initial_state)
