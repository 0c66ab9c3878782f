"""The Delta Delta Net as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

import jax

from fastweights.ops.common.spec import LayerSpec, VariantSpec
from fastweights.ops.delta_delta_net import api, reference


def example_inputs(draw, n):
    """As the Delta Net's, with values of width `3 * value_dim + 1` (the second level's
    q, k, v and beta)."""
    B, T, H, K, V = n.batch, n.time, n.heads, n.key_dim, n.value_dim
    return (draw.mapped(B, T, H, K), draw.mapped(B, T, H, K), draw.normal(B, T, H, 3 * V + 1),
            draw.beta(B, T, H)), {}


def _program(layer, p, slow, state):
    return api.delta_delta_net(layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"],
                               jax.nn.sigmoid(p["beta"][..., 0]), eps=layer.config.sum_norm_eps,
                               initial_state=state, **layer.core_options())


SPEC = VariantSpec(
    "delta_delta_net", "Delta Delta Net", "delta",
    "a delta-rule fast net programs the (q, k, v, beta) of a second delta-rule fast net",
    state=reference.State._fields, function=api.delta_delta_net, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    layer=LayerSpec(
        pieces=lambda layer: (("q", layer.head_dim), ("k", layer.head_dim), ("v", 3 * layer.head_dim + 1),
                              ("beta", 1)),
        program=_program,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.key_dim, 3 * layer.head_dim + 1),
        sum_norm_eps=1e-5, output_scale=False),
)
