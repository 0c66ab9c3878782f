"""ListOps generator: expressions drawn as the official script draws them, and the writer of
the official `{split}_a{A}d{D}max401min299dep{k}.txt` files."""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fastweights.data.listops.format import CLOSE, SPLITS, file_name

SIZES: Mapping[str, int] = {"train": 10000, "valid": 1000, "test": 1000}


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
        return file_name(split, max_args=self.max_args, max_depth=self.max_depth,
                         only_depth=self.only_depth)


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
