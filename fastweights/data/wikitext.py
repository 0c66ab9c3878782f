"""WikiText-103 from local files, tokenised as the official code does (`corpus`; specials:
`<eos>` only: `<unk>` is an ordinary train word of WikiText). Nothing is ever downloaded.

Two layouts are found automatically in `directory`:

* text: `wiki.{train,valid,test}.tokens` (the `wikitext-103-v1.zip` release), or
  `{train,valid,test}.txt` (the same files as renamed by the official `getdata.sh`);
* Hugging Face parquet (https://huggingface.co/datasets/Salesforce/wikitext):
  `wikitext-103-v1/{train,validation,test}-*.parquet`, `directory` being that folder or the
  one holding it; a split's shards are read in name order, one line per row of `text`
  (rows keep their "\\n"; blank lines are ""), which gives the text layout's ids.

When both are there, the text files are used. The corpus is named "wikitext-103" (or
"wikitext-103-raw") when the folder's name says so, else after the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastweights.data import corpus

TEXT_NAMES = ({s: f"wiki.{s}.tokens" for s in corpus.SPLITS}, {s: f"{s}.txt" for s in corpus.SPLITS})
PARQUET_FOLDER = "wikitext-103-v1"
PARQUET_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
WHERE = ("get WikiText-103 from https://huggingface.co/datasets/Salesforce/wikitext (the "
         f"{PARQUET_FOLDER} folder) or as the original wikitext-103-v1.zip "
         "(https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip, unzipped)")


def load(directory: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
         workers: int | None = None) -> corpus.Corpus:
    """The corpus in `directory` (either layout), tokenised into `cache_dir` on first use
    (`workers` processes; default: the CPU count)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"WikiText folder {directory} does not exist; {WHERE}")
    sources, folder = find_sources(directory)
    return corpus.build(_name(folder), sources, cache_dir=cache_dir, workers=workers)


def find_sources(directory: Path) -> tuple[dict[str, corpus.Source], Path]:
    """The split sources in `directory` and the folder that holds them, or a
    FileNotFoundError saying what was expected where."""
    for names in TEXT_NAMES:
        paths = {s: directory / names[s] for s in corpus.SPLITS}
        if all(p.is_file() for p in paths.values()):
            return {s: corpus.TextFiles((p,)) for s, p in paths.items()}, directory
    for folder in (directory / PARQUET_FOLDER, directory):
        shards = {s: sorted(folder.glob(f"{PARQUET_SPLITS[s]}-*.parquet")) for s in corpus.SPLITS}
        if all(shards.values()):
            return {s: corpus.ParquetFiles(tuple(p)) for s, p in shards.items()}, folder
    text = " or ".join(", ".join(names.values()) for names in TEXT_NAMES)
    parquet = ", ".join(f"{PARQUET_SPLITS[s]}-*.parquet" for s in corpus.SPLITS)
    found = sorted(p.name for p in directory.iterdir())[:12]
    raise FileNotFoundError(
        f"no complete WikiText layout in {directory}: expected the text files {text} in "
        f"{directory}, or the parquet files {parquet} in {directory / PARQUET_FOLDER} (or in "
        f"{directory} itself); found {found or 'nothing'}. {WHERE[0].upper()}{WHERE[1:]}")


def _name(folder: Path) -> str:
    match = re.search(r"wikitext-103(-raw)?", folder.name.lower())
    return match.group(0) if match else re.sub(r"[^\w.-]+", "_", folder.name) or "wikitext"
