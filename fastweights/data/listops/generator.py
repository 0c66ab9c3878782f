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
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "valid", "test")
SIZES: Mapping[str, int] = {"train": 10000, "valid": 1000, "test": 1000}
NUM_CLASSES = 10
CLOSE = "]"


def _median(args: Sequence[int]) -> int:
    # The NYU code takes int(np.median(...)): the mean of the two middle values, truncated.
    s = sorted(args)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


# Operator name -> function of its argument list. SM is the sum modulo 10 (NYU original).
OPERATORS: Mapping[str, Callable[[Sequence[int]], int]] = {
    "MIN": min,
    "MAX": max,
    "MED": _median,
    "FIRST": lambda a: a[0],
    "LAST": lambda a: a[-1],
    "SM": lambda a: sum(a) % 10,
}


@dataclasses.dataclass(frozen=True)
class ListOpsConfig:
    """Generator settings; the defaults are the paper's (depth 10).

    Attributes:
      only_depth: keep trees whose deepest leaf is at this level (root = 1); operator
        nesting depth is `only_depth - 1`. In `[2, max_depth]`.
      operators: operator names from `OPERATORS`, in the order `choice` indexes them.
      max_args: an operator has `randint(2, max_args)` arguments.
      value_p: below the root a node is an operator with this probability, else a leaf.
      max_depth: nodes at this level are always leaves.
      seed: of the single `random.Random` stream shared by all splits.
    """
    only_depth: int = 11
    operators: tuple[str, ...] = ("MIN", "MAX", "FIRST")
    max_args: int = 5
    value_p: float = 0.25
    max_depth: int = 20
    seed: int = 42

    def __post_init__(self):
        object.__setattr__(self, "operators", tuple(self.operators))
        if not self.operators:
            raise ValueError("operators must not be empty")
        bad = [op for op in self.operators if op not in OPERATORS]
        if bad:
            raise ValueError(f"unknown operators {bad}; valid: {', '.join(OPERATORS)}")
        if self.max_args < 2:
            raise ValueError(f"max_args must be >= 2, got {self.max_args}")
        if not 0.0 <= self.value_p < 1.0:
            # value_p = 1 would make max_depth nodes (r = 1) operators: unbounded recursion.
            raise ValueError(f"value_p must be in [0, 1), got {self.value_p}")
        if self.max_depth < 2:
            raise ValueError(f"max_depth must be >= 2, got {self.max_depth}")
        if not 2 <= self.only_depth <= self.max_depth:
            raise ValueError(f"only_depth must be in [2, max_depth={self.max_depth}], "
                             f"got {self.only_depth}")
        if self.value_p == 0.0 and self.only_depth > 2:
            raise ValueError("value_p = 0 only produces trees of depth 2")

    def file_name(self, split: str) -> str:
        """The official file name (the length bounds 401/299 are fixed, as in the official)."""
        return f"{split}_a{self.max_args}d{self.max_depth}max401min299dep{self.only_depth}.txt"


# Paper presets, and small ones for CPU-sized runs (shallow trees, few arguments).
PRESETS: Mapping[str, ListOpsConfig] = {
    "depth10": ListOpsConfig(only_depth=11),
    "depth15": ListOpsConfig(only_depth=16),
    "depth3": ListOpsConfig(only_depth=4, max_args=3),
    "depth4": ListOpsConfig(only_depth=5, max_args=3),
}


class Example(NamedTuple):
    """One expression: its tokens, value and deepest leaf level (operator nesting + 1)."""
    tokens: tuple[str, ...]
    target: int
    depth: int

    @property
    def length(self) -> int:
        return len(self.tokens)

    def line(self) -> str:
        """The official text line, without the newline."""
        return f"{len(self.tokens)} {self.target} {' '.join(self.tokens)}"


