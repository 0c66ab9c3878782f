"""`delta_rnn`: see `reference.py` for the update rule and `api.py` for the public function."""

from fastweights.ops.delta_rnn.api import IMPLEMENTATIONS, delta_rnn
from fastweights.ops.delta_rnn.reference import State, init_state, recurrent, step

__all__ = ["IMPLEMENTATIONS", "State", "init_state", "recurrent", "step", "delta_rnn"]
