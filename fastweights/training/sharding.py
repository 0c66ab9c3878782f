"""The device mesh and how arrays are laid out on it: parameters by their logical axis
names, batches split over `data`."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

Array = jax.Array

MESH_AXES = ("data", "model")
# Logical parameter axes -> mesh axes. Heads (and the feed-forward width) are the
# model-parallel axes; everything else is replicated. A dim that the model axis does not
# divide is replicated too.
SHARDING_RULES: Mapping[str, str | None] = {"heads": "model", "mlp": "model"}


def make_mesh(shape: tuple[int, int] = (-1, 1), devices=None) -> jax.sharding.Mesh:
    """A `(data, model)` mesh over all (global) devices; -1 takes what is left."""
    devices = jax.devices() if devices is None else devices
    data, model = shape
    if data == -1 and model == -1:
        raise ValueError("at most one mesh axis may be -1")
    if model == -1:
        model = len(devices) // data
    if data == -1:
        data = len(devices) // model
    if data * model != len(devices) or data < 1 or model < 1:
        raise ValueError(f"mesh {shape} does not fit {len(devices)} devices (data x model must equal it)")
    return jax.sharding.Mesh(np.asarray(devices).reshape(data, model), MESH_AXES)


def param_specs(params: nnx.State, axes: Mapping[tuple, tuple], mesh: jax.sharding.Mesh,
                rules: Mapping[str, str | None] = SHARDING_RULES) -> nnx.State:
    """A `PartitionSpec` per parameter from its logical axis names and `rules`."""
    def spec(path, value):
        names = axes.get(_path_key(path), (None,) * value.ndim)
        mesh_axes = []
        for name, dim in zip(names, value.shape):
            target = rules.get(name)
            ok = target is not None and dim % mesh.shape[target] == 0 and target not in mesh_axes
            mesh_axes.append(target if ok else None)
        return P(*mesh_axes)

    return jax.tree_util.tree_map_with_path(spec, params)


def _path_key(path) -> tuple:
    """A pytree path of a parameter value as the key `logical_axes` uses."""
    keys = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            keys.append(entry.key)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            keys.append(entry.idx)
        elif isinstance(entry, jax.tree_util.GetAttrKey) and entry.name != "value":
            keys.append(entry.name)
    return tuple(keys)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def carry_shardings(carry, mesh: jax.sharding.Mesh):
    """The layout of a (possibly abstract) carried state: scalars replicated, every other
    leaf split over `data` along its leading (batch) axis, like the batches."""
    return jax.tree.map(lambda x: NamedSharding(mesh, P() if x.ndim == 0 else P("data")), carry)


def global_batch(local, mesh: jax.sharding.Mesh):
    """Assembles each process's rows into global arrays sharded over `data`: every leaf of
    `local` (a dict of arrays, or any pytree of them, e.g. with a nested core state) has its
    batch axis first; a mapping comes back as a dict."""
    sharding = batch_sharding(mesh)
    if isinstance(local, Mapping) and not isinstance(local, dict):
        local = dict(local)
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)), local)
