"""A single-layer LSTM equivalent to PyTorch's `nn.LSTM` (the LSTM baselines, PAPER_SPEC 2.11):
the same parameters (both biases, so parameter counts match), gate order (i, f, g, o) and
initialisation U(+-1/sqrt(hidden)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fastweights.nn.common import param

Array = jax.Array


class LSTM(nnx.Module):
    """`__call__(x [B, T, input_dim], state=None) -> (y [B, T, hidden_dim], (h, c))`.

    Parameters are PyTorch's transposed: `w_ih [input, 4H]`, `w_hh [hidden, 4H]`, `b_ih [4H]`,
    `b_hh [4H]`, the 4H columns being the gates (i, f, g, o) in that order. The state
    `(h, c)` is float32 `[B, hidden]` whatever the compute dtype.
    """

    def __init__(self, input_dim: int, hidden_dim: int, *, rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        bound = hidden_dim ** -0.5    # PyTorch draws all four LSTM tensors from U(+-1/sqrt(H))

        def uniform(shape):
            return jax.random.uniform(rngs.params(), shape, param_dtype, -bound, bound)

        G = 4 * hidden_dim
        # The gate axis (4H) is the one to shard; the hidden input axis of w_hh gets its own
        # name because one array cannot use a mesh axis twice.
        self.w_ih = param(uniform((input_dim, G)), ("embed", "mlp"))
        self.w_hh = param(uniform((hidden_dim, G)), ("lstm_hidden", "mlp"))
        self.b_ih = param(uniform((G,)), ("mlp",))
        self.b_hh = param(uniform((G,)), ("mlp",))

    def init_state(self, batch_size: int) -> tuple[Array, Array]:
        """`(h, c)`, zeros `[B, hidden]` float32."""
        zeros = jnp.zeros((batch_size, self.hidden_dim), jnp.float32)
        return zeros, zeros

    def __call__(self, x: Array, state: tuple[Array, Array] | None = None
                 ) -> tuple[Array, tuple[Array, Array]]:
        if x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"LSTM expects x [B, T, {self.input_dim}], got {x.shape}")
        B = x.shape[0]
        if state is None:
            state = self.init_state(B)
        h0, c0 = state
        if h0.shape != (B, self.hidden_dim) or c0.shape != (B, self.hidden_dim):
            raise ValueError(f"LSTM state must be (h, c) of shape [{B}, {self.hidden_dim}], got "
                             f"{h0.shape} and {c0.shape}")
        # The input projection has no time dependence: one matmul for the whole sequence,
        # accumulated in float32 (the recurrence runs in float32).
        bias = (self.b_ih[...] + self.b_hh[...]).astype(jnp.float32)
        xw = jnp.einsum("bti,ig->btg", x, self.w_ih[...].astype(x.dtype),
                        preferred_element_type=jnp.float32) + bias[None, None, :]
        w_hh = self.w_hh[...].astype(jnp.float32)

        def step(carry, xw_t):
            h, c = carry
            gates = xw_t + h @ w_hh
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        (h, c), ys = jax.lax.scan(step, (h0.astype(jnp.float32), c0.astype(jnp.float32)),
                                  jnp.swapaxes(xw, 0, 1))
        return jnp.swapaxes(ys, 0, 1).astype(x.dtype), (h, c)
