"""Models: the language model, the algorithmic-task sequence model and the RL core.

Every model has `init_state(batch_size)` and `__call__(inputs, state=None) -> (out, state)`;
running a sequence in segments or token by token with the state carried equals one pass.
Dropout follows `model.train()` / `model.eval()` (NNX), and draws from the `dropout` stream
of the `rngs` the model was built with.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from fastweights.nn import positional, sampling
from fastweights.nn.blocks import BlockStack
from fastweights.nn.common import Embedding, LayerNorm, Linear, check_tokens
from fastweights.nn.config import LMConfig, RLCoreConfig, SequenceConfig, resolve_layer
from fastweights.nn.output import AdaptiveSoftmax, Softmax
from fastweights.nn.recurrent import LSTM

Array = jax.Array


class ModelState(NamedTuple):
    position: Array     # [] int32: absolute position of the next input (positional encodings)
    layers: tuple       # one state per layer


def _block_args(config, layer, **extra) -> dict:
    return dict(num_layers=config.num_layers, layer=layer, model_dim=config.model_dim,
                num_heads=config.num_heads, head_dim=config.head_dim, ff_dim=config.ff_dim,
                dropout=config.dropout, init=config.init, **extra)


def _start(model, tokens: Array, state: ModelState | None, vocab_size: int) -> ModelState:
    """Checks a call's tokens and state; a fresh state when `state` is None."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, time], got shape {tokens.shape}")
    check_tokens(tokens, vocab_size)
    if state is None:
        return model.init_state(tokens.shape[0])
    if not isinstance(state, ModelState):
        raise TypeError(f"state must be the ModelState returned by init_state or a call, got {type(state).__name__}")
    if len(state.layers) != model.config.num_layers:
        raise ValueError(f"state has {len(state.layers)} layer entries, the model has {model.config.num_layers}")
    return state


