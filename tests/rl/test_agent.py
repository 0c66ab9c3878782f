"""The IMPALA agent (fastweights.rl.agent): `unroll` equals `step` after `step` for every core,
resets against a fresh state, the gradients of `full_backprop` and of the paper's 1-step
truncation against backpropagation through a Python loop of steps, the chunked forms with
resets against a float64 NumPy loop, reward clipping, PyTorch's max pool, and the paper
agent's shapes, parameter counts (written out from PAPER_SPEC 3.4's layer list) and RL
conventions."""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastweights.nn.config import LayerConfig, RLCoreConfig
from fastweights.rl.agent import (CORES, Agent, AgentConfig, AgentOutput, core_config_for, max_pool_3x3_s2,
                                  pooled_size)
from fastweights.ops.gated_delta_net import gated_delta_net
from fastweights.ops.gated_delta_net.reference import State as gated_State
from fastweights.ops.linear_transformer.reference import State as linear_transformer_State
from fastweights.rl.agent import _reset_log_decay, _sum_rule_with_decay
from fastweights.testing import assert_close

B, T, A = 3, 7, 3
OBS = (2, 5, 5)
CHUNK = 4                               # T = 7: two chunks, the second padded
RESETS = ((0, 2), (1, 4), (1, 6))       # (element, row): inside a chunk, at a chunk's start, last row


def _config(core: str, full_backprop: bool = False) -> AgentConfig:
    layer = RLCoreConfig().layer if core == "lstm" else LayerConfig(core, convention="rl", chunk_size=CHUNK)
    return AgentConfig(torso="small", torso_dim=12, core=core, lstm_hidden=16, full_backprop=full_backprop,
                       core_config=RLCoreConfig(model_dim=16, num_layers=2, num_heads=2, head_dim=8, ff_dim=32,
                                                layer=layer))


# (core, full_backprop): every core once, so that the file compiles two programs per case.
# With gradients through the state: the three cores whose chunked form takes the resets, and
# the Delta RNN's stepped scan (the same code path as the RDN's). As in the paper: the default
# Delta Net and the RDN (1-step truncation, one code path for every fast-weight core) and the
# LSTM (BPTT through the unroll either way).
CASES = (("linear_transformer", True), ("delta_net", True), ("gated_delta_net", True), ("delta_rnn", True),
         ("delta_net", False), ("rdn", False), ("lstm", False))
CHUNKED = ("linear_transformer", "delta_net", "gated_delta_net")
# Compilation dominates this file's time: LLVM without optimisation compiles these programs
# 2.5x faster. Both sides of every comparison are compiled alike; XLA's graph is unchanged.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


class Built(NamedTuple):
    agent: Agent
    params: nnx.State
    # (params, obs, reward, done, state, d_out, d_next) -> (AgentOutput, state, d params, d state):
    # one step and the pullback of (d_out, d_next) through it (one program for both loops)
    step: callable
    # (params, state, data, weights) -> ((loss, (AgentOutput, state)), (d params, d state))
    unroll: callable


def _loss(out: AgentOutput, weights) -> jax.Array:
    """A fixed random linear functional of every output (so every output row matters)."""
    return jnp.sum(out.logits * weights[0]) + jnp.sum(out.baseline * weights[1])


