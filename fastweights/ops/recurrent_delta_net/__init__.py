"""`recurrent_delta_net`: see `reference.py` for the update rule, `api.py` for the public function and
`spec.py` for the description generic code reads (`SPEC`)."""

from fastweights.ops.recurrent_delta_net.api import FORMS, recurrent_delta_net
from fastweights.ops.recurrent_delta_net.reference import (
    Params,
    State,
    init_params,
    init_state,
    recurrent,
    step,
)
from fastweights.ops.recurrent_delta_net.spec import SPEC

__all__ = [
    "FORMS", "SPEC", "Params", "State", "init_params", "init_state", "recurrent",
    "recurrent_delta_net", "step",
]
