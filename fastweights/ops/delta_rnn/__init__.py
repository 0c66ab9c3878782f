"""`delta_rnn`: see `reference.py` for the update rule, `api.py` for the public function and
`spec.py` for the description generic code reads (`SPEC`)."""

from fastweights.ops.delta_rnn.api import FORMS, delta_rnn
from fastweights.ops.delta_rnn.reference import State, init_state, recurrent, step
from fastweights.ops.delta_rnn.spec import SPEC

__all__ = ["FORMS", "SPEC", "State", "init_state", "recurrent", "step", "delta_rnn"]
