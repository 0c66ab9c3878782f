"""ListOps command line: `python -m fastweights.data.listops --out DIR ...` writes the official
files (see `main`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fastweights.data.listops.generator import OPERATORS, SIZES, ListOpsConfig, write_files


def main(argv: Sequence[str] | None = None) -> int:
    d = ListOpsConfig()
    p = argparse.ArgumentParser(
        prog="python -m fastweights.data.listops",
        description="Write ListOps train/valid/test files in the official format "
                    "(the defaults reproduce the paper's data; --only-depth 11 is depth 10, "
                    "16 is depth 15).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--only-depth", type=int, default=d.only_depth,
                   help="deepest leaf level, = operator nesting + 1 (default %(default)s)")
    p.add_argument("--train-size", type=int, default=SIZES["train"])
    p.add_argument("--valid-size", type=int, default=SIZES["valid"])
    p.add_argument("--test-size", type=int, default=SIZES["test"])
    p.add_argument("--operators", default=",".join(d.operators),
                   help=f"comma-separated, from {','.join(OPERATORS)} (default %(default)s)")
    p.add_argument("--max-args", type=int, default=d.max_args)
    p.add_argument("--value-p", type=float, default=d.value_p)
    p.add_argument("--max-depth", type=int, default=d.max_depth)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--append", action="store_true",
                   help="append to existing files (what the official script always does)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    a = p.parse_args(argv)
    try:
        paths = write_files(
            a.out, a.only_depth, train_size=a.train_size, valid_size=a.valid_size,
            test_size=a.test_size, append=a.append, progress=not a.quiet,
            operators=tuple(a.operators.split(",")), max_args=a.max_args, value_p=a.value_p,
            max_depth=a.max_depth, seed=a.seed)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not a.quiet:
        for path in paths.values():
            print(path)
    return 0
