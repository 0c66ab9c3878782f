"""Shared machinery of the tasks whose data are text files in an official format (code
execution, ListOps): generate the files (or read the authors' own), convert each split
once to an array_record file, and serve fixed-shape batches through grain.

The prepared data live in `cache_dir/<task>/<fingerprint>/`, the fingerprint being a hash
of every field that changes the data, so that a changed config never reuses stale files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fastweights.data import records
# DEFAULT_CACHE: where the text tasks' `DataConfig.cache_dir` points unless set; it lives
# with the cache machinery and is re-exported here for the tasks.
from fastweights.data.cache import DEFAULT_CACHE, build_once  # noqa: F401

SPLITS = ("train", "valid", "test")
# Fields that only affect how the data are served, not what they are.
_SERVING_FIELDS = ("batch_size", "shuffle_seed", "cache_dir", "eval_batch_size")


class MaterialisedTask:
    """A task over prepared splits (`fastweights.training.Task`). Subclasses define `name`,
    `DataConfig` (with `data_dir`, `cache_dir`, `batch_size`, `shuffle_seed`),
    `write_text(data, out_dir)`, `read_text(data, text_dir) -> (vocab info dict, {split:
    iterable of examples})`, `pad` (`{key: pad value}`), `model_config` and `loss`."""

    name: str
    pad: Mapping[str, int]

    # -- preparation -------------------------------------------------------------------

    def fingerprint(self, data) -> str:
        fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)
                  if f.name not in _SERVING_FIELDS}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def prepared_dir(self, data) -> Path:
        return Path(data.cache_dir).expanduser() / self.name / self.fingerprint(data)

    def prepare(self, data) -> dict[str, Any]:
        """Makes sure the array_record splits exist; returns the metadata (vocabularies,
        sizes, padded lengths)."""
        # Several processes may prepare the same data: one builds under a lock, the others
        # then read its meta.json (written last: its presence means "complete").
        return build_once(self.prepared_dir(data), lambda out: self._prepare(data, out))

    def _prepare(self, data, out: Path) -> dict[str, Any]:
        text_dir = Path(data.data_dir) if data.data_dir else out / "text"
        if not data.data_dir:
            _log(f"{self.name}: generating the text files in {text_dir}")
            shutil.rmtree(text_dir, ignore_errors=True)    # ours: left by an interrupted run
            self.write_text(data, text_dir)
        vocab, splits = self.read_text(data, text_dir)
        meta: dict[str, Any] = {"vocab": vocab, "sizes": {}, "lengths": {}, "text_dir": str(text_dir)}
        for split, examples in splits.items():
            examples = list(examples)
            meta["sizes"][split] = records.write(out / f"{split}.arrayrecord", examples)
            for key in self.pad:
                longest = max((len(e[key]) for e in examples), default=0)
                meta["lengths"][key] = max(meta["lengths"].get(key, 0), longest)
        _log(f"{self.name}: prepared {meta['sizes']} examples in {out}")
        return meta

    # -- the trainer's interface -----------------------------------------------------------

    def dataset(self, data, split: str, *, process_index: int = 0,
                process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """This process's batches of `split`: endless and reshuffled per epoch for "train",
        one ordered pass for "valid"/"test". Every sequence key is padded to the longest
        example of all splits (one compiled shape)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        meta = self.prepare(data)
        pad = {k: (meta["lengths"][k], v) for k, v in self.pad.items()}
        source = records.Records(self.prepared_dir(data) / f"{split}.arrayrecord")
        return records.batches(source, batch_size=data.batch_size, pad=pad, train=split == "train",
                               seed=data.shuffle_seed, process_index=process_index,
                               process_count=process_count)

    def tokens_per_batch(self, data) -> int:
        return data.batch_size * self.prepare(data)["lengths"]["inputs"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def examples_from_arrays(**arrays: Iterable) -> Iterator[dict[str, np.ndarray]]:
    """Zips per-example arrays into example dicts."""
    keys = list(arrays)
    for values in zip(*arrays.values()):
        yield dict(zip(keys, values))
