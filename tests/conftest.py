"""Test configuration: strict numerics, simulated CPU devices."""

import os
import tempfile

# Must be set before JAX initialises its backends (training tests use a simulated mesh).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# Prepared task data go to a per-session folder, never to the user's cache.
os.environ.setdefault("FASTWEIGHTS_CACHE", tempfile.mkdtemp(prefix="fastweights-test-cache-"))

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
