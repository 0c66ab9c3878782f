"""Language-model tools (`fastweights.lm`): sliding-window evaluation throughput and the
memory of streaming generation.

    python -m benchmarks.bench_lm --part sliding [--batch-sizes 64,128,256] [--repeats 3]
    python -m benchmarks.bench_lm --part generation [--tokens 1024,16384]

`sliding`: small WT103-structured LMs (4 layers, D=128, 8 heads of 16, feed-forward 512,
vocabulary 10k, adaptive softmax), windows of 256, stride 1: `sliding_window(...,
batch_size=1)` (the official protocol, one window per call) against the same function at
larger batch sizes, interleaved repeats, windows/s from the best of `--repeats` (compilation
excluded by a warm-up call); then stride 16. Also the facts that explain the ratio: XLA's
FLOP count per window, the FLOP rate reached, one core against two, and the FLOP rate of a
plain feed-forward matmul chain on this machine.

`generation`: peak memory of generating 1k and 16k tokens with `stream` and with
`LanguageModel.generate`, each in a fresh subprocess (peak RSS from `getrusage`, plus the
device's `memory_stats()` peak where the backend has one), and for `stream` how much the
resident memory grew between token 1024 and the last token.

Prints markdown tables; writes benchmarks/results/lm_<part>_<platform>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

WINDOW = 256
VARIANTS = {"delta_net": "wt103_small_delta_net", "delta_rnn": "wt103_small_delta_rnn",
            "transformer": "wt103_small_transformer"}


def _config(name: str, implementation: str | None = None):
    from fastweights.nn import presets
    from fastweights.nn.config import LayerConfig
    config = presets.get(VARIANTS[name], vocab_size=10_000, num_layers=4, ff_dim=512, cutoffs=(2_000, 5_000),
                         dropout=0.0)
    if implementation is not None:
        import dataclasses
        config = dataclasses.replace(config, layer=dataclasses.replace(config.layer, implementation=implementation))
    return config


def _model(name: str, implementation: str | None = None):
    from fastweights.nn import presets
    return presets.build(_config(name, implementation), rngs=0)


def _tokens(n: int, seed: int = 0):
    import numpy as np
    return np.random.default_rng(seed).integers(0, 10_000, n).astype(np.int32)


def _flops_per_window(model, batch_size: int) -> float:
    """XLA's FLOP count of one batched call, per window (stride 1)."""
    import jax.numpy as jnp

    from fastweights.lm import _compiled, evaluation
    call = _compiled.bind(evaluation._scored_nll, model, scored=1)
    x = jnp.zeros((batch_size, WINDOW), jnp.int32)
    compiled = call.func.lower(call.args[0], x, x[:, -1:]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch_size


def _matmul_gflops() -> float:
    """The best FLOP rate of `relu(x @ W1) @ W2` (128 -> 512 -> 128, the feed-forward
    sublayer) over row counts 256..16k: what XLA reaches here on the model's largest op."""
    import jax
    import jax.numpy as jnp
    best = 0.0
    for rows in (256, 4096, 16384):
        a, b, c = jnp.ones((rows, 128)), jnp.ones((128, 512)), jnp.ones((512, 128))
        fn = jax.jit(lambda a, b, c: jax.nn.relu(a @ b) @ c)
        fn(a, b, c).block_until_ready()
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(10):
                out = fn(a, b, c)
            out.block_until_ready()
            best = max(best, 10 * 4 * rows * 128 * 512 / (time.perf_counter() - start) / 1e9)
    return best


def _one_core(name: str, windows: int, batch_sizes: list[int], repeats: int) -> dict:
    """`_sliding_rates` in a subprocess pinned to one core (set before jax starts)."""
    code = ("import os, sys, json; os.sched_setaffinity(0, {0}); sys.argv = sys.argv[:1]; "
            "from benchmarks.bench_lm import _sliding_rates; "
            f"print(json.dumps(_sliding_rates({name!r}, {windows}, {batch_sizes!r}, {repeats})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    return {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def _sliding_rates(name: str, windows: dict | int, batch_sizes: list[int], repeats: int,
                   implementation: str | None = None, stride: int = 1) -> dict:
    """`{batch_size: (windows, windows/s)}` of `sliding_window`, the best of `repeats` runs,
    the batch sizes interleaved; `windows`: per batch size, or one count for all but batch 1,
    which gets 1/8 of it (the same code, just slower)."""
    from fastweights.lm import sliding_window
    model = _model(name, implementation)
    if isinstance(windows, int):
        windows = {b: windows // 8 if b == 1 else windows for b in batch_sizes}
    splits = {b: _tokens(windows[b] * stride + WINDOW + 1, seed=b) for b in batch_sizes}
    for b in batch_sizes:       # compile (window 0, the batched call) outside the clock
        sliding_window(model, splits[b][:WINDOW + 2 + stride], window=WINDOW, stride=stride, batch_size=b,
                       progress=False)
    best = {b: (windows[b], 0.0) for b in batch_sizes}
    for _ in range(repeats):
        for b in batch_sizes:
            start = time.perf_counter()
            result = sliding_window(model, splits[b], window=WINDOW, stride=stride, batch_size=b, progress=False)
            seconds = time.perf_counter() - start
            best[b] = (result["windows"], max(best[b][1], result["windows"] / seconds))
    return best


def _call_rate(name: str, repeats: int) -> float:
    """Windows/s of the compiled batch-1 call alone, the same input back to back (no host
    work between calls): what the batch-1 loop would reach with zero overhead."""
    import jax.numpy as jnp

    from fastweights.lm import _compiled, evaluation
    call = _compiled.bind(evaluation._scored_nll, _model(name), scored=1)
    x = jnp.asarray(_tokens(WINDOW)[None])
    call(x, x[:, -1:]).block_until_ready()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(64):
            out = call(x, x[:, -1:])
        out.block_until_ready()
        best = max(best, 64 / (time.perf_counter() - start))
    return best


def _row(variant, stride, batch_size, rate, base=None, flops=None) -> dict:
    """`tokens_per_s`: the steady-state scored tokens/s, `stride x windows/s` (window 0's
    extra `window - stride` targets not counted)."""
    windows, per_s = rate
    row = dict(variant=variant, stride=stride, batch_size=batch_size, windows=windows,
               windows_per_s=round(per_s, 1), tokens_per_s=round(stride * per_s, 1))
    if base is not None:
        row["vs_batch_1"] = f"{per_s / base[1]:.2f}x"
    if flops is not None:
        row["gflop_per_s"] = round(per_s * flops / 1e9, 1)
    return row


def sliding(a) -> dict:
    from benchmarks.common import print_table
    batch_sizes = [1] + [int(b) for b in a.batch_sizes.split(",")]
    windows = {b: a.windows_batch_1 if b == 1 else a.windows for b in batch_sizes}
    rows, notes = [], {}
    for name in a.variants.split(","):
        rates = _sliding_rates(name, windows, batch_sizes, a.repeats)
        model = _model(name)
        flops = {b: _flops_per_window(model, b) for b in batch_sizes}
        notes[f"{name}_mflop_per_window"] = {b: round(f / 1e6, 1) for b, f in flops.items()}
        notes[f"{name}_batch_1_call_alone_windows_per_s"] = round(_call_rate(name, a.repeats), 1)
        rows += [_row(name, 1, b, rates[b], rates[1], flops[b]) for b in batch_sizes]
        print(f"{name}: XLA FLOPs per window (M): {notes[f'{name}_mflop_per_window']}; the batch-1 call "
              f"alone: {notes[f'{name}_batch_1_call_alone_windows_per_s']} windows/s", flush=True)
    small = {1: max(1, a.windows_batch_1 // 4), 64: max(64, a.windows // 2)}
    for name in a.variants.split(","):     # stride 16: 16 scored tokens per window
        rates = _sliding_rates(name, small, [1, 64], a.repeats, stride=16)
        rows += [_row(name, 16, b, rates[b], rates[1]) for b in (1, 64)]
    # What explains the ratio: the forward form of the delta rule, one core against two.
    rates = _sliding_rates("delta_net", small, [1, 64], a.repeats, implementation="recurrent")
    rows += [_row("delta_net, implementation='recurrent'", 1, b, rates[b], rates[1]) for b in (1, 64)]
    rates = _one_core("delta_net", small, [1, 64], a.repeats)
    rows += [_row("delta_net, 1 core", 1, b, tuple(rates[b]), tuple(rates[1])) for b in (1, 64)]
    print()
    print_table(rows, ["variant", "stride", "batch_size", "windows", "windows_per_s", "tokens_per_s",
                       "vs_batch_1", "gflop_per_s"])
    matmul = _matmul_gflops()
    print(f"\nfeed-forward matmul chain (128 -> 512 -> 128), best over 256..16k rows: {matmul:.1f} GFLOP/s")
    return dict(rows=rows, notes=notes, matmul_gflop_per_s=round(matmul, 1), window=WINDOW,
                model="4 layers, D128, 8x16 heads, ff 512, vocab 10k, adaptive (2k, 5k), dropout 0")


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _generate_once(name: str, method: str, num_tokens: int) -> dict:
    """Run in a fresh process: generate `num_tokens` and report the peak memory."""
    import jax
    import jax.numpy as jnp

    from fastweights.lm import stream
    model = _model(name)
    prompt = _tokens(16)
    start = time.perf_counter()
    after_1k = None
    if method == "stream":
        count = 0
        for count, _ in enumerate(stream(model, prompt, num_tokens, seed=0, top_k=50, top_p=0.95), 1):
            if count == 1024:
                after_1k = _current_rss_mb()
    else:
        out, _ = model.generate(jnp.asarray(prompt[None]), num_tokens, key=jax.random.key(0), top_k=50, top_p=0.95)
        count = int(jax.block_until_ready(out).shape[1])
    seconds = time.perf_counter() - start
    stats = jax.local_devices()[0].memory_stats() or {}
    return dict(tokens=count, seconds=seconds, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                growth_after_1k_mb=None if after_1k is None else _current_rss_mb() - after_1k,
                device_peak_mb=stats.get("peak_bytes_in_use", 0) / 2 ** 20 if stats else None)


def generation(a) -> dict:
    from benchmarks.common import print_table
    counts = [int(t) for t in a.tokens.split(",")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    rows = []
    for name in a.variants.split(","):
        for method in ("stream", "generate"):
            row = dict(variant=name, method=method)
            for n in counts:
                code = ("import json, sys; sys.argv = sys.argv[:1]; from benchmarks.bench_lm import _generate_once; "
                        f"print(json.dumps(_generate_once({name!r}, {method!r}, {n})))")
                out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                     env=env).stdout
                result = json.loads(out.strip().splitlines()[-1])
                assert result["tokens"] == n, result
                label = f"{n // 1024}k" if n % 1024 == 0 else str(n)
                row[f"rss_mb_{label}"] = round(result["peak_rss_mb"], 1)
                row[f"wall_s_{label}"] = round(result["seconds"], 1)    # compilation included
                if n == counts[-1] and result["growth_after_1k_mb"] is not None:
                    row["stream_rss_growth_after_1k_mb"] = round(result["growth_after_1k_mb"], 1)
                if result["device_peak_mb"] is not None:
                    row[f"device_mb_{label}"] = round(result["device_peak_mb"], 1)
            first, last = (f"{n // 1024}k" if n % 1024 == 0 else str(n) for n in (counts[0], counts[-1]))
            row["ratio"] = f"{row[f'rss_mb_{last}'] / row[f'rss_mb_{first}']:.3f}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print_table(rows, list(dict.fromkeys(c for r in rows for c in r)))
    return dict(rows=rows, model="4 layers, D128, 8x16 heads, ff 512, vocab 10k, adaptive (2k, 5k); "
                "top_k=50, top_p=0.95, prompt 16 tokens; transformer window 256")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("sliding", "generation"), required=True)
    parser.add_argument("--variants", default=None, help="default: delta_net,delta_rnn (sliding), "
                        "delta_net,delta_rnn,transformer (generation)")
    parser.add_argument("--batch-sizes", default="64,128,256")
    parser.add_argument("--windows", type=int, default=512, help="windows per batched run")
    parser.add_argument("--windows-batch-1", type=int, default=256, help="windows per batch-1 run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", default="1024,16384")
    parser.add_argument("--no-write", action="store_true", help="print only (trial runs)")
    a = parser.parse_args(argv)
    import jax

    from benchmarks.common import machine, write_json
    a.variants = a.variants or ("delta_net,delta_rnn" if a.part == "sliding" else "delta_net,delta_rnn,transformer")
    load_before = os.getloadavg()[0]
    print(f"machine: {machine()}, jax {jax.__version__}, float32; load average {load_before:.1f}\n", flush=True)
    payload = sliding(a) if a.part == "sliding" else generation(a)
    # Other work on the machine slows every row; the interleaved best-of repeats keep the
    # ratios fair, not the absolute rates.
    load = dict(before=round(load_before, 2), after=round(os.getloadavg()[0], 2))
    print(f"load average (1 min): {load['before']} before, {load['after']} after", flush=True)
    payload = dict(machine=machine(), jax=jax.__version__, part=a.part, load_average=load, **payload)
    if not a.no_write:
        path = write_json(f"lm_{a.part}_{jax.devices()[0].platform}", payload)
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
