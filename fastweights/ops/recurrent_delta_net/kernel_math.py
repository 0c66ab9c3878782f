"""Recurrent Delta Net sequential kernels, backend-neutral half: the step (`cell`) and the
wrapper (`run_sequential`) shared by `pallas_gpu_sequential.py` (Triton) and
`pallas_tpu_sequential.py` (Mosaic TPU).

Per step (as `reference.step`): `s = tanh(y_prev)`; `q = softmax(q~ + R_q^T s)`,
`k = softmax(k~ + R_k^T s)`, `v = v~ + R_v^T s`, `beta = sigmoid(b~ + r_b . s)`; delta write
into `W`; `y = W^T q`. `cell(ops)` is that step and its inverse on a backend's per-head
algebra `ops`, with this head's slow `R_q, R_k, R_v, r_b` as its parameters; the residuals
are the post-softmax key `k_t`, the write vector `u_t` and the previous output `y_{t-1}`.
Nothing here imports a Pallas backend: the backend modules (`pallas_gpu_sequential` or
`pallas_tpu` from `fastweights.ops.common`) are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.recurrent_delta_net.reference import Params, State, as_params, init_state

Array = jax.Array

OP = "recurrent_delta_net"
LAYOUTS = dict(q="BTHK", k="BTHK", v="BTHK", beta="BTH")


def cell(ops) -> km.Cell:
    """The RDN step on a backend's per-head algebra `ops` (`pallas_gpu_sequential`: 1D vectors,
    or `pallas_tpu`: `[1, D]` rows)."""
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

    return km.Cell(OP, step, unstep)


def supported_sequential(backend, q: Array, k: Array, v: Array, beta: Array, *,
                         params: Params | Mapping[str, Array], interpret: bool) -> str | None:
    """None if `recurrent_delta_net` can run these inputs on `backend`'s sequential kernel,
    else the reason."""
    params = as_params(params)
    return backend.supported(OP, dims={"head dim": q.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta)[0], *(p.dtype for p in params)],
                             interpret=interpret)


def run_sequential(backend, q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
                   initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """`recurrent_delta_net` on the sequential kernel of `backend` (`pallas_gpu_sequential`:
    GPU, `pallas_tpu`: TPU); raises `NotImplementedError` when `supported_sequential` gives a
    reason."""
    params = as_params(params)
    inputs = dict(q=q, k=k, v=v, beta=beta)
    n = check_shapes(OP, inputs, LAYOUTS)
    check_shapes(OP, params._asdict(), dict(R_q="HKK", R_k="HKK", R_v="HKK", r_b="HK"),
                 {"H": n["H"], "K": n["K"]})
    km.check_supported(supported_sequential(backend, *inputs.values(), params=params, interpret=interpret))
    out_dtype, _ = dtype_policy(*inputs.values())
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["K"]))
    xs = [km.to_sequences(jnp.asarray(a, out_dtype)) for a in inputs.values()]
    out, final = backend.run(cell(backend), xs, tuple(params), [km.state_to_rows(s) for s in state],
                             heads=n["H"], interpret=interpret)
    return (km.from_sequences(out, n["B"], n["H"]),
            State(*(km.state_from_rows(s, n["B"], n["H"]) for s in final)))
