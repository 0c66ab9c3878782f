"""Named experiments: every task and every preset of it, in one table.

    >>> from fastweights import presets
    >>> exp = presets.get("associative_recall", "tiny", ["model.num_layers=2"])
    >>> exp.model.num_layers
    2
    >>> presets.names("associative_recall")
    ('tiny', 'small')

`run(exp, run_dir)` trains one: it hands `fastweights.training.train` the task object and a
factory of the model the experiment describes. This is the only module that knows tasks
and presets by name (the CLI, `experiments/` and the tests look them up here); the
training loop knows neither. Model presets (the paper's architectures) are
`fastweights.nn.presets`.

Adding a task: its module under `fastweights/tasks/` (the `fastweights.training.Task`
protocol) and its entry in `TASKS` and `PRESETS` below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flax import nnx

from fastweights import training
from fastweights.checkpoints import read_checkpoint
from fastweights.experiment import Experiment, from_dict, override
from fastweights.nn import presets as model_presets
from fastweights.nn.config import LayerConfig, LMConfig, SequenceConfig
from fastweights.tasks import associative_recall, code_execution, language_modelling, listops
from fastweights.training import OptimizerConfig, TrainConfig

TASKS: Mapping[str, Any] = MappingProxyType({
    task.name: task for task in (associative_recall.TASK, code_execution.TASK, listops.TASK,
                                 language_modelling.TASK, language_modelling.FULL_CONTEXT)})

# The paper's models on the algorithmic tasks (PAPER_SPEC 8.2) and the small CPU models of
# `make run`, by their `fastweights.nn.presets` name `algorithmic_<model>`.
PAPER_MODELS = ("lstm", "transformer", "linear_transformer", "delta_net", "delta_rnn", "rdn")
SMALL_MODELS = ("linear_transformer", "delta_net", "delta_rnn")


def _associative_recall() -> dict[str, Experiment]:
    task = associative_recall.TASK
    adam = OptimizerConfig(learning_rate=3e-3)
    loop = dict(best_metric="accuracy", best_mode="max")

    def experiment(data, train: TrainConfig, **model) -> Experiment:
        config = SequenceConfig(layer=LayerConfig("alg:2"), wiring="pre_ln", positional="none", **model)
        return Experiment(task.name, data, task.model_config(data, config), adam, train)

    return {
        # 2-core CPU, Adam 3e-3: within 200 steps (~30 s) the loss falls from ln 8 to ~1.2 (it
        # picks among the values in context); the retrieval itself is learnt abruptly later
        # (batch 128: from ~600 steps; batch 256: accuracy 1.0 by ~550 steps). The whole
        # preset takes ~2 minutes.
        "tiny": experiment(associative_recall.DataConfig(num_pairs=4, num_keys=8, num_values=8, batch_size=128),
                           TrainConfig(steps=800, eval_every=100, checkpoint_every=100, **loop),
                           model_dim=64, num_layers=2, num_heads=4, head_dim=16, ff_dim=128, dropout=0.0),
        "small": experiment(associative_recall.DataConfig(num_pairs=16, num_keys=64, num_values=32,
                                                          batch_size=128, eval_batches=8),
                            TrainConfig(steps=3000, eval_every=250, checkpoint_every=250, **loop),
                            model_dim=128, num_layers=2, num_heads=8, head_dim=16, ff_dim=512, dropout=0.0),
    }


def _code_execution() -> dict[str, Experiment]:
    name, DataConfig = code_execution.TASK.name, code_execution.DataConfig
    # Official: Adam (0.9, 0.995), eps 1e-9, lr 3e-4 constant, no clipping, 200 epochs of
    # batch 64, validation every epoch, best by sequence accuracy.
    paper_adam = OptimizerConfig(learning_rate=3e-4, b1=0.9, b2=0.995, eps=1e-9)
    best = dict(best_metric="sequence_accuracy", best_mode="max")
    out = {}
    for num_vars in (3, 5):
        data = DataConfig(num_vars=num_vars)
        epoch = (data.train_size - 1) // data.batch_size
        loop = TrainConfig(steps=200 * epoch, eval_every=epoch, checkpoint_every=epoch, log_every=50, **best)
        for model in PAPER_MODELS:
            out[f"paper_{num_vars}vars_{model}"] = Experiment(
                name, data, model_presets.get(f"algorithmic_{model}"), paper_adam, loop)
    # CPU-sized: 3 variables, 8-statement programs, 2 layers of 64, batch 32.
    small_data = DataConfig(code_length=8, train_size=4001, valid_size=501, test_size=501, batch_size=32)
    small_loop = TrainConfig(steps=1200, eval_every=200, checkpoint_every=200, log_every=25, **best)
    for model in SMALL_MODELS:
        config = model_presets.get(f"algorithmic_{model}", num_layers=2, model_dim=64, num_heads=4,
                                   head_dim=16, ff_dim=256, dropout=0.0)
        out[f"small_{model}"] = Experiment(name, small_data, config,
                                           OptimizerConfig(learning_rate=1e-3, b1=0.9, b2=0.995, eps=1e-9),
                                           small_loop)
    tiny_data = DataConfig(code_length=4, train_size=257, valid_size=65, test_size=65, batch_size=32)
    out["tiny"] = Experiment(name, tiny_data,
                             model_presets.get("algorithmic_delta_net", num_layers=1, model_dim=32,
                                               num_heads=2, head_dim=16, ff_dim=64, dropout=0.0),
                             OptimizerConfig(learning_rate=3e-3),
                             TrainConfig(steps=60, eval_every=30, checkpoint_every=30, **best))
    return out


def _listops() -> dict[str, Experiment]:
    name, DataConfig = listops.TASK.name, listops.DataConfig
    paper_adam = OptimizerConfig(learning_rate=3e-4, b1=0.9, b2=0.995, eps=1e-9)
    best = dict(best_metric="accuracy", best_mode="max")
    out = {}
    for depth in (10, 15):
        data = DataConfig(only_depth=depth + 1)
        epoch = data.train_size // data.batch_size
        loop = TrainConfig(steps=200 * epoch, eval_every=epoch, checkpoint_every=epoch, log_every=50, **best)
        for model in PAPER_MODELS:
            out[f"paper_depth{depth}_{model}"] = Experiment(
                name, data, model_presets.get(f"algorithmic_{model}"), paper_adam, loop)
    small_data = DataConfig(only_depth=4, max_args=3, train_size=4000, valid_size=500, test_size=500,
                            batch_size=32)
    for model in SMALL_MODELS:
        config = model_presets.get(f"algorithmic_{model}", num_layers=2, model_dim=64, num_heads=4,
                                   head_dim=16, ff_dim=256, dropout=0.0)
        out[f"small_{model}"] = Experiment(
            name, small_data, config, OptimizerConfig(learning_rate=1e-3, b1=0.9, b2=0.995, eps=1e-9),
            TrainConfig(steps=1500, eval_every=250, checkpoint_every=250, log_every=25, **best))
    out["tiny"] = Experiment(
        name, DataConfig(only_depth=3, max_args=3, train_size=256, valid_size=64, test_size=64, batch_size=32),
        model_presets.get("algorithmic_delta_net", num_layers=1, model_dim=32, num_heads=2, head_dim=16,
                          ff_dim=64, dropout=0.0),
        OptimizerConfig(learning_rate=3e-3), TrainConfig(steps=60, eval_every=30, checkpoint_every=30, **best))
    return out


# The models of the paper's WikiText-103 table (PAPER_SPEC 8.1), by their
# `fastweights.nn.presets` name `wt103_small_<model>`; the full-context rows are
# `lm_full_context` presets.
WT103_MODELS = ("transformer", "linear_transformer", "delta_net", "delta_mlp", "delta_delta_net", "delta_rnn",
                "delta_lstm", "rdn")
WT103_FULL_CONTEXT = ("delta_rnn", "rdn")


def _wt103_optimizer(max_step: int) -> OptimizerConfig:
    # Adam 2.5e-4, warm-up 2000 then cosine to `max_step` at the absolute step, the rate set
    # after each update (the first one at the full rate), global-norm clip 0.25 (PAPER_SPEC 3.1).
    return OptimizerConfig(learning_rate=2.5e-4, schedule="warmup_cosine", warmup_steps=2000,
                           decay_steps=max_step, official_step_order=True, clip_norm=0.25)


def _wt103_loop(max_step: int) -> TrainConfig:
    # Validation (and best-checkpoint selection) every 4000 steps, as --eval-interval.
    return TrainConfig(steps=max_step, eval_every=4000, checkpoint_every=4000, log_every=200)


def _shakespeare(carried: bool) -> dict[str, Experiment]:
    """CPU-sized runs on the offline Shakespeare corpus (its vocabulary is filled in from the
    corpus): "small" trains a 4-layer Delta RNN in about 5 minutes on 2 cores; "tiny" serves
    the tests. Another variant: `--set model.layer.variant=delta_net` (any name of
    `fastweights.registry`)."""
    name = (language_modelling.FULL_CONTEXT if carried else language_modelling.TASK).name
    DataConfig = language_modelling.DataConfig
    # 87% of the train tokens are among the 2000 most frequent words, 8.5% in the next 6000,
    # 4% in the remaining 24.8k: the tails' normalisers are computed only for their own
    # targets (at most 1/8 and 1/16 of a batch), 7x less output-layer work, exactly.
    output = dict(cutoffs=(2000, 8000), tail_capacity=(0.125, 0.0625))
    small = LMConfig(vocab_size=32_761, model_dim=128, num_layers=4, num_heads=8, head_dim=16, ff_dim=512,
                     dropout=0.1, layer=LayerConfig("lm:134"), positional_span=128, **output)
    tiny = LMConfig(vocab_size=32_761, model_dim=32, num_layers=1, num_heads=2, head_dim=16, ff_dim=64,
                    dropout=0.0, layer=LayerConfig("lm:24"), positional_span=32, **output)
    if carried:
        small = dataclasses.replace(small, wiring="post_ln", positional="none")
        tiny = dataclasses.replace(tiny, wiring="post_ln", positional="none")
    adam = OptimizerConfig(learning_rate=2e-3, schedule="warmup_cosine", warmup_steps=100, clip_norm=0.25)
    return {
        "small": Experiment(name, DataConfig(corpus="shakespeare", batch_size=16, tgt_len=128, eval_batch_size=10,
                                             eval_tgt_len=128),
                            small, adam, TrainConfig(steps=240, eval_every=80, checkpoint_every=80, log_every=10)),
        "tiny": Experiment(name, DataConfig(corpus="shakespeare", batch_size=8, tgt_len=32, eval_batch_size=8,
                                            eval_tgt_len=32),
                           tiny, OptimizerConfig(learning_rate=3e-3, clip_norm=0.25),
                           TrainConfig(steps=40, eval_every=20, checkpoint_every=20, log_every=5)),
    }


def _language_modelling() -> dict[str, Experiment]:
    name, DataConfig = language_modelling.TASK.name, language_modelling.DataConfig
    out = {}
    small, medium = DataConfig(), DataConfig(batch_size=56, tgt_len=384, eval_tgt_len=384)
    for model in WT103_MODELS:
        out[f"wt103_small_{model}"] = Experiment(name, small, model_presets.get(f"wt103_small_{model}"),
                                                 _wt103_optimizer(500_000), _wt103_loop(500_000))
        out[f"wt103_medium_{model}"] = Experiment(name, medium, model_presets.get(f"wt103_medium_{model}"),
                                                  _wt103_optimizer(400_000), _wt103_loop(400_000))
    return out | _shakespeare(carried=False)


def _full_context() -> dict[str, Experiment]:
    # The README's full-context command: --carry_over_fast_weight --no_pos, post-LN, one GPU.
    name = language_modelling.FULL_CONTEXT.name
    out = {f"wt103_small_{model}": Experiment(name, language_modelling.DataConfig(),
                                              model_presets.get(f"wt103_small_{model}_full_context"),
                                              _wt103_optimizer(500_000), _wt103_loop(500_000))
           for model in WT103_FULL_CONTEXT}
    return out | _shakespeare(carried=True)


PRESETS: Mapping[str, Mapping[str, Experiment]] = MappingProxyType({
    associative_recall.TASK.name: MappingProxyType(_associative_recall()),
    code_execution.TASK.name: MappingProxyType(_code_execution()),
    listops.TASK.name: MappingProxyType(_listops()),
    language_modelling.TASK.name: MappingProxyType(_language_modelling()),
    language_modelling.FULL_CONTEXT.name: MappingProxyType(_full_context()),
})


def get_task(name: str) -> Any:
    """The task object `name`; `ValueError` lists the valid names."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


def names(task: str) -> tuple[str, ...]:
    """The preset names of `task`."""
    get_task(task)
    return tuple(PRESETS[task])


def get(task: str, preset: str, overrides: Sequence[str] = ()) -> Experiment:
    """The preset with `overrides` ("section.field=value") applied; `ValueError` names the
    valid tasks, presets, fields or values when one is wrong."""
    available = PRESETS[get_task(task).name]
    if preset not in available:
        raise ValueError(f"unknown preset {preset!r} for task {task!r}; valid: {', '.join(available)}")
    return override(available[preset], overrides)


def validate(exp: Experiment) -> None:
    """Raises `ValueError` for invalid values anywhere in the experiment: the optimizer and
    loop settings, and the model (built abstractly, so an unknown variant or option fails
    here, before any compilation). Writes nothing: the model keeps its own vocabulary sizes
    instead of those of the (perhaps not yet generated) data set."""
    training.validate(exp.optimizer, exp.train)
    model_presets.count_params(get_task(exp.task).model_config(exp.data, exp.model, prepare=False))


def model_factory(exp: Experiment) -> Callable[[nnx.Rngs], nnx.Module]:
    """`rngs -> model`: the experiment's model with the task's vocabulary sizes and read-out
    (which may prepare the data set: generate and convert it once)."""
    task = get_task(exp.task)
    return lambda rngs: model_presets.build(task.model_config(exp.data, exp.model), rngs=rngs)


def load_experiment(run_dir: str | Path) -> Experiment:
    """The experiment a run trained, as its newest checkpoint records it."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        raise FileNotFoundError(f"{Path(run_dir).absolute()} has no checkpoints/: not a training run directory")
    config = read_checkpoint(directory, best=False)[1]["config"]
    if "model" not in config:
        raise ValueError(f"{run_dir} was not trained through fastweights.presets.run: its checkpoint does not "
                         "record the model config")
    task = get_task(config["task"])
    return Experiment(config["task"], from_dict(task.DataConfig, config["data"]),
                      from_dict(task.ModelConfig, config["model"]), from_dict(OptimizerConfig, config["optimizer"]),
                      from_dict(TrainConfig, config["train"]))


def load_run(run_dir: str | Path, *, best: bool = True) -> tuple[Experiment, nnx.Module, int]:
    """`(experiment, model, step)` of a trained run: the experiment as its checkpoint records
    it, and its model (eval mode, the task's vocabulary sizes) with the parameters of the
    best-validation (or newest) checkpoint."""
    exp = load_experiment(run_dir)
    model = model_presets.build(get_task(exp.task).model_config(exp.data, exp.model))
    step, _, params = read_checkpoint(Path(run_dir) / "checkpoints", nnx.state(model, nnx.Param), best=best)
    nnx.update(model, params)
    model.eval()
    return exp, model, step


def run(exp: Experiment, run_dir: str | Path, *, resume: bool = True) -> dict[str, Any]:
    """Trains `exp` under `run_dir` (see `fastweights.training.train`)."""
    return training.train(get_task(exp.task), model_factory(exp), run_dir, data=exp.data,
                          optimizer=exp.optimizer, config=exp.train, resume=resume,
                          run_config=training.config_to_dict(exp))


__all__ = ["PAPER_MODELS", "PRESETS", "SMALL_MODELS", "TASKS", "WT103_FULL_CONTEXT", "WT103_MODELS", "get", "get_task", "load_experiment", "load_run", "model_factory",
           "names", "run", "validate"]
