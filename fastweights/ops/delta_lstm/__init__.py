"""`delta_lstm`: see `reference.py` for the update rule, `api.py` for the public function and
`spec.py` for the description generic code reads (`SPEC`)."""

from fastweights.ops.delta_lstm.api import FORMS, delta_lstm
from fastweights.ops.delta_lstm.reference import State, init_state, recurrent, step
from fastweights.ops.delta_lstm.spec import SPEC

__all__ = ["FORMS", "SPEC", "State", "init_state", "recurrent", "step", "delta_lstm"]
