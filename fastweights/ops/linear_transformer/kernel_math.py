"""Linear Transformer chunked kernels, backend-neutral half: the per-chunk forward/backward
algebra, the normaliser stage and the custom VJP shared by `pallas_gpu_chunked.py` (Triton)
and `pallas_tpu_chunked.py` (Mosaic TPU), which supply only their two kernel calls (`Kernels`).

Per chunk of C steps starting from state (S `[K, V]`, z `[K]`):

    num = Q S + tril(Q K^T) V
    den = Q z + rowsum(tril(Q K^T)) + eps,   O = num / den     (normalize=True; else O = num)
    S'  = S + K^T V,                         z' = z + sum_t k_t

`forward_chunk` / `backward_chunk` are that algebra and its VJP on one chunk's blocks, called
inside both backends' kernels; `run_chunked` is the dtype policy, the state and the custom VJP
around a backend's `Kernels` (the backward in the docstring of `pallas_gpu_chunked.py`).
Nothing here imports a Pallas backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.linear_transformer.reference import State, init_state

Array = jax.Array
OP = "linear_transformer"


# --- the normaliser stage (pure JAX) -------------------------------------------------------

def _chunk_normalisers(kh: Array, z0: Array, chunk: int) -> tuple[Array, Array]:
    """`kh [BH, Tp, K]`, `z0 [BH, K]` -> (z entering each chunk `[BH, N, K]`, final z), float32."""
    BH, Tp, K = kh.shape
    sums = jnp.sum(kh.astype(jnp.float32).reshape(BH, Tp // chunk, chunk, K), axis=2)  # [BH, N, K]
    inclusive = z0[:, None] + jnp.cumsum(sums, axis=1)
    return inclusive - sums, inclusive[:, -1]


# --- per-chunk algebra (inside the GPU and the TPU kernels) --------------------------------

def _num_den(q, k, v, S, z, mask, eps, normalize, need_num=True):
    """`A = tril(Q K^T) [C, C]`, `num [C, BV]` and `den [C, 1]` (None without the normaliser),
    float32."""
    attn = jnp.where(mask, km.dot(q, k, trans_b=True), 0.0)
    num = km.dot(q, S.astype(q.dtype)) + km.dot(attn.astype(q.dtype), v) if need_num else None
    den = None
    if normalize:
        den = (jnp.sum(q.astype(jnp.float32) * z, axis=1, keepdims=True)
               + jnp.sum(attn, axis=1, keepdims=True) + eps)
    return attn, num, den


def forward_chunk(q, k, v, S, z, mask, *, normalize: bool, eps: float):
    """One chunk: `q, k` `[C, K]`, `v` `[C, BV]` (dot dtype), `S` `[K, BV]` float32 and the
    normaliser `z` `[1, K]` entering the chunk (None without it) -> `(O [C, BV], S')`."""
    _, num, den = _num_den(q, k, v, S, z, mask, eps, normalize)
    return (num / den if normalize else num), S + km.dot(k, v, trans_a=True)


def backward_chunk(q, k, v, S, z, do, g, dS, mask, *, normalize: bool, eps: float, first_block):
    """The VJP of `forward_chunk` given `dO` `[C, BV]`, `g = rowsum(dO * O)` `[C, 1]` over all
    value columns, and `dS` (the cotangent of `S'`). The V-independent `dden` terms are
    counted only where `first_block` (the first value block). Returns `(dQ, dK, dV, dz_c
    [1, K], dS entering the chunk)`, float32."""
    cdt = q.dtype
    K = q.shape[-1]
    do = do.astype(jnp.float32)
    attn, _, den = _num_den(q, k, v, S, z, mask, eps, normalize, need_num=False)
    if normalize:
        dnum = do / den
        dden = jnp.where(first_block, -g / den, 0.0)                  # [C, 1]
    else:
        dnum = do
    dnc, dSc = dnum.astype(cdt), dS.astype(cdt)
    d_attn = km.dot(dnc, v, trans_b=True)
    if normalize:
        d_attn = d_attn + dden
    d_attn = jnp.where(mask, d_attn, 0.0).astype(cdt)
    dq = km.dot(dnc, S.astype(cdt), trans_b=True) + km.dot(d_attn, k)
    if normalize:
        dq = dq + dden * z
        dzc = jnp.sum(q.astype(jnp.float32) * dden, axis=0, keepdims=True)
    else:
        dzc = jnp.zeros((1, K), jnp.float32)
    dk = km.dot(v, dSc, trans_b=True) + km.dot(d_attn, q, trans_a=True)
    dv = km.dot(attn.astype(cdt), dnc, trans_a=True) + km.dot(k, dSc)
    return dq, dk, dv, dzc, dS + km.dot(q, dnc, trans_a=True)


# --- custom VJP (generic over the backend's kernel calls) -----------------------------------

class Kernels(NamedTuple):
    """A backend's two kernel calls. `forward(qh, kh, vh, z_c, W0, chunk, normalize, eps,
    interpret) -> (O [BH, Tp, V], per-chunk states (any layout), final W [BH, K, V])`;
    `backward(qh, kh, vh, z_c, states, dO, g, dW, chunk, normalize, eps, interpret) ->
    (dQ, dK, dV, dz_c [BH, N, K], dW0)`."""
    forward: Callable
    backward: Callable


def run_chunked(kernels: Kernels, chunk: int, q: Array, k: Array, v: Array, *, normalize: bool, eps: float,
                initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """The chunked sum rule on `kernels` with chunks of `chunk` steps (checked by the caller):
    the dtype policy, the state and the custom VJP, for the GPU and TPU kernels."""
    n = check_shapes(OP, dict(q=q, k=k, v=v), dict(q="BTHK", k="BTHK", v="BTHV"))
    out_dtype, acc = dtype_policy(q, k, v)
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc))
    dtype = jnp.result_type(q, k, v)
    config = (kernels, chunk, n["B"], n["T"], bool(normalize), float(eps), bool(interpret))
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    o, W, z = _sum_rule(config, q, k, v, state.W, state.z)
    return o.astype(out_dtype), State(W, z)


def _run_forward(config, q, k, v, W0, z0):
    kernels, chunk, B, T, normalize, eps, interpret = config
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    qh, kh, vh = (km.to_heads(x, chunk) for x in (q, k, v))
    zc, z = _chunk_normalisers(kh, z0.reshape(B * H, K), chunk)
    o, h, W = kernels.forward(qh, kh, vh, zc, W0.reshape(B * H, K, V), chunk, normalize, eps, interpret)
    return km.from_heads(o, B, T), W.reshape(B, H, K, V), z.reshape(B, H, K), (qh, kh, vh, zc, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sum_rule(config, q, k, v, W0, z0):
    o, W, z, _ = _run_forward(config, q, k, v, W0, z0)
    return o, W, z


def _sum_rule_fwd(config, q, k, v, W0, z0):
    o, W, z, (qh, kh, vh, zc, h) = _run_forward(config, q, k, v, W0, z0)
    return (o, W, z), (qh, kh, vh, zc, h, W0, z0, o if config[4] else None)


def _sum_rule_bwd(config, residuals, cotangents):
    kernels, chunk, B, T, normalize, eps, interpret = config
    qh, kh, vh, zc, h, W0, z0, o = residuals
    do, dW, dz = cotangents
    H, K, V = W0.shape[1:]
    do_h = km.to_heads(do.astype(qh.dtype), chunk)
    # rowsum(dO * O) couples all value columns, so it is formed here (O is kept anyway as
    # the forward output) and each value-block program of the kernel reads it.
    g = (jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1) if normalize
         else jnp.zeros(do.shape[:3], jnp.float32))
    g = km.to_heads(g, chunk)[..., None]                                    # [BH, Tp, 1]
    dq, dk, dv, dzc, dW0 = kernels.backward(qh, kh, vh, zc, h, do_h, g,
                                            dW.reshape(B * H, K, V).astype(jnp.float32),
                                            chunk, normalize, eps, interpret)
    # The final z = z0 + sum of keys, and z_c feeds the denominators: both go through stage 1.
    _, norm_vjp = jax.vjp(lambda k_, z_: _chunk_normalisers(k_, z_, chunk), kh, z0.reshape(B * H, K))
    dk_z, dz0 = norm_vjp((dzc, dz.reshape(B * H, K).astype(jnp.float32)))
    grads = (dq, dk + dk_z, dv)
    dq, dk, dv = (km.from_heads(g, B, T).astype(qh.dtype) for g in grads)
    return (dq, dk, dv, dW0.reshape(B, H, K, V).astype(W0.dtype),
            dz0.reshape(B, H, K).astype(z0.dtype))


_sum_rule.defvjp(_sum_rule_fwd, _sum_rule_bwd)
