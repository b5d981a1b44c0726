"""What fit costs around its step: compiled programs, implicit transfers, the persistent cache."""

from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from tests.fitting import LOSS, digits

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside

COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counted(event: str, duration: bool = True):
    """The list of ``event``s JAX records inside the block."""
    seen: list[str] = []

    def listener(name, *args, **kwargs):
        if name == event:
            seen.append(name)

    register, unregister = (
        (
            jax.monitoring.register_event_duration_secs_listener,
            jax.monitoring.unregister_event_duration_listener,
        )
        if duration
        else (jax.monitoring.register_event_listener, jax.monitoring.unregister_event_listener)
    )
    register(listener)
    try:
        yield seen
    finally:
        unregister(listener)


class CompilesAtFirstStep(fnn.Callback):
    """Reads a counter when the first step has run."""

    step_interval = 1

    def __init__(self, compiles: list):
        self.compiles, self.before = compiles, None

    def on_steps_end(self, step, logs, run):
        if self.before is None:
            self.before = len(self.compiles)


def conv_net():
    return fnn.Sequential(
        [fnn.Reshape((8, 8, 1)), fnn.Conv2D(4, 3), fnn.Relu(), fnn.Flatten(), fnn.Dense(10)]
    )


@pytest.mark.parametrize("model", [lambda: fnn.Sequential([fnn.Dense(32, "relu"), fnn.Dense(10)]), conv_net])
@pytest.mark.parametrize("steps_per_execution", [1, "auto"])
def test_fit_compiles_at_most_three_programs_up_to_its_first_step(model, steps_per_execution):
    # A new model object: nothing of it is cached. The init, the state's start, the step.
    x, y = digits(256)
    with counted(COMPILE) as compiles:
        first = CompilesAtFirstStep(compiles)
        fnn.fit(
            model(), x, y, loss=LOSS, epochs=2, batch_size=32, verbose=0, callbacks=[first],
            steps_per_execution=steps_per_execution,
        )  # fmt: skip
    assert first.before is not None and first.before <= 3, compiles


def test_fit_moves_data_only_explicitly():
    x, y = digits(128)
    with jax.transfer_guard("disallow"):
        history = fnn.fit(
            fnn.Dense(10),
            x,
            y,
            loss=LOSS,
            epochs=2,
            batch_size=32,
            verbose=0,
            validation_data=(x[:64], y[:64]),
        )
    assert np.isfinite(history.history["loss"]).all()


@pytest.fixture
def restored_cache_config():
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()


def test_the_compilation_cache_serves_a_program_compiled_in_an_earlier_process(
    tmp_path, restored_cache_config
):
    folder = fnn.enable_compilation_cache(tmp_path / "cache")
    assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700

    def program(x):  # a function JAX has not seen: its first call compiles
        return x * 3.0 + 1.0

    with counted("/jax/compilation_cache/cache_misses", duration=False) as misses:
        jax.jit(program)(np.ones(7, np.float32))
    assert len(misses) == 1 and os.listdir(folder)
    jax.clear_caches()  # as a new process: only the folder remembers
    with counted("/jax/compilation_cache/cache_hits", duration=False) as hits:
        np.testing.assert_array_equal(jax.jit(program)(np.ones(7, np.float32)), np.full(7, 4.0, np.float32))
    assert len(hits) == 1


def test_the_compilation_cache_refuses_a_folder_others_can_write(tmp_path, restored_cache_config):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match=r"shared is writable by others \(mode drwxrwxrwx\).*chmod 700"):
        fnn.enable_compilation_cache(shared)
    assert jax.config.jax_compilation_cache_dir != str(shared)


def test_the_compilation_cache_refuses_a_file(tmp_path, restored_cache_config):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=r"cache is a file, not a folder"):
        fnn.enable_compilation_cache(tmp_path / "cache")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1"])
def test_the_compilation_cache_threshold_is_checked(tmp_path, bad, restored_cache_config):
    with pytest.raises(ValueError, match=r"min_compile_seconds must be a finite number >= 0, got"):
        fnn.enable_compilation_cache(tmp_path, min_compile_seconds=bad)


def test_models_alike_but_for_their_constants_keep_their_own_values():
    # Setup programs are shared between models whose programs read the same: constants count.
    def constant(value):
        return lambda key, shape, dtype: jnp.full(shape, value, dtype).at[0, 0].set(-value)

    states = [
        fnn.TrainState.create(fnn.Dense(3, kernel_init=constant(v)), optax.sgd(0.1), (4,), jax.random.key(0))
        for v in (1.0, 2.0, 1.0)
    ]
    for ts, v in zip(states, (1.0, 2.0, 1.0)):
        expected = np.full((4, 3), v, np.float32)
        expected[0, 0] = -v
        np.testing.assert_array_equal(ts.params["w"], expected)
