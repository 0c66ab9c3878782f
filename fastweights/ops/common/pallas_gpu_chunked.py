"""Pallas GPU (Triton) chunked kernels: the Triton-specific pieces shared by `delta_net` and
`linear_transformer` (`<variant>/pallas_gpu_chunked.py`).

Layout: the kernels see head-first, zero-padded sequences `[B * H, T_pad, D]` with
`T_pad = N * C` (whole chunks, `kernel_math.to_heads`; zero keys, values and betas write
nothing, and the outputs of padded steps are dropped), one program per
`(batch * head[, value block])`, walking its chunks with a `fori_loop` while the `[K, V]`
state stays in float32 registers.

Backend: the Triton lowering of Pallas (`jax.experimental.pallas.triton`), not Mosaic GPU.
These kernels are small-tile register programs (16..128-wide tiles, a sequential chunk loop
per program), which is exactly Triton's model and how FLA's delta-rule kernels are written;
the Triton backend runs on every CUDA GPU JAX supports (Ampere, Hopper, Blackwell) and has a
stable `pallas_call` + `CompilerParams(num_warps, num_stages)` API across the JAX releases we
support, whereas Mosaic GPU targets Hopper+ warpgroup programming (explicit SMEM/TMA
pipelines) and its API still changes between releases. Triton needs every dot dimension to
be a power of two >= 16, hence `supported`.

Dots (`kernel_math.dot`): operands in the inputs' dtype (bfloat16/float16 -> tensor cores,
float32 -> IEEE float32, never TF32) with float32 accumulation; states and all sums stay
float32. The backend-neutral pieces (`dot`, `causal_mask`, `to_heads`, `from_heads`) are in
`kernel_math.py`; here are the Triton limits, the chunk length, the block specs and the launch
parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

Array = jax.Array

MAX_DIM = 256  # larger K or V would not fit the float32 state in registers
KERNEL_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


def _pow2_at_least_16(x: int) -> bool:
    return x >= 16 and x & (x - 1) == 0


def chunk_length(chunk_size: int, time: int) -> int:
    """The chunk the kernels use: `chunk_size`, shrunk for short sequences to the smallest
    power of two >= max(16, T) so that T = 1 does not pay a 64-step chunk."""
    return min(chunk_size, max(16, pl.next_power_of_2(time)))


def supported(op: str, *, key_dim: int, value_dim: int, chunk_size: int, dtype, interpret: bool) -> str | None:
    """None if the chunked Pallas GPU kernel of `op` can run, else the reason it cannot."""
    if not interpret and jax.default_backend() != "gpu":
        return (f"{op}: implementation 'pallas_gpu_chunked' needs a GPU (default backend is "
                f"{jax.default_backend()!r}); pass interpret=True to run the kernel on CPU")
    for name, d in (("key dim K", key_dim), ("value dim V", value_dim)):
        if not _pow2_at_least_16(d) or d > MAX_DIM:
            return (f"{op}: pallas_gpu_chunked needs {name} to be a power of two in [16, {MAX_DIM}] "
                    f"(Triton dot tiles), got {d}")
    if not (_pow2_at_least_16(chunk_size) and chunk_size <= 128):
        return f"{op}: pallas_gpu_chunked needs chunk_size in {{16, 32, 64, 128}}, got {chunk_size}"
    if jnp.dtype(dtype) not in [jnp.dtype(d) for d in KERNEL_DTYPES]:
        return f"{op}: pallas_gpu_chunked supports float32, bfloat16 and float16 inputs, got {jnp.dtype(dtype)}"
    return None


class BlockSpecs(NamedTuple):
    """The blocks every chunked kernel uses, on the grid `(batch * head, value block)`."""
    seq_k: pl.BlockSpec   # [BH, T_pad, K]: the whole sequence, shared by the value blocks
    seq_v: pl.BlockSpec   # [BH, T_pad, V]: this value block's columns
    state: pl.BlockSpec   # [BH, K, V]: one state, this value block's columns
    states: pl.BlockSpec  # [BH, N * K, V]: the state entering every chunk
    part_k: pl.BlockSpec  # [V / BV, BH, T_pad, K]: one partial per value block


def block_specs(time: int, key_dim: int, block_v: int, n_chunks: int) -> BlockSpecs:
    """The `BlockSpecs` for padded length `time`, key dim, value block width and chunk count."""
    return BlockSpecs(
        seq_k=pl.BlockSpec((None, time, key_dim), lambda b, j: (b, 0, 0)),
        seq_v=pl.BlockSpec((None, time, block_v), lambda b, j: (b, 0, j)),
        state=pl.BlockSpec((None, key_dim, block_v), lambda b, j: (b, 0, j)),
        states=pl.BlockSpec((None, n_chunks * key_dim, block_v), lambda b, j: (b, 0, j)),
        part_k=pl.BlockSpec((None, None, time, key_dim), lambda b, j: (j, b, 0, 0)),
    )


def compiler_params(key_dim: int, value_dim: int):
    """Triton launch parameters: more warps once the float32 state tile gets large; one stage,
    since software-pipelining the chunk loop's loads (num_stages >= 2) multiplies their shared
    memory (with 2 stages and a whole-V backward, K = V = 128 overflowed the H200's 227 KiB;
    1 stage with 64-column value blocks fits)."""
    from jax.experimental.pallas import triton as plgpu  # only needed when lowering for GPU

    return plgpu.CompilerParams(num_warps=4 if key_dim * value_dim <= 64 * 64 else 8, num_stages=1)
