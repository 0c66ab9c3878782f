"""Training tasks: data, model-config completion and loss, behind one interface.

A task (e.g. `associative_recall.TASK`) has `name`, a frozen `DataConfig` dataclass,
`model_config(data, model)`, `dataset(data, split, *, process_index, process_count)` (an
iterator of NumPy batch dicts with `get_state`/`set_state`), `loss(model, batch) -> (loss,
metrics)` and `tokens_per_batch(data)`; its module has `PRESETS` of `(data, model)` configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fastweights.tasks import associative_recall, code_execution, listops

TASKS: Mapping[str, Any] = MappingProxyType({
    associative_recall.TASK.name: associative_recall.TASK,
    code_execution.TASK.name: code_execution.TASK,
    listops.TASK.name: listops.TASK,
})


def get_task(name: str) -> Any:
    """The task `name`; `ValueError` lists the valid names."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "associative_recall", "code_execution", "get_task", "listops"]
