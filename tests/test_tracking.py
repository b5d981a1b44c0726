"""fnn.tracking: what fit logs, read back with the trackers' own readers (MLflow's client)."""

from __future__ import annotations

import numpy as np
import pytest

import fnn
from fnn.tracking import Logger, Track
from tests.fitting import LOSS, digits

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


class Recorder(Logger):
    def __init__(self):
        self.calls = []

    def log_hparams(self, hparams):
        self.calls.append(("hparams", dict(hparams)))

    def log_scalars(self, values, step):
        self.calls.append(("scalars", step, dict(values)))

    def log_artifact(self, path):
        self.calls.append(("artifact", str(path)))

    def finish(self, failed=False):
        self.calls.append(("finish", failed))


def run(callbacks, epochs=2, **kwargs):
    x, y = digits(96)
    model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(10)])
    return fnn.fit(model, x, y, loss=LOSS, metrics=["accuracy"], epochs=epochs, batch_size=32, verbose=0,
                   validation_split=0.25, callbacks=callbacks, **kwargs)  # fmt: skip


def test_track_feeds_hparams_epoch_and_batch_logs_artifacts_and_the_end(tmp_path):
    recorder, plot = Recorder(), tmp_path / "curves.png"
    plot.write_bytes(b"png")
    history = run([Track(recorder, hparams={"lr": 1e-3, "optimizer": fnn.optimizers}, every_steps=1,
                         artifacts=[plot])])  # fmt: skip
    hparams = recorder.calls[0]
    assert hparams[0] == "hparams" and hparams[1]["lr"] == 1e-3 and hparams[1]["epochs"] == 2
    assert hparams[1]["params"] == 8 * 64 + 8 + 8 * 10 + 10 and hparams[1]["optimizer"].startswith("<module")
    epochs = [c for c in recorder.calls if c[0] == "scalars" and "loss" in c[2]]
    assert [c[1] for c in epochs] == [1, 2]
    for (_, _, logged), i in zip(epochs, range(2)):
        assert logged == {k: v[i] for k, v in history.history.items()}
    batches = [c for c in recorder.calls if c[0] == "scalars" and "batch_loss" in c[2]]
    assert [c[1] for c in batches] == list(range(1, 7))  # 72 examples in batches of 32: 3 steps an epoch
    assert recorder.calls[-2:] == [("artifact", str(plot)), ("finish", False)]


def test_a_failed_run_is_finished_as_failed(tmp_path):
    class Fails(fnn.Callback):
        def on_epoch_end(self, epoch, logs, run):
            raise RuntimeError("boom")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        run([Track(recorder), Fails()])
    assert recorder.calls[-1] == ("finish", True)


def test_track_checks_its_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"Track: loggers must be fnn.tracking.Logger instances, got 'csv'"):
        Track("csv")
    with pytest.raises(ValueError, match=r"Track: every_steps must be a positive int, got 0"):
        Track(Recorder(), every_steps=0)
    with pytest.raises(FileNotFoundError, match=r"Track: artifacts \['.*nothing.png'\] do not exist"):
        run([Track(Recorder(), artifacts=[tmp_path / "nothing.png"])], epochs=1)


