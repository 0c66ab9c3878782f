"""The training progress bar: `tqdm.auto` (a widget in Jupyter and Colab, a line redrawn in
place elsewhere) with the loss and tokens/s (or frames/s) beside tqdm's step count, rate and ETA."""

from __future__ import annotations

import numbers
import sys
from typing import Any, TextIO

from tqdm.auto import tqdm


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
    """`update(step, loss=..., tokens=n, **extra)` after each step, with the step just
    finished and the tokens it processed.

    The bar starts at the first update, so that the first step's compilation stays out of
    its clock: the rate, tokens/s and ETA (and the elapsed time shown) count from there. It
    redraws at most every `min_interval_s` seconds (0.1 s on a terminal), and `close` shows
    the last step reached.
    """

    _TTY_INTERVAL_S = 0.1  # redraws faster than this only cost terminal time

    def __init__(self, total_steps: int, *, initial_step: int = 0, stream: TextIO | None = None,
                 enabled: bool = True, min_interval_s: float = 0.5, rate_label: str = "tok/s"):
        if total_steps < 0 or initial_step < 0:
            raise ValueError(f"total_steps ({total_steps}) and initial_step ({initial_step}) "
                             "must be >= 0")
        self.total_steps = int(total_steps)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.rate_label = rate_label     # what `tokens` counts, per second: "tok/s", "frames/s"
        try:
            tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            tty = False
        self._interval = min(min_interval_s, self._TTY_INTERVAL_S) if tty else min_interval_s
        self._bar: tqdm | None = None
        self._tokens = 0            # since the first update
        self._closed = False

    def update(self, step: int, *, loss: float | None = None, tokens: int = 0, **extra) -> None:
        """Report that `step` is done; `tokens` were processed since the previous update."""
        if not self.enabled or self._closed:
            return
        postfix = {} if loss is None else {"loss": f"{float(loss):.4f}"}
        if self._bar is None:
            postfix.update((k, _fmt(v)) for k, v in extra.items())
            self._bar = tqdm(total=self.total_steps, initial=int(step), file=self.stream, unit="step",
                             mininterval=self._interval, smoothing=0, dynamic_ncols=True, postfix=postfix)
            return
        self._tokens += int(tokens)
        elapsed = self._bar.format_dict["elapsed"]
        if self._tokens and elapsed > 0:
            postfix[self.rate_label] = _si(self._tokens / elapsed)
        postfix.update((k, _fmt(v)) for k, v in extra.items())
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(int(step) - self._bar.n)

    def write(self, text: str) -> None:
        """Print a message (e.g. eval results) without garbling the bar."""
        if self.enabled:
            tqdm.write(text, file=self.stream)

    def close(self) -> None:
        """Show the last state and end the bar; calling it again does nothing."""
        if self._bar is not None and not self._closed:
            self._bar.close()
        self._closed = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
