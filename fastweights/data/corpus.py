"""Word-level language-modelling corpora: tokenised once into a memory-mapped cache.

Tokenisation is the official code's (PAPER_SPEC 6): each line is `strip()`ed and split on
whitespace (Python's `str.split()`, so Unicode whitespace too), `<eos>` is appended to every
line (an empty line is a lone `<eos>`), and a split's lines form one id stream. Lines are
what Python's text mode yields (universal newlines: "\\n", "\\r\\n", "\\r"). The vocabulary
comes from train only: the specials (`<eos>` = id 0, then any extra), then every other train
word by frequency, descending, ties in first-occurrence order (`Counter.most_common()` of a
Counter filled in text order); no minimum frequency. A valid/test word outside it becomes
`<unk>` when the vocabulary has `<unk>`, else is an error naming the split, word and line.

A corpus lives in `cache_dir/lm/<name>-<fingerprint>/`: `{train,valid,test}.int32` (raw
int32 ids), `vocab.txt` (one word per line, in id order) and `meta.json`, written last: its
presence means complete. The fingerprint hashes the source files' contents and the
tokeniser settings, so a changed file never reuses a stale cache.

Building runs in two parallel passes over chunks of the sources (byte ranges cut at line
ends, groups of parquet row groups, groups of lines): count the words of runs of chunks, merged in
chunk order (which keeps the first-occurrence order of ties exactly: a word is first met in
the first chunk that holds it, at its first position there), then map each chunk to ids,
written into the split's file at the chunk's offset.

>>> import pathlib, tempfile
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "train.txt").write_text("b a b\\n\\nc a\\n")
>>> _ = (tmp / "valid.txt").write_text("a b\\n")
>>> _ = (tmp / "test.txt").write_text("c\\n")
>>> corpus = build("toy", {s: TextFiles((tmp / f"{s}.txt",)) for s in SPLITS}, cache_dir=tmp)
>>> corpus.vocab          # b and a both twice: b came first
('<eos>', 'b', 'a', 'c')
>>> corpus.splits["train"].tolist()
[1, 2, 1, 0, 0, 3, 2, 0]
>>> corpus.decode(corpus.encode("a c"))
['a', 'c']
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import operator
import os
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Union

import numpy as np

from fastweights.data.cache import MARKER, build_once, cache_root

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
# Bumped whenever the tokenisation or the cache layout changes: part of the fingerprint.
FORMAT_VERSION = 1
# Work per task of the parallel passes: large enough that a task's overhead (a process
# round trip, a Counter sent back) is small, small enough to bound each worker's memory
# (a chunk's list of words takes ~10x its bytes) and to share the work evenly.
DEFAULT_CHUNK_BYTES = 8 << 20


# -- sources ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TextFiles:
    """UTF-8 text files, read in order as one stream of lines."""
    paths: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class ParquetFiles:
    """Parquet files, read in order; each row of the string column `column` is one line
    (a trailing newline, as in Hugging Face's wikitext, is whitespace; null is empty)."""
    paths: tuple[Path, ...]
    column: str = "text"


@dataclasses.dataclass(frozen=True)
class Lines:
    """Lines made in memory by `read()`, which is called only when the cache is built; the
    fingerprint hashes `paths`, the files they are made from (plus the build's `settings`,
    which must name whatever else changes them)."""
    paths: tuple[Path, ...]
    read: Callable[[], Sequence[str]]


Source = Union[TextFiles, ParquetFiles, Lines]


# -- the corpus -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenised corpus. `vocab`: the words in id order (`vocab[0] == "<eos>"`); `splits`:
    "train", "valid", "test", each a read-only 1-D int32 `np.memmap` [n_tokens] of the cache
    files in `directory`; `fingerprint`: the hash that names `directory`."""
    name: str
    vocab: tuple[str, ...]
    splits: Mapping[str, np.ndarray]
    fingerprint: str
    directory: Path

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.vocab)}

    def encode(self, text: str) -> np.ndarray:
        """The ids [n] int32 of `text`'s whitespace-separated words (no `<eos>` added); an
        unknown word is `<unk>` when the vocabulary has it, else a ValueError naming it."""
        ids, unk = self._ids, self._ids.get(UNK)
        out = []
        for word in text.split():
            i = ids.get(word, unk)
            if i is None:
                raise ValueError(f"{self.name}: the word {word!r} is not in the vocabulary, "
                                 f"which has no {UNK}")
            out.append(i)
        return np.asarray(out, np.int32)

    def decode(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """The words of `ids` (any shape, read in C order)."""
        ids = np.asarray(ids).ravel()
        if ids.size and not (0 <= ids.min() and ids.max() < self.vocab_size):
            raise ValueError(f"{self.name}: ids must lie in [0, {self.vocab_size}), "
                             f"got {ids.min()}..{ids.max()}")
        return [self.vocab[i] for i in ids.tolist()]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split} {len(ids):,}" for split, ids in self.splits.items())
        return f"Corpus({self.name!r}, vocab {self.vocab_size:,}, tokens: {sizes})"


# -- building and reading the cache ------------------------------------------------------------

def build(name: str, sources: Mapping[str, Source], *, specials: Sequence[str] = (EOS,),
          settings: Mapping[str, Any] | None = None, cache_dir: str | os.PathLike | None = None,
          workers: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Corpus:
    """The corpus of `sources` (one per split of `SPLITS`), from the cache when it is there,
    else tokenised into it first (under a lock: concurrent callers build it once).

    `specials`: the words before the counted ones, `<eos>` first (e.g. `("<eos>", "<unk>")`);
    `settings`: JSON-able options of whoever made the sources, part of the fingerprint;
    `workers`: processes for tokenising (default: the CPU count; 1 = in this process);
    `chunk_bytes`: the work per task (tests make it tiny to cut lines across tasks).
    """
    if set(sources) != set(SPLITS):
        raise ValueError(f"sources must name exactly the splits {SPLITS}, got {tuple(sources)}")
    specials = tuple(specials)
    if not specials or specials[0] != EOS or len(set(specials)) != len(specials):
        raise ValueError(f"specials must start with {EOS!r} and not repeat, got {specials}")
    settings = dict(settings or {})
    fingerprint = source_fingerprint(sources, specials=specials, settings=settings)
    directory = cache_root(cache_dir) / "lm" / f"{name}-{fingerprint}"
    build_once(directory, lambda out: _build(out, name, fingerprint, sources, specials, settings,
                                             workers=workers, chunk_bytes=chunk_bytes))
    return read_cache(directory)


def source_fingerprint(sources: Mapping[str, Source], *, specials: Sequence[str],
                       settings: Mapping[str, Any]) -> str:
    """16 hex digits of a sha256 over the tokeniser settings and every source file's
    contents (streamed, 1 MiB blocks: ~0.5 s per GB)."""
    digest = hashlib.sha256()
    header = {"format": FORMAT_VERSION, "specials": list(specials), "settings": settings,
              "sources": {split: _describe(sources[split]) for split in SPLITS}}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for split in SPLITS:
        for path in sources[split].paths:
            with open(path, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def read_cache(directory: str | os.PathLike) -> Corpus:
    """The corpus cached in `directory`, checked: meta.json's sizes match the files, no
    split is empty, every id lies in [0, vocab size) (one vectorised pass per split)."""
    directory = Path(directory)
    fix = f"delete {directory} and load the corpus again to rebuild it"
    if not directory.is_dir():
        raise FileNotFoundError(f"no cached corpus: {directory} does not exist")
    meta_path = directory / MARKER
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} is missing: the cache in {directory} is incomplete "
                                f"(an interrupted build); load the corpus again to rebuild it")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: cache format {meta.get('format')}, expected "
                         f"{FORMAT_VERSION}; {fix}")
    vocab_path = directory / "vocab.txt"
    if not vocab_path.exists():
        raise FileNotFoundError(f"{vocab_path} is missing; {fix}")
    vocab = tuple(vocab_path.read_text(encoding="utf-8").split("\n")[:-1])
    if len(vocab) != meta["vocab_size"] or not vocab or vocab[0] != EOS:
        raise ValueError(f"{vocab_path}: {len(vocab)} words (first {vocab[:1]}), expected "
                         f"{meta['vocab_size']} starting with {EOS!r} as meta.json says; {fix}")
    splits = {}
    for split in SPLITS:
        path = directory / f"{split}.int32"
        expected = meta["sizes"][split]
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing (expected {expected:,} int32 ids); {fix}")
        size = path.stat().st_size
        if size != 4 * expected:
            raise ValueError(f"{path}: {size:,} bytes, expected {4 * expected:,} "
                             f"({expected:,} int32 ids, as meta.json says); {fix}")
        if expected == 0:
            raise ValueError(f"{path} is empty: the {split} split has no tokens; {fix}")
        ids = np.memmap(path, dtype=np.int32, mode="r")
        # As uint32 a negative id is huge, so one max checks both ends.
        largest = int(ids.view(np.uint32).max())
        if largest >= len(vocab):
            bad = largest - 2 ** 32 if largest >= 2 ** 31 else largest
            raise ValueError(f"{path}: id {bad} is outside the vocabulary [0, {len(vocab)}) of "
                             f"{vocab_path}; the cache is corrupt: {fix}")
        splits[split] = ids
    return Corpus(name=meta["name"], vocab=vocab, splits=types.MappingProxyType(splits),
                  fingerprint=meta["fingerprint"], directory=directory)


def _describe(source: Source) -> dict[str, Any]:
    kind = {TextFiles: "text", ParquetFiles: "parquet", Lines: "lines"}[type(source)]
    out: dict[str, Any] = {"kind": kind, "files": len(source.paths)}
    if isinstance(source, ParquetFiles):
        out["column"] = source.column
    return out


# -- the two passes -------------------------------------------------------------------------------

# A unit of work: ("text", path, start, stop) bytes cut at line ends; ("parquet", path, column,
# first row group, stop row group); ("lines", label, tuple of lines). Its label (the path) names
# it in error messages, its line numbers counting from the label's first unit.
Unit = tuple


def _build(directory: Path, name: str, fingerprint: str, sources: Mapping[str, Source],
           specials: tuple[str, ...], settings: Mapping[str, Any], *, workers: int | None,
           chunk_bytes: int) -> dict[str, Any]:
    start = time.perf_counter()
    units = {split: _units(sources[split], chunk_bytes) for split in SPLITS}
    n_units = sum(map(len, units.values()))
    # One unit per split: small enough that starting processes would cost more than it saves.
    workers = 1 if n_units <= len(SPLITS) else max(1, min(workers or os.cpu_count() or 1, n_units))
    _log(f"{name}: tokenising into {directory} ({workers} worker{'s' * (workers > 1)})")

    # Pass 1: word counts (train) and the number of lines and ids of every unit. A task counts
    # a run of consecutive units into one Counter (few Counters to send back and merge: the
    # merge is serial), about four tasks per worker to share the work; the counts are merged
    # as they arrive, in text order, which keeps ties in first-occurrence order.
    # One pool for both passes: a worker's start may cost an import of the package (JAX).
    try:
        with _executor(workers) as pool:
            return _two_passes(pool, directory, name, fingerprint, units, sources, specials, settings,
                               workers=workers, start=start)
    finally:
        _VOCAB.clear()                  # the in-process executor filled this process's copy


def _two_passes(pool: Executor, directory: Path, name: str, fingerprint: str,
                units: Mapping[str, list[Unit]], sources: Mapping[str, Source],
                specials: tuple[str, ...], settings: Mapping[str, Any], *, workers: int,
                start: float) -> dict[str, Any]:
    counter: collections.Counter[str] = collections.Counter()
    counted: dict[str, list[tuple[int, int]]] = {}
    for split in SPLITS:
        groups = _runs(units[split], 4 * workers)
        counted[split] = []
        for words, sizes in pool.map(_count, groups, [split == "train"] * len(groups)):
            if words is not None:
                counter.update(words)
            counted[split] += sizes
    for split in SPLITS:
        if not sum(n_ids for _, n_ids in counted[split]):
            files = ", ".join(str(p) for p in sources[split].paths) or "no files"
            raise ValueError(f"{name}: the {split} split is empty (no lines in {files})")
    vocab = specials + tuple(word for word, _ in counter.most_common() if word not in specials)
    del counter
    vocab_path = directory / "vocab.txt"
    vocab_path.write_text("".join(word + "\n" for word in vocab), encoding="utf-8")

    # Pass 2: ids, each unit written at its offset into a file sized in advance (a partial
    # file of a killed build is truncated and overwritten).
    tasks, sizes, lines = [], {}, {}
    for split in SPLITS:
        path = directory / f"{split}.int32"
        sizes[split] = sum(n_ids for _, n_ids in counted[split])
        lines[split] = sum(n_lines for n_lines, _ in counted[split])
        with open(path, "wb") as f:
            f.truncate(4 * sizes[split])
        offset, first_line = 0, collections.Counter()
        for unit, (n_lines, n_ids) in zip(units[split], counted[split]):
            tasks.append((unit, split, str(path), offset, n_ids, first_line[unit[1]], str(vocab_path)))
            offset += n_ids
            first_line[unit[1]] += n_lines
    unknown = collections.Counter()
    for (_, split, *_), n_unknown in zip(tasks, pool.map(_encode, *zip(*tasks))):
        unknown[split] += n_unknown
    seconds = time.perf_counter() - start
    _log(f"{name}: {sum(sizes.values()):,} tokens, vocabulary {len(vocab):,}, in {seconds:.1f} s")
    return {"format": FORMAT_VERSION, "name": name, "fingerprint": fingerprint,
            "specials": list(specials), "settings": dict(settings), "vocab_size": len(vocab),
            "sizes": sizes, "lines": lines, "unknown": {s: unknown[s] for s in SPLITS},
            "sources": {s: [str(p) for p in sources[s].paths] for s in SPLITS},
            "workers": workers, "build_seconds": round(seconds, 3)}


def _units(source: Source, chunk_bytes: int) -> list[Unit]:
    chunk_bytes = max(1, int(chunk_bytes))
    units: list[Unit] = []
    if isinstance(source, TextFiles):
        for path in source.paths:
            units += [("text", str(path), a, b) for a, b in _line_cuts(Path(path), chunk_bytes)]
    elif isinstance(source, ParquetFiles):
        import pyarrow.parquet as pq  # only the parquet layout needs pyarrow

        for path in source.paths:
            metadata = pq.ParquetFile(path).metadata
            first, size = 0, 0
            for group in range(metadata.num_row_groups):
                size += metadata.row_group(group).total_byte_size
                if size >= chunk_bytes or group == metadata.num_row_groups - 1:
                    units.append(("parquet", str(path), source.column, first, group + 1))
                    first, size = group + 1, 0
    else:
        lines, label = list(source.read()), "lines"
        start, size = 0, 0
        for i, line in enumerate(lines):
            size += len(line) + 1
            if size >= chunk_bytes or i == len(lines) - 1:
                units.append(("lines", label, tuple(lines[start:i + 1])))
                start, size = i + 1, 0
    return units


def _line_cuts(path: Path, chunk_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of at least `chunk_bytes` covering the file, each ending just after a "\\n"
    (or at the end): UTF-8 never has that byte inside a character, and "\\r\\n" stays whole."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + chunk_bytes < size:
            position = cuts[-1] + chunk_bytes - 1      # the chunk's last byte if it is a newline
            f.seek(position)
            while block := f.read(1 << 16):
                found = block.find(b"\n")
                if found >= 0:
                    break
                position += len(block)
            if not block:                              # no newline before the end
                break
            cuts.append(position + found + 1)
    if cuts[-1] < size:
        cuts.append(size)
    return list(zip(cuts, cuts[1:])) or [(0, 0)]


def _read(unit: Unit) -> list[str]:
    """The lines of a unit, as Python's text mode would yield them (newlines dropped)."""
    kind = unit[0]
    if kind == "text":
        _, path, start, stop = unit
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read(stop - start).decode("utf-8")
        if "\r" in text:                # universal newlines
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        if lines[-1] == "":             # the text after the last "\n" is no line
            lines.pop()
        return lines
    if kind == "parquet":
        import pyarrow.parquet as pq

        _, path, column, first, stop = unit
        table = pq.ParquetFile(path).read_row_groups(range(first, stop), columns=[column])
        return [row or "" for row in table.column(0).to_pylist()]
    return list(unit[2])


def _runs(units: list[Unit], n: int) -> list[tuple[Unit, ...]]:
    """`units` cut into at most `n` runs of consecutive units, of near-equal lengths."""
    n = max(1, min(n, len(units)))
    bounds = [round(i * len(units) / n) for i in range(n + 1)]
    return [tuple(units[a:b]) for a, b in zip(bounds, bounds[1:])]


def _count(units: tuple[Unit, ...], count_words: bool) -> tuple[collections.Counter | None,
                                                                list[tuple[int, int]]]:
    """The word counts of consecutive units, in first-occurrence order (or None), and each
    unit's (lines, ids = words + lines)."""
    counter: collections.Counter[str] = collections.Counter()
    sizes = []
    for unit in units:
        lines = _read(unit)
        words = " ".join(lines).split()     # the same words as line by line: " " is whitespace
        if count_words:
            counter.update(words)           # a list: counted in C, in order
        sizes.append((len(lines), len(words) + len(lines)))
    return (counter if count_words else None), sizes


# {vocab.txt path: {word: id}}, one entry: what this worker (or the caller, in process) read.
_VOCAB: dict[str, dict[str, int]] = {}


def _vocab(path: str) -> dict[str, int]:
    """The vocabulary of the build writing `path`, read once per worker (a task is sent
    the file's name, not 270k words)."""
    if path not in _VOCAB:
        _VOCAB.clear()
        words = Path(path).read_text(encoding="utf-8").split("\n")[:-1]
        _VOCAB[path] = {word: i for i, word in enumerate(words)}
    return _VOCAB[path]


def _encode(unit: Unit, split: str, path: str, offset: int, n_ids: int, first_line: int,
            vocab_path: str) -> int:
    """Writes the unit's ids at `offset` (in ids) of `path`; returns how many words were
    unknown (mapped to <unk>)."""
    vocab = _vocab(vocab_path)
    lines = _read(unit)
    words: list[str] = []
    for line in lines:
        words += line.split()
        words.append(EOS)
    unknown = 0
    try:
        # itemgetter looks all words up in one C call (~2x a Python-level map).
        ids = np.array(operator.itemgetter(*words)(vocab) if words else (), np.int32, ndmin=1)
    except KeyError:
        unk = vocab.get(UNK)
        if unk is None:
            for number, line in enumerate(lines, first_line + 1):
                for word in line.split():
                    if word not in vocab:
                        raise ValueError(
                            f"{split}: the word {word!r} on line {number} of {unit[1]} is not in "
                            f"the vocabulary built from train, which has no {UNK}") from None
        unknown = sum(word not in vocab for word in words)
        ids = np.fromiter((vocab.get(word, unk) for word in words), np.int32, count=len(words))
    if len(ids) != n_ids:
        raise RuntimeError(f"{unit[1]}: {len(ids)} ids on the second pass, {n_ids} on the first "
                           f"(did the file change while it was read?)")
    fd = os.open(path, os.O_WRONLY)
    try:
        data = memoryview(ids).cast("B")
        written = 0
        while written < len(data):      # pwrite may write less than asked
            written += os.pwrite(fd, data[written:], 4 * offset + written)
    finally:
        os.close(fd)
    return unknown


class _InProcess(Executor):
    """`workers == 1`: the same calls in this process (no fork, easy to debug)."""

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return map(fn, *iterables)


def _executor(workers: int) -> Executor:
    if workers == 1:
        return _InProcess()
    # Never fork the caller: it may run JAX's threads (a fork can deadlock, and JAX warns).
    # The workers fork from a forkserver, a fresh process that imports this module once (the
    # package pulls in JAX: ~2 s, once per caller process; if someone started the server
    # without it, each worker imports it); elsewhere they are spawned. Like any
    # multiprocessing, this needs the caller's main module to be import-safe.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])     # no effect once the server runs
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