def _draw_trees(config: ListOpsConfig, rng: random.Random) -> Iterator[tuple[list, int]]:
    """`(tokens, deepest leaf level)` of every tree drawn from `rng`, endlessly.

    `tokens` is one list reused for every tree (copy it to keep it).

    The draws are those of the official `random()`, `choice(range(10))`,
    `randint(2, max_args)` and `choice(operators)`, but emitted as `getrandbits` calls the way
    CPython's `_randbelow` makes them (unchanged since Python 3.2), with the leaves inline:
    ~5x faster, which matters because most trees are rejected (~70 drawn per kept one at
    depth 10, ~200 at depth 15). The tests compare this with the public-API draws.
    """
    op_tokens = ["[" + name for name in config.operators]
    digit = [str(v) for v in range(10)]
    value_p, max_depth = config.value_p, config.max_depth
    rand, getrandbits = rng.random, rng.getrandbits
    # randint(2, A) = 2 + _randbelow(A - 1); _randbelow(n) redraws getrandbits(n.bit_length())
    # until the result is < n. Inlined: a function call per draw would cost ~30%.
    n_args, k_args = config.max_args - 1, (config.max_args - 1).bit_length()
    n_ops, k_ops = len(op_tokens), len(op_tokens).bit_length()

    out: list = []
    append = out.append

    def operator(level: int) -> int:
        """Append an operator node's tokens to `out`; return its deepest leaf level."""
        slot = len(out)
        append(None)  # the operator is drawn after the arguments
        n = getrandbits(k_args)
        while n >= n_args:
            n = getrandbits(k_args)
        child = level + 1
        deepest = child
        if child < max_depth:
            for _ in range(n + 2):
                # The children (level >= 2) are leaves when r > value_p. Leaves are ~3/4 of
                # the nodes: handled inline, without a call.
                if rand() > value_p:
                    v = getrandbits(4)  # choice(range(10))
                    while v >= 10:
                        v = getrandbits(4)
                    append(digit[v])
                else:
                    d = operator(child)
                    if d > deepest:
                        deepest = d
        else:  # r = 1 without a draw: all leaves
            for _ in range(n + 2):
                v = getrandbits(4)
                while v >= 10:
                    v = getrandbits(4)
                append(digit[v])
        i = getrandbits(k_ops)
        while i >= n_ops:
            i = getrandbits(k_ops)
        out[slot] = op_tokens[i]
        append(CLOSE)
        return deepest

    while True:
        out.clear()
        rand()  # the root's draw: it is an operator whatever r is
        deepest = operator(1)
        yield out, deepest


def evaluate(tokens: Sequence[str]) -> int:
    """The value of a well-formed token sequence (any operator of `OPERATORS`)."""
    stack: list[list] = []
    result = None
    for tok in tokens:
        if tok == CLOSE:
            fn, args = stack.pop()
            result = fn(args)
            if stack:
                stack[-1][1].append(result)
        elif tok[0] == "[":
            stack.append([OPERATORS[tok[1:]], []])
        else:
            result = int(tok)
            if stack:
                stack[-1][1].append(result)
    return int(result)


def generate_examples(config: ListOpsConfig = ListOpsConfig(),
                      rng: random.Random | None = None) -> Iterator[Example]:
    """Accepted examples (deepest leaf at `config.only_depth`), endlessly.

    `rng` defaults to `random.Random(config.seed)`; pass one to continue a stream.
    """
    rng = random.Random(config.seed) if rng is None else rng
    k = config.only_depth
    # Values only for the kept trees: evaluating the rejected ones would cost time.
    return (Example(tuple(t), evaluate(t), k) for t, d in _draw_trees(config, rng) if d == k)


def generate_splits(config: ListOpsConfig = ListOpsConfig(),
                    sizes: Mapping[str, int] = SIZES) -> Iterator[tuple[str, Example]]:
    """`(split, example)` for train, valid, test in that order, from one stream (lazy)."""
    stream = generate_examples(config)
    for split in SPLITS:
        for _ in range(sizes[split]):
            yield split, next(stream)


