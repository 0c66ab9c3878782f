"""The task protocol: what `training.train` needs from a task, in three parts.

(a) `Task`: batches without carried state (the algorithmic tasks, associative recall). Each
    batch holds whole sequences; `loss(model, batch) -> (loss, metrics)`.
(b) `CarriedStateTask`: batches whose model state carries on into the next batch of the same
    streams (language modelling with full context). The loop keeps that state, the *carry*,
    beside the train state: it goes into and out of the compiled step, no gradient crosses
    from a batch into the one before (`jax.lax.stop_gradient` at the boundary), it starts
    afresh on a batch that begins an epoch (the data say so with `EPOCH_START`), and it is
    saved in every checkpoint, so that a resumed run continues bit for bit.
(c) `EvaluatingTask`: evaluations that are not a mean over batches (an LM's sliding-window
    perplexity, whole-split perplexity with the state carried): the loop calls
    `task.evaluate(evaluator, data, split)` instead of its batch-weighted mean.

The protocols are structural (`isinstance` checks the members; a task need not import
this module). `data` is always the task's own frozen data config: the loop passes it on
unread. A batch is one process's rows of a global batch, NumPy arrays `[b, ...]`; in the
compiled step the loss sees the global batch `[B, ...]`, split over the mesh's `data` axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
from flax import nnx

from fastweights.training.sharding import global_batch
from fastweights.training.steps import to_host

Array = jax.Array
Batch = Mapping[str, np.ndarray]        # one process's rows, each array [b, ...]
Metrics = Mapping[str, Array]           # scalars
# A pytree whose every leaf is a scalar (replicated) or has the global batch as its leading
# axis (split over `data`), e.g. the `ModelState` of `model.init_state(batch_size)`.
Carry = Any

# A carried-state task's batches have this key: `[b]`, the same in every row, nonzero on the
# first batch of an epoch (every stream starts anew there).
EPOCH_START = "epoch_start"


def starts_epoch(batch: Batch) -> bool:
    """Whether the carry restarts at `batch` (its `EPOCH_START` rows are set)."""
    return EPOCH_START in batch and bool(np.any(batch[EPOCH_START]))


@runtime_checkable
class DataIterator(Protocol):
    """A split's batches, resumable: `get_state()` (JSON) goes into every checkpoint and
    `set_state(state)` continues with exactly the batches that followed it."""

    def __next__(self) -> Batch: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


@runtime_checkable
class Task(Protocol):
    """(a) A task whose batches are independent of one another."""

    name: str

    def dataset(self, data: Any, split: str, *, process_index: int = 0,
                process_count: int = 1) -> Iterator[Batch]:
        """This process's rows of each global batch of `split`: "train" is an endless
        `DataIterator`, "valid" and "test" are finite. The processes together see exactly
        the batches of one process. A `weight` key `[b]` (0 for padding rows) weights the
        rows in the loop's evaluation mean."""
        ...

    def loss(self, model: nnx.Module, batch: Mapping[str, Array]) -> tuple[Array, Metrics]:
        """`(loss, metrics)` of a global batch, all scalars (jit-traceable; `model` is in
        train or eval mode)."""
        ...

    def tokens_per_batch(self, data: Any) -> int:
        """Input tokens in one global batch (for the progress bar's tokens/s)."""
        ...


@runtime_checkable
class CarriedStateTask(Task, Protocol):
    """(b) A task whose batches continue the streams of the previous batch.

    Its train batches carry `EPOCH_START`; `loss` takes and returns the carry."""

    def init_carry(self, model: nnx.Module, data: Any, split: str) -> Carry:
        """The carry at the start of an epoch of `split`, for its global batch: typically
        `model.init_state(batch size of split)` (evaluation batches may be smaller than
        training ones)."""
        ...

    def loss(self, model: nnx.Module, batch: Mapping[str, Array],
             carry: Carry) -> tuple[Array, Metrics, Carry]:
        """`(loss, metrics, carry)`: as `Task.loss`, continuing from `carry` (what the
        previous batch of the same streams left, without its gradient); the returned carry,
        of the same structure, shapes and dtypes, goes to the next batch."""
        ...


@runtime_checkable
class EvaluatingTask(Task, Protocol):
    """(c) A task that computes its evaluation metrics itself."""

    def evaluate(self, evaluator: Evaluator, data: Any, split: str) -> Mapping[str, float]:
        """Metrics of `split` with the current parameters: the task reads its own batches
        (e.g. overlapping windows), runs each through `evaluator` and combines the results
        (e.g. total negative log-likelihood / tokens -> perplexity). The loop logs them and
        selects the best checkpoint by `TrainConfig.best_metric` among them."""
        ...


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """The current parameters, compiled for evaluation (eval mode: no dropout): what the
    loop hands `EvaluatingTask.evaluate`.

    `evaluator(batch)` gives the metrics (Python floats, over the global batch) of one of
    this process's batches; for a carried-state task `evaluator(batch, carry)` gives
    `(metrics, carry)`, starting from `init_carry()` (a fresh carry of `split`) when
    `carry` is None or the batch begins an epoch.
    """
    step: Callable                    # the compiled eval step of `steps.make_eval_step`
    params: Any
    mesh: jax.sharding.Mesh
    carry_init: Callable[[Any, str], Carry] | None = None     # (params, split) -> a fresh carry
    split: str = "valid"

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    def init_carry(self) -> Carry:
        return self.carry_init(self.params, self.split)

    def __call__(self, batch: Batch, carry: Carry = None):
        inputs = global_batch(batch, self.mesh)
        if self.carry_init is None:
            return to_host(self.step(self.params, inputs))
        if carry is None or starts_epoch(batch):
            carry = self.init_carry()
        metrics, carry = self.step(self.params, inputs, carry)
        return to_host(metrics), carry
