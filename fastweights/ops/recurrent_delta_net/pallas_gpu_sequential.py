"""Pallas GPU (Triton) sequential kernel of the Recurrent Delta Net: one fused kernel per
(batch, head), with a reversible custom VJP (the driver:
`fastweights/ops/common/pallas_gpu_sequential.py`).

Per step (as `reference.step`): `s = tanh(y_prev)`; `q = softmax(q~ + R_q^T s)`,
`k = softmax(k~ + R_k^T s)`, `v = v~ + R_v^T s`, `beta = sigmoid(b~ + r_b . s)`; delta write
into `W`; `y = W^T q`. The step and the wrapper are the backend-neutral `kernel_math.cell`
and `run_sequential`, shared with `pallas_tpu_sequential.py`; here they run on the Triton
driver and its 1D per-head algebra. The slow parameters of the program's head stay in
registers.

Backward: reversal, as the official CUDA kernel. The forward stores per step the
post-softmax key `k_t`, the write vector `u_t` and the previous output `y_{t-1}`
(3 x `[T, D]` per head, O(T d)) plus the final state; the backward kernel reverts
`W_{t-1} = W_t - k_t u_t^T`, and applies the VJP of the recomputed step, which gives the
gradients of the raw inputs, of `y_{t-1}` (the feedback path) and of this head's `R_q, R_k,
R_v, r_b`; the latter are accumulated over time in registers and summed over the batch
outside the kernel (no atomics, so deterministic). Reversal rather than recomputation from
the initial state, which would need T stored d x d states or O(T^2) work. Rounding: the
reverted W re-adds the float32 rounding of every write, the same slow
drift measured for the Delta Net kernel (<= 7e-7 relative up to T = 4096) is expected,
as the keys are normalised the same way (not measured separately for this variant).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax

from fastweights.ops.common import pallas_gpu_sequential as ps
from fastweights.ops.recurrent_delta_net import kernel_math as shared
from fastweights.ops.recurrent_delta_net.reference import Params, State

Array = jax.Array


def supported(q: Array, k: Array, v: Array, beta: Array, *, params: Params | Mapping[str, Array],
              initial_state: State | None = None, interpret: bool = False) -> str | None:
    """None if `recurrent_delta_net` can run these inputs on a GPU (or interpreted), else the reason."""
    return shared.supported_sequential(ps, q, k, v, beta, params=params, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("interpret",))
def recurrent_delta_net(q: Array, k: Array, v: Array, beta: Array, *,
                        params: Params | Mapping[str, Array],
                        initial_state: State | None = None,
                        interpret: bool = False) -> tuple[Array, State]:
    """Same arguments and results as `reference.recurrent` (raw `q, k, v` `[B, T, H, D]`,
    `beta` `[B, T, H]`, `params` `R_q, R_k, R_v` `[H, D, D]`, `r_b` `[H, D]`;
    `State(W [B, H, D, D], y [B, H, D])`), plus `interpret` to run the kernels on CPU.
    Gradients reach the inputs, `params` and the initial state. Raises `NotImplementedError`
    when `supported` gives a reason."""
    return shared.run_sequential(ps, q, k, v, beta, params=params, initial_state=initial_state,
                                 interpret=interpret)
