"""Code execution (learning to execute): the generator, reader and command line of `generator.py`
(moved from `data/code_execution.py`; its docstring describes the data), re-exported here."""

from fastweights.data.code_execution.generator import (
    MAX_VALUE, MIN_VALUE, NO_OP, NUM_CONSTANTS, PAPER_CODE_LENGTH, PAPER_SEED, PAPER_SIZES,
    SPLITS, SRC_PAD_ID, TGT_PAD_ID, VAR_NAMES, CodeExecutionSplit, DataFormatError, Example,
    build_vocab, generate, generate_program, generate_split, main, read_dataset, read_pair,
    read_split, read_vocabularies, split_paths, write_files)

__all__ = [
    "CodeExecutionSplit", "DataFormatError", "Example", "build_vocab", "generate",
    "generate_program", "generate_split", "main", "read_dataset", "read_pair", "read_split",
    "read_vocabularies", "split_paths", "write_files",
]
