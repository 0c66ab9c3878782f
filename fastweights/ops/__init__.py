"""Functional cores: one package per variant, each with the same file roles.

    <variant>/reference.py   State, init_state, step (the definition), recurrent (lax.scan of step)
    <variant>/chunked.py     the chunkwise-parallel form, where the algebra allows
    <variant>/pallas_*.py    Pallas kernels (GPU: Triton, TPU: Mosaic)
    <variant>/api.py         the public function, with `implementation=` (its `FORMS`)
    <variant>/spec.py        `SPEC`: the description generic code reads (`common.spec`)
    common/                  feature maps, fast-weight primitives, sequence plumbing, the spec

`fastweights.ops.delta_net` is the package; the function is `fastweights.ops.delta_net.delta_net`,
re-exported as `fastweights.delta_net`. The variants are listed once, in `fastweights.registry`.
"""

from fastweights.ops import common

__all__ = ["common"]
