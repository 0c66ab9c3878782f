"""What a run directory records about how the run was asked for."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax


class RunDirectoryError(ValueError):
    """A fresh run (no resume) was pointed at a directory that holds checkpoints."""


def config_to_dict(config: Any) -> Any:
    """A JSON-ready dict of a (nested) frozen dataclass config."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (tuple, list)):
        return [config_to_dict(c) for c in config]
    return config


def write_run_info(run_dir: str | Path, **info: Any) -> None:
    """`run.json`: how the run was asked for (task, preset, overrides), for result tables."""
    if jax.process_index() == 0:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "run.json").write_text(json.dumps(info, indent=1))
