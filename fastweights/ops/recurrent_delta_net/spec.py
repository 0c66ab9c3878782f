"""The Recurrent Delta Net as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

from fastweights.ops.common.spec import LayerSpec, SlowParam, VariantSpec, normal
from fastweights.ops.recurrent_delta_net import api, reference


def example_inputs(draw, n):
    """Raw pre-activations, and slow recurrent weights drawn as the official code does."""
    B, T, H, K = n.batch, n.time, n.heads, n.key_dim
    std = K ** -0.5
    params = reference.Params(*(draw.normal(H, K, K, scale=std) for _ in range(3)), draw.normal(H, K, scale=std))
    return (draw.normal(B, T, H, K), draw.normal(B, T, H, K), draw.normal(B, T, H, K), draw.normal(B, T, H)), \
        {"params": params}


def _slow_params(layer, init):
    """`R_q, R_k, R_v [H, d, d]`, `r_b [H, d]`, N(0, 1/sqrt(d)) under both init schemes."""
    H, d = layer.num_heads, layer.head_dim
    draw = lambda shape: lambda next_key, dtype: normal(next_key(), shape, d ** -0.5, dtype)  # noqa: E731
    square = SlowParam((H, d, d), ("heads", "head_dim", "head_dim_out"), draw((H, d, d)))
    return {"R_q": square, "R_k": square, "R_v": square,
            "r_b": SlowParam((H, d), ("heads", "head_dim"), draw((H, d)))}


def _program(layer, p, slow, state):
    # The RDN applies its softmaxes inside the recurrence, after the recurrent term.
    return api.recurrent_delta_net(p["q"], p["k"], p["v"], p["beta"][..., 0], params=reference.Params(**slow),
                                   initial_state=state, **layer.core_options())


SPEC = VariantSpec(
    "recurrent_delta_net", "Recurrent Delta Net (RDN)", "recurrent",
    "Delta Net whose q, k, v, beta also get R^T tanh(y_{t-1}) from slow recurrent weights",
    state=reference.State._fields, function=api.recurrent_delta_net, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs,
    equal_key_value_dims=True,
    layer=LayerSpec(
        pieces=lambda layer: (("q", layer.head_dim), ("k", layer.head_dim), ("v", layer.head_dim), ("beta", 1)),
        program=_program, slow_params=_slow_params, feature_map=None, sum_norm=False,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.head_dim, layer.head_dim)),
)
