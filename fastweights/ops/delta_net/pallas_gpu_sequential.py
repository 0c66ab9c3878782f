"""Pallas GPU (Triton) sequential kernel of the Delta Net: one fused kernel per (batch, head),
with a reversible custom VJP (the driver: `fastweights/ops/common/pallas_gpu_sequential.py`).

Per step (as `reference.step`): `u = beta (v - W^T k)`, `W += k u^T`, `o = W^T q`. The step
and the wrapper are the backend-neutral `kernel_math.cell` and `run_sequential`, shared with
`pallas_tpu_sequential.py`; here they run on the Triton driver and its 1D per-head algebra.

Backward: reversal, as the official CUDA kernel. The forward stores `u_t` `[T, V]` per head
(O(T d)) and the final W; the backward kernel walks t = T-1 .. 0, reverts
`W_{t-1} = W_t - k_t u_t^T`, and applies the VJP of the recomputed step. Reversal instead
of recomputation from W_0 because recomputation would need either T stored d x d states or
O(T^2) work. Rounding: the reverted W re-adds the float32 rounding of every write. Measured
(W_0 ~ N(0, 0.25), the library's example inputs: sum-normalised ELU+1 keys, sigmoid betas):
the largest relative error of any reverted W_{t-1} is 2e-7 at T = 64, 5e-7 at T = 1024 and
7e-7 at T = 4096 (d = 16 and 64), i.e. it grows slowly (random-walk like), far below the
float32 gradient tolerance; keys with large norms would amplify it.
"""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.delta_net import kernel_math as shared
from fastweights.ops.delta_net.reference import State

Array = jax.Array

FORM = "pallas_gpu_sequential"  # the implementation name in the reasons `supported` gives


def supported(q: Array, k: Array, v: Array, beta: Array, *, initial_state: State | None = None,
              interpret: bool = False) -> str | None:
    """None if `delta_net` can run these inputs on a GPU (or interpreted), else the reason."""
    return shared.supported_sequential(ps, q, k, v, beta, interpret=interpret, form=FORM)


@functools.partial(jax.jit, static_argnames=("interpret",))
def delta_net(q: Array, k: Array, v: Array, beta: Array, *,
              initial_state: State | None = None,
              interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, K]`, `v`
    `[B, T, H, V]`, `beta` `[B, T, H]`; `State(W [B, H, K, V])`), plus `interpret` to run the
    kernels on CPU. Raises `NotImplementedError` when `supported` gives a reason."""
    return shared.run_sequential(ps, q, k, v, beta, initial_state=initial_state, interpret=interpret,
                                 form=FORM)
