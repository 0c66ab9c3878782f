"""Backend-neutral pieces of the Pallas kernels, shared by the GPU (Triton) and TPU (Mosaic) ones.

Nothing here imports a Pallas backend (`jax.experimental.pallas.triton` or `.tpu`) or makes a
backend's choice (block sizes, warps, tiling rules): the backend modules
(`pallas_gpu_chunked.py`, `pallas_gpu_sequential.py`, `pallas_tpu.py`) and each variant's
`kernel_math.py` import from here, never the other way round.

  * In-kernel math of the chunked kernels: `dot` (float32 accumulation, float32 operands at
    `FLOAT32_PRECISION`) and `causal_mask`.
  * Layout around the chunked kernels: `to_heads` / `from_heads` (head-first, zero-padded to
    whole chunks).
  * The sequential kernels' contract: `Cell` (a variant's per-head `step` and its inverse
    `unstep`, written once against a backend's per-head algebra `ops`), and the layout
    around them (`to_sequences`, `from_sequences`, `state_to_rows`, `state_from_rows`,
    `split_axis`).
  * `check_supported`: a kernel that cannot run raises the reason (never falls back).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

# Precision of float32 dots in the kernels. HIGHEST lowers to IEEE float32 (CUDA-core FMA on
# GPU, full float32 MXU passes on TPU); `jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3` would
# use the GPU's tensor cores (3 TF32 passes).
FLOAT32_PRECISION = jax.lax.Precision.HIGHEST


def check_supported(reason: str | None) -> None:
    """Raises `NotImplementedError(reason)` when a kernel cannot run (never falls back)."""
    if reason is not None:
        raise NotImplementedError(reason)


# ---------------------------------------------------------------------------------------
# Chunked kernels: in-kernel math and layout.

def dot(a: Array, b: Array, *, trans_a: bool = False, trans_b: bool = False) -> Array:
    """`a @ b` (optionally transposed operands) inside a kernel, float32 accumulation.

    float32 operands use Precision.HIGHEST, which the Triton lowering maps to IEEE float32
    (DEFAULT would be TF32 and break the float32 tolerances) and Mosaic TPU to full float32
    MXU passes (DEFAULT would round the operands to bfloat16)."""
    dims = (((0 if trans_a else 1,), (1 if trans_b else 0,)), ((), ()))
    precision = FLOAT32_PRECISION if a.dtype == jnp.float32 else None
    return jax.lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def causal_mask(c: int) -> Array:
    """`[C, C]` bool, True on and below the diagonal (write-then-read)."""
    row = jax.lax.broadcasted_iota(jnp.int32, (c, c), 0)
    col = jax.lax.broadcasted_iota(jnp.int32, (c, c), 1)
    return row >= col


def to_heads(x: Array, chunk: int) -> Array:
    """`[B, T, H, *rest]` -> `[B * H, N * C, *rest]`, zero-padding T to whole chunks."""
    B, T, H = x.shape[:3]
    pad = -(-T // chunk) * chunk - T
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x, 2, 1).reshape(B * H, T + pad, *x.shape[3:])


def from_heads(x: Array, batch: int, time: int) -> Array:
    """`[B * H, T_pad, *rest]` -> `[B, T, H, *rest]`, dropping the padding."""
    x = x.reshape(batch, -1, *x.shape[1:])[:, :, :time]
    return jnp.moveaxis(x, 1, 2)


# ---------------------------------------------------------------------------------------
# Sequential kernels: the cell contract and layout.

@dataclasses.dataclass(frozen=True)
class Cell:
    """One variant's per-head step and its inverse, run by a backend's sequential driver
    (`pallas_gpu_sequential.run`, `pallas_tpu.run`).

      * `step(state, x, params) -> (state, out, res)`: one time step of one head on
        per-step values (`x`: tuple of vectors and scalars, all float32, in the backend's
        layout: 1D on GPU, `[1, D]` rows and `[1, 1]` on TPU), returning the new state, the
        output and per-step residuals `res` (vectors) that the backward kernel needs to undo
        the step;
      * `unstep(state, x, res, params) -> previous state`: exact algebraic inverse of `step`
        given the residuals (the delta write `W_t = W_{t-1} + k u^T` is undone as
        `W_{t-1} = W_t - k u^T`; vector states are stored in `res`).
    """
    name: str
    step: Callable[[tuple, tuple, tuple], tuple[tuple, Array, tuple]]
    unstep: Callable[[tuple, tuple, tuple, tuple], tuple]


def to_sequences(x: Array) -> Array:
    """`[B, T, H, *F]` -> `[B*H, T, *F]`: one row per (batch, head) sequence."""
    B, T, H, *F = x.shape
    return jnp.moveaxis(x, 2, 1).reshape(B * H, T, *F)


def from_sequences(y: Array, batch: int, heads: int) -> Array:
    """`[B*H, T, *F]` -> `[B, T, H, *F]`."""
    _, T, *F = y.shape
    return jnp.moveaxis(y.reshape(batch, heads, T, *F), 1, 2)


def state_to_rows(s: Array) -> Array:
    """`[B, H, *S]` -> `[B*H, *S]`."""
    return s.reshape(s.shape[0] * s.shape[1], *s.shape[2:])


def state_from_rows(s: Array, batch: int, heads: int) -> Array:
    """`[B*H, *S]` -> `[B, H, *S]`."""
    return s.reshape(batch, heads, *s.shape[1:])


def split_axis(x: Array, axis: int) -> tuple[Array, ...]:
    """Splits `x` along `axis` into its slices (e.g. the gate axis of size 3, which Triton
    cannot hold as a register tensor)."""
    return tuple(jnp.take(x, i, axis=axis) for i in range(x.shape[axis]))
