# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %% [markdown]
# # Algorithmic tasks: code execution and ListOps
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/fastweights/fastweights/blob/main/notebooks/03_algorithmic_tasks.ipynb)
#
# The paper tests fast weight programmers on two synthetic tasks that need a memory which
# can be *overwritten*: executing short programs whose variables change value (code
# execution) and evaluating nested list operations read left to right (ListOps). This
# notebook generates both data sets with the library's generators, decodes a few examples
# as text, then trains a Linear Transformer (sum rule), a Delta Net (delta rule) and a
# Delta RNN (delta rule with a recurrent fast net) on code execution and compares their
# learning curves and test accuracies with the paper's. The committed outputs are from a
# full run (`QUICK = False`: 600 steps per model; 10 minutes on a shared, heavily loaded
# 2-core CPU; about 4 on an idle one, estimated from `make run`); CI runs it with
# `QUICK = True`, which trains two tiny models for 20 steps.

# %% tags=["skip-execution"]
# Colab: install this repository at the tag of this version (CI and local builds skip this cell).
# !pip install -q "fastweights[train,rl] @ git+https://github.com/fastweights/fastweights@v0.1.0"

# %% tags=["parameters"]
QUICK = False  # CI sets True: two tiny models, 20 steps each, instead of three small ones
MODELS = ("linear_transformer", "delta_net") if QUICK else ("linear_transformer", "delta_net", "delta_rnn")
STEPS = 20 if QUICK else 600
EVAL_EVERY = 20 if QUICK else 100

# %%
import itertools
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fastweights import presets
from fastweights.data import code_execution, listops
from fastweights.metrics import read_jsonl

# %% [markdown]
# ## Code execution: programs and what they print
#
# A program is one line of statements over a few variables (`x y z`): assignments
# `x = 3 ;`, increments `x ++ ;` and decrements `x -- ;` (values stay in [-8, 16]),
# conditionals `if x < 5 : y = 2 ;` and prints `print x ;`. The model reads the program
# token by token and must predict, at every token, what is printed there: the value of the
# variable at the `;` of a print, and the no-op symbol `_` everywhere else. To get a print
# right the model has to remember the *current* value of each variable, i.e. overwrite the
# old one whenever it changes: the operation the delta rule adds to the sum rule.
#
# `code_execution.generate` yields the examples of the three splits from one random stream
# (with the paper's settings it writes the official files byte for byte). Below are
# three programs of 8 statements, one statement per line, with the printed value where the
# target has one.

# %%
def show_program(src: str, tgt: str) -> None:
    """One statement per line; `-> v` where the target holds a printed value."""
    statement, printed = [], None
    for token, target in zip(src.split(), tgt.split()):
        statement.append(token)
        if target != code_execution.NO_OP:
            printed = target
        if token == ";":
            print(f"    {' '.join(statement):<22}" + (f"-> {printed}" if printed else ""))
            statement, printed = [], None


programs = list(code_execution.generate(3, code_length=8, train_size=200, valid_size=2, test_size=2))
train_programs = [ex for ex in programs if ex.split == "train"]
for ex in train_programs[:3]:
    print(f"program {ex.index}:")
    show_program(ex.src, ex.tgt)

# %% [markdown]
# A few statistics over the generated training programs: the length in tokens, and how
# many positions are prints (the only informative targets: a model that always answers `_`
# already gets most positions right, which is why the paper reports *sequence* accuracy,
# the fraction of programs with every position right).

# %%
lengths = np.array([len(ex.src.split()) for ex in train_programs])
prints = np.array([sum(t != code_execution.NO_OP for t in ex.tgt.split()) for ex in train_programs])
print(f"{len(train_programs)} programs of 8 statements: {lengths.min()}-{lengths.max()} tokens "
      f"(mean {lengths.mean():.1f}); printed values per program: mean {prints.mean():.2f}, "
      f"{100 * prints.sum() / lengths.sum():.1f}% of the target positions")
assert (prints >= 1).all(), "every program ends with a print whose value is known"

# %% [markdown]
# ## ListOps: nested operations, read left to right
#
# A ListOps example is a prefix expression over the digits 0-9, e.g.
# `[MAX 3 [MIN 4 5 ] 7 ]` (value 7); the label is its value, predicted at the last token.
# The sequential model has to keep a stack of partial results in its memory. The paper's
# sets have a nesting depth of 10 and 15 (`listops.PRESETS["depth10"]`, `["depth15"]`);
# the small ones (`"depth3"`: three nested operators, at most 3 arguments) train on a CPU.
# `listops.evaluate` computes the value of a token sequence independently of the generator.

# %%
for preset in ("depth3", "depth10"):
    examples = list(itertools.islice(listops.generate_examples(listops.PRESETS[preset]), 300))
    lengths = np.array([ex.length for ex in examples])
    print(f"{preset}: {lengths.min()}-{lengths.max()} tokens (mean {lengths.mean():.0f}); e.g.")
    for ex in examples[:2]:
        line = " ".join(ex.tokens)
        print(f"    {line if len(line) < 90 else line[:87] + '...'}  = {ex.target}")
    assert all(listops.evaluate(ex.tokens) == ex.target for ex in examples), "labels are the values"
    if preset == "depth3":
        small_lengths = lengths
    else:
        paper_lengths = lengths

# %% [markdown]
# The histogram below shows the lengths of 300 expressions of each set: the paper's
# depth-10 expressions are several times longer than the CPU-sized depth-3 ones.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(small_lengths, bins=30, alpha=0.7, label="depth 3 (CPU-sized)")
ax.hist(paper_lengths, bins=30, alpha=0.7, label="depth 10 (paper)")
ax.set_xlabel("expression length (tokens)")
ax.set_ylabel("examples")
ax.legend()
plt.show()
print(f"median length: depth 3 {np.median(small_lengths):.0f}, depth 10 {np.median(paper_lengths):.0f} tokens")

# %% [markdown]
# The two distributions barely overlap: the median depth-10 expression is many times
# longer (printed above), one reason the paper's ListOps runs need a GPU.

# %% [markdown]
# ## Training on code execution
#
# `fastweights.presets` names every experiment. The `small_<model>` presets of
# `code_execution` are sized for a 2-core CPU: 3-variable programs of 8 statements, 4000
# training programs, 2 layers of width 64 with 4 heads, Adam 1e-3, batch 32. The three
# models differ only in the fast-weight layer:
#
# - Linear Transformer (sum rule): $W_t = W_{t-1} + k_t v_t^\top$, read $o_t = W_t^\top q_t$;
# - Delta Net (delta rule): $W_t = W_{t-1} + \beta_t k_t (v_t - W_{t-1}^\top k_t)^\top$: the
#   value stored under $k_t$ is moved towards $v_t$, so an old value can be replaced;
# - Delta RNN: the same fast weights, plus a recurrent fast net,
#   $y_t = R_t^\top \mathrm{softmax}(y_{t-1}) + W_t^\top q_t$, with $R_t$ itself written by a
#   delta rule.
#
# `presets.get(task, preset, overrides)` applies `section.field=value` overrides; here the
# number of steps (shortened so that the notebook stays within a few minutes) and the
# progress bar off. In QUICK mode the overrides also shrink the data and the model.
# `presets.run` trains through `fastweights.training.train` and returns the last metrics,
# the best validation step and the test metrics of the best checkpoint.

# %%
RUN_ROOT = Path("runs/notebooks/03_algorithmic_tasks") / ("quick" if QUICK else "full")
overrides = [f"train.steps={STEPS}", f"train.eval_every={EVAL_EVERY}", f"train.checkpoint_every={EVAL_EVERY}",
             "train.log_every=5" if QUICK else "train.log_every=25", "train.progress=false"]
if QUICK:
    overrides += ["data.code_length=4", "data.train_size=257", "data.valid_size=65", "data.test_size=65",
                  "model.num_layers=1", "model.model_dim=32", "model.num_heads=2", "model.ff_dim=64"]

results, seconds = {}, {}
for model in MODELS:
    exp = presets.get("code_execution", f"small_{model}", overrides)
    run_dir = RUN_ROOT / model
    shutil.rmtree(run_dir, ignore_errors=True)      # a fresh run (presets.run would resume)
    start = time.perf_counter()
    results[model] = presets.run(exp, run_dir)
    seconds[model] = time.perf_counter() - start
    print(f"{model}: {seconds[model]:.0f} s\n")

