"""tensorflow-datasets builders for code execution and ListOps, built and read without TensorFlow.

Two `tfds.core.GeneratorBasedBuilder`s over the generators of this package:

  code_execution/vars3, /vars5  the paper's data (`fastweights.data.code_execution`: seed 42,
                                100 statements, 10000/1000/1000 programs generated, the last
                                of each split dropped: 9999/999/999 examples)
  code_execution/small          3 variables, 5 statements, a few examples (tests)
  listops/depth10, /depth15     the paper's data (`fastweights.data.listops`: only_depth 11
                                and 16, 10000/1000/1000 examples)
  listops/small                 the `depth3` preset (only_depth 4, 3 arguments), few examples

Every split holds exactly the examples of the official generator in file order (keys are the
line indices and shuffling is disabled). Token ids use the official vocabularies: the tokens of
the train split in order of first occurrence, no special tokens, as the readers
`code_execution.read_dataset` / `listops.load_splits` build them; they are stored in
`builder.info.metadata` (`src_vocab`/`tgt_vocab`, resp. `vocab`). A token of valid/test that
train lacks is an error, as in the official loaders.

Features (unpadded; a data source returns int32 arrays, Python ints for scalars, bytes for
text):
  code_execution: `src`, `tgt` int32 [L] ids; `src_text`, `tgt_text` the file lines (with
    their trailing space, without the newline)
  listops: `inputs` int32 [L] ids; `label` int32 (the value); `length` int32 (= L);
    `text` the file line `"{length} {label} {tokens}"`

No TensorFlow is needed: the builders write array_record (their default file format; TFRecord
needs TensorFlow) and are read through tfds's random-access data sources. Never use
`tfds.load` / `as_dataset` (they need TensorFlow).

Build (nothing is downloaded; the paper configs take minutes, depth15 the longest):

  python -m fastweights.data.tfds_builders --name code_execution/vars3 --data-dir DIR

or from Python: `build("listops/depth10", DIR)`. Read:

  import tensorflow_datasets as tfds
  from fastweights.data import tfds_builders  # registers the names
  train = tfds.data_source("code_execution/vars3", split="train", data_dir=DIR)
  train[0]["src"], len(train)

`tfds.data_source` also builds a registered dataset that is missing from DIR (as array_record).
Importing this module registers `code_execution` and `listops` with tfds; without the import,
`tfds.data_source(name, data_dir=DIR, download=False)` or
`tfds.builder_from_directory(DIR/NAME/CONFIG/1.0.0)` still read an already built dataset from
its files, vocabularies (`info.metadata`) included.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from fastweights.data import code_execution, listops

__all__ = ["CodeExecution", "CodeExecutionBuilderConfig", "ListOps", "ListOpsBuilderConfig",
           "build", "main"]

SPLITS = ("train", "valid", "test")
FILE_FORMAT = "array_record"
_CITATION = """\
@inproceedings{irie2021going,
  title={Going Beyond Linear Transformers with Recurrent Fast Weight Programmers},
  author={Irie, Kazuki and Schlag, Imanol and Csord{\\'a}s, R{\\'o}bert and
          Schmidhuber, J{\\"u}rgen},
  booktitle={Advances in Neural Information Processing Systems},
  year={2021}
}"""
_HOMEPAGE = "https://github.com/IDSIA/recurrent-fwp"


def _first_occurrence(token_lists: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The distinct tokens in order of first occurrence (the official vocabulary order)."""
    seen: dict[str, None] = {}
    for tokens in token_lists:
        seen.update(dict.fromkeys(tokens))
    return tuple(seen)


def _encoder(vocab: Sequence[str], split: str, what: str):
    table = {t: i for i, t in enumerate(vocab)}

    def encode(tokens: Sequence[str], index: int) -> np.ndarray:
        try:
            return np.fromiter(map(table.__getitem__, tokens), np.int32, len(tokens))
        except KeyError as e:
            # The official loaders fail the same way: the vocabulary comes from train only.
            raise ValueError(f"{split} example {index}: {what} token {e.args[0]!r} does not "
                             "occur in the train split (more train examples avoid this)") from None
    return encode


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared set-up: array_record by default, order kept, nothing to download."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def __init__(self, *, file_format: str | None = None, **kwargs):
        # tfds defaults to TFRecord, which needs TensorFlow to write.
        super().__init__(file_format=file_format or FILE_FORMAT, **kwargs)

    def _make_info(self, features: dict) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            # Keys are line indices: keep file order instead of shuffling by key hash.
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),  # the vocabularies, known after generation
            homepage=_HOMEPAGE,
            citation=_CITATION,
        )


def _ids() -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=(None,), dtype=np.int32)


# ----------------------------------------------------------------------------------------------
# Code execution


@dataclasses.dataclass(eq=False, kw_only=True)
class CodeExecutionBuilderConfig(tfds.core.BuilderConfig):
    """Settings of `code_execution.generate` (sizes count generated programs; the official
    generator drops the last one of each split)."""
    num_vars: int = 3
    code_length: int = code_execution.PAPER_CODE_LENGTH
    train_size: int = code_execution.PAPER_SIZES["train"]
    valid_size: int = code_execution.PAPER_SIZES["valid"]
    test_size: int = code_execution.PAPER_SIZES["test"]
    seed: int = code_execution.PAPER_SEED


