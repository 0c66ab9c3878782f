"""RL throughput per core: frames/s of acting alone, of learning alone, and of the whole
actor-learner loop.

    python -m benchmarks.bench_rl                                # MinAtar Breakout, minatar_tiny's agent
    python -m benchmarks.bench_rl --preset paper_delta_net --set env.game=Pong --cores lstm,delta_net,rdn
    python -m benchmarks.bench_rl --cores delta_net --loop-seconds 60

- acting: `Actor.rollout` of one actor thread's environments with fixed parameters (the
  environments and the batched, jitted inference), frames = T x B x frame skip;
- learning: the jitted learner step on one fixed batch of the preset's size;
- loop: `fastweights.rl.loop.train` as the preset runs it, the frames/s of its log rows
  after the first (which holds compilation), for `--loop-seconds` at most.

The cores are measured one after another with the same environments, seeds and batch; the
acting and learning sides are interleaved over `--rounds` rounds and the median is kept.
Writes benchmarks/results/rl_<preset>_<platform>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import jax

from benchmarks.common import machine, print_table, write_json
from fastweights import metrics
from fastweights.rl import envs as rl_envs
from fastweights.rl import loop, presets
from fastweights.rl.actor import Actor, concatenate, make_policy_step
from fastweights.rl.learner import make_learner
from fastweights.training.sharding import global_batch, make_mesh
from fastweights.training.steps import split_model


def _sides(exp, seed: int = 0):
    """`(act, learn, frames_per_call)`: one rollout; one learner update."""
    env = rl_envs.make_env(exp.env, seed=seed)
    agent = loop.build_agent(exp, env)
    graphdef, _, rest = split_model(agent)
    mesh = make_mesh((-1, 1))
    state, learner_step = make_learner(agent, exp.optimizer, exp.loss, total_updates=exp.total_updates, mesh=mesh,
                                       seed=seed)
    actor = Actor(env, make_policy_step(graphdef, rest), agent.init_state(env.num_envs), exp.run.unroll_length,
                  key=jax.random.PRNGKey(seed), device=jax.local_devices()[0])
    params = jax.tree.map(lambda x: x.copy(), state.params)
    per_update = exp.run.batch_size // exp.env.num_envs
    batch = concatenate([actor.rollout(params, 0) for _ in range(per_update)])
    box = {"state": state}

    def act():
        actor.rollout(params, 0)

    def learn():
        box["state"], metrics = learner_step(box["state"], global_batch(batch, mesh))
        jax.block_until_ready(metrics["loss"])

    frames = rl_envs.frames_per_step(exp.env) * exp.run.unroll_length
    return act, learn, frames * exp.env.num_envs, frames * exp.run.batch_size, env


def _loop_fps(exp, seconds: float) -> float:
    """The whole loop's frames/s: the median of its log rows after the first."""
    updates = max(3, int(seconds * 2))
    exp = dataclasses.replace(exp, run=dataclasses.replace(
        exp.run, total_steps=exp.steps_per_update * updates, log_every=1, checkpoint_every=10**9,
        eval_episodes=0, progress=False, tensorboard=False, plot=False))
    with tempfile.TemporaryDirectory() as run_dir:
        loop.train(exp, run_dir, resume=False)
        rows = [r["frames_per_s"] for r in metrics.read_jsonl(run_dir)[1:] if "frames_per_s" in r]
    return statistics.median(rows) if rows else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="minatar_tiny")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--cores", default="lstm,linear_transformer,delta_net,delta_rnn,rdn,gated_delta_net")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop-seconds", type=float, default=20.0, help="per core; 0 skips the loop column")
    a = parser.parse_args(argv)
    print(f"machine: {machine()}, jax {jax.__version__}; preset {a.preset} {' '.join(a.overrides)}\n", flush=True)
    rows = []
    for core in a.cores.split(","):
        exp = presets.get(a.preset, [*a.overrides, f"agent.core={core}"])
        act, learn, act_frames, learn_frames, env = _sides(exp)
        for fn in (act, learn, act, learn):           # compile, warm
            fn()
        times = {"act": [], "learn": []}
        for _ in range(a.rounds):
            for side, fn in (("act", act), ("learn", learn)):
                start = time.perf_counter()
                fn()
                times[side].append(time.perf_counter() - start)
        env.close()
        row = {"core": core, "acting_fps": round(act_frames / statistics.median(times["act"])),
               "learning_fps": round(learn_frames / statistics.median(times["learn"]))}
        if a.loop_seconds > 0:
            row["loop_fps"] = round(_loop_fps(exp, a.loop_seconds))
        rows.append(row)
        print(row, flush=True)
    base = next((r for r in rows if r["core"] == "lstm"), None)
    if base is not None:
        for r in rows:
            for k in ("acting_fps", "learning_fps", "loop_fps"):
                if k in r and base.get(k):
                    r[f"{k.split('_')[0]}_vs_lstm"] = round(r[k] / base[k], 2)
    print()
    columns = ["core", "acting_fps", "learning_fps", "loop_fps", "acting_vs_lstm", "learning_vs_lstm", "loop_vs_lstm"]
    print_table(rows, [c for c in columns if any(c in r for r in rows)])
    path = write_json(f"rl_{a.preset}_{jax.default_backend()}", {"machine": machine(), "preset": a.preset,
                                                                  "overrides": a.overrides, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
