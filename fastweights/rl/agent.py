"""The IMPALA agent of the paper's Atari experiments (PAPER_SPEC 3.4, 7): a conv torso, the
clipped reward appended, a recurrent core (a fast-weight `RLCore` or the LSTM baseline), and
policy and baseline heads.

    obs uint8 [B, C, H, W] / 255 -> torso -> ReLU(Linear(-> torso_dim))    [B, torso_dim]
    concat clamp(reward, -1, 1)                                           [B, torso_dim + 1]
    core (state *= 1 - done first)                                        [B, D]
    policy Linear(D, A), baseline Linear(D, 1)

    >>> import numpy as np
    >>> from flax import nnx
    >>> config = AgentConfig(torso="small", core="delta_net", core_config=RLCoreConfig(
    ...     model_dim=16, num_heads=2, head_dim=8, ff_dim=32))
    >>> agent = Agent(config, (2, 6, 6), num_actions=3, rngs=nnx.Rngs(0))
    >>> state = agent.init_state(2)
    >>> out, state = agent.step(np.zeros((2, 2, 6, 6), np.uint8), np.zeros(2, np.float32),
    ...                         np.ones(2, bool), state)
    >>> out.logits.shape, out.baseline.shape
    ((2, 3), (2,))

Torsos: "deep" is the IMPALA ResNet of the official code (torchbeast's `Net`): for channels
(16, 32, 32) `Conv3x3(pad 1) -> MaxPool(3, stride 2, pad 1)` and two residual blocks
`x + Conv(ReLU(Conv(ReLU(x))))`, then ReLU, flatten (PyTorch's (C, H, W) order: 32*11*11 =
3872 at 84x84), `Linear(3872, 256)`, ReLU. "small" is the network of the MinAtar paper (Young
and Tian 2019): one `Conv3x3(16, stride 1, no padding)`, ReLU, flatten, `Linear(-> 128)`,
ReLU. "nature" is the Nature DQN network (three convolutions, `Linear(3136 -> 512)`): a small
torso for Atari frames on a CPU (`atari_tiny`). Every convolution and linear layer has
PyTorch's default initialisation (U(+-1/sqrt(fan_in)) for weights and biases), as the
official code.

Cores: "linear_transformer", "delta_net", "delta_rnn" and "rdn" are the paper's RL layers under
the RL convention (`LayerConfig(name, convention="rl")`, PAPER_SPEC 2, 9.3): ELU+1 queries
and keys sum-normalised with eps 1e-5 (softmax for the Delta RNN, raw for the RDN, whose
softmaxes are inside its recurrence), no 1/sqrt(d) scale. "gated_delta_net" (beyond the
paper) takes the same RL defaults as the Delta Net (ELU+1, sum norm with eps 1e-5, no scale)
plus its per-head decay `g = -exp(A_log) softplus(a + dt_bias)` with flash-linear-attention's
initialisation (`fastweights/ops/gated_delta_net/README.md`).

Gradients through the carried state (`full_backprop`): the official fast-weight kernels
return no gradient for their initial state and the agent calls them one step at a time, so
the paper's fast-weight agents learn with 1-step truncation (PAPER_SPEC 9.9), while the LSTM
baseline gets backpropagation through the whole unroll; `full_backprop=False` keeps both.
`full_backprop=True` backpropagates through the unroll for every core. The Delta Net, the
Gated Delta Net and the linear Transformer run each layer over the whole unroll at once in
a chunkwise-parallel form that takes the per-step resets as decays: a reset before step t is
the gated delta rule's decay `exp(g_t) = 0`, so the Delta Net becomes the gated rule with
`g = log(1 - done)` (`gated_delta_net`'s chunked form), the Gated Delta Net adds it to its
own decay, and the linear Transformer is the same algebra without the delta correction
(`_sum_rule_with_decay`). The Pallas kernels take no decay, so this route never uses them;
`implementation="recurrent"` in the layer config forces the stepped scan instead. The Delta
RNN and the RDN (inherently sequential) use the stepped scan without stop_gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fastweights import registry
from fastweights.nn.common import Linear, param, uniform
from fastweights.nn.config import RLCoreConfig
from fastweights.nn.layer import FastWeightLayer
from fastweights.nn.models import RLCore
from fastweights.nn.recurrent import LSTM
from fastweights.ops.common import chunking
from fastweights.ops.gated_delta_net import api as gated_api
from fastweights.ops.gated_delta_net import reference as gated_reference
from fastweights.ops.gated_delta_net.chunked import chunk_decays

Array = jax.Array

CORES = ("lstm", "linear_transformer", "delta_net", "delta_rnn", "rdn", "gated_delta_net")
TORSOS = ("deep", "small", "nature")
# Core name -> registry variant of its fast-weight layer (the LSTM is not a fast-weight layer).
_CORE_VARIANTS = {"linear_transformer": "linear_transformer", "delta_net": "delta_net", "delta_rnn": "delta_rnn",
                  "rdn": "recurrent_delta_net", "gated_delta_net": "gated_delta_net"}
# Variants whose chunked form can take per-step resets (as a decay); the others scan steps.
_RESETTABLE = ("linear_transformer", "delta_net", "gated_delta_net")
_DEEP_CHANNELS = (16, 32, 32)
_SMALL_CHANNELS = 16
_NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))   # (channels, kernel, stride)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The agent.

    Attributes:
      torso: "deep" (the IMPALA ResNet of PAPER_SPEC 3.4), "small" (MinAtar's network) or
        "nature" (the Nature DQN network, a small torso for Atari frames).
      torso_dim: width of the torso's last Linear (None: 256 deep, 128 small, 512 nature).
      core: one of `CORES`. "lstm" is the LSTM baseline `LSTM(torso_dim + 1, lstm_hidden)`
        (PAPER_SPEC 3.4); the others are an `RLCore` with that fast-weight layer ("rdn":
        the Recurrent Delta Net).
      core_config: the fast-weight core (default: the paper's D = 128, 2 layers, 4 heads of
        32, feed-forward 512). Its `input_dim` is set to `torso_dim + 1` and its
        `truncate_state_gradient` to `not full_backprop`; the layer variant is `core`'s
        (`core_config.layer` may name the same variant to set its options, e.g.
        `chunk_size`, or be left at the default). A layer without a convention gets "rl".
      lstm_hidden: the LSTM baseline's width.
      full_backprop: False (the paper): the fast-weight cores get no gradient through the
        state carried from one step to the next (the LSTM baseline does get BPTT through the
        unroll, PAPER_SPEC 9.9). True: gradients through the whole unroll for every core
        (the chunked forms with resets where the variant allows, module docstring).
      obs_scale: observations are multiplied by this as float32 (1/255 for Atari frames;
        MinAtar's 0/1 channels want 1.0).
    """
    torso: str = "deep"
    torso_dim: int | None = None
    core: str = "delta_net"
    core_config: RLCoreConfig = RLCoreConfig()
    lstm_hidden: int = 256
    full_backprop: bool = False
    obs_scale: float = 1.0 / 255.0

    @property
    def features(self) -> int:
        """The torso's output width."""
        if self.torso_dim is not None:
            return self.torso_dim
        return {"deep": 256, "small": 128, "nature": 512}[self.torso]

    @property
    def core_dim(self) -> int:
        """The core's output width, D (the heads' input)."""
        return self.lstm_hidden if self.core == "lstm" else self.core_config.model_dim


