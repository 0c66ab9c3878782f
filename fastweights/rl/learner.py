"""The IMPALA learner: the V-trace actor-critic loss of torchbeast/polybeast and one jitted,
sharded update built on `fastweights.training`.

    state, learner_step = make_learner(agent, optimizer_config, LossConfig(), total_updates=n, mesh=mesh)
    state, metrics = learner_step(state, training.global_batch(unroll, mesh))

`unroll` is `{"obs", "reward", "done", "action", "logits", "state"}` in the batch-first
layout of T+1 rows (row 0 repeats the previous unroll's last row; "state" is the agent's
core state before row 0, a pytree with batch-leading leaves). With several processes each
passes its own rows; `global_batch` assembles the global arrays and the step, one SPMD
program, reduces the gradients over all of them.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from fastweights import training
from fastweights.rl.vtrace import vtrace_from_logits

Array = jax.Array

UNROLL_KEYS = ("obs", "reward", "done", "action", "logits", "state")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The IMPALA loss (PAPER_SPEC 7; polybeast's flags).

    Attributes:
      discount: gamma; the discount of a step after which the episode (life) ended is 0.
      baseline_cost: weight of `0.5 sum (vs - V)^2`.
      entropy_cost: weight of `sum pi log pi`; 0.01 as the paper's README sets it (the
        code default is 6e-4).
      reward_clip: rewards are clipped to [-c, c] in the learner; None: no clipping.
      clip_rho, clip_c, clip_pg_rho: V-trace's thresholds (all 1 in the paper).
    """
    discount: float = 0.99
    baseline_cost: float = 0.5
    entropy_cost: float = 0.01
    reward_clip: float | None = 1.0
    clip_rho: float = 1.0
    clip_c: float = 1.0
    clip_pg_rho: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")
        if self.baseline_cost < 0 or self.entropy_cost < 0:
            raise ValueError("baseline_cost and entropy_cost must be >= 0")
        if self.reward_clip is not None and self.reward_clip <= 0:
            raise ValueError(f"reward_clip must be > 0 or None, got {self.reward_clip}")


def impala_loss(agent: nnx.Module, unroll: dict, config: LossConfig) -> tuple[Array, dict]:
    """`(total, metrics)`: torchbeast's loss, summed (not averaged) over the T x B steps.

    The agent runs over all T+1 rows from the stored core state
    (`agent.unroll(obs, reward, done, state) -> (AgentOutput(logits [B, T+1, A],
    baseline [B, T+1]), state)`), then

        pg       = sum_t -log pi(a_t) pg_adv_t
        baseline = baseline_cost * 0.5 * sum_t (vs_t - V_t)^2
        entropy  = entropy_cost * sum_t sum_a pi log pi     (the negative entropy)

    with `vs`, `pg_adv` from V-trace (no gradient).
    """
    missing = [k for k in UNROLL_KEYS if k not in unroll]
    if missing:
        raise ValueError(f"unroll lacks {', '.join(missing)}; it needs {', '.join(UNROLL_KEYS)}")
    if unroll["reward"].ndim != 2 or unroll["reward"].shape[1] < 2:
        raise ValueError(f"reward must be [batch, T+1] with T >= 1, got {unroll['reward'].shape}")
    output, _ = agent.unroll(unroll["obs"], unroll["reward"], unroll["done"], unroll["state"])
    logits = jnp.asarray(output.logits, jnp.float32)
    baseline = jnp.asarray(output.baseline, jnp.float32)

    # Why the rows line up (torchbeast monobeast `learn()`: `batch[1:]`, `learner_outputs[:-1]`):
    # the agent's row t is its policy and value at frame t; the actor stores the action it
    # took at frame t, its logits there, and the reward and done that came after it in row
    # t+1. So learner rows 0..T-1 pair with stored rows 1..T, and the value of frame T
    # (row T) bootstraps. done[t+1] means frame t+1 began a new episode (life): the return
    # from frame t stops there, so that step's discount is 0.
    target_logits, values, bootstrap = logits[:, :-1], baseline[:, :-1], baseline[:, -1]
    actions = unroll["action"][:, 1:]
    behaviour_logits = jnp.asarray(unroll["logits"][:, 1:], jnp.float32)
    rewards = jnp.asarray(unroll["reward"][:, 1:], jnp.float32)
    if config.reward_clip is not None:
        rewards = jnp.clip(rewards, -config.reward_clip, config.reward_clip)
    discounts = config.discount * (1.0 - jnp.asarray(unroll["done"][:, 1:], jnp.float32))

    returns, log_rhos = vtrace_from_logits(
        behaviour_logits, target_logits, actions, discounts, rewards, values, bootstrap,
        clip_rho=config.clip_rho, clip_c=config.clip_c, clip_pg_rho=config.clip_pg_rho)

    log_policy = jax.nn.log_softmax(target_logits, axis=-1)
    policy = jnp.exp(log_policy)
    taken = jnp.take_along_axis(log_policy, jnp.asarray(actions, jnp.int32)[..., None], axis=-1)[..., 0]
    pg_loss = jnp.sum(-taken * returns.pg_advantages)
    baseline_loss = config.baseline_cost * 0.5 * jnp.sum((returns.vs - values) ** 2)
    negative_entropy = jnp.sum(policy * log_policy, axis=-1)        # [B, T]
    entropy_loss = config.entropy_cost * jnp.sum(negative_entropy)
    total = pg_loss + baseline_loss + entropy_loss

    rhos = jnp.exp(jax.lax.stop_gradient(log_rhos))
    metrics = {
        "pg_loss": pg_loss, "baseline_loss": baseline_loss, "entropy_loss": entropy_loss,
        "total_loss": total, "entropy": -jnp.mean(negative_entropy), "mean_rho": jnp.mean(rhos),
        "mean_value": jnp.mean(values),
        "clipped_rho_fraction": jnp.mean((rhos > config.clip_rho).astype(jnp.float32)),
    }
    return total, jax.tree.map(jax.lax.stop_gradient, metrics)


def make_learner(agent: nnx.Module, optimizer_config: training.OptimizerConfig, loss_config: LossConfig, *,
                 total_updates: int, mesh: jax.sharding.Mesh, seed: int = 0):
    """`(state, learner_step)`: the train state (a `training.TrainState` laid out over
    `mesh`) and `learner_step(state, unroll) -> (state, metrics)`, compiled once with the
    state donated; `unroll` comes from `training.global_batch`. The update clips the gradient
    norm (`optimizer_config.clip_norm`; polybeast: 40) and drops non-finite updates
    (`metrics["finite"]` is then 0). `total_updates` is the schedule's horizon unless
    `optimizer_config.decay_steps` is set (polybeast: total_steps / (T B))."""
    if total_updates < 1:
        raise ValueError(f"total_updates must be >= 1, got {total_updates}")
    optimizer = training.make_optimizer(optimizer_config, total_updates)
    state, shardings = training.init_train_state(agent, optimizer, seed=seed, mesh=mesh)
    graphdef, _, rest = training.split_model(agent)
    learner_step = training.make_train_step(
        graphdef, rest, functools.partial(impala_loss, config=loss_config), optimizer,
        training.learning_rate_schedule(optimizer_config, total_updates), shardings=shardings, mesh=mesh)
    return state, learner_step
