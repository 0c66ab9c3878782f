"""GPU checks of every form and kernel, and a timing table against flash-linear-attention.

Not collected by pytest (tests/device is ignored). On the GPU machine:

    pip install --no-deps -e . && pip install --no-deps .wheels/*.whl   # fla-core, einops
    python tests/device/run_device_checks.py --out "$OUT"

Section 1 compiles every non-reference form at realistic shapes, float32 and bfloat16, and
compares values and gradients (random cotangents on outputs and final state; all inputs and
the initial state) with `recurrent` in float32. Section 2 times forward+backward: the chunked
delta rule at B8 T4096 H8 d64 bf16 against FLA's Triton `chunk_delta_rule` and
`fused_recurrent_delta_rule`; the fused recurrent kernels at the WT103 small layer shape
(B96 H8 d16 T256) against a per-token `lax.scan` differentiated by autodiff. Section 3 is
language modelling: training tokens/s of `wt103_small_{delta_net,delta_rnn,delta_lstm,rdn}`
at the paper's batch (96 x 256) with the fastest forms against `implementation="recurrent"`
(`benchmarks/bench_lm_train.py`), and the sliding-window evaluator batched against batch 1
(`fastweights.lm.sliding_window`, the WT103 small Delta Net, windows of 256). Section 4 is RL:
frames/s of the whole actor-learner loop (`fastweights.rl.loop.train`) with the deep IMPALA
torso on Pong for the LSTM, Delta Net and RDN cores (the goal: 25k frames/s, beyond
Cleanba's 24.6k on one A100 with 10 CPUs). Its environment wheels are not in the GPU image:
`pip download gymnasium ale-py --no-deps -d .wheels` here, carried with `.wheels`.

`--sections 3,4` runs only those sections.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[2]))
import fastweights as fw  # noqa: E402
from benchmarks.common import forward_fn  # noqa: E402
from fastweights.testing import TOLERANCES, example_inputs  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# (variant, options, implementation): every non-reference form that runs on a GPU, for every
# option set of the variant's spec.
CHECKS = [(name, dict(options), impl) for name, variant in fw.VARIANTS.items() if variant.has_core
          for options in variant.cases
          for impl, form in variant.implementations.items() if impl != "recurrent" and form.backend in (None, "gpu")]


def _errors(actual, expected):
    a = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(actual)])
    e = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(expected)])
    err = np.abs(a - e)
    return float(err.max()), float(np.sqrt(np.mean(err ** 2)) / max(np.sqrt(np.mean(e ** 2)), 1e-30))


def check(name, options, impl, dtype, shape):
    variant = fw.get(name)
    args, kwargs = example_inputs(name, 0, dtype=dtype, **shape, **options)
    f32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)  # noqa: E731
    _, zero = jax.eval_shape(lambda a: variant.fn(*a, **kwargs, **options), args)
    state0 = jax.tree.map(lambda s: 0.3 * jax.random.normal(jax.random.PRNGKey(1), s.shape, jnp.float32), zero)
    if hasattr(state0, "z"):
        state0 = state0._replace(z=jnp.abs(state0.z) + 1.0)

    def run(implementation, a, kw):
        return variant.fn(*a, **kw, **options, initial_state=state0, implementation=implementation)

    ref = jax.jit(lambda a, kw: run("recurrent", a, kw))(f32(args), f32(kwargs))
    out = jax.jit(lambda a, kw: run(impl, a, kw))(args, kwargs)
    cot = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(2), x.shape, jnp.float32), ref)

    def grads(implementation, a, kw):
        loss = lambda a, kw, s: sum(jnp.vdot(x.astype(jnp.float32), c) for x, c in zip(  # noqa: E731
            jax.tree.leaves(variant.fn(*a, **kw, **options, initial_state=s, implementation=implementation)),
            jax.tree.leaves(cot)))
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(a, kw, state0)

    g_ref, g_out = grads("recurrent", f32(args), f32(kwargs)), grads(impl, args, kwargs)
    value_err, grad_err = _errors(out, ref), _errors(g_out, g_ref)
    if dtype == jnp.float32:
        limit = TOLERANCES["float32_other_form"]["rtol"] * 10  # rel-RMSE bound; per-element is the CPU tests' job
    else:
        limit = 8e-3  # bf16 inputs and outputs: FLA's rel-RMSE threshold for its delta-rule kernels
    ok = value_err[1] <= limit and grad_err[1] <= 2 * limit
    return dict(variant=name, options=options, impl=impl, dtype=jnp.dtype(dtype).name, shape=shape,
                value_max_abs=value_err[0], value_rel_rmse=value_err[1], grad_max_abs=grad_err[0],
                grad_rel_rmse=grad_err[1], ok=bool(ok))


def _time_jax(fn, args, repeats=10):
    jax.block_until_ready(fn(args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_jax(name, impl, options, dtype, shape):
    args, kwargs = example_inputs(name, 0, dtype=dtype, **shape, **options)
    forward = forward_fn(name, impl, kwargs)
    train = jax.jit(jax.grad(lambda a: jnp.sum(jnp.square(forward(a).astype(jnp.float32)))))
    return _time_jax(train, args), _time_jax(jax.jit(forward), args)


def time_fla(shape, dtype_name):
    import torch
    from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
    dtype = getattr(torch, dtype_name)
    B, T, H, D = shape["batch"], shape["time"], shape["heads"], shape["key_dim"]
    g = torch.Generator(device="cuda").manual_seed(0)
    phi = lambda x: (torch.nn.functional.elu(x) + 1) / (torch.nn.functional.elu(x) + 1).sum(-1, keepdim=True)  # noqa: E731
    q = phi(torch.randn(B, T, H, D, device="cuda", generator=g)).to(dtype).requires_grad_()
    k = phi(torch.randn(B, T, H, D, device="cuda", generator=g)).to(dtype).requires_grad_()
    v = torch.randn(B, T, H, D, device="cuda", generator=g).to(dtype).requires_grad_()
    beta = torch.sigmoid(torch.randn(B, T, H, device="cuda", generator=g)).to(dtype).requires_grad_()
    rows = {}
    for label, fn in [("fla:chunk_delta_rule", chunk_delta_rule), ("fla:fused_recurrent_delta_rule",
                                                                     fused_recurrent_delta_rule)]:
        def train():
            o, _ = fn(q, k, v, beta, scale=1.0)
            o.float().square().sum().backward()

        def forward():
            with torch.no_grad():
                fn(q, k, v, beta, scale=1.0)

        for run, key in ((train, "fwd_bwd_s"), (forward, "fwd_s")):
            run()
            torch.cuda.synchronize()
            times = []
            for _ in range(10):
                start = time.perf_counter()
                run()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            rows.setdefault(label, {})[key] = float(np.median(times))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "device_out"))
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--skip-timings", action="store_true", help="skip section 2")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a dry run of the script on CPU")
    parser.add_argument("--sections", default="1,2,3,4", help="comma-separated sections to run")
    parser.add_argument("--rl-seconds", type=float, default=60.0, help="section 4: seconds of loop per core")
    a = parser.parse_args()
    sections = {int(x) for x in a.sections.split(",")}
    a.skip_checks = a.skip_checks or 1 not in sections
    a.skip_timings = a.skip_timings or 2 not in sections
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"devices: {jax.devices()}, jax {jax.__version__}", flush=True)
    results = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__, "checks": [], "timings": []}

    def save():
        (out / "device_results.json").write_text(json.dumps(results, indent=1))

    if not a.skip_checks:
        print("\n== 1. forms and kernels against recurrent (float32 reference)", flush=True)
        for name, options, impl in CHECKS:
            for dtype in (jnp.float32, jnp.bfloat16):
                d = 16 if fw.get(name).family == "recurrent" else 64
                shape = dict(batch=2, heads=4, time=20 if a.quick else 300, key_dim=d, value_dim=d)
                try:
                    row = check(name, options, impl, dtype, shape)
                except Exception as error:  # noqa: BLE001 (report every failure, keep going)
                    row = dict(variant=name, options=options, impl=impl, dtype=jnp.dtype(dtype).name,
                               error=f"{type(error).__name__}: {str(error)[:300]}", ok=False)
                    traceback.print_exc(limit=2)
                results["checks"].append(row)
                print(json.dumps(row), flush=True)
                save()

    if not a.skip_timings:
        kernel_timings(a, results, save)
    if 3 in sections:
        language_model_timings(a, results, save)
    if 4 in sections:
        rl_timings(a, results, save)
    summary(results)


def kernel_timings(a, results, save):
    print("\n== 2. timings (forward+backward, median of 10)", flush=True)
    big = dict(batch=8, time=4096, heads=8, key_dim=64, value_dim=64)
    small = dict(batch=96, time=256, heads=8, key_dim=16, value_dim=16)
    if a.quick:
        big, small = dict(big, batch=1, time=128, heads=2), dict(small, batch=2, time=32, heads=2)
    tokens = big["batch"] * big["time"]
    for impl in ("pallas_gpu_chunked", "chunked", "pallas_gpu_sequential", "recurrent"):
        try:
            t_train, t_fwd = time_jax("delta_net", impl, {}, jnp.bfloat16, big)
            row = dict(case="delta_net B8 T4096 H8 d64 bf16", impl=impl, fwd_bwd_ms=t_train * 1e3,
                       fwd_ms=t_fwd * 1e3, fwd_bwd_tok_s=tokens / t_train)
        except Exception as error:  # noqa: BLE001
            row = dict(case="delta_net B8 T4096 H8 d64 bf16", impl=impl, error=f"{type(error).__name__}: {str(error)[:300]}")
        results["timings"].append(row)
        print(json.dumps(row), flush=True)
        save()
    try:
        for label, t in time_fla(big, "bfloat16").items():
            row = dict(case="delta_net B8 T4096 H8 d64 bf16", impl=label, fwd_bwd_ms=t["fwd_bwd_s"] * 1e3,
                       fwd_ms=t["fwd_s"] * 1e3, fwd_bwd_tok_s=tokens / t["fwd_bwd_s"])
            results["timings"].append(row)
            print(json.dumps(row), flush=True)
    except Exception as error:  # noqa: BLE001
        results["timings"].append(dict(case="fla", error=f"{type(error).__name__}: {str(error)[:300]}"))
        traceback.print_exc(limit=3)
    save()

    tokens = small["batch"] * small["time"]
    for name, variant in fw.VARIANTS.items():
        if variant.family != "recurrent":
            continue
        options = dict(variant.paper_options)
        for impl in ("pallas_gpu_sequential", "recurrent", "scan_autodiff"):
            try:
                t_train, t_fwd = time_jax(name, impl, options, jnp.float32, small)
                row = dict(case=f"{name} WT103-small B96 T256 H8 d16 f32", impl=impl, fwd_bwd_ms=t_train * 1e3,
                           fwd_ms=t_fwd * 1e3, fwd_bwd_tok_s=tokens / t_train)
            except Exception as error:  # noqa: BLE001
                row = dict(case=name, impl=impl, error=f"{type(error).__name__}: {str(error)[:300]}")
            results["timings"].append(row)
            print(json.dumps(row), flush=True)
            save()


def language_model_timings(a, results, save):
    """Section 3: WT103 small presets, training tokens/s and sliding-window evaluation."""
    from benchmarks.bench_lm_train import _step
    from fastweights import lm, presets
    from fastweights.nn import presets as model_presets
    print("\n== 3. language modelling", flush=True)
    batch = 2 if a.quick else 96
    for model in ("delta_net", "delta_rnn", "delta_lstm", "rdn"):
        exp = presets.get("lm", f"wt103_small_{model}", [f"data.batch_size={batch}"])
        for impl in (None, "recurrent"):
            try:
                run, tokens = _step(presets.get_task("lm"), exp, impl, batch)
                run(), run()                                      # compile, warm
                times = []
                for _ in range(3 if a.quick else 10):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
                step_s = sorted(times)[len(times) // 2]
                row = dict(case=f"train wt103_small_{model} B{batch} T256", impl=impl or "fastest",
                           fwd_bwd_ms=step_s * 1e3, tokens_per_s=tokens / step_s)
            except Exception as error:  # noqa: BLE001
                row = dict(case=f"train wt103_small_{model}", impl=impl or "fastest",
                           error=f"{type(error).__name__}: {str(error)[:300]}")
            results["timings"].append(row)
            print(json.dumps(row), flush=True)
            save()
    config = model_presets.get("wt103_small_delta_net", dropout=0.0)
    if a.quick:
        config = model_presets.get("wt103_small_delta_net", dropout=0.0, num_layers=2, vocab_size=1000,
                                   cutoffs=(200,))
    model = model_presets.build(config)
    model.eval()
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, 256 + (64 if a.quick else 1024)).astype(np.int32)
    for batch_size in (1, 64, 256):
        try:
            lm.sliding_window(model, tokens[:256 + 65], batch_size=batch_size, progress=False)      # compile
            result = lm.sliding_window(model, tokens, batch_size=batch_size, progress=False)
            row = dict(case="sliding window wt103_small_delta_net", impl=f"batch {batch_size}",
                       tokens_per_s=result["tokens_per_s"])
        except Exception as error:  # noqa: BLE001
            row = dict(case="sliding window", impl=f"batch {batch_size}",
                       error=f"{type(error).__name__}: {str(error)[:300]}")
        results["timings"].append(row)
        print(json.dumps(row), flush=True)
        save()


def rl_timings(a, results, save):
    """Section 4: the whole actor-learner loop's frames/s, deep torso, per core."""
    import dataclasses
    import tempfile

    from fastweights import metrics
    from fastweights.rl import loop, presets
    print("\n== 4. RL: frames/s of the actor-learner loop", flush=True)
    threads = max(1, (os.cpu_count() or 2) - 4)      # leave cores for the learner and the host
    for core in ("lstm", "delta_net", "rdn"):
        if a.quick:
            exp = presets.get("minatar_tiny", [f"agent.core={core}"])
        else:
            exp = presets.get(f"paper_{core}", ["env.game=Pong", "env.num_envs=32", f"run.num_actor_threads={threads}",
                                                "run.batch_size=64", f"run.queue_size={2 * threads}"])
        updates = 10 if a.quick else max(20, int(a.rl_seconds * 6))
        exp = dataclasses.replace(exp, run=dataclasses.replace(
            exp.run, total_steps=exp.steps_per_update * updates, log_every=2, checkpoint_every=10**9,
            eval_episodes=0, progress=False, tensorboard=False, plot=False))
        try:
            with tempfile.TemporaryDirectory() as run_dir:
                start = time.perf_counter()
                loop.train(exp, run_dir, resume=False)
                wall = time.perf_counter() - start
                rows = [r for r in metrics.read_jsonl(run_dir)][2:]        # after compilation
            fps = sorted(r["frames_per_s"] for r in rows)[len(rows) // 2] if rows else float("nan")
            row = dict(case=f"rl loop {exp.env.game} {exp.agent.torso} torso B{exp.run.batch_size} T{exp.run.unroll_length} "
                            f"{exp.run.num_actor_threads}x{exp.env.num_envs} envs", impl=core,
                       frames_per_s=fps, policy_lag=float(np.mean([r["policy_lag"] for r in rows])) if rows else None,
                       wall_s=wall)
        except Exception as error:  # noqa: BLE001
            row = dict(case="rl loop", impl=core, error=f"{type(error).__name__}: {str(error)[:300]}")
            traceback.print_exc(limit=3)
        results["timings"].append(row)
        print(json.dumps(row), flush=True)
        save()


def summary(results):
    print("\nsummary:")
    for row in results["checks"]:
        print(f"  {'ok ' if row['ok'] else 'BAD'} {row['variant']:<20} {row['impl']:<22} {row['dtype']:<9}"
              f" value rel-RMSE {row.get('value_rel_rmse', float('nan')):.1e}"
              f" grad rel-RMSE {row.get('grad_rel_rmse', float('nan')):.1e} {row.get('error', '')[:80]}")
    for row in results["timings"]:
        print(f"  {row.get('case', ''):<42} {row.get('impl', ''):<32} "
              f"{row.get('fwd_bwd_ms', float('nan')):9.2f} ms fwd+bwd {row.get('fwd_ms', float('nan')):9.2f} ms fwd"
              f" {row.get('tokens_per_s', float('nan')):10.0f} tok/s"
              + (f" {row['frames_per_s']:10.0f} frames/s" if "frames_per_s" in row else "")
              + f" {row.get('error', '')[:80]}")


if __name__ == "__main__":
    main()
