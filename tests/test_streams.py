"""Issue 22: streams of batches for evaluate, predict and validation, read ahead of the device."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import fnn
from tests.fitting import LOSS, digits, mlp

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


class Batches:
    """A re-iterable stream: each iteration starts over (as a dataset object or a loader does)."""

    def __init__(self, *arrays, size):
        self.arrays, self.size = arrays, size

    def __iter__(self):
        n = len(self.arrays[0])
        return (tuple(a[i : i + self.size] for a in self.arrays) for i in range(0, n, self.size))


def test_evaluate_and_predict_on_a_stream_equal_the_arrays_ragged_last_batch_included():
    x, y = digits(70)
    weight = np.linspace(0.5, 1.5, 70).astype(np.float32)
    model = mlp()
    params, state = model.init(jax.random.key(0), (64,))
    options = dict(loss=LOSS, metrics=["accuracy"])
    arrays = fnn.evaluate(model, params, state, x, y, sample_weight=weight, batch_size=16, **options)
    streamed = fnn.evaluate(model, params, state, Batches(x, y, weight, size=16), **options)
    assert streamed == arrays
    predicted = fnn.predict(model, params, state, (b[0] for b in Batches(x, size=16)))  # x-only batches
    np.testing.assert_array_equal(predicted, fnn.predict(model, params, state, x, batch_size=16))


def test_stream_errors_name_the_fix():
    x, y = digits(32)
    model = mlp()
    params, state = model.init(jax.random.key(0), (64,))
    with pytest.raises(ValueError, match=r"evaluate: the stream of batches is empty"):
        fnn.evaluate(model, params, state, iter([]), loss=LOSS)
    with pytest.raises(ValueError, match=r"evaluate: each batch of the stream must be \(x, y\)"):
        fnn.evaluate(model, params, state, iter([x[:8]]), loss=LOSS)
    with pytest.raises(ValueError, match=r"evaluate: either every batch of the stream has a sample_weight"):
        fnn.evaluate(
            model, params, state, iter([(x[:8], y[:8]), (x[8:], y[8:], np.ones(24, np.float32))]), loss=LOSS
        )
    with pytest.raises(ValueError, match=r"evaluate: y holds label 12 at index \(3,\)"):
        bad = y.copy()
        bad[3] = 12
        fnn.evaluate(model, params, state, Batches(x, bad, size=8), loss=LOSS)
    with pytest.raises(ValueError, match=r"fit: validation_data is a one-shot iterator"):
        fnn.fit(model, x, y, loss=LOSS, validation_data=iter([(x, y)]), verbose=0)


def test_fit_validates_on_a_re_iterable_stream_like_on_arrays():
    x, y = digits(96)
    options = dict(loss=LOSS, metrics=["accuracy"], epochs=1, batch_size=32, verbose=0)
    arrays = fnn.fit(
        mlp(), x[:64], y[:64], validation_data=(x[64:], y[64:]), validation_batch_size=16, **options
    )
    streamed = fnn.fit(mlp(), x[:64], y[:64], validation_data=Batches(x[64:], y[64:], size=16), **options)
    assert streamed.history == arrays.history


def test_prefetch_keeps_the_order_and_raises_a_reading_error_at_its_batch():
    def reader():
        yield from (np.full(2, i) for i in range(3))
        raise OSError("disk gone at batch 3")

    got = []
    with pytest.raises(OSError, match=r"disk gone at batch 3"):
        for batch in fnn.data.prefetch(reader(), size=1):
            got.append(int(batch[0]))
    assert got == [0, 1, 2]
    with pytest.raises(ValueError, match=r"prefetch: size must be a positive int, got 0"):
        next(fnn.data.prefetch([1], size=0))


def test_a_stream_fuses_stacks_of_batches_bitwise_like_one_step_per_call(tmp_path):
    x, y = digits(112)  # batches of 32: three full ones and a ragged 16
    batches = Batches(x, y, size=32)
    options = dict(loss=LOSS, metrics=["accuracy"], epochs=2, verbose=0, seed=0)
    one = fnn.fit(mlp(), batches, steps_per_execution=1, **options)
    fused = fnn.fit(
        mlp(), batches, steps_per_execution=3, **options
    )  # stacks of 3, then the ragged one alone
    assert fused.history == one.history and fused.steps_per_execution == 3
    jax.tree.map(np.testing.assert_array_equal, fused.params, one.params)
    backed_up = fnn.fit(
        mlp(), batches, steps_per_execution=3, checkpoint_dir=tmp_path, checkpoint_every=2, **options
    )
    jax.tree.map(np.testing.assert_array_equal, backed_up.params, one.params)
    assert fnn.checkpoint.CheckpointManager(tmp_path).steps() == [
        6,
        8,
    ]  # step 6: a call ended at the backup point
