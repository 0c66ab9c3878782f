"""Delta LSTM sequential kernels, backend-neutral half: the step (`cell`) and the wrapper
(`run_sequential`) shared by `pallas_gpu_sequential.py` (Triton) and `pallas_tpu_sequential.py`
(Mosaic TPU).

Per step (as `reference.step`): delta writes into the six matrices `W_g` `[K, V]`, `R_g`
`[V, V]` (g in i, u, o), gates from `R_g^T s + W_g^T q_g` with `s = h_prev` (v1) or
`softmax_eps(h_prev)` (v2-v4), cell and output as in the reference. `cell(version, ops)` is
that step and its inverse on a backend's per-head algebra `ops`, with the gate axis (3) split
into separate arrays (Triton register tensors need power-of-two sizes) and the state held as
six separate matrices plus `h`, `c`; the residuals are the six write vectors and `h_{t-1}`,
`c_{t-1}`. Nothing here imports a Pallas backend: the backend modules (`pallas_gpu_sequential`
or `pallas_tpu` from `fastweights.ops.common`) are passed in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastweights.ops.common import kernel_math as km
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_lstm.reference import NUM_GATES, State, check_version, init_state

Array = jax.Array

OP = "delta_lstm"
LAYOUTS = dict(q="BTHGK", k="BTHGK", v="BTHGV", beta="BTHG", rk="BTHGV", rv="BTHGV", rbeta="BTHG")
G = NUM_GATES


def cell(version: int, ops) -> km.Cell:
    """The Delta LSTM step on a backend's per-head algebra `ops` (`pallas_gpu_sequential`: 1D
    vectors, or `pallas_tpu`: `[1, D]` rows)."""
    def step(state, x, params):
        Ws, Rs, (h_prev, c_prev) = state[:G], state[G:2 * G], state[2 * G:]
        q, k, v, beta, rk, rv, rbeta = (x[i * G:(i + 1) * G] for i in range(7))
        s = h_prev if version == 1 else ops.softmax_eps(h_prev)
        W_u = [ops.delta_write(Ws[g], k[g], v[g], beta[g]) for g in range(G)]
        R_u = [ops.delta_write(Rs[g], rk[g], rv[g], rbeta[g]) for g in range(G)]
        new_W, u_w = zip(*W_u)
        new_R, u_r = zip(*R_u)
        z = [ops.read(new_W[g], q[g]) for g in range(G)]
        pre = [ops.read(new_R[g], s) + z[g] for g in range(G)]  # the same s feeds all three gates
        i, o = jax.nn.sigmoid(pre[0]), jax.nn.sigmoid(pre[2])
        u = pre[1] if version == 4 else jax.nn.sigmoid(pre[1])
        c = i * u + (1.0 - i) * c_prev
        if version == 1:
            h = ops.softmax(o * c)
        elif version == 3:
            h = o * c + z[1]
        else:
            h = o * c
        return (*new_W, *new_R, h, c), h, (*u_w, *u_r, h_prev, c_prev)

    def unstep(state, x, res, params):
        k, rk = x[G:2 * G], x[4 * G:5 * G]
        Ws = tuple(state[g] - ops.outer(k[g], res[g]) for g in range(G))
        Rs = tuple(state[G + g] - ops.outer(rk[g], res[G + g]) for g in range(G))
        return (*Ws, *Rs, *res[2 * G:])

    return km.Cell(f"{OP}_v{version}", step, unstep)


def supported_sequential(backend, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
                         rbeta: Array, *, interpret: bool) -> str | None:
    """None if `delta_lstm` can run these inputs on `backend`'s sequential kernel, else the reason."""
    return backend.supported(OP, dims={"key dim": q.shape[-1], "value dim": v.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta, rk, rv, rbeta)[0]], interpret=interpret)


def run_sequential(backend, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
                   version: int, initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """`delta_lstm` on the sequential kernel of `backend` (`pallas_gpu_sequential`: GPU,
    `pallas_tpu`: TPU); raises `NotImplementedError` when `supported_sequential` gives a reason."""
    check_version(version)
    inputs = dict(q=q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta)
    n = check_shapes(OP, inputs, LAYOUTS, {"G": G})
    km.check_supported(supported_sequential(backend, *inputs.values(), interpret=interpret))
    out_dtype, _ = dtype_policy(*inputs.values())
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"]))
    # Gate axis split: [B, T, H, 3, F] -> three [B*H, T, F] arrays per input.
    xs = [x for a in inputs.values() for x in km.split_axis(km.to_sequences(jnp.asarray(a, out_dtype)), 2)]
    s0 = [*km.split_axis(km.state_to_rows(state.W), 1), *km.split_axis(km.state_to_rows(state.R), 1),
          km.state_to_rows(state.h), km.state_to_rows(state.c)]
    out, final = backend.run(cell(version, backend), xs, (), s0, heads=n["H"], interpret=interpret)

    def rows(s):
        return km.state_from_rows(s, n["B"], n["H"])

    final_state = State(W=rows(jnp.stack(final[:G], axis=1)), R=rows(jnp.stack(final[G:2 * G], axis=1)),
                        h=rows(final[2 * G]), c=rows(final[2 * G + 1]))
    return km.from_sequences(out, n["B"], n["H"]), final_state