class AgentOutput(NamedTuple):
    logits: Array     # [B, A] (step) or [B, T, A] (unroll), float32
    baseline: Array   # [B] or [B, T], float32


def _check_config(config: AgentConfig) -> None:
    if config.torso not in TORSOS:
        raise ValueError(f"unknown torso {config.torso!r}; valid: {', '.join(TORSOS)}")
    if config.core not in CORES:
        raise ValueError(f"unknown core {config.core!r}; valid: {', '.join(CORES)}")
    if config.torso_dim is not None and config.torso_dim < 1:
        raise ValueError(f"torso_dim must be positive, got {config.torso_dim}")
    if config.lstm_hidden < 1:
        raise ValueError(f"lstm_hidden must be positive, got {config.lstm_hidden}")


def core_config_for(config: AgentConfig) -> RLCoreConfig:
    """The `RLCoreConfig` of a fast-weight core: `core`'s variant, `input_dim = torso_dim + 1`,
    truncation from `full_backprop`. Raises `ValueError` if `core_config.layer` names another
    variant than `core` (other than the unchanged default)."""
    _check_config(config)
    if config.core == "lstm":
        raise ValueError("the lstm core has no RLCoreConfig")
    layer = config.core_config.layer
    wanted = _CORE_VARIANTS[config.core]
    named = registry.resolve(layer.variant)[0].name
    if named != wanted:
        if layer != RLCoreConfig().layer:
            raise ValueError(f"core={config.core!r} but core_config.layer names {layer.variant!r}: "
                             f"give the layer of {wanted!r} (or leave it at the default)")
        layer = dataclasses.replace(layer, variant=wanted)
    if layer.convention is None:
        layer = dataclasses.replace(layer, convention="rl")
    return dataclasses.replace(config.core_config, layer=layer, input_dim=config.features + 1,
                               truncate_state_gradient=not config.full_backprop)


