"""The IMPALA loss against a float64 NumPy computation, one learner step lowering the loss,
and two processes giving the same update as one.

The loss is checked on a tiny stand-in with the interface of `fastweights.rl.agent.Agent`
(`unroll(obs, reward, done, state) -> (AgentOutput, state)`) whose float64 NumPy forward is
a few lines: a linear torso on obs/255 and the clipped reward, a tanh recurrence reset by
`1 - done` before each row, two heads. The learner step and the two-process update run the
real agent (the small torso and a tiny Delta Net core).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights import training
from fastweights.rl.learner import LossConfig, impala_loss, make_learner
from fastweights.testing import assert_close
from rl_reference import log_softmax, numpy_vtrace

ROOT = Path(__file__).parents[2]
OBS, ACTIONS, HIDDEN = (2, 3, 3), 4, 6


class AgentOutput(NamedTuple):
    logits: jax.Array     # [B, T+1, A]
    baseline: jax.Array   # [B, T+1]


class TinyAgent(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.torso = nnx.Linear(int(np.prod(OBS)) + 1, HIDDEN, rngs=rngs)
        self.recurrence = nnx.Linear(HIDDEN, HIDDEN, use_bias=False, rngs=rngs)
        self.policy = nnx.Linear(HIDDEN, ACTIONS, rngs=rngs)
        self.value = nnx.Linear(HIDDEN, 1, rngs=rngs)

    def unroll(self, obs, reward, done, state):
        batch, rows = reward.shape
        x = obs.reshape(batch, rows, -1).astype(jnp.float32) / 255.0
        features = self.torso(jnp.concatenate([x, jnp.clip(reward, -1, 1)[..., None]], axis=-1))
        (h,) = state["core"]
        outputs = []
        for t in range(rows):          # a few rows: a Python loop is clearer than a scan
            h = h * (1.0 - done[:, t, None].astype(jnp.float32))
            h = jnp.tanh(features[:, t] + self.recurrence(h))
            outputs.append(h)
        hs = jnp.stack(outputs, axis=1)
        return AgentOutput(self.policy(hs), self.value(hs)[..., 0]), {"core": (h,)}


def numpy_agent(params, unroll):
    """The stand-in agent in float64 NumPy: `(logits [B, T+1, A], baseline [B, T+1])`."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), nnx.to_pure_dict(params))
    obs, reward, done = unroll["obs"], unroll["reward"], unroll["done"]
    batch, rows = reward.shape
    x = np.concatenate([obs.reshape(batch, rows, -1) / 255.0, np.clip(reward, -1, 1)[..., None]], axis=-1)
    h = np.asarray(unroll["state"]["core"][0], np.float64)
    logits, baseline = np.zeros((batch, rows, ACTIONS)), np.zeros((batch, rows))
    for t in range(rows):
        h = h * (1.0 - done[:, t, None])
        h = np.tanh(x[:, t] @ p["torso"]["kernel"] + p["torso"]["bias"] + h @ p["recurrence"]["kernel"])
        logits[:, t] = h @ p["policy"]["kernel"] + p["policy"]["bias"]
        baseline[:, t] = (h @ p["value"]["kernel"] + p["value"]["bias"])[:, 0]
    return logits, baseline


def synthetic_unroll(batch, time, seed=0):
    """Rows in the layout of an actor's unroll (T+1 rows, a core state before row 0)."""
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, (batch, time + 1, *OBS)).astype(np.uint8),
        "reward": (2.0 * rng.normal(size=(batch, time + 1))).astype(np.float32),   # some beyond the clip
        "done": rng.random((batch, time + 1)) < 0.25,
        "action": rng.integers(0, ACTIONS, (batch, time + 1)).astype(np.int32),
        "logits": rng.normal(size=(batch, time + 1, ACTIONS)).astype(np.float32),
        "state": {"core": (rng.normal(size=(batch, HIDDEN)).astype(np.float32),)},
    }


def numpy_loss(params, unroll, config):
    """torchbeast's `learn()` in float64: rows 1..T of the batch with rows 0..T-1 of the
    agent's outputs, bootstrapped from row T. Returns the three terms and V-trace's targets."""
    logits, baseline = numpy_agent(params, unroll)
    actions = unroll["action"][:, 1:]
    pick = lambda lp: np.take_along_axis(lp, actions[..., None], -1)[..., 0]  # noqa: E731
    log_policy = log_softmax(logits[:, :-1])
    log_rhos = pick(log_policy) - pick(log_softmax(unroll["logits"][:, 1:]))
    rewards = np.clip(unroll["reward"][:, 1:], -config.reward_clip, config.reward_clip)
    discounts = config.discount * (1.0 - unroll["done"][:, 1:])
    vs, adv = numpy_vtrace(log_rhos, discounts, rewards, baseline[:, :-1], baseline[:, -1])
    pg = np.sum(-pick(log_policy) * adv)
    value = config.baseline_cost * 0.5 * np.sum((vs - baseline[:, :-1]) ** 2)
    entropy = config.entropy_cost * np.sum(np.exp(log_policy) * log_policy)
    return dict(pg_loss=pg, baseline_loss=value, entropy_loss=entropy, total_loss=pg + value + entropy,
                rhos=np.exp(log_rhos), vs=vs, pg_advantages=adv)


