"""Sequential ListOps (PAPER_SPEC 3.3, 5.2): classify the value (0-9) of a nested
MIN/MAX/FIRST expression from the output at its last token. Loss: cross-entropy at that
position; metric: accuracy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from fastweights.data import listops as text
from fastweights.nn.config import SequenceConfig
from fastweights.tasks.materialised import DEFAULT_CACHE, MaterialisedTask, examples_from_arrays


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Defaults: the paper's depth-10 set (`only_depth` 11; seed 42, 10000/1000/1000).

    Attributes:
      data_dir: a folder with the official `{split}_a5d20max401min299dep{k}.txt` files to
        read instead of generating.
    """
    only_depth: int = 11
    max_args: int = 5
    operators: tuple[str, ...] = ("MIN", "MAX", "FIRST")
    value_p: float = 0.25
    max_depth: int = 20
    train_size: int = 10_000
    valid_size: int = 1_000
    test_size: int = 1_000
    seed: int = 42
    data_dir: str | None = None
    cache_dir: str = DEFAULT_CACHE
    batch_size: int = 64
    shuffle_seed: int = 11


class ListOps(MaterialisedTask):
    """The task object (`TASK` below): a `fastweights.training.Task` without carried state."""

    name = "listops"
    DataConfig = DataConfig
    ModelConfig = SequenceConfig
    pad = {"inputs": 0}

    def write_text(self, data: DataConfig, out_dir) -> None:
        text.write_files(out_dir, data.only_depth, train_size=data.train_size, valid_size=data.valid_size,
                         test_size=data.test_size, operators=data.operators, max_args=data.max_args,
                         value_p=data.value_p, max_depth=data.max_depth, seed=data.seed, progress=True)

    def read_text(self, data: DataConfig, text_dir):
        if data.data_dir:       # official files: the train vocabulary, unknown tokens refused
            vocab, splits = text.load_splits(text_dir, data.only_depth, max_args=data.max_args,
                                             max_depth=data.max_depth)
        else:
            # A small generated set may lack a token in train; it gets an id after the train ones.
            config = text.ListOpsConfig(only_depth=data.only_depth, max_args=data.max_args,
                                        max_depth=data.max_depth)
            paths = {s: Path(text_dir) / config.file_name(s) for s in text.SPLITS}
            vocab = text.build_vocab(paths["train"])
            for split in ("valid", "test"):
                for token in text.build_vocab(paths[split]).tokens:
                    vocab.add(token)
            splits = {s: text.read_file(p, vocab) for s, p in paths.items()}
        out = {name: examples_from_arrays(inputs=s.inputs, length=s.lengths, label=s.labels)
               for name, s in splits.items()}
        return {"source": list(vocab.tokens), "classes": text.NUM_CLASSES}, out

    def model_config(self, data: DataConfig, model: SequenceConfig, *, prepare: bool = True) -> SequenceConfig:
        """`model` with the final-position classifier and, with `prepare`, the vocabulary
        size and classes of the prepared data (generated first if needed); `prepare=False`
        keeps the model's own sizes and touches no file."""
        model = dataclasses.replace(model, head="final")
        if not prepare:
            return model
        vocab = self.prepare(data)["vocab"]
        return dataclasses.replace(model, input_vocab=len(vocab["source"]), output_size=vocab["classes"])

    def loss(self, model, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        logits, _ = model(batch["inputs"])
        index = jnp.maximum(batch["length"] - 1, 0)            # the official read-out position
        final = jnp.take_along_axis(logits, index[:, None, None], axis=1)[:, 0].astype(jnp.float32)
        weight = batch.get("weight", jnp.ones(index.shape, jnp.float32))
        ce = optax.softmax_cross_entropy_with_integer_labels(final, batch["label"])
        total = jnp.maximum(weight.sum(), 1.0)
        loss = jnp.sum(ce * weight) / total
        accuracy = jnp.sum((jnp.argmax(final, -1) == batch["label"]) * weight) / total
        return loss, {"loss": loss, "accuracy": accuracy}


TASK = ListOps()
