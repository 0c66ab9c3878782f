"""The Delta LSTM as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common.spec import LayerSpec, VariantSpec
from fastweights.ops.delta_lstm import api, reference

GATES = ("i", "u", "o")


def example_inputs(draw, n):
    """The Delta RNN's inputs with a gate axis of size 3 after the heads."""
    B, T, H, K, V, G = n.batch, n.time, n.heads, n.key_dim, n.value_dim, len(GATES)
    return (draw.mapped(B, T, H, G, K), draw.mapped(B, T, H, G, K), draw.normal(B, T, H, G, V),
            draw.beta(B, T, H, G), draw.softmax(B, T, H, G, V), draw.normal(B, T, H, G, V),
            draw.beta(B, T, H, G)), {}


def _pieces(layer):
    """The official 21-piece layout: (q k v rk rv) x gates, then (beta rbeta) x gates."""
    d = layer.head_dim
    return (tuple((f"{p}_{g}", d) for g in GATES for p in ("q", "k", "v", "rk", "rv"))
            + tuple((f"{p}_{g}", 1) for g in GATES for p in ("beta", "rbeta")))


def _program(layer, p, slow, state):
    gates = lambda piece: jnp.stack([p[f"{piece}_{g}"] for g in GATES], axis=-2)  # noqa: E731
    scalars = lambda piece: jax.nn.sigmoid(gates(piece)[..., 0])  # noqa: E731
    return api.delta_lstm(
        layer.feature_map(gates("q")), layer.feature_map(gates("k")), gates("v"), scalars("beta"),
        jax.nn.softmax(gates("rk"), axis=-1), gates("rv"), scalars("rbeta"),
        version=layer.config.version, initial_state=state, **layer.core_options())


SPEC = VariantSpec(
    "delta_lstm", "Delta LSTM", "recurrent",
    "LSTM gates (i, u, o) from delta-rule feed-forward and recurrent fast weights",
    state=reference.State._fields, function=api.delta_lstm, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    cases=tuple({"version": v} for v in (1, 2, 3, 4)), paper_options={"version": 4},
    versions=(1, 2, 3, 4), default_version=4,
    layer=LayerSpec(
        pieces=_pieces, program=_program,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.key_dim, layer.head_dim),
        output_scale=lambda convention, version: version != 1),
)
