"""Evaluation protocols of a language model on one split, a 1-D stream of token ids
(PAPER_SPEC 3.1, 6 and 9.15):

- `sliding_window`: the limited-context number of the paper (`eval_sliding_window.py`):
  every token predicted from a fresh state over the `window` tokens before it;
- `full_context`: the full-context number (`eval.py --carry_over_fast_weight`): one stream
  in consecutive segments with the state carried;
- `segments`: the number the training loop logs for checkpoint selection: `batch_size`
  contiguous columns cut into non-overlapping segments, each from a fresh state.

Each returns `{"nll", "tokens", "loss", "perplexity", "windows", "tokens_per_s"}`: the
total NLL in nats (summed in float64 on the host), the number of scored predictions, their
mean, exp(mean), the number of model calls' rows (windows, segments or batches) and the
scored tokens per second of wall time (compilation included). The model runs in eval mode
(no dropout) inside compiled functions; the caller's module is not changed. Shapes stay
fixed (the last batch is padded and masked), so a split costs at most two or three
compilations.

A fresh call of `L` tokens gets the official descending positions `L-1, ..., 0` (for a
model with `positional="descending"` and a span: its state starts at position `span - L`);
for `L == span` this is the model's own default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from fastweights.lm._compiled import bind
from fastweights.metrics import ProgressBar
from fastweights.nn.common import check_tokens
from fastweights.nn.models import LanguageModel

Array = jax.Array


def _check_model(model) -> None:
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a fastweights.nn.LanguageModel, got {type(model).__name__}")


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_split(model: LanguageModel, tokens, minimum: int = 2) -> np.ndarray:
    """The split as a 1-D integer array (a memmap stays a memmap), ids checked on the host."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be a 1-D array of token ids, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    if tokens.shape[0] < minimum:
        raise ValueError(f"tokens must hold at least {minimum} ids, got {tokens.shape[0]}")
    check_tokens(tokens, model.config.vocab_size)
    return tokens


def _scored_nll(model, inputs, targets, *, scored: int):
    """Fresh-state pass over `inputs [B, T]`; the NLL `[B, scored]` of `targets [B, scored]`
    at the last `scored` positions only (the output layer never sees the others)."""
    hidden, _ = model(inputs, model.segment_state(inputs.shape[0], inputs.shape[1]))
    return model.nll(hidden[:, inputs.shape[1] - scored:], targets)


def _carried_nll(model, inputs, targets, state):
    """One segment with the state carried: `(nll [B, T], state)`."""
    hidden, state = model(inputs, state)
    return model.nll(hidden, targets), state


class _Accumulator:
    """Host-side float64 sum of masked per-position NLLs, one batch behind the device (the
    next batch is dispatched before the previous one's result is read), with the bar."""

    def __init__(self, total_batches: int, progress: bool):
        self.nll, self.tokens, self.rows = 0.0, 0, 0
        self._pending: tuple | None = None
        self._step = 0
        self._bar = ProgressBar(total_batches, enabled=progress)
        self._start = time.perf_counter()

    def add(self, nll: Array, mask: np.ndarray | None, rows: int) -> None:
        """Queue a batch's `nll` (device array) with its host `mask` (None: all scored)."""
        self._flush()
        self._pending = (nll, mask, rows)

    def _flush(self) -> None:
        if self._pending is None:
            return
        nll, mask, rows = self._pending
        self._pending = None
        values = np.asarray(nll, np.float64)
        if mask is not None:
            values = values[mask]
        self.nll += float(values.sum())
        self.tokens += int(values.size)
        self.rows += rows
        self._step += 1
        self._bar.update(self._step, loss=self.nll / self.tokens, tokens=int(values.size))

    def result(self) -> dict:
        self._flush()
        self._bar.close()
        seconds = time.perf_counter() - self._start
        loss = self.nll / self.tokens
        return {"nll": self.nll, "tokens": self.tokens, "loss": loss,
                "perplexity": math.exp(loss) if loss < 709.0 else math.inf,
                "windows": self.rows, "tokens_per_s": self.tokens / max(seconds, 1e-9)}


