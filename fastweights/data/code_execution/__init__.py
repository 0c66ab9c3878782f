"""Code execution (learning to execute): a generator reproducing the official data, a reader.

A program is one line of `code_length` statements over `num_vars` variables (the first of
`x y z a b`), tokens separated by single spaces:

  assign       `v = c ;`          c in 0..9
  inc/dec      `v ++ ;` `v -- ;`  values stay in [-8, 16]: an out-of-range step flips the operator
  print        `print v ;`        the target at `;` is the value of v
  conditional  `if v < c : S` or `if v > c : S`, S one of the three statements above

The target line has one token per source token: `_` everywhere except at the `;` of a print,
which holds the printed value (or `_` when the print sits under a false condition). The first
statement is always an assignment and the last a print; only assigned variables are read.

Ground-truth quirks of the official generator (IDSIA/recurrent-fwp,
`algorithmic/utils/data_generator.py`), reproduced here: an assignment under a true condition
takes effect only if the variable has never been assigned (re-assigning is a no-op); the
++/-- text under a false condition is still chosen by the bound check on the current value.

With the paper preset (seed 42, 100 statements, 10000/1000/1000 examples) `write_files`
writes byte for byte the official `{split}_{num_vars}.{src,tgt}` files: the three splits come
from one `random.Random(seed)` stream in the order train, valid, test; the last example of each
split is generated but not written (9999/999/999 lines); every line ends with a space before
the newline. Only `Random.randrange` is drawn, like the official script, so both change together
if a Python release ever changes `randrange`.

Reader: `read_split` / `read_dataset` load such files (also the authors' dumped datasets) as
the official loader does: vocabularies from the train files in first-occurrence order, no
special tokens; each split is padded to the longest line of its own file, the source with id 0
(a real token id: harmless, the model is causal and the padded targets are ignored), the
target with -1.

Command line: `python -m fastweights.data.code_execution --out DIR --num-vars 3`.

Modules: `generator` (programs and `write_files`), `reader` (the text files as arrays),
`format` (split and file names, shared by both), `cli` (the command line). Everything is
re-exported here (public names only).
"""

from fastweights.data.code_execution.cli import main
from fastweights.data.code_execution.format import NO_OP, SPLITS, split_paths
from fastweights.data.code_execution.generator import (
    MAX_VALUE, MIN_VALUE, NUM_CONSTANTS, PAPER_CODE_LENGTH, PAPER_SEED, PAPER_SIZES, VAR_NAMES,
    Example, generate, generate_program, generate_split, write_files)
from fastweights.data.code_execution.reader import (
    SRC_PAD_ID, TGT_PAD_ID, CodeExecutionSplit, DataFormatError, build_vocab, read_dataset,
    read_pair, read_split, read_vocabularies)

__all__ = [
    "CodeExecutionSplit", "DataFormatError", "Example", "build_vocab", "generate",
    "generate_program", "generate_split", "main", "read_dataset", "read_pair", "read_split",
    "read_vocabularies", "split_paths", "write_files",
]
