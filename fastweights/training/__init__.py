"""The training system every experiment uses (importable from a notebook).

    state = init_train_state(model, optimizer, seed=0, mesh=mesh)
    train_step = make_train_step(graphdef, task.loss, optimizer, mesh=mesh, ...)
    state, metrics = train_step(state, batch)          # compiled once, state donated

`train(experiment)` runs the whole loop: data, sharding over a `(data, model)` mesh,
asynchronous orbax checkpoints with the data-iterator state, exact resume, evaluation with
best-checkpoint selection, NaN/Inf handling, metrics (JSONL, TensorBoard, progress bar, PNG).

One concern per module: `config` (OptimizerConfig, TrainConfig, validate), `optim`
(schedules, the optimizer), `sharding` (mesh, parameter and batch layouts), `steps`
(TrainState, the compiled steps), `distributed` (multi-process set-up), `run_dir` (what a
run directory records) and `loop` (`train`, `evaluate`).
"""

from fastweights.training.config import (
    COMPUTE_DTYPES,
    NAN_POLICIES,
    SCHEDULES,
    OptimizerConfig,
    TrainConfig,
    validate,
)
from fastweights.training.distributed import DISTRIBUTED_ENV, JAX_ENV, initialize_distributed, log
from fastweights.training.loop import NonFiniteLossError, evaluate, is_better, to_host, train
from fastweights.training.optim import learning_rate_schedule, make_optimizer
from fastweights.training.run_dir import RunDirectoryError, config_to_dict, write_run_info
from fastweights.training.sharding import (
    MESH_AXES,
    SHARDING_RULES,
    batch_sharding,
    global_batch,
    make_mesh,
    param_specs,
)
from fastweights.training.steps import (
    LossFn,
    TrainState,
    init_train_state,
    make_eval_step,
    make_train_step,
    split_model,
    state_shardings,
)

__all__ = [
    "COMPUTE_DTYPES", "DISTRIBUTED_ENV", "JAX_ENV", "MESH_AXES", "NAN_POLICIES", "SCHEDULES",
    "SHARDING_RULES", "LossFn", "NonFiniteLossError", "OptimizerConfig", "RunDirectoryError",
    "TrainConfig", "TrainState", "batch_sharding", "config_to_dict", "evaluate", "global_batch",
    "init_train_state", "initialize_distributed", "is_better", "learning_rate_schedule", "log",
    "make_eval_step", "make_mesh", "make_optimizer", "make_train_step", "param_specs",
    "split_model", "state_shardings", "to_host", "train", "validate", "write_run_info",
]
