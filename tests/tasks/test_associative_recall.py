"""Associative recall: determinism, labels, sharding, resumable iterators, learning."""

import dataclasses
import itertools
import json

import numpy as np
import optax
import pytest
from flax import nnx

from fastweights import presets
from fastweights.nn import SequenceConfig
from fastweights.nn import presets as model_presets
from fastweights.tasks import associative_recall

TASK = associative_recall.TASK
DATA = associative_recall.DataConfig(num_pairs=5, num_keys=7, num_values=6, batch_size=12, seed=3,
                                     eval_batches=3)


def take(it, n):
    return list(itertools.islice(it, n))


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_registry():
    assert presets.get_task("associative_recall") is TASK and presets.TASKS["associative_recall"] is TASK
    with pytest.raises(ValueError, match="associative_recall"):
        presets.get_task("nope")


def test_batch_format_and_labels():
    batch = next(TASK.dataset(DATA, "train"))
    n, k = DATA.num_pairs, DATA.num_keys
    assert batch["inputs"].shape == (12, 2 * n + 2) and batch["inputs"].dtype == np.int32
    assert batch["targets"].shape == (12,) and batch["targets"].dtype == np.int32
    for row, target in zip(batch["inputs"], batch["targets"]):
        keys, values = row[0:2 * n:2], row[1:2 * n:2]
        assert len(set(keys)) == n and keys.max() < k
        assert (values >= k).all() and (values < k + DATA.num_values).all()
        assert row[-2] == DATA.sep == k + DATA.num_values
        # The label, independently: scan the pairs for the query key.
        found = [v - k for key, v in zip(keys, values) if key == row[-1]]
        assert found == [target]
    assert TASK.tokens_per_batch(DATA) == 12 * (2 * n + 2)


def test_determinism_and_splits():
    a = take(TASK.dataset(DATA, "train"), 3)
    assert_batches_equal(a, take(TASK.dataset(DATA, "train"), 3))
    other = take(TASK.dataset(dataclasses.replace(DATA, seed=4), "train"), 3)
    assert not np.array_equal(a[0]["inputs"], other[0]["inputs"])
    valid = list(TASK.dataset(DATA, "valid"))
    test = list(TASK.dataset(DATA, "test"))
    assert len(valid) == len(test) == 3       # finite, fixed
    assert_batches_equal(valid, list(TASK.dataset(DATA, "valid")))
    assert not np.array_equal(valid[0]["inputs"], test[0]["inputs"])
    assert not np.array_equal(valid[0]["inputs"], a[0]["inputs"])
    assert not np.array_equal(a[0]["inputs"], a[1]["inputs"])


@pytest.mark.parametrize("split", ["train", "valid"])
def test_two_processes_see_the_one_process_data(split):
    whole = take(TASK.dataset(DATA, split), 3)
    parts = [take(TASK.dataset(DATA, split, process_index=p, process_count=2), 3) for p in range(2)]
    joined = [{k: np.concatenate([parts[0][i][k], parts[1][i][k]]) for k in whole[i]} for i in range(3)]
    assert parts[0][0]["inputs"].shape[0] == 6
    assert_batches_equal(whole, joined)


def test_state_resume():
    it = TASK.dataset(DATA, "train", process_index=1, process_count=3)
    take(it, 4)
    state = it.get_state()
    expected = take(it, 3)
    for saved in (state, json.loads(json.dumps(state))):
        resumed = TASK.dataset(DATA, "train", process_index=1, process_count=3)
        resumed.set_state(saved)
        assert_batches_equal(expected, take(resumed, 3))


def test_bad_input():
    with pytest.raises(ValueError, match="num_pairs"):
        associative_recall.DataConfig(num_pairs=9, num_keys=8)
    with pytest.raises(ValueError, match="divisible"):
        TASK.dataset(DATA, "train", process_count=5)
    with pytest.raises(ValueError, match="unknown split"):
        TASK.dataset(DATA, "dev")
    with pytest.raises(ValueError, match="process_index"):
        TASK.dataset(DATA, "train", process_index=2, process_count=2)
    with pytest.raises(ValueError, match="tiny"):
        presets.get("associative_recall", "huge")


def test_model_config():
    model = TASK.model_config(DATA, SequenceConfig())
    assert model.input_vocab == 7 + 6 + 1 and model.output_size == 6 and model.head == "final"
    for exp in presets.PRESETS["associative_recall"].values():
        assert TASK.model_config(exp.data, exp.model) == exp.model


def test_tiny_preset_learns():
    exp = presets.get("associative_recall", "tiny")
    data, config = exp.data, exp.model
    model = model_presets.build(config, rngs=0)
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        (loss, metrics), grads = nnx.value_and_grad(lambda m: TASK.loss(m, batch), has_aux=True)(model)
        optimizer.update(model, grads)
        assert set(metrics) == {"loss", "accuracy"}
        return loss

    # 32 rows of one batch (kept small for speed): the loss on them must fall within a few steps.
    batch = {k: v[:32] for k, v in next(TASK.dataset(data, "train")).items()}
    losses = [float(step(model, optimizer, batch)) for _ in range(20)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < losses[0] - 0.3
