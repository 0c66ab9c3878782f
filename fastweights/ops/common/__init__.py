"""Pieces shared by every variant: feature maps, fast-weight primitives, sequence plumbing."""

from fastweights.ops.common.fast_weight import delta_update, outer, read, sum_update
from fastweights.ops.common.feature_maps import (
    dpfp,
    elu_p1,
    favor_plus,
    favor_plus_projection,
    layer_norm,
    softmax_eps,
    sum_norm,
)

__all__ = [
    "delta_update", "dpfp", "elu_p1", "favor_plus", "favor_plus_projection", "layer_norm",
    "outer", "read", "softmax_eps", "sum_norm", "sum_update",
]
