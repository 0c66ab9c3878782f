"""Run metrics: JSONL log (resume, NaN), TensorBoard events, progress bar, PNG plots."""

import io
import json
import math
import re

import numpy as np
import pytest
import tqdm.std
from tqdm import tqdm as tqdm_bar

from fastweights.metrics import (
    MetricsWriter,
    ProgressBar,
    losses_by_step,
    plot_learning_curves,
    plot_runs,
    read_jsonl,
)


def _scalars(tb_dir):
    """{tag: [(step, value), ...]} read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _run(run_dir, steps, *, offset=0.0, eval_every=None):
    with MetricsWriter(run_dir) as w:
        for s in steps:
            w.write(s, {"loss": offset + 10.0 - s, "lr": np.float32(0.5)})
            if eval_every and s % eval_every == 0:
                w.write(s, {"loss": offset + 20.0 - s}, split="eval")


def test_jsonl_round_trip_and_resume_replaying_steps(tmp_path):
    _run(tmp_path, range(8), eval_every=4)        # killed after step 7
    _run(tmp_path, range(5, 12), offset=100.0)        # resumed from the step-4 checkpoint
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(records) == 8 + 2 + 7
    first = records[0]
    assert list(first)[:3] == ["step", "split", "time"]
    assert first["step"] == 0 and first["split"] == "train" and first["loss"] == 10.0
    assert isinstance(first["lr"], float) and isinstance(first["time"], float)
    # Every line is strict JSON.
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    train = losses_by_step(records)
    assert list(train) == list(range(12))
    assert train == {s: (10.0 - s if s < 5 else 110.0 - s) for s in range(12)}
    assert losses_by_step(records, split="eval") == {0: 20.0, 4: 16.0}
    assert losses_by_step(records, key="lr")[11] == 0.5
    assert read_jsonl(tmp_path) == records  # the run folder works too


def test_nan_and_inf_are_strict_json_strings_and_read_back_as_floats(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=False) as w:
        w.write(np.int64(1), {"loss": float("nan"), "grad_norm": np.float32("inf"),
                              "m": -math.inf, "tokens": np.int32(7), "note": "ok"})
    line = (tmp_path / "metrics.jsonl").read_text()
    raw = json.loads(line)
    assert (raw["loss"], raw["grad_norm"], raw["m"]) == ("nan", "inf", "-inf")
    assert raw["tokens"] == 7 and isinstance(raw["tokens"], int) and raw["note"] == "ok"
    (rec,) = read_jsonl(tmp_path / "metrics.jsonl")
    assert math.isnan(rec["loss"]) and rec["grad_norm"] == math.inf and rec["m"] == -math.inf
    assert math.isnan(losses_by_step([rec])[1])
    assert not (tmp_path / "tensorboard").exists()


def test_bad_input_and_truncated_lines(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=False) as w:
        with pytest.raises(ValueError, match="clash"):
            w.write(0, {"step": 1.0})
        with pytest.raises(TypeError, match="step must be an integer"):
            w.write(1.5, {"loss": 1.0})
        with pytest.raises(TypeError, match="'loss'"):
            w.write(0, {"loss": [1.0, 2.0]})
        w.write(0, {"loss": 1.0})
    with pytest.raises(RuntimeError, match="closed"):
        w.write(1, {"loss": 1.0})
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as f:
        f.write('{"step": 1, "split": "tr')  # a write cut off by a kill
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert len(read_jsonl(path)) == 1
    with pytest.warns(UserWarning, match="dropped an incomplete"):
        w = MetricsWriter(tmp_path, tensorboard=False)
    with w:
        w.write(1, {"loss": 2.0})
    assert losses_by_step(read_jsonl(path)) == {0: 1.0, 1: 2.0}
    path.write_text(path.read_text() + "garbage\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:3: malformed"):
        read_jsonl(path)


def test_disabled_writer_makes_no_files(tmp_path):
    with MetricsWriter(tmp_path / "run", enabled=False) as w:
        w.write(0, {"loss": 1.0})
        w.flush()
    assert not (tmp_path / "run").exists()


def test_tensorboard_scalars_read_back_and_resume_purges_replayed_steps(tmp_path):
    _run(tmp_path, range(8), eval_every=4)
    scalars = _scalars(tmp_path / "tensorboard")
    assert set(scalars) == {"train/loss", "train/lr", "eval/loss"}
    assert scalars["train/loss"] == [(s, 10.0 - s) for s in range(8)]
    assert scalars["eval/loss"] == [(0, 20.0), (4, 16.0)]
    assert scalars["train/lr"][-1] == (7, 0.5)
    # A resumed run (at once, i.e. within the same second) appends a new event file; the
    # replayed steps replace the interrupted run's ones in TensorBoard, as in losses_by_step.
    _run(tmp_path, range(5, 10), offset=100.0)
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2
    scalars = _scalars(tmp_path / "tensorboard")
    expected = losses_by_step(read_jsonl(tmp_path))
    assert scalars["train/loss"] == list(expected.items())
    assert scalars["eval/loss"] == [(0, 20.0), (4, 16.0)]


def test_tensorboard_nan(tmp_path):
    with MetricsWriter(tmp_path) as w:
        w.write(3, {"loss": float("nan"), "note": "text is JSONL-only"})
    scalars = _scalars(tmp_path / "tensorboard")
    assert list(scalars) == ["train/loss"]
    ((step, value),) = scalars["train/loss"]
    assert step == 3 and math.isnan(value)


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    """tqdm's clock, driven by the test."""
    fake = _Clock()
    monkeypatch.setattr(tqdm.std, "time", fake)
    return fake


