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
# # Quickstart: fast weight programmers in JAX
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/fastweights/fastweights/blob/main/notebooks/01_quickstart.ipynb)
#
# A fast weight programmer (FWP) is a sequence model whose memory is a matrix $W$ that a
# slow net rewrites at every step; every variant of "Going Beyond Linear Transformers with
# Recurrent Fast Weight Programmers" (Irie et al., NeurIPS 2021) is here a pure JAX function
# `(inputs, initial_state) -> (outputs, final_state)`. This notebook runs each core and checks
# that one pass over a sequence equals feeding it token by token, times the different
# implementations (forms) of the Delta Net on the runtime it runs on, puts a fast-weight
# layer into a small Flax NNX model of your own and trains it with optax, and streams a long
# sequence in chunks in constant memory. (The committed outputs are from a full run,
# `QUICK = False`, on a 2-core CPU, which took about 70 s; the runtime is printed at the end.)

# %% tags=["skip-execution"]
# Colab: install this repository at the tag of this version (CI and local builds skip this cell).
# !pip install -q "fastweights[train,rl] @ git+https://github.com/fastweights/fastweights@v0.1.0"

# %% tags=["parameters"]
QUICK = False  # CI sets True: smaller shapes, fewer timing repeats and training steps
TIMING_SHAPE = dict(B=2, T=64, H=2, d=16) if QUICK else dict(B=8, T=512, H=8, d=64)
TIMING_REPEATS = 3 if QUICK else 10
TRAIN_STEPS = 120 if QUICK else 300
STREAM_CHUNK = 256 if QUICK else 1024
STREAM_CHUNKS = 8 if QUICK else 64          # the long sequence: STREAM_CHUNK * STREAM_CHUNKS tokens
ONE_PASS_PREFIX = 4 * STREAM_CHUNK          # where one pass is cheap enough to compare against

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import fastweights as fw
from fastweights import nn
from fastweights.testing import example_inputs, step_by_step

notebook_start = time.perf_counter()
print("JAX", jax.__version__, "on", jax.default_backend(), jax.devices())
# The equality checks below compare in full float32: on a GPU, JAX's default float32 matrix
# products use TensorFloat-32, whose rounding would dwarf the differences we look for.
exact_float32 = jax.default_matmul_precision("highest")

# %% [markdown]
# ## The cores: one pass equals token-by-token streaming
#
# Arrays are `[B, T, H, D]` (batch, time, heads, per-head width) and write strengths
# `[B, T, H]`. The Delta Net, for example, keeps one matrix per head, stored `[key, value]`,
# and at each step writes the difference between the new value and what the key currently
# retrieves, then reads with the query:
#
# $$W_t = W_{t-1} + \beta_t\, k_t \,(v_t - W_{t-1}^\top k_t)^\top, \qquad o_t = W_t^\top q_t .$$
#
# Each variant's `step` is this definition for one token; the sequence function runs it
# over time (or computes the same thing chunk by chunk). Here is the Delta Net written out
# token by token with its public `step`:

# %%
(q, k, v, beta), _ = example_inputs("delta_net", 0, batch=1, time=16, heads=2, key_dim=8, value_dim=8)
with exact_float32:
    out, final = fw.delta_net(q, k, v, beta)                      # one pass
    state = fw.ops.delta_net.init_state(1, 2, 8, 8)               # zeros: W [B, H, K, V]
    streamed = []
    for t in range(q.shape[1]):
        state, o_t = fw.ops.delta_net.step(state, q[:, t], k[:, t], v[:, t], beta[:, t])
        streamed.append(o_t)
streamed = jnp.stack(streamed, axis=1)
print("outputs", out.shape, " state W", final.W.shape)
print(f"max |one pass - token by token| = {float(jnp.max(jnp.abs(out - streamed))):.1e}")

# %% [markdown]
# The same check for every variant with a functional core, using `fastweights.testing`
# (random inputs shaped as each variant's layer would produce them, and a token-by-token
# loop over its `step`). The state column lists what each core carries: the sum rule also
# keeps the running key sum `z`, the recurrent variants their previous output `y` and a
# second fast matrix `R`.

# %%
differences = {}
for name, variant in fw.VARIANTS.items():
    if not variant.has_core:          # the Transformer and LSTM baselines are layers only
        continue
    args, kwargs = example_inputs(name, 0, batch=1, time=16, heads=2, key_dim=8, value_dim=8)
    with exact_float32:
        out, state = variant.fn(*args, **kwargs)
        zeros = jax.tree.map(jnp.zeros_like, state)
        streamed, _ = step_by_step(name, args, kwargs, zeros)
    differences[name] = float(jnp.max(jnp.abs(out - streamed)))
    print(f"{name:<22} state {str(variant.state):<20} max |one pass - streaming| = {differences[name]:.1e}")
assert max(differences.values()) < 1e-5, "one pass and token-by-token streaming agree for every core"

