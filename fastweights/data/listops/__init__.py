"""Sequential ListOps (Irie et al. 2021): generator and reader of the official text format.

An example is a prefix expression over the digits 0..9, e.g. `[MAX 3 [MIN 4 5 ] 7 ]` (value
7). Each line of a data file is `"{length} {target} {tokens}"`: `length` is the number of
expression tokens, `target` the value of the expression; single spaces, no trailing space.

Generator. With the defaults (the paper preset) it reproduces the official script
(`algorithmic/utils/nyu_listops.py` of IDSIA/recurrent-fwp) byte for byte: one
`random.Random(seed)` stream for train, valid and test in that order; a tree node at level
`d` (root 1) draws `r = random()` when `d < max_depth` (else `r = 1`) and is a leaf
`choice(range(10))` when `r > value_p and d > 1` (the root draws `r` too but is always an
operator); an operator node draws `randint(2, max_args)` arguments, generates them in order
at level `d + 1`, and only then draws its operator `choice(operators)`. A tree is kept when
its deepest leaf is at level `only_depth` (rejected trees still consume their draws), so
`only_depth = k` means an operator nesting depth of `k - 1` ("depth 10" is `only_depth=11`).
The file names carry `max401min299` like the official ones although no length filter exists.

Reader. `build_vocab` / `read_file` / `load_splits` follow the official loader
(`algorithmic/listops_data.py`): the vocabulary is built from the train file in order of
first occurrence, without special tokens; padding uses id 0 (which is also a real token:
harmless, because a causal model is read out at index `length - 1` only).

Command line: `python -m fastweights.data.listops --out DIR --only-depth 11`.

Modules: `generator` (configs, presets, expressions and `write_files`), `reader` (the text
files as ids), `format` (split and file names, tokens shared by both), `cli` (the command
line). The public names are re-exported here.
"""

from fastweights.data.listops.cli import main
from fastweights.data.listops.format import CLOSE, NUM_CLASSES, SPLITS, file_name
from fastweights.data.listops.generator import (
    OPERATORS, PRESETS, SIZES, Example, ListOpsConfig, evaluate, generate_examples,
    generate_splits, write_files)
from fastweights.data.listops.reader import (
    ListOpsFormatError, ListOpsSplit, Vocabulary, build_vocab, load_splits, read_file)

__all__ = [
    "CLOSE", "Example", "ListOpsConfig", "ListOpsFormatError", "ListOpsSplit", "NUM_CLASSES",
    "OPERATORS", "PRESETS", "SIZES", "SPLITS", "Vocabulary", "build_vocab", "evaluate",
    "file_name", "generate_examples", "generate_splits", "load_splits", "main", "read_file",
    "write_files",
]
