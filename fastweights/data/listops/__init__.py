"""Sequential ListOps: the generator, reader and command line of `generator.py` (moved from
`data/listops.py`; its docstring describes the data), re-exported here."""

from fastweights.data.listops.generator import (
    CLOSE, NUM_CLASSES, OPERATORS, PRESETS, SIZES, SPLITS, Example, ListOpsConfig,
    ListOpsFormatError, ListOpsSplit, Vocabulary, build_vocab, evaluate, generate_examples,
    generate_splits, load_splits, main, read_file, write_files)

__all__ = [
    "CLOSE", "Example", "ListOpsConfig", "ListOpsFormatError", "ListOpsSplit", "NUM_CLASSES",
    "OPERATORS", "PRESETS", "SIZES", "SPLITS", "Vocabulary", "build_vocab", "evaluate",
    "generate_examples", "generate_splits", "load_splits", "main", "read_file", "write_files",
]