def write_files(out_dir: str | os.PathLike, only_depth: int = 11, *,
                train_size: int = SIZES["train"], valid_size: int = SIZES["valid"],
                test_size: int = SIZES["test"], append: bool = False, progress: bool = False,
                **settings) -> dict[str, Path]:
    """Write the three split files like the official script; returns `{split: path}`.

    `settings` are the other `ListOpsConfig` fields (operators, max_args, value_p,
    max_depth, seed). The official script appends to existing files; here an existing
    non-empty file is an error (`FileExistsError`, nothing written) unless `append=True`.
    `progress` prints the count of kept/drawn trees to stderr every few seconds.
    """
    config = ListOpsConfig(only_depth=only_depth, **settings)
    sizes = {"train": train_size, "valid": valid_size, "test": test_size}
    for split, n in sizes.items():
        if n < 0:
            raise ValueError(f"{split}_size must be >= 0, got {n}")
    out = Path(out_dir)
    paths = {split: out / config.file_name(split) for split in SPLITS}
    if not append:
        full = [str(p) for p in paths.values() if p.exists() and p.stat().st_size > 0]
        if full:
            raise FileExistsError(f"refusing to append to non-empty {', '.join(full)} "
                                  f"(the official script appends; pass append=True / --append)")
    out.mkdir(parents=True, exist_ok=True)

    trees = _draw_trees(config, random.Random(config.seed))
    drawn = 0
    start = last = time.monotonic()
    for split in SPLITS:
        kept = 0
        lengths = []
        # newline="\n": the same bytes on every platform.
        with open(paths[split], "a", encoding="ascii", newline="\n") as f:
            while kept < sizes[split]:
                tokens, deepest = next(trees)
                drawn += 1
                # Checked per drawn tree, not per kept one: deep settings may keep few.
                if progress and drawn % 4096 == 0 and time.monotonic() - last > 5.0:
                    last = time.monotonic()
                    print(f"{split}: {kept}/{sizes[split]} kept, {drawn} trees drawn, "
                          f"{last - start:.0f}s", file=sys.stderr, flush=True)
                if deepest != config.only_depth:
                    continue
                f.write(f"{len(tokens)} {evaluate(tokens)} {' '.join(tokens)}\n")
                kept += 1
                lengths.append(len(tokens))
        if progress and lengths:
            print(f"{split}: {kept} examples -> {paths[split]} (length mean "
                  f"{np.mean(lengths):.1f}, median {np.median(lengths):.0f}, min {min(lengths)}, "
                  f"max {max(lengths)}; {time.monotonic() - start:.1f}s)",
                  file=sys.stderr, flush=True)
    return paths


# ----------------------------------------------------------------------------- reader


class ListOpsFormatError(ValueError):
    """A malformed line of a ListOps file; the message starts with `file:line:`."""


class Vocabulary:
    """Token <-> id in order of first occurrence (ids from 0, no special tokens)."""

    def __init__(self, tokens: Iterable[str] = ()):
        self.tokens: list[str] = []
        self.index: dict[str, int] = {}
        for t in tokens:
            self.add(t)

    def add(self, token: str) -> int:
        if token not in self.index:
            self.index[token] = len(self.tokens)
            self.tokens.append(token)
        return self.index[token]

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        return np.array([self.index[t] for t in tokens], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]


@dataclasses.dataclass
class ListOpsSplit:
    """One file, as read.

    Attributes:
      inputs: per example, the token ids (int32, unpadded, `len == lengths[i]`).
      lengths: int32 `[N]`, the length field (= token count).
      labels: int32 `[N]`, the targets in `[0, 10)`.
      path: the file read.
    """
    inputs: list[np.ndarray]
    lengths: np.ndarray
    labels: np.ndarray
    path: Path

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def index(self) -> np.ndarray:
        """The read-out position `length - 1` (what the official loader stores)."""
        return self.lengths - 1

    def padded(self, pad_id: int = 0, max_len: int | None = None) -> np.ndarray:
        """int32 `[N, max_len]` (default: the longest example), right-padded with `pad_id`."""
        longest = int(self.lengths.max(initial=0))
        max_len = longest if max_len is None else max_len
        if max_len < longest:
            raise ValueError(f"max_len {max_len} < longest example {longest} in {self.path}")
        out = np.full((len(self.inputs), max_len), pad_id, dtype=np.int32)
        for i, ids in enumerate(self.inputs):
            out[i, :len(ids)] = ids
        return out


