"""Code-execution reader: the official `.src`/`.tgt` text files (the generator's or the authors'
dumped datasets) as padded id arrays, with the official loader's vocabularies."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastweights.data.code_execution.format import NO_OP, SPLITS, split_paths

SRC_PAD_ID = 0
TGT_PAD_ID = -1


class DataFormatError(ValueError):
    """A malformed line in a code-execution text file (the message names file and line)."""


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
