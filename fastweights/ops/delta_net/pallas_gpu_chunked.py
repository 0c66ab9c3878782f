"""Pallas GPU (Triton) chunked kernels of the Delta Net (delta rule), with a custom VJP.

The algebra is `chunked.py`'s WY/UT form; its per-chunk form (`forward_chunk`,
`backward_chunk`), the WY stage and the custom VJP (`run_chunked`) are backend-neutral and
live in `kernel_math.py`, shared with `pallas_tpu_chunked.py`; this file has the Triton
kernels and their calls (`GPU_KERNELS`). Per chunk of C steps starting from state S `[K, V]`:

    W_c, U_c = T^-1 diag(beta) K,  T^-1 diag(beta) V      (T = I + tril(diag(beta) K K^T, -1))
    U   = U_c - W_c S                                      (the values actually written)
    O   = Q S + tril(Q K^T) U
    S'  = S + K^T U

Stages (forward):
  1. WY/UT transform (pure JAX, all chunks at once): the unit-lower-triangular solve giving
     `W_c [B*H, T_pad, K]` and `U_c [B*H, T_pad, V]` in float32.
  2. One Pallas kernel, grid `(B*H, V / BV)`: each program walks its chunks in order with its
     `[K, BV]` slice of S in float32 registers, computes U, O and S' per chunk, writes O, the
     state entering each chunk (`[N, K, BV]`, float32) and the final state. Columns of S are
     independent in the delta rule, so value blocks need no communication.

Backward (chunk-level checkpointing, as FLA): the residuals are the padded head-first inputs,
the initial state and the per-chunk states, O(T d + T d^2 / C) per head, never per-step
states. A second Pallas kernel, grid `(B*H, V / BV)`, walks the chunks in reverse with its
`[K, BV]` slice of dS (the cotangent of the state leaving the chunk) in float32 registers,
reloads the chunk's entering state, recomputes U and gives, per chunk:

    dU = tril(Q K^T)^T dO + K dS'          dA = tril(dO U^T)
    dQ = dO S^T + dA K                     dK = U dS'^T + dA^T Q    (direct part)
    dW_c = -dU S^T,  dU_c = dU             dS = dS' + Q^T dO - W_c^T dU

and the cotangent of the initial state at the end. dQ, dK and dW_c sum over value columns,
so each value block writes a partial and JAX adds them (float32). `jax.vjp` of the pure-JAX WY transform
(recomputed) maps `(dW_c, dU_c)` to the remaining `dK`, `dbeta`, `dV`. JAX never
differentiates through `pallas_call`.
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
from fastweights.ops.delta_net.kernel_math import Kernels, backward_chunk, forward_chunk, run_chunked
from fastweights.ops.delta_net.reference import State

Array = jax.Array
OP = "delta_net"
BLOCK_V = 64  # value columns per forward program (more programs for the GPU to schedule)


def supported(q: Array, k: Array, v: Array, beta: Array, *, chunk_size: int | None = None,
              interpret: bool = False) -> str | None:
    """None if `chunked` can run on these inputs, else the reason."""
    return pc.supported(OP, key_dim=k.shape[-1], value_dim=v.shape[-1],
                        chunk_size=check_chunk_size(OP, chunk_size),
                        dtype=jnp.result_type(q, k, v, beta), interpret=interpret)


def delta_net(q: Array, k: Array, v: Array, beta: Array, *, chunk_size: int | None = None,
            initial_state: State | None = None, interpret: bool = False) -> tuple[Array, State]:
    """Chunked delta rule on Pallas GPU kernels; same arguments and results as `chunked.chunked`.

    Shapes: `q, k` `[B, T, H, K]`, `v` `[B, T, H, V]`, `beta` `[B, T, H]`; returns outputs
    `[B, T, H, V]` in the inputs' dtype and `State(W [B, H, K, V])` in float32.
    `interpret=True` runs the kernels in the Pallas interpreter (CPU tests).
    Raises `NotImplementedError` with the reason when the kernel cannot run (see `supported`).
    """
    chunk_size = check_chunk_size(OP, chunk_size)
    n = check_shapes(OP, dict(q=q, k=k, v=v, beta=beta), dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"))
    reason = supported(q, k, v, beta, chunk_size=chunk_size, interpret=interpret)
    if reason is not None:
        raise NotImplementedError(reason)
    return run_chunked(GPU_KERNELS, pc.chunk_length(chunk_size, n["T"]), q, k, v, beta,
                       initial_state=initial_state, interpret=interpret)


# --- kernels ------------------------------------------------------------------------------

def _forward_kernel(q_ref, k_ref, w_ref, u_ref, s0_ref, o_ref, h_ref, s_ref, *, chunk: int):
    K = q_ref.shape[-1]
    n_chunks = q_ref.shape[0] // chunk
    mask = km.causal_mask(chunk)

    def body(i, S):  # S [K, BV] float32: the state entering chunk i
        rows = pl.ds(i * chunk, chunk)
        h_ref[pl.ds(i * K, K), :] = S
        o, S = forward_chunk(q_ref[rows, :], k_ref[rows, :], w_ref[rows, :], u_ref[rows, :], S, mask)
        o_ref[rows, :] = o.astype(o_ref.dtype)
        return S

    s_ref[...] = jax.lax.fori_loop(0, n_chunks, body, s0_ref[...].astype(jnp.float32))


def _backward_kernel(q_ref, k_ref, w_ref, u_ref, h_ref, do_ref, ds_ref,
                     dq_ref, dk_ref, dw_ref, du_ref, ds0_ref, *, chunk: int):
    K = q_ref.shape[-1]
    n_chunks = q_ref.shape[0] // chunk
    mask = km.causal_mask(chunk)

    def body(j, dS):  # dS [K, BV] float32: cotangent of the state leaving chunk i
        i = n_chunks - 1 - j
        rows = pl.ds(i * chunk, chunk)
        dq_ref[rows, :], dk_ref[rows, :], dw_ref[rows, :], du_ref[rows, :], dS = backward_chunk(
            q_ref[rows, :], k_ref[rows, :], w_ref[rows, :], u_ref[rows, :], h_ref[pl.ds(i * K, K), :],
            do_ref[rows, :], dS, mask)
        return dS

    ds0_ref[...] = jax.lax.fori_loop(0, n_chunks, body, ds_ref[...].astype(jnp.float32))


def _forward_call(qh, kh, w, u_c, W0, chunk: int, interpret: bool):
    BH, Tp, K = qh.shape
    V = u_c.shape[-1]
    bv = min(BLOCK_V, V)
    n_chunks = Tp // chunk
    seq_k, seq_v, state, states, _ = pc.block_specs(Tp, K, bv, n_chunks)
    return pl.pallas_call(
        functools.partial(_forward_kernel, chunk=chunk),
        out_shape=(jax.ShapeDtypeStruct((BH, Tp, V), qh.dtype),
                   jax.ShapeDtypeStruct((BH, n_chunks * K, V), jnp.float32),
                   jax.ShapeDtypeStruct((BH, K, V), jnp.float32)),
        grid=(BH, V // bv),
        in_specs=[seq_k, seq_k, seq_k, seq_v, state],
        out_specs=(seq_v, states, state),
        compiler_params=pc.compiler_params(K, bv),
        interpret=interpret,
        name="delta_net_chunked_fwd",
    )(qh, kh, w, u_c, W0)


def _backward_call(qh, kh, w, u_c, h, do, dW, chunk: int, interpret: bool):
    BH, Tp, K = qh.shape
    V = u_c.shape[-1]
    bv = min(BLOCK_V, V)
    nv = V // bv
    seq_k, seq_v, state, states, part_k = pc.block_specs(Tp, K, bv, Tp // chunk)
    f32 = jnp.float32
    dq, dk, dw, du, dS0 = pl.pallas_call(
        functools.partial(_backward_kernel, chunk=chunk),
        out_shape=(jax.ShapeDtypeStruct((nv, BH, Tp, K), f32), jax.ShapeDtypeStruct((nv, BH, Tp, K), f32),
                   jax.ShapeDtypeStruct((nv, BH, Tp, K), f32), jax.ShapeDtypeStruct((BH, Tp, V), f32),
                   jax.ShapeDtypeStruct((BH, K, V), f32)),
        grid=(BH, nv),
        in_specs=[seq_k, seq_k, seq_k, seq_v, states, seq_v, state],
        out_specs=(part_k, part_k, part_k, seq_v, state),
        compiler_params=pc.compiler_params(K, bv),
        interpret=interpret,
        name="delta_net_chunked_bwd",
    )(qh, kh, w, u_c, h, do, dW)
    # dQ, dK, dW_c sum over value columns: add the value blocks' partials.
    return dq.sum(0), dk.sum(0), dw.sum(0), du, dS0


GPU_KERNELS = Kernels(_forward_call, _backward_call)