class LanguageModel(nnx.Module):
    """Embedding x sqrt(D) (+ positional encoding) -> dropout -> blocks -> dropout -> output
    (PAPER_SPEC 3.1; no final LayerNorm).

    `__call__(tokens [B, T], state)` returns the final hidden states `[B, T, D]`; turn them
    into `log_probs` `[B, T, V]` or a per-token `nll` `[B, T]` with the output layer.
    """

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.config = config
        positional.positions(config.positional, jnp.int32(0), 1, config.positional_span)  # validates
        self.embed = Embedding(config.vocab_size, config.model_dim, init=config.init, rngs=rngs,
                               param_dtype=param_dtype)
        self.layers = BlockStack(**_block_args(config, config.layer, wiring=config.wiring,
                                               rngs=rngs, param_dtype=param_dtype))
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
        tied = self.embed if config.tie_weights else None
        if config.output == "adaptive":
            if not config.tie_weights:
                raise ValueError("output='adaptive' is implemented with tied weights only (as the official code)")
            self.output = AdaptiveSoftmax(self.embed, config.cutoffs, init=config.init,
                                          tail_capacity=config.tail_capacity, rngs=rngs,
                                          param_dtype=param_dtype)
        elif config.output == "softmax":
            self.output = Softmax(config.vocab_size, config.model_dim, embedding=tied, init=config.init,
                                  rngs=rngs, param_dtype=param_dtype)
        else:
            raise ValueError(f"unknown output {config.output!r}; valid: adaptive, softmax")

    def init_state(self, batch_size: int) -> ModelState:
        return ModelState(jnp.zeros((), jnp.int32), self.layers.init_state(batch_size))

    def segment_state(self, batch_size: int, length: int) -> ModelState:
        """The zero state of an independent `length`-token segment, positioned as the
        official code's fresh call: descending positions `length-1, ..., 0` also for a
        segment shorter than `positional_span` (a split's last one). Equal to
        `init_state` for a full-span segment or without positional encoding."""
        state = self.init_state(batch_size)
        if self.config.positional == "descending" and self.config.positional_span is not None:
            state = state._replace(position=jnp.int32(self.config.positional_span - length))
        return state

    def __call__(self, tokens: Array, state: ModelState | None = None) -> tuple[Array, ModelState]:
        """`tokens [B, T]` int -> `(hidden [B, T, D], state)`."""
        state = _start(self, tokens, state, self.config.vocab_size)
        x, layers = self.layers(self.dropout(self.embed_inputs(tokens, state.position)), state.layers)
        return self.dropout(x), ModelState(state.position + tokens.shape[1], layers)

    def embed_inputs(self, tokens: Array, position: Array) -> Array:
        """`embedding(tokens) * sqrt(D)` plus the positional encoding of a segment that
        starts at absolute `position` -> `[B, T, D]` (before dropout)."""
        x = self.embed(tokens) * jnp.sqrt(jnp.float32(self.config.model_dim))
        pos = positional.positions(self.config.positional, position, tokens.shape[1],
                                   self.config.positional_span)
        return x if pos is None else x + positional.concatenated_sinusoid(pos, self.config.model_dim)[None]

    def log_probs(self, hidden: Array) -> Array:
        """`[..., D]` -> `[..., V]` float32 log-probabilities."""
        return self.output.log_probs(hidden)

    def nll(self, hidden: Array, targets: Array) -> Array:
        """Per-position negative log-likelihood `[...]` of `targets [...]`."""
        return self.output.nll(hidden, targets)

    def generate(self, prompt: Array, num_tokens: int, *, key: Array, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 state: ModelState | None = None) -> tuple[Array, ModelState]:
        """Samples `num_tokens` tokens after `prompt [B, T0]` -> `([B, num_tokens], state)`.

        One compiled loop (`lax.scan`) over single-token steps with the state carried, so
        memory does not grow with the number of tokens. Samples in eval mode (no dropout)
        without changing the mode of `self`. Each token is drawn by `sampling.sample`
        (`temperature=0`: the most likely token; `top_k`, `top_p`: see there) with the key
        `sampling.token_key(key, n)` for the n-th token, as `fastweights.lm.stream` does.
        The returned state has consumed the prompt and all but the last generated token.
        """
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        temperature, top_k, top_p = sampling.check_sampling(temperature, top_k, top_p)
        check_tokens(prompt, self.config.vocab_size, "prompt")
        state = self.init_state(prompt.shape[0]) if state is None else state
        graphdef, params = nnx.split(self)
        return _generate(graphdef, params, prompt, state, key, num_tokens, temperature, top_k, top_p)


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7, 8))
def _generate(graphdef, params, prompt, state, key, num_tokens, temperature, top_k, top_p):
    model = nnx.merge(graphdef, params)
    model.eval()

    def draw(hidden, n):
        return sampling.sample(model.log_probs(hidden[:, -1]), sampling.token_key(key, n),
                               temperature=temperature, top_k=top_k, top_p=top_p)

    hidden, state = model(prompt, state)
    first = draw(hidden, 0)

    def body(carry, n):
        token, state = carry
        hidden, state = model(token[:, None], state)
        return (draw(hidden, n), state), token

    (last, state), tokens = jax.lax.scan(body, (first, state), jnp.arange(1, num_tokens, dtype=jnp.int32))
    return jnp.concatenate([tokens.T, last[:, None]], axis=1), state


