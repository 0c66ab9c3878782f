"""Code-execution data: byte-for-byte official files, an independent interpreter, the reader."""

import hashlib
import os
import random

import numpy as np
import pytest

from fastweights.data import code_execution as ce

# MD5 of the files the official script (IDSIA/recurrent-fwp algorithmic/utils/data_generator.py,
# max_num_vars 3 or 5, default arguments) writes into an empty folder (PAPER_SPEC 5.1).
OFFICIAL_MD5 = {
    3: {
        "train_3.src": "77cfed818967cadad6b765a718da806f",
        "train_3.tgt": "9ebbc654e798128fa483779625836305",
        "valid_3.src": "9add39346b3dcc7d2bc88b363c04480b",
        "valid_3.tgt": "c382a3b0b7053acd409f2b27a894cdb1",
        "test_3.src": "def039f33c906a94268a8dad40fd0b15",
        "test_3.tgt": "d25f52b2fb1fd83d32b7d2300f26c1ed",
    },
    5: {
        "train_5.src": "3fb122e569b4003ea39ac9884c0d18d7",
        "train_5.tgt": "a48c869044af6b09451d3dfbb707f869",
        "valid_5.src": "d7b13577e091d92beecd61ed86b3c0f0",
        "valid_5.tgt": "35fc4854210e1059b79aad681481c3b5",
        "test_5.src": "162df035255df783b3e2104d77fd58f0",
        "test_5.tgt": "e1ea35964cbcec5f78d26ff5306fffb7",
    },
}
VOCAB_SIZES = {3: (22, 25), 5: (24, 25)}  # (source, target) from the train files
SMALL = dict(code_length=12, train_size=7, valid_size=4, test_size=3)
# Enough train programs that valid/test hold no token unseen in train.
READER = dict(code_length=30, train_size=20, valid_size=4, test_size=3)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def decode(split, i):
    """Line i of a read split back to text, in the official spacing."""
    n = split.lengths[i]
    src = " ".join(split.src_vocab[t] for t in split.src[i, :n]) + " "
    tgt = " ".join(split.tgt_vocab[t] for t in split.tgt[i, :n]) + " "
    return src, tgt


def check_paper_preset(tmp_path, num_vars):
    paths = ce.write_files(tmp_path, num_vars)
    assert {p.name: md5(p) for pair in paths.values() for p in pair} == OFFICIAL_MD5[num_vars]

    # Reading train in full is covered by the small round trip; here its vocabularies suffice.
    sv, tv = ce.read_vocabularies(tmp_path, num_vars)
    assert (len(sv), len(tv)) == VOCAB_SIZES[num_vars]
    data = {s: ce.read_split(tmp_path, s, num_vars, src_vocab=sv, tgt_vocab=tv)
            for s in ("valid", "test")}
    assert [len(data[s]) for s in data] == [999, 999]
    assert paths["train"][0].read_bytes().count(b"\n") == 9999
    for d in data.values():
        assert d.src.shape == d.tgt.shape == (len(d), d.lengths.max())
        assert d.src.dtype == d.tgt.dtype == np.int32
        pad = np.arange(d.src.shape[1]) >= d.lengths[:, None]
        assert (d.src[pad] == ce.SRC_PAD_ID).all() and (d.tgt[pad] == ce.TGT_PAD_ID).all()
        assert (d.tgt[~pad] >= 0).all()
    # Round trip: the valid split decodes back to its file, line for line.
    src_path, tgt_path = paths["valid"]
    src_lines = src_path.read_text().splitlines()
    tgt_lines = tgt_path.read_text().splitlines()
    assert [decode(data["valid"], i) for i in range(len(data["valid"]))] == list(
        zip(src_lines, tgt_lines))
    return data


