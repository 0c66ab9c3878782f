"""The train state and the pure, compiled train and eval steps: usable without the loop
(an RL learner, a notebook) as

    state, shardings = init_train_state(model, optimizer, seed=0, mesh=mesh)
    graphdef, _, rest = split_model(model)
    train_step = make_train_step(graphdef, rest, loss_fn, optimizer, schedule,
                                 shardings=shardings, mesh=mesh)
    state, metrics = train_step(state, global_batch(batch, mesh))

(a complete example that runs is the `fastweights.training` docstring).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from fastweights.nn.common import logical_axes
from fastweights.training.sharding import batch_sharding, carry_shardings, param_specs

Array = jax.Array


class TrainState(NamedTuple):
    """What an update changes (a carried-state task's carry travels beside it); a pytree,
    checkpointed as one."""
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


def make_carry_init(graphdef, rest, init_carry: Callable[[nnx.Module, str], Any], params: nnx.State, *,
                    mesh: jax.sharding.Mesh):
    """`(carry_init, shardings)`: `carry_init(params, split="train") -> carry`, compiled
    once per split, a fresh carry laid out by `shardings` (`sharding.carry_shardings`:
    scalars replicated, the rest split over `data`, whatever the batch size);
    `init_carry(model, split)` makes it, e.g. `lambda model, split: model.init_state(8)`."""
    def fresh(params, split):
        return init_carry(nnx.merge(graphdef, params, _fresh(rest)), split)

    shardings = carry_shardings(jax.eval_shape(functools.partial(fresh, split="train"), params), mesh)
    jitted = jax.jit(fresh, static_argnums=1, out_shardings=shardings)
    return (lambda params, split="train": jitted(params, split)), shardings


def to_host(metrics: Mapping[str, Array]) -> dict[str, float]:
    """A step's metrics as Python floats (waits for the step)."""
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


# `loss_fn(model, batch) -> (loss, metrics)`; with a carry `loss_fn(model, batch, carry) ->
# (loss, metrics, carry)` (`training.Task.loss`, `training.CarriedStateTask.loss`).
LossFn = Callable[..., tuple]


def _loss(loss_fn: LossFn, model: nnx.Module, batch, carry):
    """`(loss, (metrics, carry))`, the carry detached on the way in: the gradient of a batch
    never reaches into the batch before it."""
    if carry is None:
        loss, metrics = loss_fn(model, batch)
        return loss, (metrics, None)
    carry_in = jax.lax.stop_gradient(carry)
    loss, metrics, carry_out = loss_fn(model, batch, carry_in)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        carry_in, carry_out, custom_message="the carry a loss returns must match the one it was given")
    return loss, (metrics, carry_out)


def make_train_step(graphdef, rest, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, *, shardings: TrainState, mesh: jax.sharding.Mesh,
                    compute_dtype: str = "float32", carry_shardings=None):
    """`train_step(state, batch) -> (state, metrics)`, jit-compiled once with explicit
    shardings and the state donated. With `carry_shardings` (a carried-state task):
    `train_step(state, batch, carry) -> (state, metrics, carry)`, the carry donated too.

    A non-finite loss or gradient never reaches the parameters: the update (and the new
    carry) is dropped and `metrics["finite"]` is 0; the caller decides whether to stop.
    """
    def step(state: TrainState, batch, carry=None):
        step_rest = _reseeded(graphdef, state.params, rest, jax.random.fold_in(state.key, state.step))

        def loss_of(params):
            model = nnx.merge(graphdef, _compute_params(params, compute_dtype), _fresh(step_rest))
            model.train()
            return _loss(loss_fn, model, batch, carry)

        (loss, (metrics, new_carry)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = _global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(state.step + 1, keep(params, state.params),
                               keep(opt_state, state.opt_state), state.key)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=schedule(state.step),
                       finite=finite.astype(jnp.float32))
        if carry is None:
            return new_state, metrics
        return new_state, metrics, keep(new_carry, carry)

    replicated = NamedSharding(mesh, P())
    if carry_shardings is None:
        return jax.jit(step, in_shardings=(shardings, batch_sharding(mesh)),
                       out_shardings=(shardings, replicated), donate_argnums=0)
    return jax.jit(step, in_shardings=(shardings, batch_sharding(mesh), carry_shardings),
                   out_shardings=(shardings, replicated, carry_shardings), donate_argnums=(0, 2))


def make_eval_step(graphdef, rest, loss_fn: LossFn, *, shardings: TrainState,
                   mesh: jax.sharding.Mesh, compute_dtype: str = "float32", carry_shardings=None):
    """`eval_step(params, batch) -> metrics` (eval mode: no dropout). With `carry_shardings`:
    `eval_step(params, batch, carry) -> (metrics, carry)`."""
    def step(params, batch, carry=None):
        model = nnx.merge(graphdef, _compute_params(params, compute_dtype), _fresh(rest))
        model.eval()
        loss, (metrics, carry) = _loss(loss_fn, model, batch, carry)
        metrics = dict(metrics, loss=loss)
        return metrics if carry is None else (metrics, carry)

    replicated = NamedSharding(mesh, P())
    if carry_shardings is None:
        return jax.jit(step, in_shardings=(shardings.params, batch_sharding(mesh)), out_shardings=replicated)
    return jax.jit(step, in_shardings=(shardings.params, batch_sharding(mesh), carry_shardings),
                   out_shardings=(replicated, carry_shardings))
