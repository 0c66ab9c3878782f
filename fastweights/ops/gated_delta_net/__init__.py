"""`gated_delta_net`: see `reference.py` for the update rule, `api.py` for the public function and
`spec.py` for the description generic code reads (`SPEC`)."""

from fastweights.ops.gated_delta_net.api import FORMS, gated_delta_net
from fastweights.ops.gated_delta_net.reference import State, init_state, recurrent, step
from fastweights.ops.gated_delta_net.spec import SPEC

__all__ = ["FORMS", "SPEC", "State", "init_state", "recurrent", "step", "gated_delta_net"]
