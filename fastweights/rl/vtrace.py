"""V-trace (Espeholt et al. 2018, IMPALA), batch-first, as torchbeast's `vtrace.py` computes it.

Why our own and not rlax: rlax 0.1.9 installs without TensorFlow but pulls distrax and a
tfp-nightly build and takes ~2 s to import (569 tfp modules), while V-trace is ~30 lines.
The tests check this module against rlax (`vtrace_td_error_and_advantage`, the `test`
extra) and against a direct float64 NumPy recursion of the paper's formulas:

    rho_t = min(clip_rho, pi/mu),  c_t = min(clip_c, pi/mu)
    delta_t = rho_t (r_t + gamma_t V_{t+1} - V_t)                  V_T = bootstrap
    vs_t - V_t = delta_t + gamma_t c_t (vs_{t+1} - V_{t+1})         vs_T = bootstrap
    pg_adv_t = min(clip_pg_rho, pi/mu) (r_t + gamma_t vs_{t+1} - V_t)

Inputs are `[B, T]` (row t of the learner's view: the action taken at frame t, the reward
and discount that came after it), the bootstrap `[B]` is the value of frame T. Outputs are
targets: `stop_gradient`ed, as in torchbeast (computed under `torch.no_grad()`) and IMPALA.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class VTraceReturns(NamedTuple):
    vs: Array             # [B, T] value targets
    pg_advantages: Array  # [B, T] rho_pg-clipped (r_t + gamma_t vs_{t+1} - V_t), vs_T = bootstrap


def _clipped(rhos: Array, threshold: float | None) -> Array:
    return rhos if threshold is None else jnp.minimum(threshold, rhos)


def vtrace(log_rhos, discounts, rewards, values, bootstrap_value, *, clip_rho: float | None = 1.0,
           clip_c: float | None = 1.0, clip_pg_rho: float | None = 1.0) -> VTraceReturns:
    """V-trace targets and policy-gradient advantages.

    Args:
      log_rhos: [B, T] log(pi(a_t) / mu(a_t)), target over behaviour policy.
      discounts: [B, T] gamma_t (0 where the episode ended after step t).
      rewards: [B, T]. values: [B, T] V(x_t). bootstrap_value: [B] V(x_T).
      clip_rho, clip_c, clip_pg_rho: the thresholds rho-bar, c-bar and the policy
        gradient's rho-bar; None: no clipping.
    Returns:
      `VTraceReturns(vs [B, T], pg_advantages [B, T])`, float32, without gradients.
    """
    log_rhos, discounts, rewards, values = (jnp.asarray(x, jnp.float32)
                                            for x in (log_rhos, discounts, rewards, values))
    bootstrap_value = jnp.asarray(bootstrap_value, jnp.float32)
    if log_rhos.ndim != 2:
        raise ValueError(f"log_rhos must be [batch, time], got shape {log_rhos.shape}")
    for name, x in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        if x.shape != log_rhos.shape:
            raise ValueError(f"{name} has shape {x.shape}, expected {log_rhos.shape} like log_rhos")
    if bootstrap_value.shape != log_rhos.shape[:1]:
        raise ValueError(f"bootstrap_value must be [batch] = {log_rhos.shape[:1]}, got {bootstrap_value.shape}")

    rhos = jnp.exp(log_rhos)
    bootstrap = bootstrap_value[:, None]
    values_next = jnp.concatenate([values[:, 1:], bootstrap], axis=1)
    deltas = _clipped(rhos, clip_rho) * (rewards + discounts * values_next - values)
    decays = discounts * _clipped(rhos, clip_c)

    def backward(acc, inputs):          # acc = vs_{t+1} - V_{t+1}
        delta, decay = inputs
        acc = delta + decay * acc
        return acc, acc

    # Time-major for the scan; the reverse scan runs t = T-1, ..., 0.
    _, vs_minus_v = jax.lax.scan(backward, jnp.zeros_like(bootstrap_value),
                                 (deltas.T, decays.T), reverse=True)
    vs = values + vs_minus_v.T
    vs_next = jnp.concatenate([vs[:, 1:], bootstrap], axis=1)
    pg_advantages = _clipped(rhos, clip_pg_rho) * (rewards + discounts * vs_next - values)
    return VTraceReturns(jax.lax.stop_gradient(vs), jax.lax.stop_gradient(pg_advantages))


def action_log_probs(logits: Array, actions: Array) -> Array:
    """log softmax(logits)[a]: `logits [B, T, A]`, `actions [B, T]` int -> `[B, T]`."""
    log_policy = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return jnp.take_along_axis(log_policy, jnp.asarray(actions, jnp.int32)[..., None], axis=-1)[..., 0]


def vtrace_from_logits(behaviour_logits, target_logits, actions, discounts, rewards, values,
                       bootstrap_value, **clips) -> tuple[VTraceReturns, Array]:
    """`vtrace` with log rho from the two policies' logits `[B, T, A]` at `actions [B, T]`.

    Returns `(VTraceReturns, log_rhos [B, T])`; `log_rhos` keeps its gradient with respect
    to the target logits (the targets do not).
    """
    behaviour_logits, target_logits = jnp.asarray(behaviour_logits), jnp.asarray(target_logits)
    if behaviour_logits.shape != target_logits.shape or behaviour_logits.ndim != 3:
        raise ValueError(f"behaviour_logits {behaviour_logits.shape} and target_logits "
                         f"{target_logits.shape} must both be [batch, time, actions]")
    if jnp.shape(actions) != target_logits.shape[:2]:
        raise ValueError(f"actions must be [batch, time] = {target_logits.shape[:2]}, got {jnp.shape(actions)}")
    log_rhos = action_log_probs(target_logits, actions) - action_log_probs(behaviour_logits, actions)
    return vtrace(log_rhos, discounts, rewards, values, bootstrap_value, **clips), log_rhos
