"""Run metrics for the training loop, one concern per module:

- `writer`: `MetricsWriter` (JSONL + TensorBoard), `read_jsonl` / `losses_by_step` to load
  the log back (a resumed run appends and replays steps; the last record of a step wins);
- `progress`: `ProgressBar`, `tqdm.auto` with the loss, tokens/s and ETA;
- `plots`: `plot_learning_curves` / `plot_runs`, PNGs with matplotlib's Agg canvas.
"""

from fastweights.metrics.plots import plot_learning_curves, plot_runs
from fastweights.metrics.progress import ProgressBar
from fastweights.metrics.writer import JSONL_NAME, TENSORBOARD_DIR, MetricsWriter, losses_by_step, read_jsonl

__all__ = [
    "JSONL_NAME", "TENSORBOARD_DIR", "MetricsWriter", "ProgressBar", "losses_by_step",
    "plot_learning_curves", "plot_runs", "read_jsonl",
]
