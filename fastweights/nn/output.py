"""Output layers of the language model: the adaptive softmax of the LM code
(`ProjectedAdaptiveLogSoftmax` with `div_val=1`, no projections, weight tied to the input
embedding; PAPER_SPEC 3.1) and a plain (tied or untied) softmax.

Both give `log_probs(h [..., D]) -> [..., V]` and `nll(h [..., D], targets [...]) -> [...]`,
in float32. For `N > D` positions `nll` never builds a `[N, V]` array: per cluster it needs
only the log-normaliser of `[N, cluster size]` logits and the target's own logit.

Slicing the tied `[V, D]` matrix per cluster makes XLA copy the slices (V x D floats) on
every call; that is what dominates a call with few positions (evaluation windows scored
at one position, generation steps: about 1 ms for V = 10k on 2 CPU cores, 137 MB per call
for the WT103 vocabulary). So `log_probs` (whose output is `[..., V]` anyway) and `nll` for
`N <= D` positions (where `[N, V]` logits take no more memory than those copies) take all V
logits in one product with the whole matrix and slice the logits instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fastweights.nn.common import Embedding, check_init, check_tokens, param

Array = jax.Array


def _dtype(h: Array):
    """Logits and log-probabilities are float32 at least (float64 for float64 inputs)."""
    return jnp.promote_types(h.dtype, jnp.float32)


def _logits(h: Array, weight: Array, bias: Array) -> Array:
    """`h @ weight.T + bias`: `h [..., D]`, `weight [n, D]`, `bias [n]` -> `[..., n]` float32
    (inputs in `h`'s dtype, accumulated in float32)."""
    out = _dtype(h)
    y = jnp.einsum("...d,nd->...n", h, weight.astype(h.dtype), preferred_element_type=out)
    return y + bias.astype(out).reshape((1,) * (y.ndim - 1) + bias.shape)


def _target_logit(h: Array, weight: Array, bias: Array, targets: Array) -> Array:
    """The logit of each position's own target, `[...]`, from a gather of `weight` rows."""
    out = _dtype(h)
    w = jnp.take(weight, targets, axis=0).astype(h.dtype)                  # [..., D]
    dot = jnp.einsum("...d,...d->...", h, w, preferred_element_type=out)
    return dot + jnp.take(bias, targets, axis=0).astype(out)


def _check_h(h: Array, dim: int, name: str) -> None:
    if h.ndim < 1 or h.shape[-1] != dim:
        raise ValueError(f"{name} expects hidden states [..., {dim}], got {h.shape}")


def _check_targets(h: Array, targets: Array, vocab_size: int) -> None:
    if tuple(targets.shape) != tuple(h.shape[:-1]):
        raise ValueError(f"targets shape {tuple(targets.shape)} must equal the hidden states' "
                         f"leading shape {tuple(h.shape[:-1])}")
    check_tokens(targets, vocab_size, "targets")


def _cluster_lse(h: Array, weight: Array, bias: Array, in_cluster: Array, capacity: float) -> Array:
    """`logsumexp` of a tail cluster's logits `[...]` at the positions `in_cluster` (any value
    elsewhere), computed only at the positions whose target is in the cluster, gathered into
    a buffer of `ceil(capacity * N)` rows, as the official code's indexing does, when they
    fit (else at every position): exact either way, about `1/capacity` times cheaper when
    they fit."""
    shape = in_cluster.shape
    flat_h, flat_in = h.reshape(-1, h.shape[-1]), in_cluster.reshape(-1)
    n = flat_in.shape[0]
    size = min(n, max(1, math.ceil(capacity * n)))

    def gathered(_):
        index = jnp.nonzero(flat_in, size=size, fill_value=0)[0]                    # [size]
        lse = jax.nn.logsumexp(_logits(flat_h[index], weight, bias), axis=-1)
        used = jnp.arange(size) < flat_in.sum()
        return jnp.zeros((n,), lse.dtype).at[index].add(jnp.where(used, lse, 0.0))

    def everywhere(_):
        return jax.nn.logsumexp(_logits(flat_h, weight, bias), axis=-1)

    fits = flat_in.sum() <= size
    return jax.lax.cond(fits, gathered, everywhere, None).reshape(shape)


class AdaptiveSoftmax(nnx.Module):
    """Two-level adaptive softmax with the output matrix tied to `embedding`.

    The head covers tokens `[0, cutoffs[0])` plus one logit per tail cluster; tail cluster
    `i = 1..n` covers `[cutoffs[i-1], cutoffs[i])` (the last one ending at V), and
    `log p(t) = log p_head(column -i) + log softmax_i(t)`. The cluster columns are used in
    reverse order, as the official code does: tail cluster `i` owns head column `-i`, i.e.
    row `n - i` of `cluster_weight`.

    `tail_capacity` (one fraction per tail cluster, or None): `nll` computes a tail
    cluster's normaliser only at the positions whose target is in it, when they are at most
    that fraction of the positions (exact always; the training speed-up of the official
    code's indexing, in static shapes).

    Parameters: the shared `embedding.embedding [V, D]` (one array, counted once by
    `nnx.state`), `bias [V]`, `cluster_weight [n, D]`, `cluster_bias [n]` (no cluster
    parameters when `cutoffs` is empty).
    """

    def __init__(self, embedding: Embedding, cutoffs: Sequence[int], *, init: str = "lm",
                 tail_capacity: Sequence[float] | None = None, rngs: nnx.Rngs, param_dtype=jnp.float32):
        check_init(init)
        V, D = embedding.embedding.shape
        cutoffs = tuple(cutoffs)
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in cutoffs):
            raise ValueError(f"cutoffs must be ints, got {cutoffs}")
        if any(b <= a for a, b in zip(cutoffs, cutoffs[1:])) or (cutoffs and cutoffs[0] <= 0):
            raise ValueError(f"cutoffs must be positive and strictly increasing, got {cutoffs}")
        if cutoffs and cutoffs[-1] >= V:
            raise ValueError(f"cutoffs must be < the vocabulary size {V} (the last tail cluster "
                             f"ends at V), got {cutoffs}")
        if tail_capacity is not None:
            tail_capacity = tuple(float(c) for c in tail_capacity)
            if len(tail_capacity) != len(cutoffs) or not all(0.0 < c <= 1.0 for c in tail_capacity):
                raise ValueError(f"tail_capacity must give one fraction in (0, 1] per tail cluster "
                                 f"({len(cutoffs)}), got {tail_capacity}")
        self.embedding = embedding     # shared with the input layer, not a copy
        self.vocab_size, self.dim, self.cutoffs, self.tail_capacity = V, D, cutoffs, tail_capacity
        self.n_clusters = len(cutoffs)
        self.bias = param(jnp.zeros((V,), param_dtype), ("vocab",))
        cluster_weight = cluster_bias = None
        if cutoffs:
            # "lm": N(0, 0.02) as weights_init; "pytorch" (the module's own default): zeros,
            # as `ProjectedAdaptiveLogSoftmax.__init__` allocates them.
            n = self.n_clusters
            w = (0.02 * jax.random.normal(rngs.params(), (n, D), param_dtype) if init == "lm"
                 else jnp.zeros((n, D), param_dtype))
            cluster_weight = param(w, ("cluster", "embed"))
            cluster_bias = param(jnp.zeros((n,), param_dtype), ("cluster",))
        self.cluster_weight = nnx.data(cluster_weight)
        self.cluster_bias = nnx.data(cluster_bias)

    def _bounds(self) -> list[tuple[int, int]]:
        """`[start, stop)` of the head shortlist, then of each tail cluster."""
        edges = (0,) + self.cutoffs + (self.vocab_size,)
        return list(zip(edges[:-1], edges[1:]))

    def _cluster_logits(self, h: Array, full: Array | None) -> list[Array]:
        """The logits of the head shortlist and of each tail cluster, `[..., stop - start]`
        each: slices of the `full` `[..., V]` logits, or (None) products with the slices of
        the matrix."""
        weight, bias = self.embedding.embedding[...], self.bias[...]
        if full is not None:
            return [full[..., start:stop] for start, stop in self._bounds()]
        return [_logits(h, weight[start:stop], bias[start:stop]) for start, stop in self._bounds()]

    def _with_clusters(self, h: Array, shortlist: Array) -> Array:
        """The head's logits `[..., cutoffs[0] + n]`: the shortlist then the cluster columns."""
        if not self.n_clusters:
            return shortlist
        cluster = _logits(h, self.cluster_weight[...], self.cluster_bias[...])
        return jnp.concatenate([shortlist, cluster], axis=-1)

    def log_probs(self, h: Array) -> Array:
        """Full log-distribution `[..., V]` float32 from hidden states `h [..., D]`."""
        _check_h(h, self.dim, "AdaptiveSoftmax")
        full = _logits(h, self.embedding.embedding[...], self.bias[...])
        logits = self._cluster_logits(h, full)
        head = jax.nn.log_softmax(self._with_clusters(h, logits[0]), axis=-1)
        parts = [head[..., :logits[0].shape[-1]]]
        for i, tail_logits in enumerate(logits[1:], start=1):
            col = head.shape[-1] - i        # column -i: the clusters are used in reverse order
            parts.append(head[..., col:col + 1] + jax.nn.log_softmax(tail_logits, axis=-1))
        return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def nll(self, h: Array, targets: Array) -> Array:
        """Negative log-likelihood `[...]` float32 of `targets [...]` under `h [...,  D]`.

        `-log p(t) = lse_head - logit(t)` for a shortlist token and
        `lse_head - cluster_logit_i + lse_i - logit(t)` for a token of tail cluster `i`.
        """
        _check_h(h, self.dim, "AdaptiveSoftmax")
        _check_targets(h, targets, self.vocab_size)
        weight, bias = self.embedding.embedding[...], self.bias[...]
        positions = math.prod(h.shape[:-1])
        full = _logits(h, weight, bias) if self.n_clusters and positions <= self.dim else None
        logits = self._cluster_logits(h, full)
        head_logits = self._with_clusters(h, logits[0])
        nll = jax.nn.logsumexp(head_logits, axis=-1) - _target_logit(h, weight, bias, targets)
        for i, ((start, stop), tail_logits) in enumerate(zip(self._bounds()[1:], logits[1:]), start=1):
            in_cluster = (targets >= start) & (targets < stop)
            if full is None and self.tail_capacity is not None:     # its `tail_logits` go unused (XLA drops them)
                lse = _cluster_lse(h, weight[start:stop], bias[start:stop], in_cluster, self.tail_capacity[i - 1])
            else:
                lse = jax.nn.logsumexp(tail_logits, axis=-1)
            nll = nll + jnp.where(in_cluster, lse - head_logits[..., -i], 0.0)
        return nll


