"""Evaluation protocols against direct loops written here: the sliding window (strides 1, 3,
5, partial tails, a split shorter than a window) against one fresh model call per window
and log-probabilities of all positions; full context against one long pass and a segment
loop; the non-overlapping segments against slicing `LMOrderedIterator`'s columns. Also:
every target scored exactly once, compilations per call, eval mode, memmaps, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights.lm import _compiled, evaluation, full_context, segments, sliding_window
from fastweights.nn import positional, presets
from fastweights.nn.config import LayerConfig, LMConfig
from fastweights.nn.models import ModelState
from fastweights.testing import assert_close

V, WINDOW = 50, 8
TINY = LMConfig(vocab_size=V, model_dim=16, num_layers=2, num_heads=2, head_dim=8, ff_dim=32,
                dropout=0.0, output="adaptive", cutoffs=(20, 35), positional_span=WINDOW)


def _model(config=TINY, seed=0):
    """A tiny LM with every parameter N(0, 0.3): sharp predictions, so that scoring the
    wrong position changes the total by far more than the tolerance."""
    model = presets.build(config, rngs=seed)
    rng = np.random.default_rng(seed)
    nnx.update(model, jax.tree.map(lambda x: jnp.asarray(0.3 * rng.standard_normal(x.shape), x.dtype),
                                   nnx.state(model, nnx.Param)))
    return model


MODELS = {
    "delta_net": _model(),
    "transformer": _model(dataclasses.replace(TINY, layer=LayerConfig("transformer"), output="softmax"), 1),
}
FULL_CONTEXT = {   # the full-context presets: post-LN, no positional encoding
    "delta_rnn": _model(dataclasses.replace(TINY, layer=LayerConfig("lm:134"), wiring="post_ln",
                                            positional="none"), 2),
    "transformer": _model(dataclasses.replace(TINY, layer=LayerConfig("transformer"), wiring="post_ln",
                                              positional="none", output="softmax"), 3),
}


def _tokens(n, seed=0):
    return np.random.default_rng(seed).integers(0, V, n)


@nnx.jit
def _log_probs(model, inputs, state):
    """Log-probabilities at every position of one call: `[B, T, V]`."""
    hidden, _ = model(inputs, state)
    return model.log_probs(hidden)


@nnx.jit
def _call(model, inputs, state):
    return model(inputs, state)


def _fresh(model, batch, length):
    """A zero state whose descending positions run length-1..0 (the official positions of a
    fresh call; position 0, i.e. `init_state`, when length == the span)."""
    span = model.config.positional_span
    position = span - length if model.config.positional == "descending" else 0
    return ModelState(jnp.int32(position), model.init_state(batch).layers)


def _window_of(t, n, window, stride):
    """Target-centric: the start of the window that scores target `t` (1 <= t < n)."""
    if n < window + 1 or t <= window:
        return 0
    j = -(-(t - window) // stride)
    return min(j * stride, n - 1 - window)


def _reference_sliding(model, tokens, window, stride):
    """For every target: a fresh call over its window, log-probs at all positions, the
    target's entry picked in Python. -> (total nll, count)."""
    n = len(tokens)
    length = min(window, n - 1)
    cache, total = {}, 0.0
    for t in range(1, n):
        start = _window_of(t, n, window, stride)
        if start not in cache:
            inputs = jnp.asarray(tokens[None, start:start + length], jnp.int32)
            cache[start] = np.asarray(_log_probs(model, inputs, _fresh(model, 1, length)))[0]
        total -= float(cache[start][t - 1 - start, tokens[t]])
    return total, n - 1


