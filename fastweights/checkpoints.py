"""Checkpoints with orbax: the train state, the data-iterator state and the config in one
checkpoint; keep-last-N plus a separate best-by-validation checkpoint; restore that skips an
unreadable latest checkpoint and falls back to the previous one.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
run killed mid-save leaves no partial checkpoint among `all_steps()`; a complete but corrupt
one (a truncated or damaged file) fails to restore and is skipped with a message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx


class CheckpointStore:
    """`latest/` (the last `keep` checkpoints) and `best/` (one) under `directory`."""

    def __init__(self, directory: str | Path, *, keep: int = 3, async_save: bool = True):
        directory = Path(directory).absolute()
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")

        def manager(sub: str, max_to_keep: int) -> ocp.CheckpointManager:
            options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                   enable_async_checkpointing=async_save)
            return ocp.CheckpointManager(directory / sub, options=options)

        self.latest = manager("latest", keep)
        self.best = manager("best", 1)

    @staticmethod
    def _args(state: Any, meta: dict) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts saving (asynchronously when enabled); `meta` is JSON (iterator, config)."""
        self.latest.save(step, args=self._args(state, meta))

    def save_best(self, step: int, state: Any, meta: dict) -> None:
        self.best.save(step, args=self._args(state, meta))

    def restore_latest(self, abstract_state: Any, *, best: bool = False) -> tuple[int, Any, dict] | None:
        """`(step, state, meta)` of the newest readable checkpoint, or None when there is
        none. `abstract_state` gives shapes, dtypes and shardings (`jax.ShapeDtypeStruct`)."""
        manager = self.best if best else self.latest
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
            except Exception as error:  # noqa: BLE001 (any failure means: not usable)
                _log(f"checkpoint at step {step} in {manager.directory} cannot be restored "
                     f"({type(error).__name__}: {str(error)[:200]}); trying the previous one")
                continue
            return step, restored.state, dict(restored.meta)
        return None

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def read_checkpoint(directory: str | Path, params: Any = None, *, best: bool = True) -> tuple[int, dict, Any]:
    """`(step, meta, params)` of a run's best-validation checkpoint under `directory` (the
    run's `checkpoints/`; the newest one with `best=False` or when there is no best one),
    for evaluating or sampling from a trained model. With `params` (an `nnx.State` of the
    model's `nnx.Param`s, e.g. `nnx.state(model, nnx.Param)`) the parameters are restored
    into it; without, only the JSON meta is read. The optimizer state is not kept."""
    store = CheckpointStore(directory, keep=1, async_save=False)
    try:
        manager = store.best if best and store.best.all_steps() else store.latest
        if not manager.all_steps():
            raise FileNotFoundError(f"no checkpoint in {Path(directory).absolute()}")
        step = manager.latest_step()
        args = dict(meta=ocp.args.JsonRestore())
        if params is not None:
            args["state"] = ocp.args.StandardRestore()
        restored = manager.restore(step, args=ocp.args.Composite(**args))
    finally:
        store.close()
    if params is not None:
        tree = restored.state
        tree = tree.get("state", tree)              # a carried-state run saves {"state", "carry"}
        is_variable = lambda x: isinstance(x, dict) and set(x) == {"value"}  # noqa: E731 (a saved Variable)
        pure = jax.tree.map(lambda x: x["value"] if is_variable(x) else x, tree["params"], is_leaf=is_variable)
        nnx.replace_by_pure_dict(params, _int_keys(pure))
    return step, dict(restored.meta), params


def _int_keys(tree: Any) -> Any:
    """Orbax writes the integer keys of NNX lists (layer indices) as strings."""
    if not isinstance(tree, dict):
        return tree
    return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in tree.items()}


def abstract_like(state: Any, shardings: Any) -> Any:
    """`jax.ShapeDtypeStruct`s with the shardings to restore into."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
