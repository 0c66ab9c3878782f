"""ListOps reader: the official text files (`"{length} {target} {tokens}"` per line) as token
ids, with the official loader's vocabulary; format errors name file and line."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fastweights.data.listops.format import CLOSE, NUM_CLASSES, SPLITS, file_name


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
    names = {s: file_name(s, max_args=max_args, max_depth=max_depth, only_depth=only_depth)
             for s in SPLITS}
    paths = {s: Path(data_dir) / name for s, name in names.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing ListOps files: {', '.join(missing)}")
    vocab = build_vocab(paths["train"])
    return vocab, {s: read_file(p, vocab) for s, p in paths.items()}
