"""Every variant against an independent float64 NumPy loop written from PAPER_SPEC.md,
with and without a carried initial state, on ordinary and odd shapes."""

import jax
import pytest
from cases import CASES, case_id, cpu_forms, make_inputs, random_state, run, run_numpy

from fastweights.testing import assert_close

FORM_CASES = [(case, form) for case in CASES for form in cpu_forms(case[0])]

SHAPES = {
    "T7": dict(time=7, key_dim=4, value_dim=4),
    "T1": dict(time=1, key_dim=3, value_dim=3),
    "T63-K6-V5": dict(time=63, key_dim=6, value_dim=5),  # K != V (the RDN keeps K = V)
}


@pytest.mark.parametrize("carry", [False, True], ids=["zero-state", "carried-state"])
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("item", FORM_CASES, ids=lambda item: f"{case_id(item[0])}-{item[1]}")
def test_matches_numpy_float64(item, shape, carry):
    case, form = item
    args, kwargs = make_inputs(case, 0, batch=2, heads=2, **SHAPES[shape])
    initial_state = None
    if carry:
        _, zero_final = run(case, args, kwargs)
        initial_state = random_state(jax.random.PRNGKey(1), zero_final)
    options = dict(chunk_size=16) if form == "chunked" else {}
    out, final = run(case, args, kwargs, initial_state, implementation=form, **options)
    ref_out, ref_final = run_numpy(case, args, kwargs, initial_state)
    assert_close(out, ref_out, "float32_vs_float64", name="outputs")
    assert_close(final._asdict(), ref_final, "float32_vs_float64", name="final state")