# %% [markdown]
# Every core agrees with its token-by-token loop to float32 rounding (the largest
# difference is printed above).
#
# ## The forms, side by side
#
# A variant can be computed in several ways, its *forms* (`implementation=`): `recurrent`
# is the per-token scan; `chunked` uses the chunkwise-parallel algebra (a few matrix
# products per chunk of tokens); `pallas_*` are hand-written kernels for one backend (GPU or
# TPU) only. All forms compute the same function. The registry lists them; we time each one
# that can run on this runtime (its `backend` is None or this one), forward plus backward,
# and take the median of a few repeats. **These timings are of this runtime only**: the
# ranking on a GPU or TPU is different.

# %%
backend = jax.default_backend()
variant = fw.get("delta_net")
dtype = jnp.float32 if backend == "cpu" else jnp.bfloat16     # the kernels target 16-bit inputs
B, T, H, d = TIMING_SHAPE["B"], TIMING_SHAPE["T"], TIMING_SHAPE["H"], TIMING_SHAPE["d"]
(q, k, v, beta), _ = example_inputs("delta_net", 1, batch=B, time=T, heads=H, key_dim=d, value_dim=d, dtype=dtype)

timings = {}
for form_name, form in variant.implementations.items():
    if form.backend not in (None, backend):
        print(f"{form_name:<22} skipped: a {form.backend} kernel")
        continue
    reason = form.supported(q, k, v, beta) if form.supported else None
    if reason:
        print(f"{form_name:<22} skipped: {reason}")
        continue

    def loss(q, k, v, beta, form_name=form_name):
        out, _ = fw.delta_net(q, k, v, beta, implementation=form_name)
        return out.astype(jnp.float32).sum()

    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    try:
        jax.block_until_ready(fwd_bwd(q, k, v, beta))           # compile
    except NotImplementedError as error:                        # a kernel that cannot run these inputs
        print(f"{form_name:<22} skipped: {error}")
        continue
    times = []
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(fwd_bwd(q, k, v, beta))
        times.append(time.perf_counter() - start)
    timings[form_name] = float(np.median(times))
    print(f"{form_name:<22} forward+backward median {1e3 * timings[form_name]:8.2f} ms")

# %% [markdown]
# The bar chart shows the medians above; its title gives the shape and the dtype.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(list(timings), [1e3 * t for t in timings.values()], color="tab:blue")
ax.set_ylabel("forward + backward (ms)")
ax.set_title(f"delta_net forms on {backend} ({jnp.dtype(dtype).name}, B{B} T{T} H{H} d{d})")
plt.tight_layout()
plt.show()
fastest = min(timings, key=timings.get)
print(f"fastest here: {fastest}; time relative to it:", {n: f"{timings[n] / timings[fastest]:.1f}x" for n in timings})

# %% [markdown]
# The line under the chart gives each form's time relative to the fastest one on this
# runtime. On the 2-core CPU of the committed run, at this shape, the chunked form is well
# ahead of the scan: it turns the T sequential rank-one updates into a few larger matrix
# products per chunk. (At the tiny shape CI uses the scan can win: there is too little work
# per chunk.)
# `implementation=None` (the default) picks the form measured fastest for the backend,
# shape and dtype.
#
# ## A fast-weight layer in your own Flax NNX model
#
# `fastweights.nn.FastWeightLayer` wraps a core as a sequence layer: a slow linear
# projection of $x_t$ to each head's $q_t, k_t, v_t, \beta_t$, the feature maps, the core,
# and an output projection. It is an ordinary `nnx.Module`, so it drops into any model.
# Here is a tiny one (an embedding, one Delta Net layer with a residual connection, a
# LayerNorm and a read-out), trained with optax on a toy task: at each position, output the
# *previous* token. The model has no positional encoding, so it must remember the last token
# in its fast weights; the delta rule can, because a write of strength near 1 replaces what
# was stored before.

# %%
class TinyModel(nnx.Module):
    def __init__(self, vocab: int, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.mix = nn.FastWeightLayer(nn.LayerConfig("delta_net"), dim, heads, dim // heads, rngs=rngs)
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, vocab, rngs=rngs)

    def __call__(self, tokens, state=None):
        x = self.embed(tokens)
        y, state = self.mix(x, state)          # (outputs [B, T, D], the fast weights' final state)
        return self.head(self.norm(x + y)), state


VOCAB, DIM, HEADS, SEQ, BATCH = 8, 32, 4, 32, 32
model = TinyModel(VOCAB, DIM, HEADS, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)


def loss_fn(model, tokens):
    logits, _ = model(tokens)
    # the target at position t is the token at t - 1
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, 1:], tokens[:, :-1]).mean()


@nnx.jit
def train_step(model, optimizer, tokens):
    loss, grads = nnx.value_and_grad(loss_fn)(model, tokens)
    optimizer.update(model, grads)
    return loss


