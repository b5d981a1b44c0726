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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fnn._checks import check_int
from fnn.train._callbacks import Callback, Logs
from fnn.train._run import FitRun

__all__ = ["CSV", "Logger", "MLflow", "TensorBoard", "Track", "WandB"]


class Logger:
    """An experiment tracker's side of :class:`Track`; every method is a no-op by default."""

    def log_hparams(self, hparams: Mapping[str, Any]) -> None:
        """The run's hyper-parameters (plain values), once, before training."""

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        """Scalars at a step (epoch logs at epochs completed, ``batch_*`` logs at the global step)."""

    def log_artifact(self, path: str | os.PathLike) -> None:
        """A file or directory to keep with the run."""

    def finish(self, failed: bool = False) -> None:
        """The run ended (``failed``: ``fit`` raised)."""


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


class Track(Callback):
    """Feeds a ``fit`` run to experiment loggers (see the module's notes).

    Args:
        *loggers: :class:`Logger` instances (``MLflow(...)``, ``WandB(...)``, your own).
        hparams: hyper-parameters to record (values other than bool, int, float
            and str are recorded as their ``str``); ``fit``'s epochs and the
            model's parameter count are added.
        every_steps: also log the training logs every this many steps
            (fused execution then runs at most that many steps per call).
        artifacts: files or directories to log when training ends (a
            checkpoint directory, a plot); missing ones are an error then.
    """

    primary_only = True

    def __init__(
        self,
        *loggers: Logger,
        hparams: Mapping[str, Any] | None = None,
        every_steps: int | None = None,
        artifacts: Sequence[str | os.PathLike] = (),
    ):
        for logger in loggers:
            if not isinstance(logger, Logger):
                raise TypeError(f"Track: loggers must be fnn.tracking.Logger instances, got {logger!r}")
        every_steps = None if every_steps is None else check_int("Track", "every_steps", every_steps)
        self.loggers, self.step_interval = list(loggers), every_steps
        self.hparams = {k: _plain(v) for k, v in (hparams or {}).items()}
        self.artifacts = [Path(p) for p in artifacts]
        self._open = False

    def on_train_begin(self, run: FitRun) -> None:
        from fnn._core import count_params

        self._open, self._ended = True, False
        described = {"epochs": run.epochs, "params": count_params(run.train_state.params)[0], **self.hparams}
        for logger in self.loggers:
            logger.log_hparams(described)

    def _log(self, values: Mapping[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}  # trackers reject NaN
        for logger in self.loggers:
            logger.log_scalars(finite, step)

    def on_steps_end(self, step: int, logs: Logs, run: FitRun) -> None:
        self._log({f"batch_{k}": v for k, v in logs.items()}, step)

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        self._log(logs, epoch + 1)

    def on_train_end(self, run: FitRun) -> None:
        missing = [str(p) for p in self.artifacts if not p.exists()]
        if missing:
            raise FileNotFoundError(f"Track: artifacts {missing} do not exist at the end of training")
        for path in self.artifacts:
            for logger in self.loggers:
                logger.log_artifact(path)
        self._ended = True

    def close(self) -> None:
        if self._open:
            self._open = False
            for logger in self.loggers:
                logger.finish(failed=not self._ended)


class CSV(Logger):
    """Scalars as rows of a CSV file (``step`` first, then every name seen), rewritten atomically
    at each step, as :class:`fnn.CSVLogger` writes its epochs.

    Args:
        path: the file to write.
        separator: the field separator.
    """

    def __init__(self, path: str | os.PathLike, *, separator: str = ","):
        self.path, self.separator = Path(path), separator
        self.rows: list[dict[str, Any]] = []

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        from fnn.train._callbacks import write_csv

        self.rows.append({"step": step, **values})
        write_csv(self.path, self.rows, self.separator)


class TensorBoard(Logger):
    """Scalars as TensorBoard event files (``fnn[tensorboard]``); the hyper-parameters go to the
    HParams tab with the last value of each scalar when the run ends.

    Args:
        logdir: the run's directory.
    """

    def __init__(self, logdir: str | os.PathLike):
        from fnn.tensorboard import Writer

        self.writer = Writer(logdir)
        self.hparams: dict[str, Any] = {}
        self.last: dict[str, float] = {}

    def log_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.hparams.update(hparams)

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        self.writer.scalars(values, step)
        self.last.update(values)

    def finish(self, failed: bool = False) -> None:
        if self.hparams:
            self.writer.hparams(self.hparams, self.last)
        self.writer.close()


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
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

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
        self.run.log({**values, "step": step})

    def log_artifact(self, path: str | os.PathLike) -> None:
        import wandb

        path = Path(path)
        artifact = wandb.Artifact(path.name.replace(" ", "_") or "artifact", type="file")
        (artifact.add_dir if path.is_dir() else artifact.add_file)(str(path))
        self.run.log_artifact(artifact)

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)
