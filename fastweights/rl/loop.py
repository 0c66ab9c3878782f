"""The actor-learner loop, Sebulba-style (Hessel et al. 2021, "Podracer architectures"):
actor threads step vectorised environments on the CPU and run batched, jitted inference on
an actor device; the learner takes whole rollouts from a bounded queue, assembles the
process's rows into a global batch and runs one jitted update over the device mesh, then
publishes the new parameters. Multi-host through `jax.distributed`: every process runs this
same loop with its own environments and actors, and the update is one SPMD program, so the
gradients are reduced across processes.

Checkpoints (orbax, atomic) hold the train state (parameters, optimizer, update count, RNG
key) and, as JSON, the counters (updates, agent steps, frames, episodes) and the config. A
resumed run restores them exactly and counts only what the restored updates learnt from.
Environment states are not saved: after a resume the environments start new episodes (from
seeds derived from the update count, so not the episodes of the first start) with a fresh
core state.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from fastweights import metrics as run_metrics
from fastweights.checkpoints import CheckpointStore, abstract_like
from fastweights.rl import envs as rl_envs
from fastweights.rl.actor import Actor, ActorThread, ParamsBox, concatenate, make_policy_step
from fastweights.rl.agent import Agent
from fastweights.rl.config import RLExperiment, validate
from fastweights.rl.learner import make_learner
from fastweights.training.distributed import log
from fastweights.training.run_dir import RunDirectoryError, config_to_dict
from fastweights.training.sharding import global_batch, make_mesh
from fastweights.training.steps import split_model, to_host

RETURN_WINDOW = 100     # episodes in the logged running mean of returns, as torchbeast's log


def learner_devices(indices: tuple[int, ...]) -> list[jax.Device]:
    """The learner mesh's devices: `indices` into each process's local devices (every
    process chooses the same), all local devices when empty, over all processes."""
    out = []
    for process in range(jax.process_count()):
        local = [d for d in jax.devices() if d.process_index == process]
        chosen = [local[i] for i in indices] if indices else local
        out.extend(chosen)
    return out


def _actor_device(indices: tuple[int, ...], thread: int) -> jax.Device:
    local = jax.local_devices()
    return local[indices[thread % len(indices)]] if indices else local[0]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def build_agent(exp: RLExperiment, env: rl_envs.VectorEnv) -> Agent:
    return Agent(exp.agent, env.obs_shape, env.num_actions, rngs=nnx.Rngs(params=exp.run.seed, dropout=exp.run.seed + 1))


def train(exp: RLExperiment, run_dir: str | Path, *, resume: bool = True,
          stop_after_updates: int | None = None) -> dict[str, Any]:
    """Trains the agent of `exp` under `run_dir` (checkpoints, metrics.jsonl, TensorBoard,
    returns.png, eval_greedy.json); resumes from the newest readable checkpoint there.

    `stop_after_updates` ends this call early (after that many updates in total, with a
    checkpoint), as a kill would, for tests of resume.

    Returns the counters, the last metrics, the greedy evaluation (or None) and the state.
    """
    run = exp.run
    process, processes = jax.process_index(), jax.process_count()
    validate(exp, process_count=processes)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    total_updates = exp.total_updates
    local_batch = run.batch_size // processes
    rollouts_per_update = local_batch // exp.env.num_envs
    frames_per_step = rl_envs.frames_per_step(exp.env)

    mesh = make_mesh((-1, 1), devices=learner_devices(run.learner_devices))
    if run.batch_size % mesh.shape["data"]:
        raise ValueError(f"run.batch_size {run.batch_size} does not split over the learner's {mesh.shape['data']} "
                         "devices; choose a multiple, or fewer devices (run.learner_devices)")
    store = CheckpointStore(run_dir / "checkpoints", keep=run.keep_checkpoints, async_save=run.async_checkpoints)
    if not resume and store.latest.all_steps():
        store.close()
        raise RunDirectoryError(f"{run_dir} already has checkpoints (updates {list(store.latest.all_steps())}); "
                                "resume from them or choose a new run directory")
    probe = rl_envs.make_env(dataclasses.replace(exp.env, num_envs=1), seed=run.seed)
    agent = build_agent(exp, probe)
    probe.close()
    graphdef, _, rest = split_model(agent)
    state, learner_step = make_learner(agent, exp.optimizer, exp.loss, total_updates=total_updates, mesh=mesh,
                                       seed=run.seed)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    counters = dict(updates=0, agent_steps=0, frames=0, life_episodes=0, game_episodes=0)
    returns = dict(life=collections.deque(maxlen=RETURN_WINDOW), game=collections.deque(maxlen=RETURN_WINDOW))
    restored = store.restore_latest(abstract_like(state, shardings)) if resume else None
    if restored is not None:
        _, state, meta = restored
        counters.update(meta["counters"])
        returns["life"].extend(meta["returns"]["life"])
        returns["game"].extend(meta["returns"]["game"])
        log(f"resumed from update {counters['updates']} ({counters['frames']} frames) in {run_dir / 'checkpoints'}")
    start = counters["updates"]
    run_config = config_to_dict(exp)
    meta = lambda: {"counters": dict(counters), "returns": {k: list(v) for k, v in returns.items()},  # noqa: E731
                    "config": run_config}

    # Actors: each thread its own environments (seeded by process, thread and the update
    # the run starts from) and policy keys.
    policy = make_policy_step(graphdef, rest)
    session_key = jax.random.fold_in(jax.random.PRNGKey(run.seed), start)
    actors = []
    for thread in range(run.num_actor_threads):
        index = process * run.num_actor_threads + thread
        env = rl_envs.make_env(exp.env, seed=_seed(run.seed, start, index))
        device = _actor_device(run.actor_devices, thread)
        actors.append(Actor(env, policy, agent.init_state(env.num_envs), run.unroll_length,
                            key=jax.random.fold_in(session_key, index), device=device))
    box = ParamsBox(state.params, start)
    rollouts: queue.Queue = queue.Queue(maxsize=run.queue_size)
    stop = threading.Event()
    threads = [ActorThread(a, box, rollouts, stop, name=f"actor-{i}") for i, a in enumerate(actors)] \
        if run.asynchronous else []
    for t in threads:
        t.start()

    def next_rollouts() -> list:
        if not run.asynchronous:       # act with the newest parameters, in turn
            params, version = box.get()
            on_device = {a.device: jax.device_put(params, a.device) for a in actors}
            return [a.rollout(on_device[a.device], version)
                    for a in (actors[i % len(actors)] for i in range(rollouts_per_update))]
        out = []
        while len(out) < rollouts_per_update:
            try:
                out.append(rollouts.get(timeout=0.5))
            except queue.Empty:
                errors = [t.error for t in threads if t.error is not None]
                if errors:
                    raise RuntimeError("an actor thread failed") from errors[0]
        return out

    writer = run_metrics.MetricsWriter(run_dir, tensorboard=run.tensorboard, enabled=process == 0)
    bar = run_metrics.ProgressBar(total_updates, initial_step=start, enabled=run.progress and process == 0,
                                  rate_label="frames/s")
    say = bar.write if bar.enabled else log
    end = total_updates if stop_after_updates is None else min(total_updates, stop_after_updates)
    last: dict[str, float] = {}
    window = dict(time=time.perf_counter(), frames=counters["frames"])
    lags: list[int] = []
    try:
        for update in range(start + 1, end + 1):
            pieces = next_rollouts()
            lag = [update - 1 - p.version for p in pieces]
            lags.extend(lag)
            batch = concatenate(pieces)
            state, step_metrics = learner_step(state, global_batch(batch, mesh))
            box.publish(state.params, update)
            steps = local_batch * run.unroll_length * processes
            counters["updates"] = update
            counters["agent_steps"] += steps
            counters["frames"] += steps * frames_per_step
            for p in pieces:        # episodes this process's consumed rollouts completed
                returns["life"].extend(p.episodes["life_returns"])
                returns["game"].extend(p.episodes["game_returns"])
                counters["life_episodes"] += len(p.episodes["life_returns"])
                counters["game_episodes"] += len(p.episodes["game_returns"])
            if update % run.log_every == 0 or update == end:
                last = to_host(step_metrics)
                if not last.get("finite", 1.0):
                    say(f"update {update}: non-finite loss or gradient, update skipped")
                now = time.perf_counter()
                last.update(counters, frames_per_s=(counters["frames"] - window["frames"]) / (now - window["time"]),
                            policy_lag=float(np.mean(lags)), policy_lag_max=float(np.max(lags)),
                            queue=rollouts.qsize())
                if returns["life"]:
                    last["life_return"] = float(np.mean(returns["life"]))
                if returns["game"]:
                    last["game_return"] = float(np.mean(returns["game"]))
                writer.write(update, last)
                window, lags = dict(time=now, frames=counters["frames"]), []
            bar.update(update, tokens=steps * frames_per_step,
                       **{k: f"{last[k]:.2f}" for k in ("game_return", "policy_lag") if k in last})
            if update % run.checkpoint_every == 0 or update == end:
                store.save(update, state, meta())
        bar.close()
        store.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for a in actors:
            a.env.close()
        bar.close()
        writer.close()
        store.close()
    evaluation = None
    if end == total_updates:
        if run.eval_episodes > 0:
            from fastweights.rl.evaluation import evaluate_policy
            evaluation = evaluate_policy(graphdef, rest, state.params, exp.env, episodes=run.eval_episodes,
                                         seed=_seed(run.seed, 7919))
            if process == 0:
                (run_dir / "eval_greedy.json").write_text(json.dumps(evaluation, indent=2) + "\n")
                say(f"greedy policy over {run.eval_episodes} games: return {evaluation['game_return_mean']:.2f} "
                    f"+- {evaluation['game_return_std']:.2f}")
        if run.plot and process == 0 and any("game_return" in r for r in run_metrics.read_jsonl(run_dir)):
            run_metrics.plot_runs({run_dir.name: run_dir / run_metrics.JSONL_NAME}, run_dir / "returns.png",
                                  key="game_return", x="frames", title=f"{exp.env.suite} {exp.env.game}")
    return {"counters": dict(counters), "last": last, "evaluation": evaluation, "state": state,
            "run_dir": str(run_dir)}


def load_experiment(run_dir: str | Path) -> RLExperiment:
    """The experiment an RL run trained, as its newest checkpoint records it."""
    from fastweights.checkpoints import read_checkpoint
    from fastweights.experiment import from_dict
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        raise FileNotFoundError(f"{Path(run_dir).absolute()} has no checkpoints/: not an RL run directory")
    return from_dict(RLExperiment, read_checkpoint(directory, best=False)[1]["config"])


def load_run(run_dir: str | Path) -> tuple[RLExperiment, Agent, dict]:
    """`(experiment, agent, counters)` of an RL run: the agent with the parameters of its
    newest checkpoint."""
    from fastweights.checkpoints import read_checkpoint
    exp = load_experiment(run_dir)
    probe = rl_envs.make_env(dataclasses.replace(exp.env, num_envs=1), seed=0)
    agent = build_agent(exp, probe)
    probe.close()
    _, meta, params = read_checkpoint(Path(run_dir) / "checkpoints", nnx.state(agent, nnx.Param), best=False)
    nnx.update(agent, params)
    return exp, agent, meta["counters"]
