# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %% [markdown]
# # A fast-weight IMPALA agent on MinAtar Breakout
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/fastweights/fastweights/blob/main/notebooks/05_rl_agent.ipynb)
#
# The paper's fourth experiment replaces the LSTM of an IMPALA agent (Espeholt et al. 2018)
# by a fast weight programmer and trains it with V-trace. This notebook builds that agent for
# MinAtar Breakout (a 10x10 version of the Atari game that trains on a CPU), takes it apart
# (torso, clipped reward, fast-weight core, heads), steps it frame by frame and checks that an
# episode's end resets the fast weights, explains the paper's 1-step gradient truncation,
# computes V-trace targets by hand, then trains the agent with the actor-learner loop
# `fastweights.rl.loop.train` and watches the greedy policy play. The committed outputs are
# from a full run (`QUICK = False`, 500k agent steps; the whole notebook took about
# 2.7 minutes, 126 s of it training, on a shared
# 2-core CPU; with `QUICK = True` it takes about 35 s).

# %% tags=["skip-execution"]
# Colab: install this repository at the tag of this version (CI and local builds skip this cell).
# !pip install -q "fastweights[train,rl] @ git+https://github.com/fastweights/fastweights@v0.1.0"

# %% tags=["parameters"]
QUICK = False  # CI sets True: a few thousand agent steps, only to check that the pipeline runs
TOTAL_STEPS = 6_400 if QUICK else 500_000   # agent steps to learn from (1 frame each in MinAtar)
LOG_EVERY = 2 if QUICK else 10              # updates between metrics lines (an update: 20 x 32 steps)
RECORD = 60 if QUICK else 300               # frames of one greedy game to record

# %%
import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from fastweights import metrics
from fastweights.rl import evaluation, loop, presets
from fastweights.nn import RLCore
from fastweights.rl.agent import Agent, core_config_for
from fastweights.rl.envs import make_env
from fastweights.rl.vtrace import vtrace

START = time.perf_counter()

# %% [markdown]
# ## The environment and the agent
#
# `minatar_tiny` is the CPU-sized preset of `fastweights.rl.presets` (what `make rl` trains).
# Its environment config asks pgx for 32 Breakout games stepped together. We cap a game at
# 10,000 steps (`env.max_episode_frames`) so that a greedy policy that never loses the ball
# still ends its game; the training rarely meets this limit. An observation is `[C, H, W]`
# uint8: MinAtar Breakout has 4 binary channels (paddle, ball, ball trail, bricks) on a 10x10
# grid, and 3 actions (no-op, left, right).

# %%
OVERRIDES = ["env.max_episode_frames=10000"]
exp = presets.get("minatar_tiny", OVERRIDES)
env = make_env(exp.env, seed=0)
print(f"{exp.env.num_envs} games, observation {env.obs_shape} uint8, {env.num_actions} actions")
step = env.reset()
print("obs", step.obs.shape, step.obs.dtype, " reward", step.reward.shape, " done", step.done[:4], "...")

# %% [markdown]
# The agent (`fastweights.rl.agent.Agent`) is the IMPALA network with a fast-weight core:
#
# $$x_t = \big[\,\mathrm{torso}(o_t),\ \mathrm{clip}(r_t, -1, 1)\,\big], \qquad
# (y_t, S_t) = \mathrm{core}(x_t, (1 - d_t)\, S_{t-1}), \qquad
# \pi(\cdot \mid o_{\le t}) = \mathrm{softmax}(W_\pi y_t), \quad V_t = w_V^\top y_t,$$
#
# where $o_t$ is the frame, $r_t$ the reward that came with it, $d_t$ the `done` flag (the
# episode ended before this frame) and $S_t$ the core's state: here one Delta Net layer whose
# fast weight matrix per head is updated at every frame by the delta rule
# $W_t = W_{t-1} + \beta_t (v_t - W_{t-1}^\top k_t) k_t^\top$ (the library stores $W$ as
# `[key, value]`). The torso is MinAtar's small network (one 3x3 convolution and a linear
# layer); the paper's Atari agent has the IMPALA ResNet (`torso="deep"`) and a core of 2
# layers of width 128.

# %%
agent = Agent(exp.agent, env.obs_shape, env.num_actions, rngs=nnx.Rngs(params=0, dropout=1))


def count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


core = agent.core.config
print(f"torso   {type(agent.torso).__name__}: conv 3x3 -> {agent.torso.flat_dim} features -> "
      f"Linear -> {exp.agent.features}   ({count(agent.torso):,} parameters)")
