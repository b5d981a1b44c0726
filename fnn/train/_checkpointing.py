"""Checkpoint callbacks for :func:`fnn.fit`: ModelCheckpoint and BackupAndRestore."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from fnn.checkpoint import CheckpointManager
from fnn.train._callbacks import Callback, Logs, _Monitor
from fnn.train._run import Carry, FitRun, Progress
from fnn.train._state import all_finite


class ModelCheckpoint(Callback):
    """Saves the model at the end of epochs: every one, or only when it is the best so far.

    Checkpoints go to ``directory/ckpt_<epochs completed>`` through a
    :class:`fnn.checkpoint.CheckpointManager` (atomic, verified). A state with
    non-finite parameters is never saved (a warning says so), so the newest
    checkpoint on disk is the last finite one. With ``save_best_only``, a
    monitored value that has never been finite (NaN every epoch) warns
    instead of saving nothing silently. Each warning comes once a run.

    Args:
        directory: where to write.
        monitor: the log entry that decides "best" (with ``save_best_only``) and
            which checkpoints ``keep_best`` keeps.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        save_best_only: save only when ``monitor`` improves.
        save_weights_only: save ``{"params", "state"}`` instead of the whole
            :class:`TrainState` (optimiser state, step and key too).
        max_to_keep: how many of the newest checkpoints to keep (``None``: all);
            the best by ``monitor`` is kept as well.
        every_epochs: save every this many epochs.

    Examples:
        >>> import tempfile, numpy as np, fnn
        >>> checkpoint = ModelCheckpoint(tempfile.mkdtemp(), monitor="val_loss", save_best_only=True)
        >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
        >>> history = fnn.fit(fnn.Dense(1), x, x[:, :1], loss="mse", optimizer="sgd", epochs=3,
        ...                   validation_split=0.25, verbose=0, callbacks=[checkpoint])
        >>> best = checkpoint.manager.restore(step=checkpoint.manager.best())  # the manager knows the monitor
        >>> sorted(best)  # the whole TrainState (save_weights_only=True: params and state only)
        ['key', 'opt_state', 'params', 'state', 'step']
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_best_only: bool = False,
        save_weights_only: bool = False,
        max_to_keep: int | None = None,
        every_epochs: int = 1,
    ):
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode, 0.0)
        self.manager = CheckpointManager(
            directory, max_to_keep=max_to_keep, every=every_epochs, monitor=monitor, mode=self._monitor.mode
        )
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only

    def on_train_begin(self, run: FitRun) -> None:
        self._monitor.best = None
        self._warned: set[str] = set()  # each warning once a run

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, stacklevel=3)

    def get_state(self) -> dict[str, Any]:
        return {"best": self._monitor.best}

    def set_state(self, state: dict[str, Any]) -> None:
        self._monitor.best = state["best"]

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        value = self._monitor.value(logs)
        improved = self._monitor.is_improvement(value, self._monitor.best)
        if improved:
            self._monitor.best = value
        elif self.save_best_only and self._monitor.best is None:
            self._warn_once(
                "monitor",
                f"ModelCheckpoint: {self._monitor.monitor} is {value} at epoch {epoch} and has never been "
                "finite, so nothing has been saved yet",
            )
        ts = run.train_state
        if self.save_best_only and not improved:
            return
        if not bool(all_finite((ts.params, ts.state))):
            self._warn_once(
                "state",
                f"ModelCheckpoint: the params or state are not finite at epoch {epoch}; not saved, "
                f"the newest checkpoint in {self.manager.directory} stays the last finite one",
            )
            return
        tree = {"params": ts.params, "state": ts.state} if self.save_weights_only else ts
        self.manager.save(
            epoch + 1, tree, metadata={"epoch": epoch, "logs": logs}, metrics=logs, force=self.save_best_only
        )


