"""An IMPALA agent with a fast-weight core against the LSTM baseline, on MinAtar Breakout:
`make rl`.

    python -m experiments.rl                                   # Delta Net and LSTM cores, ~5 min on 2 cores
    python -m experiments.rl --cores delta_net,rdn,lstm --out runs/rl_cores
    python -m experiments.rl --preset minatar_tiny --set run.total_steps=100000

Each core trains the preset with the Sebulba actor-learner loop (a progress bar of frames/s,
the running game return and the policy lag), then its greedy policy plays `eval_episodes`
games. Prints a table, and writes the return curves of all cores (`returns.png`), a frame
strip and a GIF of the first core's greedy game, and `results.json`, under `--out`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from fastweights import metrics, training
from fastweights.rl import config, evaluation, loop, presets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.rl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="minatar_tiny", help="an RL preset (default: minatar_tiny)")
    parser.add_argument("--cores", default="delta_net,lstm", help="comma-separated agent cores")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--out", default="runs/make_rl", help="the output directory (replaced)")
    args = parser.parse_args(argv)
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    try:
        experiments = {core: presets.get(args.preset, [*args.overrides, f"agent.core={core}"]) for core in cores}
        for exp in experiments.values():
            config.validate(exp)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rows, results = [], {}
    for core, exp in experiments.items():
        run_dir = out / core
        training.write_run_info(run_dir, task="rl", preset=args.preset, overrides=[*args.overrides, f"agent.core={core}"])
        print(f"{exp.env.suite} {exp.env.game}, core {core}:", file=sys.stderr)
        start = time.perf_counter()
        result = loop.train(exp, run_dir, resume=False)
        wall = time.perf_counter() - start
        counters, last, score = result["counters"], result["last"], result["evaluation"]
        results[core] = {"counters": counters, "last": last, "wall_s": wall,
                         "evaluation": {k: v for k, v in (score or {}).items() if k != "frames"}}
        rows.append((core, counters["frames"], wall, counters["frames"] / wall, last.get("game_return", float("nan")),
                     score))
    # The first core's greedy game, as pictures.
    first = out / cores[0]
    exp, agent, _ = loop.load_run(first)
    from flax import nnx
    graphdef, params, rest = nnx.split(agent, nnx.Param, ...)
    game = evaluation.evaluate_policy(graphdef, rest, params, exp.env, episodes=1, seed=1, record=400)
    evaluation.save_gif(game["frames"], out / f"{cores[0]}_game.gif")
    evaluation.save_strip(game["frames"], out / f"{cores[0]}_strip.png")
    metrics.plot_runs({core: out / core / metrics.JSONL_NAME for core in cores}, out / "returns.png",
                      key="game_return", x="frames",
                      title=f"{exp.env.suite} {exp.env.game}: running mean game return (last {loop.RETURN_WINDOW})")
    (out / "results.json").write_text(json.dumps(results, indent=1))

    print(f"\n| core | frames | wall | frames/s | return (last {loop.RETURN_WINDOW} games) | greedy return |")
    print("|---|---|---|---|---|---|")
    for core, frames, wall, fps, ret, score in rows:
        greedy = f"{score['game_return_mean']:.2f} +- {score['game_return_std']:.2f} ({score['episodes']} games)" \
            if score else "-"
        print(f"| {core} | {frames:,} | {wall / 60:.1f} min | {fps:,.0f} | {ret:.2f} | {greedy} |")
    print(f"\nreturn curves: {out / 'returns.png'}; {cores[0]}'s greedy game: {out / f'{cores[0]}_strip.png'}, "
          f"{out / f'{cores[0]}_game.gif'}; results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
