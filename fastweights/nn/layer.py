"""The generic fast-weight layer: one class for every variant, configured by `LayerConfig`.

    x [B, T, D] -> slow projection [B, T, H, P] (the official per-head layout)
      -> feature maps, sum normalisation, sigmoids -> functional core (fastweights.ops)
      -> (optional 1/sqrt(d)) -> output projection [B, T, D]

Per-head layouts of the slow projection (PAPER_SPEC 1, 2 and 9.12), sizes in units of d:
    linear_transformer   q k v
    delta_net            q k v beta(1)
    recurrent_delta_net  q k v beta(1)                       (+ slow R_q, R_k, R_v, r_b)
    delta_delta_net      q k v(3d+1) beta(1)
    delta_rnn            q k v rk rv beta(1) rbeta(1)
    delta_lstm           (q k v rk rv) x gates (i, u, o), then (beta rbeta) x gates
    delta_mlp            q  kv(4L(d+f))  beta(2L)
The Delta MLP's official projection is three column blocks, each head-major
(`[all q | all kv | all beta]`); here the three pieces sit inside each head's columns so
that one `[D, H, P]` kernel shards on heads. It is the same function family with the
same parameter count, and the same initial distribution (a column permutation of iid
entries); porting official weights needs that permutation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fastweights import ops, registry
from fastweights.ops.common import feature_maps
from fastweights.nn.common import Linear, check_init, normal, param
from fastweights.nn.config import LayerConfig, resolve_layer

Array = jax.Array
_GATES = ("i", "u", "o")


def _layout(name: str, d: int, config: LayerConfig, f: int) -> tuple[tuple[str, int], ...]:
    """`(piece, size)` pairs of one head's slice of the slow projection, in order."""
    if name == "linear_transformer":
        return (("q", d), ("k", d), ("v", d))
    if name in ("delta_net", "recurrent_delta_net"):
        return (("q", d), ("k", d), ("v", d), ("beta", 1))
    if name == "delta_delta_net":
        return (("q", d), ("k", d), ("v", 3 * d + 1), ("beta", 1))
    if name == "delta_rnn":
        return (("q", d), ("k", d), ("v", d), ("rk", d), ("rv", d), ("beta", 1), ("rbeta", 1))
    if name == "delta_lstm":
        return (tuple((f"{p}_{g}", d) for g in _GATES for p in ("q", "k", "v", "rk", "rv"))
                + tuple((f"{p}_{g}", 1) for g in _GATES for p in ("beta", "rbeta")))
    if name == "delta_mlp":
        return (("q", d), ("kv", 4 * config.depth * (d + f)), ("beta", 2 * config.depth))
    raise ValueError(f"{name} has no fast-weight layer")


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
        if registry.VARIANTS[name].family == "baseline":
            raise ValueError(f"{name} is a baseline: use SoftmaxAttention or LSTM, not FastWeightLayer")
        check_init(init)
        self.config = dataclasses.replace(config, variant=name, **options)
        self.num_heads, self.head_dim = num_heads, head_dim
        self.fast_hidden = self.config.fast_hidden or 4 * model_dim // num_heads
        self.layout = _layout(name, head_dim, self.config, self.fast_hidden)
        width = sum(size for _, size in self.layout)
        self.in_proj = Linear(model_dim, (num_heads, width), in_axes=("embed",),
                              out_axes=("heads", "head_proj"), init=init, rngs=rngs,
                              param_dtype=param_dtype)
        self.out_proj = Linear((num_heads, head_dim), model_dim, in_axes=("heads", "head_dim"),
                               out_axes=("embed",), init=init, rngs=rngs, param_dtype=param_dtype)
        # Delta RNN v1 and Delta LSTM v1: dropout -> out_proj (PAPER_SPEC 2.8).
        self.inner_dropout = nnx.data(nnx.Dropout(dropout, rngs=rngs)
                                      if self.config.version == 1 and dropout > 0 else None)
        slow = None
        if name == "recurrent_delta_net":
            std = head_dim ** -0.5
            shape = (num_heads, head_dim, head_dim)
            axes = ("heads", "head_dim", "head_dim_out")
            slow = nnx.Dict({n: param(normal(rngs.params(), shape, std, param_dtype), axes)
                             for n in ("R_q", "R_k", "R_v")})
            slow["r_b"] = param(normal(rngs.params(), shape[:2], std, param_dtype), ("heads", "head_dim"))
        elif name == "delta_mlp":
            shape = (self.config.depth, head_dim)
            scale = jnp.ones(shape, param_dtype)
            if init == "lm":
                scale = scale + normal(rngs.params(), shape, 0.02, param_dtype)
            slow = nnx.Dict(ln_scale=param(scale, ("fast_layers", "head_dim")),
                            ln_bias=param(jnp.zeros(shape, param_dtype), ("fast_layers", "head_dim")))
        self.slow = nnx.data(slow)

    @property
    def variant(self) -> str:
        return self.config.variant

    def _key_dim(self) -> int:
        if self.config.feature_map == "dpfp":
            return 2 * self.config.dpfp_nu * self.head_dim
        return self.head_dim

    def init_state(self, batch_size: int):
        """The zero state of the functional core (`fastweights.ops.<variant>.reference.State`)."""
        reference = registry.VARIANTS[self.variant].module.reference
        d = self.head_dim
        if self.variant == "delta_mlp":
            return reference.init_state(batch_size, self.num_heads, d, self.fast_hidden, depth=self.config.depth)
        value_dim = 3 * d + 1 if self.variant == "delta_delta_net" else d
        return reference.init_state(batch_size, self.num_heads, self._key_dim(), value_dim)

    def feature_map(self, x: Array) -> Array:
        """Queries' and keys' feature map, then the optional sum normalisation."""
        c = self.config
        x = {"elu_p1": feature_maps.elu_p1, "softmax": lambda y: jax.nn.softmax(y, axis=-1),
             "dpfp": lambda y: feature_maps.dpfp(y, c.dpfp_nu)}[c.feature_map](x)
        return feature_maps.sum_norm(x, c.sum_norm_eps) if c.sum_norm else x

    def core_options(self) -> dict:
        options = dict(implementation=self.config.implementation)
        if "chunked" in registry.VARIANTS[self.variant].forms:
            options["chunk_size"] = self.config.chunk_size
        return options

    def __call__(self, x: Array, state=None) -> tuple[Array, object]:
        """`x [B, T, D]`, `state` (None: zeros) -> `(y [B, T, D], final state)`."""
        if x.ndim != 3:
            raise ValueError(f"{self.variant} layer expects x [batch, time, model_dim], got shape {x.shape}")
        if state is None:
            state = self.init_state(x.shape[0])
        projected = self.in_proj(x)
        splits = _split(projected, [size for _, size in self.layout])
        pieces = {piece: part for (piece, _), part in zip(self.layout, splits)}
        out, state = _PROGRAMS[self.variant](self, pieces, state)
        if self.config.output_scale:
            out = out * jnp.asarray(self.head_dim ** -0.5, out.dtype)
        if self.inner_dropout is not None:
            out = self.inner_dropout(out)
        return self.out_proj(out), state


