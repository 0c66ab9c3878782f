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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np

__all__ = [
    "CodeExecutionSplit", "DataFormatError", "Example", "build_vocab", "generate",
    "generate_program", "generate_split", "main", "read_dataset", "read_pair", "read_split",
    "read_vocabularies", "split_paths", "write_files",
]

VAR_NAMES = ("x", "y", "z", "a", "b")
SPLITS = ("train", "valid", "test")
NO_OP = "_"
MIN_VALUE, MAX_VALUE = -8, 16  # inc/dec never leaves this range
NUM_CONSTANTS = 10  # assigned values and condition constants are 0..9
SRC_PAD_ID = 0
TGT_PAD_ID = -1

PAPER_SEED = 42
PAPER_CODE_LENGTH = 100
PAPER_SIZES = {"train": 10000, "valid": 1000, "test": 1000}

_DIGITS = tuple(str(c) for c in range(NUM_CONSTANTS))
_VALUE_STR = {v: str(v) for v in range(MIN_VALUE, MAX_VALUE + 1)}
_NO_OPS = tuple((NO_OP,) * n for n in range(6))


class Example(NamedTuple):
    """One generated program: its split, index in the split, and both lines (without `\\n`)."""
    split: str
    index: int
    src: str
    tgt: str


class DataFormatError(ValueError):
    """A malformed line in a code-execution text file (the message names file and line)."""


def _check_args(num_vars: int, code_length: int) -> None:
    if not 1 <= num_vars <= len(VAR_NAMES):
        raise ValueError(f"num_vars must be in 1..{len(VAR_NAMES)}, got {num_vars}")
    if code_length < 1:
        raise ValueError(f"code_length must be >= 1, got {code_length}")


def generate_program(rng: random.Random, num_vars: int = 3,
                     code_length: int = PAPER_CODE_LENGTH) -> tuple[str, str]:
    """Draw one program from `rng`; returns the (src, tgt) lines, each with its trailing space.

    The draws, in order, per statement: the kind (`randrange(4)`: assign, inc/dec, print,
    conditional; not drawn for the first and last statement); assign: variable, value; inc/dec:
    index into the assigned variables (in order of first assignment), direction (0 = ++);
    print: index; conditional: comparison (0 = `<`), index, constant, then the inner statement's
    kind (`randrange(3)`) and its draws as above.
    """
    _check_args(num_vars, code_length)
    drw = rng.randrange
    names = VAR_NAMES
    value = [0] * num_vars
    assigned: list[int] = []  # in order of first effective assignment: indexed by draws
    src: list[str] = []
    tgt: list[str] = []

    def simple(op: int, apply: bool, conditional: bool) -> None:
        if op == 0:  # assign
            v = drw(num_vars)
            if not conditional and v not in assigned:
                assigned.append(v)
            c = drw(NUM_CONSTANTS)
            if not conditional:
                value[v] = c
            elif apply and v not in assigned:
                # Official quirk: a true conditional assignment only initialises a variable.
                assigned.append(v)
                value[v] = c
            src.extend((names[v], "=", _DIGITS[c], ";"))
            tgt.extend(_NO_OPS[4])
        elif op == 1:  # inc/dec
            v = assigned[drw(len(assigned))]
            inc = drw(2) == 0
            # Out of range: flip the operator (checked even when the step is not applied).
            if inc and value[v] + 1 > MAX_VALUE or not inc and value[v] - 1 < MIN_VALUE:
                inc = not inc
            if apply:
                value[v] += 1 if inc else -1
            src.extend((names[v], "++" if inc else "--", ";"))
            tgt.extend(_NO_OPS[3])
        else:  # print
            v = assigned[drw(len(assigned))]
            src.extend(("print", names[v], ";"))
            tgt.extend((NO_OP, NO_OP, _VALUE_STR[value[v]] if apply else NO_OP))

    last = code_length - 1
    for i in range(code_length):
        op = 0 if i == 0 else 2 if i == last else drw(4)
        if op < 3:
            simple(op, True, False)
            continue
        greater = drw(2) == 1
        v = assigned[drw(len(assigned))]
        c = drw(NUM_CONSTANTS)
        src.extend(("if", names[v], ">" if greater else "<", _DIGITS[c], ":"))
        tgt.extend(_NO_OPS[5])
        simple(drw(3), value[v] > c if greater else value[v] < c, True)
    return " ".join(src) + " ", " ".join(tgt) + " "


