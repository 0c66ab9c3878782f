"""Pallas TPU (Mosaic) kernels, chunked and sequential: the Mosaic-specific pieces shared by
the chunked kernels (`delta_net`, `linear_transformer`: `<variant>/pallas_tpu_chunked.py`) and
one generic fused sequential driver (`run` of a `kernel_math.Cell`) for `delta_net`,
`delta_rnn`, `delta_lstm` and `recurrent_delta_net` (`<variant>/pallas_tpu_sequential.py`).
The backend-neutral pieces (`dot`, `causal_mask`, `Cell`, the layout helpers) are in
`kernel_math.py`; nothing here imports the GPU (Triton) modules.

How the kernels use Mosaic TPU, and why:
  * Grid `(batch * heads, time blocks)` with `dimension_semantics = ("parallel",
    "arbitrary")`. A TensorCore runs the grid cells one after the other in order, so the
    second axis is the sequential walk through chunks (chunked kernels) or blocks of time
    steps (sequential kernels); the first may be split across cores (megacore) since heads
    are independent. The backward kernels walk the same axis in reverse through their
    `index_map` (`n - 1 - i`), so Pallas still prefetches the next block while one runs.
  * The recurrent state lives in float32 VMEM scratch (`pltpu.VMEM`) that persists across
    the "arbitrary" axis: loaded from the initial state at the first block, written to the
    final-state output after the last (`carry_across_grid`). Only one block of inputs and
    outputs is in VMEM at a time (double-buffered by Pallas), so the VMEM use does not grow
    with T, unlike a whole-sequence block.
  * Block shapes obey the (8, 128) tiling rule: the last two dims of every block are either
    the full array dims or multiples of (8, 128). Feature dims (K, V, D) are never split:
    blocks always take them whole. Time blocks are multiples of 16 rows (the bf16 sublane
    tile is (16, 128); 8 suffices for float32), so T is zero-padded to whole blocks. Zero
    padding is exact for the chunked sum and delta rules (a zero key writes nothing); the
    sequential cells are nonlinear, so there the padded steps are masked out (`jnp.where`
    on the state) instead. Per-step scalars (beta) get a trailing axis of 1 and per-chunk
    rows a leading axis of 1, since a block of 1 on the sublane axis is only legal as a
    full dim.
  * Inside the sequential kernels every vector is a `[1, D]` row and every scalar `[1, 1]`
    (Mosaic vectors are 2D tiles; 1D vectors would need lane <-> sublane relayouts), and
    the products `W^T q` and `k u^T` are MXU matmuls (`read`, `outer`), so that `jax.vjp`
    of a step, traced into the backward kernel, only produces 2D matmuls and elementwise ops.
  * float32 accumulation everywhere: dots use `preferred_element_type=float32` and float32
    operands use `Precision.HIGHEST` (on the MXU the default would round them to bfloat16).
    The sequential kernels load their inputs as float32 (cast in the wrapper), since a
    dynamic one-row slice of a packed bfloat16 tile is not a clean Mosaic load; the
    chunked kernels read the inputs in their own dtype (bf16 dots on the MXU).

The kernels are checked in the Pallas interpreter on CPU (`interpret=True`, the same hook
as the GPU kernels; it runs the TPU scratch buffers and grid semantics on jax 0.10.2
through 0.12, as does the TPU-specific `pltpu.InterpretParams()`, which was no faster
here), and their Mosaic lowering (the TPU custom call) is produced on CPU by `jax.export`
with `platforms=("tpu",)`; that checks the block shapes and that every op has a Mosaic
lowering rule, but the Mosaic compiler itself only runs on a TPU: the kernels have not been
compiled or timed on a real TPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from fastweights.ops.common.kernel_math import dot

Array = jax.Array

SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
DIM_MULTIPLE = 8     # feature dims: whole sublane tiles for the [D, D] states
ROW_MULTIPLE = 16    # time rows per block: the bfloat16 (16, 128) tile
TIME_BLOCK = 128     # steps per grid cell of the sequential kernels


# ---------------------------------------------------------------------------------------
# Checks and grid plumbing shared by every TPU kernel.

def supported(op: str, *, dims: dict[str, int], dtypes: Sequence[Any], interpret: bool,
              form: str = "pallas_tpu_sequential") -> str | None:
    """None if a TPU kernel of `op` can run, else the reason it cannot (the same signature
    as `pallas_gpu_sequential.supported`).

    `dims`: named feature sizes; `form`: the implementation name for the message.
    The same limits apply in interpret mode so that CPU tests exercise what a TPU runs.
    """
    for name, size in dims.items():
        if size < DIM_MULTIPLE or size % DIM_MULTIPLE:
            return (f"{op} {form}: {name} must be a multiple of {DIM_MULTIPLE} (whole Mosaic "
                    f"sublane tiles), got {size}")
    for dtype in dtypes:
        if jnp.dtype(dtype) not in SUPPORTED_DTYPES:
            return (f"{op} {form}: inputs must be float32, bfloat16 or float16, got {jnp.dtype(dtype)}"
                    " (use implementation='recurrent')")
    if not interpret and not on_tpu():
        return (f"{op} {form}: needs a TPU (default backend is {jax.default_backend()!r}); "
                "pass interpret=True to run the kernel on CPU")
    return None


def on_tpu() -> bool:
    """Whether kernels are lowered for a TPU: the default backend (the lowering tests
    replace this to export the Mosaic kernels for TPU from a CPU machine)."""
    return jax.default_backend() == "tpu"


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _idx(reverse: bool, n: int):
    return (lambda i: n - 1 - i) if reverse else (lambda i: i)


@dataclasses.dataclass(frozen=True)
class Grid:
    """The grid `(rows, blocks)`: `rows` independent (batch * head) programs, each walking
    `blocks` blocks of `block` time rows, backwards if `reverse`."""
    rows: int
    blocks: int
    block: int
    reverse: bool = False

    def seq(self, width: int) -> pl.BlockSpec:
        """One time block of a `[rows, blocks * block, width]` array."""
        idx = _idx(self.reverse, self.blocks)
        return pl.BlockSpec((None, self.block, width), lambda r, i: (r, idx(i), 0))

    def per_block(self, *shape: int) -> pl.BlockSpec:
        """One block's entry of a `[rows, blocks, *shape]` array (`shape` 2D)."""
        idx = _idx(self.reverse, self.blocks)
        return pl.BlockSpec((None, None, *shape), lambda r, i: (r, idx(i), 0, 0))

    def per_row(self, *shape: int) -> pl.BlockSpec:
        """A row's whole `[rows, *shape]` entry (states), the same block at every step."""
        return pl.BlockSpec((None, *shape), lambda r, i: (r, *([0] * len(shape))))

    def per_head(self, heads: int, *shape: int) -> pl.BlockSpec:
        """Head `r % heads` of a `[heads, *shape]` parameter array (row `r = b * H + h`)."""
        return pl.BlockSpec((None, *shape), lambda r, i: (r % heads, *([0] * len(shape))))

    def call(self, kernel: Callable, *, out_shape, in_specs, out_specs, scratch_shapes,
             interpret: bool, name: str) -> Callable:
        """`pl.pallas_call` on this grid: rows parallel, blocks sequential."""
        return pl.pallas_call(
            kernel, out_shape=out_shape, grid=(self.rows, self.blocks),
            in_specs=in_specs, out_specs=out_specs, scratch_shapes=scratch_shapes,
            compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
            interpret=interpret, name=name)


