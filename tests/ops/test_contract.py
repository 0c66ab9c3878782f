"""Contract of every form of every variant: step-by-step equals the scan, splitting the
sequence and carrying the state equals one pass, jit/vmap invariance, the dtype policy,
and long sequences stay finite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES, case_id, make_inputs, random_state, run, run_step_by_step, slice_time

from fastweights import registry
from fastweights.testing import TOLERANCES, assert_close

SMALL = dict(batch=2, heads=2, time=9, key_dim=4, value_dim=4)


def _carried_state(case, args, kwargs, seed):
    _, zero_final = run(case, args, kwargs)
    return random_state(jax.random.PRNGKey(seed), zero_final)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_step_by_step_equals_recurrent(case):
    args, kwargs = make_inputs(case, 1, **SMALL)
    state0 = _carried_state(case, args, kwargs, 2)
    out, final = run(case, args, kwargs, state0)
    step_out, step_final = run_step_by_step(case, args, kwargs, state0)
    assert_close(step_out, out, "float32_same_algebra", name="outputs")
    assert_close(step_final, final, "float32_same_algebra", name="final state")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_split_sequence_equals_one_pass(case):
    args, kwargs = make_inputs(case, 3, **SMALL)
    out, final = run(case, args, kwargs)
    state, pieces = None, []
    for start, stop in [(0, 4), (4, 5), (5, 9)]:  # uneven segments, one of length 1
        piece, state = run(case, slice_time(case, args, start, stop), kwargs, state)
        pieces.append(piece)
    assert_close(jnp.concatenate(pieces, axis=1), out, "float32_same_algebra", name="outputs")
    assert_close(state, final, "float32_same_algebra", name="final state")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_jit_and_vmap_do_not_change_results(case):
    args_a, kwargs = make_inputs(case, 4, **SMALL)
    args_b, _ = make_inputs(case, 5, **SMALL)
    state_a = _carried_state(case, args_a, kwargs, 6)
    state_b = random_state(jax.random.PRNGKey(7), state_a)
    expected_a = run(case, args_a, kwargs, state_a)
    expected_b = run(case, args_b, kwargs, state_b)

    jitted = jax.jit(lambda a, s: run(case, a, kwargs, s))(args_a, state_a)
    assert_close(jitted, expected_a, "float32_same_algebra", name="jit")

    stack = lambda x, y: jnp.stack([x, y])  # noqa: E731
    batched = jax.vmap(lambda a, s: run(case, a, kwargs, s))(
        jax.tree.map(stack, args_a, args_b), jax.tree.map(stack, state_a, state_b))
    assert_close(jax.tree.map(lambda x: x[0], batched), expected_a, "float32_same_algebra", name="vmap[0]")
    assert_close(jax.tree.map(lambda x: x[1], batched), expected_b, "float32_same_algebra", name="vmap[1]")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bfloat16_inputs_give_bfloat16_outputs_and_float32_state(case):
    args, kwargs = make_inputs(case, 8, dtype=jnp.bfloat16, **SMALL)
    out, final = run(case, args, kwargs)
    assert out.dtype == jnp.bfloat16
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(final))
    # The same (bf16-representable) values in float32: only the output rounding may differ.
    to_f32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)  # noqa: E731
    out32, final32 = run(case, to_f32(args), to_f32(kwargs))
    assert_close(out, out32, "bfloat16_output", name="outputs")
    assert_close(final, final32, "float32_same_algebra", name="final state")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float32_state_for_float32_inputs(case):
    args, kwargs = make_inputs(case, 9, **SMALL)
    out, final = run(case, args, kwargs)
    assert out.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(final))


LONG_CASES = [c for c in CASES if registry.get(c[0]).family != "sum"]


@pytest.mark.parametrize("case", LONG_CASES, ids=case_id)
def test_long_sequence_with_paper_feature_maps_stays_finite(case):
    args, kwargs = make_inputs(case, 10, batch=1, heads=2, time=4096, key_dim=8, value_dim=8)
    out, final = run(case, args, kwargs)
    bound = TOLERANCES["long_sequence_bound"]["max_abs"]
    for name, x in [("outputs", out), *(("state", leaf) for leaf in jax.tree.leaves(final))]:
        x = np.asarray(x)
        assert np.all(np.isfinite(x)), f"{name} has non-finite values"
        assert np.abs(x).max() < bound, f"{name} grew to {np.abs(x).max():.3g}"


@pytest.mark.parametrize("name", [n for n, v in registry.VARIANTS.items() if v.family == "recurrent"])
def test_checkpointed_scan_equals_plain_scan(name):
    """Blocks of steps under jax.checkpoint (the memory-saving default of `recurrent`) change
    neither values nor gradients, including a ragged tail."""
    from fastweights.ops.common.sequence import scan_time

    step_fn = registry.get(name).step
    args, kwargs = make_inputs((name, {}), 30, batch=1, heads=2, time=11, key_dim=4, value_dim=4)
    _, zero_final = run((name, {}), args, kwargs)
    state0 = random_state(jax.random.PRNGKey(31), zero_final)

    def loss(args, state, checkpoint_every):
        step = lambda s, *x: step_fn(s, *x, **kwargs)  # noqa: E731
        out, final = scan_time(step, state, args, checkpoint_every=checkpoint_every)
        return jnp.sum(jnp.sin(out)) + sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(final))

    # One compilation per form: the loss and its gradients to the inputs and the state.
    value_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    (plain_loss, plain), (blocked_loss, blocked) = (value_and_grads(args, state0, every) for every in (None, 4))
    for wrt in (0, 1):
        assert_close(blocked[wrt], plain[wrt], "float32_same_algebra", name=f"grad wrt {'inputs state'.split()[wrt]}")
    assert_close(blocked_loss, plain_loss, "float32_same_algebra", name="loss")
