"""Every form of every variant equals `recurrent`: values and gradients (to every input and
the initial state), odd lengths, ragged last chunks, carried states."""

import jax
import pytest
from cases import CASES, case_id, cpu_forms, make_inputs, random_state, run, vdot

from fastweights.testing import assert_close

FORM_CASES = [(case, form) for case in CASES for form in cpu_forms(case[0]) if form != "recurrent"]
SHAPES = {  # (time, chunk size): ragged last chunk, exact multiple, one short chunk, T = 1
    "T9-C4": (9, 4), "T63-C16": (63, 16), "T32-C16": (32, 16), "T5-C64": (5, 64), "T1-C8": (1, 8),
}
GRAD_SHAPES = ("T9-C4", "T63-C16", "T1-C8")  # gradients: ragged, several chunks, one step


def _ids(item):
    case, form = item
    return f"{case_id(case)}-{form}"


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("item", FORM_CASES, ids=_ids)
def test_form_equals_recurrent(item, shape):
    case, form = item
    time, chunk = SHAPES[shape]
    args, kwargs = make_inputs(case, 20, batch=2, heads=2, time=time, key_dim=5, value_dim=4)
    _, zero_final = run(case, args, kwargs, implementation="recurrent")
    state0 = random_state(jax.random.PRNGKey(21), zero_final)

    expected = run(case, args, kwargs, state0, implementation="recurrent")
    actual = run(case, args, kwargs, state0, implementation=form, chunk_size=chunk)
    assert_close(actual, expected, "float32_other_form", name=form)
    if shape not in GRAD_SHAPES:
        return

    cotangents = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(22), x.shape, x.dtype), expected)

    def grads(implementation, **options):
        def loss(a, kw, s):
            return vdot(run(case, a, kw, s, implementation=implementation, **options), cotangents)
        return jax.grad(loss, argnums=(0, 1, 2))(args, kwargs, state0)

    assert_close(grads(form, chunk_size=chunk), grads("recurrent"), "float32_other_form_grad",
                 name=f"{form} gradients")

