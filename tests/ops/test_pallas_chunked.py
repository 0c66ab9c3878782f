"""The chunked Pallas GPU kernels (delta_net, linear_transformer) equal `recurrent`: outputs,
final state and gradients to every input and the initial state. On CPU they run in the
Pallas interpreter (`interpret=True`), so shapes stay small: one whole chunk, a ragged last
chunk (T=40 with C=16, and value blocks narrower than V), and T=1."""

import jax
import pytest
from cases import random_state

from fastweights.ops.delta_net import pallas_gpu_chunked as delta_net_pallas
from fastweights.ops.delta_net import reference as delta_net_ref
from fastweights.ops.linear_transformer import pallas_gpu_chunked as linear_pallas
from fastweights.ops.linear_transformer import reference as linear_ref
from fastweights.testing import assert_close, example_inputs

CHUNK = 16
# (variant, options, time, value dim): T=40 has a ragged last chunk and, with BLOCK_V=16
# below, two value blocks per (batch, head) in the forward kernel.
CASES = [
    ("delta_net", {}, 16, 16),
    ("delta_net", {}, 40, 32),
    ("delta_net", {}, 1, 16),
    ("linear_transformer", {}, 40, 32),
    ("linear_transformer", {}, 1, 16),
    ("linear_transformer", {"normalize": True}, 16, 16),
    ("linear_transformer", {"normalize": True}, 40, 32),
]
MODULES = {"delta_net": (delta_net_pallas, delta_net_ref), "linear_transformer": (linear_pallas, linear_ref)}


def _id(case):
    name, options, time, value_dim = case
    return "-".join([name, *(f"{k}={v}" for k, v in options.items()), f"T{time}", f"V{value_dim}"])


def _values_and_grads(fn, args, state, cotangents):
    """`(outputs, final state)` and the gradients of `<outputs, ct_o> + <state, ct_s>` w.r.t.
    every input and the initial state, in one jitted call."""
    def run(args, state):
        return fn(*args, initial_state=state)

    def both(args, state):
        out, pullback = jax.vjp(run, args, state)
        return out, pullback(cotangents)

    return jax.jit(both)(args, state)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_pallas_chunked_equals_recurrent(case, monkeypatch):
    name, options, time, value_dim = case
    pallas, reference = MODULES[name]
    monkeypatch.setattr(pallas, "BLOCK_V", 16)
    args, _ = example_inputs(name, 30, batch=1, time=time, heads=2, key_dim=16, value_dim=value_dim)
    _, zero_final = reference.recurrent(*args, **options)
    state0 = random_state(jax.random.PRNGKey(31), zero_final)
    expected_out = reference.recurrent(*args, **options, initial_state=state0)
    keys = jax.random.split(jax.random.PRNGKey(32), 3)
    cotangents = (jax.random.normal(keys[0], expected_out[0].shape),
                  type(state0)(*(jax.random.normal(kk, x.shape) for kk, x in zip(keys[1:], expected_out[1]))))

    def kernel(*a, initial_state):
        return getattr(pallas, name)(*a, **options, chunk_size=CHUNK, initial_state=initial_state, interpret=True)

    def oracle(*a, initial_state):
        return reference.recurrent(*a, **options, initial_state=initial_state)

    actual, actual_grads = _values_and_grads(kernel, args, state0, cotangents)
    expected, expected_grads = _values_and_grads(oracle, args, state0, cotangents)
    assert_close(actual, expected, "float32_other_form", name=f"{_id(case)} values")
    assert_close(actual_grads, expected_grads, "float32_other_form_grad", name=f"{_id(case)} gradients")


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the CPU refusal")
@pytest.mark.parametrize("name", list(MODULES))
def test_refuses_without_gpu(name):
    pallas, _ = MODULES[name]
    args, _ = example_inputs(name, 0, batch=1, time=4, heads=1, key_dim=16, value_dim=16)
    reason = pallas.supported(*args)
    assert reason is not None and "GPU" in reason
    with pytest.raises(NotImplementedError, match="GPU"):
        getattr(pallas, name)(*args)


@pytest.mark.parametrize("name", list(MODULES))
def test_refuses_unsupported_shapes(name):
    pallas, _ = MODULES[name]
    args, _ = example_inputs(name, 0, batch=1, time=4, heads=1, key_dim=8, value_dim=16)
    assert "power of two" in pallas.supported(*args, interpret=True)
    with pytest.raises(NotImplementedError, match="power of two"):
        getattr(pallas, name)(*args, interpret=True)
    args, _ = example_inputs(name, 0, batch=1, time=4, heads=1, key_dim=16, value_dim=16)
    assert "chunk_size" in pallas.supported(*args, chunk_size=24, interpret=True)
    assert pallas.supported(*args, interpret=True) is None
    with pytest.raises(NotImplementedError, match="chunk_size"):
        getattr(pallas, name)(*args, chunk_size=8, interpret=True)
