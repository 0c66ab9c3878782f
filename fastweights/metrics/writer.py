"""The run log: `MetricsWriter` appends one JSON object per `write` to `run_dir/metrics.jsonl`
and writes TensorBoard scalars (through `tensorboardX`, no TensorFlow) to
`run_dir/tensorboard/`; `read_jsonl` / `losses_by_step` load the log back. A resumed run
appends to the same file and replays some steps; `losses_by_step` keeps the last record of
each step.

JSONL encoding of non-finite numbers: strict JSON has no NaN/Infinity, so they are written as
the strings ``"nan"``, ``"inf"`` and ``"-inf"``; `read_jsonl` turns those strings back into
floats (plain `json.loads` reads them as strings, and `float(s)` converts them).
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

JSONL_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "split", "time")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}



def _encode_value(name: str, value: Any) -> Any:
    """A metric value as a JSON value: ints stay ints, numbers become floats, NaN/Inf strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        x = float(value)  # Python/numpy scalars and 0-d (jax) arrays
    except (TypeError, ValueError) as err:
        raise TypeError(f"metric {name!r}: expected a number or string, got {type(value).__name__}"
                        f" {value!r}") from err
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _drop_partial_last_line(path: Path) -> None:
    """Truncate a trailing line without newline (a write cut off by a kill) before appending."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Search backwards for the last complete line; metrics logs are small, 64 KiB chunks.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            cut = f.read(end - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        f.seek(keep)
        dropped = f.read().decode("utf-8", "replace")
        f.truncate(keep)
    warnings.warn(f"{path}: dropped an incomplete last line before appending: {dropped[:80]!r}",
                  stacklevel=3)


class MetricsWriter:
    """Appends metrics to `run_dir/metrics.jsonl` and TensorBoard event files.

    `enabled=False` (non-zero processes of a multi-host run) makes every method a no-op and
    creates no files. Each `write` is flushed to the JSONL file at once, so a killed run keeps
    every complete line; TensorBoard events are flushed every few seconds and on `flush`/`close`.
    A resumed run opens the same `run_dir` and appends (replayed steps get new lines; use
    `losses_by_step`). TensorBoard gets a new event file that hides the earlier files' events
    at steps >= `purge_step`, by default the first step written when the log already existed.
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = True,
                 enabled: bool = True, purge_step: int | None = None,
                 tensorboard_flush_secs: float = 10.0):
        self.run_dir = Path(run_dir)
        self.jsonl_path = self.run_dir / JSONL_NAME
        self.tensorboard_dir = self.run_dir / TENSORBOARD_DIR
        self.enabled = enabled
        self._file: TextIO | None = None
        self._tb = None
        self._tb_factory = None
        self._purge_step = purge_step
        self._closed = False
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.jsonl_path.exists():
            _drop_partial_last_line(self.jsonl_path)
        self._resumed = self.jsonl_path.exists() and self.jsonl_path.stat().st_size > 0
        self._file = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        if tensorboard:
            # Imported here so that `import fastweights.metrics` stays cheap and JSONL-only
            # users do not need tensorboardX; imported now so a missing package fails early.
            from tensorboardX import SummaryWriter

            self._tb_factory = SummaryWriter
            self._tb_flush_secs = tensorboard_flush_secs

    def _tensorboard(self, first_step: int):
        """The event writer, made at the first write (so its purge step can be that step)."""
        if self._tb is None and self._tb_factory is not None:
            purge = self._purge_step
            if purge is None and self._resumed:
                # A resumed run's first step is where it starts replaying: TensorBoard then
                # hides the interrupted run's events from there on (a SessionLog START event).
                purge = first_step
            # tensorboardX names files by the second and opens them with "wb": a sequence
            # suffix keeps a quick restart from clobbering the previous file, and keeps the
            # files' sorted order (the order TensorBoard reads them) equal to creation order.
            seq = len(list(self.tensorboard_dir.glob("events.out.tfevents.*")))
            self._tb = self._tb_factory(str(self.tensorboard_dir), purge_step=purge,
                                        flush_secs=self._tb_flush_secs,
                                        filename_suffix=f".{seq:04d}")
        return self._tb

    def write(self, step: int, metrics: Mapping[str, Any], *, split: str = "train") -> None:
        """Record `metrics` at `step`: one JSONL line, and scalars `f"{split}/{name}"`."""
        if not self.enabled:
            return
        if self._closed:
            raise RuntimeError(f"MetricsWriter({self.run_dir}) is closed")
        try:
            step = operator.index(step)  # ints, numpy ints, 0-d integer arrays; not floats
        except TypeError:
            raise TypeError(f"step must be an integer, got {step!r}") from None
        clash = [k for k in metrics if k in _RESERVED]
        if clash:
            raise ValueError(f"metric names {clash} clash with the record fields {_RESERVED}")
        encoded = {str(k): _encode_value(str(k), v) for k, v in metrics.items()}
        wall = time.time()
        record = {"step": step, "split": split, "time": wall, **encoded}
        # allow_nan=False: the file stays strict JSON (non-finite values are strings by now).
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._tb_factory is not None:
            tb = self._tensorboard(step)
            for name, value in encoded.items():
                if isinstance(value, str):
                    if value not in _NONFINITE:
                        continue  # text metrics go to the JSONL only
                    value = _NONFINITE[value]
                tb.add_scalar(f"{split}/{name}", float(value), step, walltime=wall)

    def flush(self) -> None:
        """Flush the JSONL file and the TensorBoard event file."""
        if not self.enabled or self._closed:
            return
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close; calling it again does nothing."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        try:
            if self._tb is not None:
                self._tb.close()
        finally:
            self._file.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(obj: dict) -> dict:
    return {k: _NONFINITE.get(v, v) if isinstance(v, str) and k not in _RESERVED else v
            for k, v in obj.items()}


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Load a metrics log: one dict per line, in file order, with NaN/Inf decoded to floats.

    Pass `run_dir/metrics.jsonl` (or the run folder itself). A last line cut off by a kill is
    skipped with a warning; any other malformed line raises ValueError naming file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / JSONL_NAME
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        except ValueError as err:
            if i == len(lines) - 1:  # no newline after it: a write interrupted by a kill
                warnings.warn(f"{path}:{i + 1}: skipped an incomplete last line", stacklevel=2)
                continue
            raise ValueError(f"{path}:{i + 1}: malformed metrics line: {err}") from None
        records.append(_decode(obj))
    return records


def losses_by_step(records: Iterable[Mapping], split: str = "train",
                   key: str = "loss") -> dict[int, float]:
    """`{step: value}` of `key` for records of `split`, sorted by step; the last record of a
    step wins, so steps replayed after a resume replace those of the interrupted run."""
    out: dict[int, float] = {}
    for r in records:
        if r.get("split") == split and key in r:
            out[int(r["step"])] = float(r[key])
    return dict(sorted(out.items()))