def _window_plan(n: int, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Start of every window after window 0, and how many of its last targets it scores.

    Window 0 (start 0) scores targets 1..window. Later windows start every `stride` and
    score their last `stride` targets; the last one starts at `n - 1 - window` (ending at
    the last token) and scores only the targets the previous windows left, so every target
    1..n-1 is scored exactly once.
    """
    last = n - 1 - window
    if last <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    count = -(-last // stride)                          # ceil(last / stride)
    starts = np.minimum(np.arange(1, count + 1, dtype=np.int64) * stride, last)
    scored = np.full(count, stride, np.int64)
    scored[-1] = last - (count - 1) * stride            # in [1, stride]
    return starts, scored


def _scored_targets(n: int, window: int, stride: int) -> Iterator[np.ndarray]:
    """The target indices (into the split) each window scores, window 0 first (for tests)."""
    if n < window + 1:
        yield np.arange(1, n)
        return
    yield np.arange(1, window + 1)
    for start, scored in zip(*_window_plan(n, window, stride)):
        yield np.arange(start + window - scored + 1, start + window + 1)


def sliding_window(model: LanguageModel, tokens, *, window: int = 256, stride: int = 1,
                   batch_size: int = 64, progress: bool = True) -> dict:
    """Limited-context evaluation (PAPER_SPEC 6, `eval_sliding_window.py`).

    With N tokens: window 0 is `tokens[0:window]` predicting `tokens[1:window+1]`, all
    scored; windows then start every `stride` positions, each from a zero state, and score
    only their last `stride` predictions (the paper: stride 1, windows at 0..N-window-1); the
    last window ends at the last token and scores what is left. Every target 1..N-1 is
    scored exactly once. A split shorter than `window + 1` tokens is one window of N-1.

    Batched: `batch_size` windows per call (`[batch_size, window]` inputs, the last batch
    padded and masked), the output layer applied only at the scored positions. Compiles
    twice: window 0 and the batched call. Batching pays on an accelerator; on a CPU each
    window is already compute-bound at batch 1, and larger batches, which leave the cache,
    ran slower (BENCHMARKS.md, `benchmarks/bench_lm.py`).
    """
    _check_model(model)
    window = _check_positive("window", window)
    stride = _check_positive("stride", stride)
    batch_size = _check_positive("batch_size", batch_size)
    if stride > window:
        raise ValueError(f"stride ({stride}) must be <= window ({window}): a window scores at most "
                         "its own predictions")
    tokens = _check_split(model, tokens)
    n = tokens.shape[0]
    if n < window + 1:          # one window of n-1 tokens, all scored
        acc = _Accumulator(1, progress)
        acc.add(bind(_scored_nll, model, scored=n - 1)(jnp.asarray(tokens[None, :-1], jnp.int32),
                                                       jnp.asarray(tokens[None, 1:], jnp.int32)), None, 1)
        return acc.result()
    starts, scored = _window_plan(n, window, stride)
    num_batches = -(-len(starts) // batch_size)
    acc = _Accumulator(1 + num_batches, progress)
    first = np.asarray(tokens[:window + 1], np.int32)
    acc.add(bind(_scored_nll, model, scored=window)(jnp.asarray(first[None, :-1]),
                                                    jnp.asarray(first[None, 1:])), None, 1)
    later = bind(_scored_nll, model, scored=stride)
    offsets = np.arange(window + 1, dtype=np.int64)
    columns = np.arange(stride, dtype=np.int64)
    for b in range(num_batches):
        batch_starts = starts[b * batch_size:(b + 1) * batch_size]
        batch_scored = scored[b * batch_size:(b + 1) * batch_size]
        rows = len(batch_starts)
        if rows < batch_size:   # pad with copies of the last window, masked out below
            batch_starts = np.concatenate([batch_starts, np.full(batch_size - rows, batch_starts[-1])])
            batch_scored = np.concatenate([batch_scored, np.zeros(batch_size - rows, np.int64)])
        chunk = np.asarray(tokens[batch_starts[:, None] + offsets], np.int32)   # [B, window+1]
        # Row r scores its last batch_scored[r] of the `stride` positions computed.
        mask = columns[None, :] >= stride - batch_scored[:, None]
        acc.add(later(jnp.asarray(chunk[:, :-1]), jnp.asarray(chunk[:, window + 1 - stride:])),
                None if mask.all() else mask, rows)
    return acc.result()


def full_context(model: LanguageModel, tokens, *, segment: int = 256, progress: bool = True) -> dict:
    """Carried-state evaluation (`eval.py --carry_over_fast_weight --batch_size 1`).

    The split is one stream (batch 1) in consecutive `segment`-token segments with the
    model state carried from `init_state(1)` on; every target 1..N-1 is scored once. The
    last segment may be shorter (one more compilation). Positions, if the model has them,
    restart in every segment as in the official code's calls (`segment_state`: L-1, ..., 0);
    the full-context presets have none.
    """
    _check_model(model)
    segment = _check_positive("segment", segment)
    tokens = _check_split(model, tokens)
    n = tokens.shape[0]
    call = bind(_carried_nll, model)
    num_segments = -(-(n - 1) // segment)
    acc = _Accumulator(num_segments, progress)
    state = model.init_state(1)
    for s in range(num_segments):
        start, stop = s * segment, min((s + 1) * segment, n - 1)
        chunk = np.asarray(tokens[start:stop + 1], np.int32)[None]
        state = state._replace(position=model.segment_state(1, stop - start).position)
        nll, state = call(jnp.asarray(chunk[:, :-1]), jnp.asarray(chunk[:, 1:]), state)
        acc.add(nll, None, 1)
    return acc.result()


def segments(model: LanguageModel, tokens, *, batch_size: int = 10, segment: int = 256,
             progress: bool = True) -> dict:
    """The in-training validation number (PAPER_SPEC 3.1, `LMOrderedIterator`).

    The split is trimmed to a multiple of `batch_size` and cut into `batch_size`
    contiguous columns of n tokens (column j = `tokens[j*n:(j+1)*n]`); batch i holds
    positions `i..i+L` of every column, predicting `i+1..i+L+1`, with
    `L = min(segment, n-1-i)`, from a zero state. Token-weighted mean over all
    `batch_size * (n-1)` predictions; "windows" counts the batches.
    """
    _check_model(model)
    batch_size = _check_positive("batch_size", batch_size)
    segment = _check_positive("segment", segment)
    tokens = _check_split(model, tokens, minimum=2 * batch_size)
    n = tokens.shape[0] // batch_size
    columns = tokens[:n * batch_size].reshape(batch_size, n)
    num_batches = -(-(n - 1) // segment)
    acc, calls = _Accumulator(num_batches, progress), {}
    for i in range(0, n - 1, segment):
        length = min(segment, n - 1 - i)
        chunk = np.asarray(columns[:, i:i + length + 1], np.int32)
        if length not in calls:     # the full segments, and the last, shorter one
            calls[length] = bind(_scored_nll, model, scored=length)
        acc.add(calls[length](jnp.asarray(chunk[:, :-1]), jnp.asarray(chunk[:, 1:])), None, 1)
    return acc.result()
