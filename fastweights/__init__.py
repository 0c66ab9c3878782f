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
from fastweights.registry import VARIANTS, Variant, get, resolve

__version__ = "0.1.0"

# One public function per functional core, named after its variant (`fw.delta_net`, ...).
_CORES = {name: variant.fn for name, variant in VARIANTS.items() if variant.has_core}
globals().update(_CORES)

__all__ = sorted([
    "VARIANTS", "Variant", "dpfp", "elu_p1", "favor_plus", "favor_plus_projection", "get", "ops", "registry",
    "resolve", "softmax_eps", "sum_norm", *_CORES,
])