class SequenceModel(nnx.Module):
    """The algorithmic-task model (PAPER_SPEC 3.3): Embedding (unscaled) (+ interleaved
    ascending positional encoding) -> blocks -> (final LayerNorm) -> Linear(D, output_size).

    With `layer.variant = "lstm"` it is the official `LSTMModel` instead: Embedding(embed_dim)
    -> dropout -> `num_layers` stacked LSTMs of width model_dim -> dropout -> Linear.
    `__call__` returns per-position logits `[B, T, output_size]`; `classify` the logits at
    the last position of each sequence (ListOps).
    """

    def __init__(self, config: SequenceConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.config = config
        if config.head not in ("per_position", "final"):
            raise ValueError(f"unknown head {config.head!r}; valid: per_position, final")
        positional.positions(config.positional, jnp.int32(0), 1, None)  # validates
        self.is_lstm = resolve_layer(config.layer)[0] == "lstm"
        width = config.embed_dim if self.is_lstm else config.model_dim
        self.embed = Embedding(config.input_vocab, width, init=config.init, rngs=rngs,
                               param_dtype=param_dtype)
        if self.is_lstm:
            dims = [config.embed_dim] + [config.model_dim] * config.num_layers
            self.layers = nnx.List([LSTM(dims[i], dims[i + 1], rngs=rngs, param_dtype=param_dtype)
                                    for i in range(config.num_layers)])
            self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
        else:
            self.layers = BlockStack(**_block_args(config, config.layer, wiring=config.wiring,
                                                   attention_layout=config.attention_layout,
                                                   rngs=rngs, param_dtype=param_dtype))
        self.final_norm = nnx.data(LayerNorm(config.model_dim, init=config.init, rngs=rngs,
                                             param_dtype=param_dtype) if config.final_norm else None)
        self.output = Linear(config.model_dim, config.output_size, in_axes=("embed",),
                             out_axes=("vocab",), bias=True, init=config.init, rngs=rngs,
                             param_dtype=param_dtype)

    def init_state(self, batch_size: int) -> ModelState:
        layers = (tuple(lstm.init_state(batch_size) for lstm in self.layers) if self.is_lstm
                  else self.layers.init_state(batch_size))
        return ModelState(jnp.zeros((), jnp.int32), layers)

    def __call__(self, tokens: Array, state: ModelState | None = None) -> tuple[Array, ModelState]:
        """`tokens [B, T]` int -> `(logits [B, T, output_size], state)`."""
        state = _start(self, tokens, state, self.config.input_vocab)
        x = self.embed(tokens)
        if self.is_lstm:
            x = self.dropout(x)
            layers = []
            for lstm, lstm_state in zip(self.layers, state.layers):
                x, lstm_state = lstm(x, lstm_state)
                layers.append(lstm_state)
            x, layers = self.dropout(x), tuple(layers)
        else:
            pos = positional.positions(self.config.positional, state.position, tokens.shape[1], None)
            if pos is not None:
                x = x + positional.interleaved_sinusoid(pos, self.config.model_dim)[None]
            x, layers = self.layers(x, state.layers)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.output(x), ModelState(state.position + tokens.shape[1], layers)

    def classify(self, tokens: Array, lengths: Array) -> Array:
        """Logits `[B, output_size]` at position `lengths - 1` of each sequence (ListOps)."""
        logits, _ = self(tokens)
        index = jnp.asarray(lengths, jnp.int32) - 1
        return jnp.take_along_axis(logits, index[:, None, None], axis=1)[:, 0]


class RLCore(nnx.Module):
    """The Atari agent's core (PAPER_SPEC 3.4): `Linear(input_dim, D)` -> pre-LN blocks.

    It steps one frame at a time with the state carried; at each step the state of every
    batch element whose episode just ended is reset to zero before the step (official:
    the state is multiplied by `1 - done`).
    """

    def __init__(self, config: RLCoreConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.config = config
        self.input_proj = Linear(config.input_dim, config.model_dim, in_axes=("input",),
                                 out_axes=("embed",), bias=True, init=config.init, rngs=rngs,
                                 param_dtype=param_dtype)
        self.layers = BlockStack(**_block_args(config, config.layer, wiring="pre_ln", rngs=rngs,
                                               param_dtype=param_dtype))

    def init_state(self, batch_size: int) -> tuple:
        return self.layers.init_state(batch_size)

    def step(self, x: Array, state: tuple, done: Array | None = None) -> tuple[Array, tuple]:
        """One frame: `x [B, input_dim]`, `done [B]` (reset before this step) -> `([B, D], state)`."""
        if done is not None:
            keep = 1.0 - jnp.asarray(done, jnp.float32)
            state = jax.tree.map(lambda s: s * keep.reshape((-1,) + (1,) * (s.ndim - 1)).astype(s.dtype), state)
        if self.config.truncate_state_gradient:
            state = jax.lax.stop_gradient(state)
        y, state = self.layers(self.input_proj(x)[:, None], state)
        return y[:, 0], state

    def __call__(self, xs: Array, state: tuple | None = None, dones: Array | None = None) -> tuple[Array, tuple]:
        """An unroll of frames `xs [B, T, input_dim]`, `dones [B, T]` -> `([B, T, D], state)`."""
        if xs.ndim != 3:
            raise ValueError(f"xs must be [batch, time, input_dim], got shape {xs.shape}")
        state = self.init_state(xs.shape[0]) if state is None else state
        dones = jnp.zeros(xs.shape[:2], jnp.float32) if dones is None else dones
        graphdef, params = nnx.split(self)

        def body(state, inputs):
            x, done = inputs
            y, state = nnx.merge(graphdef, params).step(x, state, done)
            return state, y

        state, ys = jax.lax.scan(body, state, (jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dones, 0, 1)))
        return jnp.swapaxes(ys, 0, 1), state