def test_paper_preset_3_vars_byte_for_byte(tmp_path):
    data = check_paper_preset(tmp_path, 3)
    with open(tmp_path / "train_3.src") as fs, open(tmp_path / "train_3.tgt") as ft:
        src, tgt = next(fs), next(ft)
    assert src.startswith("z = 1 ; z = 4 ; z ++ ; z = 8 ;") and tgt.endswith("_ _ 0 \n")
    assert data["valid"].tgt_vocab[0] == ce.NO_OP and data["valid"].no_op_id == 0


@pytest.mark.slow
def test_paper_preset_5_vars_byte_for_byte(tmp_path):
    check_paper_preset(tmp_path, 5)


# ----------------------------------------------------------------------------------------------
# Independent interpreter: the expected target of a program text, official ground truth.

NAMES = ["x", "y", "z", "a", "b"]


def interpret(line, num_vars, code_length):
    """Expected target line of a source line; asserts the program is well formed."""
    assert line.endswith(" ") and not line.endswith("  ") and "  " not in line
    toks = line.split(" ")[:-1]
    names = NAMES[:num_vars]
    values = {}  # assigned variables only
    out = []
    stats = {"cond_reassign": 0, "cond_false_print": 0, "cond_true": 0, "cond_false": 0}

    def simple(i, cond):  # cond: None at top level, else the condition's truth value
        if toks[i] == "print":
            var, semi = toks[i + 1], toks[i + 2]
            assert semi == ";" and var in values, (i, toks[i:i + 3])
            if cond is False:
                stats["cond_false_print"] += 1
            out.extend(["_", "_", "_" if cond is False else str(values[var])])
            return i + 3
        var, op = toks[i], toks[i + 1]
        assert var in names
        if op == "=":
            c, semi = int(toks[i + 2]), toks[i + 3]
            assert semi == ";" and 0 <= c <= 9 and toks[i + 2] == str(c)
            if cond is None:
                values[var] = c
            elif cond:
                if var in values:  # official quirk: no effect on an assigned variable
                    stats["cond_reassign"] += 1
                else:
                    values[var] = c
            out.extend(["_"] * 4)
            return i + 4
        assert op in ("++", "--") and toks[i + 2] == ";" and var in values
        step = 1 if op == "++" else -1
        # The written operator never leaves [-8, 16], applied or not.
        assert -8 <= values[var] + step <= 16
        if cond is not False:
            values[var] += step
        out.extend(["_"] * 3)
        return i + 3

    i, statements = 0, 0
    while i < len(toks):
        if statements == 0:
            assert toks[i + 1] == "="  # the first statement is an assignment
        if toks[i] == "if":
            var, cmp, c, colon = toks[i + 1:i + 5]
            assert var in values and cmp in "<>" and colon == ":" and 0 <= int(c) <= 9
            cond = values[var] < int(c) if cmp == "<" else values[var] > int(c)
            stats["cond_true" if cond else "cond_false"] += 1
            out.extend(["_"] * 5)
            assert toks[i + 5] != "if"
            i = simple(i + 5, cond)
        else:
            last = i
            i = simple(i, None)
        statements += 1
    # The last statement is a print (a 1-statement program is just the first assignment).
    assert statements == code_length and (code_length == 1 or toks[last] == "print")
    return " ".join(out) + " ", stats


@pytest.mark.parametrize("num_vars", [3, 5])
def test_targets_match_independent_interpreter(num_vars):
    totals = {}
    # A few hundred programs: the first of the paper stream, then short ones.
    examples = [(ex.src, ex.tgt, 100) for ex in
                ce.generate(num_vars, train_size=200, valid_size=0, test_size=0)]
    rng = random.Random(1)
    for code_length in [1, 2, 3, 5, 10, 20, 30]:
        for _ in range(20):
            examples.append((*ce.generate_program(rng, num_vars, code_length), code_length))
    for src, tgt, code_length in examples:
        expected, stats = interpret(src, num_vars, code_length)
        assert tgt == expected, src
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    # The quirks were exercised.
    assert totals["cond_reassign"] > 10 and totals["cond_false_print"] > 10, totals


