"""fastweights: fast weight programmers in JAX.

Public API: one function per variant (arrays `[B, T, H, D]`, betas `[B, T, H]`; each returns
`(outputs, final_state)` and takes `initial_state=None` and `implementation=None`), the
feature maps, and the registry of variants.
"""

from fastweights import ops, registry
from fastweights.ops.common.feature_maps import (
    dpfp,
    elu_p1,
    favor_plus,
    favor_plus_projection,
    softmax_eps,
    sum_norm,
)
from fastweights.ops.delta_delta_net import delta_delta_net
from fastweights.ops.delta_lstm import delta_lstm
from fastweights.ops.delta_mlp import delta_mlp
from fastweights.ops.delta_net import delta_net
from fastweights.ops.delta_rnn import delta_rnn
from fastweights.ops.linear_transformer import linear_transformer
from fastweights.ops.recurrent_delta_net import recurrent_delta_net
from fastweights.registry import VARIANTS, Variant, get, resolve

__version__ = "0.1.0"

__all__ = [
    "VARIANTS", "Variant", "delta_delta_net", "delta_lstm", "delta_mlp", "delta_net", "delta_rnn",
    "dpfp", "elu_p1", "favor_plus", "favor_plus_projection", "get", "linear_transformer", "ops",
    "recurrent_delta_net", "registry", "resolve", "softmax_eps", "sum_norm",
]
