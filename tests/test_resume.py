"""Exact resume, checkpoint callbacks and frozen parameters in fit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

import fnn
from fnn.checkpoint import CheckpointManager
from tests.fitting import LOSS, assert_same_run, digits, mlp
from tests.fitting import run as fit_run

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside

ROOT = Path(__file__).resolve().parents[1]


def run(**kwargs):
    return fit_run(**{"data": digits(200), **kwargs})  # 200 examples: 7 steps an epoch


# ------------------------------------------------------------------ exact resume

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import fnn

    checkpoints, out, crash_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    saves = [0]
    real_save = fnn.BackupAndRestore.save

    def save_then_maybe_crash(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        saves[0] += 1
        if saves[0] == crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    fnn.BackupAndRestore.save = save_then_maybe_crash


    class Loader:  # reshuffled batches, read on across epochs; checkpointable as grain's (get/set_state)
        def __init__(self):
            rng = np.random.default_rng(0)
            self.x, self.y = rng.normal(size=(200, 8)).astype(np.float32), rng.integers(0, 10, 200)
            self.read = 0  # batches handed out: the state

        def __iter__(self):
            return self

        def __next__(self):
            rows = np.random.default_rng(self.read // 6).permutation(200)[self.read % 6 * 32 :][:32]
            self.read += 1
            return self.x[rows], self.y[rows]

        def get_state(self):
            return {"read": self.read}

        def set_state(self, state):
            self.read = state["read"]

    model = fnn.Sequential([fnn.Dense(16, "relu"), fnn.Dropout(0.3), fnn.Dense(10)])
    history = fnn.fit(
        model, Loader(), loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=3,
        steps_per_epoch=6, seed=0, verbose=0, checkpoint_dir=checkpoints, checkpoint_every=4,
    )
    fnn.checkpoint.save(out, history.train_state, metadata={"history": history.history})
    """
)


def test_a_run_on_a_stream_killed_mid_epoch_resumes_in_a_new_process_bitwise(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}

    def train(checkpoints, out, crash_after=0):
        return subprocess.run(
            [sys.executable, script, tmp_path / checkpoints, tmp_path / out, str(crash_after)],
            env=env,
            capture_output=True,
            text=True,
        )

    assert train("straight", "reference").returncode == 0
    # 6 steps an epoch, backups at positions 4 and 6 of each: the 3rd is at step 10, mid-epoch 1
    # (arrays resume the same way: tests/test_resume.py's in-process tests, test_grain.py's reads).
    crashed = train("interrupted", "unused", crash_after=3)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert CheckpointManager(tmp_path / "interrupted").latest() == 10
    resumed = train("interrupted", "resumed")
    assert resumed.returncode == 0, resumed.stderr
    reference = fnn.checkpoint.restore(tmp_path / "reference")
    chex.assert_trees_all_equal(fnn.checkpoint.restore(tmp_path / "resumed"), reference)
    assert fnn.checkpoint.read_metadata(tmp_path / "resumed") == fnn.checkpoint.read_metadata(
        tmp_path / "reference"
    )


def test_backups_change_nothing_and_a_longer_rerun_continues_exactly(tmp_path):
    # "auto" times an unfused epoch (and a fused one where fusing may pay), cut at the backup points.
    reference = run(validation_split=0.2)
    options = dict(validation_split=0.2, checkpoint_every=2, steps_per_execution="auto")
    assert_same_run(run(checkpoint_dir=tmp_path / "a", **options), reference)
    assert run(epochs=1, checkpoint_dir=tmp_path / "b", **options).epochs == [0]
    assert_same_run(run(checkpoint_dir=tmp_path / "b", **options), reference)


