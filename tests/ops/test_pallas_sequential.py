"""The fused sequential Pallas (Triton) kernels, run in interpret mode on CPU: values, final
state and gradients (to every input, the RDN's slow parameters and every field of the
initial state) equal `reference.recurrent`; unsupported inputs fail with the reason."""

import jax
import jax.numpy as jnp
import pytest
from cases import assert_same_values_and_gradients, case_id, make_inputs, random_state

from fastweights.ops.delta_lstm import pallas_gpu_sequential as delta_lstm_kernel
from fastweights.ops.delta_lstm import reference as delta_lstm_ref
from fastweights.ops.delta_net import pallas_gpu_sequential as delta_net_kernel
from fastweights.ops.delta_net import reference as delta_net_ref
from fastweights.ops.delta_rnn import pallas_gpu_sequential as delta_rnn_kernel
from fastweights.ops.delta_rnn import reference as delta_rnn_ref
from fastweights.ops.recurrent_delta_net import pallas_gpu_sequential as rdn_kernel
from fastweights.ops.recurrent_delta_net import reference as rdn_ref
from fastweights.testing import assert_close

# name -> (kernel function, its supported(), reference.recurrent)
KERNELS = {
    "delta_net": (delta_net_kernel.delta_net, delta_net_kernel.supported, delta_net_ref.recurrent),
    "delta_rnn": (delta_rnn_kernel.delta_rnn, delta_rnn_kernel.supported, delta_rnn_ref.recurrent),
    "delta_lstm": (delta_lstm_kernel.delta_lstm, delta_lstm_kernel.supported,
                   delta_lstm_ref.recurrent),
    "recurrent_delta_net": (rdn_kernel.recurrent_delta_net, rdn_kernel.supported, rdn_ref.recurrent),
}
CASES = [
    ("delta_net", {}),
    ("delta_rnn", {"version": 1}),
    ("delta_rnn", {"version": 2}),
    ("delta_lstm", {"version": 1}),
    ("delta_lstm", {"version": 4}),
    ("recurrent_delta_net", {}),
]
# (batch, time): several steps with two sequences per head (the RDN's parameter gradients
# are summed over the batch) for every case; one step (nothing to revert but the last write)
# for the RDN only, as the reversal is shared code and interpret-mode compiles are slow.
SHAPES = {"B2-T7": (2, 7), "B1-T1": (1, 1)}
ONE_STEP_CASES = [CASES[5]]
D = 16  # the smallest head dim the Triton backend takes


@pytest.mark.parametrize(("case", "shape"), [(c, "B2-T7") for c in CASES] + [(c, "B1-T1") for c in ONE_STEP_CASES],
                         ids=lambda x: x if isinstance(x, str) else case_id(x))
def test_kernel_equals_recurrent(case, shape):
    name, options = case
    kernel, _, reference = KERNELS[name]
    batch, time = SHAPES[shape]
    args, kwargs = make_inputs(case, 30, batch=batch, heads=2, time=time, key_dim=D, value_dim=D)
    final_shape = jax.eval_shape(lambda a, kw: reference(*a, **kw, **options), args, kwargs)[1]
    state0 = random_state(jax.random.PRNGKey(31), final_shape)

    def run_kernel(a, kw, s):
        return kernel(*a, **kw, **options, initial_state=s, interpret=True)

    def run_reference(a, kw, s):
        return reference(*a, **kw, **options, initial_state=s)

    assert_same_values_and_gradients(run_kernel, run_reference, args, kwargs, state0, name)


@pytest.mark.parametrize("name", list(KERNELS))
def test_unsupported_raises_with_reason(name):
    kernel, supported, _ = KERNELS[name]
    args, kwargs = make_inputs((name, {}), 0, batch=1, heads=1, time=2, key_dim=D, value_dim=D)
    if jax.default_backend() != "gpu":  # no GPU and not interpreted
        reason = supported(*args, **kwargs)
        assert reason and "GPU" in reason
        with pytest.raises(NotImplementedError, match="GPU"):
            kernel(*args, **kwargs)
    # Head dims that Triton cannot tile: not a power of two, or below 16.
    for dim in (12, 8):
        small, small_kw = make_inputs((name, {}), 0, batch=1, heads=1, time=2, key_dim=dim, value_dim=dim)
        reason = supported(*small, **small_kw, interpret=True)
        assert reason and "power of two" in reason
        with pytest.raises(NotImplementedError, match="power of two"):
            kernel(*small, **small_kw, interpret=True)


def test_bfloat16_inputs():
    """bf16 inputs: float32 state inside, bf16 outputs equal to the reference's rounding."""
    args, _ = make_inputs(("delta_net", {}), 33, batch=1, heads=2, time=5, key_dim=D, value_dim=D)
    args = tuple(a.astype(jnp.bfloat16) for a in args)
    out, state = delta_net_kernel.delta_net(*args, interpret=True)
    expected_out, expected_state = delta_net_ref.recurrent(*args)
    assert out.dtype == jnp.bfloat16 and state.W.dtype == jnp.float32
    assert_close(out, expected_out, "bfloat16_output", name="bf16 outputs")
    assert_close(state, expected_state, "float32_other_form", name="bf16 final state")
