"""Code-execution generator: programs drawn as the official generator draws them, and the
writer of the official `{split}_{num_vars}.src/.tgt` files."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

from fastweights.data.code_execution.format import NO_OP, SPLITS, split_paths

VAR_NAMES = ("x", "y", "z", "a", "b")
MIN_VALUE, MAX_VALUE = -8, 16  # inc/dec never leaves this range
NUM_CONSTANTS = 10  # assigned values and condition constants are 0..9

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
