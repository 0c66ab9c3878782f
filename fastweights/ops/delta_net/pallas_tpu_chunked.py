"""Pallas TPU (Mosaic) chunked kernels of the Delta Net (delta rule), with a custom VJP.

The per-chunk algebra, the pure-JAX WY/UT stage and the custom VJP are the backend-neutral
`kernel_math.py`'s (`forward_chunk`, `backward_chunk`, `run_chunked`), shared with
`pallas_gpu_chunked.py`; only the kernels differ. Per chunk of C steps starting from state
S `[K, V]`:

    U  = U_c - W_c S,   O = Q S + tril(Q K^T) U,   S' = S + K^T U

Forward kernel: grid `(B*H, N chunks)`, ("parallel", "arbitrary"). Each cell gets one
chunk's `[C, K]` / `[C, V]` blocks, advances S (float32 VMEM scratch, all K x V columns: the
feature dims are never split on TPU), writes O and the state entering the chunk
(`[B*H, N, K, V]`, float32, the backward's checkpoints) and, after the last chunk, the
final state. Backward kernel: the same grid with the chunk axis reversed through the
`index_map`, dS in VMEM scratch, giving dQ, dK, dW_c, dU_c per chunk and dS_0 at the end;
the JAX VJP of the recomputed WY stage gives the rest of dK, dbeta and dV.
Memory: O(T d) plus one float32 `[K, V]` state per chunk, never per-step states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.common.chunking import check_chunk_size
from fastweights.ops.common.sequence import check_shapes
from fastweights.ops.delta_net.kernel_math import Kernels, backward_chunk, forward_chunk, run_chunked
from fastweights.ops.delta_net.reference import State

Array = jax.Array
OP = "delta_net"


def supported(q: Array, k: Array, v: Array, beta: Array, *, chunk_size: int | None = None,
              interpret: bool = False) -> str | None:
    """None if the chunked TPU kernel can run on these inputs, else the reason."""
    return pt.supported_chunked(OP, key_dim=k.shape[-1], value_dim=v.shape[-1],
                                chunk_size=check_chunk_size(OP, chunk_size),
                                dtype=jnp.result_type(q, k, v, beta), interpret=interpret)


def delta_net(q: Array, k: Array, v: Array, beta: Array, *, chunk_size: int | None = None,
              initial_state: State | None = None, interpret: bool = False) -> tuple[Array, State]:
    """Chunked delta rule on Pallas TPU kernels; same arguments and results as `chunked.chunked`.

    Shapes: `q, k` `[B, T, H, K]`, `v` `[B, T, H, V]`, `beta` `[B, T, H]`; returns outputs
    `[B, T, H, V]` in the inputs' dtype and `State(W [B, H, K, V])` in float32.
    `interpret=True` runs the kernels in the Pallas interpreter (CPU tests).
    Raises `NotImplementedError` with the reason when the kernel cannot run (see `supported`).
    """
    chunk_size = check_chunk_size(OP, chunk_size)
    n = check_shapes(OP, dict(q=q, k=k, v=v, beta=beta), dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"))
    km.check_supported(supported(q, k, v, beta, chunk_size=chunk_size, interpret=interpret))
    return run_chunked(TPU_KERNELS, pt.chunk_length(chunk_size, n["T"]), q, k, v, beta,
                       initial_state=initial_state, interpret=interpret)


def _forward_kernel(q_ref, k_ref, w_ref, u_ref, s0_ref, o_ref, h_ref, s_ref, state_ref):
    mask = km.causal_mask(q_ref.shape[0])

    def body(carry):  # S [K, V] float32: the state entering this chunk
        (S,) = carry
        h_ref[...] = S
        o, S = forward_chunk(q_ref[...], k_ref[...], w_ref[...], u_ref[...], S, mask)
        o_ref[...] = o.astype(o_ref.dtype)
        return (S,)

    def finish(carry):
        s_ref[...] = carry[0]

    pt.carry_across_grid((state_ref,), lambda: (s0_ref[...],), body, finish)


def _backward_kernel(q_ref, k_ref, w_ref, u_ref, h_ref, do_ref, ds_ref,
                     dq_ref, dk_ref, dw_ref, du_ref, ds0_ref, state_ref):
    mask = km.causal_mask(q_ref.shape[0])

    def body(carry):  # dS [K, V] float32: cotangent of the state leaving this chunk
        (dS,) = carry
        dq_ref[...], dk_ref[...], dw_ref[...], du_ref[...], dS = backward_chunk(
            q_ref[...], k_ref[...], w_ref[...], u_ref[...], h_ref[...], do_ref[...], dS, mask)
        return (dS,)

    def finish(carry):
        ds0_ref[...] = carry[0]

    pt.carry_across_grid((state_ref,), lambda: (ds_ref[...],), body, finish)


def _forward_call(qh, kh, w, u_c, W0, chunk: int, interpret: bool):
    BH, Tp, K = qh.shape
    V = u_c.shape[-1]
    grid = pt.Grid(BH, Tp // chunk, chunk)
    return grid.call(
        _forward_kernel,
        out_shape=(jax.ShapeDtypeStruct((BH, Tp, V), qh.dtype),
                   jax.ShapeDtypeStruct((BH, Tp // chunk, K, V), jnp.float32),
                   jax.ShapeDtypeStruct((BH, K, V), jnp.float32)),
        in_specs=[grid.seq(K), grid.seq(K), grid.seq(K), grid.seq(V), grid.per_row(K, V)],
        out_specs=(grid.seq(V), grid.per_block(K, V), grid.per_row(K, V)),
        scratch_shapes=pt.vmem((K, V)), interpret=interpret, name="delta_net_chunked_tpu_fwd",
    )(qh, kh, w, u_c, W0)


def _backward_call(qh, kh, w, u_c, h, do, dW, chunk: int, interpret: bool):
    BH, Tp, K = qh.shape
    V = u_c.shape[-1]
    grid = pt.Grid(BH, Tp // chunk, chunk, reverse=True)
    f32 = jnp.float32
    return grid.call(
        _backward_kernel,
        out_shape=(jax.ShapeDtypeStruct((BH, Tp, K), f32), jax.ShapeDtypeStruct((BH, Tp, K), f32),
                   jax.ShapeDtypeStruct((BH, Tp, K), f32), jax.ShapeDtypeStruct((BH, Tp, V), f32),
                   jax.ShapeDtypeStruct((BH, K, V), f32)),
        in_specs=[grid.seq(K), grid.seq(K), grid.seq(K), grid.seq(V), grid.per_block(K, V), grid.seq(V),
                  grid.per_row(K, V)],
        out_specs=(grid.seq(K), grid.seq(K), grid.seq(K), grid.seq(V), grid.per_row(K, V)),
        scratch_shapes=pt.vmem((K, V)), interpret=interpret, name="delta_net_chunked_tpu_bwd",
    )(qh, kh, w, u_c, h, do, dW)


TPU_KERNELS = Kernels(_forward_call, _backward_call)
