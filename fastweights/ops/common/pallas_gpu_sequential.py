"""Pallas GPU (Triton) sequential kernels: the generic fused forward / reverse-time backward
driver (`run`) and the 1D per-head algebra, shared by `delta_net`, `delta_rnn`, `delta_lstm`
and `recurrent_delta_net` (`<variant>/pallas_gpu_sequential.py`).

One program per (batch, head) sequence walks time with the fast-weight state in float32
registers, and a custom VJP runs a second, reverse-time kernel.

Why the Triton backend of Pallas (`jax.experimental.pallas.triton`) and not Mosaic GPU:
  * the per-head tiles are small (d x d with d = 16..128) and the work per step is a handful
    of matrix-vector products, reductions and elementwise gates: nothing that needs
    warpgroup MMA, TMA or explicit shared-memory pipelining, which is what Mosaic GPU buys;
  * the kernel is one sequential `fori_loop` over time per program, which Triton expresses
    directly with register-resident loop carries;
  * Triton kernels run unchanged under `interpret=True` on CPU, so every kernel (forward and
    backward) is tested on machines without a GPU.
Triton needs power-of-two sizes for every loaded/stored array and register tensor, so the
key and value dims must be powers of two (>= 16, see `supported`); gate axes of size 3 are
split into separate arrays by the wrappers.

A variant is described by a `kernel_math.Cell` (`step`, `unstep`), built in the variant's
`kernel_math.py` from a backend's per-head algebra (`ops`: this module's `read`, `outer`,
`delta_write`, `vdot`, `softmax`, `softmax_eps` on 1D vectors, or `pallas_tpu`'s on
`[1, D]` rows), so that each variant's step is written once for the GPU and the TPU kernels.

Backward (reversible, as the official CUDA kernels): the forward kernel stores only the
outputs, the residuals (O(T d) per head) and the final state. The backward kernel starts
from the final state and, for t = T-1 .. 0, reverts the state to step t-1 with `unstep`,
recomputes the step and applies its VJP (`jax.vjp` of `step`, traced into the kernel) to
the running state cotangent and `d out_t`. Memory: O(T d) per head plus O(d^2) state; no
per-step d x d state is ever stored. Cost: one extra step evaluation per step.
Numerics: reverting W in float32 re-adds rounding errors, so the reconstructed W_{t-1}
drifts slowly from the forward one (measured in `delta_net/pallas_gpu_sequential.py`: at most
7e-7 relative up to T = 4096).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from fastweights.ops.common.kernel_math import Cell

Array = jax.Array

# Dtypes the kernels accept; float64 inputs keep float64 state in the library's dtype
# policy, which the Triton kernels do not implement.
SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
MIN_DIM = 16


# ---------------------------------------------------------------------------------------
# Per-head algebra used inside the kernels (only elementwise ops, broadcasts and
# reductions, which the Triton lowering supports and which `jax.vjp` keeps that way).

def read(W: Array, q: Array) -> Array:
    """`W^T q`: `W` `[K, V]`, `q` `[K]` -> `[V]` (an exact float32 multiply-reduce)."""
    return jnp.sum(W * jax.lax.broadcast_in_dim(q, W.shape, (0,)), axis=0)


def outer(k: Array, u: Array) -> Array:
    """`k u^T`: `[K]`, `[V]` -> `[K, V]`."""
    shape = (k.shape[0], u.shape[0])
    return jax.lax.broadcast_in_dim(k, shape, (0,)) * jax.lax.broadcast_in_dim(u, shape, (1,))


def delta_write(W: Array, k: Array, v: Array, beta: Array) -> tuple[Array, Array]:
    """Delta rule on one head: returns `(W + k u^T, u)` with `u = beta (v - W^T k)`."""
    u = beta * (v - read(W, k))
    return W + outer(k, u), u


def vdot(a: Array, b: Array) -> Array:
    """`a . b` of two vectors (a scalar)."""
    return jnp.sum(a * b)


def softmax(x: Array) -> Array:
    """Softmax of a vector (the max shift cancels exactly, so it carries no gradient)."""
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x)))
    return e / jnp.sum(e)


def softmax_eps(x: Array, eps: float = 1e-6) -> Array:
    """`exp(x - max x) / (sum exp(x - max x) + eps)`, as `feature_maps.softmax_eps` (with
    eps the max does not cancel, so it keeps its gradient like the reference)."""
    e = jnp.exp(x - jnp.max(x))
    return e / (jnp.sum(e) + eps)


# ---------------------------------------------------------------------------------------
# Checks.

def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def supported(op: str, *, dims: dict[str, int], dtypes: Sequence[Any], interpret: bool,
              form: str = "pallas_gpu_sequential") -> str | None:
    """None if the kernel can run, else the reason it cannot.

    `dims`: named feature sizes (key dim, value dim) that become Triton register tensors.
    The same limits apply in interpret mode so that CPU tests exercise what the GPU runs.
    """
    for name, size in dims.items():
        if not (is_power_of_two(size) and size >= MIN_DIM):
            return (f"{op} {form}: {name} must be a power of two >= {MIN_DIM} for the Triton "
                    f"backend, got {size}")
    for dtype in dtypes:
        if jnp.dtype(dtype) not in SUPPORTED_DTYPES:
            return (f"{op} {form}: inputs must be float32, bfloat16 or float16, got {jnp.dtype(dtype)}"
                    " (use implementation='recurrent')")
    if not interpret and jax.default_backend() != "gpu":
        return (f"{op} {form}: needs a GPU (default backend is {jax.default_backend()!r}); "
                "pass interpret=True to run the kernel on CPU")
    return None


# ---------------------------------------------------------------------------------------
# The generic forward / backward kernels.

def _num_warps(state_shapes: Sequence[tuple[int, ...]]) -> int:
    # Roughly 64 float32 state entries per thread so the loop carry stays in registers:
    # one warp at d = 16 up to 8 warps (a power of two, as Triton needs). The backward
    # doubles it, since it carries the state and its cotangent.
    elems = sum(math.prod(s) for s in state_shapes)
    warps = 1
    while warps < 8 and elems > warps * 32 * 64:
        warps *= 2
    return warps


def _row_spec(shape: tuple[int, ...]) -> pl.BlockSpec:
    """Block of one (batch, head) row of a `[N, ...]` array."""
    rest = len(shape) - 1
    return pl.BlockSpec((None, *shape[1:]), lambda n: (n, *([0] * rest)))


def _head_spec(shape: tuple[int, ...], heads: int) -> pl.BlockSpec:
    """Block of one head of a `[H, ...]` parameter array, for program `n = b * H + h`."""
    rest = len(shape) - 1
    return pl.BlockSpec((None, *shape[1:]), lambda n: (n % heads, *([0] * rest)))


def _split(items, sizes):
    """Cuts `items` into consecutive groups of the given sizes."""
    groups, start = [], 0
    for size in sizes:
        groups.append(tuple(items[start:start + size]))
        start += size
    return groups


def _load_all(refs, index=None) -> tuple[Array, ...]:
    if index is None:
        return tuple(r[...].astype(jnp.float32) for r in refs)
    return tuple(r[index].astype(jnp.float32) for r in refs)


def _store_all(refs, values, index=None) -> None:
    for r, v in zip(refs, values):
        if index is None:
            r[...] = v.astype(r.dtype)
        else:
            r[index] = v.astype(r.dtype)


def _step_shapes(cell: Cell, xs, params, state):
    f32 = jnp.float32
    s = tuple(jax.ShapeDtypeStruct(a.shape[1:], f32) for a in state)
    x = tuple(jax.ShapeDtypeStruct(a.shape[2:], f32) for a in xs)
    p = tuple(jax.ShapeDtypeStruct(a.shape[1:], f32) for a in params)
    _, out, res = jax.eval_shape(cell.step, s, x, p)
    return out, res


def _forward(cell: Cell, xs, params, state0, *, heads: int, out_dtype, interpret: bool):
    N, T = xs[0].shape[:2]
    out_shape, res_shapes = _step_shapes(cell, xs, params, state0)
    nx, npar, ns = len(xs), len(params), len(state0)

    def kernel(*refs):
        x_refs, p_refs, s0_refs, (out_ref,), res_refs, sT_refs = _split(
            refs, (nx, npar, ns, 1, len(res_shapes), ns))
        p = _load_all(p_refs)

        def body(t, state):
            state, out, res = cell.step(state, _load_all(x_refs, t), p)
            out_ref[t] = out.astype(out_ref.dtype)
            _store_all(res_refs, res, t)
            return state

        _store_all(sT_refs, jax.lax.fori_loop(0, T, body, _load_all(s0_refs)))

    out_shapes = (jax.ShapeDtypeStruct((N, T, *out_shape.shape), out_dtype),
                  *(jax.ShapeDtypeStruct((N, T, *r.shape), jnp.float32) for r in res_shapes),
                  *(jax.ShapeDtypeStruct(s.shape, jnp.float32) for s in state0))
    out, *rest = pl.pallas_call(
        kernel,
        out_shape=out_shapes,
        grid=(N,),
        in_specs=[*(_row_spec(x.shape) for x in xs), *(_head_spec(p.shape, heads) for p in params),
                  *(_row_spec(s.shape) for s in state0)],
        out_specs=[_row_spec(s.shape) for s in out_shapes],
        compiler_params=plgpu.CompilerParams(num_warps=_num_warps([s.shape[1:] for s in state0]),
                                             num_stages=1),
        interpret=interpret,
        name=f"{cell.name}_fwd",
    )(*xs, *params, *state0)
    return out, tuple(rest[len(res_shapes):]), tuple(rest[:len(res_shapes)])


def _backward(cell: Cell, xs, params, res, stateT, d_out, d_stateT, *, heads: int, interpret: bool):
    N, T = xs[0].shape[:2]
    nx, npar, nr, ns = len(xs), len(params), len(res), len(stateT)

    def kernel(*refs):
        (x_refs, p_refs, r_refs, sT_refs, (dout_ref,), dsT_refs, dx_refs, dp_refs,
         ds0_refs) = _split(refs, (nx, npar, nr, ns, 1, ns, nx, npar, ns))
        p = _load_all(p_refs)

        def body(j, carry):
            t = T - 1 - j
            state, d_state, d_p = carry
            x = _load_all(x_refs, t)
            prev = cell.unstep(state, x, _load_all(r_refs, t), p)
            # Recompute step t from the reverted state and pull the cotangents through it.
            _, vjp = jax.vjp(lambda s, xx, pp: cell.step(s, xx, pp)[:2], prev, x, p)
            d_prev, d_x, d_pt = vjp((d_state, dout_ref[t].astype(jnp.float32)))
            _store_all(dx_refs, d_x, t)
            return prev, d_prev, tuple(a + b for a, b in zip(d_p, d_pt))

        zeros = tuple(jnp.zeros_like(a) for a in p)
        _, d_state0, d_p = jax.lax.fori_loop(0, T, body, (_load_all(sT_refs), _load_all(dsT_refs), zeros))
        _store_all(ds0_refs, d_state0)
        _store_all(dp_refs, d_p)

    out_shapes = (*(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in xs),
                  *(jax.ShapeDtypeStruct((N, *a.shape[1:]), jnp.float32) for a in params),
                  *(jax.ShapeDtypeStruct(s.shape, jnp.float32) for s in stateT))
    outs = pl.pallas_call(
        kernel,
        out_shape=out_shapes,
        grid=(N,),
        in_specs=[*(_row_spec(x.shape) for x in xs), *(_head_spec(a.shape, heads) for a in params),
                  *(_row_spec(r.shape) for r in res), *(_row_spec(s.shape) for s in stateT),
                  _row_spec(d_out.shape), *(_row_spec(s.shape) for s in d_stateT)],
        out_specs=[_row_spec(s.shape) for s in out_shapes],
        compiler_params=plgpu.CompilerParams(num_warps=_num_warps([s.shape[1:] for s in stateT]) * 2,
                                             num_stages=1),
        interpret=interpret,
        name=f"{cell.name}_bwd",
    )(*xs, *params, *res, *stateT, d_out, *d_stateT)
    d_xs, d_p, d_s0 = outs[:nx], outs[nx:nx + npar], outs[nx + npar:]
    # Per-(batch, head) parameter gradients -> per head, summed over the batch.
    d_p = tuple(g.reshape(N // heads, heads, *g.shape[1:]).sum(0).astype(a.dtype) for g, a in zip(d_p, params))
    return tuple(d_xs), d_p, tuple(d_s0)


def run(cell: Cell, xs: Sequence[Array], params: Sequence[Array], state0: Sequence[Array], *,
        heads: int, interpret: bool) -> tuple[Array, tuple[Array, ...]]:
    """Runs `cell` over every (batch, head) sequence with a reversible custom VJP.

    Args:
      xs: per-step inputs `[N, T, *F]` (`N = B*H`, row `n = b*H + h`), any float dtype (all
        the same); `F` is `[K]`, `[V]` or `[]`.
      params: per-head slow parameters `[H, *P]` (shared across the batch), or empty.
      state0: initial state fields `[N, *S]`, float32.
      heads: H, to find each row's head in `params`.

    Returns:
      `(outputs [N, T, V] in the dtype of xs, final state fields [N, *S] float32)`.
    """
    xs, params = tuple(xs), tuple(params)
    state0 = tuple(jnp.asarray(s, jnp.float32) for s in state0)
    out_dtype = xs[0].dtype

    @jax.custom_vjp
    def f(xs, params, state0):
        out, stateT, _ = _forward(cell, xs, params, state0, heads=heads, out_dtype=out_dtype,
                                  interpret=interpret)
        return out, stateT

    def f_fwd(xs, params, state0):
        out, stateT, res = _forward(cell, xs, params, state0, heads=heads, out_dtype=out_dtype,
                                    interpret=interpret)
        return (out, stateT), (xs, params, res, stateT)

    def f_bwd(saved, cotangents):
        xs, params, res, stateT = saved
        d_out, d_stateT = cotangents
        return _backward(cell, xs, params, res, stateT, d_out, tuple(d_stateT), heads=heads,
                         interpret=interpret)

    f.defvjp(f_fwd, f_bwd)
    return f(xs, params, state0)
