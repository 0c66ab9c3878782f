"""Delta RNN sequential kernels, backend-neutral half: the step (`cell`) and the wrapper
(`run_sequential`) shared by `pallas_gpu_sequential.py` (Triton) and `pallas_tpu_sequential.py`
(Mosaic TPU).

Per step (as `reference.step`): delta writes into `W` `[K, V]` and `R` `[V, V]`, then
v2: `y = R^T softmax_eps(y_prev) + W^T q`; v1: `y = softmax(R^T y_prev + W^T q)`.
`cell(version, ops)` is that step and its inverse on a backend's per-head algebra `ops`;
the residuals are the two write vectors `u_W`, `u_R` and the previous output `y_{t-1}`.
Nothing here imports a Pallas backend: the backend modules (`pallas_gpu_sequential` or
`pallas_tpu` from `fastweights.ops.common`) are passed in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_rnn.reference import State, check_version, init_state

Array = jax.Array

OP = "delta_rnn"
LAYOUTS = dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH", rk="BTHV", rv="BTHV", rbeta="BTH")


def cell(version: int, ops) -> km.Cell:
    """The Delta RNN step on a backend's per-head algebra `ops` (`pallas_gpu_sequential`: 1D
    vectors, or `pallas_tpu`: `[1, D]` rows)."""
    def step(state, x, params):
        (W, R, y_prev), (q, k, v, beta, rk, rv, rbeta) = state, x
        W, u_w = ops.delta_write(W, k, v, beta)
        R, u_r = ops.delta_write(R, rk, rv, rbeta)
        z = ops.read(W, q)
        if version == 2:
            y = ops.read(R, ops.softmax_eps(y_prev)) + z
        else:
            y = ops.softmax(ops.read(R, y_prev) + z)
        return (W, R, y), y, (u_w, u_r, y_prev)

    def unstep(state, x, res, params):
        (W, R, _), (_, k, _, _, rk, _, _), (u_w, u_r, y_prev) = state, x, res
        return (W - ops.outer(k, u_w), R - ops.outer(rk, u_r), y_prev)

    return km.Cell(f"{OP}_v{version}", step, unstep)


def supported_sequential(backend, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
                         rbeta: Array, *, interpret: bool) -> str | None:
    """None if `delta_rnn` can run these inputs on `backend`'s sequential kernel, else the reason."""
    return backend.supported(OP, dims={"key dim": q.shape[-1], "value dim": v.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta, rk, rv, rbeta)[0]], interpret=interpret)


def run_sequential(backend, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
                   version: int, initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """`delta_rnn` on the sequential kernel of `backend` (`pallas_gpu_sequential`: GPU,
    `pallas_tpu`: TPU); raises `NotImplementedError` when `supported_sequential` gives a reason."""
    check_version(version)
    inputs = dict(q=q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta)
    n = check_shapes(OP, inputs, LAYOUTS)
    km.check_supported(supported_sequential(backend, *inputs.values(), interpret=interpret))
    out_dtype, _ = dtype_policy(*inputs.values())
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"]))
    xs = [km.to_sequences(jnp.asarray(a, out_dtype)) for a in inputs.values()]
    out, final = backend.run(cell(version, backend), xs, (), [km.state_to_rows(s) for s in state],
                             heads=n["H"], interpret=interpret)
    return (km.from_sequences(out, n["B"], n["H"]),
            State(*(km.state_from_rows(s, n["B"], n["H"]) for s in final)))
