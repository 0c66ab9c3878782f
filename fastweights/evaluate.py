"""Command line: the perplexity of a trained language model, by the paper's protocols.

    python -m fastweights.evaluate RUN_DIR                        # the run's paper protocol, test split
    python -m fastweights.evaluate RUN_DIR --protocol sliding_window --stride 32   # fast, approximate
    python -m fastweights.evaluate RUN_DIR --protocol all --split valid

Protocols (PAPER_SPEC 6; `fastweights.lm.evaluation`):
  sliding_window  every token scored with a full `tgt_len`-token window that starts from a zero
                  state (the paper's number for limited-context models); batched over windows,
                  `--stride S` scores the last S tokens of each window (the paper is S=1).
  full_context    the split as one stream, the state carried across `tgt_len`-token segments
                  (the paper's number for "+ full context" models).
  segments        non-overlapping segments of `eval_batch_size` streams: what the training loop
                  logs (for checkpoint selection only).
The default is the run's paper protocol: full_context for an `lm_full_context` run, else
sliding_window. Each result is printed and written to RUN_DIR/eval_<split>_<protocol>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastweights import lm, presets
from fastweights.tasks import language_modelling

PROTOCOLS = ("sliding_window", "full_context", "segments")


def paper_protocol(exp) -> str:
    return "full_context" if exp.task == language_modelling.FULL_CONTEXT.name else "sliding_window"


def evaluate(exp, model, protocol: str, split: str = "test", *, stride: int = 1, batch_size: int = 64,
             progress: bool = True) -> dict[str, Any]:
    """The perplexity of `model` (trained by the LM experiment `exp`) on `split` by `protocol`;
    the window and segment lengths are the experiment's `tgt_len` (eval: `eval_tgt_len`)."""
    if exp.task not in (language_modelling.TASK.name, language_modelling.FULL_CONTEXT.name):
        raise ValueError(f"{exp.task!r} is not a language-modelling run")
    tokens = language_modelling.load_corpus(exp.data).splits[split]
    data = exp.data
    if protocol == "sliding_window":
        result = lm.sliding_window(model, tokens, window=data.tgt_len, stride=stride, batch_size=batch_size,
                                   progress=progress)
        settings = {"window": data.tgt_len, "stride": stride, "batch_size": batch_size}
    elif protocol == "full_context":
        result = lm.full_context(model, tokens, segment=data.tgt_len, progress=progress)
        settings = {"segment": data.tgt_len}
    elif protocol == "segments":
        result = lm.segments(model, tokens, batch_size=data.eval_batch_size, segment=data.eval_tgt_len,
                             progress=progress)
        settings = {"segment": data.eval_tgt_len, "batch_size": data.eval_batch_size}
    else:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    return dict(result, protocol=protocol, split=split, corpus=data.corpus, **settings)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastweights.evaluate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a language-modelling run directory (python -m fastweights.train --task lm ...)")
    p.add_argument("--protocol", choices=PROTOCOLS + ("all",), help="default: the run's paper protocol")
    p.add_argument("--split", default="test", choices=language_modelling.SPLITS)
    p.add_argument("--stride", type=int, default=1, help="sliding_window: tokens scored per window (paper: 1)")
    p.add_argument("--batch-size", type=int, default=64, help="sliding_window: windows per call")
    p.add_argument("--latest", action="store_true", help="the newest checkpoint instead of the best-validation one")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        exp, model, step = presets.load_run(args.run_dir, best=not args.latest)
        protocols = PROTOCOLS if args.protocol == "all" else (args.protocol or paper_protocol(exp),)
        for protocol in protocols:
            result = evaluate(exp, model, protocol, args.split, stride=args.stride, batch_size=args.batch_size)
            result["step"] = step
            out = Path(args.run_dir) / f"eval_{args.split}_{protocol}.json"
            out.write_text(json.dumps(result, indent=1))
            print(f"{protocol} perplexity on {args.split} (checkpoint step {step}): {result['perplexity']:.2f} "
                  f"({result['tokens']} tokens, {result['tokens_per_s']:.0f} tokens/s) -> {out}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