print(f"reward  clipped to [-1, 1] and appended: core input {exp.agent.features + 1}")
print(f"core    RLCore, {core.num_layers} x {core.layer.variant} layer, D={core.model_dim}, {core.num_heads} heads "
      f"of {core.head_dim}, feed-forward {core.ff_dim}   ({count(agent.core):,} parameters)")
print(f"heads   policy Linear({exp.agent.core_dim} -> {env.num_actions}), baseline Linear({exp.agent.core_dim} -> 1)"
      f"   ({count(agent.policy) + count(agent.baseline):,} parameters)")

# %% [markdown]
# The reward enters the core clipped: a reward of 5 is seen as 1, one of -3 as -1 (the last
# column of the core's input).

# %%
obs3 = step.obs[:3]
core_in = agent.core_input(obs3, np.array([5.0, -3.0, 0.5], np.float32))
print("core input", core_in.shape, " reward column", np.asarray(core_in[:, -1]))
assert np.allclose(core_in[:, -1], [1.0, -1.0, 0.5]), "rewards are clipped to [-1, 1] before the core"

# %% [markdown]
# ## Stepping the agent, and what `done` does
#
# `agent.step(obs, reward, done, state)` acts on one frame of every game. We step 20 frames
# with random actions and follow the size $\lVert W \rVert$ of the fast weights of game 0.
# Then we mark game 0 as done: the state is multiplied by $1 - d_t = 0$ before the step,
# so after it the fast weights hold a single write, exactly as if the agent had started from
# the zero state `agent.init_state(B)`.

# %%
B = exp.env.num_envs
agent_step = nnx.jit(lambda a, *args: a.step(*args))      # compiled once, then fast
state = agent.init_state(B)
print("state:", jax.tree.map(lambda x: x.shape, state))
rng = np.random.default_rng(0)
norms = []
for t in range(20):
    out, state = agent_step(agent, step.obs, step.reward, step.done, state)
    norms.append(float(jnp.linalg.norm(state[0].W[0])))
    step = env.step(rng.integers(env.num_actions, size=B))
print("logits", out.logits.shape, " baseline", out.baseline.shape, " pi(game 0) =",
      np.round(np.asarray(jax.nn.softmax(out.logits[0])), 3))

done = step.done.copy()
done[0] = True
out_reset, state_reset = agent_step(agent, step.obs, step.reward, done, state)
_, state_fresh = agent_step(agent, step.obs, step.reward, done, agent.init_state(B))
norm_before, norm_after = norms[-1], float(jnp.linalg.norm(state_reset[0].W[0]))
print(f"|W| of game 0 after 20 frames {norm_before:.3f}; after a step with done=True {norm_after:.3f} "
      f"(from the zero state: {float(jnp.linalg.norm(state_fresh[0].W[0])):.3f})")
assert np.allclose(state_reset[0].W[0], state_fresh[0].W[0], atol=1e-6), "done resets the fast weights"
assert norm_after < norm_before, "the reset state holds one write, less than 20 frames of writes"

# %% [markdown]
# The plot below shows $\lVert W \rVert$ of game 0 after each of the 20 frames, and, as a
# red square, after frame 21, the step marked done.

# %%
plt.figure(figsize=(5, 3))
plt.plot(range(1, 21), norms, "o-", label="frames 1-20")
plt.plot([21], [norm_after], "s", color="C3", label="frame 21, done = True")
plt.xlabel("frame")
plt.ylabel(r"$\|W\|$ of game 0")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The plot shows the fast weights of game 0 accumulating writes over 20 frames
# and falling back to the size of a single write when `done` marks a new episode.
#
# ## 1-step truncation vs `full_backprop`
#
# The learner runs the agent over unrolls of $T$ frames (`agent.unroll`). How far do
# gradients reach back through the fast weights? The official fast-weight kernels give no
# gradient for their initial state and the official agent calls them one frame at a time, so
# the paper's fast-weight agents learn with **1-step truncation**: the loss at frame $t$
# reaches the slow weights through the write and read at frame $t$ only, while $W_{t-1}$ is
# treated as a constant (`AgentConfig(full_backprop=False)`, the default; the LSTM baseline
# keeps backpropagation through the whole unroll, as in the official code).
# `full_backprop=True` backpropagates through the unroll for every core: the Delta Net then
# runs over the unroll in its chunkwise-parallel form with the resets folded in as decays.
#
# A small check on the core alone (`agent.core`, an `RLCore`): the gradient of its output at
# the last of $T = 3$ frames with respect to its input at the first. The only path between
# them runs through the carried fast weights.

