"""Pallas GPU (Triton) sequential kernel of the Delta LSTM (versions 1-4): one fused kernel per
(batch, head), with a reversible custom VJP (the driver:
`fastweights/ops/common/pallas_gpu_sequential.py`).

Per step (as `reference.step`): delta writes into the six matrices `W_g` `[K, V]`, `R_g`
`[V, V]` (g in i, u, o), gates from `R_g^T s + W_g^T q_g` with `s = h_prev` (v1) or
`softmax_eps(h_prev)` (v2-v4), cell and output as in the reference. The step and the wrapper
are the backend-neutral `kernel_math.cell` and `run_sequential`, shared with
`pallas_tpu_sequential.py`; here they run on the Triton driver and its 1D per-head algebra.
Triton register tensors need power-of-two sizes, so the gate axis (3) is split into separate
arrays outside the kernel and the state is held as six separate matrices.

Backward: reversal, as the official CUDA kernels. The forward stores per step the six write
vectors `u` and the previous `h_{t-1}`, `c_{t-1}` (8 x `[T, V]` per head, O(T d)) plus the
final state; the backward kernel reverts every matrix (`W_{t-1} = W_t - k_t u_t^T`), takes
`h_{t-1}, c_{t-1}` from the residuals, and applies the VJP of the recomputed step (full BPTT
through `h`, `c` and all six matrices). Reversal rather than recomputation from the initial
state, which would need T stored states of 6 d x d or O(T^2) work. Rounding: the reverted
matrices re-add the float32 rounding of every write, the same slow
drift measured for the Delta Net kernel (<= 7e-7 relative up to T = 4096) is expected,
as the keys are normalised the same way (not measured separately for this variant).
"""

from __future__ import annotations

import functools

import jax

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.delta_lstm import kernel_math as shared
from fastweights.ops.delta_lstm.reference import State

Array = jax.Array


def supported(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array, rbeta: Array, *,
              version: int = 4, initial_state: State | None = None, interpret: bool = False) -> str | None:
    """None if `delta_lstm` can run these inputs on a GPU (or interpreted), else the reason."""
    return shared.supported_sequential(ps, q, k, v, beta, rk, rv, rbeta, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("version", "interpret"))
def delta_lstm(q: Array, k: Array, v: Array, beta: Array, rk: Array, rv: Array,
               rbeta: Array, *, version: int = 4, initial_state: State | None = None,
               interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (`q, k` `[B, T, H, 3, K]`;
    `v, rk, rv` `[B, T, H, 3, V]`; `beta, rbeta` `[B, T, H, 3]`; `State(W [B, H, 3, K, V],
    R [B, H, 3, V, V], h, c [B, H, V])`), plus `interpret` to run the kernels on CPU. Raises
    `NotImplementedError` when `supported` gives a reason."""
    return shared.run_sequential(ps, q, k, v, beta, rk, rv, rbeta, version=version,
                                 initial_state=initial_state, interpret=interpret)
