"""Associative recall: store key-value pairs, then retrieve the value of a queried key.

A sequence is `k1 v1 k2 v2 ... kn vn SEP q` (length `T = 2n + 2`): `n` distinct keys, each
followed by its value (values may repeat), then a separator and a query `q`, one of the
stored keys. The target is the value stored under `q`, predicted from the logits at the
final position (`SequenceModel.classify` semantics; every sequence has the same length,
so that is `logits[:, -1]`); the loss is the cross-entropy there, the metric the accuracy.

Token ids: one input vocabulary with keys `[0, K)`, values `[K, K + V)` and SEP `K + V`
(`input_vocab = K + V + 1`); the output classes are the `V` values (class `c` is token `K + c`).

Determinism and sharding: global batch `i` of a split is a pure function of
`(seed, split, i)`, drawn with `np.random.default_rng([seed, split_id, i])`; process `p` of
`P` yields rows `[p * B / P, (p + 1) * B / P)` of it, so P processes together see exactly
the data of one. Each process draws the whole global batch and keeps its rows: the draw is
vectorised and tiny next to a training step, and it makes the union property hold by
construction.

The pipeline is grain: `grain.MapDataset.range(num_batches).map(draw batch i, keep this
process's rows)` turned into an `IterDataset`. Each element is already a batch (no `.batch`:
per-example draws would be a Python loop per row, slower than one vectorised draw per batch).
grain's iterator has `get_state() -> {"next_index": i}` (plain JSON) and `set_state`, and
since element `i` depends only on `i`, restoring a state continues with exactly the batches
the saved iterator would have produced. No reader threads (`num_threads=0`): the data are
computed in memory, where threads only contend for the GIL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fastweights.nn.config import SequenceConfig

SPLITS = {"train": 0, "valid": 1, "test": 2}
# The train stream has no end; grain needs a length, and this one is never reached.
_TRAIN_BATCHES = 2**62


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Associative-recall data.

    Attributes:
      num_pairs: key-value pairs per sequence (`n`; sequence length `2n + 2`).
      num_keys: key vocabulary size `K` (>= num_pairs: keys are distinct in a sequence).
      num_values: value vocabulary size `V` (the number of output classes).
      batch_size: the GLOBAL batch size, all processes together.
      seed: of every split's stream (>= 0).
      eval_batches: number of fixed batches of "valid" and of "test".
    """
    num_pairs: int = 8
    num_keys: int = 16
    num_values: int = 16
    batch_size: int = 64
    seed: int = 0
    eval_batches: int = 4

    def __post_init__(self):
        for name in ("num_pairs", "num_keys", "batch_size", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_values < 2:
            raise ValueError(f"num_values must be >= 2, got {self.num_values}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_pairs > self.num_keys:
            raise ValueError(f"num_pairs ({self.num_pairs}) > num_keys ({self.num_keys}): the keys "
                             "of a sequence are distinct")

    @property
    def seq_len(self) -> int:
        return 2 * self.num_pairs + 2

    @property
    def sep(self) -> int:
        """The separator's token id."""
        return self.num_keys + self.num_values

    @property
    def input_vocab(self) -> int:
        return self.num_keys + self.num_values + 1


def global_batch(data: DataConfig, split: str, index: int) -> dict[str, np.ndarray]:
    """Global batch `index` of `split`: `{"inputs": [B, T] int32, "targets": [B] int32}`."""
    rng = np.random.default_rng([data.seed, _split_id(split), index])
    b, n = data.batch_size, data.num_pairs
    # n distinct keys per row: the first n of a random permutation of the K keys.
    keys = np.argsort(rng.random((b, data.num_keys)), axis=1)[:, :n]
    values = rng.integers(0, data.num_values, size=(b, n))
    query = rng.integers(0, n, size=b)
    rows = np.arange(b)
    inputs = np.empty((b, data.seq_len), np.int32)
    inputs[:, 0:2 * n:2] = keys
    inputs[:, 1:2 * n:2] = data.num_keys + values
    inputs[:, -2] = data.sep
    inputs[:, -1] = keys[rows, query]
    return {"inputs": inputs, "targets": values[rows, query].astype(np.int32)}


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return SPLITS[split]


class _ShardBatch:
    """grain map: batch index -> this process's rows of that global batch (picklable)."""

    def __init__(self, data: DataConfig, split: str, start: int, stop: int):
        self.data, self.split, self.start, self.stop = data, split, start, stop

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        batch = global_batch(self.data, self.split, int(index))
        return {k: v[self.start:self.stop] for k, v in batch.items()}


class AssociativeRecall:
    """The task object (`TASK` below): a `fastweights.training.Task` without carried state."""

    name = "associative_recall"
    DataConfig = DataConfig
    ModelConfig = SequenceConfig

    def model_config(self, data: DataConfig, model: SequenceConfig, *, prepare: bool = True) -> SequenceConfig:
        """`model` with `input_vocab = K + V + 1`, `output_size = V` and `head = "final"`
        (known from `data` alone: `prepare` changes nothing)."""
        if not isinstance(model, SequenceConfig):
            raise TypeError(f"associative recall needs a SequenceConfig, got {type(model).__name__}")
        return dataclasses.replace(model, input_vocab=data.input_vocab, output_size=data.num_values,
                                   head="final")

    def dataset(self, data: DataConfig, split: str, *, process_index: int = 0,
                process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Iterator of this process's batches `{"inputs": [b, T] int32, "targets": [b] int32}`,
        `b = batch_size / process_count`: endless for "train", `eval_batches` fixed batches for
        "valid" and "test". It has `get_state() -> {"next_index": int}` and `set_state`."""
        _split_id(split)
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"need 0 <= process_index < process_count, got {process_index} of {process_count}")
        if data.batch_size % process_count:
            raise ValueError(f"batch_size {data.batch_size} is not divisible by the "
                             f"{process_count} processes")
        b = data.batch_size // process_count
        count = _TRAIN_BATCHES if split == "train" else data.eval_batches
        ds = grain.MapDataset.range(count).map(
            _ShardBatch(data, split, process_index * b, (process_index + 1) * b))
        return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))

    def loss(self, model, batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean cross-entropy at the query position and `{"loss", "accuracy"}` (scalars, float32).

        `model` is a `SequenceModel` (train or eval mode); jit-traceable."""
        logits, _ = model(batch["inputs"])
        logits = logits[:, -1].astype(jnp.float32)                     # [b, V]
        targets = jnp.asarray(batch["targets"], jnp.int32)             # [b]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
        accuracy = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32).mean()
        return loss, {"loss": loss, "accuracy": accuracy}

    def tokens_per_batch(self, data: DataConfig) -> int:
        """Input tokens in one global batch (`B * T`)."""
        return data.batch_size * data.seq_len


TASK = AssociativeRecall()
