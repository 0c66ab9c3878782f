"""Pallas TPU (Mosaic) sequential kernel of the Delta RNN (versions 1 and 2): one fused kernel
per (batch, head), with a reversible custom VJP (the driver: `fastweights/ops/common/pallas_tpu.py`).

The step and the wrapper are the backend-neutral `kernel_math.cell` and `run_sequential`,
shared with `pallas_gpu_sequential.py`, run on the TPU backend:
`W` `[K, V]`, `R` `[V, V]` and `y` `[1, V]` in float32 VMEM scratch across the time blocks;
the backward kernel reverts both delta writes and takes `y_{t-1}` from the residuals.
"""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.delta_rnn import kernel_math as shared
from fastweights.ops.delta_rnn.reference import State

Array = jax.Array


def supported(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 2, initial_state: State | None = None, interpret: bool = False) -> str | None:
    """None if `delta_rnn` can run these inputs on a TPU (or interpreted), else the reason."""
    return shared.supported_sequential(pt, q, k, v, beta, rk, rv, rbeta, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("version", "interpret"))
def delta_rnn(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 2, initial_state: State | None = None,
              interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, K]`;
    `v, rk, rv` `[B, T, H, V]`; `beta, rbeta` `[B, T, H]`; `State(W [B, H, K, V],
    R [B, H, V, V], y [B, H, V])`), plus `interpret` to run the kernels on CPU. Raises
    `NotImplementedError` when `supported` gives a reason."""
    return shared.run_sequential(pt, q, k, v, beta, rk, rv, rbeta, version=version,
                                 initial_state=initial_state, interpret=interpret)
