"""Pallas TPU (Mosaic) sequential kernel of the Recurrent Delta Net: one fused kernel per
(batch, head), with a reversible custom VJP (the driver: `fastweights/ops/common/pallas_tpu.py`).

The step and the wrapper are the backend-neutral `kernel_math.cell` and `run_sequential`,
shared with `pallas_gpu_sequential.py`, run on the TPU backend:
`W` `[D, D]` and `y` `[1, D]` in float32 VMEM scratch across the time blocks, this head's
slow `R_q, R_k, R_v` `[D, D]` and `r_b` `[1, D]` loaded once per grid cell; the backward
kernel accumulates their gradients in VMEM scratch (summed over the batch outside).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax

from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.recurrent_delta_net import kernel_math as shared
from fastweights.ops.recurrent_delta_net.reference import Params, State

Array = jax.Array


def supported(q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
              initial_state: State | None = None, interpret: bool = False) -> str | None:
    """None if `recurrent_delta_net` can run these inputs on a TPU (or interpreted), else the reason."""
    return shared.supported_sequential(pt, q, k, v, beta, params=params, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("interpret",))
def recurrent_delta_net(q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
                        initial_state: State | None = None, interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (raw `q, k, v` `[B, T, H, D]`,
    `beta` `[B, T, H]`, `params` `R_q, R_k, R_v` `[H, D, D]`, `r_b` `[H, D]`;
    `State(W [B, H, D, D], y [B, H, D])`), plus `interpret` to run the kernels on CPU.
    Gradients reach the inputs, `params` and the initial state. Raises `NotImplementedError`
    when `supported` gives a reason."""
    return shared.run_sequential(pt, q, k, v, beta, params=params, initial_state=initial_state,
                                 interpret=interpret)