# --- torsos --------------------------------------------------------------------------------

class Conv2d(nnx.Module):
    """`Conv2d(in, out, kernel, stride, padding)` on NHWC inputs, PyTorch's initialisation.
    `kernel [k, k, in, out]`, `bias [out]`."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, rngs: nnx.Rngs, param_dtype=jnp.float32):
        fan_in = kernel_size * kernel_size * in_channels
        self.stride, self.padding = stride, padding
        self.kernel = param(uniform(rngs.params(), (kernel_size, kernel_size, in_channels, out_channels),
                                    fan_in ** -0.5, param_dtype), (None, None, "conv_in", "conv_out"))
        self.bias = param(uniform(rngs.params(), (out_channels,), fan_in ** -0.5, param_dtype), ("conv_out",))

    def __call__(self, x: Array) -> Array:
        y = jax.lax.conv_general_dilated(x, self.kernel[...].astype(x.dtype), (self.stride, self.stride),
                                         ((self.padding, self.padding),) * 2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + self.bias[...].astype(x.dtype).reshape(1, 1, 1, -1)


def conv_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """The spatial size after a convolution."""
    return (size + 2 * padding - kernel_size) // stride + 1


def max_pool_3x3_s2(x: Array) -> Array:
    """PyTorch's `MaxPool2d(3, stride=2, padding=1)` on NHWC: the padding is -inf, so a
    border window takes the max of its in-bounds pixels (84 -> 42 -> 21 -> 11)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))


def pooled_size(size: int) -> int:
    """The spatial size after `max_pool_3x3_s2`."""
    return (size + 2 - 3) // 2 + 1


