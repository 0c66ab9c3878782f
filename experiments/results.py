"""Our algorithmic-task accuracies beside the paper's (PAPER_SPEC 8.2).

    python -m experiments.results [RUN_DIR ...]         # default: every run under runs/

The task and preset of a run come from its `run.json` (written by the CLI and by
`experiments.compare`), else from a directory name `<task>_<preset>`. The test accuracy of
the best validation checkpoint is read from `metrics.jsonl` (split "test").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastweights.metrics import read_jsonl

# PAPER_SPEC 8.2 (test accuracy %; "?" where the paper's number is not known here; values
# marked ~ are from secondary sources and need checking against the PDF).
PAPER = {
    "lstm": {"code 3 vars": "99.0~", "code 5 vars": "93.2~", "listops d10": "88.5~", "listops d15": "24.4~"},
    "transformer": {"code 3 vars": "?", "code 5 vars": "?", "listops d10": "?", "listops d15": "?"},
    "linear_transformer": {"code 3 vars": "fails~", "code 5 vars": "?", "listops d10": "?", "listops d15": "?"},
    "delta_net": {"code 3 vars": "90.7~", "code 5 vars": "61.4~", "listops d10": "85.7~", "listops d15": "77.6~"},
    "delta_rnn": {"code 3 vars": "92.6?", "code 5 vars": "85.1~", "listops d10": "?", "listops d15": "?"},
    "rdn": {"code 3 vars": "?", "code 5 vars": "?", "listops d10": "83.6?", "listops d15": "79.2~"},
}
_COLUMN = {("code_execution", "3vars"): "code 3 vars", ("code_execution", "5vars"): "code 5 vars",
           ("listops", "depth10"): "listops d10", ("listops", "depth15"): "listops d15"}
METRIC = {"code_execution": "sequence_accuracy", "listops": "accuracy"}


def describe(run_dir: Path) -> tuple[str, str] | None:
    """`(task, preset)` of a run directory, or None."""
    info = run_dir / "run.json"
    if info.exists():
        data = json.loads(info.read_text())
        return data["task"], data["preset"]
    for task in METRIC:
        if run_dir.name.startswith(task + "_"):
            return task, run_dir.name[len(task) + 1:]
    return None


def test_accuracy(run_dir: Path, task: str) -> float | None:
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "test"]
    return 100.0 * rows[-1][METRIC[task]] if rows else None


def table(run_dirs: list[Path]) -> str:
    lines = ["| run | task | model | setting | ours (test %) | paper (test %) |", "|---|---|---|---|---|---|"]
    for run_dir in run_dirs:
        found = describe(run_dir)
        if found is None or not (run_dir / "metrics.jsonl").exists():
            continue
        task, preset = found
        parts = preset.split("_", 2)   # paper_3vars_delta_net / small_delta_net
        setting, model = (parts[1], parts[2]) if parts[0] == "paper" else (parts[0], "_".join(parts[1:]))
        column = _COLUMN.get((task, setting))
        paper = PAPER.get(model, {}).get(column, "-") if column else "- (not a paper setting)"
        ours = test_accuracy(run_dir, task)
        lines.append(f"| {run_dir.name} | {task} | {model} | {setting} | "
                     f"{'-' if ours is None else f'{ours:.1f}'} | {paper} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="run directories (default: every one under runs/)")
    args = parser.parse_args(argv)
    runs = [Path(r) for r in args.runs] or sorted(p for p in Path("runs").glob("*") if p.is_dir())
    if not runs:
        print("no runs found (train with `python -m fastweights.train` or `make run` first)", file=sys.stderr)
        return 1
    print(table(runs))
    print("\n~: secondary source, to be checked against the paper's PDF; ?: not known here.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
