"""tensorflow-datasets builders: built to array_record and read back without TensorFlow.

The small configs of both builders are built once into a temporary folder (no TensorFlow
installed) and every example of every split is compared with the files that the package's
`write_files` writes with the same settings, read with the package's readers.
"""

import importlib.util
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from fastweights.data import code_execution, listops  # noqa: E402
from fastweights.data import tfds_builders as tb  # noqa: E402

SPLITS = ("train", "valid", "test")


def _config(cls, name):
    return next(c for c in cls.BUILDER_CONFIGS if c.name == name)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # The point of these builders: TensorFlow is neither installed nor imported.
    assert importlib.util.find_spec("tensorflow") is None, "tensorflow must not be installed"
    out = tmp_path_factory.mktemp("tfds")
    assert tb.main(["--name", "code_execution/small", "--data-dir", str(out)]) == 0
    tb.build("listops/small", out)
    assert "tensorflow" not in sys.modules
    return out


def _sources(name, data_dir):
    # download=False: read exactly what the fixture built.
    sources = tfds.data_source(name, data_dir=str(data_dir), split=list(SPLITS), download=False)
    return dict(zip(SPLITS, sources))


def test_code_execution_matches_files(data_dir, tmp_path):
    c = _config(tb.CodeExecution, "small")
    code_execution.write_files(tmp_path, c.num_vars, code_length=c.code_length,
                               train_size=c.train_size, valid_size=c.valid_size,
                               test_size=c.test_size, seed=c.seed)
    ref = code_execution.read_dataset(tmp_path, c.num_vars)
    sources = _sources("code_execution/small", data_dir)
    for split in SPLITS:
        src_lines, tgt_lines = (p.read_text().splitlines()
                                for p in code_execution.split_paths(tmp_path, split, c.num_vars))
        r, ds = ref[split], sources[split]
        assert len(ds) == len(r) == {"train": c.train_size, "valid": c.valid_size,
                                     "test": c.test_size}[split] - 1  # last one dropped
        for i in range(len(r)):
            ex, n = ds[i], r.lengths[i]
            assert ex["src"].dtype == ex["tgt"].dtype == np.int32
            np.testing.assert_array_equal(ex["src"], r.src[i, :n])
            np.testing.assert_array_equal(ex["tgt"], r.tgt[i, :n])
            assert ex["src_text"].decode() == src_lines[i]
            assert ex["tgt_text"].decode() == tgt_lines[i]
    builder = tfds.builder("code_execution/small", data_dir=str(data_dir))
    assert builder.info.metadata["src_vocab"] == list(ref["train"].src_vocab)
    assert builder.info.metadata["tgt_vocab"] == list(ref["train"].tgt_vocab)
    assert "tensorflow" not in sys.modules


def test_listops_matches_files(data_dir, tmp_path):
    c = _config(tb.ListOps, "small")
    g = c.generator
    paths = listops.write_files(tmp_path, g.only_depth, train_size=c.train_size,
                                valid_size=c.valid_size, test_size=c.test_size,
                                operators=g.operators, max_args=g.max_args, value_p=g.value_p,
                                max_depth=g.max_depth, seed=g.seed)
    vocab, ref = listops.load_splits(tmp_path, g.only_depth, max_args=g.max_args,
                                     max_depth=g.max_depth)
    sources = _sources("listops/small", data_dir)
    for split in SPLITS:
        lines = paths[split].read_text().splitlines()
        r, ds = ref[split], sources[split]
        assert len(ds) == len(r) == len(lines) == getattr(c, f"{split}_size")
        for i in range(len(r)):
            ex = ds[i]
            assert ex["inputs"].dtype == np.int32
            np.testing.assert_array_equal(ex["inputs"], r.inputs[i])
            assert ex["label"] == r.labels[i]
            assert ex["length"] == r.lengths[i] == len(ex["inputs"])
            assert ex["text"].decode() == lines[i]
    assert tfds.builder("listops/small", data_dir=str(data_dir)).info.metadata["vocab"] == \
        vocab.tokens
    assert "tensorflow" not in sys.modules


def test_read_from_files_without_the_builder_code(data_dir):
    # What a reader that never imports this package gets: tfds's read-only builder.
    builder = tfds.builder_from_directory(data_dir / "listops" / "small" / "1.0.0")
    assert type(builder).__name__ == "ReadOnlyBuilder"
    assert builder.info.file_format.value == "array_record"
    test = builder.as_data_source("test")
    registered = tfds.data_source("listops/small", data_dir=str(data_dir), split="test",
                                  download=False)
    assert len(test) == len(registered)
    for i in range(len(test)):
        assert test[i]["text"] == registered[i]["text"]
    # The vocabulary is stored with the data (metadata.json), not rebuilt by code.
    assert builder.info.metadata["vocab"] == \
        tfds.builder("listops/small", data_dir=str(data_dir)).info.metadata["vocab"]


def test_configs():
    assert [c.name for c in tb.CodeExecution.BUILDER_CONFIGS] == ["vars3", "vars5", "small"]
    assert [c.name for c in tb.ListOps.BUILDER_CONFIGS] == ["depth10", "depth15", "small"]
    vars3, vars5 = (_config(tb.CodeExecution, n) for n in ("vars3", "vars5"))
    assert (vars3.num_vars, vars5.num_vars) == (3, 5)
    for c in (vars3, vars5):  # the paper preset
        assert (c.code_length, c.seed) == (code_execution.PAPER_CODE_LENGTH,
                                           code_execution.PAPER_SEED)
        assert (c.train_size, c.valid_size, c.test_size) == tuple(
            code_execution.PAPER_SIZES[s] for s in SPLITS)
    for name, only_depth in (("depth10", 11), ("depth15", 16)):
        c = _config(tb.ListOps, name)
        assert c.generator == listops.ListOpsConfig(only_depth=only_depth)
        assert (c.train_size, c.valid_size, c.test_size) == tuple(listops.SIZES[s]
                                                                  for s in SPLITS)


def test_token_missing_from_train_is_an_error(tmp_path):
    # As in the official loaders: the vocabulary comes from train alone. One train program
    # of two statements cannot hold every token of 30 valid programs.
    config = tb.CodeExecutionBuilderConfig(name="tiny", code_length=2, train_size=2,
                                           valid_size=30, test_size=2)
    builder = tb.CodeExecution(config=config, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="does not occur in the train split"):
        builder.download_and_prepare()