class Softmax(nnx.Module):
    """Plain softmax output layer `logits = h @ W.T + b`, `W [V, D]` tied to `embedding` or
    owned, with a bias `[V]`.

    Untied with `init="pytorch"` it is PyTorch's `nn.Linear(D, V)` (U(+-1/sqrt(D)) weight and
    bias, the algorithmic models' output layer); with `init="lm"`: N(0, 0.02) weight, zero
    bias. A tied layer's bias is zero-initialised under both schemes.
    """

    def __init__(self, vocab_size: int, dim: int, *, embedding: Embedding | None = None,
                 init: str = "lm", rngs: nnx.Rngs, param_dtype=jnp.float32):
        check_init(init)
        self.vocab_size, self.dim = vocab_size, dim
        weight = None
        if embedding is not None:
            if tuple(embedding.embedding.shape) != (vocab_size, dim):
                raise ValueError(f"tied embedding has shape {tuple(embedding.embedding.shape)}, "
                                 f"expected ({vocab_size}, {dim})")
            bias = jnp.zeros((vocab_size,), param_dtype)
        elif init == "lm":
            weight = 0.02 * jax.random.normal(rngs.params(), (vocab_size, dim), param_dtype)
            bias = jnp.zeros((vocab_size,), param_dtype)
        else:
            bound = dim ** -0.5
            weight = jax.random.uniform(rngs.params(), (vocab_size, dim), param_dtype,
                                        -bound, bound)
            bias = jax.random.uniform(rngs.params(), (vocab_size,), param_dtype, -bound, bound)
        self.embedding = nnx.data(embedding)
        self.weight = nnx.data(None if weight is None else param(weight, ("vocab", "embed")))
        self.bias = param(bias, ("vocab",))

    def _weight(self) -> Array:
        return (self.embedding.embedding if self.weight is None else self.weight)[...]

    def logits(self, h: Array) -> Array:
        """`[..., V]` float32 logits from `h [..., D]`."""
        _check_h(h, self.dim, "Softmax")
        return _logits(h, self._weight(), self.bias[...])

    def log_probs(self, h: Array) -> Array:
        """`[..., V]` float32 log-probabilities from `h [..., D]`."""
        return jax.nn.log_softmax(self.logits(h), axis=-1)

    def nll(self, h: Array, targets: Array) -> Array:
        """Negative log-likelihood `[...]` float32 of `targets [...]`."""
        _check_h(h, self.dim, "Softmax")
        _check_targets(h, targets, self.vocab_size)
        lse = jax.nn.logsumexp(self.logits(h), axis=-1)
        return lse - _target_logit(h, self._weight(), self.bias[...], targets)
