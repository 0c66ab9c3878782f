"""Shared pieces of the benchmark scripts: timing, compiled memory, the plain-scan baseline,
table printing and JSON output. Never imported by the library."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from fastweights import registry
from fastweights.ops.common.sequence import scan_time

RESULTS = Path(__file__).parent / "results"

def paper_options(name: str) -> dict:
    """The options of the paper's main table for variant `name` (its spec's)."""
    return dict(registry.get(name).paper_options)


def runnable_forms(name: str) -> list[str]:
    """The forms of `name` that run here: a Pallas kernel only on its own backend (the CPU
    tests run them in interpret mode)."""
    return [n for n, form in registry.get(name).implementations.items()
            if form.backend in (None, jax.default_backend())]


def machine() -> str:
    device = jax.devices()[0]
    return f"{device.platform}:{getattr(device, 'device_kind', '')} ({os.cpu_count()} cpus, {platform.machine()})"


def timed(fn, *args, repeats: int = 3, warmup: int = 3) -> float:
    """Median wall time of `fn(*args)` after `warmup` calls (compilation excluded): the first
    calls of a fresh process also grow its heap, which costs page faults later calls skip."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def temp_memory_mb(jitted, *args) -> float:
    """Peak temporary memory of the compiled computation (XLA's buffer assignment), in MiB."""
    return jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2 ** 20


def forward_fn(name: str, implementation: str, kwargs):
    """Outputs of `name` through `implementation`; "scan_autodiff" is the baseline: a plain
    `lax.scan` of the variant's `step`, differentiated by autodiff with every state stored."""
    variant = registry.get(name)
    options = paper_options(name)
    if implementation != "scan_autodiff":
        return lambda args: variant.fn(*args, **kwargs, **options, implementation=implementation)[0]

    step_options = variant.step_options(options) | dict(kwargs)

    def plain(args):
        per_step, rest = variant.split_time_inputs(args)
        _, state = jax.eval_shape(lambda a: variant.fn(*a, **kwargs, **options), args)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state)
        flat, treedef = jax.tree.flatten(per_step)

        def step(s, *x):
            return variant.step(s, *jax.tree.unflatten(treedef, list(x)), *rest, **step_options)

        return scan_time(step, zeros, tuple(flat), checkpoint_every=None)[0]

    return plain


def loss_fn(forward):
    return lambda args: jnp.sum(jnp.square(forward(args).astype(jnp.float32)))


def write_json(name: str, payload) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def print_table(rows, columns):
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)), flush=True)
