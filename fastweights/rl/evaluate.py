"""Command line: score a trained RL run's policy, and draw one of its games.

    python -m fastweights.rl.evaluate runs/rl_minatar_tiny --episodes 30
    python -m fastweights.rl.evaluate RUN_DIR --episodes 5 --gif game.gif --strip game.png
    python -m fastweights.rl.evaluate RUN_DIR --sample        # the sampled policy instead of argmax

Prints the mean and std over games of the full-game return and of the per-life return
(Atari runs end an "episode" at every life loss, as torchbeast's EpisodicLife: its logged
and test returns are per life), and writes them to RUN_DIR/eval_<greedy|sampled>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastweights.rl.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=10, help="games to play (one environment each)")
    p.add_argument("--sample", action="store_true", help="sample actions instead of the argmax")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gif", help="write game 0 as an animated GIF here")
    p.add_argument("--strip", help="write 8 frames of game 0 side by side as a PNG here")
    p.add_argument("--frames", type=int, default=600, help="frames of game 0 to record for --gif/--strip")
    args = p.parse_args(argv)
    from flax import nnx

    from fastweights.rl import evaluation, loop
    try:
        exp, agent, counters = loop.load_run(args.run_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    graphdef, params, rest = nnx.split(agent, nnx.Param, ...)
    record = args.frames if (args.gif or args.strip) else 0
    score = evaluation.evaluate_policy(graphdef, rest, params, exp.env, episodes=args.episodes, seed=args.seed,
                                       greedy=not args.sample, record=record)
    frames = score.pop("frames", None)
    score["frames_trained"] = counters["frames"]
    kind = "sampled" if args.sample else "greedy"
    path = Path(args.run_dir) / f"eval_{kind}.json"
    path.write_text(json.dumps(score, indent=2) + "\n")
    print(f"{exp.env.suite} {exp.env.game}, {exp.agent.core} core after {counters['frames']:,} frames, {kind} "
          f"policy, {score['episodes']} games:")
    print(f"  game return {score['game_return_mean']:.2f} +- {score['game_return_std']:.2f}; per-life return "
          f"{score['life_return_mean']:.2f} +- {score['life_return_std']:.2f} ({score['lives_per_game']:.1f} "
          f"lives per game); {score['game_frames_mean']:.0f} frames per game")
    if frames and args.gif:
        print(f"  gif: {evaluation.save_gif(frames, args.gif)}")
    if frames and args.strip:
        print(f"  strip: {evaluation.save_strip(frames, args.strip)}")
    print(f"  written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