rng = np.random.default_rng(0)
losses = []
for step in range(TRAIN_STEPS + 1):
    losses.append(float(train_step(model, optimizer, jnp.asarray(rng.integers(0, VOCAB, (BATCH, SEQ))))))
    if step % (TRAIN_STEPS // 6) == 0:
        print(f"step {step:4d}  loss {losses[-1]:.3f}")
print(f"chance level: ln {VOCAB} = {np.log(VOCAB):.3f}")
assert np.mean(losses[-10:]) < 0.7 * losses[0], "the loss falls well below its starting value"

# %% [markdown]
# The loss starts near chance ($\ln 8 \approx 2.08$) and falls as the model learns to
# write each token into its fast weights and read it back one step later (the printed
# losses). The model's `state` argument works as for the cores: `model(tokens, state)`
# continues the same sequences.
#
# ## Streaming a long sequence in constant memory
#
# The final state summarises everything seen so far, so a sequence of any length can be fed
# in chunks, each call starting from the state the previous one returned. The state has a
# fixed size, $H \times d_{key} \times d_{value}$ numbers per sequence for the Delta Net,
# whatever the length; softmax attention instead keeps every past key and value (its KV
# cache), $2 \times T \times H \times d$ numbers after $T$ tokens.
#
# We compile one chunk function, feed `STREAM_CHUNKS` chunks of `STREAM_CHUNK` tokens
# (inputs drawn chunk by chunk, so the whole sequence never exists at once), and compare
# the outputs with one pass on the prefix where one pass is cheap.

# %%
H, d = 4, 16
phi = lambda x: fw.sum_norm(fw.elu_p1(x))            # the layer's feature map: ELU+1, sum-normalised


def draw_chunk(i):
    """The i-th chunk of the long sequence (deterministic in i)."""
    r = np.random.default_rng(i)
    q, k, v = (jnp.asarray(r.standard_normal((1, STREAM_CHUNK, H, d)), jnp.float32) for _ in range(3))
    beta = jax.nn.sigmoid(jnp.asarray(r.standard_normal((1, STREAM_CHUNK, H)), jnp.float32))
    return phi(q), phi(k), v, beta


run_chunk = jax.jit(lambda state, q, k, v, beta: fw.delta_net(q, k, v, beta, initial_state=state))
state = fw.ops.delta_net.init_state(1, H, d, d)
state_bytes = lambda s: sum(x.nbytes for x in jax.tree.leaves(s))
lengths, carried, prefix_outputs = [], [], []
with exact_float32:
    for i in range(STREAM_CHUNKS):
        chunk = draw_chunk(i)
        out, state = run_chunk(state, *chunk)
        if (i + 1) * STREAM_CHUNK <= ONE_PASS_PREFIX:
            prefix_outputs.append(out)
        lengths.append((i + 1) * STREAM_CHUNK)
        carried.append(state_bytes(state))

    one_pass_inputs = [jnp.concatenate(parts, axis=1) for parts in
                       zip(*(draw_chunk(i) for i in range(ONE_PASS_PREFIX // STREAM_CHUNK)))]
    one_pass, _ = fw.delta_net(*one_pass_inputs)
stream_error = float(jnp.max(jnp.abs(jnp.concatenate(prefix_outputs, axis=1) - one_pass)))
print(f"streamed {lengths[-1]:,} tokens in {STREAM_CHUNKS} chunks; carried state {carried[-1]:,} bytes")
print(f"max |streamed - one pass| on the first {ONE_PASS_PREFIX:,} tokens = {stream_error:.1e}")
assert stream_error < 1e-4, "chunks with the state carried equal one pass"
assert len(set(carried)) == 1, "the carried state has the same size at every length"

# %% [markdown]
# Streaming agrees with one pass (the difference printed above is zero or float32
# rounding). The plot shows the bytes each approach holds after T tokens: the
# carried fast-weight state, and the KV cache softmax attention would need for the same
# heads and widths (float32).

# %%
lengths = np.array(lengths)
kv_cache = 2 * lengths * H * d * 4                 # keys and values, float32, one sequence
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(lengths, carried, label="Delta Net state (carried)", lw=2)
ax.plot(lengths, kv_cache, label="softmax attention KV cache", lw=2, ls="--")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("tokens processed")
ax.set_ylabel("bytes held")
ax.legend()
plt.tight_layout()
plt.show()
print(f"after {lengths[-1]:,} tokens: state {carried[-1]:,} B, KV cache {kv_cache[-1]:,} B "
      f"({kv_cache[-1] / carried[-1]:.0f}x)")
assert kv_cache[-1] > carried[-1], "at this length the KV cache is larger than the fast-weight state"

# %% [markdown]
# The state line is flat: the Delta Net holds the same few kilobytes after any number of
# tokens, while the KV cache grows linearly with the length (the last line gives both at the
# end of the stream). The price is that the fast weights are a lossy summary: how much they
# can hold, and how the delta rule manages it, is the subject of the next notebook.

# %%
print(f"notebook runtime: {time.perf_counter() - notebook_start:.0f} s (QUICK = {QUICK}, {backend})")