class ResidualBlock(nnx.Module):
    """`x + Conv(ReLU(Conv(ReLU(x))))` (torchbeast's resnet blocks)."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = Conv2d(channels, channels, padding=1, rngs=rngs)
        self.conv2 = Conv2d(channels, channels, padding=1, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return x + self.conv2(jax.nn.relu(self.conv1(jax.nn.relu(x))))


class DeepTorso(nnx.Module):
    """The IMPALA ResNet (PAPER_SPEC 3.4): `obs [N, C, H, W]` -> `[N, out_dim]`."""

    def __init__(self, obs_shape: tuple[int, int, int], out_dim: int, *, scale: float, rngs: nnx.Rngs):
        channels, height, width = obs_shape
        self.scale = scale
        stages = []
        for out_channels in _DEEP_CHANNELS:
            stages.append(nnx.Dict(conv=Conv2d(channels, out_channels, padding=1, rngs=rngs),
                                   res1=ResidualBlock(out_channels, rngs=rngs),
                                   res2=ResidualBlock(out_channels, rngs=rngs)))
            channels, height, width = out_channels, pooled_size(height), pooled_size(width)
        self.stages = nnx.List(stages)
        self.flat_dim = channels * height * width
        self.fc = Linear(self.flat_dim, out_dim, in_axes=("torso_flat",), out_axes=("torso",), bias=True,
                         init="pytorch", rngs=rngs)

    def features(self, obs: Array) -> Array:
        """The flattened conv features `[N, flat_dim]`, before the Linear."""
        x = jnp.transpose(obs.astype(jnp.float32) * self.scale, (0, 2, 3, 1))   # NCHW -> NHWC, once
        for stage in self.stages:
            x = stage["res2"](stage["res1"](max_pool_3x3_s2(stage["conv"](x))))
        # PyTorch's flatten order (C, H, W), so that the Linear's rows are the official ones.
        return jnp.transpose(jax.nn.relu(x), (0, 3, 1, 2)).reshape(x.shape[0], -1)

    def __call__(self, obs: Array) -> Array:
        return jax.nn.relu(self.fc(self.features(obs)))


class SmallTorso(nnx.Module):
    """MinAtar's network: `Conv3x3(16, no padding) -> ReLU -> flatten -> Linear -> ReLU`."""

    def __init__(self, obs_shape: tuple[int, int, int], out_dim: int, *, scale: float, rngs: nnx.Rngs):
        channels, height, width = obs_shape
        if height < 3 or width < 3:
            raise ValueError(f"the small torso needs frames of at least 3x3, got {height}x{width}")
        self.scale = scale
        self.conv = Conv2d(channels, _SMALL_CHANNELS, rngs=rngs)
        self.flat_dim = _SMALL_CHANNELS * (height - 2) * (width - 2)
        self.fc = Linear(self.flat_dim, out_dim, in_axes=("torso_flat",), out_axes=("torso",), bias=True,
                         init="pytorch", rngs=rngs)

    def features(self, obs: Array) -> Array:
        x = jnp.transpose(obs.astype(jnp.float32) * self.scale, (0, 2, 3, 1))
        x = jax.nn.relu(self.conv(x))
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

    def __call__(self, obs: Array) -> Array:
        return jax.nn.relu(self.fc(self.features(obs)))


class NatureTorso(nnx.Module):
    """The Nature DQN network (Mnih et al. 2015), a small torso for Atari frames:
    `Conv8x8(32, stride 4) -> ReLU -> Conv4x4(64, stride 2) -> ReLU -> Conv3x3(64) -> ReLU ->
    flatten (64*7*7 = 3136 at 84x84) -> Linear -> ReLU`."""

    def __init__(self, obs_shape: tuple[int, int, int], out_dim: int, *, scale: float, rngs: nnx.Rngs):
        channels, height, width = obs_shape
        self.scale = scale
        convs = []
        for out_channels, kernel, stride in _NATURE_CONVS:
            height, width = conv_size(height, kernel, stride), conv_size(width, kernel, stride)
            if min(height, width) < 1:
                raise ValueError(f"the nature torso needs frames of at least 36x36, got {obs_shape[1:]}")
            convs.append(Conv2d(channels, out_channels, kernel_size=kernel, stride=stride, rngs=rngs))
            channels = out_channels
        self.convs = nnx.List(convs)
        self.flat_dim = channels * height * width
        self.fc = Linear(self.flat_dim, out_dim, in_axes=("torso_flat",), out_axes=("torso",), bias=True,
                         init="pytorch", rngs=rngs)

    def features(self, obs: Array) -> Array:
        x = jnp.transpose(obs.astype(jnp.float32) * self.scale, (0, 2, 3, 1))
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

    def __call__(self, obs: Array) -> Array:
        return jax.nn.relu(self.fc(self.features(obs)))


