"""Training memory (forward + backward) against sequence length for delta_net and delta_rnn:
each implementation next to plain autodiff through `lax.scan` (which stores every d x d state).

    python -m benchmarks.bench_memory [--times 1024,4096,16384]

Memory is XLA's peak temporary buffer size of the compiled gradient (no run needed, so it is
exact and repeatable). Writes benchmarks/results/memory_<platform>.json.
"""

from __future__ import annotations

import argparse

import jax

from benchmarks.common import (forward_fn, loss_fn, machine, paper_options, print_table, runnable_forms,
                               temp_memory_mb, write_json)
from fastweights.testing import example_inputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", default="1024,4096,16384")
    parser.add_argument("--variants", default="delta_net,delta_rnn")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    a = parser.parse_args(argv)
    times = [int(t) for t in a.times.split(",")]
    print(f"machine: {machine()}, jax {jax.__version__}; B{a.batch} H{a.heads} d{a.dim}, float32\n")
    rows = []
    for name in a.variants.split(","):
        for impl in (*runnable_forms(name), "scan_autodiff"):
            row = dict(variant=name, impl=impl)
            for t in times:
                args, kwargs = example_inputs(name, 0, batch=a.batch, time=t, heads=a.heads, key_dim=a.dim,
                                              value_dim=a.dim, **paper_options(name))
                inputs_mb = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(args)) / 2 ** 20
                train = jax.jit(jax.grad(loss_fn(forward_fn(name, impl, kwargs))))
                row[f"T{t}_mb"] = round(temp_memory_mb(train, args), 1)
                row[f"T{t}_x_inputs"] = round(row[f"T{t}_mb"] / inputs_mb, 2)
            row["growth"] = f"{row[f'T{times[-1]}_mb'] / row[f'T{times[0]}_mb']:.1f}x for {times[-1] // times[0]}x T"
            rows.append(row)
    print_table(rows, list(rows[0]))
    path = write_json(f"memory_{jax.devices()[0].platform}", dict(machine=machine(), jax=jax.__version__, rows=rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
