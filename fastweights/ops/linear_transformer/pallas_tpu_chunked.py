"""Pallas TPU (Mosaic) chunked kernels of the Linear Transformer (sum rule), with a custom VJP.

The per-chunk algebra and the custom VJP are the backend-neutral `kernel_math.py`'s
(`forward_chunk`, `backward_chunk`, `run_chunked`), shared with `pallas_gpu_chunked.py`; only
the kernels differ. Per chunk of C steps starting from state (S `[K, V]`, z `[K]`):

    num = Q S + tril(Q K^T) V,   den = Q z + rowsum(tril(Q K^T)) + eps,   O = num / den
    S'  = S + K^T V              (normalize=False: O = num)

The normaliser entering each chunk, `z_c`, is a cumulative sum formed in JAX (O(T K)).
Forward kernel: grid `(B*H, N chunks)`, ("parallel", "arbitrary"); each cell gets one chunk's
blocks and that chunk's `z_c` row, advances S (float32 VMEM scratch, all K x V columns),
writes O and the state entering the chunk (`[B*H, N, K, V]`, float32) and, after the last
chunk, the final S. Backward kernel: the chunk axis reversed through the `index_map`, dS in
VMEM scratch, giving dQ, dK, dV, dz_c per chunk and dS_0 at the end; `rowsum(dO * O)` (the
normaliser's cotangent) is formed in JAX. No value blocks, so the V-independent terms are
counted once without a partial sum.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.common.chunking import check_chunk_size
from fastweights.ops.common.sequence import check_shapes
from fastweights.ops.linear_transformer.kernel_math import Kernels, backward_chunk, forward_chunk, run_chunked
from fastweights.ops.linear_transformer.reference import State

Array = jax.Array
OP = "linear_transformer"


def supported(q: Array, k: Array, v: Array, *, chunk_size: int | None = None, interpret: bool = False) -> str | None:
    """None if the chunked TPU kernel can run on these inputs, else the reason."""
    return pt.supported_chunked(OP, key_dim=k.shape[-1], value_dim=v.shape[-1],
                                chunk_size=check_chunk_size(OP, chunk_size),
                                dtype=jnp.result_type(q, k, v), interpret=interpret)


def linear_transformer(q: Array, k: Array, v: Array, *, normalize: bool = False, eps: float = 1e-5,
                       chunk_size: int | None = None, initial_state: State | None = None,
                       interpret: bool = False) -> tuple[Array, State]:
    """Chunked sum rule on Pallas TPU kernels; same arguments and results as `chunked.chunked`.

    Shapes: `q, k` `[B, T, H, K]`, `v` `[B, T, H, V]`; returns outputs `[B, T, H, V]` in the
    inputs' dtype and `State(W [B, H, K, V], z [B, H, K])` in float32.
    `interpret=True` runs the kernels in the Pallas interpreter (CPU tests).
    Raises `NotImplementedError` with the reason when the kernel cannot run (see `supported`).
    """
    chunk_size = check_chunk_size(OP, chunk_size)
    n = check_shapes(OP, dict(q=q, k=k, v=v), dict(q="BTHK", k="BTHK", v="BTHV"))
    km.check_supported(supported(q, k, v, chunk_size=chunk_size, interpret=interpret))
    return run_chunked(TPU_KERNELS, pt.chunk_length(chunk_size, n["T"]), q, k, v, normalize=normalize,
                       eps=eps, initial_state=initial_state, interpret=interpret)


def _forward_kernel(q_ref, k_ref, v_ref, zc_ref, s0_ref, o_ref, h_ref, s_ref, state_ref, *,
                    normalize: bool, eps: float):
    mask = km.causal_mask(q_ref.shape[0])

    def body(carry):  # S [K, V] float32: the state entering this chunk
        (S,) = carry
        h_ref[...] = S
        z = zc_ref[...] if normalize else None                        # [1, K]
        o, S = forward_chunk(q_ref[...], k_ref[...], v_ref[...], S, z, mask, normalize=normalize, eps=eps)
        o_ref[...] = o.astype(o_ref.dtype)
        return (S,)

    def finish(carry):
        s_ref[...] = carry[0]

    pt.carry_across_grid((state_ref,), lambda: (s0_ref[...],), body, finish)


def _backward_kernel(q_ref, k_ref, v_ref, zc_ref, h_ref, do_ref, g_ref, ds_ref,
                     dq_ref, dk_ref, dv_ref, dzc_ref, ds0_ref, state_ref, *, normalize: bool, eps: float):
    mask = km.causal_mask(q_ref.shape[0])

    def body(carry):  # dS [K, V] float32: cotangent of the state leaving this chunk
        (dS,) = carry
        z = zc_ref[...] if normalize else None
        dq_ref[...], dk_ref[...], dv_ref[...], dzc_ref[...], dS = backward_chunk(
            q_ref[...], k_ref[...], v_ref[...], h_ref[...], z, do_ref[...], g_ref[...], dS, mask,
            normalize=normalize, eps=eps, first_block=True)
        return (dS,)

    def finish(carry):
        ds0_ref[...] = carry[0]

    pt.carry_across_grid((state_ref,), lambda: (ds_ref[...],), body, finish)


def _forward_call(qh, kh, vh, zc, W0, chunk, normalize, eps, interpret):
    BH, Tp, K = qh.shape
    V = vh.shape[-1]
    n = Tp // chunk
    grid = pt.Grid(BH, n, chunk)
    return grid.call(
        functools.partial(_forward_kernel, normalize=normalize, eps=eps),
        out_shape=(jax.ShapeDtypeStruct((BH, Tp, V), qh.dtype),
                   jax.ShapeDtypeStruct((BH, n, K, V), jnp.float32),
                   jax.ShapeDtypeStruct((BH, K, V), jnp.float32)),
        in_specs=[grid.seq(K), grid.seq(K), grid.seq(V), grid.per_block(1, K), grid.per_row(K, V)],
        out_specs=(grid.seq(V), grid.per_block(K, V), grid.per_row(K, V)),
        scratch_shapes=pt.vmem((K, V)), interpret=interpret, name="linear_transformer_chunked_tpu_fwd",
    )(qh, kh, vh, zc.reshape(BH, n, 1, K), W0)   # z_c rows as [1, K] blocks (the (8, 128) rule)


def _backward_call(qh, kh, vh, zc, h, do, g, dW, chunk, normalize, eps, interpret):
    BH, Tp, K = qh.shape
    V = vh.shape[-1]
    n = Tp // chunk
    grid = pt.Grid(BH, n, chunk, reverse=True)
    f32 = jnp.float32
    dq, dk, dv, dzc, dS0 = grid.call(
        functools.partial(_backward_kernel, normalize=normalize, eps=eps),
        out_shape=(jax.ShapeDtypeStruct((BH, Tp, K), f32), jax.ShapeDtypeStruct((BH, Tp, K), f32),
                   jax.ShapeDtypeStruct((BH, Tp, V), f32), jax.ShapeDtypeStruct((BH, n, 1, K), f32),
                   jax.ShapeDtypeStruct((BH, K, V), f32)),
        in_specs=[grid.seq(K), grid.seq(K), grid.seq(V), grid.per_block(1, K), grid.per_block(K, V),
                  grid.seq(V), grid.seq(1), grid.per_row(K, V)],
        out_specs=(grid.seq(K), grid.seq(K), grid.seq(V), grid.per_block(1, K), grid.per_row(K, V)),
        scratch_shapes=pt.vmem((K, V)), interpret=interpret, name="linear_transformer_chunked_tpu_bwd",
    )(qh, kh, vh, zc.reshape(BH, n, 1, K), h, do, g, dW)
    return dq, dk, dv, dzc.reshape(BH, n, K), dS0


TPU_KERNELS = Kernels(_forward_call, _backward_call)
