"""Chunked delta rule as Pallas GPU (Triton) kernels with a custom VJP.

The algebra is `chunked.py`'s WY/UT form. Per chunk of C steps starting from state S `[K, V]`:

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
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from fastweights.ops.common import pallas_gpu_chunked as pc
from fastweights.ops.common.chunking import check_chunk_size
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_net.chunked import wy_representation
from fastweights.ops.delta_net.reference import State, init_state

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


# --- layout and the pure-JAX WY stage -------------------------------------------------------

def _wy(k: Array, beta: Array, v: Array, chunk: int) -> tuple[Array, Array]:
    """Head-first padded `k [BH, Tp, K]`, `beta [BH, Tp]`, `v [BH, Tp, V]` -> `(W_c, U_c)` with
    the same layouts, float32."""
    BH, Tp = beta.shape
    split = lambda x: x.astype(jnp.float32).reshape(BH, Tp // chunk, chunk, *x.shape[2:])  # noqa: E731
    w, u = wy_representation(split(k), split(beta), split(v))
    return w.reshape(BH, Tp, -1), u.reshape(BH, Tp, -1)


def _prepare(config, q, k, v, beta):
    chunk = config[1]
    qh, kh, vh, bh = (pc.to_heads(x, chunk) for x in (q, k, v, beta))
    return qh, kh, vh, bh


# --- per-chunk algebra (shared with the TPU kernels, `pallas_tpu.py`) ------------------------

def forward_chunk(q, k, w, u_c, S, mask):
    """One chunk: `q, k, w` `[C, K]` (dot dtype), `u_c` `[C, BV]` float32, `S` `[K, BV]`
    float32 (the state entering the chunk) -> `(O [C, BV], S')`, float32."""
    cdt = q.dtype
    Sc = S.astype(cdt)
    u = (u_c - pc.dot(w.astype(cdt), Sc)).astype(cdt)               # the values written
    attn = jnp.where(mask, pc.dot(q, k, trans_b=True), 0.0).astype(cdt)
    return pc.dot(q, Sc) + pc.dot(attn, u), S + pc.dot(k, u, trans_a=True)


def backward_chunk(q, k, w, u_c, S, do, dS, mask):
    """The VJP of `forward_chunk` given `dO` `[C, BV]` and `dS` (the cotangent of `S'`):
    `(dQ, dK (direct part), dW_c, dU_c, dS entering the chunk)`, float32."""
    cdt = q.dtype
    w, do = w.astype(cdt), do.astype(cdt)
    Sc, dSc = S.astype(cdt), dS.astype(cdt)
    u = (u_c - pc.dot(w, Sc)).astype(cdt)
    attn = jnp.where(mask, pc.dot(q, k, trans_b=True), 0.0).astype(cdt)
    du = pc.dot(attn, do, trans_a=True) + pc.dot(k, dSc)            # [C, BV]
    d_attn = jnp.where(mask, pc.dot(do, u, trans_b=True), 0.0).astype(cdt)
    dq = pc.dot(do, Sc, trans_b=True) + pc.dot(d_attn, k)
    dk = pc.dot(u, dSc, trans_b=True) + pc.dot(d_attn, q, trans_a=True)
    duc = du.astype(cdt)
    dw = -pc.dot(duc, Sc, trans_b=True)
    return dq, dk, dw, du, dS + pc.dot(q, do, trans_a=True) - pc.dot(w, duc, trans_a=True)


# --- kernels ------------------------------------------------------------------------------

def _forward_kernel(q_ref, k_ref, w_ref, u_ref, s0_ref, o_ref, h_ref, s_ref, *, chunk: int):
    K = q_ref.shape[-1]
    n_chunks = q_ref.shape[0] // chunk
    mask = pc.causal_mask(chunk)

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
    mask = pc.causal_mask(chunk)

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


# --- custom VJP (generic over the backend's kernel calls) -----------------------------------

class Kernels(NamedTuple):
    """A backend's two kernel calls. `forward(qh, kh, w, u_c, W0, chunk, interpret) ->
    (O [BH, Tp, V], per-chunk states (any layout), final W [BH, K, V])`;
    `backward(qh, kh, w, u_c, states, dO, dW, chunk, interpret) -> (dQ, dK, dW_c, dU_c, dW0)`."""
    forward: Callable
    backward: Callable


GPU_KERNELS = Kernels(_forward_call, _backward_call)


def run_chunked(kernels: Kernels, chunk: int, q: Array, k: Array, v: Array, beta: Array, *,
                initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """The chunked delta rule on `kernels` with chunks of `chunk` steps (checked by the
    caller): the dtype policy, the state and the custom VJP, for the GPU and TPU kernels."""
    n = check_shapes(OP, dict(q=q, k=k, v=v, beta=beta), dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH"))
    out_dtype, acc = dtype_policy(q, k, v, beta)
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"], acc))
    dtype = jnp.result_type(q, k, v, beta)
    config = (kernels, chunk, n["B"], n["T"], bool(interpret))
    q, k, v, beta = (x.astype(dtype) for x in (q, k, v, beta))
    o, W = _delta_rule(config, q, k, v, beta, state.W)
    return o.astype(out_dtype), State(W)


def _run_forward(config, q, k, v, beta, W0):
    kernels, chunk, B, T, interpret = config
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    qh, kh, vh, bh = _prepare(config, q, k, v, beta)
    w, u_c = _wy(kh, bh, vh, chunk)
    o, h, W = kernels.forward(qh, kh, w, u_c, W0.reshape(B * H, K, V), chunk, interpret)
    return pc.from_heads(o, B, T), W.reshape(B, H, K, V), (qh, kh, vh, bh, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _delta_rule(config, q, k, v, beta, W0):
    o, W, _ = _run_forward(config, q, k, v, beta, W0)
    return o, W


def _delta_rule_fwd(config, q, k, v, beta, W0):
    o, W, (qh, kh, vh, bh, h) = _run_forward(config, q, k, v, beta, W0)
    return (o, W), (qh, kh, vh, bh, h, W0)


def _delta_rule_bwd(config, residuals, cotangents):
    kernels, chunk, B, T, interpret = config
    qh, kh, vh, bh, h, W0 = residuals
    do, dW = cotangents
    H, K, V = W0.shape[1:]
    (w, u_c), wy_vjp = jax.vjp(lambda k_, b_, v_: _wy(k_, b_, v_, chunk), kh, bh, vh)
    do_h = pc.to_heads(do.astype(qh.dtype), chunk)
    dq, dk, dw, du_c, dW0 = kernels.backward(qh, kh, w, u_c, h, do_h,
                                             dW.reshape(B * H, K, V).astype(jnp.float32), chunk, interpret)
    dk_wy, dbeta, dv = wy_vjp((dw, du_c))
    grads = (dq, dk + dk_wy, dv, dbeta)
    dq, dk, dv, dbeta = (pc.from_heads(g, B, T).astype(qh.dtype) for g in grads)
    return dq, dk, dv, dbeta, dW0.reshape(B, H, K, V).astype(W0.dtype)


_delta_rule.defvjp(_delta_rule_fwd, _delta_rule_bwd)
