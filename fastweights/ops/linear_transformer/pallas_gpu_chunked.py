"""Pallas GPU (Triton) chunked kernels of the Linear Transformer (sum rule), with a custom VJP.

The algebra is `chunked.py`'s; its per-chunk form (`forward_chunk`, `backward_chunk`), the
normaliser stage and the custom VJP (`run_chunked`) are backend-neutral and live in
`kernel_math.py`, shared with `pallas_tpu_chunked.py`; this file has the Triton kernels and
their calls (`GPU_KERNELS`). Per chunk of C steps starting from state (S `[K, V]`, z `[K]`):

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

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common import pallas_gpu_chunked as pc
from fastweights.ops.common.chunking import check_chunk_size
from fastweights.ops.common.sequence import check_shapes
from fastweights.ops.linear_transformer.kernel_math import Kernels, backward_chunk, forward_chunk, run_chunked
from fastweights.ops.linear_transformer.reference import State

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


# --- kernels ------------------------------------------------------------------------------

def _forward_kernel(q_ref, k_ref, v_ref, zc_ref, s0_ref, o_ref, h_ref, s_ref, *,
                    chunk: int, normalize: bool, eps: float):
    K = q_ref.shape[-1]
    n_chunks = q_ref.shape[0] // chunk
    mask = km.causal_mask(chunk)

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
    mask = km.causal_mask(chunk)
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


GPU_KERNELS = Kernels(_forward_call, _backward_call)