# %%
T = 3
xs = jax.random.normal(jax.random.PRNGKey(0), (2, T, exp.agent.features + 1))   # core inputs of 2 games
dones_seq = jnp.zeros((2, T))
# the same core built for full_backprop=True: its config differs only in truncate_state_gradient
full_core = RLCore(core_config_for(dataclasses.replace(exp.agent, full_backprop=True)), rngs=nnx.Rngs(0))
print("truncate_state_gradient:", agent.core.config.truncate_state_gradient, "(paper),",
      full_core.config.truncate_state_gradient, "(full_backprop)")


@jax.jit
def first_input_grad(xs, core_graph, core_state):
    """|d y_(T-1) / d x_0|: how much the core's last output depends on its first input."""
    def last_output(x0):
        core = nnx.merge(core_graph, core_state)
        ys, _ = core(xs.at[:, 0].set(x0), core.init_state(2), dones_seq)
        return ys[:, -1].sum()
    return jnp.abs(jax.grad(last_output)(xs[:, 0])).sum()


truncated, full = (float(first_input_grad(xs, *nnx.split(core))) for core in (agent.core, full_core))
print(f"|dy_(T-1) / dx_0|: 1-step truncation {truncated:.2e}, full_backprop {full:.2e}")
assert truncated == 0.0 < full, "with truncation no gradient crosses the carried fast weights"

# %% [markdown]
# ## V-trace in a few lines
#
# The actors act with parameters a few updates old (the *behaviour* policy $\mu$), while the
# learner updates the current ones ($\pi$). V-trace corrects for this lag with truncated
# importance weights $\rho_t = \min(1, \pi(a_t)/\mu(a_t))$ and $c_t = \min(1, \pi(a_t)/\mu(a_t))$:
#
# $$v_s = V_s + \sum_{t \ge s} \gamma^{t-s} \Big(\prod_{i=s}^{t-1} c_i\Big)\, \rho_t
# \big(r_t + \gamma V_{t+1} - V_t\big),$$
#
# with the value of the frame after the unroll as bootstrap. $v_s$ is the baseline's target
# (loss $\tfrac12 (v_s - V_s)^2$) and $\rho_s (r_s + \gamma v_{s+1} - V_s)$ the policy
# gradient's advantage. On-policy ($\pi = \mu$, all $\rho = c = 1$) the sum telescopes:
# $v_s$ is the discounted $n$-step return $\sum_{t \ge s} \gamma^{t-s} r_t + \gamma^{T-s} V_T$.

# %%
gamma = 0.99
rewards = np.array([[0.0, 0.0, 1.0, 0.0, 1.0]])
values = np.array([[0.5, 0.6, 0.8, 0.4, 0.9]])
bootstrap = np.array([0.7])
discounts = np.full((1, 5), gamma)

on_policy = vtrace(np.zeros((1, 5)), discounts, rewards, values, bootstrap)
n_step = [sum(gamma ** (t - s) * rewards[0, t] for t in range(s, 5)) + gamma ** (5 - s) * bootstrap[0]
          for s in range(5)]
print("on-policy v_s      ", np.round(np.asarray(on_policy.vs[0]), 4))
print("n-step returns     ", np.round(n_step, 4))
assert np.allclose(on_policy.vs[0], n_step, atol=1e-5), "on-policy V-trace targets are n-step returns"

# The learner's policy now makes action 2 half as likely as the actor did: rho_2 = 0.5.
log_rhos = np.log([[1.0, 1.0, 0.5, 1.0, 1.0]])
off_policy = vtrace(log_rhos, discounts, rewards, values, bootstrap)
print("off-policy v_s     ", np.round(np.asarray(off_policy.vs[0]), 4))
print("policy advantages  ", np.round(np.asarray(off_policy.pg_advantages[0]), 4))
assert off_policy.vs[0, 0] < on_policy.vs[0, 0], "a down-weighted reward counts less in the targets before it"

# %% [markdown]
# With $\rho_2 = c_2 = 0.5$ the TD error at step 2 counts half, and the trace $c_2$ also
# halves what the steps after it pass back: the targets $v_0, v_1, v_2$ up to the
# down-weighted step drop, while $v_3, v_4$ after it are unchanged. The learner
# (`fastweights.rl.learner`) computes exactly this from the behaviour and
# target logits, on the unrolls the actors send.
#
# ## Training with the actor-learner loop
#
# `fastweights.rl.loop.train` runs the Sebulba-style loop: an actor thread steps the 32
# games with the newest parameters it has, sends unrolls of 20 frames through a queue, and
# the learner takes them as batches of 32 unrolls for one V-trace update (RMSProp 2e-3,
# decayed linearly to 0). It writes `metrics.jsonl` (and checkpoints) into the run directory.
# Here it trains for the parameters cell's `TOTAL_STEPS` agent steps.

# %%
train_overrides = OVERRIDES + [f"run.total_steps={TOTAL_STEPS}", f"run.log_every={LOG_EVERY}",
                               "run.progress=False", "run.tensorboard=False", "run.plot=False",
                               "run.eval_episodes=0"]
