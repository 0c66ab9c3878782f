"""The task protocol's carried state and custom evaluation, on a small stream task: the
carry crosses batches, restarts at each epoch, stops the gradient at the batch boundary and
resumes bit for bit after an interruption; a task's own `evaluate` replaces the batch mean."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fastweights import metrics, presets, training
from fastweights.nn import SequenceConfig, SequenceModel
from fastweights.testing import assert_close


@dataclasses.dataclass(frozen=True)
class StreamData:
    """`batch_size` token streams per epoch, each read in `segments` batches of `segment`
    tokens; the target of a token is the token `delay` positions earlier in its stream, so
    the first `delay` targets of a batch are in the batch before."""
    batch_size: int = 8
    segment: int = 6
    segments: int = 3
    delay: int = 4
    vocab: int = 8
    seed: int = 0


class StreamBatches:
    """Batch `n` of a split: segment `n % segments` of epoch `n // segments` (endless for
    "train", one epoch otherwise); resumable through `get_state`/`set_state`."""

    def __init__(self, data: StreamData, split: str, rows: slice, reset_every_batch: bool = False):
        self.data, self.split, self.rows, self.reset_every_batch = data, split, rows, reset_every_batch
        self.next = 0

    def __iter__(self):
        return self

    def __next__(self):
        d = self.data
        epoch, segment = divmod(self.next, d.segments)
        if self.split != "train" and epoch > 0:
            raise StopIteration
        self.next += 1
        rng = np.random.default_rng([d.seed, ("train", "valid", "test").index(self.split), epoch])
        tokens = rng.integers(0, d.vocab, (d.batch_size, d.segments * d.segment), dtype=np.int32)
        targets = np.zeros_like(tokens)
        targets[:, d.delay:] = tokens[:, :-d.delay]
        span = slice(segment * d.segment, (segment + 1) * d.segment)
        start = np.full(d.batch_size, segment == 0 or self.reset_every_batch, np.int32)
        return {"inputs": tokens[self.rows, span], "targets": targets[self.rows, span],
                training.EPOCH_START: start[self.rows]}

    def get_state(self):
        return {"next": self.next}

    def set_state(self, state):
        self.next = state["next"]


class Streams:
    """A carried-state task (`training.CarriedStateTask`): next-token cross-entropy of a
    `SequenceModel` whose state runs on from batch to batch."""

    name = "streams"

    def __init__(self, reset_every_batch: bool = False, interrupt_at: int | None = None):
        self.reset_every_batch, self.interrupt_at = reset_every_batch, interrupt_at

    def dataset(self, data, split, *, process_index=0, process_count=1):
        rows = data.batch_size // process_count
        batches = StreamBatches(data, split, slice(process_index * rows, (process_index + 1) * rows),
                                self.reset_every_batch)
        return _Interrupted(batches, self.interrupt_at) if split == "train" and self.interrupt_at else batches

    def init_carry(self, model, data, split):
        return model.init_state(data.batch_size)

    def loss(self, model, batch, carry):
        # What came in: zero after a restart, the previous batch's state otherwise.
        carry_norm = sum(jnp.abs(x).sum() for x in jax.tree.leaves(carry.layers))
        logits, carry = model(batch["inputs"], carry)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["targets"])
        return nll.mean(), {"carry_norm": carry_norm, "nll_sum": nll.sum(), "tokens": jnp.float32(nll.size)}, carry

    def tokens_per_batch(self, data):
        return data.batch_size * data.segment


class StreamsWithPerplexity(Streams):
    """An `EvaluatingTask`: the perplexity of the whole split, the state carried through it."""

    def evaluate(self, evaluator, data, split):
        nll, tokens, carry = 0.0, 0.0, None
        for batch in self.dataset(data, split, process_index=evaluator.process_index,
                                  process_count=evaluator.process_count):
            values, carry = evaluator(batch, carry)
            nll, tokens = nll + values["nll_sum"], tokens + values["tokens"]
        return {"loss": nll / tokens, "perplexity": math.exp(nll / tokens)}


class Interrupted(Exception):
    pass


class _Interrupted:
    """The train batches, failing before batch `at` (1-based): a run killed between checkpoints."""

    def __init__(self, batches, at):
        self.batches, self.at = batches, at

    def __iter__(self):
        return self

    def __next__(self):
        if self.batches.next + 1 == self.at:
            raise Interrupted(f"before batch {self.at}")
        return next(self.batches)

    def get_state(self):
        return self.batches.get_state()

    def set_state(self, state):
        self.batches.set_state(state)


DATA = StreamData()
MODEL = SequenceConfig(input_vocab=DATA.vocab, output_size=DATA.vocab, model_dim=16, num_layers=1, num_heads=2,
                       head_dim=8, ff_dim=16, dropout=0.0)
LOOP = training.TrainConfig(steps=8, log_every=1, eval_every=100, checkpoint_every=2, progress=False,
                            tensorboard=False, plot=False, test_at_end=False)


def _model(rngs):
    return SequenceModel(MODEL, rngs=rngs)


def _train(task, run_dir, **loop):
    return training.train(task, _model, run_dir, data=DATA, optimizer=training.OptimizerConfig(learning_rate=1e-2),
                          config=dataclasses.replace(LOOP, **loop))


def _log(run_dir, key="loss"):
    return metrics.losses_by_step(metrics.read_jsonl(run_dir / "metrics.jsonl"), key=key)


@pytest.fixture(scope="module")
def carried(tmp_path_factory):
    """8 uninterrupted steps (epochs start at steps 1, 4 and 7)."""
    run_dir = tmp_path_factory.mktemp("carried")
    return run_dir, _train(Streams(), run_dir)


def test_every_task_implements_the_protocol():
    carried = {name for name, task in presets.TASKS.items() if isinstance(task, training.CarriedStateTask)}
    assert all(isinstance(task, training.Task) for task in presets.TASKS.values())
    assert carried == {"lm_full_context"}
    assert isinstance(Streams(), training.CarriedStateTask) and not isinstance(Streams(), training.EvaluatingTask)
    assert isinstance(StreamsWithPerplexity(), training.EvaluatingTask)
    with pytest.raises(TypeError, match="lacks dataset, loss, name, tokens_per_batch"):
        training.train(object(), _model, "unused", data=DATA)


def test_the_state_crosses_batches_and_restarts_each_epoch(carried, tmp_path):
    run_dir, result = carried
    norms = _log(run_dir, "carry_norm")
    assert [s for s, n in norms.items() if n == 0] == [1, 4, 7]          # fresh at each epoch start
    assert all(n > 0 for s, n in norms.items() if s not in (1, 4, 7))    # carried in between
    reset = tmp_path / "reset"
    _train(Streams(reset_every_batch=True), reset, steps=2)
    assert _log(reset, "carry_norm") == {1: 0.0, 2: 0.0}
    losses, reset_losses = _log(run_dir), _log(reset)
    assert reset_losses[1] == losses[1] and reset_losses[2] != losses[2]
    # The carry is the model's state for the global batch, split over the data axis.
    layer_state = jax.tree.leaves(result["carry"].layers)[0]
    assert layer_state.shape[0] == DATA.batch_size and layer_state.sharding.spec == jax.P("data")


def test_no_gradient_crosses_the_batch_boundary():
    task, mesh, sgd = Streams(), training.make_mesh(), optax.sgd(1.0)    # new params = params - grads
    model = _model(nnx.Rngs(0))
    state, shardings = training.init_train_state(model, sgd, seed=0, mesh=mesh)
    graphdef, _, rest = training.split_model(model)
    carry_init, carry_shardings = training.make_carry_init(
        graphdef, rest, lambda m, split: task.init_carry(m, DATA, split), state.params, mesh=mesh)
    step = training.make_train_step(graphdef, rest, task.loss, sgd, optax.constant_schedule(1.0),
                                    shardings=shardings, mesh=mesh, carry_shardings=carry_shardings)
    batches = task.dataset(DATA, "train")
    first, second = (jax.tree.map(jnp.asarray, next(batches)) for _ in range(2))
    state, _, carry = step(state, training.global_batch(first, mesh), carry_init(state.params))
    params, carry = jax.tree.map(np.asarray, (state.params, carry))      # (the step donates them)
    state, out, _ = step(state, training.global_batch(second, mesh), carry)
    grads = jax.tree.map(lambda a, b: a - np.asarray(b), params, state.params)

    def loss_of(params, carry, batch):
        model = nnx.merge(graphdef, params, rest)
        return task.loss(model, batch, carry)

    # The step's gradient treats the carry as a constant ...
    assert_close(float(out["loss"]), float(loss_of(params, carry, second)[0]), "float32_other_form")
    truncated = jax.grad(lambda p: loss_of(p, carry, second)[0])(params)
    assert_close(grads, truncated, "float32_other_form_grad", name="gradients")
    # ... where the gradient through the first batch's state would differ.
    through = jax.grad(lambda p: loss_of(p, loss_of(p, task.init_carry(model, DATA, "train"), first)[2], second)[0])(params)
    differences = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), through, truncated))
    assert max(differences) > 1e-3


class _Float32Position(Streams):
    def loss(self, model, batch, carry):
        loss, values, carry = super().loss(model, batch, carry)
        return loss, values, carry._replace(position=carry.position.astype(jnp.float32))


def test_a_loss_must_return_the_carry_it_was_given(tmp_path):
    with pytest.raises(AssertionError, match="the carry a loss returns must match"):
        _train(_Float32Position(), tmp_path, steps=1)


def test_interrupted_run_resumes_bitwise_with_its_carry(carried, tmp_path):
    run_dir, expected = carried
    with pytest.raises(Interrupted):
        _train(Streams(interrupt_at=6), tmp_path)      # 5 steps done, the last checkpoint at 4
    assert max(_log(tmp_path)) == 5
    result = _train(Streams(), tmp_path)
    chex.assert_trees_all_equal(result["state"], expected["state"])      # params, optimizer, step
    chex.assert_trees_all_equal(result["carry"], expected["carry"])
    assert _log(tmp_path) == _log(run_dir)            # the replayed steps 5 and 6 included


def test_the_loop_calls_a_tasks_own_evaluation(tmp_path):
    task = StreamsWithPerplexity()
    result = _train(task, tmp_path, steps=3, eval_every=3, best_metric="perplexity", test_at_end=True)
    records = metrics.read_jsonl(tmp_path / "metrics.jsonl")
    (valid,) = [r for r in records if r["split"] == "valid"]
    (test,) = [r for r in records if r["split"] == "test"]
    assert result["best"] == valid["perplexity"] and result["best_step"] == 3
    # The same number computed here: every valid batch in turn, the state carried through.
    graphdef, _, rest = training.split_model(_model(nnx.Rngs(0)))
    model = nnx.merge(graphdef, result["state"].params, rest)
    model.eval()
    carry, nll = task.init_carry(model, DATA, "valid"), 0.0
    for batch in task.dataset(DATA, "valid"):
        _, values, carry = task.loss(model, jax.tree.map(jnp.asarray, batch), carry)
        nll += float(values["nll_sum"])
    tokens = DATA.segments * DATA.batch_size * DATA.segment
    assert_close(valid["perplexity"], math.exp(nll / tokens), "float32_other_form")
    assert test["perplexity"] != valid["perplexity"]
