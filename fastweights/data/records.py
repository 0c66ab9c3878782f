"""Materialised datasets: examples written once to an array_record file, read back through
grain in fixed-shape batches with deterministic per-epoch shuffling, process sharding and a
checkpointable iterator state.

An example is a dict of 1-D integer arrays (e.g. `inputs`, `targets`) plus scalars; it is
stored with msgpack. Batches are padded to fixed lengths (one compilation per shape) and
carry `weight` (1 for a real example, 0 for the padding rows of a last evaluation batch).

Global batch `i` of epoch `e` is the slice `[i B, (i+1) B)` of a permutation drawn from
`(seed, e)`; process `p` of `P` takes rows `[p B/P, (p+1) B/P)` of it, so the processes
together see exactly the batches of a single process. The iterator is grain's, over the
batch index, so its state is `{"next_index": n}` (JSON) and restoring it continues exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from flax import serialization

Example = Mapping[str, Any]


def write(path: str | os.PathLike, examples: Iterable[Example]) -> int:
    """Writes `examples` to an array_record file (atomically: a temporary file renamed when
    complete) and returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    writer = ArrayRecordWriter(str(tmp), "group_size:1")
    count = 0
    try:
        for example in examples:
            writer.write(serialization.msgpack_serialize({k: np.asarray(v) for k, v in example.items()}))
            count += 1
    finally:
        writer.close()
    tmp.replace(path)
    return count


class Records:
    """Random access to a written file: `len`, `records[i] -> dict of arrays`."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no materialised dataset at {path}")
        self.path = path
        self.source = grain.sources.ArrayRecordDataSource([str(path)])

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return serialization.msgpack_restore(self.source[int(index)])

    def max_lengths(self, keys: Iterable[str]) -> dict[str, int]:
        """The longest array of each key over the file (the padded batch shape)."""
        longest = {k: 0 for k in keys}
        for i in range(len(self)):
            example = self[i]
            for k in longest:
                longest[k] = max(longest[k], int(np.asarray(example[k]).shape[0]))
        return longest


def _pad(arrays: list[np.ndarray], length: int, value: int) -> np.ndarray:
    out = np.full((len(arrays), length), value, np.int32)
    for row, a in enumerate(arrays):
        if a.shape[0] > length:
            raise ValueError(f"example of length {a.shape[0]} exceeds the padded length {length}")
        out[row, :a.shape[0]] = a
    return out


class _Batch:
    """Global batch index -> this process's rows, padded (a picklable grain map function)."""

    def __init__(self, records: Records, *, batch_size: int, shuffle: bool, seed: int,
                 pad: Mapping[str, tuple[int, int]], rows: tuple[int, int]):
        self.records, self.batch_size, self.shuffle, self.seed = records, batch_size, shuffle, seed
        self.pad, self.rows = dict(pad), rows
        self.per_epoch = max(len(records) // batch_size, 1) if shuffle else -(-len(records) // batch_size)
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            n = len(self.records)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order = (epoch, perm)
        return self._order[1]

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        epoch, within = divmod(int(index), self.per_epoch)
        order = self.order(epoch)
        start = within * self.batch_size + self.rows[0]
        ids = [int(order[i]) if i < len(order) else -1
               for i in range(start, start + self.rows[1] - self.rows[0])]
        examples = [self.records[i] if i >= 0 else None for i in ids]
        real = [e for e in examples if e is not None]
        template = real[0] if real else self.records[0]
        batch = {}
        for key, (length, value) in self.pad.items():
            batch[key] = _pad([np.asarray(e[key] if e is not None else template[key][:0]) for e in examples],
                              length, value)
        for key in template:
            if key not in self.pad:
                batch[key] = np.asarray([e[key] if e is not None else np.zeros_like(template[key])
                                         for e in examples])
        batch["weight"] = np.asarray([e is not None for e in examples], np.float32)
        return batch


def batches(records: Records, *, batch_size: int, pad: Mapping[str, tuple[int, int]],
            train: bool, seed: int = 0, process_index: int = 0, process_count: int = 1,
            num_epochs: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """This process's batches: endless and reshuffled every epoch for `train` (`num_epochs`
    None), else one ordered pass whose last batch is padded with `weight = 0` rows.

    `pad` maps each sequence key to `(padded length, pad value)`. The iterator has
    `get_state()` / `set_state()`.
    """
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} is not in [0, {process_count})")
    if train and len(records) < batch_size:
        raise ValueError(f"{records.path} has {len(records)} examples, fewer than one batch of {batch_size}")
    local = batch_size // process_count
    fn = _Batch(records, batch_size=batch_size, shuffle=train, seed=seed, pad=pad,
                rows=(process_index * local, (process_index + 1) * local))
    epochs = num_epochs if num_epochs is not None else (10 ** 6 if train else 1)
    ds = grain.MapDataset.range(fn.per_epoch * epochs).map(fn)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
