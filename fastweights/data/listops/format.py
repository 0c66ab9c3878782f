"""The official ListOps file layout, shared by the generator and the reader: split names and
order, file names, the closing bracket token and the number of classes."""

from __future__ import annotations

SPLITS = ("train", "valid", "test")
NUM_CLASSES = 10
CLOSE = "]"


def file_name(split: str, *, max_args: int, max_depth: int, only_depth: int) -> str:
    """The official file name (the length bounds 401/299 are fixed, as in the official)."""
    return f"{split}_a{max_args}d{max_depth}max401min299dep{only_depth}.txt"
