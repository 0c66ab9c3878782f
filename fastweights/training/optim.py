"""The optimizer: Adam or RMSProp after global-norm clipping, with a constant, warm-up +
cosine or linear rate."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from fastweights.training.config import OPTIMIZERS, SCHEDULES, OptimizerConfig


def learning_rate_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """The learning rate of update number `step` (0-based)."""
    lr = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}; valid: {', '.join(SCHEDULES)}")
    horizon = config.decay_steps or total_steps
    if config.schedule == "linear":
        # polybeast's LambdaLR steps after each update, so update k uses lr (1 - k/horizon).
        return lambda step: lr * (1.0 - jnp.minimum(jnp.asarray(step, jnp.float32), horizon) / horizon)
    warmup = max(config.warmup_steps, 0)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        cosine = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * jnp.minimum(step, horizon) / horizon))
        rate = jnp.where(step < warmup, lr * step / max(warmup, 1), cosine)
        if config.official_step_order:
            rate = jnp.where(step == 0, lr, rate)
        return rate

    return schedule


def _rmsprop(schedule: optax.Schedule, config: OptimizerConfig) -> optax.GradientTransformation:
    """PyTorch's RMSprop: `v = a v + (1-a) g^2` (v starts at 0), `buf = m buf + g / (sqrt(v) +
    eps)`, `p -= lr buf`. optax.rmsprop with `eps_in_sqrt=False, initial_scale=0` is this
    for momentum 0, but applies the momentum after the rate (`buf = m buf + lr g / ...`),
    which differs once the rate changes; so the momentum comes before the rate here."""
    return optax.chain(
        optax.scale_by_rms(decay=config.decay, eps=config.eps, initial_scale=0.0, eps_in_sqrt=False),
        optax.trace(decay=config.momentum) if config.momentum else optax.identity(),
        optax.scale_by_learning_rate(schedule))


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """Adam (no weight decay) or RMSProp with the schedule, after global-norm clipping."""
    schedule = learning_rate_schedule(config, total_steps)
    if config.optimizer == "adam":
        inner = optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps)
    elif config.optimizer == "rmsprop":
        inner = _rmsprop(schedule, config)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if config.clip_norm:
        return optax.chain(optax.clip_by_global_norm(config.clip_norm), inner)
    return inner
