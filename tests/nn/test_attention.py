"""SoftmaxAttention: against a float64 NumPy loop of windowed causal softmax attention written
from the formulas (PAPER_SPEC 2.1), streaming in segments and token by token, parameter
counts, axis names; everything runs under jit (eager adds only per-op compilations)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights.nn.attention import AttentionState, SoftmaxAttention
from fastweights.nn.common import logical_axes
from fastweights.testing import assert_close

# (model_dim, heads, head_dim): H*d != D for "lm" to catch head-layout mix-ups.
SHAPES = {"lm": (12, 2, 5), "pytorch": (12, 3, 4)}
B, T = 2, 8


def _make(layout, window, seed=0):
    """A layer whose parameters (biases included) are all random N(0, 0.5), so that the
    attention is far from uniform and every parameter matters. Built abstractly and filled
    from NumPy: no per-shape compilation of random ops."""
    D, H, d = SHAPES[layout]
    module = nnx.eval_shape(lambda: SoftmaxAttention(D, H, d, window=window, layout=layout,
                                                     rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype),
                          nnx.state(module, nnx.Param))
    nnx.update(module, params)
    return module


@nnx.jit
def _forward(module, x, xq, state=None):
    return module(x, state, query_input=xq)


def _inputs(layout, seed=0, time=T):
    D = SHAPES[layout][0]
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((B, time, D)), jnp.float32),
            jnp.asarray(rng.standard_normal((B, time, D)), jnp.float32))


def _numpy_attention(module, x, xq, window):
    """Windowed causal softmax attention in float64 from the official flat weight layouts."""
    x, xq = np.asarray(x, np.float64), np.asarray(xq, np.float64)
    D, H, d = module.model_dim, module.num_heads, module.head_dim
    get = lambda a: np.asarray(a[...], np.float64)  # noqa: E731
    if module.layout == "lm":
        # q_net [D, H*d]; kv_net [D, 2*H*d] chunked into [all-K | all-V]; o_net [H*d, D].
        wq = get(module.q_net.kernel).reshape(D, H * d)
        wkv = get(module.kv_net.kernel).reshape(D, 2 * H * d)
        wo = get(module.o_net.kernel).reshape(H * d, D)
        q, kv = xq @ wq, x @ wkv
        k, v = kv[..., :H * d], kv[..., H * d:]
        out_bias = np.zeros(D)
    else:
        # torch in_proj_weight [3D, D] (rows q|k|v), in_proj_bias [3D]; out_proj [D, D] + bias.
        w_in = get(module.in_proj.kernel).reshape(D, 3 * D).T
        b_in = get(module.in_proj.bias).reshape(3 * D)
        q = xq @ w_in[:D].T + b_in[:D]
        k = x @ w_in[D:2 * D].T + b_in[D:2 * D]
        v = x @ w_in[2 * D:].T + b_in[2 * D:]
        wo = get(module.out_proj.kernel).reshape(D, D)
        out_bias = get(module.out_proj.bias)
    nb, nt = x.shape[:2]
    heads = np.zeros((nb, nt, H * d))
    for b in range(nb):
        for h in range(H):
            cols = slice(h * d, (h + 1) * d)
            for t in range(nt):
                js = range(max(0, t - window + 1), t + 1)
                s = np.array([q[b, t, cols] @ k[b, j, cols] for j in js]) / math.sqrt(d)
                p = np.exp(s - s.max())
                p /= p.sum()
                heads[b, t, cols] = sum(pj * v[b, j, cols] for pj, j in zip(p, js))
    return heads @ wo + out_bias


# Windows 1 (only the position itself), 3 (< T) and 16 (>= T: plain causal attention); queries
# from a separate input in half of the cases (one compilation per case).
@pytest.mark.parametrize("layout,window,separate_queries", [
    ("lm", 1, False), ("lm", 3, True), ("lm", 16, False),
    ("pytorch", 1, True), ("pytorch", 3, False), ("pytorch", 16, True)])
def test_matches_numpy(layout, window, separate_queries):
    module = _make(layout, window)
    x, xq = _inputs(layout)
    if not separate_queries:
        xq = x
    y, _ = _forward(module, x, xq)
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert_close(y, _numpy_attention(module, x, xq, window), "float32_vs_float64", name="y")


# Window 3: the cache (2 positions) is shorter than a segment; window 16: longer than the
# whole sequence, so the validity mask of the first segments matters.
@pytest.mark.parametrize("layout,window", [("lm", 3), ("pytorch", 16)])
def test_segments_and_tokens_equal_one_pass(layout, window):
    module = _make(layout, window, seed=1)
    x, xq = _inputs(layout, seed=1)
    y, final = _forward(module, x, xq)
    # Two segments (one compilation); token by token below covers segments shorter than the
    # cache.
    state, parts, start = module.init_state(B), [], 0
    for length in (4, 4):
        part, state = _forward(module, x[:, start:start + length], xq[:, start:start + length],
                               state)
        parts.append(part)
        start += length
    assert_close(np.concatenate(parts, axis=1), y, "float32_same_algebra", name="segments")
    assert_close(state, final, "float32_same_algebra", name="segment state")

    # Token by token inside a jitted lax.scan with the state as the carry (split/merge: the
    # layer works under plain jax.jit and lax.scan).
    graphdef, params = nnx.split(module)

    @jax.jit
    def stream(params, x, xq):
        layer = nnx.merge(graphdef, params)

        def step(state, inputs):
            y_t, state = layer(inputs[0][:, None], state, query_input=inputs[1][:, None])
            return state, y_t[:, 0]

        state, ys = jax.lax.scan(step, layer.init_state(B),
                                 (jnp.swapaxes(x, 0, 1), jnp.swapaxes(xq, 0, 1)))
        return jnp.swapaxes(ys, 0, 1), state

    ys, state = stream(params, x, xq)
    assert_close(ys, y, "float32_same_algebra", name="token by token")
    assert_close(state, final, "float32_same_algebra", name="token state")


def test_state_is_fixed_size_and_bf16_is_finite():
    module = _make("lm", 3)
    state = module.init_state(B)
    assert isinstance(state, AttentionState)
    assert state.keys.shape == (B, 2, 2, 5) and state.keys.dtype == jnp.float32
    assert state.valid.dtype == jnp.bool_ and not np.asarray(state.valid).any()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, 20, 12)), jnp.bfloat16)
    y, new = _forward(module, x, x, state)
    assert y.dtype == jnp.bfloat16 and np.isfinite(np.asarray(y, np.float32)).all()
    assert jax.tree.map(jnp.shape, new) == jax.tree.map(jnp.shape, state)
    assert new.keys.dtype == jnp.float32 and np.asarray(new.valid).all()


def _count(module):
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("layout,expected", [
    ("lm", 128 * 8 * 16 * 4),                   # q_net + kv_net + o_net: 65,536
    ("pytorch", 3 * 128 * 128 + 3 * 128 + 128 * 128 + 128),  # in_proj + out_proj: 66,048
])
def test_parameter_count_and_axis_names(layout, expected):
    module = nnx.eval_shape(lambda: SoftmaxAttention(128, 8, 16, window=256, layout=layout,
                                                     init=layout, rngs=nnx.Rngs(0)))
    assert _count(module) == expected
    names = logical_axes(module)
    shapes = {tuple(path): v.shape for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}
    assert names.keys() == shapes.keys()
    for path, axes in names.items():
        assert len(axes) == len(shapes[path]) and all(isinstance(a, str) for a in axes), path
        assert len(set(axes)) == len(axes), path
    if layout == "lm":
        assert names[("q_net", "kernel")] == ("embed", "heads", "head_dim")
        assert names[("kv_net", "kernel")] == ("embed", "qkv", "heads", "head_dim")
        assert names[("o_net", "kernel")] == ("heads", "head_dim", "embed")
    else:
        assert names[("in_proj", "kernel")] == ("embed", "qkv", "heads", "head_dim")
        assert names[("in_proj", "bias")] == ("qkv", "heads", "head_dim")


def test_pytorch_init():
    D = 32
    # Built under jit (one compilation) from an rbg key: this checks the bounds, not the bit
    # stream, and threefry compiles slowly on CPU for the rank-4 kernel shape.
    module = nnx.jit(lambda: SoftmaxAttention(
        D, 4, 8, window=4, layout="pytorch", init="pytorch",
        rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))()
    w_in = np.abs(np.asarray(module.in_proj.kernel[...]))
    bound = math.sqrt(6.0 / (4 * D))           # xavier_uniform_ on [3D, D]
    assert 0.9 * bound < w_in.max() <= bound
    assert not np.asarray(module.in_proj.bias[...]).any()
    assert not np.asarray(module.out_proj.bias[...]).any()
    out_w = np.abs(np.asarray(module.out_proj.kernel[...]))
    assert 0.9 * D ** -0.5 < out_w.max() <= D ** -0.5   # nn.Linear default U(+-1/sqrt(D))


def test_errors():
    with pytest.raises(ValueError, match="window"):
        SoftmaxAttention(8, 2, 4, window=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="layout"):
        SoftmaxAttention(8, 2, 4, window=2, layout="xl", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_heads"):
        SoftmaxAttention(8, 2, 3, window=2, layout="pytorch", rngs=nnx.Rngs(0))
    module = nnx.eval_shape(lambda: SoftmaxAttention(8, 2, 4, window=3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="state"):
        module(jnp.zeros((2, 4, 8)), module.init_state(3))
    with pytest.raises(ValueError, match="query_input"):
        module(jnp.zeros((2, 4, 8)), query_input=jnp.zeros((2, 3, 8)))
