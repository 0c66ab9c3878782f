"""Run metrics for the training loop: a JSONL + TensorBoard writer, a terminal progress bar, plots.

- `MetricsWriter` appends one JSON object per `write` to `run_dir/metrics.jsonl` and writes
  TensorBoard scalars (through `tensorboardX`, no TensorFlow) to `run_dir/tensorboard/`.
- `read_jsonl` / `losses_by_step` load the log back; a resumed run appends to the same file
  and replays some steps, and `losses_by_step` keeps the last record of each step.
- `ProgressBar` shows step/total, loss, tokens/s and ETA, redrawn in place on a TTY and as
  rate-limited full lines elsewhere (CI logs, pipes).
- `plot_learning_curves` / `plot_runs` write PNGs with matplotlib's Agg canvas.

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
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "JSONL_NAME", "TENSORBOARD_DIR", "MetricsWriter", "ProgressBar", "format_duration",
    "losses_by_step", "plot_learning_curves", "plot_runs", "read_jsonl",
]

JSONL_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "split", "time")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# --------------------------------------------------------------------------------------------
# JSONL + TensorBoard writer
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Terminal progress bar
# --------------------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    """`h:mm:ss` (hours grow past 24 rather than rolling into days)."""
    s = round(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, str)):
        return str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


class ProgressBar:
    """A dependency-free training progress bar.

    `update(step, loss=..., tokens=n)` is called after each step with the step just finished
    and the tokens that step processed. tokens/s and ETA are measured from the first update on,
    so the first step's compile time does not distort them (until the second update they
    include it). On a TTY the line is redrawn in place with ``\\r``; on other streams a full
    line is printed at most every `min_interval_s` seconds, plus the final step. `clock` (a
    monotonic seconds function) is injectable for tests.
    """

    _TTY_INTERVAL_S = 0.1  # redraws faster than this only cost terminal time
    _BAR_WIDTH = 20

    def __init__(self, total_steps: int, *, initial_step: int = 0, stream: TextIO | None = None,
                 enabled: bool = True, min_interval_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        if total_steps < 0 or initial_step < 0:
            raise ValueError(f"total_steps ({total_steps}) and initial_step ({initial_step}) "
                             "must be >= 0")
        self.total_steps = int(total_steps)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self._clock = clock
        try:
            self._tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            self._tty = False
        self._t_start = clock()
        self._step = int(initial_step)
        self._tokens_total = 0
        self._first: tuple[float, int, int] | None = None  # (time, step, tokens) of update 1
        self._last_shown = -math.inf
        self._shown_step: int | None = None
        self._line = ""
        self._drawn_width = 0
        self._closed = False

    # The line ------------------------------------------------------------------------------

    def _rates(self, now: float) -> tuple[float | None, float | None]:
        """(tokens/s, seconds/step), from the first update on when possible."""
        if self._first is not None:
            t0, s0, tok0 = self._first
            dt = now - t0
            if dt > 0 and self._step > s0:
                return (self._tokens_total - tok0) / dt, dt / (self._step - s0)
        dt = now - self._t_start
        if dt > 0 and self._tokens_total:
            return self._tokens_total / dt, None
        return None, None

    def _render(self, now: float, loss: float | None, extra: Mapping[str, Any]) -> str:
        total = self.total_steps
        width = len(str(total))
        frac = min(1.0, self._step / total) if total else 1.0
        filled = int(frac * self._BAR_WIDTH)
        bar = "#" * filled + "." * (self._BAR_WIDTH - filled)
        parts = [f"{self._step:>{width}}/{total} [{bar}] {frac * 100:3.0f}%"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        tok_s, s_per_step = self._rates(now)
        if tok_s is not None:
            parts.append(f"{_si(tok_s)} tok/s")
        remaining = max(0, total - self._step)
        if remaining == 0:
            parts.append(f"elapsed {format_duration(now - self._t_start)}")
        elif s_per_step is not None:
            parts.append(f"ETA {format_duration(remaining * s_per_step)}")
        else:
            parts.append("ETA --:--:--")
        parts.extend(f"{k} {_fmt(v)}" for k, v in extra.items())
        return " | ".join(parts)

    def _emit(self, now: float) -> None:
        if self._tty:
            pad = " " * max(0, self._drawn_width - len(self._line))  # erase a longer old line
            self.stream.write("\r" + self._line + pad)
            self._drawn_width = len(self._line)
        else:
            self.stream.write(self._line + "\n")
        self.stream.flush()
        self._last_shown = now
        self._shown_step = self._step

    # API -----------------------------------------------------------------------------------

    def update(self, step: int, *, loss: float | None = None, tokens: int = 0, **extra) -> None:
        """Report that `step` is done; `tokens` were processed since the previous update."""
        if not self.enabled or self._closed:
            return
        now = self._clock()
        self._step = int(step)
        self._tokens_total += int(tokens)
        if self._first is None:
            self._first = (now, self._step, self._tokens_total)
        self._line = self._render(now, loss, extra)
        interval = min(self.min_interval_s, self._TTY_INTERVAL_S) if self._tty else \
            self.min_interval_s
        if now - self._last_shown >= interval or self._step >= self.total_steps:
            self._emit(now)

    def write(self, text: str) -> None:
        """Print a message (e.g. eval results) without garbling the bar."""
        if not self.enabled:
            return
        if self._tty and self._drawn_width:
            self.stream.write("\r" + " " * self._drawn_width + "\r" + text + "\n")
            self.stream.write(self._line)
            self._drawn_width = len(self._line)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the last state if it was not shown yet, and end the line on a TTY."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        if self._line and self._shown_step != self._step:
            self._emit(self._clock())
        if self._tty and self._drawn_width:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def _new_figure(ncols: int, title: str | None):
    # Figure + FigureCanvasAgg directly: no pyplot global state and no backend switching, so
    # plotting works headless and does not disturb a notebook's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * ncols, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    if title:
        fig.suptitle(title)
    return fig, axes


def _save(fig, png_path: str | os.PathLike) -> Path:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, format="png", dpi=100)
    return png_path


def plot_learning_curves(jsonl_path: str | os.PathLike, png_path: str | os.PathLike, *,
                         keys: Iterable[str] = ("loss",), title: str | None = None) -> Path:
    """Plot each of `keys` against step (one panel per key, a line per split) to a PNG."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    records = read_jsonl(jsonl_path)
    splits = list(dict.fromkeys(r.get("split", "train") for r in records))
    fig, axes = _new_figure(len(keys), title)
    plotted = False
    for ax, key in zip(axes, keys, strict=True):
        for split in splits:
            curve = losses_by_step(records, split=split, key=key)
            if not curve:
                continue
            # Eval points are few: markers keep single points visible.
            ax.plot(list(curve), list(curve.values()), label=split,
                    marker="o" if split != "train" else None, markersize=3)
            plotted = True
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend()
    if not plotted:
        raise ValueError(f"{jsonl_path}: no records with any of the keys {keys}")
    return _save(fig, png_path)


def plot_runs(runs: Mapping[str, str | os.PathLike], png_path: str | os.PathLike, *,
              key: str = "loss", split: str = "train", title: str | None = None,
              logy: bool = False) -> Path:
    """Plot `key` of `split` against step for several runs (`{label: jsonl_path}`) in one panel."""
    fig, axes = _new_figure(1, title)
    ax = axes[0]
    missing = []
    for label, path in runs.items():
        curve = losses_by_step(read_jsonl(path), split=split, key=key)
        if not curve:
            missing.append(label)
            continue
        ax.plot(list(curve), list(curve.values()), label=label,
                marker="o" if split != "train" else None, markersize=3)
    if missing:
        raise ValueError(f"no {split!r} records with key {key!r} in runs {missing}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{split} {key}")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, png_path)