def vmem(*shapes: tuple[int, ...]) -> list:
    """float32 VMEM scratch buffers of the given shapes."""
    return [pltpu.VMEM(s, jnp.float32) for s in shapes]


def carry_across_grid(scratch: Sequence, init: Callable[[], Sequence[Array]],
                      body: Callable[[tuple[Array, ...]], tuple[Array, ...]],
                      finish: Callable[[tuple[Array, ...]], None]) -> None:
    """One grid cell of a sequential walk with its state in VMEM `scratch` refs: the state is
    set to `init()` in the first cell, advanced by `body`, and passed to `finish` (which
    writes the final-state outputs) in the last cell."""
    step = pl.program_id(1)

    @pl.when(step == 0)
    def _():
        for ref, value in zip(scratch, init()):
            ref[...] = value.astype(ref.dtype)

    new = body(tuple(ref[...] for ref in scratch))
    for ref, value in zip(scratch, new):
        ref[...] = value

    @pl.when(step == pl.num_programs(1) - 1)
    def _():
        finish(new)


# ---------------------------------------------------------------------------------------
# The chunked kernels: layout of the inputs.

def chunk_length(chunk_size: int, time: int) -> int:
    """The chunk the chunked kernels use: `chunk_size`, shrunk for short sequences to T
    rounded up to 16 rows, so T = 1 does not pay a 64-step chunk."""
    return min(chunk_size, round_up(time, ROW_MULTIPLE))


