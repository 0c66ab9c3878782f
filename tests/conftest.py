"""Test configuration: strict numerics, simulated CPU devices."""

import os

# Must be set before JAX initialises its backends (training tests use a simulated mesh).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