def _displays(stream):
    """Each redraw of the bar (tqdm starts every one with a carriage return)."""
    return [d.strip() for d in stream.getvalue().split("\r") if d.strip()]


def test_progress_bar_shows_loss_tokens_and_eta_and_is_rate_limited(clock):
    out = io.StringIO()
    bar = ProgressBar(100, initial_step=10, stream=out, min_interval_s=1.0)
    clock.t += 30.0  # the first step includes compilation: the bar starts after it
    bar.update(11, loss=5.0, tokens=1000)
    for step in range(12, 101):
        clock.t += 0.25
        bar.update(step, loss=4.0, tokens=1000, lr=3e-4)
    bar.close()
    shown = _displays(out)
    # One redraw per 1 s of clock (4 steps) plus the first and the final one.
    assert 20 <= len(shown) <= 25, shown
    assert re.match(r"11%\|.*\| 11/100 \[00:00<\?, \?step/s, loss=5\.0000\]", shown[0]), shown[0]
    mid = shown[len(shown) // 2]
    step = int(re.search(r"\| (\d+)/100", mid)[1])
    # 1000 tokens per 0.25 s and 4 steps/s, compilation excluded; the ETA from that rate.
    assert "loss=4.0000" in mid and "tok/s=4.0k" in mid and "lr=0.0003" in mid and "4.00step/s" in mid
    assert f"<{tqdm_bar.format_interval((100 - step) * 0.25)}," in mid, mid
    assert shown[-1].startswith("100%|") and "| 100/100 [00:22<00:00," in shown[-1]  # 89 x 0.25 s


def test_progress_bar_close_shows_an_early_stop_and_write_keeps_the_bar(clock):
    out = io.StringIO()
    with ProgressBar(10, stream=out, min_interval_s=60.0) as bar:
        for step in (1, 2, 3):
            clock.t += 1.0
            bar.update(step, loss=1.0)
    shown = _displays(out)
    assert [re.search(r"\d+/10", d)[0] for d in shown] == ["1/10", "3/10"]
    assert "<00:07," in shown[-1]            # 1 step/s, 7 to go

    tty = _Tty()
    with ProgressBar(2, stream=tty) as bar:
        for step in (1, 2):
            clock.t += 3661.0
            bar.update(step, loss=2.5, tokens=10)
        bar.write("eval loss 2.0")
    text = tty.getvalue()
    assert text.endswith("\n") and "eval loss 2.0\n" in text
    assert "2/2 [1:01:01<00:00" in _displays(tty)[-1]

    silent = io.StringIO()
    with ProgressBar(2, stream=silent, enabled=False) as bar:
        bar.update(2, loss=1.0)
        bar.write("not shown")
    assert silent.getvalue() == ""


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plots_write_png_files(tmp_path):
    for i, name in enumerate(("a", "b", "c")):
        with MetricsWriter(tmp_path / name, tensorboard=False) as w:
            for s in range(50):
                w.write(s, {"loss": 5.0 * math.exp(-s / (10 + i)), "acc": s / 50})
                if s % 10 == 0:
                    w.write(s, {"loss": 5.5 * math.exp(-s / 12)}, split="eval")
    png = plot_learning_curves(tmp_path / "a" / "metrics.jsonl", tmp_path / "curves.png",
                               keys=("loss", "acc"), title="run a")
    assert png == tmp_path / "curves.png" and _is_png(png)
    png = plot_runs({n: tmp_path / n / "metrics.jsonl" for n in "abc"}, tmp_path / "p" / "runs.png",
                    key="loss", split="eval", logy=True)
    assert _is_png(png)
    with pytest.raises(ValueError, match="no records"):
        plot_learning_curves(tmp_path / "a" / "metrics.jsonl", tmp_path / "x.png", keys=("bpc",))
