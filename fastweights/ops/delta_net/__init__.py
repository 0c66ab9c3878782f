"""`delta_net`: see `reference.py` for the update rule and `api.py` for the public function."""

from fastweights.ops.delta_net.api import IMPLEMENTATIONS, delta_net
from fastweights.ops.delta_net.reference import State, init_state, recurrent, step

__all__ = ["IMPLEMENTATIONS", "State", "init_state", "recurrent", "step", "delta_net"]
