"""Tokenising a WikiText-103-sized corpus into the cache (`fastweights.data.corpus`): time
with 1 worker and with 2, plus hashing the sources and loading the built cache back.

    python -m benchmarks.bench_tokenise [--mb 540] [--workers 1,2] [--dir DIR] [--keep]

The text is synthetic, WikiText-like and deterministic (seed 0): a Zipf-like vocabulary of
250k words (a few with non-ASCII letters), ` = Heading = ` lines, paragraph lines of varying
length, each followed by a blank line (" \\n"), as in wiki.train.tokens; valid and test are
small. "cores got": how many cores two processes really got just before the build (other
work on the machine skews the rows). Written under --dir (default: a temporary folder,
removed at the end unless --keep).
Writes benchmarks/results/tokenise_cpu.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fastweights.data import corpus

RESULTS = Path(__file__).parent / "results"
LETTERS = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))


def vocabulary(rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` distinct words, shorter ones more frequent in rank (like English)."""
    words: dict[str, None] = {w: None for w in ("the", ",", ".", "of", "and", "in", "to", "a", "@-@",
                                                "<unk>", "was", "'s", "=")}
    accented = ("é", "ö", "ñ", "ō", "ß")
    while len(words) < size:
        length = min(1 + int(rng.gamma(2.0, 1.2) + np.log1p(len(words)) / 4), 20)
        word = "".join(rng.choice(LETTERS, length))
        if rng.random() < 0.01:
            word += accented[rng.integers(len(accented))]
        words.setdefault(word.capitalize() if rng.random() < 0.2 else word, None)
    return np.array(list(words), dtype=object)


def write_text(path: Path, n_bytes: int, vocab: np.ndarray, rng: np.random.Generator) -> None:
    probs = 1.0 / (np.arange(len(vocab)) + 2.7) ** 1.05     # Zipf-Mandelbrot-like
    cdf = np.cumsum(probs / probs.sum())
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < n_bytes:
            parts = [" \n"]
            # A block of about 1 MB: a heading, then paragraphs of 1..400 words.
            depth = rng.integers(1, 4)
            title = vocab[np.searchsorted(cdf, rng.random(rng.integers(1, 5)))]
            parts += [" " + "= " * depth + " ".join(title) + " =" * depth + " \n", " \n"]
            lengths = np.minimum(rng.geometric(1 / 90, size=2500), 400)
            ids = np.searchsorted(cdf, rng.random(int(lengths.sum())))
            words = vocab[np.minimum(ids, len(vocab) - 1)]
            start = 0
            for n in lengths:
                parts.append(" " + " ".join(words[start:start + n]) + " \n")
                parts.append(" \n")
                start += n
            block = "".join(parts)
            f.write(block)
            written += len(block.encode("utf-8"))


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def parallel_capacity(workers: int = 2, n: int = 20_000_000) -> float:
    """How many cores this process can get now: `workers` pure-Python loops run one after
    another, over the same loops in `workers` processes (= workers on an idle machine; ~1
    when other work fills the CPUs, and then the rows with more workers mean little)."""
    start = time.perf_counter()
    for _ in range(workers):
        _spin(n)
    serial = time.perf_counter() - start
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([corpus.__name__])   # as the builds would start it
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_spin, [1] * workers))        # the processes' start is not timed
        start = time.perf_counter()
        list(pool.map(_spin, [n] * workers))
        parallel = time.perf_counter() - start
    return serial / parallel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=540.0, help="size of the train file in MB (10^6 bytes)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--dir", default=None, help="where to write the text and the caches")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    a = parser.parse_args(argv)
    root = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="bench-tokenise-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        rng = np.random.default_rng(0)
        vocab = vocabulary(rng, 250_000)
        paths = {s: root / f"wiki.{s}.tokens" for s in corpus.SPLITS}
        start = time.perf_counter()
        write_text(paths["train"], int(a.mb * 1e6), vocab, rng)
        for split in ("valid", "test"):
            write_text(paths[split], int(a.mb * 1e6 / 470), vocab[:200_000], rng)
        mb = paths["train"].stat().st_size / 1e6
        print(f"wrote {mb:.0f} MB of train text in {time.perf_counter() - start:.1f} s ({root})\n")
        sources = {s: corpus.TextFiles((p,)) for s, p in paths.items()}

        start = time.perf_counter()
        corpus.source_fingerprint(sources, specials=(corpus.EOS,), settings={})
        hash_s = time.perf_counter() - start

        rows = []
        capacity = {}
        for workers in (int(w) for w in a.workers.split(",")):
            if workers > 1:
                capacity[workers] = round(parallel_capacity(workers), 2)
            cache = root / f"cache-{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            start, cpu = time.perf_counter(), time.process_time()
            built = corpus.build("bench", sources, cache_dir=cache, workers=workers)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            start = time.perf_counter()
            corpus.build("bench", sources, cache_dir=cache, workers=workers)    # from the cache
            load_s = time.perf_counter() - start
            tokens = sum(len(ids) for ids in built.splits.values())
            # The load average shows whether other work shared the CPUs (it skews the times).
            rows.append(dict(workers=workers, mb=round(mb, 1), tokens=tokens, vocab=built.vocab_size,
                             seconds=round(seconds, 1), tokens_per_s=round(tokens / seconds),
                             cached_load_s=round(load_s, 2), this_process_cpu_s=round(cpu, 1),
                             parallel_capacity=capacity.get(workers, 1.0),
                             load_average_1min=round(os.getloadavg()[0], 2)))
        if len(rows) > 1:   # the builds must agree bitwise
            first = corpus.read_cache(next((root / f"cache-{rows[0]['workers']}" / "lm").iterdir()))
            for row in rows[1:]:
                other = corpus.read_cache(next((root / f"cache-{row['workers']}" / "lm").iterdir()))
                assert first.vocab == other.vocab
                assert all(np.array_equal(first.splits[s], other.splits[s]) for s in corpus.SPLITS)

        print("| workers | MB | tokens | vocab | seconds | tokens/s | load from cache (s) | load avg | cores got |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['workers']} | {r['mb']:.0f} | {r['tokens']:,} | {r['vocab']:,} | {r['seconds']:.1f} "
                  f"| {r['tokens_per_s'] / 1e6:.2f}M | {r['cached_load_s']:.2f} | {r['load_average_1min']} "
                  f"| {r['parallel_capacity']} |")
        print(f"\nhashing the sources (fingerprint): {hash_s:.2f} s; CPU seconds of this process (with 1 "
              f"worker: all the work): {', '.join(str(r['this_process_cpu_s']) for r in rows)}")
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / "tokenise_cpu.json"
        out.write_text(json.dumps({"machine": f"{os.cpu_count()} cpus, {platform.machine()}",
                                   "python": platform.python_version(), "hash_seconds": round(hash_s, 2),
                                   "rows": rows}, indent=1))
        print(f"wrote {out}")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
