"""Causal softmax attention (the Transformer baseline, PAPER_SPEC 2.1) with a sliding window
and a fixed-size streaming cache, so that a sequence processed in segments or token by token
gives the same outputs as one pass, in constant memory.

Two parameter layouts reproduce the official models' parameter counts:

* `layout="lm"`: the LM code's `MultiHeadAttn` (attn_type 2): `q_net` D -> H*d, `kv_net`
  D -> 2*H*d chunked into [all-K | all-V], `o_net` H*d -> D, no biases.
* `layout="pytorch"`: `torch.nn.MultiheadAttention` inside `nn.TransformerEncoderLayer`
  (algorithmic model 1): fused `in_proj` D -> 3*D (q|k|v) with bias, `out_proj` D -> D with
  bias, H*d = D.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from fastweights.nn.common import Linear, check_init

Array = jax.Array

LAYOUTS = ("lm", "pytorch")

# Masked scores: large and finite, so that a row never becomes all -inf (NaN after softmax);
# every query sees at least its own key, so masked entries always underflow to exactly 0.
_MASK_VALUE = -1e30


def _affine(x: Array, kernel: Array, bias: Array, n_in: int) -> Array:
    """`x @ kernel + bias` over the last `n_in` axes of `x`, in `x`'s dtype; the bias is
    broadcast explicitly (the tests run with rank promotion disabled)."""
    y = jnp.tensordot(x, kernel.astype(x.dtype), axes=n_in)
    return y + bias.astype(x.dtype).reshape((1,) * (y.ndim - bias.ndim) + bias.shape)


class AttentionState(NamedTuple):
    """Streaming cache of one attention layer: the keys and values of the last `window - 1`
    positions, oldest first, and which of those slots hold a real position (the first
    segment of a sequence starts with none)."""

    keys: Array     # [B, window - 1, H, d] float32
    values: Array   # [B, window - 1, H, d] float32
    valid: Array    # [B, window - 1] bool


class SoftmaxAttention(nnx.Module):
    """Causal multi-head softmax attention over at most the `window` most recent positions
    (the query's own position included).

    `__call__(x [B, T, D], state=None, *, query_input=None) -> (y [B, T, D], state)`; the
    queries come from `query_input` (default `x`), the keys and values from `x`. No dropout
    after the output projection and no residual: the block adds those. `dropout_attention`
    drops attention probabilities (PyTorch `MultiheadAttention(dropout=...)`, the LM's
    `dropatt`); it follows `module.train()` / `module.eval()`.

    State (`init_state(B)`, an `AttentionState`): float32 keys and values of the last
    `window - 1` positions and their validity; its size never depends on the sequence length.
    """

    def __init__(self, model_dim: int, num_heads: int, head_dim: int, *, window: int,
                 layout: str = "lm", dropout_attention: float = 0.0, init: str = "lm",
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        check_init(init)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown attention layout {layout!r}; valid: {', '.join(LAYOUTS)}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        if layout == "pytorch" and num_heads * head_dim != model_dim:
            raise ValueError(f"layout 'pytorch' needs num_heads * head_dim == model_dim, got "
                             f"{num_heads} * {head_dim} != {model_dim}")
        if not 0.0 <= dropout_attention < 1.0:
            raise ValueError(f"dropout_attention must be in [0, 1), got {dropout_attention}")
        self.model_dim, self.num_heads, self.head_dim = model_dim, num_heads, head_dim
        self.window, self.layout = window, layout
        D, H, d = model_dim, num_heads, head_dim
        common = dict(init=init, rngs=rngs, param_dtype=param_dtype)
        if layout == "lm":
            self.q_net = Linear(D, (H, d), in_axes=("embed",), out_axes=("heads", "head_dim"),
                                **common)
            # kv_net's 2*H*d outputs are [all-K | all-V], each head-major: exactly (2, H, d).
            self.kv_net = Linear(D, (2, H, d), in_axes=("embed",),
                                 out_axes=("qkv", "heads", "head_dim"), **common)
            self.o_net = Linear((H, d), D, in_axes=("heads", "head_dim"), out_axes=("embed",),
                                **common)
        else:
            # in_proj_weight [3D, D] rows are q|k|v, each head-major: kernel (D, 3, H, d).
            self.in_proj = Linear(D, (3, H, d), in_axes=("embed",),
                                  out_axes=("qkv", "heads", "head_dim"), bias=True, **common)
            self.out_proj = Linear((H, d), D, in_axes=("heads", "head_dim"), out_axes=("embed",),
                                   bias=True, **common)
            if init == "pytorch":
                # nn.MultiheadAttention._reset_parameters: xavier_uniform_ on the [3D, D]
                # in_proj_weight, zero in_proj_bias and out_proj.bias (out_proj.weight keeps
                # the nn.Linear default, as `Linear` already drew it).
                # Drawn flat: partitionable threefry compiles slowly for small rank-4 shapes.
                bound = math.sqrt(6.0 / (D + 3 * D))
                self.in_proj.kernel[...] = jax.random.uniform(
                    rngs.params(), (D * 3 * H * d,), param_dtype, -bound, bound
                ).reshape(D, 3, H, d)
                self.in_proj.bias[...] = jnp.zeros((3, H, d), param_dtype)
                self.out_proj.bias[...] = jnp.zeros((D,), param_dtype)
        self.dropout = nnx.data(nnx.Dropout(dropout_attention, rngs=rngs)
                                if dropout_attention > 0 else None)

    def init_state(self, batch_size: int) -> AttentionState:
        """An empty cache: `keys`/`values` zeros `[B, window-1, H, d]`, `valid` all False."""
        shape = (batch_size, self.window - 1, self.num_heads, self.head_dim)
        return AttentionState(jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32),
                              jnp.zeros(shape[:2], bool))

    def _project(self, x: Array, query_input: Array) -> tuple[Array, Array, Array]:
        """`(q, k, v)`, each `[B, T, H, d]` in the compute dtype."""
        if self.layout == "lm":
            kv = self.kv_net(x)
            return self.q_net(query_input), kv[..., 0, :, :], kv[..., 1, :, :]
        # Queries and keys/values may come from different inputs (the LM pre-LN quirk), so the
        # fused q|k|v kernel is applied in two parts.
        kernel, bias = self.in_proj.kernel[...], self.in_proj.bias[...]
        q = _affine(query_input, kernel[:, 0], bias[0], 1)
        kv = _affine(x, kernel[:, 1:], bias[1:], 1)
        return q, kv[..., 0, :, :], kv[..., 1, :, :]

    def __call__(self, x: Array, state: AttentionState | None = None, *,
                 query_input: Array | None = None) -> tuple[Array, AttentionState]:
        if x.ndim != 3 or x.shape[-1] != self.model_dim:
            raise ValueError(f"SoftmaxAttention expects x [B, T, {self.model_dim}], got {x.shape}")
        query_input = x if query_input is None else query_input
        if query_input.shape != x.shape:
            raise ValueError(f"query_input shape {query_input.shape} != x shape {x.shape}")
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B)
        C = self.window - 1
        if state.keys.shape != (B, C, self.num_heads, self.head_dim) or state.valid.shape != (B, C):
            raise ValueError(f"attention state for window {self.window} and batch {B} must hold "
                             f"keys [{B}, {C}, {self.num_heads}, {self.head_dim}], got "
                             f"{state.keys.shape}")
        q, k, v = self._project(x, query_input)
        # The cache is float32; bf16 keys/values are exactly representable there, so carrying
        # them loses nothing and segments equal one pass in any compute dtype.
        keys = jnp.concatenate([state.keys, k.astype(jnp.float32)], axis=1)     # [B, C+T, H, d]
        values = jnp.concatenate([state.values, v.astype(jnp.float32)], axis=1)
        valid = jnp.concatenate([state.valid, jnp.ones((B, T), bool)], axis=1)  # [B, C+T]
        # Query t sits at index C + t of the concatenation; it sees keys j with
        # C + t - window < j <= C + t that hold a real position.
        qpos = C + jnp.arange(T)[:, None]
        kpos = jnp.arange(C + T)[None, :]
        allowed = (kpos <= qpos) & (kpos > qpos - self.window)                  # [T, C+T]
        mask = allowed[None, None] & valid[:, None, None, :]                    # [B, 1, T, C+T]
        scores = jnp.einsum("bthd,bshd->bhts", q.astype(jnp.float32), keys)
        scores = scores / math.sqrt(self.head_dim)
        scores = jnp.where(mask, scores, _MASK_VALUE)
        probs = jax.nn.softmax(scores, axis=-1)
        if self.dropout is not None:
            probs = self.dropout(probs)
        out = jnp.einsum("bhts,bshd->bthd", probs, values).astype(x.dtype)      # [B, T, H, d]
        if self.layout == "lm":
            y = self.o_net(out)
        else:
            y = _affine(out, self.out_proj.kernel[...], self.out_proj.bias[...], 2)
        new_state = AttentionState(keys[:, T:], values[:, T:], valid[:, T:])
        return y, new_state
