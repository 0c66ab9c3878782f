"""Code execution and ListOps as training tasks: the prepared array_record data against the
text files, batches (sharding, per-epoch shuffling, resume), and the losses and metrics
against NumPy computations of the official definitions."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from fastweights.data import code_execution as code_text
from fastweights.data import listops as listops_text
from fastweights.data import records
from fastweights import presets
from fastweights.tasks import code_execution, listops
from fastweights.testing import assert_close


@pytest.fixture
def code_data(tmp_path):
    return code_execution.DataConfig(code_length=5, train_size=41, valid_size=11, test_size=11,
                                      batch_size=8, cache_dir=str(tmp_path))


@pytest.fixture
def listops_data(tmp_path):
    return listops.DataConfig(only_depth=3, max_args=3, train_size=40, valid_size=10, test_size=10,
                              batch_size=8, cache_dir=str(tmp_path))


def test_prepared_code_execution_equals_the_text_files(code_data):
    task = code_execution.TASK
    meta = task.prepare(code_data)
    assert meta["sizes"] == {"train": 40, "valid": 10, "test": 10}      # official: last one dropped
    valid = code_text.read_split(meta["text_dir"], "valid", 3, src_vocab=meta["vocab"]["source"],
                                 tgt_vocab=meta["vocab"]["target"])
    train_vocab = code_text.read_vocabularies(meta["text_dir"], 3)
    assert tuple(meta["vocab"]["target"][:len(train_vocab[1])]) == train_vocab[1]   # official ids first
    rec = records.Records(task.prepared_dir(code_data) / "valid.arrayrecord")
    for i in range(len(rec)):
        n = valid.lengths[i]
        np.testing.assert_array_equal(rec[i]["inputs"], valid.src[i, :n])
        np.testing.assert_array_equal(rec[i]["targets"], valid.tgt[i, :n])
    assert task.model_config(code_data, presets.get("code_execution", "tiny").model).input_vocab == len(meta["vocab"]["source"])
    # A changed generator setting is a different prepared dataset.
    assert task.prepared_dir(dataclasses.replace(code_data, seed=1)) != task.prepared_dir(code_data)
    assert task.prepared_dir(dataclasses.replace(code_data, batch_size=4)) == task.prepared_dir(code_data)


def test_batches_shard_shuffle_and_resume(code_data):
    task = code_execution.TASK
    one = task.dataset(code_data, "train")
    halves = [task.dataset(code_data, "train", process_index=p, process_count=2) for p in range(2)]
    epoch = []
    for _ in range(5):                       # one epoch of 40 examples is 5 batches of 8
        batch = next(one)
        parts = [next(h) for h in halves]
        np.testing.assert_array_equal(np.concatenate([p["inputs"] for p in parts]), batch["inputs"])
        epoch.append(batch["inputs"])
    seen = np.concatenate(epoch)
    assert len({row.tobytes() for row in seen}) == 40    # every example once per epoch
    second = next(one)["inputs"]
    assert not np.array_equal(second, epoch[0])          # reshuffled for the next epoch
    state = json.loads(json.dumps(one.get_state()))
    expected = next(one)
    again = task.dataset(code_data, "train")
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["inputs"], expected["inputs"])
    valid = list(task.dataset(code_data, "valid"))
    assert [b["weight"].sum() for b in valid] == [8, 2]  # the last batch padded with weight 0


class _Fixed:
    """A stand-in model returning given logits."""

    def __init__(self, logits):
        self.logits = jnp.asarray(logits, jnp.float32)

    def __call__(self, inputs):
        return self.logits, None


def test_code_execution_loss_and_metrics():
    # 2 sequences of 3 positions, vocabulary ["_", "5", "7"], pad -1.
    targets = np.array([[0, 1, -1], [0, 2, 1]])
    printed = (targets > 0).astype(np.int32)
    predictions = np.array([[0, 1, 2], [0, 2, 2]])        # sequence 0 right, sequence 1 wrong at 2
    logits = np.log(np.full((2, 3, 3), 0.1))
    logits[np.arange(2)[:, None], np.arange(3)[None], predictions] = np.log(0.8)
    batch = dict(inputs=np.zeros((2, 3), np.int32), targets=targets, printed=printed,
                 weight=np.ones(2, np.float32))
    loss, m = code_execution.TASK.loss(_Fixed(logits), batch)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    mask = targets >= 0
    expected = -np.sum(np.where(mask, np.take_along_axis(log_p, np.maximum(targets, 0)[..., None], -1)[..., 0], 0)) / mask.sum()
    assert_close(float(loss), expected, "float32_vs_float64")
    assert float(m["sequence_accuracy"]) == 0.5
    assert float(m["print_accuracy"]) == pytest.approx(2 / 3)
    assert float(m["no_op_accuracy"]) == 1.0


def test_listops_reads_out_the_last_token(listops_data):
    task = listops.TASK
    meta = task.prepare(listops_data)
    assert meta["vocab"]["classes"] == 10
    batch = next(task.dataset(listops_data, "valid"))
    length, label = batch["length"], batch["label"]
    # Logits that are right only at position length-1 of each example.
    logits = np.zeros(batch["inputs"].shape + (10,), np.float32)
    logits[np.arange(len(label)), length - 1, label] = 5.0
    logits[np.arange(len(label)), 0, (label + 1) % 10] = 9.0
    loss, m = task.loss(_Fixed(logits), batch)
    assert float(m["accuracy"]) == 1.0
    expected = np.mean(np.log(9 + np.exp(5.0)) - 5.0)
    assert_close(float(loss), expected, "float32_vs_float64")
    text = listops_text.load_splits(meta["text_dir"], 3, max_args=3)[1]["valid"]
    np.testing.assert_array_equal(label, text.labels[:8])
