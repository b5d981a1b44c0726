"""Issue 22: streams of batches for evaluate, predict and validation, read ahead of the device."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

import fnn
from fnn.train._sources import StreamSource
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


# ------------------------------------------------------------------ where a stream stands (StreamSource)


def numbered(count):
    """Batches whose x holds their number 1..count."""
    return [(np.full((1, 1), i, np.float32), np.zeros((1,), np.int32)) for i in range(1, count + 1)]


class Counter:
    """A checkpointable re-iterable of numbered batches (its iterators have get_state/set_state)."""

    def __init__(self, count):
        self.batches = numbered(count)

    def __iter__(self):
        return CounterIterator(self.batches)


class CounterIterator:
    def __init__(self, batches):
        self.batches, self.at = batches, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.at == len(self.batches):
            raise StopIteration
        self.at += 1
        return self.batches[self.at - 1]

    def get_state(self):
        return {"at": self.at}

    def set_state(self, state):
        self.at = state["at"]


def epochs_of(source, epochs, start_epoch=0, start=0):
    """The batch numbers each epoch reads, the first from step ``start``; and the state after each epoch."""
    seen, states = [], []
    for epoch in range(start_epoch, start_epoch + epochs):
        seen.append([int(b[0][0, 0]) for b in source.batches(epoch, start if epoch == start_epoch else 0)])
        states.append(source.state)
    return seen, states


@pytest.mark.parametrize("make", [numbered, Counter], ids=["list", "checkpointable"])
def test_a_stream_read_across_epochs_resumes_where_its_backup_left_it(make):
    stream = lambda: StreamSource(make(5), steps_per_epoch=2, dp=None, keep_state=True)  # noqa: E731
    seen, states = epochs_of(stream(), 4)
    assert seen == [[1, 2], [3, 4], [5, 1], [2, 3]]  # a pass ending inside an epoch: a new one goes on
    resumed = stream()
    resumed.resume(states[1])  # a backup at the end of epoch 1, after batch 4
    assert epochs_of(resumed, 2, start_epoch=2)[0] == [[5, 1], [2, 3]]
    mid = stream()
    list(itertools.islice(mid.batches(0), 1))  # a backup after step 1 of epoch 0
    again = stream()
    again.resume(mid.state)
    assert epochs_of(again, 1, start=1)[0] == [[2]]


def test_a_checkpointable_stream_resumed_at_the_end_of_a_pass_starts_the_next():
    stream = lambda: StreamSource(Counter(4), steps_per_epoch=2, dp=None, keep_state=True)  # noqa: E731
    seen, states = epochs_of(stream(), 2)
    resumed = stream()
    resumed.resume(states[1])  # the pass ended with the epoch
    assert seen == [[1, 2], [3, 4]] and epochs_of(resumed, 1, start_epoch=2)[0] == [[1, 2]]


def test_a_generator_rerun_skips_the_batches_its_pass_already_trained():
    make = lambda: (b for b in numbered(6))  # noqa: E731
    first = StreamSource(make(), steps_per_epoch=2, dp=None, keep_state=True)
    seen, states = epochs_of(first, 2)
    rerun = StreamSource(make(), steps_per_epoch=2, dp=None, keep_state=True)  # a new process makes it anew
    rerun.resume(states[1])
    assert seen == [[1, 2], [3, 4]] and epochs_of(rerun, 1, start_epoch=2)[0] == [[5, 6]]
