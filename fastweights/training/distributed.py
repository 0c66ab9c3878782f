"""Multi-process runs: `jax.distributed` set up from flags or the environment, and messages
from process 0 only."""

from __future__ import annotations

import os
import sys

import jax

DISTRIBUTED_ENV = ("FASTWEIGHTS_COORDINATOR", "FASTWEIGHTS_NUM_PROCESSES", "FASTWEIGHTS_PROCESS_ID")
JAX_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """`jax.distributed.initialize` from arguments, else the environment (`DISTRIBUTED_ENV`,
    or JAX's own `JAX_ENV` names); with neither, a single process (returns False). On CPU
    the cross-process collectives use gloo."""
    def env(i: int) -> str | None:
        return os.environ.get(DISTRIBUTED_ENV[i]) or os.environ.get(JAX_ENV[i])

    coordinator = coordinator or env(0)
    if num_processes is None and env(1):
        num_processes = int(env(1))
    if process_id is None and env(2):
        process_id = int(env(2))
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        return False
    if not all(given):
        raise ValueError("multi-process runs need all of coordinator address, number of processes "
                         f"and process id (flags, or {', '.join(DISTRIBUTED_ENV)}, or {', '.join(JAX_ENV)})")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def add_distributed_arguments(parser) -> None:
    """The multi-host flags of the command lines (`--coordinator`, `--num-processes`,
    `--process-id`), read by `initialize_distributed(args.coordinator, args.num_processes,
    args.process_id)`."""
    parser.add_argument("--coordinator", help="multi-host: coordinator address host:port")
    parser.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    parser.add_argument("--process-id", type=int, help="multi-host: this process's id")


def log(message: str) -> None:
    """A message from process 0 only (every process runs the same loop)."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
