"""The explicit table of variants (one row each: its package's `SPEC`) and the official ids.

    >>> import fastweights as fw
    >>> fw.get("delta_rnn").forms
    ('pallas_gpu_sequential', 'pallas_tpu_sequential', 'recurrent')
    >>> variant, options = fw.resolve("attn_type=134")   # official LM id
    >>> variant.name, options
    ('delta_rnn', {'version': 2})

Official ids are written `lm:N` (LM `--attn_type N`; also `attn_type=N`) and `alg:N`
(algorithmic `--model_type N`; also `model_type=N`). A bare number is accepted when only one
of the two codes has it; 2 is refused as ambiguous (the Transformer in the LM code, the
Delta Net in the algorithmic code).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fastweights.ops import (delta_delta_net, delta_lstm, delta_mlp, delta_net, delta_rnn, gated_delta_net,
                             linear_transformer, recurrent_delta_net)
from fastweights.ops.common.spec import VariantSpec

FAMILIES = {
    "sum": "sum update rule; chunkwise-parallel algebra applies",
    "delta": "delta update rule, feed-forward fast net; chunkwise-parallel algebra applies",
    "recurrent": "recurrent fast net or slow net: the previous output passes through a "
                 "nonlinearity, so the sequence loop is inherently sequential",
    "baseline": "non-fast-weight baseline, provided as a layer (not a functional core)",
}


@dataclasses.dataclass(frozen=True)
class Alias:
    """An official id (or another name) for a variant with the options it implies."""
    code: str                                   # "lm:134", "alg:3", "rdn", ...
    variant: str                                # canonical variant name
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    note: str = ""


# The variant description; the table's rows are the `SPEC` of each `fastweights.ops` package.
Variant = VariantSpec

_ROWS: tuple[Variant, ...] = (
    linear_transformer.SPEC,
    delta_net.SPEC,
    delta_mlp.SPEC,
    delta_delta_net.SPEC,
    delta_rnn.SPEC,
    delta_lstm.SPEC,
    recurrent_delta_net.SPEC,
    gated_delta_net.SPEC,           # beyond the paper: Yang, Kautz and Hatamizadeh, ICLR 2025
    Variant("transformer", "Transformer", "baseline", "causal softmax attention (layer baseline)"),
    Variant("lstm", "LSTM", "baseline", "LSTM (layer baseline)"),
)

_OFFICIAL_LM = "official LM --attn_type"
_OFFICIAL_ALG = "official algorithmic --model_type"

# Every official id of the paper's models (PAPER_SPEC 2, table "ID map"), plus short names.
ALIASES: tuple[Alias, ...] = (
    Alias("lm:2", "transformer", note=f"{_OFFICIAL_LM} 2 (Transformer-XL MultiHeadAttn)"),
    Alias("lm:4", "linear_transformer", {"normalize": True, "queries_from_raw_input": True},
          f"{_OFFICIAL_LM} 4: pure-PyTorch quadratic form, queries from the un-normalised input"),
    Alias("lm:34", "linear_transformer", {"normalize": True},
          f"{_OFFICIAL_LM} 34: CUDA sum-rule kernel (normalised unless --skip_attn_normalization)"),
    Alias("lm:24", "delta_net", {"feature_map": "elu_p1"}, f"{_OFFICIAL_LM} 24"),
    Alias("lm:26", "delta_net", {"feature_map": "dpfp"}, f"{_OFFICIAL_LM} 26: delta rule with DPFP"),
    Alias("lm:54", "delta_mlp", {}, f"{_OFFICIAL_LM} 54 (+ --fast_net_depth)"),
    Alias("lm:64", "delta_delta_net", {}, f"{_OFFICIAL_LM} 64"),
    Alias("lm:124", "delta_rnn", {"version": 1}, f"{_OFFICIAL_LM} 124 (Delta RNN v1)"),
    Alias("lm:134", "delta_rnn", {"version": 2}, f"{_OFFICIAL_LM} 134 (the paper's Delta RNN)"),
    Alias("lm:224", "delta_lstm", {"version": 1}, f"{_OFFICIAL_LM} 224 (Delta LSTM v1)"),
    Alias("lm:234", "delta_lstm", {"version": 2}, f"{_OFFICIAL_LM} 234 (Delta LSTM v2)"),
    Alias("lm:244", "delta_lstm", {"version": 3}, f"{_OFFICIAL_LM} 244 (Delta LSTM v3)"),
    Alias("lm:254", "delta_lstm", {"version": 4}, f"{_OFFICIAL_LM} 254 (the paper's Delta LSTM)"),
    Alias("lm:934", "recurrent_delta_net", {}, f"{_OFFICIAL_LM} 934"),
    Alias("alg:0", "lstm", {}, f"{_OFFICIAL_ALG} 0"),
    Alias("alg:1", "transformer", {}, f"{_OFFICIAL_ALG} 1 (PyTorch TransformerEncoder, post-LN)"),
    Alias("alg:2", "delta_net", {}, f"{_OFFICIAL_ALG} 2"),
    Alias("alg:3", "delta_rnn", {"version": 2}, f"{_OFFICIAL_ALG} 3"),
    Alias("alg:7", "recurrent_delta_net", {}, f"{_OFFICIAL_ALG} 7"),
    Alias("alg:8", "linear_transformer", {"normalize": False}, f"{_OFFICIAL_ALG} 8 (no normaliser)"),
    Alias("rdn", "recurrent_delta_net"),
    Alias("linear_attention", "linear_transformer"),
    Alias("softmax_transformer", "transformer"),
)

VARIANTS: Mapping[str, Variant] = MappingProxyType({
    v.name: dataclasses.replace(v, aliases=tuple(a for a in ALIASES if a.variant == v.name)) for v in _ROWS})
_ALIAS_BY_CODE = {a.code: a for a in ALIASES}
_OFFICIAL_ID = re.compile(r"(?:--)?(lm|attn_type|alg|algorithmic|model_type)\s*[:=\s]\s*(\d+)")


def _normalise(name: str | int) -> str:
    text = str(name).strip().lower()
    match = _OFFICIAL_ID.fullmatch(text)
    if match:
        prefix = "lm" if match[1] in ("lm", "attn_type") else "alg"
        return f"{prefix}:{int(match[2])}"
    return re.sub(r"[\s\-]+", "_", text)


def _valid_names() -> str:
    return (f"variants: {', '.join(VARIANTS)}; official ids: "
            f"{', '.join(a.code for a in ALIASES if ':' in a.code)}; "
            f"other aliases: {', '.join(a.code for a in ALIASES if ':' not in a.code)}")


def resolve(name: str | int) -> tuple[Variant, dict[str, Any]]:
    """Returns `(variant, options)` for a canonical name, paper name or official id.

    `options` are the settings the official id implies (for example `{"version": 1}` for
    `lm:124`); empty for a canonical name. Raises `ValueError` listing the valid names.
    """
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise TypeError(f"variant name must be a string or an official id, got {type(name).__name__}")
    key = _normalise(name)
    if key.isdigit():
        matches = [code for code in (f"lm:{int(key)}", f"alg:{int(key)}") if code in _ALIAS_BY_CODE]
        if len(matches) == 1:
            key = matches[0]
        elif len(matches) == 2:
            raise ValueError(f"official id {key} is ambiguous: write 'lm:{key}' (LM --attn_type) "
                             f"or 'alg:{key}' (algorithmic --model_type). Valid {_valid_names()}")
    if key in VARIANTS:
        return VARIANTS[key], {}
    if key in _ALIAS_BY_CODE:
        alias = _ALIAS_BY_CODE[key]
        return VARIANTS[alias.variant], dict(alias.options)
    raise ValueError(f"unknown variant {name!r}. Valid {_valid_names()}")


def get(name: str | int) -> Variant:
    """The `Variant` for a canonical name, paper name or official id (see `resolve`)."""
    return resolve(name)[0]


def names(*, include_baselines: bool = True) -> tuple[str, ...]:
    """Canonical variant names, in table order."""
    return tuple(n for n, v in VARIANTS.items() if include_baselines or v.has_core)
