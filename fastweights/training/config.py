"""The optimizer and loop settings: frozen dataclasses, checked by `validate`."""

from __future__ import annotations

import dataclasses

SCHEDULES = ("constant", "warmup_cosine")
NAN_POLICIES = ("stop", "skip")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam with an optional warm-up + cosine schedule and global-norm clipping.

    Attributes:
      schedule: "constant" (the algorithmic code) or "warmup_cosine" (the LM code: linear
        warm-up over `warmup_steps`, then `lr/2 (1 + cos(pi step / decay_steps))` at the
        absolute step, PAPER_SPEC 3.1).
      decay_steps: the cosine's horizon (official `max_step`); None: the run's steps.
      official_step_order: the LM code sets the learning rate after `optimizer.step()`, so
        its first update uses the full rate, then `lr/warmup`, `2 lr/warmup`, ...
      clip_norm: global gradient-norm clip (LM: 0.25); None: no clipping (algorithmic).
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
    checks = [("optimizer.schedule", optimizer.schedule, SCHEDULES),
              ("train.nan_policy", train.nan_policy, NAN_POLICIES),
              ("train.compute_dtype", train.compute_dtype, COMPUTE_DTYPES),
              ("train.best_mode", train.best_mode, ("min", "max"))]
    for name, value, valid in checks:
        if value not in valid:
            raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(valid)}")
    if train.steps < 1 or optimizer.learning_rate <= 0:
        raise ValueError("train.steps must be >= 1 and optimizer.learning_rate > 0")
    if len(train.mesh) != 2:
        raise ValueError(f"train.mesh must be (data, model), got {train.mesh}")
