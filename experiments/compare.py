"""Several presets of one task trained one after the other, then compared: a table of their
test accuracies (best validation checkpoint) and one PNG of their learning curves.

    python -m experiments.compare --task code_execution \\
        --presets small_linear_transformer,small_delta_net,small_delta_rnn --out runs/make_run

This is `make run`: the paper's finding on code execution is that recurrence helps (Delta
RNN above Delta Net above the Linear Transformer); the last line says whether this run
shows that ordering.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from fastweights import metrics, presets, training

METRIC = {"code_execution": "sequence_accuracy", "listops": "accuracy", "associative_recall": "accuracy"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="code_execution", choices=list(presets.TASKS))
    parser.add_argument("--presets", default="small_linear_transformer,small_delta_net,small_delta_rnn",
                        help="comma-separated presets of the task, in the expected order (worst first)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override applied to every preset (repeatable)")
    parser.add_argument("--out", default="runs/compare", help="folder of the runs (replaced)")
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.presets.split(",") if p.strip()]
    try:
        experiments = {p: presets.get(args.task, p, args.overrides) for p in names}
        for exp in experiments.values():
            presets.validate(exp)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    metric = METRIC[args.task]
    results = {}
    for i, (preset, exp) in enumerate(experiments.items(), 1):
        print(f"[{i}/{len(experiments)}] {args.task} {preset}", file=sys.stderr, flush=True)
        run_dir = out / preset
        training.write_run_info(run_dir, task=args.task, preset=preset, overrides=args.overrides)
        results[preset] = presets.run(exp, run_dir, resume=False)
    curves = {p: out / p / "metrics.jsonl" for p in names}
    metrics.plot_runs(curves, out / "valid_accuracy.png", key=metric, split="valid",
                      title=f"{args.task}: validation {metric.replace('_', ' ')}")
    metrics.plot_runs(curves, out / "train_loss.png", key="loss", split="train", logy=True,
                      title=f"{args.task}: training loss")
    print(f"\n| preset | best valid {metric} | at step | test (best checkpoint) |")
    print("|---|---|---|---|")
    scores = {}
    for preset, result in results.items():
        test = result["test"] or {}
        scores[preset] = test.get(metric, float("nan"))
        extra = ", ".join(f"{k} {v:.3f}" for k, v in test.items() if k not in ("loss",))
        print(f"| {preset} | {result['best']:.3f} | {result['best_step']} | {extra} |")
    ordered = all(scores[a] < scores[b] for a, b in zip(names, names[1:]))
    ranking = " < ".join(f"{p} ({scores[p]:.3f})" for p in sorted(names, key=scores.get))
    print(f"\ntest {metric}: {ranking}")
    print("the expected ordering (" + " < ".join(names) + ") "
          + ("HOLDS in this run." if ordered else "does NOT hold in this run."))
    print(f"curves: {out / 'valid_accuracy.png'}, {out / 'train_loss.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
