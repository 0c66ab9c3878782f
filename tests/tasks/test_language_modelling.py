"""The language-modelling tasks end to end on the committed WikiText-layout fixture: training
with and without carried state, exact resume, the in-training validation, the run loaded
back for evaluation and generation, and the command lines."""

import dataclasses
import json
import math
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights import lm, metrics, presets, training
from fastweights.data import wikitext
from fastweights.tasks import language_modelling as task_module
from fastweights.testing import assert_close

FIXTURE = Path(__file__).parents[1] / "data" / "fixtures" / "wikitext_tiny"
STEPS = 10


def _experiment(task: str, cache_dir, **train) -> presets.Experiment:
    """The task's tiny preset on the fixture: 8 streams (one per test device) of 4 tokens, so
    an epoch is 8 batches and the runs below cross an epoch boundary."""
    exp = presets.get(task, "tiny")
    data = dataclasses.replace(exp.data, corpus="wikitext-103", data_dir=str(FIXTURE), cache_dir=str(cache_dir),
                               batch_size=8, tgt_len=4, eval_batch_size=8, eval_tgt_len=4)
    model = dataclasses.replace(exp.model, cutoffs=(8,), tail_capacity=(0.5,), positional_span=4)
    loop = dataclasses.replace(exp.train, steps=STEPS, log_every=1, eval_every=5, checkpoint_every=2,
                               progress=False, tensorboard=False, plot=False, **train)
    return dataclasses.replace(exp, data=data, model=model, train=loop)


def _losses(run_dir, key="loss"):
    return metrics.losses_by_step(metrics.read_jsonl(Path(run_dir) / "metrics.jsonl"), key=key)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def corpus(cache):
    return wikitext.load(FIXTURE, cache_dir=cache)


@pytest.fixture(scope="module")
def full_context_run(tmp_path_factory, cache):
    """An uninterrupted carried-state run with a learning rate too small to move any float32
    parameter: every logged loss is then a loss of the initial model."""
    exp = _experiment("lm_full_context", cache)
    exp = dataclasses.replace(exp, optimizer=dataclasses.replace(exp.optimizer, learning_rate=1e-30))
    run_dir = tmp_path_factory.mktemp("full_context")
    return exp, run_dir, presets.run(exp, run_dir)


def test_the_lm_tasks_implement_the_protocol():
    assert isinstance(task_module.TASK, training.EvaluatingTask)
    assert not isinstance(task_module.TASK, training.CarriedStateTask)
    assert isinstance(task_module.FULL_CONTEXT, training.CarriedStateTask)


def test_carried_segments_equal_one_long_pass(full_context_run, corpus):
    """The loss of training batch k (state carried from batch k-1, reset each epoch) is the
    mean NLL of segment k of one long pass over each epoch's columns."""
    exp, run_dir, result = full_context_run
    model = presets.model_factory(exp)(nnx.Rngs(params=exp.train.seed, dropout=exp.train.seed + 1))
    model.eval()           # the learning rate is 1e-30 and dropout is 0: training == evaluation here
    tokens = np.asarray(corpus.splits["train"])
    B, L = exp.data.batch_size, exp.data.tgt_len
    n = len(tokens) // B
    columns = tokens[:n * B].reshape(B, n)
    hidden, _ = model(jnp.asarray(columns[:, :-1]))
    nll = np.asarray(model.nll(hidden, jnp.asarray(columns[:, 1:])))          # [B, n - 1]
    starts = list(range(0, n - 1, L))
    expected = {}
    for step in range(1, STEPS + 1):
        i = starts[(step - 1) % len(starts)]
        expected[step] = float(nll[:, i:i + L].mean())
    assert len(starts) < STEPS                                    # an epoch boundary was crossed
    assert_close(np.array(list(_losses(run_dir).values())), np.array(list(expected.values())), "float32_other_form")
    # The carry the run ended with is the state after its last segment's epoch so far.
    done = (STEPS - 1) % len(starts) + 1
    end = min(starts[done - 1] + L, n - 1)
    _, state = model(jnp.asarray(columns[:, :end]))
    assert_close(result["carry"].layers, state.layers, "float32_other_form")


class _Killed(Exception):
    pass


class _KilledAt(task_module.FullContextLanguageModelling):
    """The full-context task whose run is killed before its train batch `at` (between
    checkpoints)."""

    def __init__(self, at):
        self.at = at

    def dataset(self, data, split, **kw):
        batches = super().dataset(data, split, **kw)
        return _Dying(batches, self.at) if split == "train" else batches