# --- the agent -----------------------------------------------------------------------------

class Agent(nnx.Module):
    """Torso, core and heads; `step` acts one frame, `unroll` runs a learner unroll.

    The state (`init_state`) is a pytree of float32 arrays `[B, ...]`: the core's state
    (a tuple of per-layer fast-weight states, or the LSTM's `(h, c)`).
    """

    def __init__(self, config: AgentConfig, obs_shape: tuple[int, int, int], num_actions: int, *,
                 rngs: nnx.Rngs):
        _check_config(config)
        obs_shape = tuple(int(n) for n in obs_shape)
        if len(obs_shape) != 3 or min(obs_shape) < 1:
            raise ValueError(f"obs_shape must be (channels, height, width), got {obs_shape}")
        if num_actions < 1:
            raise ValueError(f"num_actions must be positive, got {num_actions}")
        self.config, self.obs_shape, self.num_actions = config, obs_shape, int(num_actions)
        torso = {"deep": DeepTorso, "small": SmallTorso, "nature": NatureTorso}[config.torso]
        self.torso = torso(obs_shape, config.features, scale=config.obs_scale, rngs=rngs)
        if config.core == "lstm":
            self.core = LSTM(config.features + 1, config.lstm_hidden, rngs=rngs)
        else:
            self.core = RLCore(core_config_for(config), rngs=rngs)
        dim = config.core_dim
        self.policy = Linear(dim, self.num_actions, in_axes=("embed",), out_axes=("actions",), bias=True,
                             init="pytorch", rngs=rngs)
        self.baseline = Linear(dim, 1, in_axes=("embed",), out_axes=(None,), bias=True, init="pytorch", rngs=rngs)

    @property
    def is_lstm(self) -> bool:
        return self.config.core == "lstm"

    def init_state(self, batch_size: int):
        """The zero core state, float32 leaves `[batch_size, ...]`."""
        return self.core.init_state(batch_size)

    # -- pieces --

    def core_input(self, obs: Array, reward: Array) -> Array:
        """`[torso(obs), clamp(reward, -1, 1)]`: `obs [N, C, H, W]`, `reward [N]` -> `[N, torso_dim + 1]`."""
        clipped = jnp.clip(jnp.asarray(reward, jnp.float32), -1.0, 1.0)
        return jnp.concatenate([self.torso(obs), clipped[:, None]], axis=-1)

    def _heads(self, y: Array) -> AgentOutput:
        y = y.astype(jnp.float32)
        return AgentOutput(self.policy(y), self.baseline(y)[..., 0])

    def _core_step(self, x: Array, done: Array, state):
        """One core step on `x [B, torso_dim + 1]`, the state reset where `done` first."""
        if not self.is_lstm:
            return self.core.step(x, state, done)
        keep = (1.0 - jnp.asarray(done, jnp.float32))[:, None]
        h, c = state
        y, state = self.core(x[:, None], (h * keep, c * keep))   # BPTT through (h, c): official
        return y[:, 0], state

    def _check(self, obs, reward, done, time: bool) -> None:
        lead = 2 if time else 1
        where = "[B, T, C, H, W]" if time else "[B, C, H, W]"
        if jnp.ndim(obs) != lead + 3 or tuple(jnp.shape(obs)[lead:]) != self.obs_shape:
            raise ValueError(f"obs must be {where} with (C, H, W) = {self.obs_shape}, got {jnp.shape(obs)}")
        batch = tuple(jnp.shape(obs)[:lead])
        for name, x in (("reward", reward), ("done", done)):
            if tuple(jnp.shape(x)) != batch:
                raise ValueError(f"{name} must have shape {batch} (obs {jnp.shape(obs)}), got {jnp.shape(x)}")

    # -- public --

    def step(self, obs: Array, reward: Array, done: Array, state) -> tuple[AgentOutput, Any]:
        """One frame per environment: `obs [B, C, H, W]` (uint8), `reward [B]` (raw; clipped
        here), `done [B]` (the state is reset before this frame) -> `(AgentOutput [B, A] and
        [B], next state)`."""
        self._check(obs, reward, done, time=False)
        y, state = self._core_step(self.core_input(obs, reward), done, state)
        return self._heads(y), state

    def unroll(self, obs: Array, reward: Array, done: Array, state) -> tuple[AgentOutput, Any]:
        """`T` frames per environment: `obs [B, T, C, H, W]`, `reward [B, T]`, `done [B, T]`,
        `state` (before row 0) -> `(AgentOutput [B, T, A] and [B, T], state after row T-1)`.
        The same computation as `T` calls of `step`; the torso runs on all `B*T` frames at once."""
        self._check(obs, reward, done, time=True)
        B, T = obs.shape[:2]
        xs = self.core_input(obs.reshape(B * T, *self.obs_shape), jnp.reshape(reward, (B * T,)))
        xs = xs.reshape(B, T, -1)
        dones = jnp.asarray(done, jnp.float32)
        if self.is_lstm:
            ys, state = self._scan_core(xs, dones, state)
        elif self.config.full_backprop and self._sequence_route():
            ys, state = _core_sequence(self.core, xs, dones, state)
        else:
            ys, state = self.core(xs, state, dones)     # the stepped scan (truncation per the config)
        return self._heads(ys), state

    def _sequence_route(self) -> bool:
        """Whether the layers run over the whole unroll in a chunked form with resets."""
        layer = self.core.config.layer
        return (registry.resolve(layer.variant)[0].name in _RESETTABLE
                and layer.implementation != "recurrent")

    def _scan_core(self, xs: Array, dones: Array, state):
        graphdef, variables = nnx.split(self)

        def body(state, inputs):
            x, done = inputs
            y, state = nnx.merge(graphdef, variables)._core_step(x, done, state)
            return state, y

        state, ys = jax.lax.scan(body, state, (jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dones, 0, 1)))
        return jnp.swapaxes(ys, 0, 1), state


