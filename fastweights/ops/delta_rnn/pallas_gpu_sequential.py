"""Delta RNN (versions 1 and 2) as one fused sequential Pallas (Triton) kernel per
(batch, head), with a reversible custom VJP (see `fastweights/ops/common/pallas_sequential.py`).

Per step (as `reference.step`): delta writes into `W` `[K, V]` and `R` `[V, V]`, then
v2: `y = R^T softmax_eps(y_prev) + W^T q`; v1: `y = softmax(R^T y_prev + W^T q)`.

Backward: reversal, as the official CUDA kernels. The forward stores per step the two
write vectors `u_W`, `u_R` and the previous output `y_{t-1}` (3 x `[T, V]` per head, O(T d))
plus the final state; the backward kernel reverts `W_{t-1} = W_t - k_t u_W^T`,
`R_{t-1} = R_t - rk_t u_R^T`, takes `y_{t-1}` from the residuals, and applies the VJP of
the recomputed step (full BPTT through `y`, `W` and `R`). Reversal rather than
recomputation from the initial state, which would need T stored d x d states or O(T^2) work.
Rounding: the reverted W and R re-add the float32 rounding of every write, the same
slow drift measured for the Delta Net kernel (<= 7e-7 relative up to T = 4096) is expected,
as the keys are normalised the same way (not measured separately for this variant).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_rnn.reference import State, check_version, init_state

Array = jax.Array

OP = "delta_rnn"
LAYOUTS = dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH", rk="BTHV", rv="BTHV", rbeta="BTH")


def cell(version: int, ops=ps) -> ps.Cell:
    """The Delta RNN step on a backend's per-head algebra (`pallas_sequential` or `pallas_tpu`)."""
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

    return ps.Cell(f"{OP}_v{version}", step, unstep)


def supported(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 2, initial_state: State | None = None,
              interpret: bool = False, backend=ps) -> str | None:
    """None if `delta_rnn` can run these inputs on `backend`'s kernel, else the reason."""
    return backend.supported(OP, dims={"key dim": q.shape[-1], "value dim": v.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta, rk, rv, rbeta)[0]], interpret=interpret)


@functools.partial(jax.jit, static_argnames=("version", "interpret"))
def delta_rnn(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
              rbeta: Array, *, version: int = 2, initial_state: State | None = None,
              interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, K]`;
    `v, rk, rv` `[B, T, H, V]`; `beta, rbeta` `[B, T, H]`; `State(W [B, H, K, V],
    R [B, H, V, V], y [B, H, V])`), plus `interpret` to run the kernels on CPU. Raises
    `NotImplementedError` when `supported` gives a reason."""
    return run_kernel(ps, q, k, v, beta, rk, rv, rbeta, version=version, initial_state=initial_state,
                      interpret=interpret)


def run_kernel(backend, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
               version: int, initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """`delta_rnn` on the sequential kernel of `backend` (`pallas_sequential`: GPU,
    `pallas_tpu`: TPU)."""
    check_version(version)
    inputs = dict(q=q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta)
    n = check_shapes(OP, inputs, LAYOUTS)
    backend.check_supported(supported(*inputs.values(), interpret=interpret, backend=backend))
    out_dtype, _ = dtype_policy(*inputs.values())
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"]))
    xs = [ps.to_sequences(jnp.asarray(a, out_dtype)) for a in inputs.values()]
    out, final = backend.run(cell(version, backend), xs, (), [ps.state_to_rows(s) for s in state],
                             heads=n["H"], interpret=interpret)
    return (ps.from_sequences(out, n["B"], n["H"]),
            State(*(ps.state_from_rows(s, n["B"], n["H"]) for s in final)))