def _parse_lines(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """`(line number, target, tokens)` for each line, with the format checked."""
    with open(path, encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            fields = line.split()
            if len(fields) < 3:
                raise ListOpsFormatError(f"{where}: expected 'LENGTH TARGET TOKENS...', "
                                         f"got {line.rstrip()!r}")
            length, target, tokens = fields[0], fields[1], fields[2:]
            if not length.isdigit() or int(length) != len(tokens):
                raise ListOpsFormatError(f"{where}: length field {length!r} does not match "
                                         f"the {len(tokens)} tokens")
            if not (target.isdigit() and int(target) < NUM_CLASSES):
                raise ListOpsFormatError(f"{where}: target {target!r} is not a digit "
                                         f"in [0, {NUM_CLASSES})")
            depth = 0
            for j, tok in enumerate(tokens, 1):
                if depth == 0 and j > 1:
                    raise ListOpsFormatError(f"{where}: unbalanced brackets (token {j} {tok!r} "
                                             f"follows the end of the expression)")
                if tok.startswith("["):
                    depth += 1
                elif tok == CLOSE:
                    depth -= 1
                    if depth < 0:
                        raise ListOpsFormatError(f"{where}: unbalanced brackets (token {j} "
                                                 f"{tok!r} closes nothing)")
            if depth:
                raise ListOpsFormatError(f"{where}: unbalanced brackets ({depth} '[' not "
                                         f"closed)")
            yield lineno, int(target), tokens


def build_vocab(train_path: str | os.PathLike) -> Vocabulary:
    """The vocabulary of a (train) file: its tokens in order of first occurrence."""
    vocab = Vocabulary()
    for _, _, tokens in _parse_lines(Path(train_path)):
        for t in tokens:
            vocab.add(t)
    return vocab


def read_file(path: str | os.PathLike, vocab: Vocabulary) -> ListOpsSplit:
    """Read one file with `vocab`; an unknown token is a `ListOpsFormatError`."""
    path = Path(path)
    inputs, lengths, labels = [], [], []
    for lineno, target, tokens in _parse_lines(path):
        unknown = [t for t in tokens if t not in vocab]
        if unknown:
            raise ListOpsFormatError(f"{path}:{lineno}: token {unknown[0]!r} is not in the "
                                     f"train vocabulary")
        inputs.append(vocab.encode(tokens))
        lengths.append(len(tokens))
        labels.append(target)
    return ListOpsSplit(inputs, np.array(lengths, np.int32), np.array(labels, np.int32), path)


def load_splits(data_dir: str | os.PathLike, only_depth: int = 11, *, max_args: int = 5,
                max_depth: int = 20) -> tuple[Vocabulary, dict[str, ListOpsSplit]]:
    """The official files `{split}_a{A}d{D}max401min299dep{k}.txt` of `data_dir`, read with
    the vocabulary of the train file; returns `(vocab, {split: ListOpsSplit})`."""
    names = {s: f"{s}_a{max_args}d{max_depth}max401min299dep{only_depth}.txt" for s in SPLITS}
    paths = {s: Path(data_dir) / name for s, name in names.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing ListOps files: {', '.join(missing)}")
    vocab = build_vocab(paths["train"])
    return vocab, {s: read_file(p, vocab) for s, p in paths.items()}


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    d = ListOpsConfig()
    p = argparse.ArgumentParser(
        prog="python -m fastweights.data.listops",
        description="Write ListOps train/valid/test files in the official format "
                    "(the defaults reproduce the paper's data; --only-depth 11 is depth 10, "
                    "16 is depth 15).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--only-depth", type=int, default=d.only_depth,
                   help="deepest leaf level, = operator nesting + 1 (default %(default)s)")
    p.add_argument("--train-size", type=int, default=SIZES["train"])
    p.add_argument("--valid-size", type=int, default=SIZES["valid"])
    p.add_argument("--test-size", type=int, default=SIZES["test"])
    p.add_argument("--operators", default=",".join(d.operators),
                   help=f"comma-separated, from {','.join(OPERATORS)} (default %(default)s)")
    p.add_argument("--max-args", type=int, default=d.max_args)
    p.add_argument("--value-p", type=float, default=d.value_p)
    p.add_argument("--max-depth", type=int, default=d.max_depth)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--append", action="store_true",
                   help="append to existing files (what the official script always does)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    a = p.parse_args(argv)
    try:
        paths = write_files(
            a.out, a.only_depth, train_size=a.train_size, valid_size=a.valid_size,
            test_size=a.test_size, append=a.append, progress=not a.quiet,
            operators=tuple(a.operators.split(",")), max_args=a.max_args, value_p=a.value_p,
            max_depth=a.max_depth, seed=a.seed)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not a.quiet:
        for path in paths.values():
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
