"""The training loop: `train(task, model, run_dir, ...)` runs data, sharded steps,
asynchronous orbax checkpoints with the data-iterator state, exact resume, evaluation with
best-checkpoint selection, NaN/Inf handling and metrics (JSONL, TensorBoard, progress bar,
PNG). It is handed its task and model: it knows no task or preset by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.experimental.multihost_utils
import numpy as np
from flax import nnx

from fastweights import metrics as run_metrics
from fastweights.checkpoints import CheckpointStore, abstract_like
from fastweights.training.config import OptimizerConfig, TrainConfig, validate
from fastweights.training.distributed import log
from fastweights.training.optim import learning_rate_schedule, make_optimizer
from fastweights.training.run_dir import RunDirectoryError, config_to_dict
from fastweights.training.sharding import global_batch, make_mesh
from fastweights.training.steps import init_train_state, make_eval_step, make_train_step, split_model

Array = jax.Array


def to_host(metrics: Mapping[str, Array]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best if mode == "min" else value > best


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient was NaN or Inf (`nan_policy="stop"`)."""


def evaluate(eval_step, params, task, data_config, mesh, split: str = "valid") -> dict[str, float]:
    """Metrics over the split, each batch weighted by its real examples (a batch's `weight`
    rows; padding rows of a last partial batch count 0)."""
    totals: dict[str, float] = {}
    total_weight = 0.0
    for batch in task.dataset(data_config, split, process_index=jax.process_index(),
                              process_count=jax.process_count()):
        weight = float(np.sum(batch["weight"])) if "weight" in batch else 1.0
        weight = float(jax.experimental.multihost_utils.process_allgather(np.float32(weight)).sum()) \
            if jax.process_count() > 1 else weight
        for k, v in to_host(eval_step(params, global_batch(batch, mesh))).items():
            totals[k] = totals.get(k, 0.0) + weight * v
        total_weight += weight
    return {k: v / max(total_weight, 1e-9) for k, v in totals.items()}


def train(task, model: nnx.Module | Callable[[nnx.Rngs], nnx.Module], run_dir: str | Path, *,
          data: Any, optimizer: OptimizerConfig = OptimizerConfig(), config: TrainConfig = TrainConfig(),
          resume: bool = True, run_config: Any = None) -> dict[str, Any]:
    """Trains `model` on `task`, writing checkpoints, metrics and a learning-curve plot under
    `run_dir`; resumes from the newest readable checkpoint there.

    Args:
      task: what to train on: its batches of `data` (the task's own data config), its loss.
      model: the model, or a factory `rngs -> model` called with `nnx.Rngs(params=seed,
        dropout=seed + 1)` of `config.seed`.
      run_config: JSON saved in every checkpoint (by default the data, optimizer and loop
        configs), to tell later what a run was.

    Returns the last train metrics, the best validation metric and its step, the test
    metrics of the best checkpoint, and the final `TrainState`.
    """
    cfg, opt_cfg = config, optimizer
    validate(opt_cfg, cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(cfg.mesh)
    if not isinstance(model, nnx.Module):
        model = model(nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1))
    graphdef, _, rest = split_model(model)
    optimizer = make_optimizer(opt_cfg, cfg.steps)
    schedule = learning_rate_schedule(opt_cfg, cfg.steps)
    state, shardings = init_train_state(model, optimizer, seed=cfg.seed, mesh=mesh)
    del model
    kw = dict(shardings=shardings, mesh=mesh, compute_dtype=cfg.compute_dtype)
    train_step = make_train_step(graphdef, rest, task.loss, optimizer, schedule, nan_policy=cfg.nan_policy, **kw)
    eval_step = make_eval_step(graphdef, rest, task.loss, **kw)

    process, processes = jax.process_index(), jax.process_count()
    batches = task.dataset(data, "train", process_index=process, process_count=processes)
    store = CheckpointStore(run_dir / "checkpoints", keep=cfg.keep_checkpoints, async_save=cfg.async_checkpoints)
    if run_config is None:
        run_config = {"task": task.name, "data": config_to_dict(data), "optimizer": config_to_dict(opt_cfg),
                      "train": config_to_dict(cfg)}
    best, best_step = None, None
    if not resume and store.latest.all_steps():
        raise RunDirectoryError(f"{run_dir} already has checkpoints (steps {list(store.latest.all_steps())}); "
                                "resume from them or choose a new run directory")
    restored = store.restore_latest(abstract_like(state, shardings)) if resume else None
    if restored is not None:
        step, state, meta = restored
        batches.set_state(meta["data"])
        best, best_step = meta.get("best"), meta.get("best_step")
        log(f"resumed from step {step} in {run_dir / 'checkpoints'}")
    start = int(np.asarray(state.step))
    meta = lambda: {"data": batches.get_state(), "best": best, "best_step": best_step,  # noqa: E731
                    "config": run_config}

    writer = run_metrics.MetricsWriter(run_dir, tensorboard=cfg.tensorboard, enabled=process == 0)
    bar = run_metrics.ProgressBar(cfg.steps, initial_step=start, enabled=cfg.progress and process == 0)
    tokens = task.tokens_per_batch(data)
    last: dict[str, float] = {}
    try:
        for step in range(start + 1, cfg.steps + 1):
            state, step_metrics = train_step(state, global_batch(next(batches), mesh))
            last = to_host(step_metrics)
            if not last["finite"]:
                writer.write(step, last)
                if cfg.nan_policy == "stop":
                    raise NonFiniteLossError(
                        f"non-finite loss ({last['loss']}) or gradient (norm {last['grad_norm']}) at step "
                        f"{step}; the update was not applied and no checkpoint was written after it. "
                        f"Set train.nan_policy=skip to skip such updates.")
                log(f"step {step}: non-finite loss or gradient, update skipped")
            bar.update(step, loss=last["loss"], tokens=tokens)
            if step % cfg.log_every == 0 or step == cfg.steps:
                writer.write(step, last)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                scores = evaluate(eval_step, state.params, task, data, mesh)
                writer.write(step, scores, split="valid")
                if is_better(scores[cfg.best_metric], best, cfg.best_mode):
                    best, best_step = scores[cfg.best_metric], step
                    store.save_best(step, state, meta())
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                store.save(step, state, meta())
        store.wait()
        test = None
        if cfg.test_at_end:
            best_ckpt = store.restore_latest(abstract_like(state, shardings), best=True)
            params = best_ckpt[1].params if best_ckpt is not None else state.params
            test = evaluate(eval_step, params, task, data, mesh, split="test")
            writer.write(best_step or cfg.steps, test, split="test")
            log(f"test ({'best' if best_ckpt is not None else 'last'} checkpoint, step "
                f"{best_ckpt[0] if best_ckpt is not None else cfg.steps}): "
                + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    finally:
        bar.close()
        writer.close()
        store.close()
    if cfg.plot and process == 0:
        keys = ("loss",) if cfg.best_metric == "loss" else ("loss", cfg.best_metric)
        run_metrics.plot_learning_curves(run_dir / "metrics.jsonl", run_dir / "learning_curves.png",
                                         keys=keys, title=f"{task.name}: {run_dir.name}")
    return {"last": last, "best": best, "best_step": best_step, "test": test, "run_dir": str(run_dir),
            "state": state}
