"""Recurrent Delta Net (RDN): a Delta Net whose slow net is recurrent: the previous output
feeds back into the queries, keys, values and write strength (Irie et al., NeurIPS 2021;
PAPER_SPEC 2.10).

Per head and step t, from raw pre-activations (q~, k~, v~, b~), slow recurrent parameters
R_q, R_k, R_v `[D, D]` (stored [e][m], applied as R^T s) and r_b `[D]`:
    s     = tanh(y_{t-1})                        (y_0 = 0, so s_0 = 0)
    q_t   = softmax(q~_t + R_q^T s)
    k_t   = softmax(k~_t + R_k^T s)
    v_t   = v~_t + R_v^T s
    beta_t= sigmoid(b~_t + r_b . s)
    W_t   = delta write of (k_t, v_t, beta_t);   y_t = W_t^T q_t
The output is the raw y_t, which is also the recurrent state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import delta_update, read
from fastweights.ops.common.sequence import check_shapes, run_recurrent

Array = jax.Array


class State(NamedTuple):
    W: Array  # [B, H, D, D] fast weights
    y: Array  # [B, H, D] previous raw output


class Params(NamedTuple):
    """Slow recurrent parameters of the RDN (learned by the slow net's optimiser)."""
    R_q: Array  # [H, D, D]
    R_k: Array  # [H, D, D]
    R_v: Array  # [H, D, D]
    r_b: Array  # [H, D]


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int | None = None,
               dtype=jnp.float32) -> State:
    """Zero state: `W` `[B, H, D, D]`, `y` `[B, H, D]` (the RDN needs key dim = value dim)."""
    dim = key_dim if value_dim is None else value_dim
    if dim != key_dim:
        raise ValueError(f"recurrent_delta_net: key dim must equal value dim, got {key_dim} and {dim}")
    return State(W=jnp.zeros((batch_size, num_heads, dim, dim), dtype),
                 y=jnp.zeros((batch_size, num_heads, dim), dtype))


def init_params(key: Array, num_heads: int, dim: int, dtype=jnp.float32) -> Params:
    """The official initialisation: every entry ~ N(0, std = 1/sqrt(D))."""
    keys = jax.random.split(key, 4)
    std = dim ** -0.5
    mat = lambda kk: std * jax.random.normal(kk, (num_heads, dim, dim), dtype)  # noqa: E731
    return Params(R_q=mat(keys[0]), R_k=mat(keys[1]), R_v=mat(keys[2]),
                  r_b=std * jax.random.normal(keys[3], (num_heads, dim), dtype))


def as_params(params: Params | Mapping[str, Array]) -> Params:
    """Accepts `Params` or a mapping with the keys `R_q, R_k, R_v, r_b`."""
    if isinstance(params, Params):
        return params
    if isinstance(params, Mapping) and set(params) == set(Params._fields):
        return Params(**params)
    raise TypeError(f"recurrent_delta_net: params must be a Params or a mapping with keys "
                    f"{Params._fields}, got {type(params).__name__}"
                    + (f" with keys {sorted(params)}" if isinstance(params, Mapping) else ""))


def step(state: State, q: Array, k: Array, v: Array, beta: Array, *,
         params: Params) -> tuple[State, Array]:
    """One step (see the module docstring). `q, k, v` `[..., D]` and `beta` `[...]` are raw
    pre-activations; the leading axes of `params` (`[H]`) broadcast against `[..., H]`."""
    s = jnp.tanh(state.y)
    q = jax.nn.softmax(q + read(params.R_q, s), axis=-1)
    k = jax.nn.softmax(k + read(params.R_k, s), axis=-1)
    v = v + read(params.R_v, s)
    beta = jax.nn.sigmoid(beta + jnp.einsum("...d,...d->...", params.r_b, s))
    W = delta_update(state.W, k, v, beta)
    y = read(W, q)
    return State(W, y), y


def recurrent(q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
              initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `recurrent_delta_net` for arguments."""
    op = "recurrent_delta_net"
    params = as_params(params)
    inputs = dict(q=q, k=k, v=v, beta=beta)
    layouts = dict(q="BTHK", k="BTHK", v="BTHK", beta="BTH")
    sizes = check_shapes(op, inputs, layouts)
    check_shapes(op, params._asdict(), dict(R_q="HKK", R_k="HKK", R_v="HKK", r_b="HK"),
                 {"H": sizes["H"], "K": sizes["K"]})

    def step_with_params(state, *x):
        return step(state, *x, params=jax.tree.map(lambda p: p.astype(state.W.dtype), params))

    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["K"], dtype)

    return run_recurrent(op, step_with_params, inputs, layouts, make_state, initial_state)
