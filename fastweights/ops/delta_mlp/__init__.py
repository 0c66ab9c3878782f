"""`delta_mlp`: see `reference.py` for the update rule and `api.py` for the public function."""

from fastweights.ops.delta_mlp.api import IMPLEMENTATIONS, delta_mlp
from fastweights.ops.delta_mlp.reference import State, init_state, recurrent, step

__all__ = ["IMPLEMENTATIONS", "State", "init_state", "recurrent", "step", "delta_mlp"]
