"""Delta LSTM: an LSTM-like fast net with three gates (input, update, output), each with a
feed-forward and a recurrent delta-rule fast weight matrix (Irie et al., NeurIPS 2021;
PAPER_SPEC 2.9).

Inputs carry a gate axis of size 3 right after the heads, in the order (i, u, o). Per head,
step t and gate g (q, k feature-mapped and sum-normalised, rk softmaxed, betas sigmoided):
    W_g = delta write of (k_g, v_g, beta_g);     z_g = W_g^T q_g
    R_g = delta write of (rk_g, rv_g, rbeta_g)   (written before it is read)
    s   = h_{t-1} (v1)  or  softmax_eps(h_{t-1}) (v2-v4; uniform at t = 1, not 0)
    i = sigmoid(R_i^T s + z_i);  o = sigmoid(R_o^T s + z_o)
    u = sigmoid(R_u^T s + z_u)   (v1-v3)   or   R_u^T s + z_u   (v4: no sigmoid)
    c_t = i * u + (1 - i) * c_{t-1}
    h_t = softmax(o * c_t) (v1),  o * c_t (v2, v4),  o * c_t + z_u (v3)
The output is h_t, which is also the recurrent state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import delta_update, read
from fastweights.ops.common.feature_maps import softmax_eps
from fastweights.ops.common.sequence import run_recurrent

Array = jax.Array

VERSIONS = (1, 2, 3, 4)
NUM_GATES = 3  # (input, update, output)


class State(NamedTuple):
    W: Array  # [B, H, 3, K, V] feed-forward fast weights of the gates (i, u, o)
    R: Array  # [B, H, 3, V, V] recurrent fast weights of the gates (i, u, o)
    h: Array  # [B, H, V] previous output
    c: Array  # [B, H, V] cell


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int,
               dtype=jnp.float32) -> State:
    """Zero state: `W` `[B, H, 3, K, V]`, `R` `[B, H, 3, V, V]`, `h`, `c` `[B, H, V]`."""
    lead = (batch_size, num_heads)
    return State(W=jnp.zeros((*lead, NUM_GATES, key_dim, value_dim), dtype),
                 R=jnp.zeros((*lead, NUM_GATES, value_dim, value_dim), dtype),
                 h=jnp.zeros((*lead, value_dim), dtype),
                 c=jnp.zeros((*lead, value_dim), dtype))


def check_version(version: int) -> int:
    if version not in VERSIONS:
        raise ValueError(f"delta_lstm: version must be one of {VERSIONS}, got {version!r}")
    return version


def step(state: State, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
         rbeta: Array, *, version: int = 4) -> tuple[State, Array]:
    """One step (see the module docstring). `q, k` `[..., 3, K]`; `v, rk, rv` `[..., 3, V]`;
    `beta, rbeta` `[..., 3]`."""
    W = delta_update(state.W, k, v, beta)
    R = delta_update(state.R, rk, rv, rbeta)
    z = read(W, q)                                   # [..., 3, V]
    s = state.h if version == 1 else softmax_eps(state.h)
    pre = read(R, s[..., None, :]) + z               # the same s feeds all three gates
    i, o = jax.nn.sigmoid(pre[..., 0, :]), jax.nn.sigmoid(pre[..., 2, :])
    u = pre[..., 1, :] if version == 4 else jax.nn.sigmoid(pre[..., 1, :])
    c = i * u + (1.0 - i) * state.c
    if version == 1:
        h = jax.nn.softmax(o * c, axis=-1)
    elif version == 3:
        h = o * c + z[..., 1, :]
    else:
        h = o * c
    return State(W, R, h, c), h


def recurrent(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 4, initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `delta_lstm` for arguments."""
    check_version(version)

    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["V"], dtype)

    return run_recurrent(
        "delta_lstm", lambda s, *x: step(s, *x, version=version),
        dict(q=q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta),
        dict(q="BTHGK", k="BTHGK", v="BTHGV", beta="BTHG", rk="BTHGV", rv="BTHGV", rbeta="BTHG"),
        make_state, initial_state, fixed={"G": NUM_GATES})