def _sizes(train_size: int, valid_size: int, test_size: int) -> dict[str, int]:
    sizes = {"train": train_size, "valid": valid_size, "test": test_size}
    for split, n in sizes.items():
        if n < 0:
            raise ValueError(f"{split}_size must be >= 0, got {n}")
    return sizes


def generate(num_vars: int = 3, *, code_length: int = PAPER_CODE_LENGTH,
             train_size: int = PAPER_SIZES["train"], valid_size: int = PAPER_SIZES["valid"],
             test_size: int = PAPER_SIZES["test"], seed: int = PAPER_SEED,
             drop_last: bool = True) -> Iterator[Example]:
    """Lazily yield the examples of train, valid and test, in file order, from one stream.

    `drop_last=True` (the official behaviour) generates `size` programs per split and skips the
    last one, so a split holds `size - 1` examples; `drop_last=False` yields all `size`.
    """
    _check_args(num_vars, code_length)  # here, not on the first next()
    return _generate(num_vars, code_length, _sizes(train_size, valid_size, test_size), seed,
                     drop_last)


def _generate(num_vars: int, code_length: int, sizes: dict[str, int], seed: int,
              drop_last: bool) -> Iterator[Example]:
    rng = random.Random(seed)
    for split in SPLITS:
        n = sizes[split]
        for i in range(n):
            src, tgt = generate_program(rng, num_vars, code_length)
            if not (drop_last and i == n - 1):
                yield Example(split, i, src, tgt)


def generate_split(split: str, num_vars: int = 3, **kwargs) -> Iterator[tuple[str, str]]:
    """Lazily yield the (src, tgt) lines of one split (keyword arguments as for `generate`).

    The earlier splits are still generated (and discarded): they advance the shared stream.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    examples = generate(num_vars, **kwargs)
    later = SPLITS[SPLITS.index(split) + 1:]
    return ((ex.src, ex.tgt) for ex in itertools.takewhile(lambda ex: ex.split not in later,
                                                           examples) if ex.split == split)


def split_paths(data_dir: str | os.PathLike, split: str, num_vars: int) -> tuple[Path, Path]:
    """The official file names: `{split}_{num_vars}.src` and `.tgt` in `data_dir`."""
    base = Path(data_dir) / f"{split}_{num_vars}"
    return base.with_suffix(".src"), base.with_suffix(".tgt")


def write_files(out_dir: str | os.PathLike, num_vars: int = 3, *,
                code_length: int = PAPER_CODE_LENGTH, train_size: int = PAPER_SIZES["train"],
                valid_size: int = PAPER_SIZES["valid"], test_size: int = PAPER_SIZES["test"],
                seed: int = PAPER_SEED, drop_last: bool = True, append: bool = False,
                progress: Callable[[str, int, int], None] | None = None,
                ) -> dict[str, tuple[Path, Path]]:
    """Write `{split}_{num_vars}.src/.tgt` for the three splits into `out_dir` (created).

    Refuses (FileExistsError) if any of the six files exists and is not empty, unless
    `append=True`, which appends like the official script. Without `append` each file is
    written to a temporary name and renamed, so an interrupted run leaves no partial file.
    `progress(split, done, total)` is called every 1000 programs and at the end of a split
    (`total` counts the generated programs, the dropped last one included).
    Returns {split: (src_path, tgt_path)}.
    """
    _check_args(num_vars, code_length)
    sizes = _sizes(train_size, valid_size, test_size)
    out = Path(out_dir)
    paths = {split: split_paths(out, split, num_vars) for split in SPLITS}
    if not append:
        for path in itertools.chain(*paths.values()):
            if path.exists() and path.stat().st_size > 0:
                raise FileExistsError(
                    f"{path} exists and is not empty; the official generator appends to existing "
                    "files, so pass append=True (--append) to do the same, or choose an empty "
                    "folder")
    out.mkdir(parents=True, exist_ok=True)
    examples = generate(num_vars, code_length=code_length, train_size=train_size,
                        valid_size=valid_size, test_size=test_size, seed=seed, drop_last=False)
    for split in SPLITS:
        n = sizes[split]
        with _open_split(paths[split], append) as (src_file, tgt_file):
            # Drawn here even when not written: the stream must advance past dropped examples.
            for ex in itertools.islice(examples, n):
                if not (drop_last and ex.index == n - 1):
                    src_file.write(ex.src + "\n")
                    tgt_file.write(ex.tgt + "\n")
                if progress is not None and ((ex.index + 1) % 1000 == 0 or ex.index == n - 1):
                    progress(split, ex.index + 1, n)
    return paths


@contextlib.contextmanager
def _open_split(paths: tuple[Path, Path], append: bool) -> Iterator[tuple[TextIO, TextIO]]:
    """The (src, tgt) files of one split: appended to, or written to temporary names and renamed
    on success, so that an interrupted run leaves no partial file."""
    kw = dict(encoding="ascii", newline="\n")
    if append:
        with open(paths[0], "a", **kw) as src, open(paths[1], "a", **kw) as tgt:
            yield src, tgt
        return
    # Not mkstemp: its 0600 mode would survive the rename; open() applies the umask.
    tmps = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in paths]
    try:
        with open(tmps[0], "w", **kw) as src, open(tmps[1], "w", **kw) as tgt:
            yield src, tgt
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Reader


@dataclasses.dataclass(frozen=True)
class CodeExecutionSplit:
    """One split as arrays.

    Attributes:
      src: [N, L] int32 source token ids, padded with `SRC_PAD_ID` (0) after `lengths[i]`.
      tgt: [N, L] int32 target token ids, padded with `TGT_PAD_ID` (-1); a target line has as
        many tokens as its source line, so one length serves both. `L` is the longest line of
        this split's file (0 for an empty file), as in the official loader.
      lengths: [N] int32 token counts.
      src_vocab, tgt_vocab: the token strings by id (from the train files).
    """
    src: np.ndarray
    tgt: np.ndarray
    lengths: np.ndarray
    src_vocab: tuple[str, ...]
    tgt_vocab: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def no_op_id(self) -> int:
        """Target id of `_` (used for the print-token accuracy)."""
        return self.tgt_vocab.index(NO_OP)


def build_vocab(path: str | os.PathLike) -> tuple[str, ...]:
    """The distinct whitespace-separated tokens of a text file, in order of first occurrence."""
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            seen.update(dict.fromkeys(line.split()))
    return tuple(seen)


def read_vocabularies(data_dir: str | os.PathLike,
                      num_vars: int = 3) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(source, target) vocabularies built from `train_{num_vars}.src/.tgt`, as officially."""
    src_path, tgt_path = split_paths(data_dir, "train", num_vars)
    return build_vocab(src_path), build_vocab(tgt_path)


