"""The logger protocol that ``fit`` feeds (:class:`Logger`, :class:`Track`), the CSV logger and
Keras's ``CSVLogger`` on it; :mod:`fnn.tracking` adds the TensorBoard, MLflow and W&B adapters."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fnn._checks import check_int
from fnn._io import atomic_write_text
from fnn.train._callbacks import Callback, Logs
from fnn.train._run import FitRun

__all__ = ["CSV", "CSVLogger", "Logger", "Track"]


class Logger:
    """An experiment tracker's side of :class:`Track`; every method is a no-op by default."""

    def start(self) -> None:
        """A run begins (``fit`` calls it for each run the logger is given to)."""

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
            logger.start()
            logger.log_hparams(described)

    def _log(self, values: Mapping[str, float], step: int) -> None:
        values = {k: float(v) for k, v in values.items()}
        for logger in self.loggers:
            logger.log_scalars(values, step)

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
    """Scalars as rows of a CSV file (the step column first, then every name seen), rewritten
    atomically at each step.

    Args:
        path: the file to write.
        separator: the field separator.
        append: keep the rows already in the file (e.g. when resuming).
        step_name: the step column's name.
    """

    def __init__(
        self, path: str | os.PathLike, *, separator: str = ",", append: bool = False, step_name: str = "step"
    ):
        self.path, self.separator, self.append, self.step_name = Path(path), separator, append, step_name
        self.rows: list[dict[str, Any]] = []

    def start(self) -> None:
        self.rows = []
        if self.append and self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f, delimiter=self.separator))

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        self.rows.append({self.step_name: step, **values})
        fields = list(dict.fromkeys(k for row in self.rows for k in row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, delimiter=self.separator, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue())


class CSVLogger(Track):
    """Writes each epoch's logs as a row of a CSV file (atomically, every epoch), as Keras's
    ``CSVLogger``: an ``epoch`` column (from 0), then the logs. A :class:`Track` over a :class:`CSV`.

    Args:
        path: the file to write.
        separator: the field separator.
        append: keep rows already in the file (e.g. when resuming).
    """

    def __init__(self, path: str | os.PathLike, *, separator: str = ",", append: bool = False):
        super().__init__(CSV(path, separator=separator, append=append, step_name="epoch"))

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        self._log(logs, epoch)  # Keras's column: the epoch's index, not the epochs completed

    def get_state(self) -> dict[str, Any]:
        return {"rows": self.loggers[0].rows}

    def set_state(self, state: dict[str, Any]) -> None:
        self.loggers[0].rows = state["rows"]
