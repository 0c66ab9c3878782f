"""The training system every experiment uses (importable from a notebook).

    state = init_train_state(model, optimizer, seed=0, mesh=mesh)
    train_step = make_train_step(graphdef, task.loss, optimizer, mesh=mesh, ...)
    state, metrics = train_step(state, batch)          # compiled once, state donated

`train(experiment)` runs the whole loop: data, sharding over a `(data, model)` mesh,
asynchronous orbax checkpoints with the data-iterator state, exact resume, evaluation with
best-checkpoint selection, NaN/Inf handling, metrics (JSONL, TensorBoard, progress bar, PNG).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.experimental.multihost_utils
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from fastweights.nn.common import logical_axes

Array = jax.Array

SCHEDULES = ("constant", "warmup_cosine")
NAN_POLICIES = ("stop", "skip")
COMPUTE_DTYPES = ("float32", "bfloat16")
MESH_AXES = ("data", "model")
# Logical parameter axes -> mesh axes. Heads (and the feed-forward width) are the
# model-parallel axes; everything else is replicated. A dim that the model axis does not
# divide is replicated too.
SHARDING_RULES: Mapping[str, str | None] = {"heads": "model", "mlp": "model"}


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


class TrainState(NamedTuple):
    """Everything a step changes; a pytree, checkpointed as one."""
    step: Array          # [] int32: updates done
    params: nnx.State    # float32 master weights
    opt_state: Any
    key: Array           # [2] uint32: dropout keys are fold_in(key, step)


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


# ----------------------------------------------------------------------------- sharding

def make_mesh(shape: tuple[int, int] = (-1, 1), devices=None) -> jax.sharding.Mesh:
    """A `(data, model)` mesh over all (global) devices; -1 takes what is left."""
    devices = jax.devices() if devices is None else devices
    data, model = shape
    if data == -1 and model == -1:
        raise ValueError("at most one mesh axis may be -1")
    if model == -1:
        model = len(devices) // data
    if data == -1:
        data = len(devices) // model
    if data * model != len(devices) or data < 1 or model < 1:
        raise ValueError(f"mesh {shape} does not fit {len(devices)} devices (data x model must equal it)")
    return jax.sharding.Mesh(np.asarray(devices).reshape(data, model), MESH_AXES)


def param_specs(params: nnx.State, axes: Mapping[tuple, tuple], mesh: jax.sharding.Mesh,
                rules: Mapping[str, str | None] = SHARDING_RULES) -> nnx.State:
    """A `PartitionSpec` per parameter from its logical axis names and `rules`."""
    def spec(path, value):
        names = axes.get(_path_key(path), (None,) * value.ndim)
        mesh_axes = []
        for name, dim in zip(names, value.shape):
            target = rules.get(name)
            ok = target is not None and dim % mesh.shape[target] == 0 and target not in mesh_axes
            mesh_axes.append(target if ok else None)
        return P(*mesh_axes)

    return jax.tree_util.tree_map_with_path(spec, params)


def _path_key(path) -> tuple:
    """A pytree path of a parameter value as the key `logical_axes` uses."""
    keys = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            keys.append(entry.key)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            keys.append(entry.idx)
        elif isinstance(entry, jax.tree_util.GetAttrKey) and entry.name != "value":
            keys.append(entry.name)
    return tuple(keys)


def state_shardings(state: TrainState, optimizer: optax.GradientTransformation, axes, mesh) -> TrainState:
    """NamedShardings of every leaf of a (possibly abstract) train state."""
    specs = param_specs(state.params, axes, mesh)
    opt_specs = optax.tree_map_params(optimizer, lambda _, s: s, state.opt_state, specs,
                                      transform_non_params=lambda _: P(),
                                      is_leaf=lambda x: isinstance(x, P))
    named = lambda s: NamedSharding(mesh, s)  # noqa: E731
    is_spec = lambda x: isinstance(x, P)  # noqa: E731
    return TrainState(named(P()), jax.tree.map(named, specs, is_leaf=is_spec),
                      jax.tree.map(named, opt_specs, is_leaf=is_spec), named(P()))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def global_batch(local: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, Array]:
    """Assembles each process's rows into global arrays sharded over `data`."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


# ----------------------------------------------------------------------------- steps

def _compute_params(params: nnx.State, compute_dtype: str) -> nnx.State:
    if compute_dtype == "float32":
        return params
    dtype = jnp.dtype(compute_dtype)
    return jax.tree.map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)