# ----------------------------------------------------------------------------------------------
# Generator API


def test_generator_api_is_consistent_and_deterministic(tmp_path):
    examples = list(ce.generate(3, **SMALL))
    assert examples == list(ce.generate(3, **SMALL))
    assert [ex.split for ex in examples] == ["train"] * 6 + ["valid"] * 3 + ["test"] * 2
    assert [ex.index for ex in examples] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1]
    for split in ce.SPLITS:
        assert list(ce.generate_split(split, 3, **SMALL)) == [
            (ex.src, ex.tgt) for ex in examples if ex.split == split]
    other = list(ce.generate(3, **SMALL, seed=43))
    assert [ex.src for ex in other] != [ex.src for ex in examples]

    # drop_last=False adds the dropped programs back, in the same stream.
    full = list(ce.generate(3, **SMALL, drop_last=False))
    assert [ex for ex in full if ex.index != SMALL[f"{ex.split}_size"] - 1] == examples
    rng = random.Random(ce.PAPER_SEED)
    assert [ce.generate_program(rng, 3, 12) for _ in full] == [(ex.src, ex.tgt) for ex in full]

    paths = ce.write_files(tmp_path, 3, **SMALL)
    for split, (src_path, tgt_path) in paths.items():
        lines = [(ex.src + "\n", ex.tgt + "\n") for ex in examples if ex.split == split]
        assert src_path.read_text() == "".join(s for s, _ in lines)
        assert tgt_path.read_text() == "".join(t for _, t in lines)


def test_small_programs_and_argument_checks():
    src, tgt = ce.generate_program(random.Random(0), 2, 2)
    assert src.split()[1] == "=" and src.split()[4] == "print" and len(tgt.split()) == 7
    assert tgt.split()[:6] == ["_"] * 6 and tgt.split()[6] != "_"
    for num_vars in (1, 2, 4):
        for ex in ce.generate(num_vars, code_length=30, train_size=20, valid_size=0,
                              test_size=0):
            assert set(ex.src.split()) & set(NAMES) <= set(NAMES[:num_vars])
            assert interpret(ex.src, num_vars, 30)[0] == ex.tgt
    with pytest.raises(ValueError, match="num_vars"):
        ce.generate_program(random.Random(0), 6)
    with pytest.raises(ValueError, match="num_vars"):
        ce.generate(0)
    with pytest.raises(ValueError, match="code_length"):
        ce.generate(3, code_length=0)
    with pytest.raises(ValueError, match="valid_size"):
        ce.generate(3, valid_size=-1)
    with pytest.raises(ValueError, match="unknown split"):
        ce.generate_split("dev")


# ----------------------------------------------------------------------------------------------
# Reader


def write_small(tmp_path):
    ce.write_files(tmp_path, 3, **READER)
    return {s: ce.split_paths(tmp_path, s, 3) for s in ce.SPLITS}


def test_reader_round_trip_small(tmp_path):
    paths = write_small(tmp_path)
    data = ce.read_dataset(tmp_path, 3)
    sv, tv = ce.read_vocabularies(tmp_path, 3)
    text = paths["train"][0].read_text().split()
    assert sv == tuple(dict.fromkeys(text))  # first-occurrence order, no special tokens
    for split in ce.SPLITS:
        d = data[split]
        assert (d.src_vocab, d.tgt_vocab) == (sv, tv)
        src_lines = paths[split][0].read_text().splitlines()
        tgt_lines = paths[split][1].read_text().splitlines()
        assert [decode(d, i) for i in range(len(d))] == list(zip(src_lines, tgt_lines))
        assert d.src.shape[1] == max(len(line.split()) for line in src_lines)
    one = ce.read_split(tmp_path, "test", 3)
    assert np.array_equal(one.src, data["test"].src) and np.array_equal(one.tgt, data["test"].tgt)


