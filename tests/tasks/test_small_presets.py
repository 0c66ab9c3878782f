"""A few training steps of each CPU-sized ("small") preset of the algorithmic tasks reduce
the loss on a validation split (the full runs are `make run`). The validation loss after
the first update and after the 16th are compared on the same 64 examples, so batch-to-batch
noise does not decide."""

import pytest

from fastweights import metrics, presets

SMALL = [(task, preset) for task in ("code_execution", "listops")
         for preset in presets.names(task) if preset.startswith("small_")]
QUIET = ["train.log_every=1", "train.progress=false", "train.tensorboard=false", "train.plot=false",
         "train.test_at_end=false"]


@pytest.mark.parametrize("task, preset", SMALL)
def test_small_preset_reduces_the_loss(task, preset, tmp_path):
    exp = presets.get(task, preset, QUIET + ["train.steps=16", "train.eval_every=1", "data.valid_size=65"])
    presets.run(exp, tmp_path)
    valid = metrics.losses_by_step(metrics.read_jsonl(tmp_path / "metrics.jsonl"), split="valid")
    assert sorted(valid) == list(range(1, 17))
    assert valid[16] < valid[1], valid
