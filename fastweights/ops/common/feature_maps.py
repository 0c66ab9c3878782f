"""Feature maps and normalisations applied to queries and keys (PAPER_SPEC 1, 2.3).

All act on the last axis, the per-head feature axis, and keep the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def elu_p1(x: Array) -> Array:
    """ELU(x) + 1 (alpha = 1): a positive feature map, `[..., D] -> [..., D]`."""
    return jax.nn.elu(x) + 1.0


def sum_norm(x: Array, eps: float = 0.0) -> Array:
    """`x / (sum(x) + eps)` over the last axis.

    The official LM and algorithmic layers use `eps = 0`; the RL layers, the Delta MLP
    and the Delta Delta Net use `eps = 1e-5`.
    """
    return x / (jnp.sum(x, axis=-1, keepdims=True) + eps)


def softmax_eps(x: Array, eps: float = 1e-6) -> Array:
    """Softmax with `eps` added to the denominator, as inside the official Delta RNN v2
    and Delta LSTM v2-v4 kernels: `exp(x - max x) / (sum exp(x - max x) + eps)`.

    Note `softmax_eps(0)` is `1 / (D + eps)` in every entry, not zero.
    """
    # No stop_gradient on the max: with eps > 0 the result depends on it.
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    return e / (jnp.sum(e, axis=-1, keepdims=True) + eps)


def dpfp(x: Array, nu: int = 1) -> Array:
    """Deterministic parameter-free projection (Schlag et al., ICML 2021), `[..., D] -> [..., 2*D*nu]`.

    `r = [relu(x), relu(-x)]`; the features are `concat_{j=1..nu} r * roll(r, j)` with
    `roll(r, j)_i = r_{(i - j) mod 2D}` (the official `torch.roll` order). The layer then
    sum-normalises them for the delta variants.
    """
    if nu < 1:
        raise ValueError(f"dpfp: nu must be >= 1, got {nu}")
    r = jnp.concatenate([jax.nn.relu(x), jax.nn.relu(-x)], axis=-1)
    if nu > r.shape[-1] - 1:
        raise ValueError(f"dpfp: nu must be < 2*D = {r.shape[-1]}, got {nu}")
    return jnp.concatenate([r * jnp.roll(r, j, axis=-1) for j in range(1, nu + 1)], axis=-1)


def favor_plus_projection(key: Array, dim: int, num_features: int, *, dtype=jnp.float32) -> Array:
    """Random projection `P` `[dim, num_features]` for FAVOR+, as drawn by the official code.

    Rows come from stacked `num_features x num_features` random orthogonal blocks (the
    transposed Q of a QR decomposition of a Gaussian matrix, the last block cut to the
    remaining rows); row `i` is then scaled by the norm of a fresh `num_features`-dim
    Gaussian vector. The features are the columns of `P`.

    Quirk kept from the official code: the performer construction is meant for a
    `[num_features, dim]` matrix whose rows are the features; drawn `[dim, num_features]`
    and used by columns, the features are not exactly Gaussian, so `favor_plus` with this
    projection estimates the softmax kernel with a small bias (about 1% at D=4, M=16).
    """
    if dim < 1 or num_features < 1:
        raise ValueError(f"favor_plus_projection: dim and num_features must be positive, got {dim}, {num_features}")
    num_blocks = -(-dim // num_features)
    block_key, scale_key = jax.random.split(key)
    gaussian = jax.random.normal(block_key, (num_blocks, num_features, num_features), jnp.float32)
    q, _ = jnp.linalg.qr(gaussian)
    rows = jnp.swapaxes(q, -1, -2).reshape(num_blocks * num_features, num_features)[:dim]
    scale = jnp.linalg.norm(jax.random.normal(scale_key, (dim, num_features), jnp.float32), axis=-1)
    return (scale[:, None] * rows).astype(dtype)


def favor_plus(x: Array, projection: Array, eps: float = 1e-4) -> Array:
    """FAVOR+ positive random features, `[..., D] -> [..., 2*M]` for `projection` `[D, M]`.

    `phi(x) = (2M)^-1/2 * ([exp(u - |x|^2/2), exp(-u - |x|^2/2)] + eps)` with `u = x P`, so
    that `E[phi(x) . phi(y)] ~ exp(x . y)` (the softmax kernel) up to the `eps` offset.
    """
    if projection.ndim != 2 or projection.shape[0] != x.shape[-1]:
        raise ValueError(
                f"favor_plus: projection must be [D, M] with D = {x.shape[-1]}, got {tuple(projection.shape)}")
    num_features = projection.shape[1]
    offset = -0.5 * jnp.sum(x * x, axis=-1, keepdims=True)
    u = jnp.einsum("...d,dm->...m", x, projection.astype(x.dtype), precision=jax.lax.Precision.HIGHEST)
    features = jnp.concatenate([jnp.exp(offset + u), jnp.exp(offset - u)], axis=-1) + eps
    return features * (2 * num_features) ** -0.5


def layer_norm(x: Array, scale: Array, bias: Array, eps: float = 1e-5) -> Array:
    """LayerNorm over the last axis with affine parameters `[D]` (biased variance, as torch)."""
    scale, bias = (jnp.reshape(p, (1,) * (x.ndim - 1) + p.shape) for p in (scale, bias))
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias
