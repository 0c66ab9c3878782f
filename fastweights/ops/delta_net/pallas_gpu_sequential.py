"""Delta Net as one fused sequential Pallas (Triton) kernel per (batch, head), with a
reversible custom VJP (see `fastweights/ops/common/pallas_sequential.py`).

Per step (as `reference.step`): `u = beta (v - W^T k)`, `W += k u^T`, `o = W^T q`.

Backward: reversal, as the official CUDA kernel. The forward stores `u_t` `[T, V]` per head
(O(T d)) and the final W; the backward kernel walks t = T-1 .. 0, reverts
`W_{t-1} = W_t - k_t u_t^T`, and applies the VJP of the recomputed step. Reversal instead
of recomputation from W_0 because recomputation would need either T stored d x d states or
O(T^2) work. Rounding: the reverted W re-adds the float32 rounding of every write. Measured
(W_0 ~ N(0, 0.25), the library's example inputs: sum-normalised ELU+1 keys, sigmoid betas):
the largest relative error of any reverted W_{t-1} is 2e-7 at T = 64, 5e-7 at T = 1024 and
7e-7 at T = 4096 (d = 16 and 64), i.e. it grows slowly (random-walk like), far below the
float32 gradient tolerance; keys with large norms would amplify it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_net.reference import State, init_state

Array = jax.Array

OP = "delta_net"
LAYOUTS = dict(q="BTHK", k="BTHK", v="BTHV", beta="BTH")


def cell(ops=ps) -> ps.Cell:
    """The Delta Net step on a backend's per-head algebra (`pallas_sequential` or `pallas_tpu`)."""
    def step(state, x, params):
        (W,), (q, k, v, beta) = state, x
        W, u = ops.delta_write(W, k, v, beta)
        return (W,), ops.read(W, q), (u,)

    def unstep(state, x, res, params):
        (W,), (_, k, _, _), (u,) = state, x, res
        return (W - ops.outer(k, u),)

    return ps.Cell(OP, step, unstep)


def supported(q: Array, k: Array, v: Array, beta: Array, *, initial_state: State | None = None,
              interpret: bool = False, backend=ps) -> str | None:
    """None if `delta_net` can run these inputs on `backend`'s kernel, else the reason."""
    form = "pallas_gpu_recurrent" if backend is ps else "pallas_tpu_recurrent"
    return backend.supported(OP, dims={"key dim": q.shape[-1], "value dim": v.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta)[0]], interpret=interpret, form=form)


@functools.partial(jax.jit, static_argnames=("interpret",))
def delta_net(q: Array, k: Array, v: Array, beta: Array, *,
              initial_state: State | None = None,
              interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, K]`, `v`
    `[B, T, H, V]`, `beta` `[B, T, H]`; `State(W [B, H, K, V])`), plus `interpret` to run the
    kernels on CPU. Raises `NotImplementedError` when `supported` gives a reason."""
    return run_kernel(ps, q, k, v, beta, initial_state=initial_state, interpret=interpret)


def run_kernel(backend, q: Array, k: Array, v: Array, beta: Array, *, initial_state: State | None,
               interpret: bool) -> tuple[Array, State]:
    """`delta_net` on the sequential kernel of `backend` (`pallas_sequential`: GPU,
    `pallas_tpu`: TPU)."""
    n = check_shapes(OP, dict(q=q, k=k, v=v, beta=beta), LAYOUTS)
    backend.check_supported(supported(q, k, v, beta, interpret=interpret, backend=backend))
    out_dtype, _ = dtype_policy(q, k, v, beta)
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"]))
    xs = [ps.to_sequences(jnp.asarray(a, out_dtype)) for a in (q, k, v, beta)]
    out, (W,) = backend.run(cell(backend), xs, (), [ps.state_to_rows(state.W)], heads=n["H"],
                            interpret=interpret)
    return ps.from_sequences(out, n["B"], n["H"]), State(ps.state_from_rows(W, n["B"], n["H"]))