def test_loss_matches_numpy():
    agent = TinyAgent(rngs=nnx.Rngs(0))
    unroll = synthetic_unroll(batch=3, time=5)
    config = LossConfig(entropy_cost=0.05)
    total, metrics = jax.jit(lambda batch: impala_loss(agent, batch, config))(unroll)
    expected = numpy_loss(nnx.state(agent, nnx.Param), unroll, config)
    assert (np.abs(unroll["reward"]) > 1).any() and unroll["done"][:, 1:].any()
    assert (expected["rhos"] > 1).any() and (expected["rhos"] < 1).any()
    for name in ("pg_loss", "baseline_loss", "entropy_loss", "total_loss"):
        assert_close(metrics[name], expected[name], "float32_vs_float64", name=name)
    assert_close(total, expected["total_loss"], "float32_vs_float64", name="total")
    assert_close(metrics["mean_rho"], expected["rhos"].mean(), "float32_vs_float64", name="mean_rho")
    assert float(metrics["clipped_rho_fraction"]) == pytest.approx((expected["rhos"] > 1).mean())
    assert_close(metrics["entropy"], -expected["entropy_loss"] / config.entropy_cost / 15,
                 "float32_vs_float64", name="entropy")


def fixed_target_loss(graphdef, rest, unroll, vs, adv, config):
    """The IMPALA loss as a function of the parameters with V-trace's targets `vs` and
    advantages `adv` [B, T] held fixed: the objective whose gradient the loss gives."""
    def loss(params):
        model = nnx.merge(graphdef, params) if rest is None else nnx.merge(graphdef, params, rest)
        output, _ = model.unroll(unroll["obs"], unroll["reward"], unroll["done"], unroll["state"])
        log_policy = jax.nn.log_softmax(output.logits[:, :-1], axis=-1)
        taken = jnp.take_along_axis(log_policy, unroll["action"][:, 1:, None], axis=-1)[..., 0]
        return (jnp.sum(-taken * adv) + config.baseline_cost * 0.5 * jnp.sum((vs - output.baseline[:, :-1]) ** 2)
                + config.entropy_cost * jnp.sum(jnp.exp(log_policy) * log_policy))
    return loss


def test_loss_gradient_treats_vtrace_targets_as_constants():
    agent = TinyAgent(rngs=nnx.Rngs(1))
    unroll = synthetic_unroll(batch=2, time=4, seed=1)
    config = LossConfig()
    graphdef, params = nnx.split(agent, nnx.Param)
    expected = numpy_loss(params, unroll, config)
    vs, adv = (jnp.asarray(expected[k], jnp.float32) for k in ("vs", "pg_advantages"))

    surrogate = fixed_target_loss(graphdef, None, unroll, vs, adv, config)
    loss_grad = jax.jit(jax.grad(lambda p: impala_loss(nnx.merge(graphdef, p), unroll, config)[0]))
    assert_close(loss_grad(params), jax.jit(jax.grad(surrogate))(params), "float32_other_form_grad",
                 name="gradients")


def test_bad_input_is_refused():
    agent = TinyAgent(rngs=nnx.Rngs(0))
    unroll = synthetic_unroll(batch=2, time=2)
    with pytest.raises(ValueError, match="unroll lacks logits"):
        impala_loss(agent, {k: v for k, v in unroll.items() if k != "logits"}, LossConfig())
    with pytest.raises(ValueError, match="discount must be in"):
        LossConfig(discount=1.5)


RMSPROP = training.OptimizerConfig(optimizer="rmsprop", learning_rate=1e-3, schedule="linear", decay=0.99,
                                   eps=0.01, clip_norm=40.0)


def test_learner_step_lowers_the_loss():
    mesh = training.make_mesh((-1, 1))          # 8 simulated devices over `data`
    agent = TinyAgent(rngs=nnx.Rngs(2))
    graphdef, params, _ = training.split_model(agent)
    unroll = synthetic_unroll(batch=8, time=4, seed=2)
    config = LossConfig()
    state, learner_step = make_learner(agent, RMSPROP, config, total_updates=10, mesh=mesh)
    before = numpy_loss(params, unroll, config)["total_loss"]
    state, metrics = learner_step(state, training.global_batch(unroll, mesh))
    after = numpy_loss(state.params, unroll, config)["total_loss"]
    assert int(state.step) == 1 and float(metrics["finite"]) == 1.0
    assert float(metrics["learning_rate"]) == pytest.approx(1e-3)
    assert_close(metrics["loss"], before, "float32_vs_float64", name="loss before the step")
    assert after < before - 0.01 * abs(before), (before, after)