def test_an_mlflow_run_reads_back_with_mlflows_client_as_the_history(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="needs mlflow-skinny (the dev extra)")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store: no server, no database
    uri = (tmp_path / "mlruns").as_uri()
    logger = fnn.tracking.MLflow("digits", run_name="mlp", tracking_uri=uri)
    history = run([Track(logger, hparams={"lr": 0.001}, artifacts=[__file__])])
    client = MlflowClient(uri)
    got = client.get_run(logger.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "mlp"
    assert got.data.params["lr"] == "0.001" and got.data.params["epochs"] == "2"
    for name, values in history.history.items():
        logged = sorted((m.step, m.value) for m in client.get_metric_history(logger.run_id, name))
        assert [s for s, _ in logged] == [1, 2]
        np.testing.assert_allclose([v for _, v in logged], values, rtol=1e-6)
    assert [a.path for a in client.list_artifacts(logger.run_id)] == ["test_tracking.py"]


def wandb_records(folder):
    """The records of the offline W&B run under ``folder``, read with W&B's own reader."""
    import json

    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    (file,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(file))
    records = []
    name = lambda item: item.key or "/".join(item.nested_key)  # noqa: E731
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            records.append(("history", {name(i): json.loads(i.value_json) for i in record.history.item}))
        elif kind == "config":
            records.append(("config", {name(i): json.loads(i.value_json) for i in record.config.update}))
        elif kind == "exit":
            records.append(("exit", record.exit.exit_code))
    store.close()
    return records


def test_a_wandb_offline_run_reads_back_with_wandbs_reader_as_the_history(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="needs wandb (the dev extra)")
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    # Without the repository's git state and the machine's description, which W&B gathers at start.
    quiet = wandb.Settings(disable_git=True, x_disable_meta=True, x_disable_stats=True, console="off")
    logger = fnn.tracking.WandB("digits", name="mlp", dir=tmp_path, settings=quiet)
    history = run([Track(logger, hparams={"lr": 0.001})])
    records = wandb_records(tmp_path)
    config = {k: v for kind, c in records if kind == "config" for k, v in c.items()}
    assert config["lr"] == 0.001 and config["epochs"] == 2
    rows = [r for kind, r in records if kind == "history"]
    assert [r["step"] for r in rows] == [1, 2]
    for name, values in history.history.items():
        np.testing.assert_allclose([r[name] for r in rows], values, rtol=1e-6)
    assert ("exit", 0) in records


def test_csv_and_tensorboard_loggers_hold_the_history(tmp_path):
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    table, board = fnn.tracking.CSV(tmp_path / "log.csv"), fnn.tracking.TensorBoard(tmp_path / "tb")
    history = run([Track(table, board, hparams={"lr": 0.001})])
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for name, values in history.history.items():
        np.testing.assert_allclose([float(r[name]) for r in rows], values, rtol=1e-6)
        logged = events.Scalars(name)
        assert [e.step for e in logged] == [1, 2]
        np.testing.assert_allclose([e.value for e in logged], values, rtol=1e-6)
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))  # and the HParams run beside it


def test_csv_logger_is_a_track_over_csv_keeps_non_finite_logs_and_restarts_each_run(tmp_path):
    import csv

    logger = fnn.CSVLogger(tmp_path / "log.csv")
    assert isinstance(logger, Track) and isinstance(logger.loggers[0], fnn.tracking.CSV)
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(32, 2)
    model = fnn.Sequential([fnn.Dense(1), fnn.Lambda(lambda h: h * np.float32("nan"), name="nan")])
    # A NaN loss is written as such (MLflow and W&B refuse NaN, so their adapters leave it out).
    for _ in range(2):  # the same logger for two runs: each rewrites the file from its first epoch
        fnn.fit(model, x, x[:, :1], loss="mse", optimizer="sgd", epochs=2, verbose=0, callbacks=[logger])
        with open(tmp_path / "log.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [(r["epoch"], r["loss"]) for r in rows] == [("0", "nan"), ("1", "nan")]


def test_optuna_pruning_reports_each_epochs_value_and_prunes_as_the_pruner_says():
    optuna = pytest.importorskip("optuna")
    x, y = digits(200)
    options = dict(loss=LOSS, epochs=4, batch_size=32, validation_split=0.2, verbose=0, seed=2)
    # Prunes any trial whose val_loss is above 0 once one epoch is past warm-up: here after epoch 1.
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=1))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match=r"pruned at epoch 1: val_loss = [0-9.]+"):
        fnn.fit(fnn.Dense(10), x, y, callbacks=[fnn.tracking.OptunaPruning(trial)], **options)
    unpruned = fnn.fit(fnn.Dense(10), x, y, **options)
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == dict(
        enumerate(unpruned.history["val_loss"][:2])
    )

    def objective(trial):
        callbacks = [fnn.tracking.OptunaPruning(trial, monitor="val_loss")]
        return fnn.fit(fnn.Dense(10), x, y, callbacks=callbacks, **options).history["val_loss"][-1]

    study.optimize(objective, n_trials=1)
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED


def test_optuna_pruning_names_what_is_missing():
    optuna = pytest.importorskip("optuna")
    x, y = digits(64)
    trial = optuna.create_study().ask()
    with pytest.raises(
        KeyError,
        match=r"OptunaPruning monitors 'val_loss', which the logs do not have; available: \['learning_rate', 'loss'\]",
    ):
        fnn.fit(fnn.Dense(10), x, y, loss=LOSS, verbose=0, callbacks=[fnn.tracking.OptunaPruning(trial)])
    with pytest.raises(TypeError, match="trial must be an optuna.Trial, got dict"):
        fnn.tracking.OptunaPruning({})