class _Dying:
    def __init__(self, batches, at):
        self.batches, self.left = batches, at - 1

    def __next__(self):
        if self.left == 0:
            raise _Killed()
        self.left -= 1
        return next(self.batches)

    def get_state(self):
        return self.batches.get_state()

    def set_state(self, state):
        self.batches.set_state(state)


def test_resume_mid_epoch_continues_exactly(tmp_path, cache):
    exp = _experiment("lm_full_context", cache)
    uninterrupted = presets.run(exp, tmp_path / "whole")
    with pytest.raises(_Killed):
        training.train(_KilledAt(8), presets.model_factory(exp), tmp_path / "killed", data=exp.data,
                       optimizer=exp.optimizer, config=exp.train, run_config=training.config_to_dict(exp))
    assert max(_losses(tmp_path / "killed")) == 7          # the last checkpoint is at step 6
    resumed = presets.run(exp, tmp_path / "killed")
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "whole")
    chex.assert_trees_all_equal(resumed["state"], uninterrupted["state"])
    chex.assert_trees_all_equal(resumed["carry"], uninterrupted["carry"])


def test_in_training_validation_is_the_segment_protocol(tmp_path, cache, corpus):
    exp = _experiment("lm", cache)
    result = presets.run(exp, tmp_path)
    records = metrics.read_jsonl(tmp_path / "metrics.jsonl")
    valid = [r for r in records if r["split"] == "valid"]
    test = [r for r in records if r["split"] == "test"]
    assert [r["step"] for r in valid] == [5, 10] and len(test) == 1
    loaded, model, step = presets.load_run(tmp_path)
    assert loaded == exp and step == result["best_step"]
    _, latest, latest_step = presets.load_run(tmp_path, best=False)
    assert latest_step == STEPS
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, nnx.state(latest, nnx.Param)),
                                jax.tree.map(np.asarray, result["state"].params))
    direct = lm.segments(model, corpus.splits["test"], batch_size=exp.data.eval_batch_size,
                         segment=exp.data.eval_tgt_len, progress=False)
    assert_close(test[0]["loss"], direct["loss"], "float32_other_form")
    assert_close(test[0]["perplexity"], math.exp(direct["loss"]), "float32_other_form")


def test_evaluate_and_generate_commands(tmp_path, cache, corpus, capsys):
    from fastweights.evaluate import main as evaluate_main
    from fastweights.generate import main as generate_main
    exp = _experiment("lm", cache, test_at_end=False)
    presets.run(exp, tmp_path)
    assert evaluate_main([str(tmp_path), "--protocol", "all", "--split", "valid", "--stride", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("perplexity on valid") == 3
    _, model, _ = presets.load_run(tmp_path)
    written = json.loads((tmp_path / "eval_valid_sliding_window.json").read_text())
    direct = lm.sliding_window(model, corpus.splits["valid"], window=4, stride=3, progress=False)
    assert written["tokens"] == direct["tokens"] == len(corpus.splits["valid"]) - 1
    assert_close(written["perplexity"], direct["perplexity"], "float32_same_algebra")
    args = [str(tmp_path), "--prompt", "the", "--tokens", "12", "--temperature", "0.9", "--top-k", "5"]
    assert generate_main(args) == 0
    first = capsys.readouterr().out
    assert generate_main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("the")     # seeded: reproducible
    assert len(first.replace("\n", " ").split()) >= 2
    assert generate_main([str(tmp_path), "--tokens", "0"]) == 2
    assert "--tokens must be >= 1" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "nowhere")]) == 2
    assert "has no checkpoints" in capsys.readouterr().err
    # The results table reads the run back: the segment and sliding-window numbers it wrote.
    from experiments.results import lm_table
    training.write_run_info(tmp_path, task="lm", preset="tiny", overrides=[])
    assert evaluate_main([str(tmp_path), "--protocol", "sliding_window", "--stride", "3"]) == 0
    row = lm_table([tmp_path]).splitlines()[-1].split(" | ")
    test_ppl = json.loads((tmp_path / "eval_test_sliding_window.json").read_text())["perplexity"]
    assert row[1] == "lm:24" and row[5] == f"{test_ppl:.1f} (stride 3)", row


def test_wikitext_needs_a_folder():
    exp = presets.get("lm", "wt103_small_delta_net")
    with pytest.raises(ValueError, match="set data.data_dir"):
        task_module.load_corpus(exp.data)