class BackupAndRestore(Callback):
    """Backs a run up as it trains so that rerunning it after a crash continues exactly.

    ``fit`` saves the whole run (params, state, optimiser state, step, PRNG
    key, the position in the epoch, the running epoch logs and the history) at
    every epoch end and, with ``every_steps``, inside epochs. When ``fit``
    starts with a backup in ``directory`` (written by a run with the same
    data size, batch size, seed and shuffling) it continues from it, so the
    final parameters are bitwise those of an uninterrupted run on CPU. The
    callbacks' progress (:meth:`Callback.get_state`: patience counters, best
    values, CSV rows) is kept too, so the rerun needs the same callbacks;
    :class:`EarlyStopping` keeps its best value but not its best weights.
    A run whose params or model state are not finite (NaN or Inf) is never
    backed up: the newest backup stays the last finite state, and a
    warning says so, so a rerun never resumes from NaN.

    Args:
        directory: where the backups live.
        every_steps: also back up every this many steps inside an epoch
            (fused execution then runs at most this many steps per call).
        delete_checkpoint: delete the backups once training ends (as Keras
            does); ``fit(checkpoint_dir=...)`` keeps them, so a finished run
            rerun returns at once.
        max_to_keep: backups to keep (the newest are kept).

    Examples:
        >>> import tempfile
        >>> backup = BackupAndRestore(tempfile.mkdtemp(), every_steps=100)
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        every_steps: int | None = None,
        delete_checkpoint: bool = True,
        max_to_keep: int = 2,
    ):
        if every_steps is not None and (
            isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1
        ):
            raise ValueError(
                f"BackupAndRestore: every_steps must be a positive int or None, got {every_steps!r}"
            )
        self.manager = CheckpointManager(directory, max_to_keep=max_to_keep)
        self.every_steps, self.delete_checkpoint = every_steps, delete_checkpoint

    def bind(self, fingerprint: Mapping[str, Any], callback_kinds: Sequence[str]) -> None:
        """Binds the backup to a run: its data fingerprint and its callbacks' kinds, which a resume must match."""
        self.fingerprint, self.callback_kinds = dict(fingerprint), list(callback_kinds)
        self.kept_finite = False  # whether a non-finite state was refused (and said so) this run

    def restore(self, template: Carry) -> tuple[Carry, Progress, list[dict]] | None:
        """The newest backup fitted into ``template``: the carry, the progress and the callbacks' states."""
        if self.manager.latest() is None:
            return None
        saved = self.manager.metadata()["fit"]
        differ = [
            f"{k}: the backup has {saved['fingerprint'].get(k)!r}, this run {v!r}"
            for k, v in self.fingerprint.items()
            if saved["fingerprint"].get(k) != v
        ]
        if differ:
            raise ValueError(
                f"BackupAndRestore: the backup in {self.manager.directory} comes from a different run "
                "(" + "; ".join(differ) + "); use another directory or delete it"
            )
        saved_kinds = [entry["type"] for entry in saved["callbacks"]]
        if self.callback_kinds != saved_kinds:
            raise ValueError(
                f"BackupAndRestore: the backup was made with callbacks {saved_kinds}, this run has "
                f"{self.callback_kinds}; pass the same callbacks to continue it"
            )
        tree = self.manager.restore(target=_tree(template))
        carry = Carry(tree["train_state"], **tree["epoch_logs"])
        return carry, Progress.from_json(saved), [entry["state"] for entry in saved["callbacks"]]

    def save(self, run: FitRun, callback_states: Sequence[dict]) -> None:
        """Backs up the run (its carry and progress) with the callbacks' states; never a non-finite state."""
        train_state = run.carry.train_state
        if not bool(all_finite((train_state.params, train_state.state))):
            if not self.kept_finite:
                kept = self.manager.latest()
                warnings.warn(
                    f"BackupAndRestore: the run's params or state are not finite (NaN or Inf) at step "
                    f"{int(train_state.step)}, epoch {run.progress.epoch}; "
                    + ("no backup is written" if kept is None else f"the backup of step {kept} is kept")
                    + " instead (TerminateOnNaN stops the run at the first such step)",
                    stacklevel=2,
                )
            self.kept_finite = True
            return
        kinds = zip(self.callback_kinds, callback_states)
        self.manager.save(
            int(train_state.step),
            _tree(run.carry),
            metadata={
                "fit": {
                    **run.progress.to_json(),
                    "fingerprint": self.fingerprint,
                    "callbacks": [{"type": kind, "state": state} for kind, state in kinds],
                }
            },
            force=True,
        )

    def due(self, position: int, steps_in_epoch: int | None) -> bool:
        """Whether to back up after ``position`` steps of an epoch (epoch ends aside)."""
        return (
            self.every_steps is not None
            and position % self.every_steps == 0
            and (steps_in_epoch is None or position < steps_in_epoch)
        )

    def on_train_end(self, run: FitRun) -> None:
        if self.delete_checkpoint:
            self.manager.clear()


def _tree(carry: Carry) -> dict[str, Any]:
    """A carry as a backup stores it (the layout of every backup so far)."""
    logs = {"sums": carry.sums, "count": carry.count, "nan_step": carry.nan_step}
    return {"train_state": carry.train_state, "epoch_logs": logs}
