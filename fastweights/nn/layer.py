"""The generic fast-weight layer: one class for every variant, configured by `LayerConfig`.

    x [B, T, D] -> slow projection [B, T, H, P] (the official per-head layout)
      -> feature maps, sum normalisation, sigmoids -> functional core (fastweights.ops)
      -> (optional 1/sqrt(d)) -> output projection [B, T, D]

The variant's `SPEC.layer` (`fastweights.ops.common.spec.LayerSpec`) says everything
variant-specific: the per-head pieces of the slow projection (PAPER_SPEC 1, 2 and 9.12), how
they become the core's inputs, the zero state, any slow parameters besides the projections
(the RDN's recurrent matrices, the Delta MLP's inner LayerNorms) and the official defaults.
`FastWeightLayer.pieces` lists the layout of an instance.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fastweights import registry
from fastweights.ops.common import feature_maps
from fastweights.nn.common import Linear, check_init, param
from fastweights.nn.config import LayerConfig, resolve_layer

Array = jax.Array


class FastWeightLayer(nnx.Module):
    """Every fast-weight variant as a sequence layer with carried state.

    Args:
      config: the variant and its options (`LayerConfig`; `None` fields take the official
        defaults of `config.convention`).
      model_dim, num_heads, head_dim: D, H and d.
      dropout: rate of the extra dropout in front of the output projection of Delta RNN v1
        and Delta LSTM v1 (their official output path); the dropout after the projection
        belongs to the block.
      init: "lm" (N(0, 0.02)) or "pytorch" (U(+-1/sqrt(fan_in))); the RDN's slow recurrent
        weights are N(0, 1/sqrt(d)) in both, as in the official code.
    """

    def __init__(self, config: LayerConfig, model_dim: int, num_heads: int, head_dim: int, *,
                 dropout: float = 0.0, init: str = "lm", rngs: nnx.Rngs, param_dtype=jnp.float32):
        name, options = resolve_layer(config)
        if registry.VARIANTS[name].layer is None:
            raise ValueError(f"{name} is a baseline: use SoftmaxAttention or LSTM, not FastWeightLayer")
        check_init(init)
        self.config = dataclasses.replace(config, variant=name, **options)
        self.num_heads, self.head_dim = num_heads, head_dim
        self.fast_hidden = self.config.fast_hidden or 4 * model_dim // num_heads
        self.pieces = self.spec.layer.pieces(self)
        width = sum(size for _, size in self.pieces)
        self.in_proj = Linear(model_dim, (num_heads, width), in_axes=("embed",),
                              out_axes=("heads", "head_proj"), init=init, rngs=rngs,
                              param_dtype=param_dtype)
        self.out_proj = Linear((num_heads, head_dim), model_dim, in_axes=("heads", "head_dim"),
                               out_axes=("embed",), init=init, rngs=rngs, param_dtype=param_dtype)
        # Delta RNN v1 and Delta LSTM v1: dropout -> out_proj (PAPER_SPEC 2.8).
        self.inner_dropout = nnx.data(nnx.Dropout(dropout, rngs=rngs)
                                      if self.config.version == 1 and dropout > 0 else None)
        specs = self.spec.layer.slow_params(self, init)
        slow = nnx.Dict({n: param(p.init(rngs.params, param_dtype), p.axes) for n, p in specs.items()}) \
            if specs else None
        self.slow = nnx.data(slow)

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def spec(self):
        """The variant's `VariantSpec` (looked up, not stored: module attributes stay plain)."""
        return registry.VARIANTS[self.variant]

    @property
    def key_dim(self) -> int:
        """The queries' and keys' width after the feature map."""
        if self.config.feature_map == "dpfp":
            return 2 * self.config.dpfp_nu * self.head_dim
        return self.head_dim

    def init_state(self, batch_size: int):
        """The zero state of the functional core (`fastweights.ops.<variant>.State`)."""
        return self.spec.layer.state(self, batch_size)

    def feature_map(self, x: Array) -> Array:
        """Queries' and keys' feature map, then the optional sum normalisation."""
        c = self.config
        x = {"elu_p1": feature_maps.elu_p1, "softmax": lambda y: jax.nn.softmax(y, axis=-1),
             "dpfp": lambda y: feature_maps.dpfp(y, c.dpfp_nu)}[c.feature_map](x)
        return feature_maps.sum_norm(x, c.sum_norm_eps) if c.sum_norm else x

    def core_options(self) -> dict:
        options = dict(implementation=self.config.implementation)
        if self.spec.chunkable:
            options["chunk_size"] = self.config.chunk_size
        return options

    def __call__(self, x: Array, state=None) -> tuple[Array, object]:
        """`x [B, T, D]`, `state` (None: zeros) -> `(y [B, T, D], final state)`."""
        if x.ndim != 3:
            raise ValueError(f"{self.variant} layer expects x [batch, time, model_dim], got shape {x.shape}")
        if state is None:
            state = self.init_state(x.shape[0])
        projected = self.in_proj(x)
        splits = jnp.split(projected, np.cumsum([size for _, size in self.pieces])[:-1].tolist(), axis=-1)
        pieces = {piece: part for (piece, _), part in zip(self.pieces, splits)}
        slow = {} if self.slow is None else {n: p[...] for n, p in self.slow.items()}
        out, state = self.spec.layer.program(self, pieces, slow, state)
        if self.config.output_scale:
            out = out * jnp.asarray(self.head_dim ** -0.5, out.dtype)
        if self.inner_dropout is not None:
            out = self.inner_dropout(out)
        return self.out_proj(out), state
