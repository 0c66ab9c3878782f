"""Bad input gets a clear error that names the problem."""

import jax
import jax.numpy as jnp
import pytest
from cases import make_inputs

import fastweights as fw
from fastweights.ops import delta_net, recurrent_delta_net


@pytest.fixture
def dn_inputs():
    args, _ = make_inputs(("delta_net", {}), 0, batch=2, time=5, heads=3, key_dim=4, value_dim=6)
    return args


def test_mismatched_shapes_name_the_array(dn_inputs):
    q, k, v, beta = dn_inputs
    with pytest.raises(ValueError, match=r"delta_net: v .* time T=3 does not match T=5"):
        fw.delta_net(q, k, v[:, :3], beta)
    with pytest.raises(ValueError, match=r"delta_net: beta must have shape \[B, T, H\]"):
        fw.delta_net(q, k, v, beta[..., None])
    with pytest.raises(ValueError, match=r"k .* key dim K=3"):
        fw.delta_net(q, k[..., :3], v, beta)


def test_integer_inputs_are_refused(dn_inputs):
    q, k, v, beta = dn_inputs
    with pytest.raises(TypeError, match="floating-point"):
        fw.delta_net(q, k, v.astype(jnp.int32), beta)


def test_initial_state_is_checked(dn_inputs):
    q, k, v, beta = dn_inputs
    with pytest.raises(ValueError, match=r"initial_state.W must have shape \(2, 3, 4, 6\)"):
        fw.delta_net(q, k, v, beta, initial_state=delta_net.init_state(2, 3, 4, 4))
    with pytest.raises(ValueError, match="initial_state must be a State"):
        fw.delta_net(q, k, v, beta, initial_state=(jnp.zeros((2, 3, 4, 6)), jnp.zeros(2)))
    # A plain tuple or dict with the right fields is accepted.
    out, _ = fw.delta_net(q, k, v, beta, initial_state={"W": jnp.zeros((2, 3, 4, 6))})
    assert out.shape == v.shape


def test_implementations_fail_fast(dn_inputs):
    rnn_args, _ = make_inputs(("delta_rnn", {}), 0, time=3)
    with pytest.raises(NotImplementedError,
                       match="'chunked' does not exist .* available: 'pallas_gpu_sequential', 'pallas_tpu_sequential', 'recurrent'"):
        fw.delta_rnn(*rnn_args, implementation="chunked")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        fw.delta_net(*dn_inputs, implementation="chunked", chunk_size=0)
    with pytest.raises(ValueError, match="unknown implementation 'fast'"):
        fw.delta_net(*dn_inputs, implementation="fast")
    with pytest.raises(ValueError, match="'pallas_gpu' was renamed.*'pallas_gpu_chunked', 'pallas_gpu_sequential'"):
        fw.delta_net(*dn_inputs, implementation="pallas_gpu")


def test_versions_are_checked():
    args, _ = make_inputs(("delta_rnn", {}), 0, time=3)
    with pytest.raises(ValueError, match=r"version must be one of \(1, 2\)"):
        fw.delta_rnn(*args, version=3)
    args, _ = make_inputs(("delta_lstm", {}), 0, time=3)
    with pytest.raises(ValueError, match=r"version must be one of \(1, 2, 3, 4\)"):
        fw.delta_lstm(*args, version=5)
    with pytest.raises(ValueError, match=r"gates G=2 does not match G=3"):
        fw.delta_lstm(*(a[:, :, :, :2] for a in args))


def test_delta_delta_net_value_width():
    q, k, v, beta = make_inputs(("delta_delta_net", {}), 0, time=3)[0]
    with pytest.raises(ValueError, match=r"width 3\*d \+ 1"):
        fw.delta_delta_net(q, k, v[..., :-1], beta)


def test_delta_mlp_layers_must_match_depth():
    (q, k, v, beta, scale, bias), _ = make_inputs(("delta_mlp", {}), 0, time=3, depth=2)
    with pytest.raises(ValueError, match="needs 2\\*depth = 2 key and value arrays, got 4"):
        fw.delta_mlp(q, k, v, beta, scale, bias, depth=1)
    with pytest.raises(ValueError, match="ln_scale"):
        fw.delta_mlp(q, k, v, beta, scale[:1], bias)


def test_recurrent_delta_net_params_and_dims():
    (q, k, v, beta), kw = make_inputs(("recurrent_delta_net", {}), 0, time=3, key_dim=4, value_dim=4)
    with pytest.raises(TypeError, match="R_q, R_k, R_v, r_b|'R_q', 'R_k', 'R_v', 'r_b'"):
        fw.recurrent_delta_net(q, k, v, beta, params={"R_q": kw["params"].R_q})
    with pytest.raises(ValueError, match="R_k"):
        fw.recurrent_delta_net(q, k, v, beta, params=kw["params"]._replace(R_k=kw["params"].R_k[:1]))
    with pytest.raises(ValueError, match="key dim must equal value dim"):
        recurrent_delta_net.init_state(1, 2, 4, 3)
    out, _ = fw.recurrent_delta_net(q, k, v, beta, params=kw["params"]._asdict())
    assert out.shape == q.shape


def test_implementation_none_picks_the_measured_order():
    from fastweights.ops.common.sequence import Form, auto_order, select_implementation

    assert jax.default_backend() == "cpu"
    forms = fw.ops.delta_net.FORMS  # a chunked form and auto GPU/TPU kernels
    assert auto_order(forms, 4, 64, jnp.float32) == ("recurrent",)
    assert auto_order(forms, 64, 64, jnp.bfloat16) == ("chunked", "recurrent")
    assert auto_order(forms, 64, 16, jnp.float32) == ("chunked", "recurrent")
    assert auto_order(forms, 64, 8, jnp.float32) == ("recurrent",)  # d8: the scan
    assert auto_order({"chunked": Form(None, chunked=True, auto=False)}, 64, 64, jnp.float32) == ("recurrent",)
    forms = {"chunked": None, "pallas_gpu_chunked": None, "recurrent": None}
    order = ("pallas_gpu_chunked", "chunked", "recurrent")
    assert select_implementation("op", None, forms, order=order) == "pallas_gpu_chunked"
    # A form whose `supported` check gives a reason is passed over by None...
    refuse = {"pallas_gpu_chunked": lambda: "needs a GPU"}
    assert select_implementation("op", None, forms, order=order, supported=refuse) == "chunked"
    # ...but a named one is returned as asked, and then fails with its own reason.
    assert select_implementation("op", "pallas_gpu_chunked", forms, order=order, supported=refuse) == "pallas_gpu_chunked"
    q, k, v, beta = make_inputs(("delta_net", {}), 0, time=20, key_dim=16, value_dim=16)[0]
    with pytest.raises(NotImplementedError, match="needs a GPU"):
        fw.delta_net(q, k, v, beta, implementation="pallas_gpu_chunked")
    out, _ = fw.delta_net(q, k, v, beta)  # None on CPU: the chunked form, no error
    assert out.shape == v.shape
