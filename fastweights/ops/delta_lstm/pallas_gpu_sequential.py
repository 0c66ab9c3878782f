"""Delta LSTM (versions 1-4) as one fused sequential Pallas (Triton) kernel per (batch, head),
with a reversible custom VJP (see `fastweights/ops/common/pallas_sequential.py`).

Per step (as `reference.step`): delta writes into the six matrices `W_g` `[K, V]`, `R_g`
`[V, V]` (g in i, u, o), gates from `R_g^T s + W_g^T q_g` with `s = h_prev` (v1) or
`softmax_eps(h_prev)` (v2-v4), cell and output as in the reference. Triton register tensors
need power-of-two sizes, so the gate axis (3) is split into separate arrays outside the kernel
and the state is held as six separate matrices.

Backward: reversal, as the official CUDA kernels. The forward stores per step the six write
vectors `u` and the previous `h_{t-1}`, `c_{t-1}` (8 x `[T, V]` per head, O(T d)) plus the
final state; the backward kernel reverts every matrix (`W_{t-1} = W_t - k_t u_t^T`), takes
`h_{t-1}, c_{t-1}` from the residuals, and applies the VJP of the recomputed step (full BPTT
through `h`, `c` and all six matrices). Reversal rather than recomputation from the initial
state, which would need T stored states of 6 d x d or O(T^2) work. Rounding: the reverted
matrices re-add the float32 rounding of every write, the same slow
drift measured for the Delta Net kernel (<= 7e-7 relative up to T = 4096) is expected,
as the keys are normalised the same way (not measured separately for this variant).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.common.sequence import check_shapes, dtype_policy, prepare_state
from fastweights.ops.delta_lstm.reference import NUM_GATES, State, check_version, init_state

Array = jax.Array

OP = "delta_lstm"
LAYOUTS = dict(q="BTHGK", k="BTHGK", v="BTHGV", beta="BTHG", rk="BTHGV", rv="BTHGV", rbeta="BTHG")
G = NUM_GATES


def cell(version: int, ops=ps) -> ps.Cell:
    """The Delta LSTM step on a backend's per-head algebra (`pallas_sequential` or `pallas_tpu`)."""
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

    return ps.Cell(f"{OP}_v{version}", step, unstep)


def supported(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 4, initial_state: State | None = None,
              interpret: bool = False, backend=ps) -> str | None:
    """None if `delta_lstm` can run these inputs on `backend`'s kernel, else the reason."""
    return backend.supported(OP, dims={"key dim": q.shape[-1], "value dim": v.shape[-1]},
                             dtypes=[dtype_policy(q, k, v, beta, rk, rv, rbeta)[0]], interpret=interpret)


@functools.partial(jax.jit, static_argnames=("version", "interpret"))
def delta_lstm(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
               rbeta: Array, *, version: int = 4, initial_state: State | None = None,
               interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, 3, K]`;
    `v, rk, rv` `[B, T, H, 3, V]`; `beta, rbeta` `[B, T, H, 3]`; `State(W [B, H, 3, K, V],
    R [B, H, 3, V, V], h, c [B, H, V])`), plus `interpret` to run the kernels on CPU. Raises
    `NotImplementedError` when `supported` gives a reason."""
    return run_kernel(ps, q, k, v, beta, rk, rv, rbeta, version=version, initial_state=initial_state,
                      interpret=interpret)


def run_kernel(backend, q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
               version: int, initial_state: State | None, interpret: bool) -> tuple[Array, State]:
    """`delta_lstm` on the sequential kernel of `backend` (`pallas_sequential`: GPU,
    `pallas_tpu`: TPU)."""
    check_version(version)
    inputs = dict(q=q, k=k, v=v, beta=beta, rk=rk, rv=rv, rbeta=rbeta)
    n = check_shapes(OP, inputs, LAYOUTS, {"G": G})
    backend.check_supported(supported(*inputs.values(), interpret=interpret, backend=backend))
    out_dtype, _ = dtype_policy(*inputs.values())
    state = prepare_state(OP, initial_state, init_state(n["B"], n["H"], n["K"], n["V"]))
    # Gate axis split: [B, T, H, 3, F] -> three [B*H, T, F] arrays per input.
    xs = [x for a in inputs.values() for x in ps.split_axis(ps.to_sequences(jnp.asarray(a, out_dtype)), 2)]
    s0 = [*ps.split_axis(ps.state_to_rows(state.W), 1), *ps.split_axis(ps.state_to_rows(state.R), 1),
          ps.state_to_rows(state.h), ps.state_to_rows(state.c)]
    out, final = backend.run(cell(version, backend), xs, (), s0, heads=n["H"], interpret=interpret)

    def rows(s):
        return ps.state_from_rows(s, n["B"], n["H"])

    final_state = State(W=rows(jnp.stack(final[:G], axis=1)), R=rows(jnp.stack(final[G:2 * G], axis=1)),
                        h=rows(final[2 * G]), c=rows(final[2 * G + 1]))
    return ps.from_sequences(out, n["B"], n["H"]), final_state
