"""Command line: train an RL preset (the Sebulba actor-learner loop), with overrides.

    python -m fastweights.rl.train --preset minatar_tiny
    python -m fastweights.rl.train --preset minatar_tiny --set agent.core=lstm --run-dir runs/rl_lstm
    python -m fastweights.rl.train --preset paper_delta_net --set env.game=Pong
    python -m fastweights.rl.train --list

Multi-host: one process per host with `--coordinator HOST:PORT --num-processes N
--process-id I` (or the FASTWEIGHTS_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID variables);
each process steps its own environments. A run resumes from the newest readable checkpoint
in its run directory (`--no-resume` refuses one that has checkpoints).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastweights import training


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastweights.rl.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="minatar_tiny", help="an RL preset (see --list; default minatar_tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. agent.core=lstm (repeatable)")
    p.add_argument("--run-dir", help="where checkpoints and metrics go (default: runs/rl_<preset>)")
    p.add_argument("--no-resume", action="store_true", help="refuse a run directory that has checkpoints")
    p.add_argument("--list", action="store_true", help="list the presets, then exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON, then exit")
    training.add_distributed_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from fastweights.rl import config, loop, presets
    args = parser().parse_args(argv)
    if args.list:
        print("\n".join(presets.PRESETS))
        return 0
    try:
        exp = presets.get(args.preset, args.overrides)
        config.validate(exp)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(training.config_to_dict(exp), indent=2))
        return 0
    training.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    run_dir = args.run_dir or f"runs/rl_{args.preset}"
    training.write_run_info(run_dir, task="rl", preset=args.preset, overrides=args.overrides)
    try:
        result = loop.train(exp, run_dir, resume=not args.no_resume)
    except training.RunDirectoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    c = result["counters"]
    plot = " and returns.png" if (Path(run_dir) / "returns.png").exists() else ""
    training.log(f"done: {c['updates']} updates, {c['frames']} frames, {c['game_episodes']} games; "
                 f"metrics, checkpoints{plot} in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