def supported_chunked(op: str, *, key_dim: int, value_dim: int, chunk_size: int, dtype,
                      interpret: bool) -> str | None:
    """None if the chunked TPU kernel of `op` can run, else the reason it cannot."""
    if chunk_size % ROW_MULTIPLE:
        return (f"{op} pallas_tpu_chunked: chunk_size must be a multiple of {ROW_MULTIPLE} (the bfloat16 "
                f"(16, 128) tile), got {chunk_size}")
    return supported(op, dims={"key dim K": key_dim, "value dim V": value_dim}, dtypes=[dtype],
                     interpret=interpret, form="pallas_tpu_chunked")


# ---------------------------------------------------------------------------------------
# Per-head algebra of the sequential cells on TPU: vectors are [1, D] rows, scalars [1, 1].
# A variant's cell takes these as its `ops` (the GPU kernels pass `pallas_gpu_sequential`,
# whose vectors are 1D), so each variant's step is written once for both backends.
# Dots: `kernel_math.dot` (float32 accumulation; float32 operands at Precision.HIGHEST,
# which on the MXU means full float32 passes instead of the default bfloat16 rounding).


def read(W: Array, q: Array) -> Array:
    """`W^T q`: `W` `[K, V]`, row `q` `[1, K]` -> `[1, V]`."""
    return dot(q, W)


def outer(k: Array, u: Array) -> Array:
    """`k u^T`: rows `[1, K]`, `[1, V]` -> `[K, V]`."""
    return dot(k, u, trans_a=True)


def delta_write(W: Array, k: Array, v: Array, beta: Array) -> tuple[Array, Array]:
    """Delta rule on one head: `(W + k u^T, u)` with `u = beta (v - W^T k)`."""
    u = beta * (v - read(W, k))
    return W + outer(k, u), u


def vdot(a: Array, b: Array) -> Array:
    """`a . b` of two rows, as `[1, 1]`."""
    return jnp.sum(a * b, axis=-1, keepdims=True)


def softmax(x: Array) -> Array:
    """Softmax of a row (the max shift cancels exactly, so it carries no gradient)."""
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_eps(x: Array, eps: float = 1e-6) -> Array:
    """`exp(x - max x) / (sum exp(x - max x) + eps)` of a row, as `feature_maps.softmax_eps`."""
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    return e / (jnp.sum(e, axis=-1, keepdims=True) + eps)


# ---------------------------------------------------------------------------------------
# The generic sequential driver: a variant's `Cell` (`kernel_math.Cell`: `step`,
# `unstep`), run over time blocks with the state in VMEM scratch; reversible custom VJP.

def _as_2d(x: Array, lead: int) -> Array:
    """Gives the trailing (per-row) dims of `x` rank 2: `[]` -> `[1, 1]`, `[D]` -> `[1, D]`."""
    tail = x.shape[lead:]
    if len(tail) > 2:
        raise ValueError(f"pallas_tpu: per-step arrays must be scalars, vectors or matrices, got {tail}")
    return x.reshape(*x.shape[:lead], *((1,) * (2 - len(tail))), *tail)


def _rows(refs, t) -> tuple[Array, ...]:
    return tuple(r[pl.ds(t, 1), :] for r in refs)


def _store_rows(refs, values, t) -> None:
    for r, v in zip(refs, values):
        r[pl.ds(t, 1), :] = v.astype(r.dtype)


def _split(items, sizes):
    groups, start = [], 0
    for size in sizes:
        groups.append(tuple(items[start:start + size]))
        start += size
    return groups


def _select(valid, new, old):
    return tuple(jnp.where(valid, a, b) for a, b in zip(new, old))


