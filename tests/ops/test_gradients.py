"""Float64 finite-difference checks of the gradients with respect to every input, the
slow recurrent parameters (RDN), the inner LayerNorm parameters (Delta MLP) and the
initial state, with random cotangents on both the outputs and the final state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES, case_id, make_inputs, random_state, run, vdot

from fastweights.testing import assert_close, float64

EPS = 1e-6


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gradients_match_finite_differences(case):
    with float64():
        args, kwargs = make_inputs(case, 11, batch=1, heads=2, time=5, key_dim=3, value_dim=3,
                                   dtype=jnp.float64)
        _, zero_final = run(case, args, kwargs)
        state0 = random_state(jax.random.PRNGKey(12), zero_final)
        out, final = run(case, args, kwargs, state0)
        cotangents = _random_like(jax.random.PRNGKey(13), (out, final))

        @jax.jit
        def loss(args, kwargs, state0):
            return vdot(run(case, args, kwargs, state0), cotangents)

        primals = (args, kwargs, state0)
        grads = jax.grad(loss, argnums=(0, 1, 2))(*primals)
        groups = [(f"args[{i}]", (0, i)) for i in range(len(args))]
        groups += [("params", (1, None))] if kwargs else []
        groups += [("initial_state", (2, None))]
        for g, (name, (slot, index)) in enumerate(groups):
            def select(tree):
                part = tree[slot]
                return part if index is None else part[index]

            direction = _random_like(jax.random.PRNGKey(100 + g), select(primals))

            def shifted(sign):
                moved = list(primals)
                new = jax.tree.map(lambda x, u: x + sign * EPS * u, select(primals), direction)
                if index is None:
                    moved[slot] = new
                else:
                    moved[slot] = tuple(new if i == index else a for i, a in enumerate(primals[slot]))
                return loss(*moved)

            numeric = (shifted(1.0) - shifted(-1.0)) / (2 * EPS)
            analytic = vdot(select(grads), direction)
            assert np.abs(analytic) > 1e-8, f"{name}: gradient is zero"
            assert_close(analytic, numeric, "finite_difference_float64", name=f"d loss / d {name}")
