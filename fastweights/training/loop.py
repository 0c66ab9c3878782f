"""The training loop: `train(task, model, run_dir, ...)` runs data, sharded steps,
asynchronous orbax checkpoints with the data-iterator state (and a carried-state task's
carry), exact resume, evaluation with best-checkpoint selection, NaN/Inf handling and
metrics (JSONL, TensorBoard, progress bar, PNG). It is handed its task and model and is
written against the task protocol (`training.task`): it knows no task or preset by name."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable
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
from fastweights.training.steps import (
    init_train_state,
    make_carry_init,
    make_eval_step,
    make_train_step,
    split_model,
    to_host,
)
from fastweights.training.task import Batch, CarriedStateTask, EvaluatingTask, Evaluator, Task, starts_epoch


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best if mode == "min" else value > best


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient was NaN or Inf (`nan_policy="stop"`)."""


def mean_over_batches(evaluator: Evaluator, batches: Iterable[Batch]) -> dict[str, float]:
    """Metrics over `batches`, each batch weighted by its real examples (a batch's `weight`
    rows; padding rows of a last partial batch count 0). A carried-state task's carry runs
    on from batch to batch, starting fresh."""
    totals: dict[str, float] = {}
    total_weight = 0.0
    carry = None
    for batch in batches:
        weight = float(np.sum(batch["weight"])) if "weight" in batch else 1.0
        weight = float(jax.experimental.multihost_utils.process_allgather(np.float32(weight)).sum()) \
            if jax.process_count() > 1 else weight
        if evaluator.carry_init is None:
            metrics = evaluator(batch)
        else:
            metrics, carry = evaluator(batch, carry)
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + weight * v
        total_weight += weight
    return {k: v / max(total_weight, 1e-9) for k, v in totals.items()}


def evaluate(task: Task, evaluator: Evaluator, data: Any, split: str = "valid") -> dict[str, float]:
    """The metrics of `split`: the task's own `evaluate` (`EvaluatingTask`), else the mean
    over its batches."""
    evaluator = dataclasses.replace(evaluator, split=split)     # its fresh carries are of `split`
    if isinstance(task, EvaluatingTask):
        return dict(task.evaluate(evaluator, data, split))
    return mean_over_batches(evaluator, task.dataset(data, split, process_index=jax.process_index(),
                                                     process_count=jax.process_count()))


def _check(task: Any) -> None:
    if not isinstance(task, Task):
        # As `isinstance` looks: statically (an attribute served by `__getattr__` does not count).
        members = sorted(set(Task.__annotations__) | {n for n in vars(Task) if not n.startswith("_")})
        missing = [m for m in members if inspect.getattr_static(task, m, None) is None]
        raise TypeError(f"{type(task).__name__} is not a fastweights.training.Task: it lacks {', '.join(missing)}")