def _split(x: Array, sizes: list[int]) -> list[Array]:
    """Splits the last axis into consecutive pieces of the given (static) sizes."""
    return jnp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=-1)


# One function per variant: slow-net pieces [B, T, H, size] -> the functional core.

def _linear_transformer(layer, p, state):
    return ops.linear_transformer.linear_transformer(
        layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"], normalize=layer.config.normalize,
        initial_state=state, **layer.core_options())


def _delta_net(layer, p, state):
    return ops.delta_net.delta_net(layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"],
                                   jax.nn.sigmoid(p["beta"][..., 0]), initial_state=state,
                                   **layer.core_options())


def _delta_delta_net(layer, p, state):
    return ops.delta_delta_net.delta_delta_net(
        layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"], jax.nn.sigmoid(p["beta"][..., 0]),
        eps=layer.config.sum_norm_eps, initial_state=state, **layer.core_options())


def _delta_mlp(layer, p, state):
    d, f, depth = layer.head_dim, layer.fast_hidden, layer.config.depth
    keys, values = jnp.split(p["kv"], 2, axis=-1)
    # Chunks (d, f, d, f, ...) of the keys and (f, d, f, d, ...) of the values; fast layer l
    # uses chunks 2l and 2l+1, so only the first half of each is read (PAPER_SPEC 2.6).
    key_sizes, value_sizes = [d, f] * depth, [f, d] * depth
    k = _split(keys[..., :sum(key_sizes)], key_sizes)
    v = _split(values[..., :sum(value_sizes)], value_sizes)
    return ops.delta_mlp.delta_mlp(
        p["q"], [layer.feature_map(kk) for kk in k], v, jax.nn.sigmoid(p["beta"]),
        layer.slow["ln_scale"][...], layer.slow["ln_bias"][...], depth=depth,
        eps=layer.config.sum_norm_eps, initial_state=state, **layer.core_options())


def _delta_rnn(layer, p, state):
    softmax = lambda y: jax.nn.softmax(y, axis=-1)  # noqa: E731 (recurrent keys: always softmax)
    return ops.delta_rnn.delta_rnn(
        layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"], jax.nn.sigmoid(p["beta"][..., 0]),
        softmax(p["rk"]), p["rv"], jax.nn.sigmoid(p["rbeta"][..., 0]), version=layer.config.version,
        initial_state=state, **layer.core_options())


def _delta_lstm(layer, p, state):
    gates = lambda piece: jnp.stack([p[f"{piece}_{g}"] for g in _GATES], axis=-2)  # noqa: E731
    scalars = lambda piece: jax.nn.sigmoid(gates(piece)[..., 0])  # noqa: E731
    return ops.delta_lstm.delta_lstm(
        layer.feature_map(gates("q")), layer.feature_map(gates("k")), gates("v"), scalars("beta"),
        jax.nn.softmax(gates("rk"), axis=-1), gates("rv"), scalars("rbeta"),
        version=layer.config.version, initial_state=state, **layer.core_options())


def _recurrent_delta_net(layer, p, state):
    params = ops.recurrent_delta_net.reference.Params(**{n: layer.slow[n][...] for n in ("R_q", "R_k", "R_v", "r_b")})
    return ops.recurrent_delta_net.recurrent_delta_net(
        p["q"], p["k"], p["v"], p["beta"][..., 0], params=params, initial_state=state,
        **layer.core_options())


_PROGRAMS: dict[str, Callable] = {
    "linear_transformer": _linear_transformer, "delta_net": _delta_net, "delta_mlp": _delta_mlp,
    "delta_delta_net": _delta_delta_net, "delta_rnn": _delta_rnn, "delta_lstm": _delta_lstm,
    "recurrent_delta_net": _recurrent_delta_net,
}
