"""Models: streaming (segments, token by token) equals one pass for every variant in every
model, generation, positional encodings, block wirings, RL resets and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fastweights as fw
from fastweights.nn import positional, presets
from fastweights.nn.blocks import Block
from fastweights.nn.config import LayerConfig, LMConfig, RLCoreConfig, SequenceConfig
from fastweights.nn.models import LanguageModel, ModelState, RLCore, SequenceModel
from fastweights.testing import assert_close

T = 7
SEGMENTS = (1, 3, 3)     # reuses the T=1 and T=3 compilations of token-by-token streaming


def _shrink(config, num_layers=1):
    """The preset's structure (variant, wiring, positions, output) at toy size."""
    common = dict(model_dim=16, num_layers=num_layers, num_heads=2, head_dim=8, ff_dim=32)
    if isinstance(config, LMConfig):
        return dataclasses.replace(config, vocab_size=60, cutoffs=(20, 40), positional_span=T + 2,
                                   **common)
    if isinstance(config, SequenceConfig):
        return dataclasses.replace(config, input_vocab=20, output_size=11, embed_dim=12, **common)
    return dataclasses.replace(config, input_dim=9, **common)


def _inputs(config, batch=2):
    key = jax.random.key(3)
    if isinstance(config, RLCoreConfig):
        return jax.random.normal(key, (batch, T, config.input_dim))
    vocab = config.vocab_size if isinstance(config, LMConfig) else config.input_vocab
    return jax.random.randint(key, (batch, T), 0, vocab)


@nnx.jit
def _apply(model, inputs, state):
    return model(inputs, state)     # one compilation per input length


def _stream(model, inputs, sizes):
    state, outs, start = model.init_state(inputs.shape[0]), [], 0
    for size in sizes:
        out, state = _apply(model, inputs[:, start:start + size], state)
        outs.append(out)
        start += size
    return jnp.concatenate(outs, axis=1), state


@pytest.mark.parametrize("name", presets.names())
def test_streaming_equals_one_pass(name):
    model = presets.build(_shrink(presets.get(name)), rngs=1)
    model.eval()
    inputs = _inputs(model.config)
    full, full_state = _apply(model, inputs, model.init_state(inputs.shape[0]))
    segments, segment_state = _stream(model, inputs, SEGMENTS)
    tokens, token_state = _stream(model, inputs, (1,) * T)
    assert_close(segments, full, "float32_same_algebra", name=f"{name} segments")
    assert_close(tokens, full, "float32_same_algebra", name=f"{name} tokens")
    assert_close(token_state, full_state, "float32_same_algebra", name=f"{name} state")


@pytest.mark.parametrize("name", [n for n, v in fw.VARIANTS.items() if v.layer is not None])
def test_every_variant_streams_in_a_language_model(name):
    """Every fast-weight variant's layer, with its defaults, inside a one-layer LM: segments
    and single tokens equal one pass (the presets above cover the paper's models)."""
    model = LanguageModel(_shrink(LMConfig(layer=LayerConfig(name))), rngs=nnx.Rngs(1))
    model.eval()
    inputs = _inputs(model.config)
    full, full_state = _apply(model, inputs, model.init_state(inputs.shape[0]))
    segments, segment_state = _stream(model, inputs, SEGMENTS)
    assert_close(segments, full, "float32_same_algebra", name=f"{name} segments")
    assert_close(segment_state, full_state, "float32_same_algebra", name=f"{name} state")


def test_greedy_generation_is_the_argmax_of_one_pass():
    config = _shrink(LMConfig(layer=LayerConfig("lm:134")), num_layers=2)
    model = LanguageModel(config, rngs=nnx.Rngs(0))
    model.eval()
    prompt = _inputs(config)[:, :3]
    generated, state = model.generate(prompt, 4, key=jax.random.key(0), temperature=0.0)
    assert generated.shape == (2, 4)
    # Constant memory: the carried state has the shape of a fresh one.
    assert jax.tree.map(jnp.shape, state.layers) == jax.tree.map(jnp.shape, model.init_state(2).layers)
    sequence = jnp.concatenate([prompt, generated], axis=1)
    hidden, _ = model(sequence[:, :-1])
    np.testing.assert_array_equal(jnp.argmax(model.log_probs(hidden[:, 2:]), -1), generated)
    sampled, _ = model.generate(prompt, 4, key=jax.random.key(1))
    assert sampled.shape == (2, 4) and int(sampled.min()) >= 0 and int(sampled.max()) < config.vocab_size


def test_positional_encodings_match_their_formulas():
    pos = np.array([5.0, 0.0, 2.0])
    dim = 6
    freq = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
    concat = np.concatenate([np.sin(pos[:, None] * freq), np.cos(pos[:, None] * freq)], -1)
    inter = np.zeros((3, dim))
    inter[:, 0::2], inter[:, 1::2] = np.sin(pos[:, None] * freq), np.cos(pos[:, None] * freq)
    assert_close(positional.concatenated_sinusoid(jnp.asarray(pos), dim), concat, "float32_same_algebra")
    assert_close(positional.interleaved_sinusoid(jnp.asarray(pos), dim), inter, "float32_same_algebra")
    np.testing.assert_array_equal(positional.positions("descending", jnp.int32(0), 4, 4), [3, 2, 1, 0])
    np.testing.assert_array_equal(positional.positions("descending", jnp.int32(2), 2, 4), [1, 0])
    np.testing.assert_array_equal(positional.positions("descending", jnp.int32(9), 3, None), [2, 1, 0])
    np.testing.assert_array_equal(positional.positions("ascending", jnp.int32(2), 3, None), [2, 3, 4])