# --- full backprop: the layers over the whole unroll, resets as decays ------------------------

# A log decay that zeroes the state: exp underflows to exactly 0 in float32 and float64, and
# it stays finite, so the chunked form's sums of log decays (a product with a 0/1 triangle)
# never meet 0 * inf. Its size does not matter: a sum that contains it is exp'd to 0 whatever
# else is in it, and a sum that does not is computed without it (exact zeros in the triangle).
_RESET = -1e4


def _reset_log_decay(dones: Array, heads: int) -> Array:
    """`[B, T]` done flags -> log decays `[B, T, H]`: `_RESET` where the state is reset before
    the step (the gated rule decays first, so `exp(g_t) W_{t-1}` is `(1 - done_t) W_{t-1}`)."""
    return jnp.broadcast_to((_RESET * dones)[:, :, None], (*dones.shape, heads))


def _core_sequence(core: RLCore, xs: Array, dones: Array, state: tuple) -> tuple[Array, tuple]:
    """`RLCore`'s computation over the whole unroll, layer by layer, with resets and gradients
    through the state: `xs [B, T, input_dim]`, `dones [B, T]` -> `([B, T, D], state)`.
    Only for the variants of `_RESETTABLE` under the pre-LN wiring (RLCore's)."""
    h = core.input_proj(xs)
    states = []
    for block, block_state in zip(core.layers.blocks, state):
        if block.wiring != "pre_ln":
            raise ValueError(f"the RL core is pre-LN, got wiring {block.wiring!r}")
        y, block_state = _mixer_sequence(block.mixer, block.norm1(h), dones, block_state)
        h = h + block.dropout(y)                       # Block.__call__, wiring "pre_ln"
        h = h + block.ff(block.norm2(h))
        states.append(block_state)
    return h, tuple(states)


