"""The Delta Net as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

import jax

from fastweights.ops.common.spec import LayerSpec, VariantSpec
from fastweights.ops.delta_net import api, reference


def example_inputs(draw, n):
    """Mapped (ELU+1, sum-normalised) queries and keys, normal values, sigmoided betas."""
    B, T, H, K, V = n.batch, n.time, n.heads, n.key_dim, n.value_dim
    return (draw.mapped(B, T, H, K), draw.mapped(B, T, H, K), draw.normal(B, T, H, V), draw.beta(B, T, H)), {}


def _program(layer, p, slow, state):
    return api.delta_net(layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"],
                         jax.nn.sigmoid(p["beta"][..., 0]), initial_state=state, **layer.core_options())


SPEC = VariantSpec(
    "delta_net", "Delta Net", "delta", "W += k (beta (v - W^T k))^T; o = W^T q",
    state=reference.State._fields, function=api.delta_net, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    layer=LayerSpec(
        pieces=lambda layer: (("q", layer.head_dim), ("k", layer.head_dim), ("v", layer.head_dim), ("beta", 1)),
        program=_program,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.key_dim, layer.head_dim)),
)
