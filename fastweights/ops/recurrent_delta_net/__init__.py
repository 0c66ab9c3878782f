"""`recurrent_delta_net`: see `reference.py` for the update rule and `api.py` for the public function."""

from fastweights.ops.recurrent_delta_net.api import IMPLEMENTATIONS, recurrent_delta_net
from fastweights.ops.recurrent_delta_net.reference import (
    Params,
    State,
    init_params,
    init_state,
    recurrent,
    step,
)

__all__ = [
    "IMPLEMENTATIONS", "Params", "State", "init_params", "init_state", "recurrent",
    "recurrent_delta_net", "step",
]
