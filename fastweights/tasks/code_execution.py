"""Code execution (PAPER_SPEC 3.3, 5.1): predict, at every token of a program, what it
prints (`_` where nothing is printed). Loss: cross-entropy over every non-pad target
position, `_` included (official); metrics: sequence-level accuracy (every position right;
model selection and the reported number), print-token accuracy and no-op accuracy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fastweights.data import code_execution as text
from fastweights.nn.config import SequenceConfig
from fastweights.tasks.materialised import DEFAULT_CACHE, MaterialisedTask, examples_from_arrays


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
    """The task object (`TASK` below): a `fastweights.training.Task` without carried state."""

    name = "code_execution"
    DataConfig = DataConfig
    ModelConfig = SequenceConfig
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

    def model_config(self, data: DataConfig, model: SequenceConfig, *, prepare: bool = True) -> SequenceConfig:
        """`model` with a prediction at every position and, with `prepare`, the vocabulary
        sizes of the prepared data (generated first if needed); `prepare=False` keeps the
        model's own sizes and touches no file."""
        model = dataclasses.replace(model, head="per_position")
        if not prepare:
            return model
        vocab = self.prepare(data)["vocab"]
        return dataclasses.replace(model, input_vocab=len(vocab["source"]), output_size=len(vocab["target"]))

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


TASK = CodeExecution()