def _forward(cell, xs, params, state0, *, heads: int, time: int, block: int, interpret: bool):
    N, Tp = xs[0].shape[:2]
    grid = Grid(N, Tp // block, block)
    f32 = jnp.float32
    _, out_row, res_rows = jax.eval_shape(
        cell.step, tuple(jax.ShapeDtypeStruct(s.shape[1:], f32) for s in state0),
        tuple(jax.ShapeDtypeStruct((1, x.shape[-1]), f32) for x in xs),
        tuple(jax.ShapeDtypeStruct(p.shape[1:], f32) for p in params))
    nx, npar, ns, nr = len(xs), len(params), len(state0), len(res_rows)
    ragged = time % block != 0

    def kernel(*refs):
        x_refs, p_refs, s0_refs, (out_ref,), r_refs, sT_refs, scratch = _split(refs, (nx, npar, ns, 1, nr, ns, ns))
        p = tuple(r[...] for r in p_refs)
        start = pl.program_id(1) * block

        def run_block(state):
            def body(t, state):
                new, out, res = cell.step(state, _rows(x_refs, t), p)
                _store_rows((out_ref, *r_refs), (out, *res), t)
                return _select(start + t < time, new, state) if ragged else new
            return jax.lax.fori_loop(0, block, body, state)

        def finish(state):
            for ref, value in zip(sT_refs, state):
                ref[...] = value

        carry_across_grid(scratch, lambda: tuple(r[...] for r in s0_refs), run_block, finish)

    out_shapes = (jax.ShapeDtypeStruct((N, Tp, out_row.shape[-1]), f32),
                  *(jax.ShapeDtypeStruct((N, Tp, r.shape[-1]), f32) for r in res_rows),
                  *(jax.ShapeDtypeStruct(s.shape, f32) for s in state0))
    outs = grid.call(
        kernel, out_shape=out_shapes,
        in_specs=[*(grid.seq(x.shape[-1]) for x in xs), *(grid.per_head(heads, *p.shape[1:]) for p in params),
                  *(grid.per_row(*s.shape[1:]) for s in state0)],
        out_specs=[*(grid.seq(s.shape[-1]) for s in out_shapes[:1 + nr]),
                   *(grid.per_row(*s.shape[1:]) for s in state0)],
        scratch_shapes=vmem(*(s.shape[1:] for s in state0)),
        interpret=interpret, name=f"{cell.name}_tpu_fwd",
    )(*xs, *params, *state0)
    return outs[0], tuple(outs[1 + nr:]), tuple(outs[1:1 + nr])


def _backward(cell, xs, params, res, stateT, d_out, d_stateT, *, heads: int, time: int, block: int,
              interpret: bool):
    N, Tp = xs[0].shape[:2]
    grid = Grid(N, Tp // block, block, reverse=True)
    nx, npar, nr, ns = len(xs), len(params), len(res), len(stateT)
    ragged = time % block != 0

    def kernel(*refs):
        (x_refs, p_refs, r_refs, sT_refs, (dout_ref,), dsT_refs, dx_refs, dp_refs, ds0_refs,
         scratch) = _split(refs, (nx, npar, nr, ns, 1, ns, nx, npar, ns, 2 * ns + npar))
        p = tuple(r[...] for r in p_refs)
        start = (pl.num_programs(1) - 1 - pl.program_id(1)) * block

        def run_block(carry):
            def body(j, carry):
                t = block - 1 - j
                state, d_state, d_p = _split(carry, (ns, ns, npar))
                x = _rows(x_refs, t)
                prev = cell.unstep(state, x, _rows(r_refs, t), p)
                # Recompute step t from the reverted state and pull the cotangents through it.
                _, vjp = jax.vjp(lambda s, xx, pp: cell.step(s, xx, pp)[:2], prev, x, p)
                d_prev, d_x, d_pt = vjp((d_state, dout_ref[pl.ds(t, 1), :]))
                _store_rows(dx_refs, d_x, t)
                d_p_new = tuple(a + b for a, b in zip(d_p, d_pt))
                if ragged:  # padded steps leave everything unchanged
                    valid = start + t < time
                    prev, d_prev, d_p_new = (_select(valid, a, b) for a, b in
                                             ((prev, state), (d_prev, d_state), (d_p_new, d_p)))
                return (*prev, *d_prev, *d_p_new)
            return jax.lax.fori_loop(0, block, body, carry)

        def init():
            return (*(r[...] for r in sT_refs), *(r[...] for r in dsT_refs),
                    *(jnp.zeros(r.shape, jnp.float32) for r in p_refs))

        def finish(carry):
            _, d_state0, d_p = _split(carry, (ns, ns, npar))
            for ref, value in zip((*ds0_refs, *dp_refs), (*d_state0, *d_p)):
                ref[...] = value

        carry_across_grid(scratch, init, run_block, finish)

    f32 = jnp.float32
    out_shapes = (*(jax.ShapeDtypeStruct(x.shape, f32) for x in xs),
                  *(jax.ShapeDtypeStruct((N, *a.shape[1:]), f32) for a in params),
                  *(jax.ShapeDtypeStruct(s.shape, f32) for s in stateT))
    outs = grid.call(
        kernel, out_shape=out_shapes,
        in_specs=[*(grid.seq(x.shape[-1]) for x in xs), *(grid.per_head(heads, *a.shape[1:]) for a in params),
                  *(grid.seq(r.shape[-1]) for r in res), *(grid.per_row(*s.shape[1:]) for s in stateT),
                  grid.seq(d_out.shape[-1]), *(grid.per_row(*s.shape[1:]) for s in stateT)],
        out_specs=[*(grid.seq(x.shape[-1]) for x in xs), *(grid.per_row(*a.shape[1:]) for a in params),
                   *(grid.per_row(*s.shape[1:]) for s in stateT)],
        scratch_shapes=vmem(*(s.shape[1:] for s in stateT), *(s.shape[1:] for s in stateT),
                            *(a.shape[1:] for a in params)),
        interpret=interpret, name=f"{cell.name}_tpu_bwd",
    )(*xs, *params, *res, *stateT, d_out, *d_stateT)
    d_xs, d_p, d_s0 = outs[:nx], outs[nx:nx + npar], outs[nx + npar:]
    # Per-(batch, head) parameter gradients -> per head, summed over the batch.
    d_p = tuple(g.reshape(N // heads, heads, *g.shape[1:]).sum(0) for g in d_p)
    return tuple(d_xs), d_p, tuple(d_s0)


def run(cell, xs: Sequence[Array], params: Sequence[Array], state0: Sequence[Array], *,
        heads: int, interpret: bool) -> tuple[Array, tuple[Array, ...]]:
    """Runs `cell` over every (batch, head) sequence with a reversible custom VJP; the same
    contract as `pallas_gpu_sequential.run`, with the cell's `ops` being this module.

    Args:
      cell: a `kernel_math.Cell` built on this module's row algebra.
      xs: per-step inputs `[N, T, *F]` (`N = B*H`, row `n = b*H + h`), any float dtype (all
        the same); `F` is `[D]` or `[]`.
      params: per-head slow parameters `[H, *P]` (shared across the batch), or empty.
      state0: initial state fields `[N, *S]`.
      heads: H, to find each row's head in `params`.

    Returns:
      `(outputs [N, T, V] in the dtype of xs, final state fields [N, *S] float32)`.
    """
    xs, params = tuple(xs), tuple(params)
    out_dtype = xs[0].dtype
    N, T = xs[0].shape[:2]
    block = min(TIME_BLOCK, round_up(T, ROW_MULTIPLE))
    Tp = round_up(T, block)
    # Per-step scalars become [N, T, 1]; T is zero-padded to whole blocks (masked in-kernel).
    xs2 = tuple(jnp.pad(jnp.asarray(x, jnp.float32).reshape(N, T, -1), [(0, 0), (0, Tp - T), (0, 0)])
                for x in xs)
    p2 = tuple(_as_2d(jnp.asarray(p, jnp.float32), 1) for p in params)
    s2 = tuple(_as_2d(jnp.asarray(s, jnp.float32), 1) for s in state0)
    options = dict(heads=heads, time=T, block=block, interpret=interpret)

    @jax.custom_vjp
    def f(xs, params, state0):
        out, stateT, _ = _forward(cell, xs, params, state0, **options)
        return out, stateT

    def f_fwd(xs, params, state0):
        out, stateT, res = _forward(cell, xs, params, state0, **options)
        return (out, stateT), (xs, params, res, stateT)

    def f_bwd(saved, cotangents):
        xs, params, res, stateT = saved
        d_out, d_stateT = cotangents
        return _backward(cell, xs, params, res, stateT, d_out, tuple(d_stateT), **options)

    f.defvjp(f_fwd, f_bwd)
    out, final = f(xs2, p2, s2)
    # Back to the caller's layout: drop the padding, restore vector state fields.
    final = tuple(s.reshape(orig.shape) for s, orig in zip(final, state0))
    return out[:, :T].astype(out_dtype), final
