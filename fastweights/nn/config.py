"""Frozen configuration dataclasses of layers and models.

`LayerConfig` describes the sequence-mixing sublayer (a fast-weight variant, the softmax
Transformer or the LSTM). Its `None` fields mean "what the official code of `convention`
does for this variant" (PAPER_SPEC 2 and 9); `resolve_layer` fills them in, so that a
config states only what differs from the paper.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastweights import registry

# The three official code bases differ in small ways for the same variant (PAPER_SPEC 2, 9.3/9.5).
CONVENTIONS = ("lm", "algorithmic", "rl")
FEATURE_MAPS = ("elu_p1", "dpfp", "softmax")


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """The sequence-mixing sublayer.

    Attributes:
      variant: a canonical name, paper name or official id (`fastweights.registry`);
        an official id implies its options (e.g. `lm:124` is `delta_rnn` version 1).
      convention: "lm", "algorithmic" or "rl": whose defaults fill the `None` fields
        (None: "algorithmic" for an `alg:N` id, else "lm").
      version: Delta RNN 1-2 / Delta LSTM 1-4 (None: 2 / 4, the paper's main table).
      feature_map: of queries and keys, one of `FEATURE_MAPS` (None: the variant's default:
        softmax for Delta RNN v1 and the RL Delta RNN, else elu_p1; the RDN has none).
      sum_norm: sum-normalise queries and keys after the feature map (None: every delta
        variant, and the linear Transformer only under the RL convention).
      sum_norm_eps: epsilon of that normalisation (None: 0 in LM/algorithmic, 1e-5 in RL,
        1e-5 always for the Delta MLP and Delta Delta Net).
      output_scale: multiply the heads' output by 1/sqrt(head_dim) (None: the LM code's
        choice per variant, never in the algorithmic and RL code).
      normalize: the linear Transformer's `/(z.q + 1e-5)` normaliser (None: off; the
        official LM runs use --skip_attn_normalization).
      dpfp_nu: rolls of the DPFP feature map (official train.py default 2).
      depth, fast_hidden: Delta MLP fast-net depth and per-head hidden width (None: 4*D/H).
      window: attention span of the softmax Transformer (its streaming cache size).
      implementation, chunk_size: passed to the functional core (`None`: the fastest).
    """
    variant: str = "delta_net"
    convention: str | None = None
    version: int | None = None
    feature_map: str | None = None
    sum_norm: bool | None = None
    sum_norm_eps: float | None = None
    output_scale: bool | None = None
    normalize: bool | None = None
    dpfp_nu: int = 2
    depth: int = 1
    fast_hidden: int | None = None
    window: int = 256
    implementation: str | None = None
    chunk_size: int | None = None


def resolve_layer(config: LayerConfig) -> tuple[str, dict[str, Any]]:
    """`(canonical variant name, every option filled in)` from the variant's
    `SPEC.layer` defaults; raises `ValueError` for an unknown variant, convention or
    feature map, or an option the variant does not have."""
    variant, implied = registry.resolve(config.variant)
    name = variant.name
    convention = config.convention
    if convention is None:
        convention = "algorithmic" if registry._normalise(config.variant).startswith("alg:") else "lm"
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    options["convention"] = convention
    for key, value in implied.items():
        if key not in options:
            raise ValueError(f"{config.variant!r} implies {key}={value!r}, which the layer does not "
                             f"provide (official ids with a layer: {_layer_ids()})")
        if options[key] is None:
            options[key] = value
    options.pop("variant")
    options["version"] = _version(variant, options["version"])
    _check_own_options(variant, options)
    options["normalize"] = bool(options["normalize"])
    defaults = variant.layer.defaults(convention, options["version"]) if variant.layer else {}
    raw = variant.layer is not None and defaults["feature_map"] is None
    if raw:  # raw queries and keys (the RDN's softmaxes come later)
        if options["feature_map"] is not None or options["sum_norm"]:
            raise ValueError(f"{name} takes raw queries and keys: it has no feature_map or sum_norm")
    elif options["feature_map"] not in (None, *FEATURE_MAPS):
        raise ValueError(f"unknown feature_map {options['feature_map']!r}; valid: {', '.join(FEATURE_MAPS)}")
    if variant.layer is None:  # a baseline: the block builds its own mixer from `window`
        return name, options
    if options["feature_map"] is None and not raw:
        options["feature_map"] = defaults["feature_map"]
    if options["sum_norm"] is None:
        options["sum_norm"] = variant.layer.sum_norm_default(convention, options["feature_map"])
    for key in ("sum_norm_eps", "output_scale"):
        if options[key] is None:
            options[key] = defaults[key]
    return name, options


def _version(variant, version: int | None) -> int | None:
    if not variant.versions:
        if version is not None:
            raise ValueError(f"{variant.name} has no versions (version={version})")
        return None
    version = version or variant.default_version
    if version not in variant.versions:
        listed = (" and ".join(map(str, variant.versions)) if len(variant.versions) == 2
                  else f"{variant.versions[0]}-{variant.versions[-1]}")
        raise ValueError(f"{variant.name} has versions {listed}, got {version}")
    return version


def _check_own_options(variant, options: dict[str, Any]) -> None:
    """A variant-specific field that is off by default (None) must stay off for the others."""
    defaults = {f.name: f.default for f in dataclasses.fields(LayerConfig)}
    owners: dict[str, list[str]] = {}
    for other in registry.VARIANTS.values():
        for field in other.layer.options if other.layer else ():
            owners.setdefault(field, []).append(other.name)
    for field, names in owners.items():
        if defaults[field] is None and options[field] and variant.name not in names:
            raise ValueError(f"{field}= is an option of {', '.join(names)} only, not {variant.name}")


def _layer_ids() -> str:
    fields = {f.name for f in dataclasses.fields(LayerConfig)}
    return ", ".join(a.code for a in registry.ALIASES if ":" in a.code and set(a.options) <= fields)


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Language model (PAPER_SPEC 3.1). Defaults: the WikiText-103 small setting, Delta Net.

    Attributes:
      positional: "descending" (the LM code's concatenated sinusoids counting down to 0 at
        the end of a `positional_span`-token segment) or "none" (`--no_pos`).
      positional_span: see `fastweights.nn.positional.positions`; None counts down over each
        call (the official code for any length, but not streamable).
      output: "adaptive" (adaptive softmax with `cutoffs`) or "softmax".
      tie_weights: share the embedding with the output layer (official: yes).
      tail_capacity: per tail cluster of the adaptive softmax, the fraction of a call's
        positions whose targets may fall in it for its fast path (`AdaptiveSoftmax`; exact
        either way); None: every cluster at every position.
    """
    vocab_size: int = 267_735
    model_dim: int = 128
    num_layers: int = 16
    num_heads: int = 8
    head_dim: int = 16
    ff_dim: int = 2048
    dropout: float = 0.1
    layer: LayerConfig = LayerConfig("delta_net")
    wiring: str = "lm_pre_ln"
    positional: str = "descending"
    positional_span: int | None = 256
    output: str = "adaptive"
    cutoffs: tuple[int, ...] = (20_000, 40_000, 200_000)
    tail_capacity: tuple[float, ...] | None = None
    tie_weights: bool = True
    init: str = "lm"


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """Sequence model of the algorithmic tasks (PAPER_SPEC 3.3). Defaults: the paper's
    4 layers x 256 wide, 16 heads, feed-forward x4, dropout 0.1, no positional encoding.

    Attributes:
      output_size: output vocabulary (code execution) or number of classes (ListOps).
      head: "per_position" (a prediction at every position) or "final" (a classifier at
        the last position of each sequence, `SequenceModel.classify`).
      positional: "ascending" (interleaved sinusoids from position 0) or "none".
      final_norm: a LayerNorm after the last block (PyTorch's `TransformerEncoder`, model 1).
      attention_layout: of the softmax Transformer: "pytorch" (model 1) or "lm".
      embed_dim: embedding width of the LSTM baseline (`LSTMModel`); the others use model_dim.
    """
    input_vocab: int = 32
    output_size: int = 32
    model_dim: int = 256
    num_layers: int = 4
    num_heads: int = 16
    head_dim: int = 16
    ff_dim: int = 1024
    dropout: float = 0.1
    layer: LayerConfig = LayerConfig("alg:2")
    wiring: str = "pre_ln"
    positional: str = "none"
    head: str = "per_position"
    final_norm: bool = False
    attention_layout: str = "pytorch"
    embed_dim: int = 128
    init: str = "pytorch"


@dataclasses.dataclass(frozen=True)
class RLCoreConfig:
    """The Atari agent's core (PAPER_SPEC 3.4): `Linear(input_dim, D)` then pre-LN blocks.

    Attributes:
      truncate_state_gradient: stop gradients through the state carried into each step
        (the official kernels return none, so the RL agents learn with 1-step truncation).
    """
    input_dim: int = 257
    model_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    head_dim: int = 32
    ff_dim: int = 512
    dropout: float = 0.0
    layer: LayerConfig = LayerConfig("delta_net", convention="rl")
    truncate_state_gradient: bool = True
    init: str = "pytorch"