def test_resume_from_a_mid_epoch_backup_in_process(tmp_path):
    reference = run()
    backup = lambda: fnn.BackupAndRestore(tmp_path, every_steps=2, delete_checkpoint=False, max_to_keep=None)
    run(callbacks=[backup()])
    manager = CheckpointManager(tmp_path, max_to_keep=None)
    for step in manager.steps():  # as if the run had died just after step 11 (epoch 1, position 4)
        if step > 11:
            shutil.rmtree(manager.path(step))
    assert manager.metadata()["fit"]["epoch"] == 1 and manager.metadata()["fit"]["position"] == 4
    assert_same_run(run(callbacks=[backup()]), reference)


def test_rerunning_a_finished_run_returns_its_history_without_training(tmp_path):
    first = run(checkpoint_dir=tmp_path)
    again = run(checkpoint_dir=tmp_path, steps_per_execution=1)
    assert_same_run(first, again)
    longer = run(checkpoint_dir=tmp_path, epochs=4)
    assert longer.epochs == [0, 1, 2, 3]
    assert_same_run(longer, run(epochs=4))


def test_a_stream_of_batches_resumes_too(tmp_path):
    x, y = digits(96)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 96, 16)]
    options = dict(loss=LOSS, epochs=2, verbose=0, seed=1)
    reference = fnn.fit(mlp(), batches, **options)
    fnn.fit(mlp(), batches, **{**options, "epochs": 1}, checkpoint_dir=tmp_path, checkpoint_every=4)
    assert_same_run(
        fnn.fit(mlp(), batches, **options, checkpoint_dir=tmp_path, checkpoint_every=4), reference
    )


def test_a_backup_from_another_run_is_refused(tmp_path):
    run(checkpoint_dir=tmp_path, epochs=1)
    with pytest.raises(
        ValueError, match=r"comes from a different run \(batch_size: the backup has 32, this run 16"
    ):
        run(checkpoint_dir=tmp_path, batch_size=16)
    with pytest.raises(
        fnn.checkpoint.CheckpointError, match=r"dense/w: the checkpoint has float32\[64, 16\]"
    ):
        run(checkpoint_dir=tmp_path, model=fnn.Sequential([fnn.Dense(8), fnn.Dropout(0.3), fnn.Dense(10)]))
    with pytest.raises(ValueError, match=r"fit: checkpoint_every needs checkpoint_dir"):
        run(checkpoint_every=3)
    with pytest.raises(ValueError, match=r"fit: pass one BackupAndRestore"):
        run(checkpoint_dir=tmp_path, callbacks=[fnn.BackupAndRestore(tmp_path / "b")])


def test_callbacks_continue_where_they_were(tmp_path):
    def callbacks(name):
        return [
            fnn.EarlyStopping("val_loss", patience=1, min_delta=10.0),  # stops at the second epoch
            fnn.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, min_delta=10.0),
            fnn.CSVLogger(tmp_path / name),
        ]

    options = dict(validation_split=0.2, epochs=5)
    reference = run(callbacks=callbacks("reference.csv"), **options)
    assert reference.epochs == [0, 1]
    run(callbacks=callbacks("resumed.csv"), checkpoint_dir=tmp_path / "b", **{**options, "epochs": 1})
    resumed = run(callbacks=callbacks("resumed.csv"), checkpoint_dir=tmp_path / "b", **options)
    assert_same_run(resumed, reference)
    assert resumed.stop_reason == reference.stop_reason
    assert (tmp_path / "resumed.csv").read_text() == (tmp_path / "reference.csv").read_text()
    with pytest.raises(ValueError, match=r"made with callbacks \['EarlyStopping', 'ReduceLROnPlateau', "):
        run(checkpoint_dir=tmp_path / "b", **options)


def test_backup_and_restore_deletes_its_backups_when_done(tmp_path):
    assert_same_run(run(callbacks=[fnn.BackupAndRestore(tmp_path, every_steps=5)]), run())
    assert CheckpointManager(tmp_path).steps() == []


# ------------------------------------------------------------------ ModelCheckpoint


