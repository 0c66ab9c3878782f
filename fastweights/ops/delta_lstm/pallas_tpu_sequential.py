"""Pallas TPU (Mosaic) sequential kernel of the Delta LSTM (versions 1-4): one fused kernel per
(batch, head), with a reversible custom VJP (the driver: `fastweights/ops/common/pallas_tpu.py`).

The step and the wrapper are the backend-neutral `kernel_math.cell` and `run_sequential`,
shared with `pallas_gpu_sequential.py`, run on the TPU backend: the gate axis is split
outside the kernel, the six matrices `W_g` `[K, V]`, `R_g` `[V, V]` and `h`, `c` `[1, V]`
stay in float32 VMEM scratch across the time blocks; the backward kernel reverts every delta
write and takes `h_{t-1}`, `c_{t-1}` from the residuals.
"""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.delta_lstm import kernel_math as shared
from fastweights.ops.delta_lstm.reference import State

Array = jax.Array


def supported(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 4, initial_state: State | None = None, interpret: bool = False) -> str | None:
    """None if `delta_lstm` can run these inputs on a TPU (or interpreted), else the reason."""
    return shared.supported_sequential(pt, q, k, v, beta, rk, rv, rbeta, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("version", "interpret"))
def delta_lstm(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
               version: int = 4, initial_state: State | None = None,
               interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, 3, K]`;
    `v, rk, rv` `[B, T, H, 3, V]`; `beta, rbeta` `[B, T, H, 3]`; `State(W [B, H, 3, K, V],
    R [B, H, 3, V, V], h, c [B, H, V])`), plus `interpret` to run the kernels on CPU. Raises
    `NotImplementedError` when `supported` gives a reason."""
    return shared.run_sequential(pt, q, k, v, beta, rk, rv, rbeta, version=version,
                                 initial_state=initial_state, interpret=interpret)
