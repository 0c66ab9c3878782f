"""The variant cases every contract test runs over, and small helpers to call them."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import numpy_reference
from fastweights import registry
from fastweights.testing import example_inputs, step_by_step
from fastweights.testing import slice_time as _slice_time

# (variant, options): every core with every option set its spec lists (every version, both
# normaliser settings, two depths, ...).
CASES: list[tuple[str, dict[str, Any]]] = [
    (name, dict(options)) for name, variant in registry.VARIANTS.items() if variant.has_core
    for options in variant.cases]


def cpu_forms(name: str) -> tuple[str, ...]:
    """The forms of `name` that run on this CPU (the Pallas kernels have their own
    interpret-mode tests: tests/ops/test_pallas_*.py)."""
    return tuple(n for n, form in registry.get(name).implementations.items() if form.backend is None)


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, options = case
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


def make_inputs(case, seed=0, **shape):
    """`(args, kwargs)` for a case; a core that needs equal key and value dims (the RDN)
    gets value_dim = key_dim."""
    name, options = case
    if registry.get(name).equal_key_value_dims:
        shape["value_dim"] = shape.get("key_dim", 4)
    return example_inputs(name, seed, **shape, **options)


def run(case, args, kwargs, initial_state=None, **extra):
    """Calls the public function of the case."""
    name, options = case
    return registry.get(name).fn(*args, **kwargs, **options, initial_state=initial_state, **extra)


def run_numpy(case, args, kwargs, initial_state=None):
    """The independent float64 NumPy loop of the case."""
    name, options = case
    state = None if initial_state is None else initial_state._asdict()
    return getattr(numpy_reference, name)(*args, **kwargs, **options, state=state)


def random_state(key, like, scale=0.5):
    """A random state with the structure and shapes of `like` (the normaliser `z`, a sum
    of positive keys, is kept positive)."""
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    new = [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    state = jax.tree.unflatten(treedef, new)
    if hasattr(state, "z"):
        state = state._replace(z=jnp.abs(state.z) + 1.0)
    return state


def run_step_by_step(case, args, kwargs, state):
    """Runs the variant's `step` token by token."""
    name, options = case
    return step_by_step(name, args, kwargs, state, **options)


def slice_time(case, args, start, stop):
    """The case's `args` with the per-step inputs restricted to steps `[start, stop)`."""
    return _slice_time(case[0], args, start, stop)


def vdot(a, b):
    """Sum of the elementwise products of two pytrees with the same structure."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def assert_same_values_and_gradients(run_kernel, run_reference, args, kwargs, state0, name):
    """`run_*(args, kwargs, state) -> (outputs, final state)`: equal values, and equal
    gradients of a random projection of every output and final-state field with respect to
    the inputs and the initial state (tolerances of another form against `recurrent`)."""
    from fastweights.testing import assert_close
    leaves, treedef = jax.tree.flatten(jax.eval_shape(run_reference, args, kwargs, state0))
    keys = jax.random.split(jax.random.PRNGKey(32), len(leaves))
    cotangents = jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])

    def values_and_grads(fn):
        # One jit per side (interpret-mode compiles dominate the test time), values as aux.
        def loss(a, kw, s):
            result = fn(a, kw, s)
            return vdot(result, cotangents), result
        (_, result), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(args, kwargs, state0)
        return result, grads

    actual, actual_grads = values_and_grads(run_kernel)
    expected, expected_grads = values_and_grads(run_reference)
    assert_close(actual, expected, "float32_other_form", name=f"{name} values")
    assert_close(actual_grads, expected_grads, "float32_other_form_grad", name=f"{name} gradients")
