"""The Delta MLP as generic code sees it (`fastweights.ops.common.spec`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fastweights.ops.common.spec import LayerSpec, SlowParam, VariantSpec, normal
from fastweights.ops.delta_mlp import api, reference


def example_inputs(draw, n):
    """`key_dim` is the query width d and `value_dim` the fast hidden width f: keys and
    values of widths (d, f, d, f, ...) and (f, d, f, d, ...), betas `[B, T, H, 2*depth]`,
    LayerNorm parameters `[depth, d]`."""
    B, T, H, d, f, depth = n
    k = [draw.mapped(B, T, H, d if i % 2 == 0 else f) for i in range(2 * depth)]
    v = [draw.normal(B, T, H, f if i % 2 == 0 else d) for i in range(2 * depth)]
    ln_scale = draw.normal(depth, d, scale=0.1, loc=1.0)
    return (draw.normal(B, T, H, d), k, v, draw.beta(B, T, H, 2 * depth), ln_scale,
            draw.normal(depth, d, scale=0.1)), {}


def _pieces(layer):
    """`q (d)`, `kv (4 depth (d + f))`, `beta (2 depth)`.

    The official projection is three column blocks, each head-major (`[all q | all kv |
    all beta]`); here the three pieces sit inside each head's columns so that one
    `[D, H, P]` kernel shards on heads: the same function family, parameter count and
    initial distribution (a column permutation of iid entries); porting official weights
    needs that permutation.
    """
    d, f, depth = layer.head_dim, layer.fast_hidden, layer.config.depth
    return (("q", d), ("kv", 4 * depth * (d + f)), ("beta", 2 * depth))


def _split(x, sizes):
    return jnp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=-1)


def _program(layer, p, slow, state):
    d, f, depth = layer.head_dim, layer.fast_hidden, layer.config.depth
    keys, values = jnp.split(p["kv"], 2, axis=-1)
    # Chunks (d, f, d, f, ...) of the keys and (f, d, f, d, ...) of the values; fast layer l
    # uses chunks 2l and 2l+1, so only the first half of each is read (PAPER_SPEC 2.6).
    key_sizes, value_sizes = [d, f] * depth, [f, d] * depth
    k = _split(keys[..., :sum(key_sizes)], key_sizes)
    v = _split(values[..., :sum(value_sizes)], value_sizes)
    return api.delta_mlp(p["q"], [layer.feature_map(kk) for kk in k], v, jax.nn.sigmoid(p["beta"]),
                         slow["ln_scale"], slow["ln_bias"], depth=depth, eps=layer.config.sum_norm_eps,
                         initial_state=state, **layer.core_options())


def _slow_params(layer, init):
    """The inner LayerNorms' `ln_scale`, `ln_bias` `[depth, d]`: ones and zeros, the scale
    with N(0, 0.02) noise under the LM init."""
    shape, axes = (layer.config.depth, layer.head_dim), ("fast_layers", "head_dim")

    def scale(next_key, dtype):
        ones = jnp.ones(shape, dtype)
        return ones + normal(next_key(), shape, 0.02, dtype) if init == "lm" else ones

    return {"ln_scale": SlowParam(shape, axes, scale),
            "ln_bias": SlowParam(shape, axes, lambda next_key, dtype: jnp.zeros(shape, dtype))}


SPEC = VariantSpec(
    "delta_mlp", "Delta MLP", "delta", "residual MLP of delta-rule fast layers (depth L)",
    state=reference.State._fields, function=api.delta_mlp, step=reference.step,
    init_state=reference.init_state, implementations=api.FORMS, example_inputs=example_inputs, time_inputs=4,
    cases=({"depth": 1}, {"depth": 2}), sequence_only_options=("depth",), paper_options={"depth": 1},
    layer=LayerSpec(
        pieces=_pieces, program=_program, slow_params=_slow_params,
        state=lambda layer, batch: reference.init_state(batch, layer.num_heads, layer.head_dim, layer.fast_hidden,
                                                        depth=layer.config.depth),
        sum_norm_eps=1e-5, output_scale=False, options=("depth", "fast_hidden")),
)