def _real_agent(seed):
    from fastweights.nn.config import RLCoreConfig
    from fastweights.rl.agent import Agent, AgentConfig
    core = RLCoreConfig(model_dim=16, num_layers=1, num_heads=2, head_dim=8, ff_dim=32)
    return Agent(AgentConfig(torso="small", torso_dim=16, core="delta_net", core_config=core), OBS, ACTIONS,
                 rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def _real_unroll(agent, batch, time, seed):
    """`synthetic_unroll` with the real agent's core state (random, as a mid-episode state)."""
    unroll = synthetic_unroll(batch, time, seed)
    rng = np.random.default_rng(seed + 100)
    unroll["state"] = jax.tree.map(lambda x: (0.1 * rng.normal(size=x.shape)).astype(np.float32),
                                   agent.init_state(batch))
    return unroll


def test_learner_step_lowers_the_loss_of_the_agent():
    """One update on a fixed batch lowers the loss with V-trace's targets held at their
    values before the update (the total with fresh targets need not fall: they move with V)."""
    mesh = training.make_mesh((-1, 1))
    agent = _real_agent(5)
    unroll = _real_unroll(agent, batch=8, time=4, seed=5)
    config = LossConfig()
    graphdef, params, rest = training.split_model(agent)
    output, _ = jax.jit(lambda u: agent.unroll(u["obs"], u["reward"], u["done"], u["state"]))(unroll)
    logits, baseline = np.asarray(output.logits, np.float64), np.asarray(output.baseline, np.float64)
    actions = unroll["action"][:, 1:, None]
    log_rhos = (np.take_along_axis(log_softmax(logits[:, :-1]), actions, -1)
                - np.take_along_axis(log_softmax(unroll["logits"][:, 1:]), actions, -1))[..., 0]
    vs, adv = numpy_vtrace(log_rhos, config.discount * (1.0 - unroll["done"][:, 1:]),
                           np.clip(unroll["reward"][:, 1:], -1, 1), baseline[:, :-1], baseline[:, -1])
    surrogate = jax.jit(fixed_target_loss(graphdef, rest, unroll, jnp.asarray(vs, jnp.float32),
                                          jnp.asarray(adv, jnp.float32), config))
    before = float(surrogate(params))
    state, learner_step = make_learner(agent, RMSPROP, config, total_updates=10, mesh=mesh)
    state, metrics = learner_step(state, training.global_batch(unroll, mesh))
    after = float(surrogate(jax.device_get(state.params)))
    assert_close(metrics["loss"], before, "float32_other_form", name="loss before the step")
    assert after < before - 0.01 * abs(before), (before, after)


def _learner_update(unroll, mesh):
    """The params after one update of a fresh agent (seed 3) on `unroll`."""
    agent = _real_agent(3)
    state, learner_step = make_learner(agent, RMSPROP, LossConfig(), total_updates=10, mesh=mesh)
    state, _ = learner_step(state, training.global_batch(unroll, mesh))
    # The params are replicated: every process holds all of each one.
    return [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree.leaves(state.params)]


def test_two_processes_equal_one(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT), FASTWEIGHTS_COORDINATOR=f"127.0.0.1:{port}", FASTWEIGHTS_NUM_PROCESSES="2")
    workers = [subprocess.Popen([sys.executable, __file__, str(tmp_path / f"params{i}.npz")], cwd=ROOT,
                                env=dict(env, FASTWEIGHTS_PROCESS_ID=str(i)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in range(2)]
    one = _learner_update(_real_unroll(_real_agent(3), batch=4, time=3, seed=4),
                          training.make_mesh((2, 1), jax.devices()[:2]))
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, out
    for i in range(2):
        with np.load(tmp_path / f"params{i}.npz") as two:
            assert_close([two[f"leaf{j}"] for j in range(len(one))], one, "float32_same_algebra",
                         name=f"params of process {i}")


def _worker(path):
    """One of two processes: its half of the rows of the same unroll, one update."""
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_default_matmul_precision", "highest")
    assert training.initialize_distributed()
    rows = slice(2 * jax.process_index(), 2 * jax.process_index() + 2)
    local = jax.tree.map(lambda x: x[rows], _real_unroll(_real_agent(3), batch=4, time=3, seed=4))
    params = _learner_update(local, training.make_mesh((-1, 1)))
    np.savez(path, **{f"leaf{j}": leaf for j, leaf in enumerate(params)})


if __name__ == "__main__":
    _worker(sys.argv[1])
