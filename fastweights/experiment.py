"""An experiment: a task's name, its data, a model, an optimizer and a training loop, as one
frozen config; `--set section.field=value` overrides with clear errors. The named
experiments of every task are `fastweights.presets`.

    >>> from fastweights.experiment import Experiment, override
    >>> exp = override(Experiment("associative_recall", data=None, model=None), ["train.steps=20"])
    >>> exp.train.steps
    20

The `--set` grammar is ours, kept after trying the libraries that could replace it: tyro and
simple_parsing make one flag per field (`--model.num-layers 2`) with their own error texts
(tyro: "Unrecognized options ... Perhaps you meant"; simple_parsing silently reads the prefix
`--num_layer` as `--num_layers`), and ml_collections' config flags (`--config.model.x=...`)
add an unknown field to an unlocked ConfigDict. Ours keeps one repeatable `--set
section.field=value` and errors that list the valid fields or name the expected type.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from fastweights.training.config import OptimizerConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything one run needs. `data` is the task's `DataConfig`; `model` a
    `fastweights.nn` model config (the task fills in its vocabulary sizes)."""
    task: str
    data: Any
    model: Any
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()


def from_dict(cls: type, value: Any) -> Any:
    """The frozen dataclass `cls` from `value`, a dict as `training.config_to_dict` writes it
    (a checkpoint's config): nested dataclass fields by their declared types, lists back to
    tuples; unknown keys are refused."""
    if not dataclasses.is_dataclass(cls):
        return tuple(value) if isinstance(value, list) else value
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    out = {}
    for name, item in value.items():
        kinds = [k for k in _options(hints[name]) if dataclasses.is_dataclass(k)]
        out[name] = from_dict(kinds[0], item) if kinds and isinstance(item, dict) else from_dict(object, item)
    return cls(**out)


def override(config: Any, overrides: Sequence[str]) -> Any:
    """Applies "a.b.c=value" assignments to a nested frozen dataclass."""
    for assignment in overrides:
        path, sep, text = assignment.partition("=")
        if not sep or not path.strip():
            raise ValueError(f"override {assignment!r} must look like section.field=value")
        config = _replace(config, path.strip().split("."), text.strip(), path.strip())
    return config


def _replace(config: Any, path: list[str], text: str, full: str) -> Any:
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"{full}: {type(config).__name__} has no fields")
    fields = {f.name: f for f in dataclasses.fields(config)}
    name = path[0]
    if name not in fields:
        raise ValueError(f"{full}: {type(config).__name__} has no field {name!r}; "
                         f"valid: {', '.join(fields)}")
    current = getattr(config, name)
    if len(path) > 1:
        value = _replace(current, path[1:], text, full)
    else:
        hints = typing.get_type_hints(type(config))
        value = _parse(text, hints.get(name, type(current)), current, full)
    return dataclasses.replace(config, **{name: value})


def _parse(text: str, annotation: Any, current: Any, full: str) -> Any:
    """`text` as a value of the field's declared type (int, float, bool, str, None, tuple)."""
    if dataclasses.is_dataclass(current):
        raise ValueError(f"{full} is a section; set one of its fields ({full}.<field>=...)")
    options = _options(annotation)
    if text.lower() in ("none", "null") and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        try:
            return _as(text, option)
        except (ValueError, SyntaxError):
            continue
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{full}={text!r}: expected {names}")


def _options(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _as(text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind) or kind
    if kind is Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    if origin is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"not a bool: {text}")
    if origin is int:
        return int(text)
    if origin is float:
        return float(text)
    if origin is str:
        return text
    if origin is tuple:
        value = ast.literal_eval(text if text.startswith("(") else f"({text},)")
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return tuple(_as(str(v), args[0] if len(args) == 1 or not args else args[i]) if args else v
                     for i, v in enumerate(value))
    raise ValueError(f"cannot parse a {kind}")
