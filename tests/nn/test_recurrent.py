"""LSTM: against a float64 NumPy loop of the PyTorch LSTM equations, segments equal one pass,
parameter count, axis names and initialisation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights.nn.common import logical_axes
from fastweights.nn.recurrent import LSTM
from fastweights.testing import assert_close

B, T, IN, HID = 2, 7, 5, 6


def _make(seed=0):
    """An LSTM with N(0, 0.5) parameters, built abstractly and filled from NumPy."""
    module = nnx.eval_shape(lambda: LSTM(IN, HID, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    nnx.update(module, jax.tree.map(
        lambda x: jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype),
        nnx.state(module, nnx.Param)))
    return module


@nnx.jit
def _forward(module, x, state=None):
    return module(x, state)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm(module, x, h, c):
    """The PyTorch nn.LSTM equations in float64, with its weight layout W [4H, in]."""
    w_ih = np.asarray(module.w_ih[...], np.float64).T      # torch weight_ih_l0 [4H, in]
    w_hh = np.asarray(module.w_hh[...], np.float64).T
    b_ih = np.asarray(module.b_ih[...], np.float64)
    b_hh = np.asarray(module.b_hh[...], np.float64)
    x, h, c = (np.asarray(a, np.float64) for a in (x, h, c))
    ys = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = (gates[:, k * HID:(k + 1) * HID] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=1), (h, c)


@pytest.mark.parametrize("initial_state", [False, True])
def test_matches_numpy(initial_state):
    module = _make()
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((B, T, IN)), jnp.float32)
    if initial_state:
        state = tuple(jnp.asarray(rng.standard_normal((B, HID)), jnp.float32) for _ in range(2))
    else:
        state = None
    y, (h, c) = _forward(module, x, state)
    assert y.shape == (B, T, HID) and h.dtype == c.dtype == jnp.float32
    expected = _numpy_lstm(module, x, *(module.init_state(B) if state is None else state))
    assert_close((y, (h, c)), expected, "float32_vs_float64", name="lstm")


def test_segments_equal_one_pass():
    module = _make(2)
    x = jnp.asarray(np.random.default_rng(3).standard_normal((B, T, IN)), jnp.float32)
    y, final = _forward(module, x)
    state, parts = module.init_state(B), []
    for start, stop in ((0, 3), (3, 4), (4, T)):
        part, state = _forward(module, x[:, start:stop], state)
        parts.append(part)
    assert_close(np.concatenate(parts, axis=1), y, "float32_same_algebra", name="segments")
    assert_close(state, final, "float32_same_algebra", name="state")


def test_parameter_count_init_and_axis_names():
    module = nnx.jit(lambda: LSTM(IN, HID, rngs=nnx.Rngs(0)))()   # one compilation
    params = nnx.state(module, nnx.Param)
    assert sum(math.prod(p.shape) for p in jax.tree.leaves(params)) == \
        4 * HID * (IN + HID) + 8 * HID
    bound = HID ** -0.5                          # PyTorch: U(+-1/sqrt(hidden)) for all four
    for p in jax.tree.leaves(params):
        assert 0.5 * bound < np.abs(np.asarray(p)).max() <= bound
    names = logical_axes(module)
    assert names[("w_ih",)] == ("embed", "mlp") and names[("b_hh",)] == ("mlp",)
    for path, axes in names.items():
        assert all(isinstance(a, str) for a in axes) and len(set(axes)) == len(axes), path


def test_errors():
    module = nnx.eval_shape(lambda: LSTM(IN, HID, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="LSTM expects"):
        module(jnp.zeros((B, T, IN + 1)))
    with pytest.raises(ValueError, match="state"):
        module(jnp.zeros((B, T, IN)), module.init_state(B + 1))