def read_pair(src_path: str | os.PathLike, tgt_path: str | os.PathLike,
              src_vocab: Sequence[str], tgt_vocab: Sequence[str],
              vocab_source: str = "the train files") -> CodeExecutionSplit:
    """Read aligned `.src`/`.tgt` files with the given vocabularies.

    Raises DataFormatError naming the file and 1-based line for: an empty line, a line pair
    whose token counts differ, a line count that differs between the files, a token outside
    the vocabulary.
    """
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src_ids = {t: i for i, t in enumerate(src_vocab)}
    tgt_ids = {t: i for i, t in enumerate(tgt_vocab)}

    def extend(out: list[int], tokens: list[str], table: dict[str, int], path: Path,
               lineno: int, what: str) -> None:
        try:
            out.extend(map(table.__getitem__, tokens))
        except KeyError as e:
            raise DataFormatError(
                f"{path}, line {lineno}: token {e.args[0]!r} is not in the {what} vocabulary "
                f"(built from {vocab_source})") from None

    # Flat id lists (small ints are shared objects) and one scatter at the end: much faster
    # than an array per line.
    flat_src: list[int] = []
    flat_tgt: list[int] = []
    lengths_list: list[int] = []
    missing = object()
    with open(src_path, encoding="utf-8") as fs, open(tgt_path, encoding="utf-8") as ft:
        for lineno, (ls, lt) in enumerate(itertools.zip_longest(fs, ft, fillvalue=missing), 1):
            if lt is missing:
                raise DataFormatError(
                    f"{src_path}, line {lineno}: no matching line in {tgt_path}, which has only "
                    f"{lineno - 1} lines")
            if ls is missing:
                raise DataFormatError(
                    f"{tgt_path}, line {lineno}: no matching line in {src_path}, which has only "
                    f"{lineno - 1} lines")
            ts, tt = ls.split(), lt.split()
            if not ts:
                raise DataFormatError(f"{src_path}, line {lineno}: empty line")
            if len(ts) != len(tt):
                raise DataFormatError(
                    f"{src_path}, line {lineno} has {len(ts)} tokens but {tgt_path}, line "
                    f"{lineno} has {len(tt)}; a target line needs one token per source token")
            extend(flat_src, ts, src_ids, src_path, lineno, "source")
            extend(flat_tgt, tt, tgt_ids, tgt_path, lineno, "target")
            lengths_list.append(len(ts))

    lengths = np.asarray(lengths_list, np.int32)
    width = int(lengths.max(initial=0))
    valid = np.arange(width) < lengths[:, None]
    src = np.full((len(lengths), width), SRC_PAD_ID, np.int32)
    tgt = np.full((len(lengths), width), TGT_PAD_ID, np.int32)
    src[valid] = np.asarray(flat_src, np.int32)  # row-major order = line order
    tgt[valid] = np.asarray(flat_tgt, np.int32)
    return CodeExecutionSplit(src, tgt, lengths, tuple(src_vocab), tuple(tgt_vocab))