@functools.lru_cache(maxsize=None)
def _built(core: str, full_backprop: bool) -> Built:
    """The agent and its two jitted programs, compiled once for the whole module."""
    agent = Agent(_config(core, full_backprop), OBS, A, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(agent, nnx.Param, ...)

    def merged(p):
        return nnx.merge(graphdef, p, jax.tree.map(lambda x: x, rest))

    def step(p, obs, reward, done, state, d_out, d_next):
        (out, new_state), pullback = jax.vjp(lambda p, s: merged(p).step(obs, reward, done, s), p, state)
        return (out, new_state, *pullback((AgentOutput(*d_out), d_next)))

    def unroll_loss(p, state, data, weights):
        out, final = merged(p).unroll(*data, state)
        return _loss(out, weights), (out, final)

    jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    return Built(agent, params, jit(step), jit(jax.value_and_grad(unroll_loss, argnums=(0, 1), has_aux=True)))


def _data(seed: int, time: int = T):
    """An unroll `(obs, reward, done)` with rewards outside [-1, 1] and the resets of `RESETS`."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (B, time, *OBS), dtype=np.uint8)
    reward = rng.choice(np.array([-3.0, -0.6, 0.0, 0.4, 2.0], np.float32), (B, time))
    done = np.zeros((B, time), bool)
    for b, t in RESETS:
        done[b, t] = True
    return obs, reward, done


def _weights(seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, T, A)).astype(np.float32), rng.standard_normal((B, T)).astype(np.float32)


def _zero_cotangents(state):
    return (np.zeros((B, A), np.float32), np.zeros(B, np.float32)), jax.tree.map(np.zeros_like, state)


def _steps(built: Built, data, state):
    """`step` after `step` in Python: `(AgentOutput [B, T, ...], the states before each row and after the last)`."""
    outs, states = [], [state]
    d_out, d_next = _zero_cotangents(state)
    for t in range(data[0].shape[1]):
        out, state, _, _ = built.step(built.params, *(x[:, t] for x in data), state, d_out, d_next)
        outs.append(out)
        states.append(state)
    return AgentOutput(*(np.stack(x, axis=1) for x in zip(*jax.device_get(outs)))), states


def _backward(built: Built, data, states, weights):
    """Backpropagation through the Python loop of steps: `(d params, d initial state)` with
    the gradient carried from step to step, and `d params` of 1-step truncation (each
    step's gradient with the state it was given held constant)."""
    _, zero_state = _zero_cotangents(states[-1])
    d_state, d_full, d_truncated = zero_state, None, None
    add = functools.partial(jax.tree.map, np.add)     # on the host: no eager device ops to compile
    for t in reversed(range(T)):
        args = (built.params, *(x[:, t] for x in data), states[t], (weights[0][:, t], weights[1][:, t]))
        *_, d_params, d_state = jax.device_get(built.step(*args, d_state))
        d_full = d_params if d_full is None else add(d_full, d_params)
        *_, d_params, _ = jax.device_get(built.step(*args, zero_state))    # nothing from the later steps
        d_truncated = d_params if d_truncated is None else add(d_truncated, d_params)
    return d_full, d_state, d_truncated


def _carried_state(built: Built):
    """A realistic non-zero state: the one after a first unroll from zeros."""
    return built.unroll(built.params, built.agent.init_state(B), _data(1), _weights(1))[0][1][1]


def _slice(data, start: int):
    return tuple(x[:, start:] for x in data)


def _max_relative_difference(a, b) -> float:
    return max(float(np.abs(x - y).max() / np.abs(y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("core, full_backprop", CASES, ids=[f"{c}-{'full' if f else 'paper'}" for c, f in CASES])
def test_unroll_equals_steps_resets_and_gradients(core, full_backprop):
    """`unroll` against `step` after `step` from a carried state: outputs and final state;
    after a done the outputs of a fresh state fed the rest of the rows; gradients (parameters
    and initial state) against backpropagation through the loop of steps: with the state's
    gradient carried (`full_backprop`, and the LSTM baseline always) or with none (1-step
    truncation, PAPER_SPEC 9.9)."""
    built = _built(core, full_backprop)
    data, state, weights = _data(0), _carried_state(built), _weights(0)
    (_, (out, final)), (grad, grad_state) = jax.device_get(built.unroll(built.params, state, data, weights))
    assert out.logits.shape == (B, T, A) and out.baseline.shape == (B, T)
    assert out.logits.dtype == jnp.float32 and out.baseline.dtype == jnp.float32
    stepped, states = _steps(built, data, state)
    chunked = full_backprop and core in CHUNKED
    same = "float32_other_form" if chunked else "float32_same_algebra"
    assert_close(out, stepped, same, name=f"{core} unroll vs steps")
    assert_close(final, states[-1], same, name=f"{core} final state")
    # After a done at row t, an element's outputs are those of a fresh state fed rows t...
    for b, t in RESETS[:2]:
        fresh, _ = _steps(built, _slice(data, t), built.agent.init_state(B))
        assert_close(jax.tree.map(lambda x: x[b, t:], out), jax.tree.map(lambda x: x[b], fresh), same,
                     name=f"{core} reset of element {b} at row {t}")
        # ... while element 2 (no reset) still remembers its carried state.
        assert float(np.abs(out.logits[2, t:] - fresh.logits[2]).max()) > 1e-4

    d_full, d_state, d_truncated = _backward(built, data, states, weights)
    grad_tol = "float32_other_form_grad" if chunked else "float32_same_algebra"
    if full_backprop or core == "lstm":
        assert_close(grad, d_full, grad_tol, name=f"{core} parameter gradients")
        assert_close(grad_state, d_state, grad_tol, name=f"{core} initial-state gradients")
        assert max(float(np.abs(x).max()) for x in jax.tree.leaves(d_state)) > 0.0
        # The state's gradient matters here: truncation would change the gradients well beyond rounding.
        assert _max_relative_difference(d_truncated, d_full) > 1e-2
    else:
        assert_close(grad, d_truncated, grad_tol, name=f"{core} truncated parameter gradients")
        for leaf in jax.tree.leaves(grad_state):
            np.testing.assert_array_equal(np.asarray(leaf), 0.0)


@pytest.mark.parametrize("core", ["delta_net", "lstm"])
def test_the_core_sees_the_clipped_reward(core):
    built = _built(core, False)
    obs = _data(3)[0][:, 0]
    done = np.zeros(B, bool)
    state = _carried_state(built)

    def run(reward):
        return built.step(built.params, obs, np.asarray(reward, np.float32), done, state,
                          *_zero_cotangents(state))[:2]     # (AgentOutput, next state)

    reward = np.array([0.5, -0.2, 0.0], np.float32)
    features = built.agent.core_input(obs, np.array([5.0, -3.0, 0.3], np.float32))
    np.testing.assert_array_equal(np.asarray(features[:, -1]), np.array([1.0, -1.0, 0.3], np.float32))
    for big, clipped in (([5.0, -0.2, 0.0], [1.0, -0.2, 0.0]), ([0.5, -3.0, 0.0], [0.5, -1.0, 0.0])):
        jax.tree.map(np.testing.assert_array_equal, run(big), run(clipped))
    changed, base = jax.device_get((run([0.7, -0.2, 0.0])[0], run(reward)[0]))
    assert float(np.abs(changed.logits[0] - base.logits[0]).max()) > 1e-4
    np.testing.assert_array_equal(np.asarray(changed.logits[1:]), np.asarray(base.logits[1:]))


def test_max_pool_pads_with_minus_infinity_like_pytorch():
    rng = np.random.default_rng(0)
    for size in (5, 6, 84):
        x = -1.0 - rng.random((1, size, size, 2)).astype(np.float32)   # all negative: a 0 pad would win
        size_out = (size + 2 - 3) // 2 + 1          # floor((n + 2 * 1 - 3) / 2) + 1
        expected = np.empty((1, size_out, size_out, 2), np.float32)
        for i in range(size_out):
            for j in range(size_out):
                rows = slice(max(2 * i - 1, 0), min(2 * i + 2, size))
                cols = slice(max(2 * j - 1, 0), min(2 * j + 2, size))
                expected[0, i, j] = x[0, rows, cols].max(axis=(0, 1))
        out = max_pool_3x3_s2(jnp.asarray(x))
        np.testing.assert_array_equal(np.asarray(out), expected)
    assert [pooled_size(n) for n in (84, 42, 21)] == [42, 21, 11]    # PAPER_SPEC 3.4


def _param_count(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_deep_agent_shapes_parameter_counts_and_rl_conventions():
    """The paper's agent for every core: parameter counts from the layer list of PAPER_SPEC
    3.4 (and 2.x for the per-head projections), the 3872 flatten and the 257-wide core input;
    the RL conventions of PAPER_SPEC 9.3/9.5: queries and keys ELU+1 and sum-normalised with
    eps 1e-5 (the Gated Delta Net takes the Delta Net's), softmax for the Delta RNN, raw for
    the RDN, no 1/sqrt(d) scale; 1-step truncation unless full_backprop."""
    actions, D, H, d, F = 6, 128, 4, 32, 512

    def conv(c_in, c_out):
        return 9 * c_in * c_out + c_out

    torso, c_in = 0, 4
    for c in (16, 32, 32):                        # conv, then 2 residual blocks of 2 convs
        torso += conv(c_in, c) + 4 * conv(c, c)
        c_in = c
    torso += 3872 * 256 + 256                     # Linear(32 * 11 * 11, 256)

    def heads(dim):
        return dim * actions + actions + dim + 1

    def fwp(per_head, slow=0):
        block = 2 * 2 * D + D * H * per_head + H * d * D + (D * F + F + F * D + D) + slow
        return (257 * D + D) + 2 * block + heads(D)

    expected = {
        "lstm": 4 * 256 * (257 + 256) + 2 * 4 * 256 + heads(256),       # LSTM(257, 256), both biases
        "linear_transformer": fwp(3 * d),                                # q, k, v
        "delta_net": fwp(3 * d + 1),                                     # q, k, v, beta
        "delta_rnn": fwp(5 * d + 2),                                     # q, k, v, rk, rv, beta, r_beta
        "rdn": fwp(3 * d + 1, slow=3 * H * d * d + H * d),               # + R_q, R_k, R_v, r_b
        "gated_delta_net": fwp(3 * d + 2, slow=2 * H),                   # + a; A_log, dt_bias per head
    }
    conventions = {"linear_transformer": ("elu_p1", True), "delta_net": ("elu_p1", True),
                   "gated_delta_net": ("elu_p1", True), "delta_rnn": ("softmax", False), "rdn": (None, False)}
    obs = jax.ShapeDtypeStruct((2, 4, 84, 84), jnp.uint8)
    for core in CORES:
        agent = nnx.eval_shape(lambda: Agent(AgentConfig(core=core), (4, 84, 84), actions, rngs=nnx.Rngs(0)))
        assert _param_count(agent) == torso + expected[core], core
        assert _param_count(agent.torso) == torso
        graphdef, state = nnx.split(agent)
        flat = jax.eval_shape(lambda s, o: nnx.merge(graphdef, s).torso.features(o), state, obs)
        core_in = jax.eval_shape(lambda s, o: nnx.merge(graphdef, s).core_input(o, jnp.zeros(2)), state, obs)
        assert flat.shape == (2, 3872) and core_in.shape == (2, 257)
        out, _ = jax.eval_shape(
            lambda s, o: nnx.merge(graphdef, s).unroll(o, jnp.zeros((2, 3)), jnp.zeros((2, 3), bool),
                                                       nnx.merge(graphdef, s).init_state(2)),
            state, jax.ShapeDtypeStruct((2, 3, 4, 84, 84), jnp.uint8))
        assert out.logits.shape == (2, 3, actions) and out.baseline.shape == (2, 3)
        if core == "lstm":
            assert agent.core.w_ih.shape == (257, 4 * 256)
            continue
        assert agent.core.input_proj.kernel.shape == (257, 128)
        assert agent.core.config.truncate_state_gradient
        assert not core_config_for(AgentConfig(core=core, full_backprop=True)).truncate_state_gradient
        feature_map, sum_norm = conventions[core]
        for block in agent.core.layers.blocks:
            layer = block.mixer.config
            assert (layer.feature_map, layer.sum_norm, layer.output_scale) == (feature_map, sum_norm, False), core
            assert layer.sum_norm_eps == 1e-5


def _rule_with_resets(q, k, v, beta, done, W, z, *, normalize=False, eps=1e-5):
    """float64 NumPy loop of the sum rule (`beta` None) or the delta rule with the state
    zeroed before every step where `done` (PAPER_SPEC 1, 2.2, 2.4, 9.19)."""
    q, k, v, W, z = (np.asarray(x, np.float64) for x in (q, k, v, W, z))
    out = np.zeros(v.shape)
    for t in range(q.shape[1]):
        keep = 1.0 - done[:, t].astype(np.float64)[:, None, None]
        W, z = W * keep[..., None], z * keep
        written = v[:, t] if beta is None else beta[:, t, :, None] * (v[:, t] - np.einsum("bhkv,bhk->bhv", W, k[:, t]))
        W = W + k[:, t, :, :, None] * written[:, :, None, :]
        z = z + k[:, t]
        out[:, t] = np.einsum("bhkv,bhk->bhv", W, q[:, t])
        if normalize:
            out[:, t] /= np.einsum("bhk,bhk->bh", z, q[:, t])[..., None] + eps
    return out, W, z


def test_chunked_resets_match_a_numpy_loop():
    """The full_backprop sequence forms with resets, against a float64 loop: the decayed sum
    rule (the linear Transformer, with and without its normaliser) and the delta rule through
    the gated rule's chunked form with the reset as its decay. Resets at the first row (from a
    non-zero state), inside a chunk, at a chunk's start, twice in a row."""
    Bq, Tq, H, K, V, chunk = 2, 9, 2, 4, 3, 4
    rng = np.random.default_rng(5)
    positive = lambda *shape: (lambda x: x / x.sum(-1, keepdims=True))(rng.random(shape) + 0.1)  # noqa: E731
    q, k = positive(Bq, Tq, H, K), positive(Bq, Tq, H, K)
    v, beta = rng.standard_normal((Bq, Tq, H, V)), rng.random((Bq, Tq, H))
    W0, z0 = rng.standard_normal((Bq, H, K, V)), rng.random((Bq, H, K))
    done = np.zeros((Bq, Tq), bool)
    done[0, [0, 2, 4, 5]] = True
    f32 = lambda *xs: tuple(jnp.asarray(x, jnp.float32) for x in xs)  # noqa: E731
    g = _reset_log_decay(jnp.asarray(done, jnp.float32), H)
    for normalize in (False, True):
        out, state = jax.jit(functools.partial(_sum_rule_with_decay, chunk_size=chunk, normalize=normalize))(
            *f32(q, k, v), g, linear_transformer_State(*f32(W0, z0)))
        expected, W, z = _rule_with_resets(q, k, v, None, done, W0, z0, normalize=normalize)
        assert_close((out, state.W, state.z), (expected, W, z), "float32_vs_float64", name=f"sum rule {normalize=}")
    out, state = jax.jit(functools.partial(gated_delta_net, implementation="chunked", chunk_size=chunk))(
        *f32(q, k, v, beta), g, initial_state=gated_State(*f32(W0)))
    expected, W, _ = _rule_with_resets(q, k, v, beta, done, W0, z0)
    assert_close((out, state.W), (expected, W), "float32_vs_float64", name="delta rule")


def test_nature_torso_shapes_and_parameter_count():
    """The Nature DQN torso at 84x84: 84 -> 20 -> 9 -> 7, flatten 64*7*7 = 3136, Linear(3136, 512)."""
    torso = nnx.eval_shape(lambda: Agent(AgentConfig(torso="nature", core="lstm"), (4, 84, 84), 6,
                                         rngs=nnx.Rngs(0))).torso
    expected = (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64) + (3136 * 512 + 512)
    assert torso.flat_dim == 3136 and _param_count(torso) == expected
    graphdef, state = nnx.split(torso)
    flat = jax.eval_shape(lambda s, o: nnx.merge(graphdef, s).features(o), state,
                          jax.ShapeDtypeStruct((2, 4, 84, 84), jnp.uint8))
    assert flat.shape == (2, 3136)


def test_bad_config_and_input_are_refused():
    with pytest.raises(ValueError, match="unknown core"):
        Agent(AgentConfig(core="transformer"), OBS, A, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown torso"):
        Agent(AgentConfig(torso="resnet18"), OBS, A, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="names"):
        Agent(dataclasses.replace(_config("delta_net"), core="rdn"), OBS, A, rngs=nnx.Rngs(0))
    agent = _built("delta_net", False).agent
    obs, reward, done = _data(0)
    with pytest.raises(ValueError, match="obs must be"):
        agent.step(obs[:, 0, :1], reward[:, 0], done[:, 0], agent.init_state(B))
    with pytest.raises(ValueError, match="reward must have shape"):
        agent.unroll(obs, reward[:, 0], done, agent.init_state(B))
