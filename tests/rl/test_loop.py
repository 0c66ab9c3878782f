"""The actor-learner loop: rollouts overlap by one row and carry the core state at their
start (checked by replaying the agent and the environments independently), the loop's
counters, resume from a checkpoint with nothing double-counted, the asynchronous loop's
policy lag, and the greedy evaluation."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from fastweights import metrics
from fastweights.checkpoints import CheckpointStore, abstract_like
from fastweights.nn.config import RLCoreConfig
from fastweights.rl import envs as rl_envs
from fastweights.rl import evaluation, loop, presets
from fastweights.rl.actor import ARRAY_KEYS, Actor, make_policy_step
from fastweights.rl.agent import Agent, AgentConfig
from fastweights.rl.config import RLExperiment, RunConfig, validate
from fastweights.rl.envs import EnvConfig
from fastweights.testing import assert_close
from fastweights.training.config import OptimizerConfig

pytest.importorskip("pgx")

TINY_CORE = RLCoreConfig(model_dim=16, num_layers=1, num_heads=2, head_dim=8, ff_dim=32)
ENV = EnvConfig(suite="minatar", game="breakout", num_envs=8)
AGENT = AgentConfig(torso="small", torso_dim=32, core="delta_net", core_config=TINY_CORE, obs_scale=1.0)


def _experiment(**run) -> RLExperiment:
    defaults = dict(total_steps=4 * 4 * 8, unroll_length=4, batch_size=8, num_actor_threads=1, queue_size=1,
                    asynchronous=False, log_every=1, checkpoint_every=1, async_checkpoints=False, progress=False,
                    tensorboard=False, plot=False, eval_episodes=0)
    return RLExperiment(ENV, AGENT, OptimizerConfig(optimizer="rmsprop", learning_rate=1e-3, eps=0.01,
                                                    clip_norm=40.0, schedule="linear"),
                        run=RunConfig(**(defaults | run)))


def test_rollouts_overlap_by_one_row_and_carry_their_start_state():
    env = rl_envs.make_env(dataclasses.replace(ENV, num_envs=4), seed=3)
    agent = Agent(AGENT, env.obs_shape, env.num_actions, rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(agent, nnx.Param, ...)
    T = 6
    actor = Actor(env, make_policy_step(graphdef, rest), agent.init_state(4), T, key=jax.random.PRNGKey(0),
                  device=jax.local_devices()[0])
    first, second = actor.rollout(params, 0), actor.rollout(params, 1)
    a, b = first.arrays, second.arrays
    assert a["obs"].shape == (4, T + 1, *env.obs_shape) and a["obs"].dtype == np.uint8
    assert a["done"][:, 0].all()                       # an environment's first frame resets the state
    for key in ARRAY_KEYS:                             # row 0 repeats the previous unroll's last row
        np.testing.assert_array_equal(b[key][:, 0], a[key][:, -1])
    # The agent replayed over rows 0..T-1 from the stored start state gives the behaviour
    # logits of rows 1..T and the next unroll's stored start state.
    out, state = agent.unroll(a["obs"][:, :-1], a["reward"][:, :-1], a["done"][:, :-1], a["state"])
    assert_close(out.logits, a["logits"][:, 1:], "float32_same_algebra")
    assert_close(state, b["state"], "float32_same_algebra")
    # The environments replayed with the recorded actions give the recorded frames.
    replay = rl_envs.make_env(dataclasses.replace(ENV, num_envs=4), seed=3)
    frames = [replay.reset()]
    frames += [replay.step(a["action"][:, t]) for t in range(1, T + 1)]
    frames += [replay.step(b["action"][:, t]) for t in range(1, T + 1)]
    replay.close()
    env.close()
    recorded = np.concatenate([a["obs"], b["obs"][:, 1:]], axis=1)
    np.testing.assert_array_equal(np.stack([f.obs for f in frames], axis=1), recorded)
    np.testing.assert_array_equal(np.stack([f.done for f in frames], axis=1),
                                  np.concatenate([a["done"], b["done"][:, 1:]], axis=1))


def test_a_checkpoint_holds_the_exact_state_and_counters(tmp_path):
    """What a stop leaves is what a resume restores (the resumed run itself: the kill test)."""
    exp = _experiment()
    first = loop.train(exp, tmp_path, stop_after_updates=2)
    steps = exp.run.unroll_length * exp.run.batch_size
    assert first["counters"]["updates"] == 2 and first["counters"]["agent_steps"] == 2 * steps
    assert first["counters"]["frames"] == 2 * steps * rl_envs.frames_per_step(ENV)
    store = CheckpointStore(tmp_path / "checkpoints", keep=3, async_save=False)
    state = first["state"]
    _, restored, meta = store.restore_latest(abstract_like(state, jax.tree.map(lambda x: x.sharding, state)))
    store.close()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))
    assert int(restored.step) == 2 and meta["counters"] == first["counters"]
    assert [r["step"] for r in metrics.read_jsonl(tmp_path)] == [1, 2]
    with pytest.raises(loop.RunDirectoryError):
        loop.train(exp, tmp_path, resume=False)


def test_asynchronous_loop_measures_the_policy_lag(tmp_path):
    exp = _experiment(asynchronous=True, num_actor_threads=2, queue_size=2, total_steps=5 * 4 * 8,
                      checkpoint_every=100)
    result = loop.train(exp, tmp_path)
    records = metrics.read_jsonl(tmp_path)
    assert result["counters"]["updates"] == 5 and [r["step"] for r in records] == [1, 2, 3, 4, 5]
    lags = [r["policy_lag"] for r in records]
    # A rollout acts with parameters at most (queued rollouts + threads + 1) updates old.
    assert all(0 <= lag <= exp.run.queue_size + exp.run.num_actor_threads + 1 for lag in lags)
    assert all(np.isfinite(r["loss"]) for r in records)


def test_greedy_evaluation_counts_every_game_once(tmp_path):
    env = rl_envs.make_env(dataclasses.replace(ENV, num_envs=1), seed=0)
    agent = Agent(AGENT, env.obs_shape, env.num_actions, rngs=nnx.Rngs(params=1, dropout=2))
    env.close()
    graphdef, params, rest = nnx.split(agent, nnx.Param, ...)
    score = evaluation.evaluate_policy(graphdef, rest, params, ENV, episodes=3, seed=5, record=50)
    assert score["episodes"] == 3 and len(score["game_returns"]) == 3
    # MinAtar has no lives: a life is the game.
    np.testing.assert_allclose(sorted(score["life_returns"]), sorted(score["game_returns"]))
    np.testing.assert_allclose(score["game_return_mean"], np.mean(score["game_returns"]))
    # Game 0 replayed independently: the greedy agent stepped frame by frame.
    replay = rl_envs.make_env(dataclasses.replace(ENV, num_envs=3), seed=5)
    step, state, total = replay.reset(), agent.init_state(3), np.zeros(3)
    ended = np.zeros(3, bool)
    while not ended.all():
        out, state = agent.step(step.obs, step.reward, step.done, state)
        step = replay.step(np.asarray(out.logits.argmax(-1)))
        total += np.where(ended, 0.0, step.reward)
        ended |= step.episode_end
    replay.close()
    np.testing.assert_allclose(score["game_returns"], total)
    frames = score["frames"]
    assert frames[0].dtype == np.uint8 and frames[0].ndim == 3 and frames[0].shape[-1] == 3
    gif = evaluation.save_gif(frames, tmp_path / "game.gif")
    strip = evaluation.save_strip(frames, tmp_path / "strip.png")
    from PIL import Image
    assert Image.open(gif).n_frames == len(frames)
    assert Image.open(strip).size[1] == frames[0].shape[0]


def test_every_preset_validates_and_counts_steps_as_polybeast():
    probes = {}
    for name, exp in presets.PRESETS.items():
        validate(exp)
        key = (exp.env.suite, exp.env.game)
        if key not in probes:
            env = rl_envs.make_env(dataclasses.replace(exp.env, num_envs=1), seed=0)
            probes[key] = (env.obs_shape, env.num_actions)
            env.close()
        obs_shape, actions = probes[key]
        agent = nnx.eval_shape(lambda: Agent(exp.agent, obs_shape, actions, rngs=nnx.Rngs(params=0, dropout=1)))
        assert agent.num_actions == actions, name
    paper, short = presets.get("paper_rdn"), presets.get("paper_50m_rdn")
    assert paper.steps_per_update == 50 * 32 and paper.total_updates == 200_000_000 // 1600
    assert paper.run.num_actor_threads * paper.env.num_envs == 48
    # The 50M-step run is the first quarter of the 2e8-step schedule.
    assert short.total_updates * 4 == paper.total_updates
    assert short.optimizer.decay_steps == paper.total_updates and paper.optimizer.decay_steps is None
    with pytest.raises(ValueError, match="multiple of env.num_envs"):
        validate(presets.get("minatar_tiny", ["run.batch_size=24"]))


def test_the_atari_pipeline_runs_on_real_frames(tmp_path):
    exp = dataclasses.replace(presets.get("atari_tiny"), env=EnvConfig(suite="atari", game="Pong", num_envs=2))
    exp = dataclasses.replace(exp, run=dataclasses.replace(
        exp.run, total_steps=2 * 4 * 2, unroll_length=4, batch_size=2, asynchronous=False, checkpoint_every=100,
        async_checkpoints=False, progress=False, tensorboard=False, plot=False, log_every=1))
    with pytest.raises(ValueError, match="does not split over the learner's 8 devices"):
        loop.train(exp, tmp_path / "eight")
    exp = dataclasses.replace(exp, run=dataclasses.replace(exp.run, learner_devices=(0,)))
    result = loop.train(exp, tmp_path)
    assert result["counters"]["frames"] == 2 * 4 * 2 * 4          # 2 updates of T=4 x B=2, frame skip 4
    assert all(np.isfinite(r["loss"]) for r in metrics.read_jsonl(tmp_path))


def test_killed_run_resumes_and_counts_nothing_twice(tmp_path):
    """The CLI, asynchronous, killed (SIGKILL) a few updates past a checkpoint, then resumed:
    it ends at the total, and every logged counter is that of its update."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    run_dir = tmp_path / "run"
    updates, steps = 20, 4 * 8
    command = [sys.executable, "-m", "fastweights.rl.train", "--preset", "minatar_tiny", "--run-dir", str(run_dir)]
    for assignment in (f"run.total_steps={updates * steps}", "run.unroll_length=4", "run.batch_size=8",
                       "env.num_envs=8", "run.checkpoint_every=3", "run.log_every=1", "run.eval_episodes=0",
                       "run.plot=false", "run.tensorboard=false", "run.progress=false", "agent.torso_dim=16",
                       "agent.core_config.model_dim=16", "agent.core_config.num_heads=2",
                       "agent.core_config.head_dim=8", "agent.core_config.ff_dim=32"):
        command += ["--set", assignment]
    root = Path(__file__).parents[2]
    victim = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = run_dir / metrics.JSONL_NAME
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:     # kill past the checkpoint of update 6
        if log.exists() and len(metrics.read_jsonl(log)) >= 8:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = max(r["step"] for r in metrics.read_jsonl(log))
    assert 8 <= killed_at < updates
    resumed = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "resumed from update" in resumed.stderr, resumed.stderr[-2000:]
    records = metrics.read_jsonl(log)
    assert {r["step"] for r in records} == set(range(1, updates + 1))
    last = {r["step"]: r for r in records}                           # a replayed update's last record
    assert all(last[k]["agent_steps"] == k * steps and last[k]["updates"] == k for k in last)
    resumed_from = min(r["step"] for r in records[killed_at:]) - 1     # the checkpoint it restored
    assert resumed_from % 3 == 0 and resumed_from <= killed_at
