"""Sampling and streaming generation: greedy and top-k=1 are the argmax; top-k / top-p never
emit an excluded token and draw the kept ones with their renormalised probabilities (Monte
Carlo); `stream` equals `LanguageModel.generate` token for token and samples from the
distributions of one pass over prompt + generated tokens; bounded state; errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights.lm import _compiled, generation, sample, stream
from fastweights.nn import presets
from fastweights.nn.config import LayerConfig, LMConfig
from fastweights.testing import TOLERANCES, assert_close

V = 50
TINY = LMConfig(vocab_size=V, model_dim=16, num_layers=2, num_heads=2, head_dim=8, ff_dim=32,
                dropout=0.0, output="adaptive", cutoffs=(20, 35), positional="none")


def _model(layer, seed, **changes):
    """Parameters N(0, 0.3): peaked but not degenerate distributions to sample from."""
    model = presets.build(dataclasses.replace(TINY, layer=layer, **changes), rngs=seed)
    rng = np.random.default_rng(seed)
    nnx.update(model, jax.tree.map(lambda x: jnp.asarray(0.3 * rng.standard_normal(x.shape), x.dtype),
                                   nnx.state(model, nnx.Param)))
    return model


MODELS = {
    "delta_rnn": _model(LayerConfig("lm:134"), 0),
    # A 4-position attention window (3 cached positions): 17 tokens run far past it.
    "transformer": _model(LayerConfig("transformer", window=4), 1, output="softmax",
                          positional="descending", positional_span=8),
}

# A fixed distribution over 10 tokens, not sorted by index (tests the index mapping).
PROBS = np.array([0.08, 0.3, 0.005, 0.15, 0.2, 0.03, 0.1, 0.07, 0.015, 0.05])
ORDER = np.argsort(-PROBS)      # most likely first
DRAWS = 20_000


@pytest.fixture(scope="module")
def draws():
    """`options -> [DRAWS]` tokens: one call with DRAWS identical rows (independent draws)."""
    log_probs = jnp.broadcast_to(jnp.log(jnp.asarray(PROBS, jnp.float32)), (DRAWS, len(PROBS)))

    def draw(seed=0, **options):
        fn = jax.jit(lambda lp, key: sample(lp, key, **options))
        return np.asarray(fn(log_probs, jax.random.key(seed)))
    return draw


def _kept(k=None, p=None, temperature=1.0):
    """The kept tokens and their renormalised probabilities, computed here in float64."""
    q = PROBS ** (1.0 / temperature)
    q = q / q.sum()
    ranked = list(ORDER[:k] if k else ORDER)
    mass = q[ranked] / q[ranked].sum()
    if p is not None:
        n = int(np.searchsorted(np.cumsum(mass), p) + 1)   # the smallest prefix reaching p
        ranked = ranked[:n]
    probs = np.zeros_like(PROBS)
    probs[ranked] = q[ranked] / q[ranked].sum()
    return probs


@pytest.mark.parametrize("options", [dict(top_k=4), dict(top_p=0.6), dict(top_k=5, top_p=0.8),
                                     dict(top_k=6, temperature=2.0), dict(top_p=0.9, temperature=0.5),
                                     dict()])
def test_kept_tokens_are_drawn_with_their_renormalised_probabilities(draws, options):
    expected = _kept(options.get("top_k"), options.get("top_p"), options.get("temperature", 1.0))
    counts = np.bincount(draws(**options), minlength=len(PROBS))
    assert np.all(counts[expected == 0] == 0), (counts, expected)       # never an excluded token
    freq = counts / DRAWS
    bound = TOLERANCES["monte_carlo"]["sigmas"] * np.sqrt(expected * (1 - expected) / DRAWS)
    kept = expected > 0
    assert np.all(np.abs(freq - expected)[kept] <= bound[kept]), (freq, expected)


def test_top_p_keeps_at_least_the_most_likely_token(draws):
    assert set(draws(top_p=1e-6)) == {int(ORDER[0])}


def test_greedy_and_top_1_are_the_argmax_and_seeds_reproduce():
    log_probs = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (6, V)))
    argmax = np.argmax(np.asarray(log_probs), axis=-1)
    np.testing.assert_array_equal(sample(log_probs, jax.random.key(1), temperature=0.0), argmax)
    np.testing.assert_array_equal(sample(log_probs, jax.random.key(1), top_k=1), argmax)
    np.testing.assert_array_equal(sample(log_probs, jax.random.key(2), top_k=1, top_p=0.5), argmax)
    one = sample(log_probs, jax.random.key(3), top_k=10, top_p=0.9)
    assert one.dtype == jnp.int32 and one.shape == (6,)
    np.testing.assert_array_equal(one, sample(log_probs, jax.random.key(3), top_k=10, top_p=0.9))
    flat = jnp.broadcast_to(jnp.zeros(V), (64, V))      # uniform: different keys, different draws
    assert not np.array_equal(sample(flat, jax.random.key(4)), sample(flat, jax.random.key(5)))


def test_sample_arguments_are_checked():
    log_probs, key = jnp.zeros((2, V)), jax.random.key(0)
    with pytest.raises(ValueError, match="temperature must be finite and >= 0"):
        sample(log_probs, key, temperature=-0.5)
    with pytest.raises(ValueError, match="temperature must be finite and >= 0"):
        sample(log_probs, key, temperature=float("nan"))
    with pytest.raises(TypeError, match="temperature must be a number"):
        sample(log_probs, key, temperature="hot")
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        sample(log_probs, key, top_k=0)
    with pytest.raises(TypeError, match="top_k must be an int"):
        sample(log_probs, key, top_k=2.5)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        sample(log_probs, key, top_p=0.0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        sample(log_probs, key, top_p=1.5)
    with pytest.raises(TypeError, match="top_p must be a number"):
        sample(log_probs, key, top_p=True)
    with pytest.raises(ValueError, match=r"\[batch, vocab\]"):
        sample(jnp.zeros(V), key)


@nnx.jit
def _call(model, tokens):
    return model(tokens)


OPTIONS = dict(temperature=0.8, top_k=20, top_p=0.9)


def _drain(generator):
    """`(items, return value)` of a generator."""
    items = []
    while True:
        try:
            items.append(next(generator))
        except StopIteration as stop:
            return items, stop.value


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stream_equals_generate_and_one_pass(name):
    model = MODELS[name]
    prompt = np.random.default_rng(2).integers(0, V, 5)
    num_tokens = 12
    streamed, final_state = _drain(stream(model, prompt, num_tokens, seed=3, **OPTIONS))
    assert all(isinstance(t, int) for t in streamed)
    generated, state = model.generate(jnp.asarray(prompt[None]), num_tokens, key=jax.random.key(3), **OPTIONS)
    assert streamed == np.asarray(generated)[0].tolist()
    assert_close(final_state, state, "float32_other_form", name="final state")
    # Bounded: the state after 12 tokens has the shapes of a fresh one.
    assert jax.tree.map(jnp.shape, final_state) == jax.tree.map(jnp.shape, model.init_state(1))

    # The distributions the steps sampled from are those of one pass over the sequence.
    options = generation.check_sampling(OPTIONS["temperature"], OPTIONS["top_k"], OPTIONS["top_p"])
    steps = generation._steps(generation._bind_step(model, options), jnp.asarray(prompt[None]),
                              model.init_state(1), jax.random.key(3), num_tokens)
    step_log_probs = np.concatenate([np.asarray(lp) for _, lp in steps])            # [n, V]
    sequence = jnp.asarray(np.concatenate([prompt, streamed])[None, :-1])
    hidden, _ = _call(model, sequence)
    one_pass = model.log_probs(hidden[0, len(prompt) - 1:])
    assert_close(step_log_probs, one_pass, "float32_other_form", name="log-probs")


def test_stream_continues_from_a_state_and_compiles_twice():
    model = MODELS["delta_rnn"]
    before = _compiled.compilations()
    out, state = _drain(stream(model, [1, 2, 3], 3, seed=0, temperature=0.0))
    assert _compiled.compilations() - before <= 2          # the prompt, the token step
    # Continuing from the returned state with the last token as prompt = one longer stream.
    more = list(stream(model, [out[-1]], 3, temperature=0.0, state=state))
    assert out + more == list(stream(model, [1, 2, 3], 6, temperature=0.0))
    assert list(stream(model, [1], 0)) == []


def test_the_wt103_transformer_cache_is_bounded():
    """The preset's streaming cache holds its 256-token window (255 cached positions), and a
    single-token step returns a state of the same shapes (traced, nothing allocated)."""
    config = presets.get("wt103_small_transformer", vocab_size=1000, cutoffs=(200, 500))
    model = nnx.eval_shape(lambda: presets.build(config))
    state = jax.eval_shape(lambda: model.init_state(1))
    keys = state.layers[0].keys
    assert keys.shape == (1, 255, config.num_heads, config.head_dim)
    graphdef, params = nnx.split(model)
    after = jax.eval_shape(lambda p, s: generation._step(
        nnx.merge(graphdef, p), jnp.zeros((1, 1), jnp.int32), s, jax.random.key(0), jnp.int32(7),
        temperature=1.0, top_k=None, top_p=None)[2], params, state)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), after) == jax.tree.map(lambda x: (x.shape, x.dtype), state)


def test_stream_arguments_are_checked():
    model = MODELS["delta_rnn"]
    with pytest.raises(TypeError, match="LanguageModel"):
        stream(object(), [1], 2)
    with pytest.raises(ValueError, match="num_tokens must be an int >= 0"):
        stream(model, [1], -1)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        stream(model, [], 2)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        stream(model, [[1, 2]], 2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        stream(model, [V], 2)
    with pytest.raises(ValueError, match="temperature must be finite and >= 0"):
        stream(model, [1], 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        stream(model, [1], 2, top_k=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        stream(model, [1], 2, top_p=2.0)
    with pytest.raises(TypeError, match="ModelState"):
        stream(model, [1], 2, state=(1, 2))
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        model.generate(jnp.ones((1, 2), jnp.int32), 2, key=jax.random.key(0), top_k=0)