def _global_norm(tree) -> Array:
    # optax.tree.norm replaces optax.global_norm (deprecated) in newer optax releases.
    return optax.tree.norm(tree) if hasattr(optax, "tree") and hasattr(optax.tree, "norm") \
        else optax.global_norm(tree)


def _fresh(tree):
    """New Variable objects for the current trace: NNX refuses to mutate (e.g. advance an
    RNG count in) a Variable created at another trace level."""
    return jax.tree.map(lambda x: x, tree)


def _reseeded(graphdef, params, rest, key):
    """`rest` (the RNG streams) with the dropout stream reseeded by `key` for this step."""
    model = nnx.merge(graphdef, _fresh(params), _fresh(rest))
    nnx.reseed(model, dropout=key)
    return nnx.split(model, nnx.Param, ...)[2]


def split_model(model: nnx.Module):
    """`(graphdef, params, rest)`: the static structure, the trained parameters and the
    other state (RNG streams)."""
    return nnx.split(model, nnx.Param, ...)


def init_train_state(model: nnx.Module, optimizer: optax.GradientTransformation, *, seed: int,
                     mesh: jax.sharding.Mesh) -> tuple[TrainState, TrainState]:
    """`(state, shardings)`: the initial train state laid out over `mesh`."""
    _, params, _ = split_model(model)
    abstract = jax.eval_shape(lambda p: TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p),
                                                   jax.random.PRNGKey(0)), params)
    shardings = state_shardings(abstract, optimizer, logical_axes(model), mesh)
    init = jax.jit(lambda p, k: TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p), k),
                   out_shardings=shardings)
    return init(params, jax.random.PRNGKey(seed)), shardings


LossFn = Callable[[nnx.Module, Mapping[str, Array]], tuple[Array, Mapping[str, Array]]]


def make_train_step(graphdef, rest, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, *, shardings: TrainState, mesh: jax.sharding.Mesh,
                    compute_dtype: str = "float32", nan_policy: str = "stop"):
    """`train_step(state, batch) -> (state, metrics)`, jit-compiled once with explicit
    shardings and the state donated.

    A non-finite loss or gradient never reaches the parameters: the update is dropped and
    `metrics["finite"]` is 0, so the caller can stop ("stop") or go on ("skip").
    """
    del nan_policy  # both policies drop the update here; the loop decides whether to stop

    def step(state: TrainState, batch):
        step_rest = _reseeded(graphdef, state.params, rest, jax.random.fold_in(state.key, state.step))

        def loss_of(params):
            model = nnx.merge(graphdef, _compute_params(params, compute_dtype), _fresh(step_rest))
            model.train()
            return loss_fn(model, batch)

        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = _global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(state.step + 1, keep(params, state.params),
                               keep(opt_state, state.opt_state), state.key)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=schedule(state.step),
                       finite=finite.astype(jnp.float32))
        return new_state, metrics

    replicated = NamedSharding(mesh, P())
    return jax.jit(step, in_shardings=(shardings, batch_sharding(mesh)),
                   out_shardings=(shardings, replicated), donate_argnums=0)


def make_eval_step(graphdef, rest, loss_fn: LossFn, *, shardings: TrainState,
                   mesh: jax.sharding.Mesh, compute_dtype: str = "float32"):
    """`eval_step(params, batch) -> metrics` (eval mode: no dropout)."""
    def step(params, batch):
        model = nnx.merge(graphdef, _compute_params(params, compute_dtype), _fresh(rest))
        model.eval()
        loss, metrics = loss_fn(model, batch)
        return dict(metrics, loss=loss)

    return jax.jit(step, in_shardings=(shardings.params, batch_sharding(mesh)),
                   out_shardings=NamedSharding(mesh, P()))


# ----------------------------------------------------------------------------- distributed

DISTRIBUTED_ENV = ("FASTWEIGHTS_COORDINATOR", "FASTWEIGHTS_NUM_PROCESSES", "FASTWEIGHTS_PROCESS_ID")
JAX_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """`jax.distributed.initialize` from arguments, else the environment (`DISTRIBUTED_ENV`,
    or JAX's own `JAX_ENV` names); with neither, a single process (returns False). On CPU
    the cross-process collectives use gloo."""
    def env(i: int) -> str | None:
        return os.environ.get(DISTRIBUTED_ENV[i]) or os.environ.get(JAX_ENV[i])

    coordinator = coordinator or env(0)
    if num_processes is None and env(1):
        num_processes = int(env(1))
    if process_id is None and env(2):
        process_id = int(env(2))
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        return False
    if not all(given):
        raise ValueError("multi-process runs need all of coordinator address, number of processes "
                         f"and process id (flags, or {', '.join(DISTRIBUTED_ENV)}, or {', '.join(JAX_ENV)})")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def log(message: str) -> None:
    """A message from process 0 only (every process runs the same loop)."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def to_host(metrics: Mapping[str, Array]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def config_to_dict(config: Any) -> Any:
    """A JSON-ready dict of a (nested) frozen dataclass config."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (tuple, list)):
        return [config_to_dict(c) for c in config]
    return config


