"""Shared pieces of the chunkwise-parallel forms: chunk layout, the unit-lower-triangular
inverse, the scan over chunks with its hand-written backward, and batch groups.

Zero padding is exact for the sum and delta rules: a zero key (and zero beta) writes
nothing, and the outputs of padded steps are dropped. For the gated delta rule a zero log
decay is no decay, so padded steps also leave the state as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
_HIGHEST = jax.lax.Precision.HIGHEST

# Default steps per chunk of the pure-JAX chunked forms, measured (BENCHMARKS.md): on CPU
# 32 (B8 H8 d64 T512, training: 32 and 64 level, 16 about 15 % slower), elsewhere 64 (the
# tile size of the GPU kernels and of flash-linear-attention).
DEFAULT_CHUNK_SIZE = {"cpu": 32}

# Elements per input array in one batch group on one CPU device (`cpu_group_size`): 2^18
# float32 is 1 MiB, so a group's intermediates stay in cache and its buffers are reused group
# after group instead of being freshly allocated (and page-faulted) at full size.
CPU_GROUP_ELEMENTS = 2 ** 18


def einsum(spec: str, *operands: Array) -> Array:
    """`jnp.einsum` at full float32 precision (the chunked algebra must match `recurrent`)."""
    return jnp.einsum(spec, *operands, precision=_HIGHEST)


def causal_scores(q: Array, k: Array) -> Array:
    """`lower(Q K^T)` per chunk, the diagonal included: `[..., C, K]` x2 -> `[..., C, C]`."""
    return jnp.tril(einsum("...ik,...jk->...ij", q, k))


def check_chunk_size(op: str, chunk_size: int | None) -> int:
    """`chunk_size`, or the platform default for None; refuses anything but a positive int."""
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE.get(jax.default_backend(), 64)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def to_chunks(x: Array, chunk_size: int) -> Array:
    """`[B, T, H, *rest]` -> `[N, B, H, C, *rest]` (chunks first, as `lax.scan` takes them),
    zero-padding T up to `N * C`."""
    B, T, H = x.shape[:3]
    n = -(-T // chunk_size)
    x = jnp.pad(x, [(0, 0), (0, n * chunk_size - T)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape(B, n, chunk_size, H, *x.shape[3:])
    return jnp.transpose(x, (1, 0, 3, 2, *range(4, x.ndim)))


def from_chunks(x: Array, time: int) -> Array:
    """`[N, B, H, C, *rest]` -> `[B, T, H, *rest]`, dropping the padding."""
    n, B, H, c = x.shape[:4]
    x = jnp.transpose(x, (1, 0, 3, 2, *range(4, x.ndim)))
    return x.reshape(B, n * c, H, *x.shape[4:])[:, :time]


# Below this size the inverse is plain forward substitution; above, blocks halve.
_SUBSTITUTION_SIZE = 16


def _forward_substitution(strictly_lower: Array) -> Array:
    c = strictly_lower.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(c, dtype=strictly_lower.dtype), strictly_lower.shape)

    def row(i, inverse):  # row i of the inverse is e_i - L[i, :i] @ T[:i]
        return inverse.at[..., i, :].set(eye[..., i, :] - einsum("...j,...jk->...k", strictly_lower[..., i, :],
                                                                  inverse))

    return jax.lax.fori_loop(1, c, row, eye)


def _inverse(strictly_lower: Array) -> Array:
    c = strictly_lower.shape[-1]
    if c <= _SUBSTITUTION_SIZE:
        return _forward_substitution(strictly_lower)
    h = c // 2
    top, bottom = strictly_lower[..., :h, :h], strictly_lower[..., h:, h:]
    if 2 * h == c:  # both diagonal blocks in one call
        t11, t22 = _inverse(jnp.stack([top, bottom]))
    else:
        t11, t22 = _inverse(top), _inverse(bottom)
    # [[A, 0], [B, D]]^-1 = [[A^-1, 0], [-D^-1 B A^-1, D^-1]]
    t21 = -einsum("...ij,...jk->...ik", t22, einsum("...ij,...jk->...ik", strictly_lower[..., h:, :h], t11))
    upper = jnp.concatenate([t11, jnp.zeros((*t11.shape[:-1], c - h), t11.dtype)], axis=-1)
    return jnp.concatenate([upper, jnp.concatenate([t21, t22], axis=-1)], axis=-2)


@jax.custom_vjp
def unit_lower_inverse(strictly_lower: Array) -> Array:
    """`(I + L)^-1` for strictly lower-triangular `L` `[..., C, C]`.

    Blocks of up to 16 by forward substitution (C - 1 batched vector-matrix products; XLA's
    batched triangular solve is several times slower on CPU), larger ones by halving: both
    diagonal blocks at once, then two matrix products for the off-diagonal block. The custom
    VJP uses `d(M^-1) = -M^-1 dM M^-1` instead of differentiating through the loop.
    """
    return _inverse(strictly_lower)


def _unit_lower_inverse_fwd(strictly_lower):
    inverse = _inverse(strictly_lower)
    return inverse, inverse


def _unit_lower_inverse_bwd(inverse, grad):
    # T = (I + L)^-1  =>  dL = -T^T dT T^T, restricted to the strictly lower part L lives on.
    t = jnp.swapaxes(inverse, -1, -2)
    return (jnp.tril(-einsum("...ij,...jk,...kl->...il", t, grad, t), -1),)


unit_lower_inverse.defvjp(_unit_lower_inverse_fwd, _unit_lower_inverse_bwd)


def _chunk_states(k: Array, w: Array | None, u_in: Array, state: Array, decay: Array | None):
    """The sequential part: `U_n = U_in_n - W_n S_n`, `S_{n+1} = d_n S_n + K_n^T U_n`.
    Returns `(S_N, (S_n entering each chunk, U_n))`."""
    def step(S, xs):
        k_c, w_c, u_c, d_c = xs
        u = u_c if w_c is None else u_c - einsum("bhck,bhkv->bhcv", w_c, S)
        carried = S if d_c is None else d_c[..., None, None] * S
        return carried + einsum("bhck,bhcv->bhkv", k_c, u), (S, u)

    return jax.lax.scan(step, state, (k, w, u_in, decay))


def _chunk_outputs(q: Array, attn: Array, entering: Array, u: Array) -> Array:
    return einsum("nbhck,nbhkv->nbhcv", q, entering) + einsum("nbhij,nbhjv->nbhiv", attn, u)


@jax.custom_vjp
def chunk_scan(q: Array, k: Array, w: Array | None, u_in: Array, attn: Array, state: Array,
               decay: Array | None = None) -> tuple[Array, Array]:
    """The scan over chunks shared by the chunked sum, delta and gated delta rules, per chunk n:

        U_n     = U_in_n - W_n S_n          (w None, the sum rule: U_n = U_in_n)
        O_n     = Q_n S_n + A_n U_n
        S_{n+1} = d_n S_n + K_n^T U_n       (decay None: d_n = 1)

    `q`, `k`, `w` `[N, B, H, C, K]`, `u_in` `[N, B, H, C, V]`, `attn`
    (causal `Q K^T`, with any decays folded in) `[N, B, H, C, C]`, `state` `[B, H, K, V]`,
    `decay` (the state's decay over each chunk) `[N, B, H]`. Returns `(O [N, B, H, C, V],
    S_N)`. Only the two products with S run chunk after chunk; the outputs and every gradient
    that is not on the state's path are batched over all chunks (the custom VJP; autodiff
    would put them inside the backward loop).
    """
    return _chunk_scan_fwd(q, k, w, u_in, attn, state, decay)[0]


def _chunk_scan_fwd(q, k, w, u_in, attn, state, decay):
    final, (entering, u) = _chunk_states(k, w, u_in, state, decay)
    return (_chunk_outputs(q, attn, entering, u), final), (q, k, w, attn, entering, u, decay)


def _chunk_scan_bwd(residuals, grads):
    q, k, w, attn, entering, u, decay = residuals
    d_out, d_final = grads
    d_state_local = einsum("nbhck,nbhcv->nbhkv", q, d_out)    # from O_n = Q_n S_n + ...
    d_u_local = einsum("nbhij,nbhiv->nbhjv", attn, d_out)     # from ... + A_n U_n

    def step(dS, xs):  # dS: gradient of the state after chunk n
        k_c, w_c, d_state_c, d_u_c, d_c = xs
        d_u = d_u_c + einsum("bhck,bhkv->bhcv", k_c, dS)
        d_entering = (dS if d_c is None else d_c[..., None, None] * dS) + d_state_c
        if w_c is not None:
            d_entering = d_entering - einsum("bhck,bhcv->bhkv", w_c, d_u)
        return d_entering, (dS, d_u)

    d_state, (d_leaving, d_u) = jax.lax.scan(step, d_final, (k, w, d_state_local, d_u_local, decay),
                                             reverse=True)
    d_q = einsum("nbhcv,nbhkv->nbhck", d_out, entering)
    d_k = einsum("nbhcv,nbhkv->nbhck", u, d_leaving)
    d_w = None if w is None else -einsum("nbhcv,nbhkv->nbhck", d_u, entering)
    d_attn = einsum("nbhiv,nbhjv->nbhij", d_out, u)
    d_decay = None if decay is None else einsum("nbhkv,nbhkv->nbh", entering, d_leaving)
    return d_q, d_k, d_w, d_u, d_attn, d_state, d_decay


chunk_scan.defvjp(_chunk_scan_fwd, _chunk_scan_bwd)


def batch_group_size(batch: int, per_batch_element: int, group_size: int | None = None) -> int:
    """Batch elements per group for `map_batch_groups`: `group_size` if given; else on a
    single CPU device `cpu_group_size`; else the whole batch (a loop over groups would cut
    across a batch sharded over devices, and accelerators want the whole batch at once)."""
    if group_size is not None:
        if not isinstance(group_size, int) or isinstance(group_size, bool) or not 1 <= group_size:
            raise ValueError(f"batch_group_size must be a positive int, got {group_size!r}")
        return min(group_size, batch)
    if jax.default_backend() == "cpu" and jax.device_count() == 1:
        return cpu_group_size(batch, per_batch_element)
    return batch


def cpu_group_size(batch: int, per_batch_element: int) -> int:
    """The largest divisor of `batch` whose group holds at most `CPU_GROUP_ELEMENTS`
    elements per input array (`per_batch_element` = T * H * D), and at least 1."""
    target = max(1, CPU_GROUP_ELEMENTS // max(per_batch_element, 1))
    return max(g for g in range(1, min(target, batch) + 1) if batch % g == 0)


def map_batch_groups(fn: Callable[..., Any], group_size: int, *arrays: Any) -> Any:
    """`fn(*arrays)` for arrays with the batch on axis 0, run on groups of `group_size`
    batch elements one after another (`lax.map`), each under `jax.checkpoint`: the backward
    pass recomputes a group's forward instead of keeping it, so every buffer is the size of
    one group. The same values and gradients as `fn(*arrays)`. A `group_size` that does not
    divide the batch takes a last, smaller group."""
    batch = jax.tree.leaves(arrays)[0].shape[0]
    if group_size >= batch:
        return fn(*arrays)
    n, tail = divmod(batch, group_size)
    head = jax.tree.map(lambda x: x[:n * group_size].reshape(n, group_size, *x.shape[1:]), arrays)
    out = jax.lax.map(jax.checkpoint(lambda group: fn(*group)), head)
    out = jax.tree.map(lambda y: y.reshape(n * group_size, *y.shape[2:]), out)
    if tail:
        rest = fn(*jax.tree.map(lambda x: x[n * group_size:], arrays))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)
    return out
