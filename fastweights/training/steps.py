"""The train state and the pure, compiled train and eval steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from fastweights.nn.common import logical_axes
from fastweights.training.sharding import batch_sharding, param_specs

Array = jax.Array


class TrainState(NamedTuple):
    """Everything a step changes; a pytree, checkpointed as one."""
    step: Array          # [] int32: updates done
    params: nnx.State    # float32 master weights
    opt_state: Any
    key: Array           # [2] uint32: dropout keys are fold_in(key, step)


def state_shardings(state: TrainState, optimizer: optax.GradientTransformation, axes, mesh) -> TrainState:
    """NamedShardings of every leaf of a (possibly abstract) train state."""
    specs = param_specs(state.params, axes, mesh)
    opt_specs = optax.tree_map_params(optimizer, lambda _, s: s, state.opt_state, specs,
                                      transform_non_params=lambda _: P(),
                                      is_leaf=lambda x: isinstance(x, P))
    named = lambda s: NamedSharding(mesh, s)  # noqa: E731
    is_spec = lambda x: isinstance(x, P)  # noqa: E731
    return TrainState(named(P()), jax.tree.map(named, specs, is_leaf=is_spec),
                      jax.tree.map(named, opt_specs, is_leaf=is_spec), named(P()))


def _compute_params(params: nnx.State, compute_dtype: str) -> nnx.State:
    if compute_dtype == "float32":
        return params
    dtype = jnp.dtype(compute_dtype)
    return jax.tree.map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)


def _global_norm(tree) -> Array:
    # optax.tree.norm replaces optax.global_norm (deprecated) in newer optax releases.
    return optax.tree.norm(tree) if hasattr(optax, "tree") and hasattr(optax.tree, "norm") \
        else optax.global_norm(tree)


def _fresh(tree):
    """New Variable objects for the current trace: NNX refuses to mutate (e.g. advance an
    RNG count in) a Variable created at another trace level."""
    return jax.tree.map(lambda x: x, tree)


def _reseeded(graphdef, params, rest, key):
    """`rest` (the RNG streams) with the dropout stream reseeded by `key` for this step."""
    model = nnx.merge(graphdef, _fresh(params), _fresh(rest))
    nnx.reseed(model, dropout=key)
    return nnx.split(model, nnx.Param, ...)[2]


def split_model(model: nnx.Module):
    """`(graphdef, params, rest)`: the static structure, the trained parameters and the
    other state (RNG streams)."""
    return nnx.split(model, nnx.Param, ...)


def init_train_state(model: nnx.Module, optimizer: optax.GradientTransformation, *, seed: int,
                     mesh: jax.sharding.Mesh) -> tuple[TrainState, TrainState]:
    """`(state, shardings)`: the initial train state laid out over `mesh`."""
    _, params, _ = split_model(model)
    abstract = jax.eval_shape(lambda p: TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p),
                                                   jax.random.PRNGKey(0)), params)
    shardings = state_shardings(abstract, optimizer, logical_axes(model), mesh)
    init = jax.jit(lambda p, k: TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p), k),
                   out_shardings=shardings)
    return init(params, jax.random.PRNGKey(seed)), shardings


LossFn = Callable[[nnx.Module, Mapping[str, Array]], tuple[Array, Mapping[str, Array]]]


def make_train_step(graphdef, rest, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, *, shardings: TrainState, mesh: jax.sharding.Mesh,
                    compute_dtype: str = "float32", nan_policy: str = "stop"):
    """`train_step(state, batch) -> (state, metrics)`, jit-compiled once with explicit
    shardings and the state donated.

    A non-finite loss or gradient never reaches the parameters: the update is dropped and
    `metrics["finite"]` is 0, so the caller can stop ("stop") or go on ("skip").
    """
    del nan_policy  # both policies drop the update here; the loop decides whether to stop

    def step(state: TrainState, batch):
        step_rest = _reseeded(graphdef, state.params, rest, jax.random.fold_in(state.key, state.step))

        def loss_of(params):
            model = nnx.merge(graphdef, _compute_params(params, compute_dtype), _fresh(step_rest))
            model.train()
            return loss_fn(model, batch)

        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = _global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(state.step + 1, keep(params, state.params),
                               keep(opt_state, state.opt_state), state.key)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=schedule(state.step),
                       finite=finite.astype(jnp.float32))
        return new_state, metrics

    replicated = NamedSharding(mesh, P())
    return jax.jit(step, in_shardings=(shardings, batch_sharding(mesh)),
                   out_shardings=(shardings, replicated), donate_argnums=0)


def make_eval_step(graphdef, rest, loss_fn: LossFn, *, shardings: TrainState,
                   mesh: jax.sharding.Mesh, compute_dtype: str = "float32"):
    """`eval_step(params, batch) -> metrics` (eval mode: no dropout)."""
    def step(params, batch):
        model = nnx.merge(graphdef, _compute_params(params, compute_dtype), _fresh(rest))
        model.eval()
        loss, metrics = loss_fn(model, batch)
        return dict(metrics, loss=loss)

    return jax.jit(step, in_shardings=(shardings.params, batch_sharding(mesh)),
                   out_shardings=NamedSharding(mesh, P()))
