"""Test configuration, also for the doctests in fnn/: strict promotion, deterministic hypothesis."""

import os
import shutil
import tempfile

# One persistent compilation cache for the whole run, shared by the xdist workers and every
# subprocess they start (examples, docs pages, resumed runs). Each fit builds fresh closures, so
# the in-memory cache misses and XLA:CPU would compile the same step again for every test: a
# few seconds each time. Set before jax is imported, since jax reads these variables then.
# The size limit turns on jax's file lock, so that two processes never read a half-written entry.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="fnn-tests-xla-cache-")
    # 0.1 s, not 1 s: most of the suite's programs compile in 0.1-1 s, and every test's fit builds
    # them again (measured on tests/test_fit.py, test_resume.py, test_fit_extensions.py: 94 s
    # against 117 s).
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.1"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(4 * 2**30)

# XLA:CPU's older loop emitters compile the suite's small programs faster than its fusion emitters
# (the train steps of an MLP, a CNN and an LSTM: 2.0 s -> 1.3-1.6 s) and gave bitwise the same
# results there; they run some programs slower, which a compile-bound suite does not feel. Set for
# the suite and the processes it starts; users' programs keep XLA's defaults.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_use_fusion_emitters=false".strip()

import jax  # noqa: E402
import pytest
from hypothesis import settings

# Library code must never lean on implicit rank promotion (silent broadcasting).
jax.config.update("jax_numpy_rank_promotion", "raise")

# Derandomised so CI runs the same examples every time; no deadline, since
# first calls compile and timing must never decide a test.
settings.register_profile("fnn", max_examples=10, deadline=None, derandomize=True, database=None)
settings.load_profile("fnn")


def pytest_unconfigure(config):
    if _OWN_CACHE:  # the process that made the cache (the xdist controller) removes it
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


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


def pytest_collection_modifyitems(config, items):
    """The layer contract tests run case by case (every test of one layer, then the next), not test
    by test: the xdist workers take contiguous runs of tests, so each layer's compiled apply (cached
    per process in tests/test_contract.py) is built by one worker instead of both."""
    contract = [i for i, item in enumerate(items) if item.nodeid.startswith("tests/test_contract.py::")]
    if contract:

        def case(item) -> str:
            spec = getattr(item, "callspec", None)
            found = spec.params.get("case") if spec else None
            return getattr(found, "id", "")

        ordered = sorted((items[i] for i in contract), key=case)  # stable: test order kept within a case
        for i, item in zip(contract, ordered):
            items[i] = item
