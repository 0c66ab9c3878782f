"""Training tokens/s of every WikiText-103 small preset (PAPER_SPEC 3.2, 8.1): the full model
(16 layers, D=128, the 267,735-word adaptive softmax), one jitted train step (forward,
backward, clipped Adam) on random tokens, with the fastest forms (`implementation=None`)
beside the same model with `implementation="recurrent"`.

    python -m benchmarks.bench_lm_train                      # batch 4 x 256 on this machine
    python -m benchmarks.bench_lm_train --batch 96 --models delta_net,delta_rnn   # the paper's batch

The two sides of each model are compiled first, then timed in alternation (`--rounds`
rounds of `--steps` steps each); the table gives the median step time of each side, its
tokens/s and the ratio. The paper's words/s (on its GPU) are beside. Writes
benchmarks/results/lm_train_<platform>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx

from benchmarks.common import machine, print_table, write_json
from fastweights import presets, training
from fastweights.nn import presets as model_presets
from fastweights.nn.config import resolve_layer

PAPER_WORDS_PER_S = {"transformer": "33K", "linear_transformer": "66K", "delta_net": "63K", "delta_rnn": "41K",
                     "rdn": "35K", "delta_lstm": "14K"}


def _step(task, exp, implementation, batch: int, seed: int = 0):
    """`(run, tokens_per_step)`: `run()` does one train step and waits for it."""
    model_config = exp.model
    if implementation is not None:
        model_config = dataclasses.replace(model_config, layer=dataclasses.replace(model_config.layer,
                                                                                   implementation=implementation))
    model = model_presets.build(model_config, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    mesh = training.make_mesh()
    optimizer = training.make_optimizer(exp.optimizer, exp.train.steps)
    state, shardings = training.init_train_state(model, optimizer, seed=seed, mesh=mesh)
    graphdef, _, rest = training.split_model(model)
    carried = isinstance(task, training.CarriedStateTask)
    carry_init = carry_shardings = None
    if carried:
        carry_init, carry_shardings = training.make_carry_init(
            graphdef, rest, lambda m, split: m.init_state(batch), state.params, mesh=mesh)
    step = training.make_train_step(graphdef, rest, task.loss, optimizer, optax.constant_schedule(1.0),
                                    shardings=shardings, mesh=mesh, carry_shardings=carry_shardings)
    rng = np.random.default_rng(seed)
    length = exp.data.tgt_len
    tokens = rng.integers(0, model_config.vocab_size, (batch, length + 1), dtype=np.int32)
    data = training.global_batch({"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}, mesh)
    box = {"state": state, "carry": carry_init(state.params) if carried else None}

    def run():
        if carried:
            box["state"], metrics, box["carry"] = step(box["state"], data, box["carry"])
        else:
            box["state"], metrics = step(box["state"], data)
        jax.block_until_ready(metrics["loss"])

    return run, batch * length


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--models", default=",".join(presets.WT103_MODELS + tuple(
        f"{m}_full_context" for m in presets.WT103_FULL_CONTEXT)))
    parser.add_argument("--steps", type=int, default=2, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args(argv)
    print(f"machine: {machine()}, jax {jax.__version__}; batch {a.batch} x 256 tokens, float32\n", flush=True)
    rows = []
    for name in a.models.split(","):
        full = name.endswith("_full_context")
        task_name = "lm_full_context" if full else "lm"
        preset = f"wt103_small_{name.removesuffix('_full_context')}"
        exp = presets.get(task_name, preset, [f"data.batch_size={a.batch}"])
        task = presets.get_task(task_name)
        # The softmax Transformer has one form; every fast-weight model is also run step by step.
        sides = {"fastest": None} if resolve_layer(exp.model.layer)[0] == "transformer" else \
            {"fastest": None, "recurrent": "recurrent"}
        runs = {}
        for side, implementation in sides.items():
            start = time.perf_counter()
            runs[side], tokens = _step(task, exp, implementation, a.batch)
            runs[side]()                                   # compiles
            runs[side]()                                   # warm
            print(f"{name} {side}: compiled and warm in {time.perf_counter() - start:.0f} s", flush=True)
        times = {side: [] for side in runs}
        for _ in range(a.rounds):                          # interleaved
            for side, run in runs.items():
                start = time.perf_counter()
                for _ in range(a.steps):
                    run()
                times[side].append((time.perf_counter() - start) / a.steps)
        row = {"model": name}
        for side in runs:
            median = statistics.median(times[side])
            row[f"{side}_s"] = round(median, 3)
            row[f"{side}_tok_s"] = round(tokens / median)
        if "recurrent" in runs:
            row["speedup"] = round(row["recurrent_s"] / row["fastest_s"], 2)
        row["paper_words_s_gpu"] = PAPER_WORDS_PER_S.get(name, "?")
        rows.append(row)
        print(row, flush=True)              # each row as it comes: a full run takes ~30 min
        del runs
    columns = ["model", "fastest_s", "fastest_tok_s", "recurrent_s", "recurrent_tok_s", "speedup", "paper_words_s_gpu"]
    print()
    print_table(rows, columns)
    path = write_json(f"lm_train_{jax.default_backend()}", {"machine": machine(), "batch": a.batch, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
