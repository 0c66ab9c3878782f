"""Acting: a jitted batched policy step, and an `Actor` that steps a vector environment for
one unroll at a time and returns it in the learner's layout; `ActorThread` runs one in the
background (Sebulba: the environments step on the CPU, inference runs on the actor device).

The unroll (batch first, T+1 rows; torchbeast's convention, PAPER_SPEC 7):

    obs     uint8   [B, T+1, C, H, W]   row 0 repeats the previous unroll's last row
    reward  float32 [B, T+1]            the raw reward that came with row t's frame
    done    bool    [B, T+1]            the core state is reset before row t
    action  int32   [B, T+1]            row t >= 1: the action taken at row t-1's frame
    logits  float32 [B, T+1, A]         row t >= 1: the behaviour policy at row t-1's frame
    state   pytree, leaves [B, ...]     the core state before row 0

plus, outside the arrays, the parameter version the actor used and the episodes completed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fastweights.rl.envs import EpisodeStats, VectorEnv, frames_per_step

Array = jax.Array
ARRAY_KEYS = ("obs", "reward", "done", "action", "logits")


class Rollout(NamedTuple):
    arrays: dict[str, Any]     # ARRAY_KEYS -> numpy [B, T+1, ...], "state" -> pytree of numpy [B, ...]
    version: int               # the learner update whose parameters acted
    episodes: dict[str, list]  # EpisodeStats.pop(): what ended during the rollout


def make_policy_step(graphdef, rest, *, greedy: bool = False) -> Callable:
    """`policy(params, obs, reward, done, state, key) -> (action [B] int32, logits [B, A],
    baseline [B], state)`, jitted: the agent's `step`, then a sampled (or, `greedy`, the
    most probable) action."""
    def policy(params, rest, obs, reward, done, state, key):
        agent = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
        out, state = agent.step(obs, reward, done, state)
        action = jnp.argmax(out.logits, -1) if greedy else jax.random.categorical(key, out.logits)
        return action.astype(jnp.int32), out.logits, out.baseline, state

    jitted = jax.jit(policy)
    return lambda params, obs, reward, done, state, key: jitted(params, rest, obs, reward, done, state, key)


class Actor:
    """Steps `env` with the policy for `unroll_length` steps per `rollout` call, carrying the
    last row, the core state and the episode statistics from one rollout to the next."""

    def __init__(self, env: VectorEnv, policy: Callable, init_state: Any, unroll_length: int, *,
                 key: Array, device: jax.Device):
        self.env, self.policy, self.unroll_length = env, policy, unroll_length
        self.device = device
        self.key = key
        self.stats = EpisodeStats(frames_per_step(env.config))
        self.rollouts = 0
        first = env.reset()
        B = env.num_envs
        # The row the next rollout starts with (its action and logits are unused by the
        # learner: there is no action before an environment's first frame).
        self._last = dict(obs=first.obs, reward=first.reward.astype(np.float32), done=first.done,
                          action=np.zeros(B, np.int32),
                          logits=np.zeros((B, env.num_actions), np.float32))
        self._state = jax.device_put(init_state, device)

    def rollout(self, params, version: int) -> Rollout:
        """One unroll of T+1 rows with `params` (already on this actor's device)."""
        rows = [self._last]
        start_state = jax.device_get(self._state)
        state = self._state
        row = self._last
        key = jax.random.fold_in(self.key, self.rollouts)
        put = lambda x: jax.device_put(x, self.device)  # noqa: E731
        for t in range(self.unroll_length):
            action, logits, _, state = self.policy(params, put(row["obs"]), put(row["reward"]),
                                                   put(row["done"]), state, jax.random.fold_in(key, t))
            action, logits = np.asarray(action), np.asarray(logits)
            step = self.env.step(action)
            self.stats.update(step)
            row = dict(obs=step.obs, reward=step.reward.astype(np.float32), done=step.done, action=action,
                       logits=logits.astype(np.float32))
            rows.append(row)
        self._last, self._state = row, state
        self.rollouts += 1
        arrays = {k: np.stack([r[k] for r in rows], axis=1) for k in ARRAY_KEYS}
        arrays["state"] = start_state
        return Rollout(arrays, version, self.stats.pop())


class ParamsBox:
    """The newest published parameters and their version, shared by the learner and the
    actor threads. `publish` keeps a copy: the learner's step donates (frees) the buffers
    of the parameters it was given."""

    def __init__(self, params, version: int):
        self._lock = threading.Lock()
        self._copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))
        self._value = (self._copy(params), version)

    def publish(self, params, version: int) -> None:
        params = self._copy(params)
        with self._lock:
            self._value = (params, version)

    def get(self):
        with self._lock:
            return self._value


class ActorThread(threading.Thread):
    """Runs `actor.rollout` with the newest parameters of `box` (moved to the actor's device
    once per version) and puts the rollouts on `out`, until `stop` is set. An exception is
    kept in `error` and sets `stop`, so that the learner sees it."""

    def __init__(self, actor: Actor, box: ParamsBox, out: queue.Queue, stop: threading.Event, *, name: str):
        super().__init__(name=name, daemon=True)
        self.actor, self.box, self.out, self.stop = actor, box, out, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        cached_version, params = None, None
        try:
            while not self.stop.is_set():
                published, version = self.box.get()
                if version != cached_version:
                    params, cached_version = jax.device_put(published, self.actor.device), version
                rollout = self.actor.rollout(params, version)
                while not self.stop.is_set():
                    try:
                        self.out.put(rollout, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as error:  # noqa: BLE001 (handed to the learner thread)
            self.error = error
            self.stop.set()


def concatenate(rollouts: list[Rollout]) -> dict[str, Any]:
    """One learner batch from several rollouts, stacked along the batch axis."""
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *[r.arrays for r in rollouts])