class CodeExecution(_Builder):
    """Code execution (learning to execute), as the official generator writes it."""

    name = "code_execution"
    BUILDER_CONFIGS = [
        CodeExecutionBuilderConfig(name="vars3", num_vars=3,
                                   description="Paper data, 3 variables, 100 statements."),
        CodeExecutionBuilderConfig(name="vars5", num_vars=5,
                                   description="Paper data, 5 variables, 100 statements."),
        # Sizes chosen so that valid/test use no token unseen in train.
        CodeExecutionBuilderConfig(name="small", num_vars=3, code_length=5, train_size=40,
                                   valid_size=6, test_size=6,
                                   description="3 variables, 5 statements, few examples."),
    ]
    DEFAULT_CONFIG_NAME = "vars3"

    def _info(self) -> tfds.core.DatasetInfo:
        return self._make_info({"src": _ids(), "tgt": _ids(), "src_text": tfds.features.Text(),
                                "tgt_text": tfds.features.Text()})

    def _split_generators(self, dl_manager):
        del dl_manager  # generated from the seed
        c = self.builder_config
        lines: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
        for ex in code_execution.generate(c.num_vars, code_length=c.code_length,
                                          train_size=c.train_size, valid_size=c.valid_size,
                                          test_size=c.test_size, seed=c.seed):
            lines[ex.split].append((ex.src, ex.tgt))
        src_vocab = _first_occurrence(src.split() for src, _ in lines["train"])
        tgt_vocab = _first_occurrence(tgt.split() for _, tgt in lines["train"])
        self.info.metadata.update(src_vocab=list(src_vocab), tgt_vocab=list(tgt_vocab))
        return {s: self._generate_examples(lines[s], s, src_vocab, tgt_vocab) for s in SPLITS}

    def _generate_examples(self, lines, split, src_vocab, tgt_vocab):
        enc_src = _encoder(src_vocab, split, "source")
        enc_tgt = _encoder(tgt_vocab, split, "target")
        for i, (src, tgt) in enumerate(lines):
            yield i, {"src": enc_src(src.split(), i), "tgt": enc_tgt(tgt.split(), i),
                      "src_text": src, "tgt_text": tgt}


# ----------------------------------------------------------------------------------------------
# ListOps


@dataclasses.dataclass(eq=False, kw_only=True)
class ListOpsBuilderConfig(tfds.core.BuilderConfig):
    """A `listops.ListOpsConfig` and the number of examples per split."""
    generator: listops.ListOpsConfig = listops.ListOpsConfig()
    train_size: int = listops.SIZES["train"]
    valid_size: int = listops.SIZES["valid"]
    test_size: int = listops.SIZES["test"]


class ListOps(_Builder):
    """Sequential ListOps, as the official generator writes it."""

    name = "listops"
    BUILDER_CONFIGS = [
        ListOpsBuilderConfig(name="depth10", generator=listops.PRESETS["depth10"],
                             description="Paper data, depth 10 (only_depth 11)."),
        ListOpsBuilderConfig(name="depth15", generator=listops.PRESETS["depth15"],
                             description="Paper data, depth 15 (only_depth 16)."),
        ListOpsBuilderConfig(name="small", generator=listops.PRESETS["depth3"], train_size=30,
                             valid_size=6, test_size=6,
                             description="Depth 3 (only_depth 4, 3 arguments), few examples."),
    ]
    DEFAULT_CONFIG_NAME = "depth10"

    def _info(self) -> tfds.core.DatasetInfo:
        return self._make_info({"inputs": _ids(), "label": np.int32, "length": np.int32,
                                "text": tfds.features.Text()})

    def _split_generators(self, dl_manager):
        del dl_manager  # generated from the seed
        c = self.builder_config
        sizes = {"train": c.train_size, "valid": c.valid_size, "test": c.test_size}
        examples: dict[str, list[listops.Example]] = {s: [] for s in SPLITS}
        for split, ex in listops.generate_splits(c.generator, sizes):
            examples[split].append(ex)
        vocab = _first_occurrence(ex.tokens for ex in examples["train"])
        self.info.metadata.update(vocab=list(vocab))
        return {s: self._generate_examples(examples[s], s, vocab) for s in SPLITS}

    def _generate_examples(self, examples, split, vocab):
        encode = _encoder(vocab, split, "input")
        for i, ex in enumerate(examples):
            yield i, {"inputs": encode(ex.tokens, i), "label": ex.target, "length": ex.length,
                      "text": ex.line()}


# ----------------------------------------------------------------------------------------------
# Building


def build(name: str, data_dir: str | os.PathLike) -> tfds.core.DatasetBuilder:
    """Build `name` ("code_execution/vars3", ...) into `data_dir` as array_record (a no-op if
    already built); returns the builder (`builder.as_data_source(split)` reads it)."""
    builder = tfds.builder(name, data_dir=os.fspath(data_dir))
    builder.download_and_prepare(
        file_format=FILE_FORMAT,
        # Nothing to fetch: never look for a prepared copy on GCS.
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def _names() -> list[str]:
    return [f"{cls.name}/{c.name}" for cls in (CodeExecution, ListOps)
            for c in cls.BUILDER_CONFIGS]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastweights.data.tfds_builders",
        description="Build a tensorflow-datasets dataset (array_record, no TensorFlow needed).")
    parser.add_argument("--name", required=True, choices=_names(), help="dataset/config")
    parser.add_argument("--data-dir", required=True, help="tfds data folder (created)")
    args = parser.parse_args(argv)
    builder = build(args.name, args.data_dir)
    print(builder.data_dir)
    for split, info in builder.info.splits.items():
        print(f"{split}: {info.num_examples} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
