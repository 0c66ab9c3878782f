"""Output layers: the adaptive softmax against a float64 NumPy evaluation of the two-level
formula with reversed cluster columns (PAPER_SPEC 3.1), normalisation, nll, errors, the
WT103 parameter count and gradients to the tied embedding; the plain softmax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights.nn.common import Embedding, logical_axes
from fastweights.nn.output import AdaptiveSoftmax, Softmax
from fastweights.testing import assert_close, float64

V, D = 50, 8
CUTOFFS = (10, 20, 35)


class _Tied(nnx.Module):
    """An input embedding and an output layer sharing its matrix, as in the LM."""

    def __init__(self, vocab, dim, cutoffs, *, adaptive=True, rngs, param_dtype=jnp.float32):
        self.embed = Embedding(vocab, dim, rngs=rngs, param_dtype=param_dtype)
        if adaptive:
            self.out = AdaptiveSoftmax(self.embed, cutoffs, rngs=rngs, param_dtype=param_dtype)
        else:
            self.out = Softmax(vocab, dim, embedding=self.embed, rngs=rngs, param_dtype=param_dtype)


def _make(cutoffs=CUTOFFS, adaptive=True, seed=0, dtype=jnp.float32):
    """Every parameter (biases and cluster parameters included) N(0, 1), filled from NumPy."""
    model = nnx.eval_shape(lambda: _Tied(V, D, cutoffs, adaptive=adaptive, rngs=nnx.Rngs(0),
                                         param_dtype=dtype))
    rng = np.random.default_rng(seed)
    nnx.update(model, jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype),
                                   nnx.state(model, nnx.Param)))
    return model


def _hidden(shape=(3, 4), seed=1, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape + (D,)), dtype)


def _targets(shape=(3, 4), seed=2):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, shape), jnp.int32)


@nnx.jit
def _log_probs(out, h):
    return out.log_probs(h)


@nnx.jit
def _nll(out, h, t):
    return out.nll(h, t)


@jax.jit
def _tied_log_softmax(h, embedding, bias):
    """`jax.nn.log_softmax` of the tied logits `h E^T + b`."""
    return jax.nn.log_softmax(h @ embedding.T + bias[None, None, :], axis=-1)


def _log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def _numpy_adaptive(out, h):
    """log p(t | h) for every t, in float64, token by token from the two-level formula."""
    E = np.asarray(out.embedding.embedding[...], np.float64)
    b = np.asarray(out.bias[...], np.float64)
    Cw = np.asarray(out.cluster_weight[...], np.float64)
    Cb = np.asarray(out.cluster_bias[...], np.float64)
    n, c0 = len(out.cutoffs), out.cutoffs[0]
    edges = list(out.cutoffs) + [V]
    h = np.asarray(h, np.float64).reshape(-1, D)
    result = np.zeros((h.shape[0], V))
    for p, x in enumerate(h):
        head = _log_softmax(np.concatenate([E[:c0] @ x + b[:c0], Cw @ x + Cb]))
        for t in range(V):
            if t < c0:
                result[p, t] = head[t]
                continue
            i = max(j for j in range(1, n + 1) if t >= edges[j - 1])    # tail cluster 1..n
            lo, hi = edges[i - 1], edges[i]
            tail = _log_softmax(E[lo:hi] @ x + b[lo:hi])
            result[p, t] = head[c0 + n - i] + tail[t - lo]              # head column -i
    return result


def test_adaptive_matches_numpy_and_normalises():
    out = _make().out
    h = _hidden()
    lp = _log_probs(out, h)
    assert lp.shape == (3, 4, V) and lp.dtype == jnp.float32
    assert_close(lp.reshape(-1, V), _numpy_adaptive(out, h), "float32_vs_float64", name="log p")
    assert_close(np.exp(np.asarray(lp, np.float64)).sum(-1), np.ones((3, 4)),
                 "float32_vs_float64", name="sum p")


def test_reversed_cluster_order_matters():
    """Swapping the cluster rows changes the tail probabilities: the order is really used."""
    out = _make().out
    h = _hidden()
    before = _log_probs(out, h)
    out.cluster_weight[...] = jnp.asarray(np.asarray(out.cluster_weight[...])[::-1].copy())
    out.cluster_bias[...] = jnp.asarray(np.asarray(out.cluster_bias[...])[::-1].copy())
    after = _log_probs(out, h)
    diff = np.abs(np.asarray(after) - np.asarray(before))
    assert diff[..., CUTOFFS[0]:].max() > 1e-2 and diff[..., :CUTOFFS[0]].max() < 1e-5


def test_no_tail_is_plain_tied_softmax():
    out = _make(cutoffs=()).out
    assert out.cluster_weight is None and out.n_clusters == 0
    h = _hidden()
    assert_close(_log_probs(out, h), _tied_log_softmax(h, out.embedding.embedding[...],
                                                        out.bias[...]),
                 "float32_same_algebra", name="no tail")


@pytest.mark.parametrize("shape", [(3, 4), (2, 3)], ids=["N>D", "N<=D"])  # both nll paths
@pytest.mark.parametrize("cutoffs,adaptive", [(CUTOFFS, True), ((), True), ((), False)])
def test_nll_is_minus_gathered_log_probs(cutoffs, adaptive, shape):
    out = _make(cutoffs, adaptive=adaptive).out
    h, t = _hidden(shape), _targets(shape)
    nll = _nll(out, h, t)
    assert nll.shape == t.shape and nll.dtype == jnp.float32
    gathered = np.take_along_axis(np.asarray(_log_probs(out, h)), np.asarray(t)[..., None],
                                  axis=-1)[..., 0]
    # Two float32 evaluations of the same quantity (logsumexp and target logit vs full
    # log_softmax and gather): only the summation order differs.
    assert_close(nll, -gathered, "float32_same_algebra", name="nll")


def test_bfloat16_hidden_states():
    out = _make().out
    h = _hidden()
    nll = _nll(out, h.astype(jnp.bfloat16), _targets())
    assert nll.dtype == jnp.float32 and np.isfinite(np.asarray(nll)).all()


def test_gradients_reach_tied_embedding():
    """In float64: the nll gradient equals the gradient of -log_probs gathered at the targets,
    and reaches shortlist and tail rows of the (single, shared) embedding matrix."""
    with float64():
        model = _make(dtype=jnp.float64)
        h = _hidden(dtype=jnp.float64)
        t = jnp.array([[3, 12, 25, 40], [0, 49, 10, 35], [20, 9, 34, 19]], jnp.int32)

        def loss_nll(m, h, t):
            return m.out.nll(h, t).sum()

        def loss_gather(m, h, t):
            lp = m.out.log_probs(h)
            return -jnp.take_along_axis(lp, t[..., None], axis=-1).sum()

        @nnx.jit
        def grads(m, h, t):      # one compilation for both
            return nnx.grad(loss_nll)(m, h, t), nnx.grad(loss_gather)(m, h, t)

        g_nll, g_ref = grads(model, h, t)
        # N = 4 <= D positions: the nll path through the full logits.
        g_few, g_few_ref = grads(model, h[:1], t[:1])
    assert_close(g_nll, g_ref, "float64_exact", name="grad")
    assert_close(g_few, g_few_ref, "float64_exact", name="grad, N <= D")
    rows = np.abs(np.asarray(g_nll["embed"]["embedding"][...])).sum(-1)
    assert rows[3] > 0 and rows[40] > 0 and rows[25] > 0          # head and tail targets
    assert np.abs(np.asarray(g_nll["out"]["cluster_weight"][...])).sum() > 0
    # The tied matrix appears once in the state, under the input embedding.
    paths = [tuple(p) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    assert sum(p[-1] == "embedding" for p in paths) == 1


@pytest.mark.parametrize("capacity", [(0.5, 0.5, 0.5), (0.1, 0.1, 0.1)], ids=["fits", "overflows"])
def test_tail_capacity_is_exact(capacity):
    """In float64, value and gradients: the gathered tail normalisers (the targets of each
    cluster fit in half the positions) and the fallback (they do not fit in a tenth) equal
    computing every cluster at every position."""
    with float64():
        model = _make(dtype=jnp.float64)
        fast = AdaptiveSoftmax(model.embed, CUTOFFS, tail_capacity=capacity, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        nnx.update(fast, nnx.state(model.out, nnx.Param))
        h = _hidden((4, 5), dtype=jnp.float64)
        t = jnp.asarray(np.random.default_rng(3).integers(0, V, (4, 5)), jnp.int32)   # 3-7 per tail
        counts = [int(((t >= a) & (t < b)).sum()) for a, b in zip(CUTOFFS, CUTOFFS[1:] + (V,))]
        assert all(c <= 10 for c in counts) if capacity[0] == 0.5 else any(c > 2 for c in counts)

        @jax.jit
        def values_and_grads(h):
            plain = lambda h: model.out.nll(h, t)  # noqa: E731
            gathered = lambda h: fast.nll(h, t)  # noqa: E731
            return (plain(h), gathered(h), jax.grad(lambda h: (plain(h) ** 2).sum())(h),
                    jax.grad(lambda h: (gathered(h) ** 2).sum())(h))

        plain, gathered, g_plain, g_gathered = values_and_grads(h)
    assert_close(gathered, plain, "float64_exact", name="nll")
    assert_close(g_gathered, g_plain, "float64_exact", name="grad")


def test_tail_capacity_errors():
    embed = Embedding(V, D, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="one fraction in \\(0, 1\\] per tail cluster \\(3\\)"):
        AdaptiveSoftmax(embed, CUTOFFS, tail_capacity=(0.5,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="one fraction"):
        AdaptiveSoftmax(embed, CUTOFFS, tail_capacity=(0.5, 0.5, 0.0), rngs=nnx.Rngs(0))


def test_target_errors():
    out = _make().out
    h = _hidden()
    for bad in (V, -1):
        t = np.asarray(_targets()).copy()
        t[1, 2] = bad
        with pytest.raises(ValueError, match=f"id {bad} outside the vocabulary"):
            out.nll(h, jnp.asarray(t))
    with pytest.raises(ValueError, match="targets shape"):
        out.nll(h, _targets((3, 5)))
    with pytest.raises(ValueError, match="hidden states"):
        out.log_probs(jnp.asarray(np.zeros((3, D + 1), np.float32)))


@pytest.mark.parametrize("cutoffs,match", [
    ((20, 10), "strictly increasing"), ((0, 10), "positive"), ((10, V), "< the vocabulary"),
    ((10.0,), "ints")])
def test_cutoff_errors(cutoffs, match):
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda: _Tied(V, D, cutoffs, rngs=nnx.Rngs(0)))


def _count(module):
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_wt103_parameter_count():
    """PAPER_SPEC 8.1: embedding 34,270,080 + bias 267,735 + clusters 3*128 + 3 = 34,538,202;
    counted on shapes only (nothing of size V*D is allocated)."""
    model = nnx.eval_shape(lambda: _Tied(267_735, 128, (20_000, 40_000, 200_000),
                                         rngs=nnx.Rngs(0)))
    assert _count(model) == 34_538_202
    assert _count(model.embed) == 34_270_080
    names = logical_axes(model)
    assert names[("out", "bias")] == ("vocab",)
    assert names[("out", "cluster_weight")] == ("cluster", "embed")
    assert all(all(isinstance(a, str) for a in axes) for axes in names.values())


def test_plain_softmax():
    untied = nnx.eval_shape(lambda: Softmax(V, D, init="pytorch", rngs=nnx.Rngs(0)))
    assert _count(untied) == V * D + V
    tied = _make(cutoffs=(), adaptive=False)
    assert _count(tied) == V * D + V                      # the matrix is the embedding's
    h = _hidden()
    assert_close(_log_probs(tied.out, h), _tied_log_softmax(h, tied.embed.embedding[...],
                                                             tied.out.bias[...]),
                 "float32_same_algebra", name="tied softmax")
    with pytest.raises(ValueError, match="tied embedding"):
        Softmax(V + 1, D, embedding=tied.embed, rngs=nnx.Rngs(0))
