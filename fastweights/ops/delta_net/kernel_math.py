"""Delta Net kernels, backend-neutral half: the chunked kernels' per-chunk forward/backward
algebra, WY stage and custom VJP, and the sequential kernels' step (`cell`) and wrapper, shared
by the Pallas GPU (Triton) and TPU (Mosaic) files, which supply only their kernels.

Chunked (`pallas_gpu_chunked.py`, `pallas_tpu_chunked.py`): the WY/UT form of `chunked.py`.
Per chunk of C steps starting from state S `[K, V]`:

    W_c, U_c = T^-1 diag(beta) K,  T^-1 diag(beta) V      (T = I + tril(diag(beta) K K^T, -1))
    U   = U_c - W_c S                                      (the values actually written)
    O   = Q S + tril(Q K^T) U
    S'  = S + K^T U

`forward_chunk` / `backward_chunk` are that algebra and its VJP on one chunk's blocks, called
inside both backends' kernels; `run_chunked` is the dtype policy, the state, the pure-JAX WY
stage and the custom VJP around a backend's two kernel calls (`Kernels`); the stages and the
backward are described in `pallas_gpu_chunked.py`.

Sequential (`pallas_gpu_sequential.py`, `pallas_tpu_sequential.py`): per step (as
`reference.step`) `u = beta (v - W^T k)`, `W += k u^T`, `o = W^T q`. `cell(ops)` is that step
and its inverse on a backend's per-head algebra; `run_sequential(backend, ...)` runs it on the
backend's driver (`pallas_gpu_sequential` or `pallas_tpu` from `fastweights.ops.common`).

Nothing here imports a Pallas backend: the backend modules are passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_net.chunked import wy_representation
from fastweights.ops.delta_net.reference import State, init_state

Array = jax.Array
OP = "delta_net"
LAYOUTS = dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH")


# === chunked kernels ========================================================================

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
    qh, kh, vh, bh = (km.to_heads(x, chunk) for x in (q, k, v, beta))
    return qh, kh, vh, bh


# --- per-chunk algebra (inside the GPU and the TPU kernels) --------------------------------

def forward_chunk(q, k, w, u_c, S, mask):
    """One chunk: `q, k, w` `[C, K]` (dot dtype), `u_c` `[C, BV]` float32, `S` `[K, BV]`
    float32 (the state entering the chunk) -> `(O [C, BV], S')`, float32."""
    cdt = q.dtype
    Sc = S.astype(cdt)
    u = (u_c - km.dot(w.astype(cdt), Sc)).astype(cdt)               # the values written
    attn = jnp.where(mask, km.dot(q, k, trans_b=True), 0.0).astype(cdt)
    return km.dot(q, Sc) + km.dot(attn, u), S + km.dot(k, u, trans_a=True)


def backward_chunk(q, k, w, u_c, S, do, dS, mask):
    """The VJP of `forward_chunk` given `dO` `[C, BV]` and `dS` (the cotangent of `S'`):
    `(dQ, dK (direct part), dW_c, dU_c, dS entering the chunk)`, float32."""
    cdt = q.dtype
    w, do = w.astype(cdt), do.astype(cdt)
    Sc, dSc = S.astype(cdt), dS.astype(cdt)
    u = (u_c - km.dot(w, Sc)).astype(cdt)
    attn = jnp.where(mask, km.dot(q, k, trans_b=True), 0.0).astype(cdt)
    du = km.dot(attn, do, trans_a=True) + km.dot(k, dSc)            # [C, BV]
    d_attn = jnp.where(mask, km.dot(do, u, trans_b=True), 0.0).astype(cdt)
    dq = km.dot(do, Sc, trans_b=True) + km.dot(d_attn, k)
    dk = km.dot(u, dSc, trans_b=True) + km.dot(d_attn, q, trans_a=True)
    duc = du.astype(cdt)
    dw = -km.dot(duc, Sc, trans_b=True)
    return dq, dk, dw, du, dS + km.dot(q, do, trans_a=True) - km.dot(w, duc, trans_a=True)


# --- custom VJP (generic over the backend's kernel calls) -----------------------------------

class Kernels(NamedTuple):
    """A backend's two kernel calls. `forward(qh, kh, w, u_c, W0, chunk, interpret) ->
    (O [BH, Tp, V], per-chunk states (any layout), final W [BH, K, V])`;
    `backward(qh, kh, w, u_c, states, dO, dW, chunk, interpret) -> (dQ, dK, dW_c, dU_c, dW0)`."""
    forward: Callable
    backward: Callable


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
    return km.from_heads(o, B, T), W.reshape(B, H, K, V), (qh, kh, vh, bh, h)


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
    do_h = km.to_heads(do.astype(qh.dtype), chunk)
    dq, dk, dw, du_c, dW0 = kernels.backward(qh, kh, w, u_c, h, do_h,
                                             dW.reshape(B * H, K, V).astype(jnp.float32), chunk, interpret)
    dk_wy, dbeta, dv = wy_vjp((dw, du_c))
    grads = (dq, dk + dk_wy, dv, dbeta)
    dq, dk, dv, dbeta = (km.from_heads(g, B, T).astype(qh.dtype) for g in grads)
    return dq, dk, dv, dbeta, dW0.reshape(B, H, K, V).astype(W0.dtype)


_delta_rule.defvjp(_delta_rule_fwd, _delta_rule_bwd)


# === sequential kernels =====================================================================

def cell(ops) -> km.Cell:
    """The Delta Net step on a backend's per-head algebra `ops` (`pallas_gpu_sequential`: 1D
    vectors, or `pallas_tpu`: `[1, D]` rows)."""
    def step(state, x, params):
        (W,), (q, k, v, beta) = state, x
        W, u = ops.delta_write(W, k, v, beta)
        return (W,), ops.read(W, q), (u,)

    def unstep(state, x, res, params):
        (W,), (_, k, _, _), (u,) = state, x, res
        return (W - ops.outer(k, u),)

    return km.Cell(OP, step, unstep)


def supported_sequential(backend, q: Array, k: Array, v: Array, beta: Array, *, interpret: bool,
                         form: str) -> str | None:
    """None if `delta_net` can run these inputs on `backend`'s sequential kernel, else the
    reason (`form`: the implementation name the reason gives)."""
    return backend.supported(OP, dims={"key dim": q.shape[-1], "value dim": v.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta)[0]], interpret=interpret, form=form)


def run_sequential(backend, q: Array, k: Array, v: Array, beta: Array, *, initial_state: State | None,
                   interpret: bool, form: str) -> tuple[Array, State]:
    """`delta_net` on the sequential kernel of `backend` (`pallas_gpu_sequential`: GPU,
    `pallas_tpu`: TPU); raises `NotImplementedError` when `supported_sequential` gives a reason."""
    n = check_shapes(OP, dict(q=q, k=k, v=v, beta=beta), LAYOUTS)
    km.check_supported(supported_sequential(backend, q, k, v, beta, interpret=interpret, form=form))
    out_dtype, _ = dtype_policy(q, k, v, beta)
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"]))
    xs = [km.to_sequences(jnp.asarray(a, out_dtype)) for a in (q, k, v, beta)]
    out, (W,) = backend.run(cell(backend), xs, (), [km.state_to_rows(state.W)], heads=n["H"],
                            interpret=interpret)
    return km.from_sequences(out, n["B"], n["H"]), State(km.state_from_rows(W, n["B"], n["H"]))
