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
# # Fast weight programmers as state transitions
#
# Every variant of "Going Beyond Linear Transformers with Recurrent Fast Weight Programmers"
# (Irie et al., NeurIPS 2021) is a pure function: `step(state, inputs_t) -> (state, output_t)`,
# scanned over time. This notebook runs each one, checks that streaming equals one pass, and
# shows how the delta rule keeps the fast weights bounded where the sum rule does not.
#
# In Colab: `!pip install "fastweights @ git+<repository url>"` first.

# %%
QUICK = False  # the tests set True: fewer steps
T = 64 if QUICK else 1024

# %%
import jax
import jax.numpy as jnp
import numpy as np

import fastweights as fw
from fastweights.testing import example_inputs, step_by_step

# %% [markdown]
# ## One pass equals token-by-token streaming, for every variant

# %%
for name, variant in fw.VARIANTS.items():
    if variant.family == "baseline":
        continue
    args, kwargs = example_inputs(name, 0, batch=1, time=16, heads=2, key_dim=8, value_dim=8)
    out, state = variant.fn(*args, **kwargs)
    zeros = jax.tree.map(jnp.zeros_like, state)
    streamed, _ = step_by_step(name, args, kwargs, zeros)
    print(f"{name:<22} state {variant.state}  max |one pass - streaming| = "
          f"{float(jnp.max(jnp.abs(out - streamed))):.1e}")

# %% [markdown]
# ## The delta rule keeps the memory bounded
#
# The sum rule only adds: `|W|` grows with the sequence. The delta rule replaces the value
# stored under a key, so with sum-normalised keys `W` stays within the range of the values.

# %%
(q, k, v, beta), _ = example_inputs("delta_net", 1, batch=1, time=T, heads=1, key_dim=16, value_dim=16)
norms = {}
for t in (T // 8, T // 4, T // 2, T):
    _, lt_state = fw.linear_transformer(q[:, :t], k[:, :t], v[:, :t])
    _, dn_state = fw.delta_net(q[:, :t], k[:, :t], v[:, :t], beta[:, :t])
    norms[t] = (float(jnp.linalg.norm(lt_state.W)), float(jnp.linalg.norm(dn_state.W)))
    print(f"T={t:>5}:  |W| sum rule {norms[t][0]:9.2f}   delta rule {norms[t][1]:6.2f}")
assert norms[T][1] < norms[T][0]

# %% [markdown]
# ## Gradients reach everything, including the initial state

# %%
(q, k, v, beta), _ = example_inputs("delta_net", 2, batch=1, time=8, heads=1, key_dim=4, value_dim=4)
state0 = fw.ops.delta_net.init_state(1, 1, 4, 4)
grad_state = jax.grad(lambda s: fw.delta_net(q, k, v, beta, initial_state=s)[0].sum())(state0)
print("d loss / d W_0 =\n", np.round(np.asarray(grad_state.W[0, 0]), 3))
