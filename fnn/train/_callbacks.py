"""Callbacks for :func:`fnn.fit`: hooks at train begin/end and epoch begin/end.

A callback sees the run through a :class:`FitRun`: it reads the logs and the
:class:`~fnn.train.TrainState`, and acts by replacing ``run.train_state`` (a new
value, never an in-place change) or by setting ``run.stop_training``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fnn import metrics, optimizers
from fnn.train._run import FitRun
from fnn.train._state import TrainState

Logs = dict[str, float]


class Callback:
    """Base class: override the hooks you need; each is a no-op by default."""

    #: ``fit`` guards steps against non-finite losses when any callback sets this.
    guards_nan: bool = False
    #: In a multi-process run only process 0 runs it (it writes files or shows output).
    primary_only: bool = False
    #: ``fit`` calls :meth:`on_steps_end` every this many steps of an epoch when set
    #: (and ends fused calls there, so it costs a host sync each time).
    step_interval: int | None = None

    def on_train_begin(self, run: FitRun) -> None:
        """Called once before the first epoch; reset per-run state here."""

    def on_epoch_begin(self, epoch: int, run: FitRun) -> None:
        """Called before each epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        """Called after each epoch with its train and validation logs."""

    def on_steps_end(self, step: int, logs: Logs, run: FitRun) -> None:
        """Called every :attr:`step_interval` steps with the mean logs of those steps.

        ``step`` is the global step count (optimiser steps taken so far).
        """

    def on_train_end(self, run: FitRun) -> None:
        """Called once after the last epoch, also after an early stop."""

    def close(self) -> None:
        """Called when ``fit`` returns or raises: release what the callback holds (a thread, a trace)."""

    def get_state(self) -> dict[str, Any]:
        """The callback's progress as plain JSON data, kept in backups (see ``BackupAndRestore``)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues from :meth:`get_state`'s data; a resumed ``fit`` calls it after ``on_train_begin``."""


