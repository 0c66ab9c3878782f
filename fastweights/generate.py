"""Command line: sample text from a trained language model, streamed word by word.

    python -m fastweights.generate RUN_DIR --prompt "To be , or not to be" --tokens 200
    python -m fastweights.generate RUN_DIR --temperature 0.8 --top-k 50 --top-p 0.95 --seed 1

The prompt is words of the corpus (split on whitespace; a word outside the vocabulary is
`<unk>` where the corpus has it); an empty prompt starts after a line end (`<eos>`). The
model state is carried from token to token (`fastweights.lm.stream`), so memory does not
grow with `--tokens`; `<eos>` is printed as a line break.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from fastweights import lm, presets
from fastweights.data.corpus import EOS
from fastweights.tasks import language_modelling


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastweights.generate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a language-modelling run directory")
    p.add_argument("--prompt", default="", help="words to start from (default: a line start)")
    p.add_argument("--tokens", type=int, default=100, help="how many tokens to sample (default 100)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 takes the most likely token")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample among the most likely tokens whose probability reaches p")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latest", action="store_true", help="the newest checkpoint instead of the best-validation one")
    return p


def write_words(words, out=None) -> None:
    """Prints words as they come (to `out`, default stdout): `<eos>` as a line break,
    flushed after each word."""
    out = sys.stdout if out is None else out
    at_line_start = True
    for word in words:
        if word == EOS:
            out.write("\n")
            at_line_start = True
        else:
            out.write(word if at_line_start else " " + word)
            at_line_start = False
        out.flush()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.tokens < 1:
            raise ValueError(f"--tokens must be >= 1, got {args.tokens}")
        exp, model, _ = presets.load_run(args.run_dir, best=not args.latest)
        corpus = language_modelling.load_corpus(exp.data)
        prompt = corpus.encode(args.prompt) if args.prompt.strip() else corpus.encode(EOS)
        tokens = lm.stream(model, prompt, args.tokens, seed=args.seed, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p)
        shown = corpus.decode(prompt) if args.prompt.strip() else []
        write_words(itertools.chain(shown, (corpus.decode([t])[0] for t in tokens)))
        print()
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
