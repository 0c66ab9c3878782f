"""Markdown tables of the latest benchmark results (benchmarks/results/*.json), for BENCHMARKS.md.

    python -m benchmarks.report
"""

from __future__ import annotations

import json

from benchmarks.common import RESULTS


def _table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main():
    ops = json.loads((RESULTS / "ops_cpu.json").read_text())
    print(f"machine: {ops['machine']}, jax {ops['jax']}\n")
    for shape, title in (("small", "B8 H8 d64 T512"), ("wt103", "WT103 small layer: B96 H8 d16 T256")):
        print(f"{title}:\n")
        rows = [r for r in ops["rows"] if r["shape"] == shape]
        print(_table(rows, ["variant", "impl", "fwd_tok_s", "fwd_bwd_tok_s", "fwd_bwd_ms", "train_mem_mb",
                            "speedup_vs_scan"]) + "\n")
    memory = json.loads((RESULTS / "memory_cpu.json").read_text())
    columns = [c for c in memory["rows"][0] if c != "growth"] + ["growth"]
    print(_table(memory["rows"], columns))


if __name__ == "__main__":
    main()
