"""Command line: train a task's preset, with overrides.

    python -m fastweights.train --task associative_recall --preset tiny
    python -m fastweights.train --task associative_recall --preset tiny \\
        --set model.num_layers=2 --set optimizer.learning_rate=3e-3 --run-dir runs/ar
    python -m fastweights.train --list                     # tasks and presets

Multi-host: start one process per host with `--coordinator HOST:PORT --num-processes N
--process-id I` (or the FASTWEIGHTS_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID variables);
each process reads its own shard of every batch. A run resumes from the newest readable
checkpoint in its run directory (`--no-resume` starts over).
"""

from __future__ import annotations

import argparse
import json
import sys

from fastweights import presets, training


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastweights.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="task name (see --list)")
    p.add_argument("--preset", default="tiny", help="the task's preset (default: tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. model.num_layers=2 (repeatable)")
    p.add_argument("--run-dir", help="where checkpoints and metrics go (default: runs/<task>_<preset>)")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in the run directory")
    p.add_argument("--list", action="store_true", help="list tasks and presets, then exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON, then exit")
    training.add_distributed_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for name in presets.TASKS:
            print(f"{name}: {', '.join(presets.names(name))}")
        return 0
    if not args.task:
        parser().error(f"--task is required; valid: {', '.join(presets.TASKS)}")
    try:
        exp = presets.get(args.task, args.preset, args.overrides)
        presets.validate(exp)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(training.config_to_dict(exp), indent=2))
        return 0
    training.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    run_dir = args.run_dir or f"runs/{args.task}_{args.preset}"
    training.write_run_info(run_dir, task=args.task, preset=args.preset, overrides=args.overrides)
    try:
        result = presets.run(exp, run_dir, resume=not args.no_resume)
    except training.RunDirectoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    training.log(f"done: last loss {result['last'].get('loss', float('nan')):.4f}, best "
                 f"{exp.train.best_metric} {result['best']} at step {result['best_step']}; "
                 f"metrics, checkpoints and learning_curves.png in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
