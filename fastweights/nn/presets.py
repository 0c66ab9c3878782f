"""The paper's model configurations as named presets, and `build` for any model config.

    >>> from fastweights.nn import presets
    >>> config = presets.get("wt103_small_delta_lstm")
    >>> presets.count_params(config)["non_embedding"]
    12724224

WikiText-103 small (PAPER_SPEC 3.2, the README commands): 16 layers, D=128, 8 heads of 16,
feed-forward 2048, dropout 0.1, pre-LN with the LM code's residual quirk, descending
positional encoding over 256-token segments, adaptive softmax with tied weights,
--skip_attn_normalization. "+ full context": post-LN, no positional encoding, state carried
across segments (by the trainer). WikiText-103 medium (the ICML'21 LMTOOL scripts, not in the
RFWP paper): D=256, 8 heads of 32, 384-token segments, post-LN (those scripts pass no
--pre_lnorm; known for the Transformer and Delta Net, assumed for the rest). Algorithmic tasks (PAPER_SPEC 3.3): 4 layers, D=256,
16 heads of 16, feed-forward x4, dropout 0.1, no positional encoding for the fast-weight
models; set `input_vocab`/`output_size` (and `head="final"` for ListOps) from the task.
Atari (PAPER_SPEC 3.4): the core of the IMPALA agent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
from flax import nnx

from fastweights.nn import models
from fastweights.nn.config import LayerConfig, LMConfig, RLCoreConfig, SequenceConfig

ModelConfig = LMConfig | SequenceConfig | RLCoreConfig

# Paper model -> official LM id. The Delta MLP depth of the main table is not known
# (PAPER_SPEC 3.2); depth 1 is the official default.
_WT103_LAYERS = {
    "transformer": LayerConfig("lm:2"),
    # The LT baseline keeps its normaliser: without it the sum rule is unstable
    # (PAPER_SPEC 2.2). Parameter counts are the same either way.
    "linear_transformer": LayerConfig("lm:34", normalize=True),
    "delta_net": LayerConfig("lm:24"),
    "delta_mlp": LayerConfig("lm:54", depth=1),
    "delta_mlp_depth2": LayerConfig("lm:54", depth=2),
    "delta_delta_net": LayerConfig("lm:64"),
    "delta_rnn": LayerConfig("lm:134"),
    "delta_lstm": LayerConfig("lm:254"),
    "rdn": LayerConfig("lm:934"),
}
_FULL_CONTEXT = ("delta_rnn", "rdn")

# The algorithmic models of the paper, by official --model_type. The LSTM's sizes are not
# in the README (PAPER_SPEC 10); the generic command's 4 x 256 is used, embedding 128.
_ALGORITHMIC_LAYERS = {
    "lstm": LayerConfig("alg:0"), "transformer": LayerConfig("alg:1"),
    "linear_transformer": LayerConfig("alg:8"), "delta_net": LayerConfig("alg:2"),
    "delta_rnn": LayerConfig("alg:3"), "rdn": LayerConfig("alg:7"),
}

_ATARI_LAYERS = {name: LayerConfig(name, convention="rl") for name in
                 ("linear_transformer", "delta_net", "delta_rnn", "recurrent_delta_net")}


def _presets() -> dict[str, ModelConfig]:
    out: dict[str, ModelConfig] = {}
    for name, layer in _WT103_LAYERS.items():
        out[f"wt103_small_{name}"] = LMConfig(layer=layer)
    for name, layer in _WT103_LAYERS.items():
        out[f"wt103_medium_{name}"] = LMConfig(
            layer=dataclasses.replace(layer, window=384), model_dim=256, head_dim=32, wiring="post_ln",
            positional_span=384)
    for name in _FULL_CONTEXT:
        out[f"wt103_small_{name}_full_context"] = LMConfig(
            layer=_WT103_LAYERS[name], wiring="post_ln", positional="none")
    for name, layer in _ALGORITHMIC_LAYERS.items():
        # model 1 is PyTorch's TransformerEncoder: post-LN, final LayerNorm, and always the
        # sinusoidal encoding (main.py never passes use_pos_enc to it).
        transformer = name == "transformer"
        out[f"algorithmic_{name}"] = SequenceConfig(
            layer=layer, wiring="post_ln" if transformer else "pre_ln", final_norm=transformer,
            positional="ascending" if transformer else "none")
    for name, layer in _ATARI_LAYERS.items():
        out[f"atari_{name}"] = RLCoreConfig(layer=layer)
    return out


PRESETS: Mapping[str, ModelConfig] = MappingProxyType(_presets())


def get(name: str, **overrides: Any) -> ModelConfig:
    """The preset `name`, with fields replaced by `overrides`; `ValueError` lists the valid
    names (or fields) when one is unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid: {', '.join(PRESETS)}")
    config = PRESETS[name]
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{type(config).__name__} has no field(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(fields))}")
    return dataclasses.replace(config, **overrides)


def build(config: ModelConfig, *, rngs: nnx.Rngs | int = 0, **kwargs) -> nnx.Module:
    """The model a config describes: `LanguageModel`, `SequenceModel` or `RLCore`."""
    rngs = nnx.Rngs(rngs) if isinstance(rngs, int) else rngs
    cls = {LMConfig: models.LanguageModel, SequenceConfig: models.SequenceModel,
           RLCoreConfig: models.RLCore}.get(type(config))
    if cls is None:
        raise TypeError(f"not a model config: {type(config).__name__}")
    return cls(config, rngs=rngs, **kwargs)


def count_params(config_or_model: ModelConfig | nnx.Module) -> dict[str, int]:
    """`{"total", "embedding", "non_embedding"}` parameter counts, each shared array once.

    For a config the model is built abstractly (`nnx.eval_shape`): nothing is allocated.
    "embedding" is the input embedding plus the output layer (the tied matrix once, its
    bias and the adaptive-softmax cluster parameters), as in PAPER_SPEC 8.1.
    """
    model = config_or_model
    if not isinstance(model, nnx.Module):
        model = nnx.eval_shape(lambda: build(config_or_model))
    sizes = {tuple(str(k) for k in path): math.prod(v.shape)
             for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    embedding = sum(n for path, n in sizes.items() if path[0] in ("embed", "output"))
    total = sum(sizes.values())
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def names() -> tuple[str, ...]:
    return tuple(PRESETS)


def shapes(config: ModelConfig) -> Any:
    """The parameter shapes of the model a config describes (abstract, nothing allocated)."""
    return jax.tree.map(lambda v: v.shape, nnx.state(nnx.eval_shape(lambda: build(config)), nnx.Param))