def write_run_info(run_dir: str | Path, **info: Any) -> None:
    """`run.json`: how the run was asked for (task, preset, overrides), for result tables."""
    if jax.process_index() == 0:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "run.json").write_text(json.dumps(info, indent=1))


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best if mode == "min" else value > best




# ----------------------------------------------------------------------------- the loop

class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient was NaN or Inf (`nan_policy="stop"`)."""


class RunDirectoryError(ValueError):
    """A fresh run (no resume) was pointed at a directory that holds checkpoints."""


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


def train(experiment, run_dir: str | Path, *, resume: bool = True) -> dict[str, Any]:
    """Trains `experiment` (an `fastweights.experiment.Experiment`), writing checkpoints,
    metrics and a learning-curve plot under `run_dir`; resumes from the newest readable
    checkpoint there. Returns the last train metrics, the best validation metric and its
    step, the test metrics of the best checkpoint, and the final `TrainState`."""
    from fastweights import metrics as run_metrics
    from fastweights.checkpoints import CheckpointStore, abstract_like
    from fastweights.nn import presets
    from fastweights.tasks import get_task

    task = get_task(experiment.task)
    cfg, opt_cfg = experiment.train, experiment.optimizer
    validate(opt_cfg, cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(cfg.mesh)
    model_config = task.model_config(experiment.data, experiment.model)
    model = presets.build(model_config, rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1))
    graphdef, _, rest = split_model(model)
    optimizer = make_optimizer(opt_cfg, cfg.steps)
    schedule = learning_rate_schedule(opt_cfg, cfg.steps)
    state, shardings = init_train_state(model, optimizer, seed=cfg.seed, mesh=mesh)
    del model
    kw = dict(shardings=shardings, mesh=mesh, compute_dtype=cfg.compute_dtype)
    train_step = make_train_step(graphdef, rest, task.loss, optimizer, schedule, nan_policy=cfg.nan_policy, **kw)
    eval_step = make_eval_step(graphdef, rest, task.loss, **kw)

    process, processes = jax.process_index(), jax.process_count()
    data = task.dataset(experiment.data, "train", process_index=process, process_count=processes)
    store = CheckpointStore(run_dir / "checkpoints", keep=cfg.keep_checkpoints, async_save=cfg.async_checkpoints)
    config_json = config_to_dict(experiment)
    best, best_step = None, None
    if not resume and store.latest.all_steps():
        raise RunDirectoryError(f"{run_dir} already has checkpoints (steps {list(store.latest.all_steps())}); "
                         "resume from them or choose a new run directory")
    restored = store.restore_latest(abstract_like(state, shardings)) if resume else None
    if restored is not None:
        step, state, meta = restored
        data.set_state(meta["data"])
        best, best_step = meta.get("best"), meta.get("best_step")
        log(f"resumed from step {step} in {run_dir / 'checkpoints'}")
    start = int(np.asarray(state.step))
    meta = lambda: {"data": data.get_state(), "best": best, "best_step": best_step,  # noqa: E731
                    "config": config_json}

    writer = run_metrics.MetricsWriter(run_dir, tensorboard=cfg.tensorboard, enabled=process == 0)
    bar = run_metrics.ProgressBar(cfg.steps, initial_step=start, enabled=cfg.progress and process == 0)
    tokens = task.tokens_per_batch(experiment.data)
    last: dict[str, float] = {}
    try:
        for step in range(start + 1, cfg.steps + 1):
            state, step_metrics = train_step(state, global_batch(next(data), mesh))
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
                scores = evaluate(eval_step, state.params, task, experiment.data, mesh)
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
            test = evaluate(eval_step, params, task, experiment.data, mesh, split="test")
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
                                         keys=keys, title=f"{experiment.task}: {run_dir.name}")
    return {"last": last, "best": best, "best_step": best_step, "test": test, "run_dir": str(run_dir),
            "state": state}