def test_model_checkpoint_keeps_the_best_and_restores_it(tmp_path):
    history = run(
        epochs=4,
        validation_split=0.25,
        callbacks=[
            fnn.ModelCheckpoint(tmp_path, monitor="val_loss", save_best_only=True, save_weights_only=True)
        ],
    )
    manager = CheckpointManager(tmp_path, monitor="val_loss")
    best_epoch = int(np.argmin(history.history["val_loss"]))
    assert manager.best() == best_epoch + 1
    assert manager.metadata(best_epoch + 1)["logs"]["val_loss"] == min(history.history["val_loss"])
    saved = manager.restore(step=best_epoch + 1)
    assert set(saved) == {"params", "state"}


def test_with_terminate_on_nan_the_newest_checkpoint_is_the_last_finite_one(tmp_path):
    x, y = digits()
    x[150] = np.nan  # the batch holding example 150 poisons the params in epoch 0 (no shuffle)
    history = fnn.fit(
        mlp(), x, y, loss=LOSS, epochs=3, batch_size=32, verbose=0, shuffle=False,
        callbacks=[fnn.TerminateOnNaN(), fnn.ModelCheckpoint(tmp_path, monitor="loss")],
    )  # fmt: skip
    assert history.stop_reason.startswith("TerminateOnNaN")
    manager = CheckpointManager(tmp_path)
    saved = manager.restore(target=history.train_state)
    assert all(bool(np.isfinite(a).all()) for a in jax.tree.leaves(saved.params))
    chex.assert_trees_all_equal(saved.params, history.params)
    unguarded = tmp_path / "unguarded"
    with pytest.warns(
        UserWarning, match=r"ModelCheckpoint: the params or state are not finite at epoch 0; not saved"
    ):
        fnn.fit(
            mlp(), x, y, loss=LOSS, epochs=2, batch_size=32, verbose=0, shuffle=False,
            callbacks=[fnn.ModelCheckpoint(unguarded, monitor="loss")],
        )  # fmt: skip
    assert CheckpointManager(unguarded).steps() == []  # NaN params are never saved


def test_another_script_continues_a_model_checkpoint_exactly_through_train_state_restore(tmp_path):
    # Regression (issue 21): a restored checkpoint given as train_state= was an AttributeError.
    reference = run(epochs=2)
    run(epochs=1, callbacks=[fnn.ModelCheckpoint(tmp_path / "whole", monitor="loss")])
    with pytest.raises(
        TypeError, match=r"fit: train_state must be a TrainState, got dict; .*TrainState.restore"
    ):
        run(epochs=2, initial_epoch=1, train_state=CheckpointManager(tmp_path / "whole").restore())
    path = CheckpointManager(tmp_path / "whole").path(1)
    optimizer = fnn.optimizers.get("adam")
    train_state = fnn.TrainState.restore(path, mlp(), optimizer, (64,))
    continued = run(epochs=2, initial_epoch=1, train_state=train_state, optimizer=optimizer)
    assert continued.history["loss"] == reference.history["loss"][1:]  # the second epoch, bitwise
    chex.assert_trees_all_equal(
        continued.train_state._replace(key=None), reference.train_state._replace(key=None)
    )
    run(
        epochs=1,
        callbacks=[fnn.ModelCheckpoint(tmp_path / "weights", monitor="loss", save_weights_only=True)],
    )
    weights = fnn.TrainState.restore(CheckpointManager(tmp_path / "weights").path(1), mlp(), "adam", (64,))
    chex.assert_trees_all_equal(weights.params, train_state.params)
    assert int(weights.step) == 0  # a fresh optimiser state for the saved weights
    with pytest.raises(fnn.checkpoint.CheckpointError, match=r"holds neither a TrainState nor"):
        fnn.TrainState.restore(path, fnn.Dense(3), "adam", (64,))


