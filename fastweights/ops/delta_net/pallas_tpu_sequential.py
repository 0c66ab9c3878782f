"""Pallas TPU (Mosaic) sequential kernel of the Delta Net: one fused kernel per (batch, head),
with a reversible custom VJP (the driver: `fastweights/ops/common/pallas_tpu.py`).

The step and the wrapper are the backend-neutral `kernel_math.cell` and `run_sequential`,
shared with `pallas_gpu_sequential.py`, run on the TPU backend: grid `(B*H, time blocks)`,
`W` `[K, V]` in float32 VMEM scratch across the time blocks, per-step rows `[1, D]`, and the
backward kernel reverting `W_{t-1} = W_t - k_t u_t^T` while it walks the time blocks in
reverse (O(T d) residuals, no per-step d x d state).
"""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common import pallas_tpu as pt
from fastweights.ops.delta_net import kernel_math as shared
from fastweights.ops.delta_net.reference import State

Array = jax.Array

FORM = "pallas_tpu_sequential"  # the implementation name in the reasons `supported` gives


def supported(q: Array, k: Array, v: Array, beta: Array, *, initial_state: State | None = None,
              interpret: bool = False) -> str | None:
    """None if `delta_net` can run these inputs on a TPU (or interpreted), else the reason."""
    return shared.supported_sequential(pt, q, k, v, beta, interpret=interpret, form=FORM)


@functools.partial(jax.jit, static_argnames=("interpret",))
def delta_net(q: Array, k: Array, v: Array, beta: Array, *, initial_state: State | None = None,
              interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, K]`, `v`
    `[B, T, H, V]`, `beta` `[B, T, H]`; `State(W [B, H, K, V])`), plus `interpret` to run the
    kernels on CPU. Raises `NotImplementedError` when `supported` gives a reason."""
    return shared.run_sequential(pt, q, k, v, beta, initial_state=initial_state, interpret=interpret,
                                 form=FORM)
