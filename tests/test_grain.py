"""fit on grain pipelines and other checkpointable streams: a resume continues at the exact batch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import fnn
from fnn.checkpoint import CheckpointManager
from fnn.train._sources import _decode_state, _encode_state
from tests.fitting import LOSS, assert_same_run, digits, mlp

grain = pytest.importorskip("grain")

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


class Records:
    """A random-access source of (x, y) examples that counts its reads."""

    def __init__(self, n: int):
        self.x, self.y = digits(n)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.x[i], self.y[i]


# grain reads ahead in threads of its own (its state allows for them); counting reads needs none.
SERIAL = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def pipeline(records: Records):  # reshuffled every pass, read on across epochs (steps_per_epoch=5)
    return grain.MapDataset.source(records).shuffle(seed=3).repeat(4).batch(16).to_iter_dataset(SERIAL)


def test_a_resumed_grain_stream_continues_at_the_exact_batch_without_rereading(tmp_path):
    options = dict(loss=LOSS, epochs=2, steps_per_epoch=5, verbose=0, seed=1)
    records = Records(72)
    reference = fnn.fit(mlp(), pipeline(records), **options)
    reads = records.reads

    records.reads = 0
    backup = lambda: fnn.BackupAndRestore(tmp_path, every_steps=2, delete_checkpoint=False, max_to_keep=None)
    fnn.fit(mlp(), pipeline(records), **options, callbacks=[backup()])
    manager = CheckpointManager(tmp_path, max_to_keep=None)
    for step in manager.steps():  # as if the run had died just after step 7 (epoch 1, position 2)
        if step > 7:
            shutil.rmtree(manager.path(step))
    assert manager.metadata()["fit"]["position"] == 2 and manager.metadata()["fit"]["stream_state"]

    records.reads = 0
    resumed = fnn.fit(mlp(), pipeline(records), **options, callbacks=[backup()])
    assert_same_run(resumed, reference)
    # The resumed run reads one batch for the shapes, then only the 3 batches it has left.
    assert records.reads == 16 + reads - 7 * 16


def test_a_data_loaders_bytes_state_is_kept_as_json_and_restored():
    sampler = grain.samplers.IndexSampler(10, shuffle=True, seed=3, num_epochs=1)
    loader = grain.DataLoader(
        data_source=list(range(10)), sampler=sampler, worker_count=0, read_options=SERIAL
    )
    iterator = iter(loader)
    next(iterator)
    state = iterator.get_state()
    assert isinstance(state, bytes)
    stored = json.loads(json.dumps(_encode_state(state)))  # as a backup's metadata holds it
    again = iter(loader)
    again.set_state(_decode_state(stored))
    assert next(again) == next(iterator)


def test_a_grain_pipeline_trains_exactly_as_the_same_batches_in_a_list():
    x, y = digits(48)
    dataset = grain.MapDataset.source(list(zip(x, y))).shuffle(seed=0).batch(16)
    options = dict(loss=LOSS, epochs=2, verbose=0, seed=0)
    assert_same_run(fnn.fit(mlp(), dataset, **options), fnn.fit(mlp(), list(dataset), **options))


class Opaque:
    """An iterator whose state is no JSON data."""

    def __init__(self):
        self.batches = iter([(np.ones((2, 3), np.float32), np.zeros((2,), np.int32))] * 3)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.batches)

    def get_state(self):
        return object()

    def set_state(self, state):
        raise AssertionError("never restored")


def test_an_iterator_state_that_is_not_json_is_refused_by_name(tmp_path):
    fnn.fit(fnn.Dense(2), Opaque(), loss=LOSS, epochs=1, steps_per_epoch=1, verbose=0)  # no backup: no state
    with pytest.raises(TypeError, match=r"get_state\(\) must return JSON data .* or bytes.*got object"):
        fnn.fit(
            fnn.Dense(2), Opaque(), loss=LOSS, epochs=1, steps_per_epoch=3, verbose=0, checkpoint_dir=tmp_path
        )