def rewrite_line(path, lineno, fn):
    lines = path.read_text().splitlines(keepends=True)
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("".join(lines))


def test_reader_token_count_mismatch(tmp_path):
    paths = write_small(tmp_path)
    rewrite_line(paths["valid"][1], 2, lambda line: "_ " + line)
    with pytest.raises(ce.DataFormatError, match=r"valid_3\.src, line 2 has \d+ tokens but "
                                                 r".*valid_3\.tgt, line 2 has"):
        ce.read_split(tmp_path, "valid", 3)


@pytest.mark.parametrize("shorter", ["src", "tgt"])
def test_reader_line_count_mismatch(tmp_path, shorter):
    paths = write_small(tmp_path)
    src_path, tgt_path = paths["test"]
    short, long_ = (src_path, tgt_path) if shorter == "src" else (tgt_path, src_path)
    short.write_text(short.read_text().splitlines(keepends=True)[0])
    with pytest.raises(ce.DataFormatError, match=rf"{long_.name}, line 2: no matching line in "
                                                 rf".*{short.name}, which has only 1 lines"):
        ce.read_split(tmp_path, "test", 3)


@pytest.mark.parametrize("ext,what", [("src", "source"), ("tgt", "target")])
def test_reader_unknown_token(tmp_path, ext, what):
    paths = write_small(tmp_path)
    path = paths["test"][0 if ext == "src" else 1]
    rewrite_line(path, 2, lambda line: "w" + line[1:])  # each line starts with a 1-char token
    with pytest.raises(ce.DataFormatError, match=rf"test_3\.{ext}, line 2: token 'w' is not in "
                                                 rf"the {what} vocabulary \(built from "
                                                 rf"train_3\.src and train_3\.tgt\)"):
        ce.read_split(tmp_path, "test", 3)


def test_reader_empty_line_and_missing_file(tmp_path):
    paths = write_small(tmp_path)
    for path in paths["valid"]:
        rewrite_line(path, 3, lambda line: "\n")
    with pytest.raises(ce.DataFormatError, match=r"valid_3\.src, line 3: empty line"):
        ce.read_split(tmp_path, "valid", 3)
    paths["test"][1].unlink()
    with pytest.raises(FileNotFoundError, match=r"test_3\.tgt"):
        ce.read_split(tmp_path, "test", 3)


# ----------------------------------------------------------------------------------------------
# Writing: refusal to append, CLI


def test_write_refuses_to_append_unless_asked(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--num-vars", "3", "--code-length", "12", "--train-size",
            "7", "--valid-size", "4", "--test-size", "3"]
    assert ce.main(args) == 0
    first = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert sorted(first) == sorted(f"{s}_3.{e}" for s in ce.SPLITS for e in ("src", "tgt"))
    assert "train_3: 7/7 programs" in capsys.readouterr().err

    assert ce.main(args) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "appends" in err and "--append" in err
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == first  # untouched
    with pytest.raises(FileExistsError, match="append=True"):
        ce.write_files(tmp_path, 3, **SMALL)

    assert ce.main(args + ["--append"]) == 0  # the official behaviour: the same data again
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        k: v + v for k, v in first.items()}

    # Empty files are not data: writing over them is allowed, and no temporary file is left.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train_3.src").touch()
    assert ce.main(args[:1] + [str(empty)] + args[2:] + ["--keep-last"]) == 0
    assert sorted(p.name for p in empty.iterdir()) == sorted(first)
    assert len((empty / "train_3.src").read_text().splitlines()) == 7


def test_interrupted_write_leaves_no_partial_file(tmp_path):
    calls = []

    def progress(split, done, total):
        calls.append((split, done, total))
        if split == "valid":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ce.write_files(tmp_path, 3, **SMALL, progress=progress)
    assert calls == [("train", 7, 7), ("valid", 4, 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_3.src", "train_3.tgt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "train_3.src").stat().st_mode & 0o777 == 0o666 & ~umask
