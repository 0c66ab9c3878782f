"""Shared plumbing of every sequence op: shape checks, the dtype policy, initial states,
the time scan and the choice of implementation.

Dtype policy: inputs may be any float dtype; the state and all accumulation are float32
(float64 when the inputs are float64); outputs come back in the inputs' dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

# Every implementation name the library knows; each variant offers a subset.
KNOWN_IMPLEMENTATIONS = ("recurrent", "chunked", "pallas_gpu_chunked", "pallas_gpu_sequential",
                         "pallas_tpu_chunked", "pallas_tpu_sequential")
# Names before the forms said chunked or sequential.
RENAMED = {"pallas_gpu": ("pallas_gpu_chunked", "pallas_gpu_sequential"),
           "pallas_tpu": ("pallas_tpu_chunked", "pallas_tpu_sequential"),
           "pallas_gpu_recurrent": ("pallas_gpu_sequential",), "pallas_tpu_recurrent": ("pallas_tpu_sequential",)}

_DIM_NAMES = {"B": "batch", "T": "time", "H": "heads", "K": "key dim", "V": "value dim", "G": "gates",
              "F": "fast hidden dim", "L": "depth", "M": "2 * depth"}


def check_shapes(op: str, arrays: Mapping[str, Any], layouts: Mapping[str, str],
                 fixed: Mapping[str, int] | None = None) -> dict[str, int]:
    """Checks each array against its layout (one letter per axis, e.g. `"BTHK"`).

    A letter must have the same size wherever it appears (and the size in `fixed`, if
    given). Returns the size of every letter. Raises `ValueError` naming the array.
    """
    sizes: dict[str, int] = dict(fixed or {})
    source = {letter: "required" for letter in sizes}
    for name, x in arrays.items():
        layout = layouts[name]
        shape = tuple(jnp.shape(x))
        pretty = "[" + ", ".join(layout) + "]"
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"{op}: {name} must be a floating-point array, got dtype {jnp.result_type(x)}")
        if len(shape) != len(layout):
            raise ValueError(f"{op}: {name} must have shape {pretty}, got {shape}")
        for letter, size in zip(layout, shape):
            if letter in sizes and sizes[letter] != size:
                raise ValueError(
                    f"{op}: {name} has shape {shape} ({pretty}) but {_DIM_NAMES.get(letter, letter)} "
                    f"{letter}={size} does not match {letter}={sizes[letter]} ({source[letter]})")
            if letter not in sizes:
                sizes[letter], source[letter] = size, f"from {name}"
    return sizes


def dtype_policy(*arrays: Any) -> tuple[jnp.dtype, jnp.dtype]:
    """Returns `(output dtype, accumulation dtype)` for the given inputs."""
    out_dtype = jnp.result_type(*arrays)
    return out_dtype, jnp.promote_types(out_dtype, jnp.float32)


def prepare_state(op: str, initial_state: Any, zeros: Any) -> Any:
    """Returns `zeros` if `initial_state` is None, else `initial_state` checked against the
    structure and shapes of `zeros` and cast to its dtypes."""
    if initial_state is None:
        return zeros
    if isinstance(zeros, tuple) and hasattr(zeros, "_fields") and type(initial_state) is not type(zeros):
        if isinstance(initial_state, Mapping):
            initial_state = type(zeros)(**initial_state)
        elif isinstance(initial_state, (tuple, list)) and len(initial_state) == len(zeros):
            initial_state = type(zeros)(*initial_state)
    expected = jax.tree_util.tree_flatten_with_path(zeros)[0]
    got, got_def = jax.tree_util.tree_flatten_with_path(initial_state)
    described = ", ".join(f"{jax.tree_util.keystr(p)}: {tuple(x.shape)}" for p, x in expected)
    if got_def != jax.tree.structure(zeros):
        raise ValueError(f"{op}: initial_state must be a {type(zeros).__name__} with {described}; "
                         f"got {jax.tree.structure(initial_state)}")
    for (path, want), (_, have) in zip(expected, got):
        if tuple(jnp.shape(have)) != tuple(want.shape):
            raise ValueError(f"{op}: initial_state{jax.tree_util.keystr(path)} must have shape "
                             f"{tuple(want.shape)}, got {tuple(jnp.shape(have))} (expected {described})")
    return jax.tree.map(lambda have, want: jnp.asarray(have, want.dtype), initial_state, zeros)


# Training memory of the scan: the backward pass keeps the state only at every
# CHECKPOINT_EVERY-th step and recomputes the steps in between (`jax.checkpoint` per block),
# so T steps cost O(T/C + C) states instead of T states (C = 64 at T = 4096: 128 vs 4096).
CHECKPOINT_EVERY = 64


def scan_time(step: Callable[..., tuple[Any, Any]], state: Any, inputs: Any, *,
              checkpoint_every: int | None = CHECKPOINT_EVERY) -> tuple[Any, Any]:
    """Runs `step(state, *inputs_t) -> (state, output_t)` over axis 1 (time) of every
    array in the tuple `inputs`; returns `(outputs with time on axis 1, final state)`.

    With `checkpoint_every = C`, steps run in blocks of C under `jax.checkpoint`: values are
    unchanged, and autodiff stores one state per block instead of one per step.
    """
    xs = jax.tree.map(lambda x: jnp.moveaxis(x, 1, 0), inputs)
    time = jax.tree.leaves(xs)[0].shape[0]

    def body(carry, x_t):
        return step(carry, *x_t)

    if not checkpoint_every or time <= checkpoint_every:
        state, ys = jax.lax.scan(body, state, xs)
    else:
        c, n = checkpoint_every, time // checkpoint_every
        blocks = jax.tree.map(lambda x: x[:n * c].reshape(n, c, *x.shape[1:]), xs)
        run_block = jax.checkpoint(lambda carry, x_block: jax.lax.scan(body, carry, x_block))
        state, ys = jax.lax.scan(run_block, state, blocks)
        ys = jax.tree.map(lambda y: y.reshape(n * c, *y.shape[2:]), ys)
        if time % c:  # the ragged tail, plain
            state, ys_tail = jax.lax.scan(body, state, jax.tree.map(lambda x: x[n * c:], xs))
            ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)
    return jax.tree.map(lambda y: jnp.moveaxis(y, 0, 1), ys), state


def run_recurrent(op: str, step: Callable[..., tuple[Any, Array]], inputs: Mapping[str, Any],
                  layouts: Mapping[str, str], make_state: Callable[[dict[str, int], Any], Any],
                  initial_state: Any, *, fixed: Mapping[str, int] | None = None) -> tuple[Array, Any]:
    """The `recurrent` form of every variant: check, cast, scan `step`, cast back.

    Args:
      op: name used in error messages.
      step: `step(state, *inputs_t) -> (state, output_t)`, positional in `inputs` order.
      inputs: named arrays `[B, T, ...]`.
      layouts: one layout string per input, e.g. `{"q": "BTHK", "beta": "BTH"}`.
      make_state: `(sizes, dtype) -> zero state` from the letter sizes.
      initial_state: a state, or None for zeros.
      fixed: letter sizes the inputs must have.

    Returns:
      `(outputs [B, T, ...] in the inputs' dtype, final state in the accumulation dtype)`.
    """
    sizes = check_shapes(op, inputs, layouts, fixed)
    out_dtype, acc_dtype = dtype_policy(*inputs.values())
    state = prepare_state(op, initial_state, make_state(sizes, acc_dtype))
    xs = tuple(jnp.asarray(x, acc_dtype) for x in inputs.values())
    outputs, state = scan_time(step, state, xs)
    return outputs.astype(out_dtype), state


@dataclasses.dataclass(frozen=True)
class Form:
    """One implementation of a variant's sequence function (an `implementation=` value).

    Attributes:
      fn: `fn(*inputs, **options, initial_state=...) -> (outputs, final state)`.
      chunked: takes `chunk_size=` (a chunkwise-parallel algebra).
      backend: "gpu" or "tpu" for a Pallas kernel compiled for that backend; None: any.
      auto: `implementation=None` may choose it (kernels only where measured faster).
      supported: `(*inputs, **options) -> None | reason`: whether it can run these inputs;
        consulted by `implementation=None` (a named form raises its own reason).
    """
    fn: Callable[..., tuple[Any, Any]]
    chunked: bool = False
    backend: str | None = None
    auto: bool = True
    supported: Callable[..., str | None] | None = None


def make_forms(**forms: Form | Callable[..., Any]) -> Mapping[str, Form]:
    """A read-only forms table (implementation name -> `Form`); a bare function is a `Form`
    with the defaults."""
    return MappingProxyType({n: f if isinstance(f, Form) else Form(f) for n, f in forms.items()})


# `implementation=None` picks the fastest measured form (BENCHMARKS.md):
# - CPU: the chunked form from CHUNKED_FROM_TIME steps and CHUNKED_FROM_KEY_DIM key dims on
#   (2 cores, forward+backward against the scan: B8 H8 d64 T512 4.5-6x; the WT103 layer shape
#   B96 H8 d16 T256 1.4x for the delta rule, 1.9x for the sum rule, while the forward alone
#   is level or, for the Delta MLP and Delta Delta Net, 0.6x: training decides), else the scan;
# - GPU: the chunked form (H200: ~15x the scan), and for 16-bit inputs the chunked Pallas
#   kernel first where one was measured faster (bf16, B4 T4096 H16 d64: 2.1x the pure-JAX
#   chunked form for the delta rule, 5x for the sum rule); float32 stays on the pure-JAX
#   chunked form, since exact float32 dots in the kernel are slower. (`Form.auto`)
# - TPU: for 16-bit inputs the Pallas TPU kernel first (the chunked one where the algebra
#   allows, else the fused sequential one). Not measured: no TPU was available. Chosen from
#   the GPU measurements above and the TPU anchors (PERF_ANCHORS: a scan whose state stays in
#   VMEM was ~3x the XLA scan in recurrentgemma and +31 % end to end in maxtext's GDN);
#   float32 stays off the kernels, whose float32 dots run at full (multi-pass) precision.
CHUNKED_FROM_TIME = 8
CHUNKED_FROM_KEY_DIM = 16


def auto_order(forms: Mapping[str, Form], time: int, key_dim: int, dtype: Any) -> tuple[str, ...]:
    """The names of `forms` in order of expected speed for this platform, shape and input
    dtype: the auto kernels of this backend (16-bit inputs only), the chunked form, the scan."""
    backend = jax.default_backend()
    half = jnp.dtype(dtype).itemsize <= 2
    kernels = [n for n, f in forms.items() if f.backend == backend and f.auto and half]
    chunked = [n for n, f in forms.items() if f.backend is None and f.chunked and f.auto
               and time >= CHUNKED_FROM_TIME and (backend != "cpu" or key_dim >= CHUNKED_FROM_KEY_DIM)]
    return (*kernels, *chunked, "recurrent")


def select_implementation(op: str, implementation: str | None, available: Mapping[str, Any], *,
                          order: Sequence[str] = ("recurrent",),
                          supported: Mapping[str, Callable[[], str | None]] | None = None) -> str:
    """The name of the form to run.

    None: the first form of `order` that `op` has and whose `supported` check (a thunk that
    returns None or the reason it cannot run) passes. A name: that form, or an error with
    the reason when `op` has no such form; nothing falls back silently.
    """
    if implementation is None:
        checks = supported or {}
        for name in order:
            if name in available and (name not in checks or checks[name]() is None):
                return name
        return "recurrent"
    if implementation in available:
        return implementation
    names = ", ".join(repr(n) for n in available)
    if implementation in RENAMED:
        raise ValueError(f"{op}: implementation {implementation!r} was renamed: the forms now say chunked or "
                         f"sequential ({', '.join(repr(n) for n in RENAMED[implementation])}); available: {names}")
    if implementation in KNOWN_IMPLEMENTATIONS:
        raise NotImplementedError(
            f"{op}: implementation {implementation!r} does not exist for this variant (yet); available: {names}")
    raise ValueError(f"{op}: unknown implementation {implementation!r}; available: {names}")


def dispatch(op: str, forms: Mapping[str, Form], implementation: str | None, inputs: Sequence[Any], *,
             initial_state: Any = None, chunk_size: int | None = None, **options: Any) -> tuple[Any, Any]:
    """Runs `inputs` through the chosen form of `op`: the body of every public function.

    `options` are the variant's own keyword arguments (`normalize`, `version`, `params`, ...);
    `chunk_size` reaches the chunked forms only. The choice reads the time and key dim of
    the first input, `[B, T, ..., K]`.
    """
    first = inputs[0]
    call = {n: dict(options, chunk_size=chunk_size) if f.chunked else dict(options) for n, f in forms.items()}
    name = select_implementation(
        op, implementation, forms, order=auto_order(forms, first.shape[1], first.shape[-1], first.dtype),
        supported={n: functools.partial(f.supported, *inputs, **call[n]) for n, f in forms.items()
                   if f.supported is not None})
    return forms[name].fn(*inputs, initial_state=initial_state, **call[name])
