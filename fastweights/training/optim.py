"""The optimizer: Adam after global-norm clipping, with a constant or warm-up + cosine rate."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from fastweights.training.config import SCHEDULES, OptimizerConfig


def learning_rate_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """The learning rate of update number `step` (0-based)."""
    lr = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule != "warmup_cosine":
        raise ValueError(f"unknown schedule {config.schedule!r}; valid: {', '.join(SCHEDULES)}")
    horizon = config.decay_steps or total_steps
    warmup = max(config.warmup_steps, 0)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        cosine = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * jnp.minimum(step, horizon) / horizon))
        rate = jnp.where(step < warmup, lr * step / max(warmup, 1), cosine)
        if config.official_step_order:
            rate = jnp.where(step == 0, lr, rate)
        return rate

    return schedule


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """Adam (no weight decay) with the schedule, after global-norm clipping."""
    adam = optax.adam(learning_rate_schedule(config, total_steps), b1=config.b1, b2=config.b2,
                      eps=config.eps)
    if config.clip_norm:
        return optax.chain(optax.clip_by_global_norm(config.clip_norm), adam)
    return adam