class _Monitor:
    """Tracks the best value of a monitored log entry."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"{owner}: min_delta must be >= 0, got {min_delta!r}")
        if mode == "auto":
            mode = metrics.better(monitor)
        self.owner, self.monitor, self.mode, self.min_delta = owner, monitor, mode, min_delta
        self.best: float | None = None

    def value(self, logs: Logs) -> float:
        if self.monitor not in logs:
            raise KeyError(
                f"{self.owner} monitors {self.monitor!r}, which the logs do not have; "
                f"available: {sorted(logs)} (val_ entries need validation data)"
            )
        return logs[self.monitor]

    def is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta


class EarlyStopping(Callback):
    """Stops training when a monitored value stops improving.

    Args:
        monitor: the log entry to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like names).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        restore_best_weights: at the end of training, put back the params and
            state of the best epoch (the optimiser state is left as it is).
        baseline: a value the monitored entry must beat for patience to reset.
        start_from_epoch: epochs to wait before watching (warm-up).

    Examples:
        >>> stop = EarlyStopping("val_loss", patience=3, restore_best_weights=True)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
        baseline: float | None = None,
        start_from_epoch: int = 0,
    ):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, run: FitRun) -> None:
        self.wait = 0
        self._monitor.best = None
        self.best_epoch: int | None = None
        self.best_state: TrainState | None = None
        self.stopped_epoch: int | None = None

    def get_state(self) -> dict[str, Any]:
        # The best weights themselves are not kept: a resumed run restores the best of its own epochs.
        return {"wait": self.wait, "best": self._monitor.best, "best_epoch": self.best_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self._monitor.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        value = self._monitor.value(logs)
        if epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._monitor.is_improvement(value, self._monitor.best):
            self._monitor.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_state = run.snapshot()
            if self.baseline is None or self._monitor.is_improvement(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            run.stop_training = True
            run.stop_reason = (
                f"EarlyStopping: {self._monitor.monitor} did not improve for {self.wait} "
                f"epoch(s); best {self._monitor.best!r} at epoch {self.best_epoch}"
            )

    def on_train_end(self, run: FitRun) -> None:
        if self.restore_best_weights and self.best_state is not None:
            run.train_state = run.train_state._replace(
                params=self.best_state.params, state=self.best_state.state
            )


def _current_rate(owner: str, run: FitRun) -> float:
    rate = optimizers.learning_rate(run.train_state.opt_state)
    if rate is None:
        raise ValueError(
            f"{owner} needs the learning rate in the optimiser state: pass the optimiser "
            "by name (or fnn.optimizers.get), or build it with "
            "optax.inject_hyperparams(optax.adam)(learning_rate=...)"
        )
    return float(rate)


def _set_rate(run: FitRun, rate: float) -> None:
    ts = run.train_state
    run.train_state = ts._replace(opt_state=optimizers.set_learning_rate(ts.opt_state, rate))


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when a monitored value plateaus.

    The rate lives in the optimiser state (see :func:`fnn.optimizers.set_learning_rate`),
    so changing it never recompiles.

    Args:
        monitor: the log entry to watch.
        factor: the multiplier, in ``(0, 1)``.
        patience: epochs without improvement before reducing.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        min_delta: the smallest change that counts as an improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the rate never goes below this.

    Examples:
        >>> reduce = ReduceLROnPlateau("val_loss", factor=0.5, patience=2)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self._monitor = _Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr

    def on_train_begin(self, run: FitRun) -> None:
        _set_rate(run, _current_rate("ReduceLROnPlateau", run))  # fails early on schedules
        self.wait = self.cooldown_left = 0
        self._monitor.best = None

    def get_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "cooldown_left": self.cooldown_left, "best": self._monitor.best}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self.cooldown_left, self._monitor.best = (
            state["wait"],
            state["cooldown_left"],
            state["best"],
        )

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        value = self._monitor.value(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._monitor.is_improvement(value, self._monitor.best):
            self._monitor.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                rate = _current_rate("ReduceLROnPlateau", run)
                new_rate = max(rate * self.factor, self.min_lr)
                if new_rate < rate:
                    _set_rate(run, new_rate)
                self.cooldown_left, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch's start from ``schedule(epoch, rate)``.

    For per-step schedules, pass an optax schedule as the optimiser's
    ``learning_rate`` instead; ``fit`` logs the current rate either way.

    Examples:
        >>> halve_every_10 = LearningRateScheduler(lambda epoch, rate: rate * 0.5 if epoch and epoch % 10 == 0 else rate)
    """

    def __init__(self, schedule: Callable[[int, float], float]):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, run: FitRun) -> None:
        rate = float(self.schedule(epoch, _current_rate("LearningRateScheduler", run)))
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(
                f"LearningRateScheduler: schedule returned {rate!r} at epoch {epoch}; rates must be positive"
            )
        _set_rate(run, rate)


class TerminateOnNaN(Callback):
    """Stops at the first step whose loss or update is NaN or infinite, keeping the last finite state.

    With it, every step checks on the device its loss *and* the params, state
    and optimiser state it computed (a NaN learning rate, or a gradient that is
    NaN at a finite loss, such as RMSE at zero error, leaves the loss finite):
    a step that makes a finite value NaN or infinite (values infinite by design,
    such as a best-so-far that starts at ``inf``, may stay so) and any step
    after it leave them all unchanged, so the run ends with the parameters from
    just before the bad step, and the History's ``stop_reason`` names that step.

    Args:
        find_cause: also replay that step one operation at a time
            (:func:`fnn.find_non_finite`) and name in ``stop_reason`` the first
            layer whose output or gradient went NaN/Inf (or the input, or the
            optimiser update). Seconds of work, once, when a run fails.

    Examples:
        >>> stop = TerminateOnNaN(find_cause=True)
    """

    guards_nan = True

    def __init__(self, *, find_cause: bool = False):
        self.find_cause = find_cause

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        if run.nan_step is None:
            return
        run.stop_training = True
        run.stop_reason = (
            f"TerminateOnNaN: the loss or the update was not finite at step {run.nan_step} "
            f"(epoch {epoch}); params are those from before that step"
        )
        if not self.find_cause:
            run.stop_reason += " (TerminateOnNaN(find_cause=True) names the layer)"
            return
        if run.find_non_finite is None:
            run.stop_reason += " (its batch cannot be replayed: a stream of batches, or another process's)"
            return
        found = run.find_non_finite()
        run.stop_reason += ": " + (found.message if found else "a replay found every value finite")
