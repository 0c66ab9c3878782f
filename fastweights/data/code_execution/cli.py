"""Code-execution command line: `python -m fastweights.data.code_execution --out DIR ...` writes
the official files (see `main`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fastweights.data.code_execution.format import SPLITS
from fastweights.data.code_execution.generator import (PAPER_CODE_LENGTH, PAPER_SEED,
                                                       PAPER_SIZES, write_files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastweights.data.code_execution",
        description="Write the code-execution data set {train,valid,test}_N.{src,tgt}; the "
                    "defaults reproduce the official files byte for byte.")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--num-vars", type=int, default=3, help="number of variables, 1..5")
    parser.add_argument("--code-length", type=int, default=PAPER_CODE_LENGTH,
                        help="statements per program")
    for split in SPLITS:
        parser.add_argument(f"--{split}-size", type=int, default=PAPER_SIZES[split],
                            help=f"programs generated for {split} (the last one is not written "
                                 "unless --keep-last)")
    parser.add_argument("--seed", type=int, default=PAPER_SEED)
    parser.add_argument("--keep-last", action="store_true",
                        help="also write the last program of each split (the official script "
                             "drops it)")
    parser.add_argument("--append", action="store_true",
                        help="append to existing files, as the official script does")
    args = parser.parse_args(argv)

    tty = sys.stderr.isatty()

    def progress(split: str, done: int, total: int) -> None:
        end = "\n" if done == total or not tty else ""
        print(f"\r{split}_{args.num_vars}: {done}/{total} programs", end=end, file=sys.stderr,
              flush=True)

    try:
        paths = write_files(args.out, args.num_vars, code_length=args.code_length,
                            train_size=args.train_size, valid_size=args.valid_size,
                            test_size=args.test_size, seed=args.seed,
                            drop_last=not args.keep_last, append=args.append, progress=progress)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for src, tgt in paths.values():
        print(src)
        print(tgt)
    return 0
