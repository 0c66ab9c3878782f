"""Public entry point of the Recurrent Delta Net."""

from __future__ import annotations

import functools

from collections.abc import Mapping

import jax

from fastweights.ops.common.sequence import Form, dispatch, make_forms
from fastweights.ops.recurrent_delta_net import pallas_gpu_sequential, pallas_tpu_sequential, reference

Array = jax.Array

FORMS = make_forms(
    pallas_gpu_sequential=Form(pallas_gpu_sequential.recurrent_delta_net, backend="gpu", auto=False),
    pallas_tpu_sequential=Form(pallas_tpu_sequential.recurrent_delta_net, backend="tpu",
                               supported=pallas_tpu_sequential.supported),
    recurrent=reference.recurrent,
)


@functools.partial(jax.jit, static_argnames=("implementation",))
def recurrent_delta_net(q: Array, k: Array, v: Array, beta: Array, *,
                        params: reference.Params | Mapping[str, Array],
                        initial_state: reference.State | None = None,
                        implementation: str | None = None) -> tuple[Array, reference.State]:
    """Recurrent Delta Net: the previous output `y_{t-1}` feeds back through `tanh` and slow
    recurrent matrices into this step's query, key, value and write strength.

    Args:
      q, k, v: raw pre-activations `[B, T, H, D]` (no feature map: the softmax of q and k
        is applied inside, after the recurrent contribution is added).
      beta: raw write-strength logits `[B, T, H]` (the sigmoid is applied inside).
      params: `Params(R_q, R_k, R_v [H, D, D], r_b [H, D])` (or a mapping with these keys):
        the slow recurrent weights, applied as `R^T tanh(y_{t-1})` and `r_b . tanh(y_{t-1})`.
        `init_params` draws them as the official code does.
      initial_state: `State(W [B, H, D, D], y [B, H, D])`; zeros if None.
      implementation: None (the best available) or one of `FORMS`.

    Returns:
      `(y [B, T, H, D] in the input dtype, final State in float32)`.
    """
    return dispatch("recurrent_delta_net", FORMS, implementation, (q, k, v, beta), initial_state=initial_state, params=params)
