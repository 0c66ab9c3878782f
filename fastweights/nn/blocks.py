"""Residual blocks: a sequence-mixing sublayer (fast weights, softmax attention or LSTM)
followed by a feed-forward sublayer, with the three residual wirings of the official code.

    "pre_ln"     h = x + Drop(M(LN1 x));          out = h + FF(LN2 h)
    "post_ln"    h = LN1(x + Drop(M(x)));         out = LN2(h + FF(h))
    "lm_pre_ln"  h = LN1 x + Drop(M(LN1 x));      out = h + FF(LN2 h)
                 (the LM code overwrites its input with LN1 x, PAPER_SPEC 3.1; its softmax
                 attention instead keeps x as the residual and takes queries from the raw x:
                 h = x + Drop(Attn(queries from x, keys/values from LN1 x)))
    FF(u) = Drop(W2 Drop(ReLU(W1 u + b1)) + b2)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fastweights.nn.attention import SoftmaxAttention
from fastweights.nn.common import LayerNorm, Linear
from fastweights.nn.config import LayerConfig, resolve_layer
from fastweights.nn.layer import FastWeightLayer
from fastweights.nn.recurrent import LSTM

Array = jax.Array
WIRINGS = ("pre_ln", "post_ln", "lm_pre_ln")


class FeedForward(nnx.Module):
    """`Drop(W2 Drop(ReLU(W1 x + b1)) + b2)` (the official `PositionwiseFF`)."""

    def __init__(self, model_dim: int, ff_dim: int, *, dropout: float, init: str, rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        self.inner = Linear(model_dim, ff_dim, in_axes=("embed",), out_axes=("mlp",), bias=True,
                            init=init, rngs=rngs, param_dtype=param_dtype)
        self.outer = Linear(ff_dim, model_dim, in_axes=("mlp",), out_axes=("embed",), bias=True,
                            init=init, rngs=rngs, param_dtype=param_dtype)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.dropout(self.outer(self.dropout(jax.nn.relu(self.inner(x)))))


class LSTMMixer(nnx.Module):
    """The LM code's LSTM sublayer (`LSTMLayer`, attn_type 90): LSTM -> Drop -> out_proj."""

    def __init__(self, model_dim: int, hidden_dim: int, *, dropout: float, init: str,
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.lstm = LSTM(model_dim, hidden_dim, rngs=rngs, param_dtype=param_dtype)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out_proj = Linear(hidden_dim, model_dim, in_axes=("mlp",), out_axes=("embed",),
                               init=init, rngs=rngs, param_dtype=param_dtype)

    def init_state(self, batch_size: int):
        return self.lstm.init_state(batch_size)

    def __call__(self, x: Array, state=None):
        y, state = self.lstm(x, state)
        return self.out_proj(self.dropout(y)), state


class Block(nnx.Module):
    """One residual block; `init_state(batch_size)` and `(x, state) -> (x, state)`.

    Args:
      layer: the mixing sublayer (`LayerConfig`; `transformer` and `lstm` give the baselines).
      model_dim, num_heads, head_dim, ff_dim: D, H, d and the feed-forward width.
      dropout: after the mixer's output projection and inside the feed-forward sublayer.
      wiring: one of `WIRINGS`.
      attention_layout: "lm" (separate q/kv nets, no biases) or "pytorch" (fused in_proj
        with biases, as `nn.TransformerEncoderLayer`) for the softmax Transformer.
    """

    def __init__(self, layer: LayerConfig, *, model_dim: int, num_heads: int, head_dim: int,
                 ff_dim: int, dropout: float, wiring: str, init: str, rngs: nnx.Rngs,
                 attention_layout: str = "lm", param_dtype=jnp.float32):
        if wiring not in WIRINGS:
            raise ValueError(f"unknown wiring {wiring!r}; valid: {', '.join(WIRINGS)}")
        self.wiring = wiring
        name, options = resolve_layer(layer)
        self.is_attention = name == "transformer"
        if self.is_attention:
            self.mixer = SoftmaxAttention(model_dim, num_heads, head_dim, window=options["window"],
                                          layout=attention_layout, init=init, rngs=rngs,
                                          param_dtype=param_dtype)
        elif name == "lstm":
            self.mixer = LSTMMixer(model_dim, model_dim, dropout=dropout, init=init, rngs=rngs,
                                   param_dtype=param_dtype)
        else:
            self.mixer = FastWeightLayer(layer, model_dim, num_heads, head_dim, dropout=dropout,
                                         init=init, rngs=rngs, param_dtype=param_dtype)
        self.norm1 = LayerNorm(model_dim, init=init, rngs=rngs, param_dtype=param_dtype)
        self.norm2 = LayerNorm(model_dim, init=init, rngs=rngs, param_dtype=param_dtype)
        self.ff = FeedForward(model_dim, ff_dim, dropout=dropout, init=init, rngs=rngs,
                              param_dtype=param_dtype)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def init_state(self, batch_size: int):
        return self.mixer.init_state(batch_size)

    def __call__(self, x: Array, state=None):
        if self.wiring == "post_ln":
            y, state = self.mixer(x, state)
            h = self.norm1(x + self.dropout(y))
            return self.norm2(h + self.ff(h)), state
        u = self.norm1(x)
        if self.wiring == "pre_ln":
            y, state = self.mixer(u, state)
            h = x + self.dropout(y)
        elif self.is_attention:
            y, state = self.mixer(u, state, query_input=x)
            h = x + self.dropout(y)
        else:
            y, state = self.mixer(u, state)
            h = u + self.dropout(y)
        return h + self.ff(self.norm2(h)), state


class BlockStack(nnx.Module):
    """`num_layers` identical blocks; the state is a tuple with one entry per block."""

    def __init__(self, num_layers: int, **block_args):
        self.blocks = nnx.List([Block(**block_args) for _ in range(num_layers)])

    def init_state(self, batch_size: int) -> tuple:
        return tuple(block.init_state(batch_size) for block in self.blocks)

    def __call__(self, x: Array, state: tuple | None = None) -> tuple[Array, tuple]:
        if state is None:
            state = self.init_state(x.shape[0])
        if len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} layer entries, the model has {len(self.blocks)} layers")
        new_state = []
        for block, block_state in zip(self.blocks, state):
            x, block_state = block(x, block_state)
            new_state.append(block_state)
        return x, tuple(new_state)
