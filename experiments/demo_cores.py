"""`make run` until the training issues land: every variant's functional core, one pass
(`lax.scan`) against token-by-token streaming through `step`, with timings.

    python -m experiments.demo_cores [--batch 4] [--time 256] [--heads 4] [--dim 16]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from fastweights import registry
from fastweights.testing import example_inputs, step_by_step

def _timed(fn, repeats=3):
    result = jax.block_until_ready(fn())  # compile (or warm up)
    start = time.perf_counter()
    for _ in range(repeats):
        result = jax.block_until_ready(fn())
    return result, (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--time", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=16)
    a = parser.parse_args(argv)
    shape = dict(batch=a.batch, time=a.time, heads=a.heads, key_dim=a.dim, value_dim=a.dim)
    tokens = a.batch * a.time
    print(f"fastweights functional cores on {jax.devices()[0].platform.upper()} "
          f"(jax {jax.__version__}); B={a.batch} T={a.time} H={a.heads} d={a.dim}, float32\n")
    header = f"{'variant':<34}{'state':<14}{'one pass':>11}{'tokens/s':>12}{'step loop':>11}{'max |diff|':>12}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    cases = [(name, dict(options)) for name, variant in registry.VARIANTS.items() if variant.has_core
             for options in variant.cases]
    for name, options in cases:
        variant = registry.get(name)
        args, kwargs = example_inputs(name, 0, **shape, **options)
        fn = variant.fn
        (out, final), t_pass = _timed(lambda: fn(*args, **kwargs, **options))
        zero = jax.tree.map(lambda x: 0 * x, final)
        (step_out, _), t_step = _timed(lambda: step_by_step(name, args, kwargs, zero, **options), 1)
        diff = float(np.max(np.abs(np.asarray(step_out) - np.asarray(out))))
        worst = max(worst, diff)
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        print(f"{label:<34}{','.join(variant.state):<14}{t_pass * 1e3:>9.2f}ms{tokens / t_pass:>12,.0f}"
              f"{t_step * 1e3:>9.1f}ms{diff:>12.2e}", flush=True)
    print(f"\nEvery variant: one pass equals token-by-token streaming (largest difference {worst:.2e}).")
    if worst > 1e-4:
        raise SystemExit("streaming and one pass disagree")


if __name__ == "__main__":
    main()
