"""The Pallas Mosaic TPU kernels, run in the Pallas interpreter on CPU (`interpret=True`):
outputs, final state and gradients (to every input, the RDN's slow parameters and every
field of the initial state) equal `reference.recurrent`; the kernels lower to Mosaic TPU
custom calls (`jax.export` for the TPU platform, which needs no TPU); unsupported inputs
fail with the reason.

Shapes are tiny: interpret-mode compiles dominate the time of this file.
Ragged lengths cover padding: T = 40 with 16-step chunks (three chunks, the last with 8
padded steps), T = 21 with 16-step time blocks in the sequential kernels (two blocks, 11
masked steps).
"""

import jax
import jax.numpy as jnp
import pytest
from cases import assert_same_values_and_gradients, case_id, make_inputs, random_state

import fastweights as fw
from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.common import sequence
from fastweights.ops.delta_lstm import pallas_tpu_sequential as delta_lstm_kernel
from fastweights.ops.delta_lstm import reference as delta_lstm_ref
from fastweights.ops.delta_net import pallas_gpu_chunked as delta_net_gpu
from fastweights.ops.delta_net import pallas_tpu_chunked as delta_net_chunked_kernel
from fastweights.ops.delta_net import pallas_tpu_sequential as delta_net_kernel
from fastweights.ops.delta_net import reference as delta_net_ref
from fastweights.ops.delta_rnn import pallas_tpu_sequential as delta_rnn_kernel
from fastweights.ops.delta_rnn import reference as delta_rnn_ref
from fastweights.ops.linear_transformer import pallas_tpu_chunked as linear_kernel
from fastweights.ops.linear_transformer import reference as linear_ref
from fastweights.ops.recurrent_delta_net import pallas_tpu_sequential as rdn_kernel
from fastweights.ops.recurrent_delta_net import reference as rdn_ref
from fastweights.testing import assert_close

CHUNK = 16
# form -> (kernel function, its supported(), reference.recurrent)
KERNELS = {
    ("linear_transformer", "pallas_tpu_chunked"): (linear_kernel.linear_transformer, linear_kernel.supported,
                                           linear_ref.recurrent),
    ("delta_net", "pallas_tpu_chunked"): (delta_net_chunked_kernel.delta_net, delta_net_chunked_kernel.supported,
                                  delta_net_ref.recurrent),
    ("delta_net", "pallas_tpu_sequential"): (delta_net_kernel.delta_net, delta_net_kernel.supported,
                                            delta_net_ref.recurrent),
    ("delta_rnn", "pallas_tpu_sequential"): (delta_rnn_kernel.delta_rnn, delta_rnn_kernel.supported, delta_rnn_ref.recurrent),
    ("delta_lstm", "pallas_tpu_sequential"): (delta_lstm_kernel.delta_lstm, delta_lstm_kernel.supported,
                                   delta_lstm_ref.recurrent),
    ("recurrent_delta_net", "pallas_tpu_sequential"): (rdn_kernel.recurrent_delta_net, rdn_kernel.supported,
                                            rdn_ref.recurrent),
}
CHUNKED = {("linear_transformer", "pallas_tpu_chunked"), ("delta_net", "pallas_tpu_chunked")}
# (case, form, time, key dim, value dim). One version per sequential variant: the steps of
# every version are the cells shared with the GPU kernels (tested per version in
# test_pallas_sequential.py); here the TPU row algebra is covered (softmax by the RDN,
# softmax_eps by the Delta RNN v2 and Delta LSTM v4), within the time budget of the suite.
CASES = [
    (("delta_net", {}), "pallas_tpu_chunked", 40, 16, 24),
    (("linear_transformer", {}), "pallas_tpu_chunked", 40, 16, 24),
    (("linear_transformer", {"normalize": True}), "pallas_tpu_chunked", 40, 16, 8),
    (("delta_net", {}), "pallas_tpu_sequential", 21, 8, 16),
    (("delta_rnn", {"version": 2}), "pallas_tpu_sequential", 21, 8, 8),
    (("delta_lstm", {"version": 4}), "pallas_tpu_sequential", 21, 8, 8),
    (("recurrent_delta_net", {}), "pallas_tpu_sequential", 21, 8, 8),
]


def _id(case):
    variant, form, time, key_dim, value_dim = case
    return f"{case_id(variant)}-{form}-T{time}-K{key_dim}-V{value_dim}"


def _kernel_options(name, form):
    return {"chunk_size": CHUNK} if (name, form) in CHUNKED else {}


@pytest.fixture
def small_time_blocks(monkeypatch):
    """16-step time blocks in the sequential kernels, so T = 21 spans two (one ragged)."""
    monkeypatch.setattr(pt, "TIME_BLOCK", 16)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_kernel_equals_recurrent(case, small_time_blocks):
    (name, options), form, time, key_dim, value_dim = case
    kernel, _, reference = KERNELS[name, form]
    args, kwargs = make_inputs((name, options), 30, batch=2, heads=2, time=time, key_dim=key_dim,
                               value_dim=value_dim)
    final_shape = jax.eval_shape(lambda a, kw: reference(*a, **kw, **options), args, kwargs)[1]
    state0 = random_state(jax.random.PRNGKey(31), final_shape)
    extra = _kernel_options(name, form)

    def run_kernel(a, kw, s):
        return kernel(*a, **kw, **options, **extra, initial_state=s, interpret=True)

    def run_reference(a, kw, s):
        return reference(*a, **kw, **options, initial_state=s)

    assert_same_values_and_gradients(run_kernel, run_reference, args, kwargs, state0, _id(case))


