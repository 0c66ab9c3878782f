"""Building blocks shared by every layer: parameters with logical axis names, the two
initialisation schemes of the official code, `Linear`, `LayerNorm` and `Embedding`.

Logical axis names (`embed`, `heads`, `head_dim`, `mlp`, `vocab`, ...) are attached to every
parameter as Flax sharding metadata (`nnx.get_partition_spec(nnx.state(model))` reads them);
the training code maps them onto a `(data, model)` mesh, with `heads` and `mlp` on `model`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fastweights.ops.common.spec import normal

Array = jax.Array

# "lm": the language-modelling code's `weights_init` (PAPER_SPEC 3.1): Linear and Embedding
#   weights ~ N(0, 0.02), biases 0, LayerNorm weight ~ N(1, 0.02).
# "pytorch": PyTorch defaults (the algorithmic and RL code, PAPER_SPEC 3.3/3.4): Linear
#   weight and bias ~ U(+-1/sqrt(fan_in)), Embedding ~ N(0, 1), LayerNorm weight 1.
INIT_SCHEMES = ("lm", "pytorch")


def check_init(init: str) -> str:
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {init!r}; valid: {', '.join(INIT_SCHEMES)}")
    return init


def param(value: Array, axes: Sequence[str | None]) -> nnx.Param:
    """A parameter carrying one logical axis name per dimension."""
    axes = tuple(axes)
    if len(axes) != value.ndim:
        raise ValueError(f"parameter of shape {value.shape} needs {value.ndim} axis names, got {axes}")
    # eager_sharding=False: the names are metadata here; the trainer shards under its mesh.
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


def logical_axes(module: nnx.Module) -> dict[tuple, tuple]:
    """`{parameter path: logical axis names}` for every parameter of `module`."""
    out = {}
    for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        meta = variable.get_metadata()
        out[tuple(path)] = tuple(meta.get("sharding_names") or meta.get("out_sharding") or ())
    return out


def broadcast_to_rank(a: Array, ndim: int) -> Array:
    """`a` with leading unit axes up to `ndim` (explicit, so it works under
    `jax_numpy_rank_promotion="raise"`)."""
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def uniform(key: Array, shape: Sequence[int], bound: float, dtype) -> Array:
    """U(-bound, bound) of `shape`, drawn flat (compiles faster on CPU than small rank-4
    shapes); with `bound = fan_in ** -0.5` PyTorch's default Linear/Conv initialisation."""
    return jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound).reshape(tuple(shape))


class Linear(nnx.Module):
    """`y[..., *out] = sum_in x[..., *in] W[*in, *out] (+ b[*out])`, with named axes.

    `in_shape`/`out_shape` may have several axes (e.g. `(heads, head_dim)`), so the head
    split of the official `Linear(D, H*P)` is stored as `W [D, H, P]`, head-major as in the
    official code, and sharded along `heads`.
    """

    def __init__(self, in_shape: int | Sequence[int], out_shape: int | Sequence[int], *,
                 in_axes: Sequence[str | None], out_axes: Sequence[str | None], bias: bool = False,
                 init: str = "lm", rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else tuple(out_shape)
        shape = self.in_shape + self.out_shape
        key = rngs.params()
        fan_in = math.prod(self.in_shape)
        if check_init(init) == "lm":
            kernel = normal(key, shape, 0.02, param_dtype)
        else:
            kernel = uniform(key, shape, fan_in ** -0.5, param_dtype)
        self.kernel = param(kernel, tuple(in_axes) + tuple(out_axes))
        bias_value = None
        if bias:
            bias_value = param(jnp.zeros(self.out_shape, param_dtype) if init == "lm" else
                               uniform(rngs.params(), self.out_shape, fan_in ** -0.5, param_dtype),
                               tuple(out_axes))
        self.bias = nnx.data(bias_value)

    def __call__(self, x: Array) -> Array:
        n_in = len(self.in_shape)
        if x.shape[x.ndim - n_in:] != self.in_shape:
            raise ValueError(f"Linear expects inputs ending in {self.in_shape}, got {x.shape}")
        kernel = self.kernel[...].astype(x.dtype)
        y = jnp.tensordot(x, kernel, axes=n_in)
        if self.bias is not None:
            y = y + broadcast_to_rank(self.bias[...].astype(x.dtype), y.ndim)
        return y


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with a learnable scale and shift (eps as PyTorch)."""

    def __init__(self, dim: int, *, axis_name: str | None = "embed", eps: float = 1e-5,
                 init: str = "lm", rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.eps = eps
        scale = jnp.ones((dim,), param_dtype)
        if check_init(init) == "lm":
            scale = scale + 0.02 * jax.random.normal(rngs.params(), (dim,), param_dtype)
        self.scale = param(scale, (axis_name,))
        self.bias = param(jnp.zeros((dim,), param_dtype), (axis_name,))

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)     # statistics in float32 whatever the compute dtype
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        scale, bias = (broadcast_to_rank(p[...], y.ndim) for p in (self.scale, self.bias))
        return (y * scale + bias).astype(x.dtype)


class Embedding(nnx.Module):
    """Token embedding `[vocab, embed]`; out-of-range ids are the caller's to check on the
    host (`check_tokens`), because a JAX gather clamps them silently."""

    def __init__(self, vocab_size: int, dim: int, *, init: str = "lm", rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        self.vocab_size = vocab_size
        std = 0.02 if check_init(init) == "lm" else 1.0
        self.embedding = param(std * jax.random.normal(rngs.params(), (vocab_size, dim), param_dtype),
                               ("vocab", "embed"))

    def __call__(self, tokens: Array, dtype=None) -> Array:
        table = self.embedding[...]
        return jnp.take(table if dtype is None else table.astype(dtype), tokens, axis=0)


def check_tokens(tokens, vocab_size: int, name: str = "tokens") -> None:
    """Raises `ValueError` for token ids outside `[0, vocab_size)`; a no-op under tracing
    (check concrete arrays on the host before they enter a compiled step)."""
    if isinstance(tokens, jax.core.Tracer):
        return
    tokens = np.asarray(tokens)     # on the host, also when called inside a traced function
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"{name} must be integer token ids, got dtype {tokens.dtype}")
    if tokens.size == 0:
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} contain id {bad} outside the vocabulary [0, {vocab_size})")
