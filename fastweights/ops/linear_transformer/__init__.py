"""`linear_transformer`: see `reference.py` for the update rule, `api.py` for the public function and
`spec.py` for the description generic code reads (`SPEC`)."""

from fastweights.ops.linear_transformer.api import FORMS, linear_transformer
from fastweights.ops.linear_transformer.reference import State, init_state, recurrent, step
from fastweights.ops.linear_transformer.spec import SPEC

__all__ = ["FORMS", "SPEC", "State", "init_state", "recurrent", "step", "linear_transformer"]
