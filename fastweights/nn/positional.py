"""Sinusoidal positional encodings of the two official code bases (PAPER_SPEC 3.1, 3.3, 9.11).

Both take explicit positions, so a model can compute them from the absolute position it
carries in its state: a sequence processed in segments then sees the same encodings as in
one pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

POSITIONALS = ("descending", "ascending", "none")


def _outer(positions: Array, freq: Array) -> Array:
    positions = jnp.asarray(positions, jnp.float32)
    return positions[..., None] * freq.reshape((1,) * positions.ndim + (-1,))


def concatenated_sinusoid(positions: Array, dim: int) -> Array:
    """The LM code's encoding: `[sin(p * f), cos(p * f)]` concatenated (all sines, then all
    cosines), `f_j = 10000^(-2j/dim)`. `positions [...]` -> `[..., dim]` float32."""
    inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = _outer(positions, inv_freq)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def interleaved_sinusoid(positions: Array, dim: int) -> Array:
    """The algorithmic code's encoding (the PyTorch tutorial's): `pe[2i] = sin(p * f_i)`,
    `pe[2i+1] = cos(p * f_i)`, `f_i = exp(-2i ln(10000) / dim)`. `[...]` -> `[..., dim]`."""
    freq = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-jnp.log(10000.0) / dim))
    angles = _outer(positions, freq)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*angles.shape[:-1], -1)[..., :dim]


def positions(kind: str, start: Array, length: int, span: int | None) -> Array | None:
    """Positions `[length]` of a segment starting at absolute position `start`, or None.

    "ascending": `start, start+1, ...`. "descending": the LM code counts down to 0 at the
    end of its `span`-token segment, `span-1-t` for absolute position t, so a fresh
    `span`-token call gets exactly the official `span-1, ..., 0`; `span=None` counts down
    over this call only (`length-1, ..., 0`, the official code for any length, but then a
    sequence split into segments sees different encodings than in one pass).
    """
    if kind not in POSITIONALS:
        raise ValueError(f"unknown positional encoding {kind!r}; valid: {', '.join(POSITIONALS)}")
    if kind == "none":
        return None
    t = start + jnp.arange(length, dtype=jnp.int32)
    if kind == "ascending":
        return t
    if span is None:
        return jnp.arange(length - 1, -1, -1, dtype=jnp.int32)
    return span - 1 - t
