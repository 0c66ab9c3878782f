"""Feature maps and normalisations against their formulas (PAPER_SPEC 1 and 2.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastweights.ops.common import (
    dpfp,
    elu_p1,
    favor_plus,
    favor_plus_projection,
    layer_norm,
    softmax_eps,
    sum_norm,
)
from fastweights.testing import TOLERANCES, assert_close, float64


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((3, 5, 6))


def test_elu_p1(x):
    with float64():
        expected = np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))
        assert_close(elu_p1(jnp.asarray(x)), expected, "float64_exact")


@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_sum_norm(x, eps):
    with float64():
        p = np.abs(x)
        assert_close(sum_norm(jnp.asarray(p), eps), p / (p.sum(-1, keepdims=True) + eps), "float64_exact")


def test_softmax_eps_has_the_official_epsilon(x):
    with float64():
        e = np.exp(x - x.max(-1, keepdims=True))
        assert_close(softmax_eps(jnp.asarray(x)), e / (e.sum(-1, keepdims=True) + 1e-6), "float64_exact")
        # s_0 of the Delta RNN v2 / Delta LSTM v2-v4: uniform 1/(D + 1e-6), not zero.
        d = 7
        assert_close(softmax_eps(jnp.zeros(d, jnp.float64)), np.full(d, 1 / (d + 1e-6)), "float64_exact")


@pytest.mark.parametrize("nu", [1, 2, 3])
def test_dpfp_official_roll_order(x, nu):
    with float64():
        r = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=-1)
        n = r.shape[-1]
        expected = np.zeros(x.shape[:-1] + (n * nu,))
        for j in range(1, nu + 1):
            for i in range(n):  # roll(r, j)_i = r_{(i - j) mod 2d}
                expected[..., (j - 1) * n + i] = r[..., i] * r[..., (i - j) % n]
        assert_close(dpfp(jnp.asarray(x), nu), expected, "float64_exact")


def test_dpfp_rejects_bad_nu():
    with pytest.raises(ValueError, match="nu"):
        dpfp(jnp.ones((2, 3)), 0)
    with pytest.raises(ValueError, match="nu"):
        dpfp(jnp.ones((2, 3)), 6)


def test_layer_norm(x):
    with float64():
        scale, bias = np.linspace(0.5, 1.5, 6), np.linspace(-1, 1, 6)
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        expected = (x - mu) / np.sqrt(var + 1e-5) * scale + bias
        assert_close(layer_norm(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias)), expected,
                     "float64_exact")


def test_favor_plus_formula(x):
    with float64():
        P = np.random.default_rng(1).standard_normal((6, 4))
        u = x @ P
        offset = -0.5 * (x ** 2).sum(-1, keepdims=True)
        expected = (np.concatenate([np.exp(offset + u), np.exp(offset - u)], -1) + 1e-4) / np.sqrt(8)
        assert_close(favor_plus(jnp.asarray(x), jnp.asarray(P)), expected, "float64_exact")


@pytest.mark.parametrize("dim,num_features", [(6, 6), (16, 4), (5, 8)])
def test_favor_plus_projection_structure(dim, num_features):
    P = np.asarray(favor_plus_projection(jax.random.PRNGKey(0), dim, num_features), np.float64)
    assert P.shape == (dim, num_features)
    norms = np.linalg.norm(P, axis=1)
    directions = P / norms[:, None]
    # Rows within one block of `num_features` rows are orthogonal (official construction).
    for start in range(0, dim, num_features):
        block = directions[start:start + num_features]
        np.testing.assert_allclose(block @ block.T, np.eye(len(block)), atol=1e-5)


def test_favor_plus_estimates_the_softmax_kernel():
    """With Gaussian features, E[phi(x) . phi(y)] = exp(x . y) (eps = 0), by Monte Carlo."""
    rng = np.random.default_rng(2)
    x, y = 0.4 * rng.standard_normal(4), 0.4 * rng.standard_normal(4)
    projections = jax.random.normal(jax.random.PRNGKey(3), (4000, 4, 16))
    phi = jax.vmap(lambda P: favor_plus(jnp.stack([x, y]).astype(jnp.float32), P, eps=0.0))(projections)
    samples = np.asarray(jnp.sum(phi[:, 0] * phi[:, 1], axis=-1), np.float64)
    target = np.exp(x @ y)
    stderr = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - target) < TOLERANCES["monte_carlo"]["sigmas"] * stderr, (
        f"mean {samples.mean():.5f} vs exp(x.y) {target:.5f} (stderr {stderr:.2e})")
