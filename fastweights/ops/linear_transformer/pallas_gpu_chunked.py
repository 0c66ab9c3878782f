"""Chunked sum rule (linear attention) as Pallas GPU (Triton) kernels with a custom VJP.

The algebra is `chunked.py`'s. Per chunk of C steps starting from state (S `[K, V]`, z `[K]`):

    num = Q S + tril(Q K^T) V
    den = Q z + rowsum(tril(Q K^T)) + eps,   O = num / den     (normalize=True; else O = num)
    S'  = S + K^T V,                         z' = z + sum_t k_t

Stages (forward):
  1. The normaliser entering each chunk, `z_c [B*H, N, K]` = z0 + exclusive cumulative sum of
     the chunks' key sums, and the final z (pure JAX, O(T K); only when normalize=True).
  2. One Pallas kernel, grid `(B*H, V / BV)`: each program walks its chunks in order with its
     `[K, BV]` slice of S in float32 registers and writes O, the state entering each chunk
     (`[N, K, BV]`, float32) and the final S. The denominator only involves K, so value
     blocks stay independent.

Backward (chunk-level checkpointing): residuals are the padded head-first inputs, `z_c`, the
per-chunk states (and O when normalising), O(T d + T d^2 / C) per head. A second kernel, grid
`(B*H, V / BV)`, walks the chunks in reverse with its `[K, BV]` slice of dS in float32
registers, recomputes den from the stored state, and gives per chunk (A = tril(Q K^T);
without the normaliser dnum = dO, dden = 0):

    dnum = dO / den,   dden = -rowsum(dO * O) / den            (the rowsum over all V: in JAX)
    dV = A^T dnum + K dS'              dA = tril(dnum V^T + dden 1^T)
    dQ = dnum S^T + dA K + dden z^T    dK = V dS'^T + dA^T Q
    dz_c = Q^T dden                    dS = dS' + Q^T dnum

and the cotangent of the initial S. dQ, dK and dz_c sum over value columns: each value
block writes a partial (the dden terms only in block 0) and JAX adds them. `jax.vjp` of
stage 1 maps `(dz_c, dz_final)` to the keys and the initial z. JAX never differentiates
through `pallas_call`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from fastweights.ops.common import pallas_gpu_chunked as pc
from fastweights.ops.common.chunking import check_chunk_size
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.linear_transformer.reference import State, init_state

Array = jax.Array
OP = "linear_transformer"
BLOCK_V = 64  # value columns per forward program (more programs for the GPU to schedule)


def supported(q: Array, k: Array, v: Array, *, chunk_size: int | None = None, interpret: bool = False) -> str | None:
    """None if `chunked` can run on these inputs, else the reason."""
    return pc.supported(OP, key_dim=k.shape[-1], value_dim=v.shape[-1],
                        chunk_size=check_chunk_size(OP, chunk_size),
                        dtype=jnp.result_type(q, k, v), interpret=interpret)


def linear_transformer(q: Array, k: Array, v: Array, *, normalize: bool = False, eps: float = 1e-5,
            chunk_size: int | None = None, initial_state: State | None = None,
            interpret: bool = False) -> tuple[Array, State]:
    """Chunked sum rule on Pallas GPU kernels; same arguments and results as `chunked.chunked`.

    Shapes: `q, k` `[B, T, H, K]`, `v` `[B, T, H, V]`; returns outputs `[B, T, H, V]` in the
    inputs' dtype and `State(W [B, H, K, V], z [B, H, K])` in float32.
    `interpret=True` runs the kernels in the Pallas interpreter (CPU tests).
    Raises `NotImplementedError` with the reason when the kernel cannot run (see `supported`).
    """
    chunk_size = check_chunk_size(OP, chunk_size)
    n = check_shapes(OP, dict(q=q, k=k, v=v), dict(q="BTHK", k="BTHK", v="BTHV"))
    reason = supported(q, k, v, chunk_size=chunk_size, interpret=interpret)
    if reason is not None:
        raise NotImplementedError(reason)
    return run_chunked(GPU_KERNELS, pc.chunk_length(chunk_size, n["T"]), q, k, v, normalize=normalize,
                       eps=eps, initial_state=initial_state, interpret=interpret)


def _chunk_normalisers(kh: Array, z0: Array, chunk: int) -> tuple[Array, Array]:
    """`kh [BH, Tp, K]`, `z0 [BH, K]` -> (z entering each chunk `[BH, N, K]`, final z), float32."""
    BH, Tp, K = kh.shape
    sums = jnp.sum(kh.astype(jnp.float32).reshape(BH, Tp // chunk, chunk, K), axis=2)  # [BH, N, K]
    inclusive = z0[:, None] + jnp.cumsum(sums, axis=1)
    return inclusive - sums, inclusive[:, -1]


# --- per-chunk algebra (shared with the TPU kernels, `pallas_tpu.py`) ------------------------

def _num_den(q, k, v, S, z, mask, eps, normalize, need_num=True):
    """`A = tril(Q K^T) [C, C]`, `num [C, BV]` and `den [C, 1]` (None without the normaliser),
    float32."""
    attn = jnp.where(mask, pc.dot(q, k, trans_b=True), 0.0)
    num = pc.dot(q, S.astype(q.dtype)) + pc.dot(attn.astype(q.dtype), v) if need_num else None
    den = None
    if normalize:
        den = (jnp.sum(q.astype(jnp.float32) * z, axis=1, keepdims=True)
               + jnp.sum(attn, axis=1, keepdims=True) + eps)
    return attn, num, den


def forward_chunk(q, k, v, S, z, mask, *, normalize: bool, eps: float):
    """One chunk: `q, k` `[C, K]`, `v` `[C, BV]` (dot dtype), `S` `[K, BV]` float32 and the
    normaliser `z` `[1, K]` entering the chunk (None without it) -> `(O [C, BV], S')`."""
    _, num, den = _num_den(q, k, v, S, z, mask, eps, normalize)
    return (num / den if normalize else num), S + pc.dot(k, v, trans_a=True)


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
    d_attn = pc.dot(dnc, v, trans_b=True)
    if normalize:
        d_attn = d_attn + dden
    d_attn = jnp.where(mask, d_attn, 0.0).astype(cdt)
    dq = pc.dot(dnc, S.astype(cdt), trans_b=True) + pc.dot(d_attn, k)
    if normalize:
        dq = dq + dden * z
        dzc = jnp.sum(q.astype(jnp.float32) * dden, axis=0, keepdims=True)
    else:
        dzc = jnp.zeros((1, K), jnp.float32)
    dk = pc.dot(v, dSc, trans_b=True) + pc.dot(d_attn, q, trans_a=True)
    dv = pc.dot(attn.astype(cdt), dnc, trans_a=True) + pc.dot(k, dSc)
    return dq, dk, dv, dzc, dS + pc.dot(q, dnc, trans_a=True)


# --- kernels ------------------------------------------------------------------------------

def _forward_kernel(q_ref, k_ref, v_ref, zc_ref, s0_ref, o_ref, h_ref, s_ref, *,
                    chunk: int, normalize: bool, eps: float):
    K = q_ref.shape[-1]
    n_chunks = q_ref.shape[0] // chunk
    mask = pc.causal_mask(chunk)

    def body(i, S):  # S [K, BV] float32: the state entering chunk i
        rows = pl.ds(i * chunk, chunk)
        h_ref[pl.ds(i * K, K), :] = S
        z = zc_ref[pl.ds(i, 1), :] if normalize else None           # [1, K]
        o, S = forward_chunk(q_ref[rows, :], k_ref[rows, :], v_ref[rows, :], S, z, mask,
                             normalize=normalize, eps=eps)
        o_ref[rows, :] = o.astype(o_ref.dtype)
        return S

    s_ref[...] = jax.lax.fori_loop(0, n_chunks, body, s0_ref[...].astype(jnp.float32))


def _backward_kernel(q_ref, k_ref, v_ref, zc_ref, h_ref, do_ref, g_ref, ds_ref,
                     dq_ref, dk_ref, dv_ref, dzc_ref, ds0_ref, *, chunk: int, normalize: bool, eps: float):
    K = q_ref.shape[-1]
    n_chunks = q_ref.shape[0] // chunk
    mask = pc.causal_mask(chunk)
    first_block = pl.program_id(1) == 0  # the V-independent dden terms are added by block 0 only

    def body(j, dS):  # dS [K, BV] float32: cotangent of the state leaving chunk i
        i = n_chunks - 1 - j
        rows = pl.ds(i * chunk, chunk)
        z = zc_ref[pl.ds(i, 1), :] if normalize else None
        dq_ref[rows, :], dk_ref[rows, :], dv_ref[rows, :], dzc_ref[pl.ds(i, 1), :], dS = backward_chunk(
            q_ref[rows, :], k_ref[rows, :], v_ref[rows, :], h_ref[pl.ds(i * K, K), :], z, do_ref[rows, :],
            g_ref[rows, :], dS, mask, normalize=normalize, eps=eps, first_block=first_block)
        return dS

    ds0_ref[...] = jax.lax.fori_loop(0, n_chunks, body, ds_ref[...].astype(jnp.float32))


def _forward_call(qh, kh, vh, zc, W0, chunk, normalize, eps, interpret):
    BH, Tp, K = qh.shape
    V = vh.shape[-1]
    bv = min(BLOCK_V, V)
    n_chunks = Tp // chunk
    seq_k, seq_v, state, states, _ = pc.block_specs(Tp, K, bv, n_chunks)
    norms = pl.BlockSpec((None, n_chunks, K), lambda b, j: (b, 0, 0))
    return pl.pallas_call(
        functools.partial(_forward_kernel, chunk=chunk, normalize=normalize, eps=eps),
        out_shape=(jax.ShapeDtypeStruct((BH, Tp, V), qh.dtype),
                   jax.ShapeDtypeStruct((BH, n_chunks * K, V), jnp.float32),
                   jax.ShapeDtypeStruct((BH, K, V), jnp.float32)),
        grid=(BH, V // bv),
        in_specs=[seq_k, seq_k, seq_v, norms, state],
        out_specs=(seq_v, states, state),
        compiler_params=pc.compiler_params(K, bv),
        interpret=interpret,
        name="linear_transformer_chunked_fwd",
    )(qh, kh, vh, zc, W0)


def _backward_call(qh, kh, vh, zc, h, do, g, dW, chunk, normalize, eps, interpret):
    BH, Tp, K = qh.shape
    V = vh.shape[-1]
    bv = min(BLOCK_V, V)
    nv = V // bv
    n_chunks = Tp // chunk
    seq_k, seq_v, state, states, part_k = pc.block_specs(Tp, K, bv, n_chunks)
    rows = pl.BlockSpec((None, Tp, 1), lambda b, j: (b, 0, 0))
    norms = pl.BlockSpec((None, n_chunks, K), lambda b, j: (b, 0, 0))
    part_z = pl.BlockSpec((None, None, n_chunks, K), lambda b, j: (j, b, 0, 0))
    f32 = jnp.float32
    dq, dk, dv, dzc, dS0 = pl.pallas_call(
        functools.partial(_backward_kernel, chunk=chunk, normalize=normalize, eps=eps),
        out_shape=(jax.ShapeDtypeStruct((nv, BH, Tp, K), f32), jax.ShapeDtypeStruct((nv, BH, Tp, K), f32),
                   jax.ShapeDtypeStruct((BH, Tp, V), f32), jax.ShapeDtypeStruct((nv, BH, n_chunks, K), f32),
                   jax.ShapeDtypeStruct((BH, K, V), f32)),
        grid=(BH, nv),
        in_specs=[seq_k, seq_k, seq_v, norms, states, seq_v, rows, state],
        out_specs=(part_k, part_k, seq_v, part_z, state),
        compiler_params=pc.compiler_params(K, bv),
        interpret=interpret,
        name="linear_transformer_chunked_bwd",
    )(qh, kh, vh, zc, h, do, g, dW)
    # dQ, dK (and dz_c) sum over value columns: add the value blocks' partials.
    return dq.sum(0), dk.sum(0), dv, dzc.sum(0), dS0


# --- custom VJP (generic over the backend's kernel calls) -----------------------------------

class Kernels(NamedTuple):
    """A backend's two kernel calls. `forward(qh, kh, vh, z_c, W0, chunk, normalize, eps,
    interpret) -> (O [BH, Tp, V], per-chunk states (any layout), final W [BH, K, V])`;
    `backward(qh, kh, vh, z_c, states, dO, g, dW, chunk, normalize, eps, interpret) ->
    (dQ, dK, dV, dz_c [BH, N, K], dW0)`."""
    forward: Callable
    backward: Callable


GPU_KERNELS = Kernels(_forward_call, _backward_call)


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
    qh, kh, vh = (pc.to_heads(x, chunk) for x in (q, k, v))
    zc, z = _chunk_normalisers(kh, z0.reshape(B * H, K), chunk)
    o, h, W = kernels.forward(qh, kh, vh, zc, W0.reshape(B * H, K, V), chunk, normalize, eps, interpret)
    return pc.from_heads(o, B, T), W.reshape(B, H, K, V), z.reshape(B, H, K), (qh, kh, vh, zc, h)


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
    do_h = pc.to_heads(do.astype(qh.dtype), chunk)
    # rowsum(dO * O) couples all value columns, so it is formed here (O is kept anyway as
    # the forward output) and each value-block program of the kernel reads it.
    g = (jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1) if normalize
         else jnp.zeros(do.shape[:3], jnp.float32))
    g = pc.to_heads(g, chunk)[..., None]                                    # [BH, Tp, 1]
    dq, dk, dv, dzc, dW0 = kernels.backward(qh, kh, vh, zc, h, do_h, g,
                                            dW.reshape(B * H, K, V).astype(jnp.float32),
                                            chunk, normalize, eps, interpret)
    # The final z = z0 + sum of keys, and z_c feeds the denominators: both go through stage 1.
    _, norm_vjp = jax.vjp(lambda k_, z_: _chunk_normalisers(k_, z_, chunk), kh, z0.reshape(B * H, K))
    dk_z, dz0 = norm_vjp((dzc, dz.reshape(B * H, K).astype(jnp.float32)))
    grads = (dq, dk + dk_z, dv)
    dq, dk, dv = (pc.from_heads(g, B, T).astype(qh.dtype) for g in grads)
    return (dq, dk, dv, dW0.reshape(B, H, K, V).astype(W0.dtype),
            dz0.reshape(B, H, K).astype(z0.dtype))


_sum_rule.defvjp(_sum_rule_fwd, _sum_rule_bwd)
