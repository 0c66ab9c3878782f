"""Delta MLP: a deep feed-forward fast net, every fast layer written with the delta rule
(Irie et al., NeurIPS 2021, "deep fast net", official `CudaDeepFastNetLayer`; PAPER_SPEC 2.6).

Per head and step t, with the raw query a_0 = q_t (width d), fast hidden width f, and for
fast layer l = 0 .. depth-1 the keys/values/betas with index 2l (d -> f) and 2l+1 (f -> d):
    u      = sum_norm_eps(elu_p1(LN_l(a_l)))
    W[2l]  = delta write of (k[2l], v[2l], beta[2l]);        h  = W[2l]^T u            (f)
    h'     = sum_norm_eps(elu_p1(h))
    W[2l+1]= delta write of (k[2l+1], v[2l+1], beta[2l+1]);  o  = W[2l+1]^T h'         (d)
    a_{l+1} = a_l + o
The output is a_depth. LN_l is a LayerNorm over d with its own affine parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common.fast_weight import delta_update, read
from fastweights.ops.common.feature_maps import elu_p1, layer_norm, sum_norm
from fastweights.ops.common.sequence import check_shapes, run_recurrent

Array = jax.Array


class State(NamedTuple):
    W: tuple[Array, ...]  # 2*depth fast matrices: W[2l] [B, H, d, f], W[2l+1] [B, H, f, d]


def init_state(batch_size: int, num_heads: int, key_dim: int, value_dim: int, depth: int = 1,
               dtype=jnp.float32) -> State:
    """Zero state for query width `key_dim = d` and fast hidden width `value_dim = f`."""
    shapes = [(key_dim, value_dim), (value_dim, key_dim)] * depth
    return State(W=tuple(jnp.zeros((batch_size, num_heads, *s), dtype) for s in shapes))


def fast_query(a: Array, ln_scale: Array, ln_bias: Array, eps: float, ln_eps: float) -> Array:
    """The query of a fast layer from its input `a` `[..., d]`: `sum_norm_eps(elu_p1(LN(a)))`."""
    return sum_norm(elu_p1(layer_norm(a, ln_scale.astype(a.dtype), ln_bias.astype(a.dtype), ln_eps)), eps)


def fast_hidden(h: Array, eps: float) -> Array:
    """The query of a fast layer's second matrix from the first one's read: `sum_norm_eps(elu_p1(h))`."""
    return sum_norm(elu_p1(h), eps)


def step(state: State, q: Array, k: Sequence[Array], v: Sequence[Array], beta: Array,
         ln_scale: Array, ln_bias: Array, *, eps: float = 1e-5,
         ln_eps: float = 1e-5) -> tuple[State, Array]:
    """One step (see the module docstring). `q` `[..., d]`; `k[i]`, `v[i]` `[..., d or f]`;
    `beta` `[..., 2*depth]`; `ln_scale`, `ln_bias` `[depth, d]`."""
    W = list(state.W)
    a = q
    for layer in range(len(W) // 2):
        i, j = 2 * layer, 2 * layer + 1
        u = fast_query(a, ln_scale[layer], ln_bias[layer], eps, ln_eps)
        W[i] = delta_update(W[i], k[i], v[i], beta[..., i])
        h = fast_hidden(read(W[i], u), eps)
        W[j] = delta_update(W[j], k[j], v[j], beta[..., j])
        a = a + read(W[j], h)
    return State(W=tuple(W)), a


def check_inputs(q, k, v, beta, ln_scale, ln_bias, depth):
    """Validates the Delta MLP inputs; returns `(depth, named inputs, layouts, fixed sizes,
    all letter sizes)`."""
    op = "delta_mlp"
    if not isinstance(k, (list, tuple)) or not isinstance(v, (list, tuple)):
        raise TypeError(f"{op}: k and v must be sequences of 2*depth arrays (one per fast layer)")
    depth = len(k) // 2 if depth is None else depth
    if depth < 1 or len(k) != 2 * depth or len(v) != 2 * depth:
        raise ValueError(f"{op}: depth={depth} needs 2*depth = {2 * depth} key and value arrays, "
                         f"got {len(k)} keys and {len(v)} values")
    names = [f"k[{i}]" for i in range(2 * depth)] + [f"v[{i}]" for i in range(2 * depth)]
    inputs = dict(q=q, **dict(zip(names, (*k, *v))), beta=beta)
    layouts = dict(q="BTHK", beta="BTHM",
                   **{f"k[{i}]": "BTH" + ("K" if i % 2 == 0 else "F") for i in range(2 * depth)},
                   **{f"v[{i}]": "BTH" + ("F" if i % 2 == 0 else "K") for i in range(2 * depth)})
    fixed = {"L": depth, "M": 2 * depth}
    sizes = check_shapes(op, dict(ln_scale=ln_scale, ln_bias=ln_bias),
                         dict(ln_scale="LK", ln_bias="LK"), fixed)
    sizes = check_shapes(op, inputs, layouts, {**fixed, "K": sizes["K"]})
    return depth, inputs, layouts, fixed, sizes


def recurrent(q: Array, k: Sequence[Array], v: Sequence[Array], beta: Array, ln_scale: Array,
              ln_bias: Array, *, depth: int | None = None, eps: float = 1e-5, ln_eps: float = 1e-5,
              initial_state: State | None = None) -> tuple[Array, State]:
    """`lax.scan` of `step` over time. See `delta_mlp` for arguments."""
    depth, inputs, layouts, fixed, _ = check_inputs(q, k, v, beta, ln_scale, ln_bias, depth)

    def step_flat(state, q_t, *rest):
        k_t, v_t, beta_t = rest[:2 * depth], rest[2 * depth:4 * depth], rest[-1]
        return step(state, q_t, k_t, v_t, beta_t, ln_scale, ln_bias, eps=eps, ln_eps=ln_eps)

    def make_state(n, dtype):
        return init_state(n["B"], n["H"], n["K"], n["F"], depth, dtype)

    return run_recurrent("delta_mlp", step_flat, inputs, layouts, make_state, initial_state, fixed=fixed)