train_exp = presets.get("minatar_tiny", train_overrides)
run_dir = Path(tempfile.mkdtemp(prefix="fastweights-rl-"))
started = time.perf_counter()
result = loop.train(train_exp, run_dir, resume=False)
seconds = time.perf_counter() - started
counters = result["counters"]
print(f"{counters['updates']} updates, {counters['frames']:,} frames, {counters['game_episodes']} games "
      f"in {seconds:.0f} s ({counters['frames'] / seconds:,.0f} frames/s including compilation)")

# %% [markdown]
# Each line of `metrics.jsonl` holds the learner's losses and the running mean return of
# the last 100 finished games (`game_return`), against the frames played so far. The plot
# shows that return over training.

# %%
records = [r for r in metrics.read_jsonl(run_dir) if "game_return" in r]
frames = np.array([r["frames"] for r in records])
returns = np.array([r["game_return"] for r in records])
plt.figure(figsize=(6, 3.5))
plt.plot(frames, returns)
plt.xlabel("frames")
plt.ylabel("game return (mean of last 100 games)")
plt.title(f"MinAtar Breakout, {train_exp.agent.core} core")
plt.tight_layout()
plt.show()
early, late = returns[: max(1, len(returns) // 10)].mean(), returns[-max(1, len(returns) // 10):].mean()
print(f"return: first tenth of the logs {early:.2f}, last tenth {late:.2f}")
assert np.isfinite(returns).all() and len(returns) >= 2, "the loop logged returns"
if not QUICK:
    assert late > early, "the return rises over the full run"

# %% [markdown]
# In the committed full run (500k frames) the mean return of the last 100 games rose from
# 1.10 in the first tenth of the logs to 6.28 in the last: the agent learnt to keep the ball
# in play (`make rl`, twice as long, reaches 9.1). With `QUICK = True` (6,400 frames, 10
# updates) the curve stays near the random policy's ~0.3; that run only shows that the
# pipeline works.
#
# ## The trained agent playing
#
# `fastweights.rl.evaluation.evaluate_policy` plays one game per environment with the greedy
# policy (the most probable action, polybeast's test mode) until every game has ended, and
# with `record=N` keeps the first N frames of game 0. (We play 32 games, the training's batch,
# so that the jitted environment is reused.) `save_strip` lays 8 of them side by side.

# %%
graphdef, _, rest = nnx.split(agent, nnx.Param, ...)       # the agent's structure; the trained parameters:
params = result["state"].params
score = evaluation.evaluate_policy(graphdef, rest, params, train_exp.env, episodes=B, seed=1, record=RECORD)
print(f"greedy policy over {score['episodes']} games: return {score['game_return_mean']:.2f} "
      f"+- {score['game_return_std']:.2f}, {score['game_frames_mean']:.0f} frames per game")
strip = evaluation.save_strip(score["frames"], run_dir / "strip.png", count=8)
plt.figure(figsize=(12, 2))
plt.imshow(plt.imread(strip))
plt.axis("off")
plt.title(f"greedy game 0: 8 of its first {len(score['frames'])} frames")
plt.show()

# %% [markdown]
# Each frame colours a cell by its highest active channel (`frame_rgb`): the paddle on the
# bottom row, the ball and its trail, the rows of bricks at the top.
#
# ## Beyond MinAtar: the Atari presets and the command line
#
# The same agent, loop and evaluation run the paper's Atari experiments (ale-py, 84x84
# frames, frame skip 4). The presets:
#
# - `paper_<core>` (`core` one of `lstm`, `linear_transformer`, `delta_net`, `delta_rnn`,
#   `rdn`, `gated_delta_net`): the paper's run, 48 environments, batch 32, unroll 50,
#   2e8 agent steps, the deep torso; `paper_50m_<core>` its first 5e7 steps;
# - `atari_tiny`: Pong with the Nature DQN torso for 1,600 steps, the Atari pipeline on a
#   CPU in seconds.
#
# From a shell:
#
# ```
# python -m fastweights.rl.train --preset minatar_tiny --set agent.core=lstm --run-dir runs/rl_lstm
# python -m fastweights.rl.train --preset atari_tiny
# python -m fastweights.rl.train --preset paper_delta_net --set env.game=Pong     # GPU, days
# python -m fastweights.rl.evaluate runs/rl_lstm --episodes 30 --gif game.gif --strip game.png
# make rl      # MinAtar Breakout, Delta Net vs LSTM, 1M steps each (about 5 minutes)
# ```

# %%
print(f"notebook time: {time.perf_counter() - START:.0f} s")
