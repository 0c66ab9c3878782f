"""Pallas GPU (Triton) sequential kernel of the Delta RNN (versions 1 and 2): one fused kernel
per (batch, head), with a reversible custom VJP (the driver:
`fastweights/ops/common/pallas_gpu_sequential.py`).

Per step (as `reference.step`): delta writes into `W` `[K, V]` and `R` `[V, V]`, then
v2: `y = R^T softmax_eps(y_prev) + W^T q`; v1: `y = softmax(R^T y_prev + W^T q)`. The step
and the wrapper are the backend-neutral `kernel_math.cell` and `run_sequential`, shared with
`pallas_tpu_sequential.py`; here they run on the Triton driver and its 1D per-head algebra.

Backward: reversal, as the official CUDA kernels. The forward stores per step the two
write vectors `u_W`, `u_R` and the previous output `y_{t-1}` (3 x `[T, V]` per head, O(T d))
plus the final state; the backward kernel reverts `W_{t-1} = W_t - k_t u_W^T`,
`R_{t-1} = R_t - rk_t u_R^T`, takes `y_{t-1}` from the residuals, and applies the VJP of
the recomputed step (full BPTT through `y`, `W` and `R`). Reversal rather than
recomputation from the initial state, which would need T stored d x d states or O(T^2) work.
Rounding: the reverted W and R re-add the float32 rounding of every write, the same
slow drift measured for the Delta Net kernel (<= 7e-7 relative up to T = 4096) is expected,
as the keys are normalised the same way (not measured separately for this variant).
"""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.delta_rnn import kernel_math as shared
from fastweights.ops.delta_rnn.reference import State

Array = jax.Array


def supported(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 2, initial_state: State | None = None, interpret: bool = False) -> str | None:
    """None if `delta_rnn` can run these inputs on a GPU (or interpreted), else the reason."""
    return shared.supported_sequential(ps, q, k, v, beta, rk, rv, rbeta, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("version", "interpret"))
def delta_rnn(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
              rbeta: Array, *, version: int = 2, initial_state: State | None = None,
              interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, K]`;
    `v, rk, rv` `[B, T, H, V]`; `beta, rbeta` `[B, T, H]`; `State(W [B, H, K, V],
    R [B, H, V, V], y [B, H, V])`), plus `interpret` to run the kernels on CPU. Raises
    `NotImplementedError` when `supported` gives a reason."""
    return shared.run_sequential(ps, q, k, v, beta, rk, rv, rbeta, version=version,
                                 initial_state=initial_state, interpret=interpret)
