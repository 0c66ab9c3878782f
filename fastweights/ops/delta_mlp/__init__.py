"""`delta_mlp`: see `reference.py` for the update rule, `api.py` for the public function and
`spec.py` for the description generic code reads (`SPEC`)."""

from fastweights.ops.delta_mlp.api import FORMS, delta_mlp
from fastweights.ops.delta_mlp.reference import State, init_state, recurrent, step
from fastweights.ops.delta_mlp.spec import SPEC

__all__ = ["FORMS", "SPEC", "State", "init_state", "recurrent", "step", "delta_mlp"]
