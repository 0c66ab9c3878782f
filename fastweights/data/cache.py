"""The on-disk cache of prepared data: where it lives, and "build once, under a lock,
atomically" for a cache folder whose marker file (`meta.json`), written last, means complete.

Several processes (multi-process runs, parallel experiments) may ask for the same folder at
once: one builds it under an exclusive `fcntl.flock`, the others wait and then read its
result. A build that was killed leaves no marker, so the next caller builds again over its
partial files.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The cache root unless a caller names one: `$FASTWEIGHTS_CACHE`, else ~/.cache/fastweights
# (read at import; `cache_root(None)` reads the environment again at call time).
DEFAULT_CACHE = os.environ.get("FASTWEIGHTS_CACHE", "~/.cache/fastweights")
MARKER = "meta.json"
LOCK = "build.lock"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, or `$FASTWEIGHTS_CACHE`, or ~/.cache/fastweights; `~` expanded."""
    if cache_dir is None:
        cache_dir = os.environ.get("FASTWEIGHTS_CACHE", "~/.cache/fastweights")
    return Path(cache_dir).expanduser()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Writes `obj` as JSON to `path` through a temporary file renamed over it, so a reader
    sees either nothing or the whole file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def build_once(directory: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The metadata in `directory/meta.json`. When it is missing, `build(directory)` makes
    the folder's files and returns the metadata, which is then written last, atomically; the
    build runs under an exclusive lock, and the marker is checked again once the lock is held
    (another process may have finished meanwhile)."""
    directory = Path(directory)
    marker = directory / MARKER
    if marker.exists():
        return json.loads(marker.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # released when the file is closed
        if marker.exists():
            return json.loads(marker.read_text())
        meta = build(directory)
        write_json_atomic(marker, meta)
        return meta
