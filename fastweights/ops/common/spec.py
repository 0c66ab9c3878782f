"""The one description of a variant that generic code reads: `VariantSpec`.

Each `fastweights.ops.<variant>` package exports `SPEC`. The registry, the generic
`FastWeightLayer` and its config resolution, `fastweights.testing`, the generic tests, the
benchmarks, the device script and the demo read it, so that adding a variant is its package,
a registry row, its float64 oracle and the README rows (no list of variant names elsewhere).

    >>> import fastweights as fw
    >>> spec = fw.ops.delta_rnn.SPEC
    >>> spec.state, spec.versions, spec.forms[-1]
    (('W', 'R', 'y'), (1, 2), 'recurrent')

Nothing here imports a layer library: the layer half (`LayerSpec`) describes the slow
projection's per-head pieces and how they become the core's inputs as plain functions of
a duck-typed layer (see `LayerSpec`), and slow parameters as shapes and initialisers.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fastweights.ops.common.sequence import Form

Array = jax.Array


class Dims(NamedTuple):
    """Sizes of example inputs: batch, time, heads, key dim, value dim, Delta MLP depth."""
    batch: int
    time: int
    heads: int
    key_dim: int
    value_dim: int
    depth: int = 1


class Draw:
    """Random example inputs as a layer would produce them, drawn with NumPy on the host
    (deterministic in the seed, no compilation), in the requested dtype."""

    def __init__(self, seed: int, dtype: Any = jnp.float32):
        self.rng, self.dtype = np.random.default_rng(seed), dtype

    def array(self, x: np.ndarray) -> Array:
        """A host array as an input: rounded to float32, then cast to the dtype."""
        return jnp.asarray(np.asarray(x).astype(np.float32), self.dtype)

    def raw(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)

    def normal(self, *shape: int, scale: float = 1.0, loc: float = 0.0) -> Array:
        return self.array(loc + scale * self.raw(*shape))

    def positive(self, *shape: int) -> Array:
        """ELU+1 of a normal draw (the sum rule's feature map, not normalised)."""
        return self.array(_elu_p1(self.raw(*shape)))

    def mapped(self, *shape: int) -> Array:
        """ELU+1 then sum normalisation, as every delta-rule LM layer does."""
        x = _elu_p1(self.raw(*shape))
        return self.array(x / x.sum(-1, keepdims=True))

    def beta(self, *shape: int) -> Array:
        """A sigmoided normal draw, in (0, 1)."""
        return self.array(1.0 / (1.0 + np.exp(-self.raw(*shape))))

    def softmax(self, *shape: int) -> Array:
        e = np.exp(self.raw(*shape))
        return self.array(e / e.sum(-1, keepdims=True))


def _elu_p1(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def normal(key: Array, shape: Sequence[int], std: float, dtype=jnp.float32) -> Array:
    """`N(0, std^2)` of `shape`, drawn flat: threefry compiles far more slowly on CPU for
    small rank-3/4 shapes than for the same count flat (seconds per module init)."""
    return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(tuple(shape))


@dataclasses.dataclass(frozen=True)
class SlowParam:
    """A slow (trained) parameter the layer owns besides its projections.

    `init(next_key, dtype)` builds the initial value; it calls `next_key()` once per random
    draw it makes (so that parameters that need none consume no key).
    """
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    init: Callable[[Callable[[], Array], Any], Array]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """How the generic `FastWeightLayer` drives a variant.

    The functions receive the layer, duck-typed: `layer.config` (the resolved `LayerConfig`),
    `layer.num_heads`, `layer.head_dim` (d), `layer.key_dim` (d after the feature map: 2*nu*d
    for DPFP), `layer.fast_hidden` (f), `layer.feature_map(x)` (queries' and keys' feature map
    and sum normalisation) and `layer.core_options()` (`implementation`, `chunk_size`).

    Attributes:
      pieces: `layer -> ((name, size), ...)`: one head's slice of the slow projection, in
        the official per-head order.
      program: `(layer, pieces, slow, state) -> (outputs [B, T, H, d], state)`: the core
        call, from the pieces `{name: [B, T, H, size]}` and the slow parameter values.
      state: `(layer, batch_size) -> State`: the zero state at the layer's sizes.
      slow_params: `(layer, init) -> {name: SlowParam}` (`init`: "lm" or "pytorch").
      feature_map: the queries' and keys' default feature map, a name or
        `(convention, version) -> name`; None: the core takes raw queries and keys (no
        feature_map or sum_norm option).
      sum_norm: sum-normalise queries and keys by default (always under the RL convention,
        never after a softmax feature map).
      sum_norm_eps: the default epsilon of that normalisation (1e-5 under the RL convention).
      output_scale: the LM code's `1/sqrt(d)` on the heads' output, a bool or
        `(convention, version) -> bool`; never in the algorithmic and RL code.
      options: the variant's own `LayerConfig` fields (e.g. `normalize`).
    """
    pieces: Callable[[Any], tuple[tuple[str, int], ...]]
    program: Callable[[Any, Mapping[str, Array], Mapping[str, Array], Any], tuple[Array, Any]]
    state: Callable[[Any, int], Any]
    slow_params: Callable[[Any, str], Mapping[str, SlowParam]] = lambda layer, init: {}
    feature_map: str | None | Callable[[str, int | None], str] = "elu_p1"
    sum_norm: bool = True
    sum_norm_eps: float = 0.0
    output_scale: bool | Callable[[str, int | None], bool] = True
    options: tuple[str, ...] = ()

    def defaults(self, convention: str, version: int | None) -> dict[str, Any]:
        """The official `feature_map`, `sum_norm_eps` and `output_scale` of `convention`
        (`sum_norm` depends on the chosen feature map: `sum_norm_default`)."""
        value = lambda field: field(convention, version) if callable(field) else field  # noqa: E731
        return dict(feature_map=value(self.feature_map),
                    sum_norm_eps=1e-5 if convention == "rl" else self.sum_norm_eps,
                    output_scale=convention == "lm" and value(self.output_scale))

    def sum_norm_default(self, convention: str, feature_map: str | None) -> bool:
        return (self.sum_norm or convention == "rl") and feature_map not in (None, "softmax")


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """Everything generic code needs to know about one variant (or a baseline layer).

    Attributes:
      name: canonical snake_case name; also the public function's name.
      paper_name: as in the paper's tables.
      family: a key of `fastweights.registry.FAMILIES`.
      summary: the update in one line.
      state: the fields of the core's `State`.
      function: the public sequence function (`fn`); None for a baseline layer.
      step: `step(state, *inputs_t, *rest, **options) -> (state, output_t)`, the definition.
      init_state: `(batch_size, num_heads, key_dim, value_dim, ..., dtype) -> State`.
      implementations: `implementation=` name -> `Form`, in the order the README lists them
        (`forms`: the names).
      time_inputs: how many leading positional inputs carry a time axis (the rest, like the
        Delta MLP's LayerNorm parameters, do not); None: all of them.
      example_inputs: `(draw: Draw, dims: Dims) -> (args, kwargs)` such that
        `fn(*args, **kwargs, **case)` runs, with the inputs its layer would produce.
      equal_key_value_dims: the core needs key dim == value dim (example inputs use the key dim).
      cases: the option sets every generic test runs (every version, every normaliser
        setting, two depths, ...).
      sequence_only_options: options of `fn` that `step` does not take (the Delta MLP's
        `depth`, which its inputs imply).
      paper_options: the options of the paper's main table (benchmarks, demos).
      versions: the variant's versions (empty: unversioned); `default_version` the paper's.
      layer: how the generic layer drives it; None: no fast-weight layer.
      aliases: its official ids and other names (filled in by the registry).
    """
    name: str
    paper_name: str
    family: str
    summary: str
    state: tuple[str, ...] = ()
    function: Callable[..., tuple[Any, Any]] | None = None
    step: Callable[..., tuple[Any, Any]] | None = None
    init_state: Callable[..., Any] | None = None
    implementations: Mapping[str, Form] = MappingProxyType({})
    time_inputs: int | None = None
    example_inputs: Callable[[Draw, Dims], tuple[tuple[Any, ...], dict[str, Any]]] | None = None
    equal_key_value_dims: bool = False
    cases: tuple[Mapping[str, Any], ...] = ({},)
    sequence_only_options: tuple[str, ...] = ()
    paper_options: Mapping[str, Any] = MappingProxyType({})
    versions: tuple[int, ...] = ()
    default_version: int | None = None
    layer: LayerSpec | None = None
    aliases: tuple[Any, ...] = ()

    @property
    def has_core(self) -> bool:
        return self.function is not None

    @property
    def fn(self) -> Callable[..., tuple[Any, Any]]:
        """The public sequence function `(..., initial_state, implementation) -> (out, state)`."""
        if self.function is None:
            raise ValueError(f"{self.name} is a baseline layer and has no functional core")
        return self.function

    @property
    def module(self) -> ModuleType | None:
        """The `fastweights.ops.<name>` package, or None for a baseline."""
        return importlib.import_module(f"fastweights.ops.{self.name}") if self.has_core else None

    def split_time_inputs(self, args: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """`(inputs with a time axis, the rest)` of positional `args` (`time_inputs`)."""
        n = len(args) if self.time_inputs is None else self.time_inputs
        return tuple(args[:n]), tuple(args[n:])

    def step_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The `options` of a case that `step` takes."""
        return {k: v for k, v in options.items() if k not in self.sequence_only_options}

    @property
    def forms(self) -> tuple[str, ...]:
        """The `implementation=` values."""
        return tuple(self.implementations)

    @property
    def chunkable(self) -> bool:
        """Some form takes `chunk_size=`."""
        return any(f.chunked for f in self.implementations.values())


__all__ = ["Dims", "Draw", "LayerSpec", "SlowParam", "VariantSpec", "normal"]