def test_lm_input_is_scaled_embedding_plus_descending_positions():
    config = _shrink(LMConfig(layer=LayerConfig("lm:24")))
    model = LanguageModel(config, rngs=nnx.Rngs(0))
    tokens = _inputs(config)
    table = np.asarray(model.embed.embedding[...], np.float64)
    freq = 1.0 / 10000 ** (np.arange(0, 16, 2) / 16)
    for start in (0, 2):
        pos = config.positional_span - 1 - (start + np.arange(T))
        pe = np.concatenate([np.sin(pos[:, None] * freq), np.cos(pos[:, None] * freq)], -1)
        assert_close(model.embed_inputs(tokens, jnp.int32(start)), table[np.asarray(tokens)] * 4.0 + pe,
                     "float32_vs_float64")


def _numpy_ln(x, scale, bias):
    x = np.asarray(x, np.float64)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * np.asarray(scale) + np.asarray(bias)


def _numpy_ff(ff, x):
    h = np.maximum(x @ np.asarray(ff.inner.kernel[...]) + np.asarray(ff.inner.bias[...]), 0)
    return h @ np.asarray(ff.outer.kernel[...]) + np.asarray(ff.outer.bias[...])


@pytest.mark.parametrize("wiring, variant", [("pre_ln", "delta_net"), ("post_ln", "delta_net"),
                                             ("lm_pre_ln", "delta_net"), ("lm_pre_ln", "transformer")])
def test_block_wirings(wiring, variant):
    block = Block(LayerConfig(variant, window=8), model_dim=8, num_heads=2, head_dim=4, ff_dim=16,
                  dropout=0.0, wiring=wiring, init="pytorch", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    out, _ = block(x)
    ln1 = lambda a: _numpy_ln(a, block.norm1.scale[...], block.norm1.bias[...])  # noqa: E731
    ln2 = lambda a: _numpy_ln(a, block.norm2.scale[...], block.norm2.bias[...])  # noqa: E731
    mixer = lambda a, **kw: np.asarray(block.mixer(jnp.asarray(a, jnp.float32), **kw)[0], np.float64)  # noqa: E731
    x64 = np.asarray(x, np.float64)
    if wiring == "post_ln":
        h = ln1(x64 + mixer(x64))
        expected = ln2(h + _numpy_ff(block.ff, h))
    else:
        u = ln1(x64)
        if wiring == "pre_ln":
            h = x64 + mixer(u)
        elif variant == "transformer":      # queries from the raw input, residual x
            h = x64 + mixer(u, query_input=x)
        else:                               # the LM code's residual LN(x) + f(LN(x))
            h = u + mixer(u)
        expected = h + _numpy_ff(block.ff, ln2(h))
    assert_close(out, expected, "float32_vs_float64", name=wiring)


def test_rl_core_reset_and_truncation():
    config = _shrink(RLCoreConfig(layer=LayerConfig("delta_net", convention="rl")))
    core = RLCore(config, rngs=nnx.Rngs(0))
    xs = _inputs(config)
    dones = jnp.zeros((2, T)).at[0, 4].set(1.0)
    ys, _ = core(xs, dones=dones)
    # The reset at step 4 makes element 0 from there on equal a fresh run on its tail.
    fresh, _ = core(xs[:, 4:])
    assert_close(ys[0, 4:], fresh[0], "float32_same_algebra", name="reset")
    assert_close(ys[1, :4], core(xs[:, :4])[0][1], "float32_same_algebra", name="no reset")
    # Official 1-step truncation: no gradient reaches frame 0 from the output at frame 3.
    grad = jax.grad(lambda x: core(x)[0][:, 3].sum())(xs)
    assert float(jnp.abs(grad[:, 0]).max()) == 0.0 and float(jnp.abs(grad[:, 3]).max()) > 0.0
    full = RLCore(dataclasses.replace(config, truncate_state_gradient=False), rngs=nnx.Rngs(0))
    grad = jax.grad(lambda x: full(x)[0][:, 3].sum())(xs)
    assert float(jnp.abs(grad[:, 0]).max()) > 0.0


def test_sequence_model_classifies_at_the_last_position():
    config = _shrink(presets.get("algorithmic_delta_net", head="final"))
    model = SequenceModel(config, rngs=nnx.Rngs(0))
    model.eval()
    tokens = _inputs(config)
    lengths = jnp.array([3, 7])
    logits, _ = model(tokens)
    assert_close(model.classify(tokens, lengths), jnp.stack([logits[0, 2], logits[1, 6]]),
                 "float32_same_algebra")


def test_bad_input_is_refused():
    config = _shrink(LMConfig(layer=LayerConfig("delta_net")))
    model = LanguageModel(config, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(jnp.array([[1, 60]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.nll(jnp.zeros((1, 2, 16)), jnp.array([[1, -1]]))
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        model(jnp.array([1, 2]))
    with pytest.raises(TypeError, match="ModelState"):
        model(jnp.array([[1, 2]]), state=(1, 2))
    with pytest.raises(ValueError, match="layer entries"):
        model(jnp.array([[1, 2]]), state=ModelState(jnp.int32(0), ()))
    with pytest.raises(ValueError, match="unknown positional"):
        LanguageModel(dataclasses.replace(config, positional="learned"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown wiring"):
        LanguageModel(dataclasses.replace(config, wiring="sandwich"), rngs=nnx.Rngs(0))
