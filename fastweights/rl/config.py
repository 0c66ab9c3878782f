"""The RL experiment: environments, agent, optimizer, loss and the actor-learner loop, as one
frozen config (`fastweights.experiment.override` applies `--set section.field=value`)."""

from __future__ import annotations

import dataclasses

from fastweights.rl.agent import AgentConfig
from fastweights.rl.envs import EnvConfig
from fastweights.rl.learner import LossConfig
from fastweights.training.config import OptimizerConfig

# polybeast's optimizer (PAPER_SPEC 7): RMSProp lr 6e-4, alpha 0.99, eps 0.01 (outside the
# square root, as PyTorch), global-norm clip 40, the rate decayed linearly to 0.
PAPER_OPTIMIZER = OptimizerConfig(optimizer="rmsprop", learning_rate=6e-4, decay=0.99, eps=0.01,
                                  clip_norm=40.0, schedule="linear")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The actor-learner loop.

    Attributes:
      total_steps: agent steps to learn from, over all processes, counted as polybeast does
        (each update adds unroll_length x batch_size); emulator frames are this times the
        environment's frame skip (4 on Atari, 1 on MinAtar).
      unroll_length: T; the learner gets T+1 rows, row 0 repeating the previous unroll's last.
      batch_size: unrolls (one per environment) per update, over all processes; each
        process's share must be a multiple of `env.num_envs` (one actor rollout's rows).
      num_actor_threads: per process, each stepping its own `env.num_envs` environments.
      queue_size: rollouts that may wait for the learner (the bound on policy lag).
      asynchronous: False acts and learns in turn in one thread (policy lag 0, deterministic
        given the seed: for tests and debugging).
      actor_devices / learner_devices: indices into this process's `jax.local_devices()`;
        () means the first device for acting and all devices for learning.
      log_every / checkpoint_every: in updates.
      eval_episodes: greedy episodes scored at the end of training (0: none).
    """
    total_steps: int = 200_000_000
    unroll_length: int = 50
    batch_size: int = 32
    num_actor_threads: int = 3
    queue_size: int = 4
    asynchronous: bool = True
    actor_devices: tuple[int, ...] = ()
    learner_devices: tuple[int, ...] = ()
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    async_checkpoints: bool = True
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True
    eval_episodes: int = 10


@dataclasses.dataclass(frozen=True)
class RLExperiment:
    """Everything one RL run needs."""
    env: EnvConfig
    agent: AgentConfig
    optimizer: OptimizerConfig = PAPER_OPTIMIZER
    loss: LossConfig = LossConfig()
    run: RunConfig = RunConfig()

    @property
    def steps_per_update(self) -> int:
        return self.run.unroll_length * self.run.batch_size

    @property
    def total_updates(self) -> int:
        return max(1, self.run.total_steps // self.steps_per_update)


def validate(exp: RLExperiment, *, process_count: int = 1) -> None:
    """Clear errors for settings that cannot run."""
    run = exp.run
    if run.unroll_length < 1 or run.batch_size < 1 or run.total_steps < 1:
        raise ValueError("run.unroll_length, run.batch_size and run.total_steps must be >= 1")
    if run.num_actor_threads < 1 or run.queue_size < 1:
        raise ValueError("run.num_actor_threads and run.queue_size must be >= 1")
    if run.batch_size % process_count:
        raise ValueError(f"run.batch_size {run.batch_size} must divide over {process_count} processes")
    local = run.batch_size // process_count
    if local % exp.env.num_envs:
        raise ValueError(f"each process's batch ({local} unrolls) must be a multiple of env.num_envs "
                         f"({exp.env.num_envs}): the learner takes whole actor rollouts")
