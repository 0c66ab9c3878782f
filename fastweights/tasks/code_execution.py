"""Code execution (PAPER_SPEC 3.3, 5.1): predict, at every token of a program, what it
prints (`_` where nothing is printed). Loss: cross-entropy over every non-pad target
position, `_` included (official); metrics: sequence-level accuracy (every position right;
model selection and the reported number), print-token accuracy and no-op accuracy.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fastweights.data import code_execution as text
from fastweights.nn import presets as model_presets
from fastweights.nn.config import SequenceConfig
from fastweights.tasks.materialised import MaterialisedTask, examples_from_arrays

DEFAULT_CACHE = os.environ.get("FASTWEIGHTS_CACHE", "~/.cache/fastweights")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Defaults: the paper's 3-variable set (seed 42, 100 statements, 10000/1000/1000).

    Attributes:
      data_dir: a folder with official `{split}_{n}.src/.tgt` files (e.g. the authors'
        dump) to read instead of generating.
      cache_dir: where generated text and prepared array_record files are kept.
      shuffle_seed: of the per-epoch shuffling (official `--seed` 11).
    """
    num_vars: int = 3
    code_length: int = text.PAPER_CODE_LENGTH
    train_size: int = text.PAPER_SIZES["train"]
    valid_size: int = text.PAPER_SIZES["valid"]
    test_size: int = text.PAPER_SIZES["test"]
    seed: int = text.PAPER_SEED
    data_dir: str | None = None
    cache_dir: str = DEFAULT_CACHE
    batch_size: int = 64
    shuffle_seed: int = 11


class CodeExecution(MaterialisedTask):
    name = "code_execution"
    DataConfig = DataConfig
    pad = {"inputs": text.SRC_PAD_ID, "targets": text.TGT_PAD_ID, "printed": 0}

    def write_text(self, data: DataConfig, out_dir) -> None:
        text.write_files(out_dir, data.num_vars, code_length=data.code_length,
                         train_size=data.train_size, valid_size=data.valid_size,
                         test_size=data.test_size, seed=data.seed)

    def read_text(self, data: DataConfig, text_dir):
        if data.data_dir:       # official files: the train vocabularies, unknown tokens refused
            splits = text.read_dataset(text_dir, data.num_vars)
        else:
            # Generated small sets may print a value in valid/test that train never does;
            # such tokens get ids after the train ones (train ids are as official).
            vocabs = []
            for side in (0, 1):
                tokens = dict.fromkeys(text.build_vocab(text.split_paths(text_dir, "train", data.num_vars)[side]))
                for split in ("valid", "test"):
                    tokens.update(dict.fromkeys(text.build_vocab(text.split_paths(text_dir, split, data.num_vars)[side])))
                vocabs.append(tuple(tokens))
            splits = {split: text.read_split(text_dir, split, data.num_vars, src_vocab=vocabs[0], tgt_vocab=vocabs[1])
                      for split in text.SPLITS}
        train = splits["train"]
        no_op = train.tgt_vocab.index(text.NO_OP)
        vocab = {"source": list(train.src_vocab), "target": list(train.tgt_vocab), "no_op_id": no_op}
        out = {}
        for name, split in splits.items():
            rows = [(split.src[i, :n], split.tgt[i, :n]) for i, n in enumerate(split.lengths)]
            out[name] = examples_from_arrays(inputs=[r[0] for r in rows], targets=[r[1] for r in rows],
                                             printed=[(r[1] != no_op).astype(np.int32) for r in rows])
        return vocab, out

    def model_config(self, data: DataConfig, model: SequenceConfig) -> SequenceConfig:
        vocab = self.prepare(data)["vocab"]
        return dataclasses.replace(model, input_vocab=len(vocab["source"]),
                                   output_size=len(vocab["target"]), head="per_position")

    def loss(self, model, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        logits, _ = model(batch["inputs"])
        logits = logits.astype(jnp.float32)
        targets = batch["targets"]
        mask = targets != text.TGT_PAD_ID
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets, 0))
        loss = jnp.sum(jnp.where(mask, ce, 0.0)) / jnp.maximum(mask.sum(), 1)
        correct = jnp.argmax(logits, -1) == targets
        printed = mask & (batch["printed"] > 0)
        weight = batch.get("weight", jnp.ones(targets.shape[:1], jnp.float32))
        sequence_ok = jnp.all(correct | ~mask, axis=-1) & (weight > 0)
        ratio = lambda hits, total: jnp.sum(hits) / jnp.maximum(jnp.sum(total), 1)  # noqa: E731
        return loss, {"loss": loss, "sequence_accuracy": ratio(sequence_ok, weight),
                      "print_accuracy": ratio(correct & printed, printed),
                      "no_op_accuracy": ratio(correct & mask & ~printed, mask & ~printed)}

    def experiments(self) -> dict[str, Any]:
        return _experiments(self)


TASK = CodeExecution()

# The paper's models (PAPER_SPEC 8.2) and the small CPU models of `make run`.
PAPER_MODELS = ("lstm", "transformer", "linear_transformer", "delta_net", "delta_rnn", "rdn")
SMALL_MODELS = ("linear_transformer", "delta_net", "delta_rnn")


def _experiments(task) -> dict[str, Any]:
    from fastweights.experiment import Experiment
    from fastweights.training import OptimizerConfig, TrainConfig
    # Official: Adam (0.9, 0.995), eps 1e-9, lr 3e-4 constant, no clipping, 200 epochs of
    # batch 64, validation every epoch, best by sequence accuracy.
    paper_adam = OptimizerConfig(learning_rate=3e-4, b1=0.9, b2=0.995, eps=1e-9)
    best = dict(best_metric="sequence_accuracy", best_mode="max")
    out = {}
    for num_vars in (3, 5):
        data = DataConfig(num_vars=num_vars)
        epoch = (data.train_size - 1) // data.batch_size
        loop = TrainConfig(steps=200 * epoch, eval_every=epoch, checkpoint_every=epoch, log_every=50, **best)
        for name in PAPER_MODELS:
            out[f"paper_{num_vars}vars_{name}"] = Experiment(
                task.name, data, model_presets.get(f"algorithmic_{name}"), paper_adam, loop)
    # CPU-sized: 3 variables, 8-statement programs, 2 layers of 64, batch 32.
    small_data = DataConfig(code_length=8, train_size=4001, valid_size=501, test_size=501, batch_size=32)
    small_loop = TrainConfig(steps=1200, eval_every=200, checkpoint_every=200, log_every=25, **best)
    for name in SMALL_MODELS:
        model = model_presets.get(f"algorithmic_{name}", num_layers=2, model_dim=64, num_heads=4,
                                  head_dim=16, ff_dim=256, dropout=0.0)
        out[f"small_{name}"] = Experiment(task.name, small_data, model,
                                          OptimizerConfig(learning_rate=1e-3, b1=0.9, b2=0.995, eps=1e-9),
                                          small_loop)
    tiny_data = DataConfig(code_length=4, train_size=257, valid_size=65, test_size=65, batch_size=32)
    out["tiny"] = Experiment(task.name, tiny_data,
                             model_presets.get("algorithmic_delta_net", num_layers=1, model_dim=32,
                                               num_heads=2, head_dim=16, ff_dim=64, dropout=0.0),
                             OptimizerConfig(learning_rate=3e-3),
                             TrainConfig(steps=60, eval_every=30, checkpoint_every=30, **best))
    return out
