"""Token sampling from a language model's log-probabilities: temperature, top-k and top-p
(nucleus). One implementation, used by `LanguageModel.generate` and re-exported by
`fastweights.lm.generation` (whose `stream` samples with it too).

The random key of the n-th generated token (n = 0 for the token after the prompt) is
`token_key(key, n) = jax.random.fold_in(key, n)`, so a sampler that runs in one compiled loop
and one that runs step by step draw the same tokens.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

Array = jax.Array


def token_key(key: Array, n) -> Array:
    """The key that draws the `n`-th generated token (`n` may be traced)."""
    return jax.random.fold_in(key, n)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> tuple[float, int | None, float | None]:
    """Validates the sampling options (plain Python values) and returns them normalised;
    raises `ValueError` (or `TypeError` for a non-number) with the rule broken."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
            raise TypeError(f"top_k must be an int or None, got {top_k!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        top_k = int(top_k)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real):
            raise TypeError(f"top_p must be a number or None, got {top_p!r}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        top_p = float(top_p)
    return float(temperature), top_k, top_p


def sample(log_probs: Array, key: Array, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None) -> Array:
    """Draws one token per row of `log_probs [B, V]` -> `[B]` int32.

    `temperature` (>= 0) divides the log-probabilities; 0 takes the most likely token (no
    randomness). `top_k` (>= 1) keeps the k most likely tokens; `top_p` (in (0, 1]) then keeps
    the smallest set of the most likely remaining tokens whose renormalised (tempered)
    probability reaches p, always at least the most likely one. The draw is
    `jax.random.categorical` over the kept tokens, renormalised. The options are static
    Python values; `log_probs` and `key` may be traced.
    """
    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must be [batch, vocab], got shape {log_probs.shape}")
    vocab = log_probs.shape[-1]
    if temperature == 0.0:
        return jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    logits = log_probs.astype(jnp.promote_types(log_probs.dtype, jnp.float32)) / temperature
    k = vocab if top_k is None else min(top_k, vocab)
    if k == vocab and top_p in (None, 1.0):
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    # The k most likely tokens, most likely first (all V, sorted, for top-p alone).
    values, index = jax.lax.top_k(logits, k)                                   # [B, k]
    if top_p is not None and top_p < 1.0:
        probs = jax.nn.softmax(values, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs       # mass of the more likely tokens
        keep = mass_before < top_p
        keep = keep.at[:, 0].set(True)
        values = jnp.where(keep, values, -jnp.inf)
    choice = jax.random.categorical(key, values, axis=-1)                      # [B] in [0, k)
    return jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
