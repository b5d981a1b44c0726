"""Test configuration, also for the doctests in fnn/: strict promotion, deterministic hypothesis."""

import jax
import pytest
from hypothesis import settings

# Library code must never lean on implicit rank promotion (silent broadcasting).
jax.config.update("jax_numpy_rank_promotion", "raise")

# Derandomised so CI runs the same examples every time; no deadline, since
# first calls compile and timing must never decide a test.
settings.register_profile("fnn", max_examples=10, deadline=None, derandomize=True, database=None)
settings.load_profile("fnn")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "standard_promotion: runs optax optimisers, whose step counts rely on JAX's standard "
        "dtype promotion (float ** int32), so strict promotion is off",
    )


@pytest.fixture(autouse=True)
def strict_dtype_promotion(request):
    """fnn's own code must never mix dtypes implicitly (float32 with float64, int with float)."""
    mode = "standard" if request.node.get_closest_marker("standard_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield
