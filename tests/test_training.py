"""The training system: schedules, sharded step equality on 8 simulated CPU devices, two
processes against one, kill-and-resume equality, corrupt-checkpoint fallback, NaN handling,
the CLI's errors, and the tiny preset of every task learning."""

import dataclasses
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fastweights import metrics, presets, training
from fastweights.nn import presets as model_presets
from fastweights.tasks import associative_recall
from fastweights.testing import assert_close

ROOT = Path(__file__).parents[1]
# A fast variant of the tiny preset for loops that only test the machinery.
MICRO = ["data.batch_size=16", "model.model_dim=16", "model.num_layers=1", "model.num_heads=2",
         "model.head_dim=8", "model.ff_dim=16", "train.tensorboard=false", "train.plot=false",
         "train.progress=false"]


def micro(*overrides):
    return presets.get("associative_recall", "tiny", MICRO + list(overrides))


def _train(task, exp, run_dir):
    """`exp`'s model and configs trained on `task` (a stand-in for the named one)."""
    return training.train(task, presets.model_factory(exp), run_dir, data=exp.data,
                          optimizer=exp.optimizer, config=exp.train)


def _cli(run_dir, *args, env=None, devices=1):
    environ = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   JAX_PLATFORMS="cpu", **(env or {}))
    command = [sys.executable, "-m", "fastweights.train", "--task", "associative_recall",
               "--preset", "tiny", "--run-dir", str(run_dir)]
    for item in MICRO + list(args):
        command += ["--set", item]
    return subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _losses(run_dir):
    return metrics.losses_by_step(metrics.read_jsonl(Path(run_dir) / "metrics.jsonl"))


def test_learning_rate_schedules():
    config = training.OptimizerConfig(learning_rate=2.0, schedule="warmup_cosine", warmup_steps=4,
                                      decay_steps=10)
    schedule = training.learning_rate_schedule(config, 100)
    # Cosine at the absolute step, held at 0 past the horizon (official runs stop there).
    expected = [2.0 * s / 4 for s in range(4)] + [1.0 * (1 + math.cos(math.pi * min(s, 10) / 10)) for s in range(4, 12)]
    np.testing.assert_allclose([float(schedule(s)) for s in range(12)], expected, rtol=1e-6, atol=1e-7)
    quirk = training.learning_rate_schedule(dataclasses.replace(config, official_step_order=True), 100)
    # The LM code sets the rate after the update: the first update uses the full rate.
    np.testing.assert_allclose([float(quirk(s)) for s in range(3)], [2.0, 0.5, 1.0], rtol=1e-6)
    assert float(training.learning_rate_schedule(training.OptimizerConfig(), 10)(7)) == 1e-3


def test_linear_schedule_is_polybeasts_lambda():
    unroll_steps, total_frames = 6, 60          # T * B agent steps per update, total_steps
    config = training.OptimizerConfig(learning_rate=2.0, schedule="linear",
                                      decay_steps=total_frames // unroll_steps)
    schedule = training.learning_rate_schedule(config, 1000)
    # polybeast: LambdaLR(1 - min(k T B, total) / total), stepped after update k.
    expected = [2.0 * (1 - min(k * unroll_steps, total_frames) / total_frames) for k in range(13)]
    np.testing.assert_allclose([float(schedule(k)) for k in range(13)], expected, rtol=1e-6, atol=1e-7)
    by_run = training.learning_rate_schedule(dataclasses.replace(config, decay_steps=None), 4)
    np.testing.assert_allclose([float(by_run(k)) for k in range(6)], [2.0, 1.5, 1.0, 0.5, 0.0, 0.0], atol=1e-7)


def _torch_rmsprop(params, grads_by_step, lr_by_step, alpha, eps, momentum, clip):
    """PyTorch's clip_grad_norm_ + RMSprop (torch/optim/rmsprop.py) in float64 NumPy."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    square = {k: np.zeros_like(v) for k, v in params.items()}
    buffer = {k: np.zeros_like(v) for k, v in params.items()}
    for grads, lr in zip(grads_by_step, lr_by_step):
        grads = {k: np.asarray(g, np.float64) for k, g in grads.items()}
        norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
        scale = min(1.0, clip / (norm + 1e-6)) if clip else 1.0
        for k, g in grads.items():
            g = g * scale
            square[k] = alpha * square[k] + (1 - alpha) * g ** 2
            step = g / (np.sqrt(square[k]) + eps)
            if momentum:
                buffer[k] = momentum * buffer[k] + step
                step = buffer[k]
            params[k] = params[k] - lr * step
    return params


@pytest.mark.parametrize("momentum, clip", [(0.0, None), (0.0, 1.0), (0.9, None)])
def test_rmsprop_is_pytorchs(momentum, clip):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=(2,)).astype(np.float32)}
    grads_by_step = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
                     for _ in range(3)]
    config = training.OptimizerConfig(optimizer="rmsprop", learning_rate=0.1, schedule="linear",
                                      decay_steps=4, decay=0.99, eps=0.01, momentum=momentum, clip_norm=clip)
    optimizer = training.make_optimizer(config, total_steps=100)
    state, current = optimizer.init(params), params

    @jax.jit
    def update(current, grads, state):
        updates, state = optimizer.update(grads, state, current)
        return optax.apply_updates(current, updates), state

    for grads in grads_by_step:
        current, state = update(current, grads, state)
    expected = _torch_rmsprop(params, grads_by_step, [0.1, 0.075, 0.05], 0.99, 0.01, momentum, clip)
    if clip:   # the clip is active on every step
        assert all(np.sqrt(sum(np.sum(g ** 2) for g in g_.values())) > clip for g_ in grads_by_step)
    assert_close(current, expected, "float32_vs_float64", name="params")


def test_optimizer_config_is_validated():
    train = training.TrainConfig()
    for bad, message in [(dict(optimizer="sgd"), "choose one of adam, rmsprop"),
                         (dict(schedule="step"), "choose one of constant, warmup_cosine, linear"),
                         (dict(optimizer="rmsprop", decay=1.0), "decay must be in")]:
        with pytest.raises(ValueError, match=message):
            training.validate(training.OptimizerConfig(**bad), train)
    training.validate(training.OptimizerConfig(optimizer="rmsprop", schedule="linear", eps=0.01), train)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        training.make_optimizer(training.OptimizerConfig(optimizer="sgd"), 10)


def test_sharded_step_equals_one_device():
    assert len(jax.devices()) == 8
    exp = micro("model.num_heads=4", "model.head_dim=4", "data.batch_size=8")
    task = presets.get_task(exp.task)
    model_config = task.model_config(exp.data, exp.model)
    batch = next(task.dataset(exp.data, "train"))
    sgd = optax.sgd(1.0)      # new params = params - gradients
    results = {}
    for name, mesh in [("one", training.make_mesh((1, 1), jax.devices()[:1])),
                       ("sharded", training.make_mesh((4, 2)))]:
        model = model_presets.build(model_config, rngs=nnx.Rngs(params=0, dropout=1))
        graphdef, _, rest = training.split_model(model)
        state, shardings = training.init_train_state(model, sgd, seed=0, mesh=mesh)
        before = jax.tree.map(np.asarray, state.params)
        step = training.make_train_step(graphdef, rest, task.loss, sgd, optax.constant_schedule(1.0),
                                        shardings=shardings, mesh=mesh)
        state, out = step(state, training.global_batch(batch, mesh))
        grads = jax.tree.map(lambda b, a: b - np.asarray(a), before, state.params)
        results[name] = (float(out["loss"]), grads, state)
    assert_close(results["sharded"][0], results["one"][0], "float32_other_form", name="loss")
    assert_close(results["sharded"][1], results["one"][1], "float32_other_form_grad", name="gradients")
    # Parameters are laid out as declared: heads and the feed-forward width on `model`.
    params = results["sharded"][2].params
    block = params["layers"]["blocks"][0]
    assert block["mixer"]["in_proj"]["kernel"].sharding.spec == jax.P(None, "model", None)
    assert block["ff"]["inner"]["kernel"].sharding.spec == jax.P(None, "model")
    assert params["embed"]["embedding"].sharding.spec == jax.P(None, None)


def test_two_processes_equal_one(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["train.steps=6", "train.eval_every=3", "train.checkpoint_every=3", "train.log_every=1"]
    single = _cli(tmp_path / "single", *args, devices=2)
    workers = [_cli(tmp_path / "multi", *args, devices=1, env={
        "FASTWEIGHTS_COORDINATOR": f"127.0.0.1:{port}", "FASTWEIGHTS_NUM_PROCESSES": "2",
        "FASTWEIGHTS_PROCESS_ID": str(i)}) for i in range(2)]
    for proc in [single, *workers]:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    one, two = _losses(tmp_path / "single"), _losses(tmp_path / "multi")
    assert list(one) == list(range(1, 7))
    assert_close(np.array(list(two.values())), np.array(list(one.values())), "float32_other_form")


def test_killed_run_resumes_with_the_same_losses(tmp_path):
    args = ["train.steps=24", "train.eval_every=100", "train.checkpoint_every=4", "train.log_every=1"]
    reference = _cli(tmp_path / "reference", *args)
    victim = _cli(tmp_path / "killed", *args)
    log = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:       # kill once a few steps past a checkpoint are logged
        if log.exists() and len(metrics.read_jsonl(log)) >= 10:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = max(_losses(tmp_path / "killed"))
    assert 10 <= killed_at < 24
    resumed = _cli(tmp_path / "killed", *args)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "resumed from step" in out, out
    reference.communicate(timeout=300)
    expected, got = _losses(tmp_path / "reference"), _losses(tmp_path / "killed")
    assert list(got) == list(range(1, 25))
    assert got == expected           # bitwise: the same floats, step by step


def test_corrupt_latest_checkpoint_falls_back(tmp_path, capfd):
    exp = micro("train.steps=4", "train.checkpoint_every=2", "train.eval_every=100", "train.log_every=1")
    presets.run(exp, tmp_path)
    latest = tmp_path / "checkpoints" / "latest"
    assert sorted(p.name for p in latest.iterdir() if p.name.isdigit()) == ["2", "4"]
    for path in (latest / "4").rglob("*"):      # damage every file of the newest checkpoint
        if path.is_file():
            path.write_bytes(b"\0garbage")
    capfd.readouterr()
    result = presets.run(dataclasses.replace(exp, train=dataclasses.replace(exp.train, steps=6)), tmp_path)
    err = capfd.readouterr().err
    assert "checkpoint at step 4" in err and "cannot be restored" in err and "resumed from step 2" in err
    assert result["last"]["finite"] == 1.0
    assert sorted(_losses(tmp_path)) == [1, 2, 3, 4, 5, 6]


class _Poisoned:
    """An iterator over `batches` with a `poison` flag on train batch `index`."""

    def __init__(self, iterator, index):
        self.iterator, self.index, self.next = iterator, index, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.iterator)
        flag = float(self.next == self.index)
        self.next += 1
        return dict(batch, poison=np.full(batch["targets"].shape, flag, np.float32))

    def get_state(self):
        return {"inner": self.iterator.get_state(), "next": self.next}

    def set_state(self, state):
        self.iterator.set_state(state["inner"])
        self.next = state["next"]


class _NaNAt(associative_recall.AssociativeRecall):
    """The associative-recall task with a NaN loss on train batch `index` (0-based)."""

    def __init__(self, index):
        self.index = index

    def dataset(self, data, split, **kw):
        return _Poisoned(super().dataset(data, split, **kw), self.index if split == "train" else -1)

    def loss(self, model, batch):
        loss, values = super().loss(model, batch)
        poisoned = loss + jnp.where(batch["poison"].max() > 0, jnp.nan, 0.0)
        return poisoned, dict(values, loss=poisoned)


def test_nan_loss_stops_without_a_poisoned_checkpoint(tmp_path):
    exp = micro("train.steps=5", "train.checkpoint_every=1", "train.eval_every=100", "train.log_every=1")
    with pytest.raises(training.NonFiniteLossError, match="at step 3"):
        _train(_NaNAt(2), exp, tmp_path / "stop")
    steps = sorted(int(p.name) for p in (tmp_path / "stop" / "checkpoints" / "latest").iterdir() if p.name.isdigit())
    assert steps == [1, 2]
    result = _train(_NaNAt(2), dataclasses.replace(exp, train=dataclasses.replace(exp.train, nan_policy="skip")),
                    tmp_path / "skip")
    losses = _losses(tmp_path / "skip")
    assert math.isnan(losses[3]) and all(math.isfinite(losses[s]) for s in (1, 2, 4, 5))
    assert result["last"]["finite"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--task", "recall"], "unknown task 'recall'; valid: associative_recall"),
    (["--task", "associative_recall", "--preset", "huge"], "unknown preset 'huge'.*valid: tiny, small"),
    (["--task", "associative_recall", "--set", "model.num_layer=2"], "no field 'num_layer'; valid:.*num_layers"),
    (["--task", "associative_recall", "--set", "model.num_layers=two"], "model.num_layers='two': expected int"),
    (["--task", "associative_recall", "--set", "model.layer.variant=delta_nett"], "unknown variant 'delta_nett'"),
    (["--task", "associative_recall", "--set", "train.nan_policy=ignore"], "choose one of stop, skip"),
    (["--task", "associative_recall", "--set", "numlayers"], "must look like section.field=value"),
    (["--task", "associative_recall", "--set", "model=3"], "model is a section"),
])
def test_cli_errors_list_the_valid_choices(args, message, capsys):
    from fastweights.train import main
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(message, err), err


def test_cli_lists_and_prints_config(capsys):
    from fastweights.train import main
    assert main(["--list"]) == 0
    assert "associative_recall: tiny, small" in capsys.readouterr().out
    assert main(["--task", "associative_recall", "--set", "model.num_layers=3", "--print-config"]) == 0
    assert '"num_layers": 3' in capsys.readouterr().out


@pytest.mark.parametrize("task", list(presets.TASKS))
def test_tiny_preset_of_every_task_learns(task, tmp_path):
    exp = presets.get(task, "tiny", ["train.steps=25", "train.eval_every=25", "train.log_every=1",
                                     "train.progress=false", "train.tensorboard=false"])
    result = presets.run(exp, tmp_path)
    losses = list(_losses(tmp_path).values())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses
    assert (tmp_path / "learning_curves.png").stat().st_size > 5000
    assert result["best_step"] == 25


def test_bfloat16_compute_keeps_float32_master_weights(tmp_path):
    common = ["train.steps=3", "train.eval_every=100", "train.log_every=1"]
    bf16 = presets.run(micro(*common, "train.compute_dtype=bfloat16"), tmp_path / "bf16")
    presets.run(micro(*common), tmp_path / "f32")
    assert {p.dtype for p in jax.tree.leaves(bf16["state"].params)} == {jnp.dtype(jnp.float32)}
    first_bf16, first_f32 = _losses(tmp_path / "bf16")[1], _losses(tmp_path / "f32")[1]
    # The first loss comes from the same float32 weights: it differs by bf16 rounding only.
    assert first_bf16 != first_f32 and abs(first_bf16 - first_f32) < 0.05 * first_f32
    assert all(math.isfinite(v) for v in _losses(tmp_path / "bf16").values())
