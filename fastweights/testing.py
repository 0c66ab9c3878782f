"""Test and benchmark helpers: the one tolerance table, `assert_close`, and input factories
that produce what each op receives from its layer (feature-mapped, normalised, sigmoided).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fastweights import registry
from fastweights.ops.common.spec import Dims, Draw

# The only place tolerances live. Each entry: what is compared, and why this bound.
# `atol` is in units of the expected leaf's RMS magnitude when that exceeds 1: float32
# rounding follows the size of the terms summed, not of one (possibly cancelled) result.
TOLERANCES: Mapping[str, Mapping[str, float]] = {
    # float32 op against an independent float64 NumPy loop (PAPER_SPEC equations), T <= 64.
    "float32_vs_float64": dict(rtol=1e-5, atol=1e-5),
    # Two float32 evaluations of the same algebra (step-by-step vs scan, split vs one pass,
    # jit/vmap vs eager): only summation order and fusion may differ.
    "float32_same_algebra": dict(rtol=1e-6, atol=1e-6),
    # Another form (chunked, kernels) against `recurrent` in float32: the same algebra in a
    # different summation order (triangular solves, chunk sums); gradients twice as loose.
    "float32_other_form": dict(rtol=1e-5, atol=1e-5),
    "float32_other_form_grad": dict(rtol=2e-5, atol=2e-5),
    # bfloat16 inputs: the state is float32, so outputs differ from the float32 run only by
    # the final rounding to bfloat16 (unit roundoff 2^-8).
    "bfloat16_output": dict(rtol=2.0 ** -8, atol=1e-6),
    # float64 analytic gradient (autodiff) against a central finite difference, eps = 1e-6.
    "finite_difference_float64": dict(rtol=1e-6, atol=1e-9),
    # Feature maps against their NumPy formulas in float64: exact up to rounding.
    "float64_exact": dict(rtol=1e-12, atol=1e-14),
    # float64 triangular inverses (and the WY transform) against dense solves: exact up to the
    # conditioning of small systems (up to 40 x 40).
    "float64_exact_solve": dict(rtol=1e-10, atol=1e-12),
    # Monte Carlo estimates: |mean - target| within this many standard errors.
    "monte_carlo": dict(sigmas=4.0),
    # Long sequences with the paper's feature maps: the fast weights stay bounded by the values.
    "long_sequence_bound": dict(max_abs=1e3),
    # Atari frames: ale-py's OpenCV INTER_AREA resize (float32 sums) against a float64 NumPy one:
    # a value within rounding of a half grey level may round the other way (measured: 0.04%).
    "area_resize_uint8": dict(max_abs=1.0, max_fraction=0.01),
}


def assert_close(actual: Any, expected: Any, tolerance: str, *, name: str = "") -> None:
    """Asserts every leaf of `actual` is close to `expected` under `TOLERANCES[tolerance]`,
    reporting the max absolute error and relative RMSE of the worst leaf."""
    tol = TOLERANCES[tolerance]
    actual_leaves, actual_def = jax.tree.flatten(actual)
    expected_leaves, expected_def = jax.tree.flatten(expected)
    if len(actual_leaves) != len(expected_leaves):
        raise AssertionError(f"{name}: structures differ: {actual_def} vs {expected_def}")
    for i, (a, e) in enumerate(zip(actual_leaves, expected_leaves)):
        a = np.asarray(a, np.float64)
        e = np.asarray(e, np.float64)
        label = f"{name}[leaf {i}]" if len(actual_leaves) > 1 else name
        if a.shape != e.shape:
            raise AssertionError(f"{label}: shape {a.shape} != expected {e.shape}")
        if not np.all(np.isfinite(a)):
            raise AssertionError(f"{label}: non-finite values")
        err = np.abs(a - e)
        rms = np.sqrt(np.mean(e ** 2)) if e.size else 0.0
        rel_rmse = np.sqrt(np.mean(err ** 2)) / max(rms, 1e-30) if e.size else 0.0
        np.testing.assert_allclose(
            a, e, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, rms),
            err_msg=f"{label} ({tolerance}: max abs err {err.max(initial=0):.3e}, rel RMSE {rel_rmse:.3e})")


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Enables float64 in JAX inside the block (jax.enable_x64 on every supported release)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # older releases
        from jax.experimental import enable_x64 as enable
    with enable(True):
        yield


def example_inputs(name: str, seed: int = 0, *, batch: int = 2, time: int = 8, heads: int = 2,
                   key_dim: int = 4, value_dim: int = 5, dtype=jnp.float32,
                   depth: int = 1, **_options: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Random inputs for variant `name`, as its layer would produce them with the paper's
    feature maps: `(args, kwargs)` such that `fn(*args, **kwargs)` runs (the variant's
    `SPEC.example_inputs`).

    Drawn with NumPy on the host (no compilation, deterministic in `seed`). `value_dim` is
    the output width of every variant: the Delta Delta Net gets values of width
    `3 * value_dim + 1`; the Delta MLP uses `key_dim` as the query width d and `value_dim`
    as the fast hidden width f; a variant with `equal_key_value_dims` (the RDN) needs
    `key_dim == value_dim`. Extra keyword options (e.g. `version`) are ignored here.
    """
    variant = registry.get(name)
    if not variant.has_core:
        raise ValueError(f"example_inputs: {name!r} has no functional core")
    if variant.equal_key_value_dims and key_dim != value_dim:
        raise ValueError(f"{variant.name} needs key_dim == value_dim")
    return variant.example_inputs(Draw(seed, dtype), Dims(batch, time, heads, key_dim, value_dim, depth))


def slice_time(name: str, args: tuple[Any, ...], start: int, stop: int) -> tuple[Any, ...]:
    """`args` of variant `name` with the per-step inputs restricted to steps `[start, stop)`."""
    per_step, rest = registry.get(name).split_time_inputs(args)
    return (*jax.tree.map(lambda a: a[:, start:stop], per_step), *rest)


@functools.lru_cache(maxsize=None)
def _jitted_step(name: str, option_items: tuple[tuple[str, Any], ...]):
    step, options = registry.get(name).step, dict(option_items)
    return jax.jit(lambda state, x_t, rest, kwargs: step(state, *x_t, *rest, **options, **kwargs))


def step_by_step(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], state: Any,
                 **options: Any) -> tuple[jax.Array, Any]:
    """Runs the variant's `step` token by token in a Python loop (one jitted call per step):
    the streaming form that every sequence form must equal."""
    variant = registry.get(name)
    per_step, rest = variant.split_time_inputs(args)
    step = _jitted_step(variant.name, tuple(sorted(variant.step_options(options).items())))
    outputs = []
    for t in range(jax.tree.leaves(args[0])[0].shape[1]):
        x_t = jax.tree.map(lambda a: a[:, t], per_step)
        state, o = step(state, x_t, rest, dict(kwargs))
        outputs.append(o)
    return jnp.stack(outputs, axis=1), state