@pytest.mark.parametrize("name, n, stride, batch_size", [
    ("delta_net", 40, 1, 8),       # 31 later windows: the last batch padded
    ("delta_net", 40, 3, 4),       # (40 - 8 - 1) % 3 == 1: a last window scoring 1
    ("delta_net", 42, 5, 4),       # 33 % 5 == 3: a last window scoring 3
    ("delta_net", 39, 5, 4),       # 30 % 5 == 0: no partial tail
    ("delta_net", 40, 1, 1),       # the official batch-1 protocol, same code
    ("delta_net", 6, 1, 4),        # shorter than window + 1: one window of 5
    ("transformer", 30, 1, 8),
])
def test_sliding_window_equals_one_call_per_window(name, n, stride, batch_size):
    model, tokens = MODELS[name], _tokens(n, seed=n)
    result = sliding_window(model, tokens, window=WINDOW, stride=stride, batch_size=batch_size,
                            progress=False)
    total, count = _reference_sliding(model, tokens, WINDOW, stride)
    assert result["tokens"] == count == n - 1
    assert_close(result["nll"], total, "float32_other_form", name="total nll")
    assert result["loss"] == pytest.approx(result["nll"] / count, rel=1e-12)
    assert result["perplexity"] == pytest.approx(np.exp(result["loss"]), rel=1e-12)
    windows = 1 if n < WINDOW + 1 else 1 + -(-(n - 1 - WINDOW) // stride)
    assert result["windows"] == windows
    assert result["tokens_per_s"] > 0


@pytest.mark.parametrize("n, window, stride", [(40, 8, 1), (40, 8, 3), (42, 8, 5), (39, 8, 5),
                                               (200, 16, 7), (30, 8, 8), (6, 8, 1), (9, 8, 1)])
def test_every_target_is_scored_exactly_once(n, window, stride):
    scored = list(evaluation._scored_targets(n, window, stride))
    flat = np.concatenate(scored)
    np.testing.assert_array_equal(np.sort(flat), np.arange(1, n))
    assert len(np.unique(flat)) == n - 1
    # ... by the window the target-centric enumeration names, at most `stride` per later window.
    starts = [0] + list(evaluation._window_plan(n, window, stride)[0])
    assert len(starts) == len(scored)
    for start, targets in zip(starts, scored):
        assert all(_window_of(int(t), n, window, stride) == start for t in targets)
        assert start + window <= n - 1 or start == 0
    assert all(len(t) <= stride for t in scored[1:])


def test_short_windows_get_the_official_positions():
    """A fresh call of L < span tokens starts at position span - L: positions L-1..0; a
    full-span one at 0 (`init_state`)."""
    model = MODELS["delta_net"]
    pos = positional.positions("descending", model.segment_state(1, 5).position, 5, WINDOW)
    np.testing.assert_array_equal(pos, [4, 3, 2, 1, 0])
    assert int(model.segment_state(1, WINDOW).position) == int(model.init_state(1).position) == 0


def test_a_split_compiles_at_most_twice():
    model, tokens = MODELS["delta_net"], _tokens(40)
    before = _compiled.compilations()
    sliding_window(model, tokens, window=WINDOW, batch_size=7, progress=False)
    assert _compiled.compilations() - before <= 2       # window 0, the batches
    before = _compiled.compilations()
    sliding_window(model, _tokens(53), window=WINDOW, batch_size=7, progress=False)
    assert _compiled.compilations() == before           # another length: no new one


def test_memmap_split_and_eval_mode(tmp_path):
    """A read-only memmap gives the same numbers; a model in train mode with dropout is
    evaluated without dropout and left in train mode."""
    tokens = _tokens(40).astype(np.int32)
    path = tmp_path / "split.bin"
    tokens.tofile(path)
    split = np.memmap(path, dtype=np.int32, mode="r")
    expected = sliding_window(MODELS["delta_net"], tokens, window=WINDOW, batch_size=8, progress=False)
    got = sliding_window(MODELS["delta_net"], split, window=WINDOW, batch_size=8, progress=False)
    assert got["nll"] == expected["nll"] and got["tokens"] == expected["tokens"]

    dropout = _model(dataclasses.replace(TINY, dropout=0.5))
    dropout.train()
    result = sliding_window(dropout, tokens, window=WINDOW, batch_size=8, progress=False)
    assert_close(result["nll"], expected["nll"], "float32_same_algebra")
    assert dropout.dropout.deterministic is False      # still in train mode


def _pick(log_probs, targets):
    return np.take_along_axis(np.asarray(log_probs), np.asarray(targets)[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("name", sorted(FULL_CONTEXT))
def test_full_context_equals_one_long_pass_and_a_segment_loop(name):
    model, tokens = FULL_CONTEXT[name], _tokens(30, seed=5)
    result = full_context(model, tokens, segment=8, progress=False)
    assert result["tokens"] == 29 and result["windows"] == 4          # 8 + 8 + 8 + 5
    one_pass = -_pick(_log_probs(model, jnp.asarray(tokens[None, :-1]), model.init_state(1)),
                      tokens[None, 1:]).sum(dtype=np.float64)
    assert_close(result["nll"], one_pass, "float32_other_form", name="one pass")
    state, loop = model.init_state(1), 0.0
    for start in range(0, 29, 8):
        inputs = jnp.asarray(tokens[None, start:min(start + 8, 29)])
        hidden, state = _call(model, inputs, state)
        loop -= _pick(model.log_probs(hidden), tokens[None, start + 1:start + 1 + inputs.shape[1]]).sum(
            dtype=np.float64)
    assert_close(result["nll"], loop, "float32_other_form", name="segment loop")
    # A stream shorter than a segment: one call (of the last segment's shape: no new compilation).
    short = full_context(model, tokens[:6], segment=8, progress=False)
    assert short["tokens"] == 5 and short["windows"] == 1


@pytest.mark.parametrize("n, batch_size", [(62, 3), (49, 3)])
def test_segments_equal_a_slicing_loop(n, batch_size):
    """`LMOrderedIterator`: data [n, B] (column j = tokens[j*n:(j+1)*n]); batch i = rows
    i..i+L, targets one row later; each batch from a fresh state."""
    model, tokens = MODELS["delta_net"], _tokens(n, seed=7)
    result = segments(model, tokens, batch_size=batch_size, segment=WINDOW, progress=False)
    rows = n // batch_size
    data = tokens[:rows * batch_size].reshape(batch_size, rows).T          # [n, B]
    total, count, batches = 0.0, 0, 0
    i = 0
    while i < rows - 1:
        length = min(WINDOW, rows - 1 - i)
        inputs, targets = data[i:i + length].T, data[i + 1:i + 1 + length].T   # [B, L]
        log_probs = _log_probs(model, jnp.asarray(inputs), _fresh(model, batch_size, length))
        total -= _pick(log_probs, targets).sum(dtype=np.float64)
        count += targets.size
        batches += 1
        i += length
    assert result["tokens"] == count == batch_size * (rows - 1)
    assert result["windows"] == batches
    assert_close(result["nll"], total, "float32_other_form", name="segments")


def test_bad_arguments_are_refused():
    model, tokens = MODELS["delta_net"], _tokens(40)
    with pytest.raises(TypeError, match="LanguageModel"):
        sliding_window(object(), tokens, progress=False)
    with pytest.raises(ValueError, match="window must be a positive int"):
        sliding_window(model, tokens, window=0, progress=False)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        sliding_window(model, tokens, window=WINDOW, stride=0, progress=False)
    with pytest.raises(ValueError, match=r"stride \(9\) must be <= window \(8\)"):
        sliding_window(model, tokens, window=WINDOW, stride=9, progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        sliding_window(model, tokens, window=WINDOW, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="1-D array"):
        sliding_window(model, tokens.reshape(4, 10), window=WINDOW, progress=False)
    with pytest.raises(TypeError, match="integer token ids"):
        sliding_window(model, tokens.astype(np.float32), window=WINDOW, progress=False)
    with pytest.raises(ValueError, match="at least 2 ids"):
        sliding_window(model, tokens[:1], window=WINDOW, progress=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sliding_window(model, np.append(tokens, V), window=WINDOW, progress=False)
    with pytest.raises(ValueError, match="segment must be a positive int"):
        full_context(model, tokens, segment=0, progress=False)
    with pytest.raises(TypeError, match="LanguageModel"):
        full_context(None, tokens, progress=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        full_context(model, np.append(tokens, -1), progress=False)
    with pytest.raises(ValueError, match="at least 20 ids"):
        segments(model, tokens[:19], batch_size=10, progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        segments(model, tokens, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="segment must be a positive int"):
        segments(model, tokens, segment=-1, progress=False)
    with pytest.raises(TypeError, match="LanguageModel"):
        segments("model", tokens, progress=False)


def test_full_context_restarts_positions_per_segment():
    """With positional encodings, each carried segment gets the official call's positions
    L-1..0 (the state's other parts carried), as a direct loop computes them."""
    model, tokens = MODELS["delta_net"], _tokens(2 * WINDOW + 3)
    got = full_context(model, tokens, segment=WINDOW, progress=False)
    state, total = model.init_state(1), 0.0
    for start in range(0, len(tokens) - 1, WINDOW):
        seg = tokens[start:min(start + WINDOW, len(tokens) - 1) + 1]
        state = state._replace(position=jnp.int32(WINDOW - (len(seg) - 1)))
        hidden, state = model(jnp.asarray(seg[None, :-1]), state)
        total += float(np.sum(np.asarray(model.nll(hidden, jnp.asarray(seg[None, 1:])), np.float64)))
    assert got["tokens"] == len(tokens) - 1
    assert_close(got["nll"], total, "float32_other_form")
