"""The Delta RNN as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

import jax

from fastweights.ops.common.spec import LayerSpec, VariantSpec
from fastweights.ops.delta_rnn import api, reference


def example_inputs(draw, n):
    """Mapped queries and keys, softmaxed recurrent keys, normal values, sigmoided betas."""
    B, T, H, K, V = n.batch, n.time, n.heads, n.key_dim, n.value_dim
    return (draw.mapped(B, T, H, K), draw.mapped(B, T, H, K), draw.normal(B, T, H, V), draw.beta(B, T, H),
            draw.softmax(B, T, H, V), draw.normal(B, T, H, V), draw.beta(B, T, H)), {}


def _program(layer, p, slow, state):
    sigmoid = lambda x: jax.nn.sigmoid(x[..., 0])  # noqa: E731
    return api.delta_rnn(  # the recurrent keys always take a softmax
        layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"], sigmoid(p["beta"]),
        jax.nn.softmax(p["rk"], axis=-1), p["rv"], sigmoid(p["rbeta"]), version=layer.config.version,
        initial_state=state, **layer.core_options())


SPEC = VariantSpec(
    "delta_rnn", "Delta RNN", "recurrent",
    "y_t = R_t^T softmax_eps(y_{t-1}) + W_t^T q_t, W and R delta-rule fast weights",
    state=reference.State._fields, function=api.delta_rnn, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    cases=({"version": 1}, {"version": 2}), paper_options={"version": 2},
    versions=(1, 2), default_version=2,
    layer=LayerSpec(
        pieces=lambda layer: (("q", layer.head_dim), ("k", layer.head_dim), ("v", layer.head_dim),
                              ("rk", layer.head_dim), ("rv", layer.head_dim), ("beta", 1), ("rbeta", 1)),
        program=_program,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.key_dim, layer.head_dim),
        # v1 and the RL agent's Delta RNN softmax their queries and keys (PAPER_SPEC 2.8, 9.5).
        feature_map=lambda convention, version: "softmax" if version == 1 or convention == "rl" else "elu_p1",
        output_scale=lambda convention, version: version != 1),
)
