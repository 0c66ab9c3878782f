"""The optimizer and loop settings: frozen dataclasses, checked by `validate`."""

from __future__ import annotations

import dataclasses

SCHEDULES = ("constant", "warmup_cosine", "linear")
OPTIMIZERS = ("adam", "rmsprop")
NAN_POLICIES = ("stop", "skip")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam or RMSProp with a constant, warm-up + cosine or linear schedule and global-norm
    clipping.

    Attributes:
      optimizer: "adam" (LM and algorithmic code) or "rmsprop" (the RL code: PyTorch's
        RMSprop, `v = decay v + (1 - decay) g^2` from v = 0, `p -= lr g / (sqrt(v) + eps)`;
        polybeast uses decay 0.99, eps 0.01, momentum 0, PAPER_SPEC 7).
      schedule: "constant" (the algorithmic code), "warmup_cosine" (the LM code: linear
        warm-up over `warmup_steps`, then `lr/2 (1 + cos(pi step / decay_steps))` at the
        absolute step, PAPER_SPEC 3.1) or "linear" (the RL code: `lr (1 - min(step,
        decay_steps) / decay_steps)`, polybeast's LambdaLR counted in updates).
      decay_steps: the cosine's or the linear decay's horizon (official `max_step`, or RL
        `total_steps / (T B)`); None: the run's steps.
      official_step_order: the LM code sets the learning rate after `optimizer.step()`, so
        its first update uses the full rate, then `lr/warmup`, `2 lr/warmup`, ...
      b1, b2: Adam's moment decays. eps: Adam's or RMSProp's epsilon (outside the root).
      decay, momentum: RMSProp's alpha and PyTorch-style momentum (0: none).
      clip_norm: global gradient-norm clip (LM: 0.25, RL: 40); None: no clipping (algorithmic).
    """
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_steps: int | None = None
    official_step_order: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = None
    optimizer: str = "adam"
    decay: float = 0.99
    momentum: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The loop.

    Attributes:
      mesh: `(data, model)` device counts; -1 takes the remaining devices.
      compute_dtype: "bfloat16" computes the slow net in bf16 with float32 master weights
        (the fast-weight state stays float32 inside the ops).
      nan_policy: "stop" (raise, naming the step) or "skip" (drop the update, log it).
      test_at_end: evaluate the best-validation checkpoint on the test split at the end.
    """
    steps: int = 200
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    async_checkpoints: bool = True
    best_metric: str = "loss"
    best_mode: str = "min"
    compute_dtype: str = "float32"
    mesh: tuple[int, int] = (-1, 1)
    nan_policy: str = "stop"
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True
    test_at_end: bool = True


def validate(optimizer: OptimizerConfig, train: TrainConfig) -> None:
    """Clear errors for values outside the valid sets."""
    checks = [("optimizer.optimizer", optimizer.optimizer, OPTIMIZERS),
              ("optimizer.schedule", optimizer.schedule, SCHEDULES),
              ("train.nan_policy", train.nan_policy, NAN_POLICIES),
              ("train.compute_dtype", train.compute_dtype, COMPUTE_DTYPES),
              ("train.best_mode", train.best_mode, ("min", "max"))]
    for name, value, valid in checks:
        if value not in valid:
            raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(valid)}")
    if train.steps < 1 or optimizer.learning_rate <= 0:
        raise ValueError("train.steps must be >= 1 and optimizer.learning_rate > 0")
    if not 0.0 <= optimizer.decay < 1.0 or optimizer.momentum < 0 or optimizer.eps < 0:
        raise ValueError("optimizer.decay must be in [0, 1), optimizer.momentum and optimizer.eps >= 0")
    if optimizer.decay_steps is not None and optimizer.decay_steps < 1:
        raise ValueError(f"optimizer.decay_steps must be >= 1 or None, got {optimizer.decay_steps}")
    if len(train.mesh) != 2:
        raise ValueError(f"train.mesh must be (data, model), got {train.mesh}")