def test_bfloat16_inputs(small_time_blocks):
    """bf16 inputs: float32 state inside, bf16 outputs. The sequential kernel computes in
    float32, so it equals the reference up to the final rounding; the chunked kernel's dots
    take bf16 operands (as the MXU would), so it equals the GPU chunked kernel, which runs
    the same per-chunk algebra (`kernel_math.forward_chunk`) on the same operands."""
    args, _ = make_inputs(("delta_net", {}), 33, batch=1, heads=2, time=21, key_dim=16, value_dim=16)
    args = tuple(a.astype(jnp.bfloat16) for a in args)
    expected = {"pallas_tpu_sequential": delta_net_ref.recurrent(*args),
                "pallas_tpu_chunked": delta_net_gpu.delta_net(*args, chunk_size=CHUNK, interpret=True)}
    for form, (expected_out, expected_state) in expected.items():
        kernel = KERNELS["delta_net", form][0]
        out, state = kernel(*args, **_kernel_options("delta_net", form), interpret=True)
        assert out.dtype == jnp.bfloat16 and state.W.dtype == jnp.float32
        assert_close(out, expected_out, "bfloat16_output", name=f"{form} bf16 outputs")
        assert_close(state, expected_state, "float32_other_form", name=f"{form} bf16 final state")


@pytest.mark.parametrize(("name", "form"), list(KERNELS), ids=[f"{n}-{f}" for n, f in KERNELS])
def test_lowers_to_mosaic_tpu(name, form, monkeypatch):
    """Forward and backward kernels lower to Mosaic TPU custom calls for bf16 inputs with a
    ragged length (the Pallas -> Mosaic lowering checks block shapes and the ops used; the
    Mosaic compiler itself needs a TPU and is not run)."""
    monkeypatch.setattr(pt, "on_tpu", lambda: True)
    kernel, _, _ = KERNELS[name, form]
    args, kwargs = make_inputs((name, {}), 0, batch=1, heads=2, time=40, key_dim=16, value_dim=16)
    args = tuple(a.astype(jnp.bfloat16) for a in args)

    def loss(a, kw):
        out, state = kernel(*a, **kw, **_kernel_options(name, form))
        return jnp.sum(out.astype(jnp.float32)) + sum(jnp.sum(x) for x in jax.tree.leaves(state))

    exported = jax.export.export(jax.jit(jax.grad(loss, argnums=(0, 1))), platforms=("tpu",))(args, kwargs)
    assert exported.mlir_module().count("tpu_custom_call") == 2  # one forward, one backward kernel


@pytest.mark.skipif(jax.default_backend() == "tpu", reason="checks the refusal without a TPU")
@pytest.mark.parametrize(("name", "form"), list(KERNELS), ids=[f"{n}-{f}" for n, f in KERNELS])
def test_refuses_without_tpu(name, form):
    kernel, supported, _ = KERNELS[name, form]
    args, kwargs = make_inputs((name, {}), 0, batch=1, heads=1, time=4, key_dim=16, value_dim=16)
    reason = supported(*args, **kwargs)
    assert reason and "needs a TPU" in reason and form in reason
    with pytest.raises(NotImplementedError, match="needs a TPU"):
        kernel(*args, **kwargs)
    with pytest.raises(NotImplementedError, match="needs a TPU"):  # the public function, by name
        fw.VARIANTS[name].fn(*args, **kwargs, implementation=form)


@pytest.mark.parametrize(("name", "form"), list(KERNELS), ids=[f"{n}-{f}" for n, f in KERNELS])
def test_refuses_untileable_shapes(name, form):
    kernel, supported, _ = KERNELS[name, form]
    args, kwargs = make_inputs((name, {}), 0, batch=1, heads=1, time=4, key_dim=12, value_dim=12)
    reason = supported(*args, **kwargs, interpret=True)
    assert reason and "multiple of 8" in reason
    with pytest.raises(NotImplementedError, match="multiple of 8"):
        kernel(*args, **kwargs, interpret=True)
    if (name, form) in CHUNKED:
        args, kwargs = make_inputs((name, {}), 0, batch=1, heads=1, time=4, key_dim=16, value_dim=16)
        assert "chunk_size" in supported(*args, chunk_size=24, interpret=True)
        assert supported(*args, interpret=True) is None
        with pytest.raises(NotImplementedError, match="chunk_size"):
            kernel(*args, chunk_size=8, interpret=True)


def test_auto_order_puts_tpu_kernels_first_on_tpu(monkeypatch):
    monkeypatch.setattr(sequence.jax, "default_backend", lambda: "tpu")
    forms = fw.ops.delta_net.FORMS
    assert sequence.auto_order(forms, 512, 64, jnp.bfloat16) == ("pallas_tpu_chunked", "chunked", "recurrent")
    assert sequence.auto_order(forms, 512, 64, jnp.float32) == ("chunked", "recurrent")
    assert sequence.auto_order(fw.ops.delta_rnn.FORMS, 512, 16, jnp.bfloat16)[0] == "pallas_tpu_sequential"