def read_split(data_dir: str | os.PathLike, split: str, num_vars: int = 3, *,
               src_vocab: Sequence[str] | None = None,
               tgt_vocab: Sequence[str] | None = None) -> CodeExecutionSplit:
    """Read `{split}_{num_vars}.src/.tgt` from `data_dir`.

    Vocabularies default to those of the train files in `data_dir` (`read_vocabularies`);
    pass them to avoid re-reading train for every split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    train_src, train_tgt = split_paths(data_dir, "train", num_vars)
    for path in (train_src, train_tgt, *split_paths(data_dir, split, num_vars)):
        if not path.is_file():
            raise FileNotFoundError(f"code-execution data file {path} not found")
    if src_vocab is None:
        src_vocab = build_vocab(train_src)
    if tgt_vocab is None:
        tgt_vocab = build_vocab(train_tgt)
    return read_pair(*split_paths(data_dir, split, num_vars), src_vocab, tgt_vocab,
                     vocab_source=f"{train_src.name} and {train_tgt.name}")


def read_dataset(data_dir: str | os.PathLike, num_vars: int = 3,
                 splits: Sequence[str] = SPLITS) -> dict[str, CodeExecutionSplit]:
    """Read several splits with the vocabularies of the train files: {split: CodeExecutionSplit}."""
    src_vocab, tgt_vocab = read_vocabularies(data_dir, num_vars)
    return {s: read_split(data_dir, s, num_vars, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
            for s in splits}


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastweights.data.code_execution",
        description="Write the code-execution data set {train,valid,test}_N.{src,tgt}; the "
                    "defaults reproduce the official files byte for byte.")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--num-vars", type=int, default=3, help="number of variables, 1..5")
    parser.add_argument("--code-length", type=int, default=PAPER_CODE_LENGTH,
                        help="statements per program")
    for split in SPLITS:
        parser.add_argument(f"--{split}-size", type=int, default=PAPER_SIZES[split],
                            help=f"programs generated for {split} (the last one is not written "
                                 "unless --keep-last)")
    parser.add_argument("--seed", type=int, default=PAPER_SEED)
    parser.add_argument("--keep-last", action="store_true",
                        help="also write the last program of each split (the official script "
                             "drops it)")
    parser.add_argument("--append", action="store_true",
                        help="append to existing files, as the official script does")
    args = parser.parse_args(argv)

    tty = sys.stderr.isatty()

    def progress(split: str, done: int, total: int) -> None:
        end = "\n" if done == total or not tty else ""
        print(f"\r{split}_{args.num_vars}: {done}/{total} programs", end=end, file=sys.stderr,
              flush=True)

    try:
        paths = write_files(args.out, args.num_vars, code_length=args.code_length,
                            train_size=args.train_size, valid_size=args.valid_size,
                            test_size=args.test_size, seed=args.seed,
                            drop_last=not args.keep_last, append=args.append, progress=progress)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for src, tgt in paths.values():
        print(src)
        print(tgt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
