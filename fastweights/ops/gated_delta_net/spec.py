"""The Gated Delta Net as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fastweights.ops.common.spec import LayerSpec, SlowParam, VariantSpec
from fastweights.ops.gated_delta_net import api, reference


def example_inputs(draw, n):
    """The Delta Net's inputs and log decays `g = -softplus(4 x - 1)`, x ~ N(0, 1): from no
    decay to strong (`exp(g)` below 1e-4 for x > 2.6), so that every generic test also sees
    decays that accumulate to `exp(-50)` and less within a chunk."""
    B, T, H, K, V = n.batch, n.time, n.heads, n.key_dim, n.value_dim
    q, k, v, beta = (draw.mapped(B, T, H, K), draw.mapped(B, T, H, K), draw.normal(B, T, H, V),
                     draw.beta(B, T, H))
    return (q, k, v, beta, draw.array(-np.logaddexp(0.0, 4.0 * draw.raw(B, T, H) - 1.0))), {}


def _per_head(x):
    return x.reshape(1, 1, -1)  # [H] -> [1, 1, H], against [B, T, H]


def _program(layer, p, slow, state):
    # The decay of FLA's GatedDeltaNet layer: g = -exp(A_log) * softplus(W_a x + dt_bias).
    g = -jnp.exp(_per_head(slow["A_log"])) * jax.nn.softplus(p["a"][..., 0] + _per_head(slow["dt_bias"]))
    return api.gated_delta_net(layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"],
                               jax.nn.sigmoid(p["beta"][..., 0]), g, initial_state=state, **layer.core_options())


def _slow_params(layer, init):
    """Per head, as FLA's layer (and Mamba2) initialise them: `A ~ U(1, 16)` stored as
    `A_log`, and `dt_bias` the inverse softplus of `dt = exp(U(log 1e-3, log 0.1))` (>= 1e-4)."""
    H = layer.num_heads

    def a_log(next_key, dtype):
        return jnp.log(jax.random.uniform(next_key(), (H,), dtype, 1.0, 16.0))

    def dt_bias(next_key, dtype):
        log_dt = jax.random.uniform(next_key(), (H,), dtype, math.log(1e-3), math.log(0.1))
        dt = jnp.maximum(jnp.exp(log_dt), 1e-4)
        return dt + jnp.log(-jnp.expm1(-dt))

    return {"A_log": SlowParam((H,), ("heads",), a_log), "dt_bias": SlowParam((H,), ("heads",), dt_bias)}


SPEC = VariantSpec(
    "gated_delta_net", "Gated Delta Net", "delta",
    "W = a (W - beta k (k^T W)) + beta k v^T, a = exp(g) a per-head decay; o = W^T q",
    state=reference.State._fields, function=api.gated_delta_net, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    layer=LayerSpec(
        pieces=lambda layer: (("q", layer.head_dim), ("k", layer.head_dim), ("v", layer.head_dim), ("beta", 1),
                              ("a", 1)),
        program=_program, slow_params=_slow_params,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.key_dim, layer.head_dim)),
)
