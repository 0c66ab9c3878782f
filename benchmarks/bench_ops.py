"""Forward and forward+backward throughput and memory of every variant and implementation,
side by side with plain autodiff through `lax.scan` and a PyTorch CPU loop.

    python -m benchmarks.bench_ops [--shapes small,wt103] [--variants delta_net,...] [--torch PYTHON]

Prints a table and writes benchmarks/results/ops_<platform>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax

from benchmarks.common import (forward_fn, loss_fn, machine, paper_options, print_table, runnable_forms,
                               temp_memory_mb, timed, write_json)
from fastweights import registry
from fastweights.testing import example_inputs

SHAPES = {
    "small": dict(batch=8, heads=8, key_dim=64, value_dim=64, time=512),   # B8 H8 d64 T512
    "wt103": dict(batch=96, heads=8, key_dim=16, value_dim=16, time=256),  # WT103 small layer
}
TORCH_FUNCTIONS = {"delta_net": ("delta_net", "delta_net_chunked"), "delta_rnn": ("delta_rnn",)}


def run_torch(python: str, shape: dict, names, repeats: int):
    script = Path(__file__).parent / "torch_reference.py"
    cmd = [python, str(script), "--batch", str(shape["batch"]), "--time", str(shape["time"]),
           "--heads", str(shape["heads"]), "--dim", str(shape["key_dim"]), "--names", ",".join(names),
           "--repeats", str(repeats)]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"  torch: not run ({error})", file=sys.stderr)
        return []
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="small,wt103")
    parser.add_argument("--variants", default=",".join(registry.names(include_baselines=False)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch", default=str(Path(__file__).parents[1] / ".venv-torch/bin/python"),
                        help="a Python with torch for the PyTorch rows ('' to skip)")
    a = parser.parse_args(argv)
    print(f"machine: {machine()}, jax {jax.__version__}, float32\n")
    rows = []
    for shape_name in a.shapes.split(","):
        shape = SHAPES[shape_name]
        tokens = shape["batch"] * shape["time"]
        print(f"== {shape_name}: B{shape['batch']} H{shape['heads']} d{shape['key_dim']} T{shape['time']}")
        for name in a.variants.split(","):
            args, kwargs = example_inputs(name, 0, **shape, **paper_options(name))
            results = {}
            for impl in (*runnable_forms(name), "scan_autodiff"):
                forward = jax.jit(forward_fn(name, impl, kwargs))
                train = jax.jit(jax.grad(loss_fn(forward_fn(name, impl, kwargs))))
                t_fwd, t_train = timed(forward, args, repeats=a.repeats), timed(train, args, repeats=a.repeats)
                results[impl] = t_train
                rows.append(dict(shape=shape_name, variant=name, impl=impl,
                                 fwd_tok_s=f"{tokens / t_fwd:,.0f}", fwd_bwd_tok_s=f"{tokens / t_train:,.0f}",
                                 fwd_ms=round(t_fwd * 1e3, 2), fwd_bwd_ms=round(t_train * 1e3, 2),
                                 train_mem_mb=round(temp_memory_mb(train, args), 1)))
            base = results["scan_autodiff"]
            for row in rows:
                if row["shape"] == shape_name and row["variant"] == name:
                    row["speedup_vs_scan"] = f"{base / (row['fwd_bwd_ms'] / 1e3):.2f}x"
            print_table([r for r in rows if r["shape"] == shape_name and r["variant"] == name],
                        ["variant", "impl", "fwd_tok_s", "fwd_bwd_tok_s", "fwd_bwd_ms", "train_mem_mb",
                         "speedup_vs_scan"])
            if a.torch and name in TORCH_FUNCTIONS:
                for result in run_torch(a.torch, shape, TORCH_FUNCTIONS[name], a.repeats):
                    row = dict(shape=shape_name, variant=name, impl=result["impl"],
                               fwd_tok_s=f"{tokens / result['fwd_s']:,.0f}",
                               fwd_bwd_tok_s=f"{tokens / result['fwd_bwd_s']:,.0f}",
                               fwd_ms=round(result["fwd_s"] * 1e3, 2),
                               fwd_bwd_ms=round(result["fwd_bwd_s"] * 1e3, 2),
                               speedup_vs_scan=f"{base / result['fwd_bwd_s']:.2f}x",
                               note=f"torch {result['torch']}, {result['threads']} threads")
                    rows.append(row)
                    print_table([row], ["variant", "impl", "fwd_tok_s", "fwd_bwd_tok_s", "fwd_bwd_ms",
                                        "speedup_vs_scan", "note"])
            print()
    path = write_json(f"ops_{jax.devices()[0].platform}", dict(machine=machine(), jax=jax.__version__, rows=rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
