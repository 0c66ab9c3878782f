"""V-trace against a float64 NumPy recursion of the IMPALA paper's formulas, against rlax,
and on-policy against discounted n-step returns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastweights.rl import vtrace as vt
from fastweights.testing import assert_close
from rl_reference import log_softmax, numpy_vtrace

B, T, A = 3, 7, 4


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    log_rhos = rng.normal(0.0, 1.0, (B, T)).astype(np.float32)      # rhos on both sides of 1
    discounts = (0.9 * (rng.random((B, T)) > 0.25)).astype(np.float32)  # some episode ends
    rewards = rng.normal(0.0, 1.0, (B, T)).astype(np.float32)
    values = rng.normal(0.0, 1.0, (B, T)).astype(np.float32)
    bootstrap = rng.normal(0.0, 1.0, (B,)).astype(np.float32)
    return log_rhos, discounts, rewards, values, bootstrap


@pytest.mark.parametrize("clips", [{}, dict(clip_rho=2.0, clip_c=0.5, clip_pg_rho=None)])
def test_vtrace_matches_numpy_recursion(clips):
    inputs = _inputs()
    rhos = np.exp(inputs[0])
    assert (rhos > 2.0).any() and ((rhos > 1.0) & (rhos < 2.0)).any() and (rhos < 0.5).any()
    assert (inputs[1] == 0).any()
    got = vt.vtrace(*inputs, **clips)
    vs, adv = numpy_vtrace(*inputs, **clips)
    assert got.vs.dtype == jnp.float32 and got.vs.shape == (B, T)
    assert_close(got.vs, vs, "float32_vs_float64", name="vs")
    assert_close(got.pg_advantages, adv, "float32_vs_float64", name="pg_advantages")


def test_vtrace_matches_rlax():
    rlax = pytest.importorskip("rlax")
    log_rhos, discounts, rewards, values, bootstrap = _inputs(1)
    values_next = np.concatenate([values[:, 1:], bootstrap[:, None]], axis=1)
    # rlax: one trajectory, time-indexed v_tm1 / v_t, importance weights (not logs), c-bar = 1.
    out = jax.vmap(lambda v, vn, r, d, rho: rlax.vtrace_td_error_and_advantage(v, vn, r, d, rho))(
        values, values_next, rewards, discounts, np.exp(log_rhos))
    got = vt.vtrace(log_rhos, discounts, rewards, values, bootstrap)
    assert_close(got.vs, out.errors + values, "float32_same_algebra", name="vs")
    assert_close(got.pg_advantages, out.pg_advantage, "float32_same_algebra", name="pg_advantages")


def test_on_policy_vs_are_discounted_returns():
    _, _, rewards, values, bootstrap = _inputs(2)
    gamma = 0.9
    discounts = np.full((B, T), gamma, np.float32)
    got = vt.vtrace(np.zeros((B, T), np.float32), discounts, rewards, values, bootstrap)
    # rho = c = 1: vs_t = sum_k gamma^k r_{t+k} + gamma^(T-t) V(x_T), whatever the values.
    returns = np.array([[sum(gamma ** (k - t) * float(rewards[b, k]) for k in range(t, T))
                         + gamma ** (T - t) * float(bootstrap[b]) for t in range(T)] for b in range(B)])
    assert_close(got.vs, returns, "float32_vs_float64", name="vs")


def test_from_logits_and_no_gradient_through_targets():
    rng = np.random.default_rng(3)
    behaviour = rng.normal(size=(B, T, A)).astype(np.float32)
    target = rng.normal(size=(B, T, A)).astype(np.float32)
    actions = rng.integers(0, A, (B, T)).astype(np.int32)
    _, discounts, rewards, values, bootstrap = _inputs(3)

    pick = lambda lp: np.take_along_axis(lp, actions[..., None], -1)[..., 0]  # noqa: E731
    expected_log_rhos = pick(log_softmax(target)) - pick(log_softmax(behaviour))
    returns, log_rhos = vt.vtrace_from_logits(behaviour, target, actions, discounts, rewards, values, bootstrap)
    assert_close(log_rhos, expected_log_rhos, "float32_vs_float64", name="log_rhos")
    vs, adv = numpy_vtrace(expected_log_rhos, discounts, rewards, values, bootstrap)
    assert_close(returns.vs, vs, "float32_vs_float64", name="vs")
    assert_close(returns.pg_advantages, adv, "float32_vs_float64", name="pg_advantages")

    def total(target, values):
        out, _ = vt.vtrace_from_logits(behaviour, target, actions, discounts, rewards, values, bootstrap)
        return out.vs.sum() + out.pg_advantages.sum()

    grads = jax.grad(total, argnums=(0, 1))(target, values)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in grads)


def test_shape_errors():
    log_rhos, discounts, rewards, values, bootstrap = _inputs()
    with pytest.raises(ValueError, match="rewards has shape"):
        vt.vtrace(log_rhos, discounts, rewards[:, :-1], values, bootstrap)
    with pytest.raises(ValueError, match="bootstrap_value must be"):
        vt.vtrace(log_rhos, discounts, rewards, values, bootstrap[:, None])
    with pytest.raises(ValueError, match="log_rhos must be"):
        vt.vtrace(log_rhos[0], discounts[0], rewards[0], values[0], bootstrap[0])