def test_save_best_only_warns_when_its_monitor_is_never_finite(tmp_path):
    x, y = digits(64)
    x[0] = np.nan
    with pytest.warns(
        UserWarning, match=r"ModelCheckpoint: loss is nan at epoch 0 and has never been finite"
    ):
        fnn.fit(
            mlp(), x, y, loss=LOSS, epochs=1, batch_size=32, verbose=0, shuffle=False,
            callbacks=[fnn.ModelCheckpoint(tmp_path, monitor="loss", save_best_only=True)],
        )  # fmt: skip
    assert CheckpointManager(tmp_path).steps() == []


def test_backups_never_replace_the_last_finite_state_with_nan(tmp_path):
    x, y = digits(200)
    x[100] = np.nan  # step 3 of epoch 0 poisons the params; nothing stops the run
    options = dict(loss=LOSS, epochs=3, batch_size=32, verbose=0, shuffle=False, checkpoint_every=2)
    with pytest.warns(UserWarning, match=r"BackupAndRestore: the run's params or state are not finite .* at step 4, epoch 0; "
                      r"the backup of step 2 is kept instead"):  # fmt: skip
        fnn.fit(mlp(), x, y, checkpoint_dir=tmp_path, **options)
    manager = CheckpointManager(tmp_path)
    assert manager.steps() == [2]
    saved = manager.restore()["train_state"]["params"]
    clean = fnn.fit(mlp(), x[:64], y[:64], loss=LOSS, epochs=1, batch_size=32, verbose=0, shuffle=False)
    chex.assert_trees_all_equal(saved, clean.params)  # what a rerun resumes from: the finite state


# ------------------------------------------------------------------ freezing


def test_frozen_parameters_stay_bitwise_unchanged_even_with_weight_decay():
    model = fnn.Sequential([fnn.Dense(16, "relu", name="features"), fnn.Dense(10, name="head")])
    x, y = digits()
    start = model.init(jax.random.key(0), (64,))[0]
    optimizer = fnn.optimizers.freeze(fnn.optimizers.get("adamw", weight_decay=0.5), "features")
    history = run(model=model, params=start, optimizer=optimizer, data=(x, y))
    chex.assert_trees_all_equal(history.params["features"], start["features"])
    assert not np.array_equal(history.params["head"]["w"], start["head"]["w"])
    assert fnn.optimizers.learning_rate(history.opt_state) is not None
    table = str(fnn.summary(model, (64,), frozen="features"))
    assert "Frozen params:    1,040" in table and "Trainable params: 170" in table
    with pytest.raises(
        ValueError, match=r"freeze: pattern 'feature' matches no parameter; the paths are: features/b"
    ):
        run(model=model, optimizer=fnn.optimizers.freeze("adam", "feature"))


@pytest.mark.parametrize(
    ("pattern", "frozen"),
    [("features", {"features/b", "features/w"}), ("*/w", {"features/w", "head/w", "0/w"}), ("head/b", {"head/b"}),
     ("0", {"0/w"}), ("feat*", {"features/b", "features/w"})],
)  # fmt: skip
def test_freeze_patterns(pattern, frozen):
    params = {"features": {"w": 1, "b": 1}, "head": {"w": 1, "b": 1}, "0": {"w": 1}}
    assert fnn._core.select_paths("freeze", fnn._core.leaf_paths(params), pattern) == frozen


def test_a_frozen_base_in_inference_mode_keeps_params_and_statistics():
    base = fnn.Sequential([fnn.Dense(16), fnn.BatchNorm(), fnn.Relu()], name="base")
    model = fnn.Sequential([fnn.InferenceMode(base), fnn.Dropout(0.2), fnn.Dense(10, name="head")])
    params, state = model.init(jax.random.key(0), (64,))
    history = run(model=model, params=params, state=state, optimizer=fnn.optimizers.freeze("adam", "base"))
    chex.assert_trees_all_equal(history.params["base"], params["base"])
    chex.assert_trees_all_equal(history.state, state)  # BatchNorm's running statistics untouched
    assert not np.array_equal(history.params["head"]["w"], params["head"]["w"])
