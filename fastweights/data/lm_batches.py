"""Ordered language-model batches: the official `LMOrderedIterator` (PAPER_SPEC 6), resumable
and sharded over processes.

The stream is trimmed to a multiple of the batch size B, `n = len(tokens) // B`, and cut into
B contiguous columns (row j of `columns` [B, n] is `tokens[j n : (j+1) n]`), so row j of
consecutive batches continues one text. Batch k of an epoch starts at `i = k tgt_len`:
inputs `columns[:, i : i+L]`, targets `columns[:, i+1 : i+1+L]`, `L = min(tgt_len, n-1-i)`
(the last batch may be shorter, as official), for every `i < n - 1`.

>>> batches = OrderedBatches(np.arange(22), batch_size=2, tgt_len=4, endless=False)
>>> batches.batches_per_epoch               # n = 11 per row, 10 predictions: 4 + 4 + 2
3
>>> first = next(batches)
>>> first["inputs"].tolist(), first["targets"].tolist()
([[0, 1, 2, 3], [11, 12, 13, 14]], [[1, 2, 3, 4], [12, 13, 14, 15]])
>>> first["epoch_start"].tolist(), first["weight"].tolist()
([1, 1], [4.0, 4.0])
>>> [b["inputs"].shape for b in batches]    # the rest of the epoch, then StopIteration
[(2, 4), (2, 2)]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


class OrderedBatches(Iterator[dict[str, np.ndarray]]):
    """This process's rows of the ordered batches of `tokens` [N] (any int dtype; a memmap
    stays on disk: each batch is a slice, copied to int32).

    Each batch: "inputs", "targets" [b, L] int32; "epoch_start" [b] int32 (1 on an epoch's
    first batch: a recurrent state carried across batches starts again there); "weight" [b]
    float32, L in every row (so a batch-weighted mean of per-token means is the token mean).
    Process p of P reads rows [p b, (p+1) b) with b = B / P.

    `endless=True` (train): the same epoch order forever; `endless=False`: one epoch.
    `get_state()` / `set_state()`: {"epoch", "batch"} of the next batch, JSON-serialisable.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, tgt_len: int, *, endless: bool,
                 process_index: int = 0, process_count: int = 1):
        tokens = np.asarray(tokens)     # a memmap's view: nothing is read
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be a 1-D integer array, got shape {np.shape(tokens)}")
        if batch_size < 1 or tgt_len < 1:
            raise ValueError(f"batch_size and tgt_len must be >= 1, got {batch_size}, {tgt_len}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
        n = len(tokens) // batch_size
        if n < 2:
            raise ValueError(f"{len(tokens)} tokens give {n} per row of a batch of {batch_size}; "
                             f"each row needs at least 2 (an input and its target)")
        rows = batch_size // process_count
        # Views, not copies: with a memmap nothing is read until a batch is sliced.
        self._columns = tokens[:n * batch_size].reshape(batch_size, n)[process_index * rows:(process_index + 1) * rows]
        self._n = n
        self._tgt_len = tgt_len
        self._endless = endless
        self._epoch = 0
        self._batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return -(-(self._n - 1) // self._tgt_len)

    @property
    def epoch(self) -> int:
        """The epoch of the next batch (= epochs completed)."""
        return self._epoch

    def __iter__(self) -> OrderedBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if not self._endless and self._epoch > 0:
            raise StopIteration
        i = self._batch * self._tgt_len
        length = min(self._tgt_len, self._n - 1 - i)
        rows = len(self._columns)
        batch = {
            "inputs": np.array(self._columns[:, i:i + length], dtype=np.int32),
            "targets": np.array(self._columns[:, i + 1:i + 1 + length], dtype=np.int32),
            "epoch_start": np.full((rows,), self._batch == 0, np.int32),
            "weight": np.full((rows,), length, np.float32),
        }
        self._batch += 1
        if self._batch == self.batches_per_epoch:
            self._epoch, self._batch = self._epoch + 1, 0
        return batch

    def get_state(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batch": self._batch}

    def set_state(self, state: Mapping[str, Any]) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch < self.batches_per_epoch:
            raise ValueError(f"state {dict(state)} out of range: {self.batches_per_epoch} batches per epoch")
        self._epoch, self._batch = epoch, batch