def train(task: Task, model: nnx.Module | Callable[[nnx.Rngs], nnx.Module], run_dir: str | Path, *,
          data: Any, optimizer: OptimizerConfig = OptimizerConfig(), config: TrainConfig = TrainConfig(),
          resume: bool = True, run_config: Any = None) -> dict[str, Any]:
    """Trains `model` on `task`, writing checkpoints, metrics and a learning-curve plot under
    `run_dir`; resumes from the newest readable checkpoint there.

    Args:
      task: a `Task` (or `CarriedStateTask`, `EvaluatingTask`): batches of `data`, the loss.
      model: the model, or a factory `rngs -> model` called with `nnx.Rngs(params=seed,
        dropout=seed + 1)` of `config.seed`.
      data: the task's data config, passed to the task unread.
      run_config: JSON saved in every checkpoint (by default the task name and the data,
        optimizer and loop configs), to tell later what a run was.

    Returns the last train metrics, the best validation metric and its step, the test
    metrics of the best checkpoint, the final `TrainState` and carry (None without one).
    """
    _check(task)
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
    carried = isinstance(task, CarriedStateTask)
    carry_init = carry_shardings = carry = None
    if carried:
        carry_init, carry_shardings = make_carry_init(graphdef, rest, lambda m, split: task.init_carry(m, data, split),
                                                      state.params, mesh=mesh)
        carry = carry_init(state.params)
    kw = dict(shardings=shardings, mesh=mesh, compute_dtype=cfg.compute_dtype, carry_shardings=carry_shardings)
    train_step = make_train_step(graphdef, rest, task.loss, optimizer, schedule, **kw)
    eval_step = make_eval_step(graphdef, rest, task.loss, **kw)
    evaluator = lambda params: Evaluator(eval_step, params, mesh, carry_init)  # noqa: E731

    process, processes = jax.process_index(), jax.process_count()
    batches = task.dataset(data, "train", process_index=process, process_count=processes)
    store = CheckpointStore(run_dir / "checkpoints", keep=cfg.keep_checkpoints, async_save=cfg.async_checkpoints)
    if run_config is None:
        run_config = {"task": task.name, "data": config_to_dict(data), "optimizer": config_to_dict(opt_cfg),
                      "train": config_to_dict(cfg)}
    # What a checkpoint holds besides the JSON meta: the train state, and the carry with it.
    saved = lambda: {"state": state, "carry": carry} if carried else state  # noqa: E731
    abstract = {"state": abstract_like(state, shardings), "carry": abstract_like(carry, carry_shardings)} \
        if carried else abstract_like(state, shardings)
    unpack = lambda tree: (tree["state"], tree["carry"]) if carried else (tree, None)  # noqa: E731
    best, best_step = None, None
    if not resume and store.latest.all_steps():
        raise RunDirectoryError(f"{run_dir} already has checkpoints (steps {list(store.latest.all_steps())}); "
                                "resume from them or choose a new run directory")
    restored = store.restore_latest(abstract) if resume else None
    if restored is not None:
        step, tree, meta = restored
        state, carry = unpack(tree)
        batches.set_state(meta["data"])
        best, best_step = meta.get("best"), meta.get("best_step")
        log(f"resumed from step {step} in {run_dir / 'checkpoints'}")
    start = int(np.asarray(state.step))
    meta = lambda: {"data": batches.get_state(), "best": best, "best_step": best_step,  # noqa: E731
                    "config": run_config}

    writer = run_metrics.MetricsWriter(run_dir, tensorboard=cfg.tensorboard, enabled=process == 0)
    bar = run_metrics.ProgressBar(cfg.steps, initial_step=start, enabled=cfg.progress and process == 0)
    say = bar.write if bar.enabled else log     # through the bar while it is drawn: its line stays whole
    tokens = task.tokens_per_batch(data)
    last: dict[str, float] = {}
    try:
        for step in range(start + 1, cfg.steps + 1):
            local = next(batches)
            if carried:
                if starts_epoch(local):
                    carry = carry_init(state.params)
                state, step_metrics, carry = train_step(state, global_batch(local, mesh), carry)
            else:
                state, step_metrics = train_step(state, global_batch(local, mesh))
            last = to_host(step_metrics)
            if not last["finite"]:
                writer.write(step, last)
                if cfg.nan_policy == "stop":
                    raise NonFiniteLossError(
                        f"non-finite loss ({last['loss']}) or gradient (norm {last['grad_norm']}) at step "
                        f"{step}; the update was not applied and no checkpoint was written after it. "
                        f"Set train.nan_policy=skip to skip such updates.")
                say(f"step {step}: non-finite loss or gradient, update skipped")
            bar.update(step, loss=last["loss"], tokens=tokens)
            if step % cfg.log_every == 0 or step == cfg.steps:
                writer.write(step, last)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                scores = evaluate(task, evaluator(state.params), data)
                writer.write(step, scores, split="valid")
                if is_better(scores[cfg.best_metric], best, cfg.best_mode):
                    best, best_step = scores[cfg.best_metric], step
                    store.save_best(step, saved(), meta())
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                store.save(step, saved(), meta())
        bar.close()
        store.wait()
        test = None
        if cfg.test_at_end:
            best_ckpt = store.restore_latest(abstract, best=True)
            params = unpack(best_ckpt[1])[0].params if best_ckpt is not None else state.params
            test = evaluate(task, evaluator(params), data, split="test")
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
            "state": state, "carry": carry}
