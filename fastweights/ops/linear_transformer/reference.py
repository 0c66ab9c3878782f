"""Linear Transformer as a fast weight programmer: the sum update rule
(Katharopoulos et al. 2020; Schlag, Irie, Schmidhuber 2021; PAPER_SPEC 2.2).

Per head and step t, with q_t, k_t already feature-mapped (e.g. ELU+1):
    W_t = W_{t-1} + k_t v_t^T
    z_t = z_{t-1} + k_t                     (running key sum)
    o_t = W_t^T q_t                         (normalize=False)
    o_t = W_t^T q_t / (z_t . q_t + eps)     (normalize=True)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import read, sum_update
from fastweights.ops.common.sequence import run_recurrent

Array = jax.Array


class State(NamedTuple):
    W: Array  # [B, H, K, V] fast weights
    z: Array  # [B, H, K] running sum of keys (the normaliser)


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int,
               dtype=jnp.float32) -> State:
    """Zero state: `W` `[B, H, K, V]`, `z` `[B, H, K]`."""
    return State(W=jnp.zeros((batch_size, num_heads, key_dim, value_dim), dtype),
                 z=jnp.zeros((batch_size, num_heads, key_dim), dtype))


def step(state: State, q: Array, k: Array, v: Array, *, normalize: bool = False,
         eps: float = 1e-5) -> tuple[State, Array]:
    """One step: `W += k v^T; z += k; o = W^T q`, divided by `z . q + eps` if `normalize`.

    Shapes: `q, k` `[..., K]`, `v` `[..., V]`, state `W` `[..., K, V]`, `z` `[..., K]`.
    """
    W = sum_update(state.W, k, v)
    z = state.z + k
    o = read(W, q)
    if normalize:
        o = o / (jnp.sum(z * q, axis=-1, keepdims=True) + eps)
    return State(W, z), o


def recurrent(q: Array, k: Array, v: Array, *, normalize: bool = False, eps: float = 1e-5,
              initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `linear_transformer` for arguments."""
    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["V"], dtype)

    return run_recurrent(
        "linear_transformer", lambda s, *x: step(s, *x, normalize=normalize, eps=eps),
        dict(q=q, k=k, v=v), dict(q="BTHK", k="BTHK", v="BTHV"), make_state, initial_state)
