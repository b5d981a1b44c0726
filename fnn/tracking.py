"""Experiment tracking: a small logger protocol that ``fit`` feeds, with MLflow and W&B adapters.

A :class:`Logger` receives a run's hyper-parameters once, its scalars at
steps, files (artifacts), and the end of the run. The :class:`Track` callback
feeds any number of them from ``fit``: the hyper-parameters at the start, each
epoch's logs (named as in :class:`fnn.History`: ``loss``, ``val_loss``,
``accuracy`` ...) at step = epochs completed, optionally the training logs
every N steps (``batch_loss`` ... at the global step), the files you name at
the end, and whether the run finished or failed. Only process 0 logs in a
multi-process run.

Adapters: :class:`CSV` (a file, no dependency), :class:`TensorBoard`
(``fnn[tensorboard]``), :class:`MLflow` (``pip install 'fnn[mlflow]'``; any tracking URI
MLflow's client accepts) and :class:`WandB` (``pip install 'fnn[wandb]'``;
offline by default, so nothing leaves the machine until ``wandb sync``).
Write your own by subclassing :class:`Logger`.

Example:
    >>> import numpy as np, fnn
    >>> class Printer(fnn.tracking.Logger):
    ...     def log_scalars(self, values, step):
    ...         print(step, sorted(values))
    >>> x = np.zeros((8, 2), np.float32)
    >>> _ = fnn.fit(fnn.Dense(1), x, x[:, :1], loss="mse", optimizer="sgd", epochs=2, verbose=0,
    ...             callbacks=[fnn.tracking.Track(Printer())])
    1 ['learning_rate', 'loss']
    2 ['learning_rate', 'loss']
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fnn.train._callbacks import Callback
from fnn.train._tracking import CSV, Logger, Track

__all__ = ["CSV", "Logger", "MLflow", "OptunaPruning", "TensorBoard", "Track", "WandB"]


class TensorBoard(Logger):
    """Scalars as TensorBoard event files (``fnn[tensorboard]``); the hyper-parameters go to the
    HParams tab with the last value of each epoch scalar when the run ends.

    Args:
        logdir: the run's directory.
        split_validation: Keras's layout, as :class:`fnn.TensorBoard` writes it:
            ``logdir/train`` and ``logdir/validation`` runs whose epoch scalars
            share tags (``epoch_loss`` in both, from ``loss`` and ``val_loss``),
            so TensorBoard overlays them; ``batch_*`` scalars go to ``train``.
            Otherwise every scalar goes to ``logdir`` under its own name.

    Attributes:
        train, validation: the :class:`fnn.tensorboard.Writer` of each run
            while one is open (the same one without ``split_validation``).
    """

    def __init__(self, logdir: str | os.PathLike, *, split_validation: bool = False):
        from fnn.tensorboard import _tensorboardx

        _tensorboardx()  # fail now, not when the run starts
        self.logdir, self.split_validation = Path(logdir), split_validation

    def start(self) -> None:
        from fnn.tensorboard import Writer

        if self.split_validation:
            self.train, self.validation = Writer(self.logdir / "train"), Writer(self.logdir / "validation")
        else:
            self.train = self.validation = Writer(self.logdir)
        self.hparams: dict[str, Any] = {}
        self.last: dict[str, float] = {}

    def log_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.hparams.update(hparams)

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            if name.startswith("batch_"):
                self.train.scalar(name, value, step)
                continue
            self.last[name] = value
            if not self.split_validation:
                self.train.scalar(name, value, step)
            elif name.startswith("val_"):
                self.validation.scalar(f"epoch_{name.removeprefix('val_')}", value, step)
            else:
                self.train.scalar(f"epoch_{name}", value, step)

    def finish(self, failed: bool = False) -> None:
        if self.hparams:
            self.train.hparams(self.hparams, self.last)
        for writer in {id(w): w for w in (self.train, self.validation)}.values():
            writer.close()


class MLflow(Logger):
    """Logs to an MLflow run through MLflow's client (``pip install 'fnn[mlflow]'``).

    Args:
        experiment: the experiment's name (created when missing).
        run_name: the run's name (MLflow makes one up by default).
        tracking_uri: where MLflow stores runs (a server ``http://...``, a
            database ``sqlite:///mlflow.db``, ...); by default MLflow's own
            setting (``MLFLOW_TRACKING_URI``).

    Attributes:
        run_id: the MLflow run's id, to read it back with ``MlflowClient``.
    """

    def __init__(
        self, experiment: str = "fnn", *, run_name: str | None = None, tracking_uri: str | None = None
    ):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ImportError("fnn.tracking.MLflow needs MLflow: pip install 'fnn[mlflow]'") from e
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id if found is not None else self.client.create_experiment(experiment)
        )
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_hparams(self, hparams: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in hparams.items()])

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [
            Metric(k, v, now, step) for k, v in values.items() if math.isfinite(v)
        ]  # MLflow refuses NaN
        self.client.log_batch(self.run_id, metrics=finite)

    def log_artifact(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        else:
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class WandB(Logger):
    """Logs to a Weights & Biases run (``pip install 'fnn[wandb]'``), offline by default.

    Args:
        project: the W&B project.
        name: the run's name.
        mode: ``"offline"`` (files under ``dir``; ``wandb sync`` uploads them),
            ``"online"`` or ``"disabled"``.
        dir: where W&B writes its files (``wandb/`` in the working directory by default).
        **options: passed on to ``wandb.init`` (``settings=wandb.Settings(...)``, ``tags``, ``group`` ...).

    Attributes:
        run: the ``wandb`` run.
    """

    def __init__(
        self,
        project: str = "fnn",
        *,
        name: str | None = None,
        mode: str = "offline",
        dir: str | os.PathLike | None = None,
        **options: Any,
    ):
        try:
            import wandb
        except ImportError as e:
            raise ImportError("fnn.tracking.WandB needs wandb: pip install 'fnn[wandb]'") from e
        self.run = wandb.init(
            project=project, name=name, mode=mode, dir=None if dir is None else str(dir), **options
        )

    def log_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.run.config.update(dict(hparams))

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        # W&B's own step must only grow, and epoch and batch logs count different steps: ours goes
        # in as a value ("step"), W&B's counts the calls.
        finite = {k: v for k, v in values.items() if math.isfinite(v)}  # as MLflow, W&B refuses NaN
        self.run.log({**finite, "step": step})

    def log_artifact(self, path: str | os.PathLike) -> None:
        import wandb

        path = Path(path)
        artifact = wandb.Artifact(path.name.replace(" ", "_") or "artifact", type="file")
        (artifact.add_dir if path.is_dir() else artifact.add_file)(str(path))
        self.run.log_artifact(artifact)

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class OptunaPruning(Callback):
    """Reports a monitored log to an Optuna trial each epoch and stops the trial when Optuna prunes it.

    Optuna's pruners (median, successive halving, Hyperband ...) compare a
    trial's intermediate values with the other trials' at the same epoch;
    this callback gives them ``logs[monitor]`` after every epoch
    (``trial.report(value, epoch)``) and, when ``trial.should_prune()``, raises
    ``optuna.TrialPruned`` out of ``fit``, as Optuna's own Keras and
    PyTorch Lightning integrations do, so the study records the trial as pruned.
    Needs ``optuna`` (``pip install optuna``).

    Args:
        trial: the ``optuna.Trial`` the objective was given.
        monitor: the log to report, e.g. ``"val_loss"`` or ``"val_accuracy"``
            (the study's direction says which way is better).

    Raises:
        KeyError: when the logs have no ``monitor``, naming the logs there are.
        optuna.TrialPruned: when the trial's pruner says so.

    Examples:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> prune = OptunaPruning(study.ask(), monitor="val_loss")
    """

    def __init__(self, trial: Any, monitor: str = "val_loss"):
        if not (hasattr(trial, "report") and hasattr(trial, "should_prune")):
            raise TypeError(f"OptunaPruning: trial must be an optuna.Trial, got {type(trial).__name__}")
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float], run: Any) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"OptunaPruning monitors {self.monitor!r}, which the logs do not have; available: "
                f"{sorted(logs)} (val_ entries need validation data)"
            )
        value = logs[self.monitor]
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor} = {value:.6g}")
