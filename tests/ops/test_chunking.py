"""The pieces of the chunked forms against plain formulas: the unit-lower-triangular
inverse, the WY transform and the chunk scan with their hand-written backward passes, and
batch groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import assert_same_values_and_gradients, random_state, vdot

from fastweights.ops.common import chunking
from fastweights.ops.delta_net import chunked as delta_net_chunked
from fastweights.ops.delta_net import reference as delta_net_reference
from fastweights.ops.linear_transformer import chunked as lt_chunked
from fastweights.ops.linear_transformer import reference as lt_reference
from fastweights.testing import assert_close, example_inputs, float64


def _normal(rng, *shape, scale=1.0):
    return jnp.asarray(scale * rng.standard_normal(shape))


@pytest.mark.parametrize("size", [6, 37, 40])  # substitution only; halving with odd and even splits
def test_unit_lower_inverse_and_its_gradient(size):
    with float64():
        rng = np.random.default_rng(size)
        lower = jnp.tril(_normal(rng, 3, size, size, scale=0.5 / np.sqrt(size)), -1)
        eye = jnp.broadcast_to(jnp.eye(size), lower.shape)
        assert_close(chunking.unit_lower_inverse(lower), np.linalg.inv(np.asarray(eye + lower)), "float64_exact_solve")
        cotangent = _normal(rng, 3, size, size)
        ours = jax.grad(lambda m: vdot(chunking.unit_lower_inverse(m), cotangent))(lower)
        dense = jax.grad(lambda m: vdot(jnp.linalg.inv(eye + jnp.tril(m, -1)), cotangent))(lower)
        assert_close(ours, dense, "float64_exact_solve")


def test_wy_representation_and_its_gradient():
    def dense(k, beta, v):  # the definition, with a dense inverse and autodiff
        gram = k @ jnp.swapaxes(k, -1, -2)
        eye = jnp.broadcast_to(jnp.eye(k.shape[-2]), gram.shape)
        t_inv = jnp.linalg.inv(eye + jnp.tril(beta[..., :, None] * gram, -1))
        return t_inv @ (beta[..., None] * k), t_inv @ (beta[..., None] * v)

    with float64():
        rng = np.random.default_rng(1)
        k, v = _normal(rng, 2, 3, 7, 5, scale=0.4), _normal(rng, 2, 3, 7, 4)
        beta = jax.nn.sigmoid(_normal(rng, 2, 3, 7))
        cotangents = (_normal(rng, 2, 3, 7, 5), _normal(rng, 2, 3, 7, 4))
        assert_close(delta_net_chunked.wy_representation(k, beta, v), dense(k, beta, v), "float64_exact_solve")
        grads = [jax.grad(lambda *a, f=f: vdot(f(*a), cotangents), argnums=(0, 1, 2))(k, beta, v)
                 for f in (delta_net_chunked.wy_representation, dense)]
        assert_close(grads[0], grads[1], "float64_exact_solve", name="wy gradients")


@pytest.mark.parametrize("rule", ["delta_rule", "sum_rule", "gated_delta_rule"])
def test_chunk_scan_and_its_gradient(rule):
    def loop(q, k, w, u_in, attn, state, decay=None):  # chunk by chunk, differentiated by autodiff
        outputs = []
        for n in range(q.shape[0]):
            u = u_in[n] if w is None else u_in[n] - w[n] @ state
            outputs.append(q[n] @ state + attn[n] @ u)
            kept = state if decay is None else decay[n][..., None, None] * state
            state = kept + jnp.swapaxes(k[n], -1, -2) @ u
        return jnp.stack(outputs), state

    with float64():
        rng = np.random.default_rng(2)
        N, B, H, C, K, V = 3, 2, 2, 4, 5, 3
        q, k = _normal(rng, N, B, H, C, K), _normal(rng, N, B, H, C, K, scale=0.3)
        w = None if rule == "sum_rule" else _normal(rng, N, B, H, C, K, scale=0.3)
        u_in, attn, state = _normal(rng, N, B, H, C, V), _normal(rng, N, B, H, C, C), _normal(rng, B, H, K, V)
        args = (q, k, w, u_in, attn, state)
        if rule == "gated_delta_rule":
            args += (jnp.asarray(rng.uniform(0.2, 1.0, (N, B, H))),)
        assert_close(chunking.chunk_scan(*args), loop(*args), "float64_exact")
        cotangents = (_normal(rng, N, B, H, C, V), _normal(rng, B, H, K, V))
        argnums = tuple(i for i in range(len(args)) if args[i] is not None)
        grads = [jax.grad(lambda *a, f=f: vdot(f(*a), cotangents), argnums=argnums)(*args)
                 for f in (chunking.chunk_scan, loop)]
        assert_close(grads[0], grads[1], "float64_exact", name="chunk scan gradients")


@pytest.mark.parametrize("variant", ["delta_net", "linear_transformer"])
def test_batch_groups_equal_one_pass(variant):
    # Batch 5 in groups of 2: two mapped groups and a smaller last one, with a carried state.
    args, kwargs = example_inputs(variant, 3, batch=5, time=11, heads=2, key_dim=4, value_dim=3)
    chunked, reference, options = {
        "delta_net": (delta_net_chunked, delta_net_reference, {}),
        "linear_transformer": (lt_chunked, lt_reference, {"normalize": True}),
    }[variant]

    def grouped(a, kw, s):
        return chunked.chunked(*a, **options, chunk_size=4, batch_group=2, initial_state=s)

    def plain(a, kw, s):
        return reference.recurrent(*a, **options, initial_state=s)

    zeros = reference.init_state(5, 2, 4, 3)
    state0 = random_state(jax.random.PRNGKey(4), zeros)
    assert_same_values_and_gradients(grouped, plain, args, kwargs, state0, f"{variant} in batch groups")


def test_batch_group_size():
    # The CPU rule: the largest divisor of the batch with about 2^18 elements per input array.
    assert chunking.cpu_group_size(8, 2 ** 18) == 1
    assert chunking.cpu_group_size(96, 2 ** 15) == 8
    assert chunking.cpu_group_size(7, 2 ** 16) == 1       # divisors of 7 up to 4
    assert chunking.cpu_group_size(2, 40) == 2
    assert jax.device_count() > 1                          # conftest: 8 CPU devices
    assert chunking.batch_group_size(8, 2 ** 18) == 8     # several devices: never grouped by default
    assert chunking.batch_group_size(8, 2 ** 18, 3) == 3
    assert chunking.batch_group_size(2, 2 ** 18, 5) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_group_size must be a positive int"):
            chunking.batch_group_size(8, 16, bad)
