"""The training system every experiment uses (importable from a notebook).

`train(task, model, run_dir, data=..., optimizer=..., config=...)` runs the whole loop:
data, sharding over a `(data, model)` mesh, asynchronous orbax checkpoints with the
data-iterator state, exact resume, evaluation with best-checkpoint selection, NaN/Inf
handling, metrics (JSONL, TensorBoard, progress bar, PNG). It is written against the task
protocol (`Task`, `CarriedStateTask`, `EvaluatingTask`; `training.task`) and handed the
model or a factory of it; `fastweights.presets.run` does this for the named experiments.

The pieces work without the loop (an RL learner reuses them): a mesh, an optimizer, the
train state laid out over the mesh, and one compiled step.

    >>> import numpy as np, optax
    >>> from flax import nnx
    >>> from fastweights import nn, training
    >>> model = nn.SequenceModel(nn.SequenceConfig(input_vocab=8, output_size=8, model_dim=16, num_layers=1,
    ...                                            num_heads=2, head_dim=8, ff_dim=16), rngs=nnx.Rngs(0))
    >>> def loss_fn(model, batch):                     # a Task.loss
    ...     logits, _ = model(batch["inputs"])
    ...     loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
    ...     return loss, {}
    >>> mesh = training.make_mesh()                    # (data, model) over every device
    >>> config = training.OptimizerConfig(learning_rate=1e-3)
    >>> optimizer = training.make_optimizer(config, total_steps=10)
    >>> state, shardings = training.init_train_state(model, optimizer, seed=0, mesh=mesh)
    >>> graphdef, _, rest = training.split_model(model)
    >>> train_step = training.make_train_step(graphdef, rest, loss_fn, optimizer,
    ...                                       training.learning_rate_schedule(config, 10),
    ...                                       shardings=shardings, mesh=mesh)
    >>> batch = {"inputs": np.ones((8, 5), np.int32), "targets": np.zeros((8, 5), np.int32)}
    >>> state, metrics = train_step(state, training.global_batch(batch, mesh))   # state donated
    >>> int(state.step), sorted(metrics)
    (1, ['finite', 'grad_norm', 'learning_rate', 'loss'])

One concern per module: `config` (OptimizerConfig, TrainConfig, validate), `optim`
(schedules, the optimizer), `sharding` (mesh, parameter, batch and carry layouts), `steps`
(TrainState, the compiled steps), `task` (the task protocol), `distributed` (multi-process
set-up), `run_dir` (what a run directory records) and `loop` (`train`, `evaluate`).
"""

from fastweights.training.config import (
    COMPUTE_DTYPES,
    NAN_POLICIES,
    OPTIMIZERS,
    SCHEDULES,
    OptimizerConfig,
    TrainConfig,
    validate,
)
from fastweights.training.distributed import (
    DISTRIBUTED_ENV,
    JAX_ENV,
    add_distributed_arguments,
    initialize_distributed,
    log,
)
from fastweights.training.loop import NonFiniteLossError, evaluate, is_better, mean_over_batches, train
from fastweights.training.optim import learning_rate_schedule, make_optimizer
from fastweights.training.run_dir import RunDirectoryError, config_to_dict, write_run_info
from fastweights.training.sharding import (
    MESH_AXES,
    SHARDING_RULES,
    batch_sharding,
    carry_shardings,
    global_batch,
    make_mesh,
    param_specs,
)
from fastweights.training.steps import (
    LossFn,
    TrainState,
    init_train_state,
    make_carry_init,
    make_eval_step,
    make_train_step,
    split_model,
    state_shardings,
    to_host,
)
from fastweights.training.task import (
    EPOCH_START,
    CarriedStateTask,
    DataIterator,
    EvaluatingTask,
    Evaluator,
    Task,
    starts_epoch,
)

__all__ = [
    "COMPUTE_DTYPES", "DISTRIBUTED_ENV", "EPOCH_START", "JAX_ENV", "MESH_AXES", "NAN_POLICIES",
    "OPTIMIZERS", "SCHEDULES", "SHARDING_RULES", "CarriedStateTask", "DataIterator", "EvaluatingTask",
    "Evaluator", "LossFn", "NonFiniteLossError", "OptimizerConfig", "RunDirectoryError", "Task",
    "TrainConfig", "TrainState", "add_distributed_arguments", "batch_sharding", "carry_shardings",
    "config_to_dict", "evaluate", "global_batch", "init_train_state", "initialize_distributed", "is_better",
    "learning_rate_schedule", "log", "make_carry_init", "make_eval_step", "make_mesh",
    "make_optimizer", "make_train_step", "mean_over_batches", "param_specs", "split_model",
    "starts_epoch", "state_shardings", "to_host", "train", "validate", "write_run_info",
]
