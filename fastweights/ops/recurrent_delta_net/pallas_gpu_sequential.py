"""Recurrent Delta Net as one fused sequential Pallas (Triton) kernel per (batch, head), with
a reversible custom VJP (see `fastweights/ops/common/pallas_sequential.py`).

Per step (as `reference.step`): `s = tanh(y_prev)`; `q = softmax(q~ + R_q^T s)`,
`k = softmax(k~ + R_k^T s)`, `v = v~ + R_v^T s`, `beta = sigmoid(b~ + r_b . s)`; delta write
into `W`; `y = W^T q`. The slow parameters of the program's head stay in registers.

Backward: reversal, as the official CUDA kernel. The forward stores per step the
post-softmax key `k_t`, the write vector `u_t` and the previous output `y_{t-1}`
(3 x `[T, D]` per head, O(T d)) plus the final state; the backward kernel reverts
`W_{t-1} = W_t - k_t u_t^T`, and applies the VJP of the recomputed step, which gives the
gradients of the raw inputs, of `y_{t-1}` (the feedback path) and of this head's `R_q, R_k,
R_v, r_b`; the latter are accumulated over time in registers and summed over the batch
outside the kernel (no atomics, so deterministic). Reversal rather than recomputation from
the initial state, which would need T stored d x d states or O(T^2) work. Rounding: the
reverted W re-adds the float32 rounding of every write, the same slow
drift measured for the Delta Net kernel (<= 7e-7 relative up to T = 4096) is expected,
as the keys are normalised the same way (not measured separately for this variant).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.recurrent_delta_net.reference import Params, State, as_params, init_state

Array = jax.Array

OP = "recurrent_delta_net"
LAYOUTS = dict(q="BTHK", k="BTHK", v="BTHK", beta="BTH")


def cell(ops=ps) -> ps.Cell:
    """The RDN step on a backend's per-head algebra (`pallas_sequential` or `pallas_tpu`)."""
    def step(state, x, params):
        (W, y_prev), (q, k, v, beta), (R_q, R_k, R_v, r_b) = state, x, params
        s = jnp.tanh(y_prev)
        q = ops.softmax(q + ops.read(R_q, s))
        k = ops.softmax(k + ops.read(R_k, s))
        v = v + ops.read(R_v, s)
        beta = jax.nn.sigmoid(beta + ops.vdot(r_b, s))
        W, u = ops.delta_write(W, k, v, beta)
        y = ops.read(W, q)
        return (W, y), y, (k, u, y_prev)

    def unstep(state, x, res, params):
        (W, _), (k, u, y_prev) = state, res
        return (W - ops.outer(k, u), y_prev)

    return ps.Cell(OP, step, unstep)


def supported(q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
              initial_state: State | None = None, interpret: bool = False, backend=ps) -> str | None:
    """None if `recurrent_delta_net` can run these inputs on `backend`'s kernel, else the reason."""
    params = as_params(params)
    return backend.supported(OP, dims={"head dim": q.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta)[0], *(p.dtype for p in params)],
                             interpret=interpret)


@functools.partial(jax.jit, static_argnames=("interpret",))
def recurrent_delta_net(q: Array, k: Array, v: Array, beta: Array, *,
                        params: Params | Mapping[str, Array],
                        initial_state: State | None = None,
                        interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (raw `q, k, v` `[B, T, H, D]`,
    `beta` `[B, T, H]`, `params` `R_q, R_k, R_v` `[H, D, D]`, `r_b` `[H, D]`;
    `State(W [B, H, D, D], y [B, H, D])`), plus `interpret` to run the kernels on CPU.
    Gradients reach the inputs, `params` and the initial state. Raises `NotImplementedError`
    when `supported` gives a reason."""
    return run_kernel(ps, q, k, v, beta, params=params, initial_state=initial_state, interpret=interpret)


def run_kernel(backend, q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
               initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """`recurrent_delta_net` on the sequential kernel of `backend` (`pallas_sequential`: GPU,
    `pallas_tpu`: TPU)."""
    params = as_params(params)
    inputs = dict(q=q, k=k, v=v, beta=beta)
    n = check_shapes(OP, inputs, LAYOUTS)
    check_shapes(OP, params._asdict(), dict(R_q="HKK", R_k="HKK", R_v="HKK", r_b="HK"),
                 {"H": n["H"], "K": n["K"]})
    backend.check_supported(supported(*inputs.values(), params=params, interpret=interpret, backend=backend))
    out_dtype, _ = dtype_policy(*inputs.values())
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["K"]))
    xs = [ps.to_sequences(jnp.asarray(a, out_dtype)) for a in inputs.values()]
    out, final = backend.run(cell(backend), xs, tuple(params), [ps.state_to_rows(s) for s in state],
                             heads=n["H"], interpret=interpret)
    return (ps.from_sequences(out, n["B"], n["H"]),
            State(*(ps.state_from_rows(s, n["B"], n["H"]) for s in final)))