# %% [markdown]
# ## Learning curves
#
# Each run writes `metrics.jsonl`: one record per log step with its `split` ("train",
# "valid", "test"). `read_jsonl` loads it as a list of dicts. The plot shows the training
# loss (cross-entropy over every target position) and the validation sequence accuracy
# against the step, one line per model.

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.5))
curves = {}
for model in MODELS:
    records = read_jsonl(RUN_ROOT / model / "metrics.jsonl")
    train = [r for r in records if r["split"] == "train"]
    valid = [r for r in records if r["split"] == "valid"]
    curves[model] = {"train": train, "valid": valid}
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=model)
    ax_acc.plot([r["step"] for r in valid], [100 * r["sequence_accuracy"] for r in valid], "o-", label=model)
ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
ax_acc.set(xlabel="step", ylabel="sequence accuracy (%)", title="validation sequence accuracy")
ax_loss.legend()
plt.show()
for model in MODELS:
    train, valid = curves[model]["train"], curves[model]["valid"]
    print(f"{model:<20} train loss {train[0]['loss']:.2f} (step {train[0]['step']}) -> "
          f"{train[-1]['loss']:.2f} (step {train[-1]['step']}); validation loss {valid[-1]['loss']:.3f}, "
          f"sequence accuracy {100 * valid[-1]['sequence_accuracy']:.1f}%")

# %% [markdown]
# Every model's loss falls, most of it in the first steps, where the models learn to
# answer `_` at the non-print positions. The numbers printed above are this run's. With
# the delta rule the loss falls further than with the sum rule: the Linear Transformer
# can only add to its memory, so after `x = 1 ; ... x = 4 ;` its read of `x` is a mixture of
# the old and the new value.

# %%
for model in MODELS:
    train = curves[model]["train"]
    assert train[-1]["loss"] < train[0]["loss"], f"{model}: the training loss falls"
final_valid_loss = {model: curves[model]["valid"][-1]["loss"] for model in MODELS}
assert final_valid_loss["delta_net"] < final_valid_loss["linear_transformer"], \
    "the Delta Net's validation loss ends below the Linear Transformer's"

# %% [markdown]
# ## Test accuracy beside the paper's
#
# At the end of each run the loop evaluates the best validation checkpoint on the test
# split: the sequence accuracy (every position of a program right), the print accuracy
# (the printed values right) and the no-op accuracy (the `_` positions right). The paper's
# numbers (`experiments.results.PAPER`, code execution with 3 variables) come from full
# models (4 layers of 256) trained for 200 epochs on 100-statement programs, so they are a
# reference for the ordering, not for the values. Marks: `~` a number from a secondary
# source, `?` an unchecked one, as recorded in the library.

# %%
from experiments.results import PAPER

print("| model | steps | test sequence acc. | test print acc. | test no-op acc. | paper (3 vars, test) | time |")
print("|---|---|---|---|---|---|---|")
for model in MODELS:
    test = results[model]["test"]
    print(f"| {model} | {STEPS} | {100 * test['sequence_accuracy']:.1f}% | {100 * test['print_accuracy']:.1f}% | "
          f"{100 * test['no_op_accuracy']:.1f}% | {PAPER[model]['code 3 vars']} | {seconds[model]:.0f} s |")

# %% [markdown]
# In the paper the Linear Transformer fails at code execution, the Delta Net reaches about
# 91% and the Delta RNN about 93%. With the short training here the absolute numbers are far
# lower (in QUICK mode no program is yet right). In the committed full run the ordering of
# the sum and the delta rule already shows: the Linear Transformer gets 1.4% of the test
# programs and 21% of the printed values right, the Delta Net 14.6% and 40%; the Delta RNN
# is level with the Delta Net (14.0%), as in `make run`: its gain in the paper needs the
# paper's longer programs and training. `make run` trains the same presets for 1200 steps
# (README "Results": 2.2%, 21.0% and 18.0% sequence accuracy); the paper's own settings are
# the `paper_3vars_<model>` presets (GPU time). To train on ListOps instead, use the task
# `"listops"` with its `small_<model>` presets.
