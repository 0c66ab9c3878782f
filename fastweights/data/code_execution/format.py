"""The official code-execution file layout, shared by the generator and the reader: split
names and order, file names, and the target token of a non-print position."""

from __future__ import annotations

import os
from pathlib import Path

SPLITS = ("train", "valid", "test")
NO_OP = "_"


def split_paths(data_dir: str | os.PathLike, split: str, num_vars: int) -> tuple[Path, Path]:
    """The official file names: `{split}_{num_vars}.src` and `.tgt` in `data_dir`."""
    base = Path(data_dir) / f"{split}_{num_vars}"
    return base.with_suffix(".src"), base.with_suffix(".tgt")
