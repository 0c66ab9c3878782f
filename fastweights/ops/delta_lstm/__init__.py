"""`delta_lstm`: see `reference.py` for the update rule and `api.py` for the public function."""

from fastweights.ops.delta_lstm.api import IMPLEMENTATIONS, delta_lstm
from fastweights.ops.delta_lstm.reference import State, init_state, recurrent, step

__all__ = ["IMPLEMENTATIONS", "State", "init_state", "recurrent", "step", "delta_lstm"]
