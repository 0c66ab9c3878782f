"""Delta RNN: a recurrent fast net whose feed-forward and recurrent fast weights are both
written with the delta rule (Irie et al., NeurIPS 2021; PAPER_SPEC 2.8).

Per head and step t (q, k feature-mapped and sum-normalised, or softmaxed for v1; rk
softmaxed; beta, rbeta sigmoided):
    W_t = delta write of (k_t, v_t, beta_t);      z_t = W_t^T q_t
    R_t = delta write of (rk_t, rv_t, rbeta_t)
    version 2 (default, the paper's "Delta RNN"):
        y_t = R_t^T softmax_eps(y_{t-1}) + z_t     softmax_eps(y_0 = 0) = 1/(V + 1e-6), not 0
    version 1:
        y_t = softmax(R_t^T y_{t-1} + z_t)        y_0 = 0
The output is y_t, which is also the recurrent state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import delta_update, read
from fastweights.ops.common.feature_maps import softmax_eps
from fastweights.ops.common.sequence import run_recurrent

Array = jax.Array

VERSIONS = (1, 2)


class State(NamedTuple):
    W: Array  # [B, H, K, V] feed-forward fast weights
    R: Array  # [B, H, V, V] recurrent fast weights
    y: Array  # [B, H, V] previous output (v2: raw; v1: after the softmax)


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int,
               dtype=jnp.float32) -> State:
    """Zero state: `W` `[B, H, K, V]`, `R` `[B, H, V, V]`, `y` `[B, H, V]`."""
    return State(W=jnp.zeros((batch_size, num_heads, key_dim, value_dim), dtype),
                 R=jnp.zeros((batch_size, num_heads, value_dim, value_dim), dtype),
                 y=jnp.zeros((batch_size, num_heads, value_dim), dtype))


def check_version(version: int) -> int:
    if version not in VERSIONS:
        raise ValueError(f"delta_rnn: version must be one of {VERSIONS}, got {version!r}")
    return version


def step(state: State, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
         rbeta: Array, *, version: int = 2) -> tuple[State, Array]:
    """One step (see the module docstring). `q, k` `[..., K]`; `v, rk, rv` `[..., V]`;
    `beta, rbeta` `[...]`."""
    W = delta_update(state.W, k, v, beta)
    R = delta_update(state.R, rk, rv, rbeta)
    z = read(W, q)
    if version == 2:
        y = read(R, softmax_eps(state.y)) + z
    else:
        y = jax.nn.softmax(read(R, state.y) + z, axis=-1)
    return State(W, R, y), y


def recurrent(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 2, initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `delta_rnn` for arguments."""
    check_version(version)

    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["V"], dtype)

    return run_recurrent(
        "delta_rnn", lambda s, *x: step(s, *x, version=version),
        dict(q=q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta),
        dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH", rk="BTHV", rv="BTHV", rbeta="BTH"),
        make_state, initial_state)
