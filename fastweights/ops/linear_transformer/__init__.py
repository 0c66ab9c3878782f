"""`linear_transformer`: see `reference.py` for the update rule and `api.py` for the public function."""

from fastweights.ops.linear_transformer.api import IMPLEMENTATIONS, linear_transformer
from fastweights.ops.linear_transformer.reference import State, init_state, recurrent, step

__all__ = ["IMPLEMENTATIONS", "State", "init_state", "recurrent", "step", "linear_transformer"]