def _mixer_sequence(layer: FastWeightLayer, x: Array, dones: Array, state):
    """`FastWeightLayer.__call__` with the state reset before every step where `dones`: the
    variant's own program (its `spec.py`) with the resets folded in as decays."""
    projected = layer.in_proj(x)
    splits = jnp.split(projected, np.cumsum([size for _, size in layer.pieces])[:-1].tolist(), axis=-1)
    p = {piece: part for (piece, _), part in zip(layer.pieces, splits)}
    q, k, v = layer.feature_map(p["q"]), layer.feature_map(p["k"]), p["v"]
    g = _reset_log_decay(dones, layer.num_heads)
    chunk_size = chunking.check_chunk_size(layer.variant, layer.config.chunk_size)
    if layer.variant == "linear_transformer":
        out, state = _sum_rule_with_decay(q, k, v, g, state, chunk_size, normalize=layer.config.normalize)
    else:
        beta = jax.nn.sigmoid(p["beta"][..., 0])
        if layer.variant == "gated_delta_net":   # its own decay (gated_delta_net/spec.py), times the reset
            slow = {n: w[...].reshape(1, 1, -1) for n, w in layer.slow.items()}
            g = g - jnp.exp(slow["A_log"]) * jax.nn.softplus(p["a"][..., 0] + slow["dt_bias"])
        out, final = gated_api.gated_delta_net(q, k, v, beta, g, initial_state=gated_reference.State(state.W),
                                               implementation="chunked", chunk_size=chunk_size)
        state = type(state)(W=final.W)
    if layer.config.output_scale:
        out = out * jnp.asarray(layer.head_dim ** -0.5, out.dtype)
    if layer.inner_dropout is not None:
        out = layer.inner_dropout(out)
    return layer.out_proj(out), state


def _sum_rule_with_decay(q: Array, k: Array, v: Array, g: Array, state, chunk_size: int, *,
                         normalize: bool, eps: float = 1e-5):
    """The linear Transformer (`W_t = exp(g_t) W_{t-1} + k_t v_t^T`, `z_t = exp(g_t) z_{t-1} +
    k_t`, `o_t = W_t^T q_t`, optionally `/ (z_t . q_t + eps)`) in chunked form: the gated rule's
    algebra (`gated_delta_net/chunked.py`) without the delta correction. `z` rides along as
    an extra value column of ones, so `W` and `z` share one decayed state.
    Shapes: `q, k [B, T, H, K]`, `v [B, T, H, V]`, `g [B, T, H]`; `state` the linear
    Transformer's `State(W [B, H, K, V], z [B, H, K])`."""
    T, V = q.shape[1], v.shape[-1]
    c = min(chunk_size, T)
    v_aug = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], axis=-1)
    s_aug = jnp.concatenate([state.W, state.z[..., None]], axis=-1)
    qc, kc, vc = (chunking.to_chunks(x, c) for x in (q, k, v_aug))             # [N, B, H, C, .]
    gc = chunking.to_chunks(g[..., None], c)[..., 0]                           # [N, B, H, C]
    decay, from_start = chunk_decays(gc)
    attn = chunking.causal_scores(qc, kc) * decay
    o, s_aug = chunking.chunk_scan(from_start[..., None] * qc, decay[..., -1, :, None] * kc, None, vc, attn,
                                   s_aug, from_start[..., -1])
    o = chunking.from_chunks(o, T)
    out = o[..., :V]
    if normalize:
        out = out / (o[..., V:] + eps)
    return out, type(state)(W=s_aug[..., :V], z=s_aug[..., V])


__all__ = ["CORES", "TORSOS", "Agent", "AgentConfig", "AgentOutput", "DeepTorso", "NatureTorso", "SmallTorso",
           "core_config_for", "max_pool_3x3_s2", "pooled_size"]
