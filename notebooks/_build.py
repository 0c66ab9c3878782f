"""Pairs and executes the notebooks: each `NN_name.py` (jupytext py:percent, the source of
truth) is written to `NN_name.ipynb` and executed there with nbclient, so that the
committed `.ipynb` carries the outputs of a run.

    python notebooks/_build.py                      # every notebook, full (QUICK = False)
    python notebooks/_build.py 02_fast_weights_made_visible --quick

The cell tagged `skip-execution` (the Colab install cell) is not run here: this checkout's
package is used. With `--quick` the parameters cell's `QUICK = False` becomes `QUICK = True`
for the run only (the written source keeps False).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent
SKIP_TAG, PARAMETERS_TAG = "skip-execution", "parameters"


def notebooks() -> list[Path]:
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def build(source: Path, *, quick: bool = False, timeout: int = 1800) -> Path:
    notebook = jupytext.read(source)
    run = nbformat.from_dict(notebook)            # the copy that runs
    skipped = []
    for i, cell in enumerate(run.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and SKIP_TAG in tags:
            skipped.append(i)
            cell.source = "# (the install cell: not run when building here)"
        if quick and PARAMETERS_TAG in tags:
            cell.source = cell.source.replace("QUICK = False", "QUICK = True", 1)
    start = time.perf_counter()
    NotebookClient(run, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent)}}).execute()
    for i, cell in enumerate(notebook.cells):    # the outputs go into the real sources
        if cell.cell_type == "code" and i not in skipped:
            cell.outputs, cell.execution_count = run.cells[i].outputs, run.cells[i].execution_count
    target = source.with_suffix(".ipynb")
    jupytext.write(notebook, target)
    print(f"{target.name}: {time.perf_counter() - start:.0f} s{' (quick)' if quick else ''}", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook stems (default: all)")
    parser.add_argument("--quick", action="store_true", help="run with QUICK = True")
    args = parser.parse_args(argv)
    chosen = [p for p in notebooks() if not args.names or p.stem in args.names]
    if not chosen:
        print(f"no notebook named {args.names}; have {[p.stem for p in notebooks()]}", file=sys.stderr)
        return 2
    for path in chosen:
        build(path, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
