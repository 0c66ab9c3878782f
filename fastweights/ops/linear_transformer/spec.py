"""The Linear Transformer as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

from fastweights.ops.common.spec import LayerSpec, VariantSpec
from fastweights.ops.linear_transformer import api, reference


def example_inputs(draw, n):
    """ELU+1 queries and keys (not normalised: the layer's default), normal values."""
    B, T, H, K, V = n.batch, n.time, n.heads, n.key_dim, n.value_dim
    return (draw.positive(B, T, H, K), draw.positive(B, T, H, K), draw.normal(B, T, H, V)), {}


def _program(layer, p, slow, state):
    return api.linear_transformer(layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"],
                                  normalize=layer.config.normalize, initial_state=state, **layer.core_options())


SPEC = VariantSpec(
    "linear_transformer", "Linear Transformer", "sum",
    "W += k v^T; o = W^T q (optionally / z.q, z the running key sum)",
    state=reference.State._fields, function=api.linear_transformer, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    cases=({}, {"normalize": True}), paper_options={"normalize": False},
    layer=LayerSpec(
        pieces=lambda layer: (("q", layer.head_dim), ("k", layer.head_dim), ("v", layer.head_dim)),
        program=_program,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.key_dim, layer.head_dim),
        sum_norm=False, options=("normalize",)),
)
