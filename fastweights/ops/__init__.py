"""Functional cores: one package per variant, each with the same file roles.

    <variant>/reference.py   State, init_state, step (the definition), recurrent (lax.scan of step)
    <variant>/api.py         the public function, with `implementation=`
    common/                  feature maps, fast-weight primitives, sequence plumbing

`fastweights.ops.delta_net` is the package; the function is `fastweights.ops.delta_net.delta_net`,
re-exported as `fastweights.delta_net`.
"""

from fastweights.ops import (
    common,
    delta_delta_net,
    delta_lstm,
    delta_mlp,
    delta_net,
    delta_rnn,
    linear_transformer,
    recurrent_delta_net,
)

VARIANT_PACKAGES = {
    "linear_transformer": linear_transformer,
    "delta_net": delta_net,
    "delta_mlp": delta_mlp,
    "delta_delta_net": delta_delta_net,
    "delta_rnn": delta_rnn,
    "delta_lstm": delta_lstm,
    "recurrent_delta_net": recurrent_delta_net,
}

__all__ = ["VARIANT_PACKAGES", "common", *VARIANT_PACKAGES]
