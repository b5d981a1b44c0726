"""The run's callbacks as one list: the only way ``fit`` reaches a callback.

It owns what concerns all of them together: the primary-process filter,
whether steps guard against NaN, the step intervals (``on_steps_end`` with
the mean logs of each callback's last interval) and the backup's place in the
order (after every other callback, which may change the state or stop the run).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from typing import Any

import jax

from fnn._checks import check_int
from fnn.parallel import DataParallel
from fnn.train._callbacks import Callback, Logs
from fnn.train._checkpointing import BackupAndRestore
from fnn.train._run import Carry, FitRun, read_logs


class CallbackList:
    """``fit``'s callbacks (plus a :class:`BackupAndRestore` for ``checkpoint_dir``), called in order.

    Args:
        callbacks: the user's :class:`Callback` s.
        checkpoint_dir: adds a BackupAndRestore that keeps its backups.
        checkpoint_every: with ``checkpoint_dir``, also back up every this many steps.
        primary: whether this is process 0; other processes skip ``primary_only`` callbacks.
    """

    def __init__(
        self,
        callbacks: Sequence[Callback],
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        primary: bool = True,
    ):
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be fnn Callback instances, got {cb!r}")
        if checkpoint_dir is not None:
            callbacks.append(
                BackupAndRestore(checkpoint_dir, every_steps=checkpoint_every, delete_checkpoint=False)
            )
        elif checkpoint_every is not None:
            raise ValueError("fit: checkpoint_every needs checkpoint_dir")
        backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
        if len(backups) > 1:
            raise ValueError("fit: pass one BackupAndRestore (checkpoint_dir adds one)")
        self.callbacks = callbacks if primary else [cb for cb in callbacks if not cb.primary_only]
        self.backup = backups[0] if backups else None
        self.others = [cb for cb in self.callbacks if cb is not self.backup]
        self.guards_nan = any(cb.guards_nan for cb in self.callbacks)
        self.stepping = [cb for cb in self.callbacks if cb.step_interval is not None]
        for cb in self.stepping:
            check_int("fit", f"{type(cb).__name__}.step_interval", cb.step_interval)
        intervals = [cb.step_interval for cb in self.stepping]
        if self.backup is not None and self.backup.every_steps:
            intervals.append(self.backup.every_steps)
        #: compiled calls end at every multiple of this (``None``: only at epoch ends)
        self.every = math.gcd(*intervals) if intervals else None

    def states(self) -> list[dict[str, Any]]:
        return [cb.get_state() for cb in self.callbacks]

    def restore(self, run: FitRun, fingerprint: dict[str, Any], dp: DataParallel | None) -> list[dict] | None:
        """Puts the newest backup (if any) into ``run``; returns the callbacks' saved states."""
        if self.backup is None:
            return None
        self.backup.bind(fingerprint, [type(cb).__name__ for cb in self.callbacks])
        restored = self.backup.restore(run.carry)
        if restored is None:
            return None
        run.carry, run.progress, states = restored
        if dp is not None:  # placed as the template was, unless a callback's state differs
            run.carry = dp.conform(run.carry)
        run.stop_training = run.progress.stop_reason is not None
        return states

    def train_begin(self, run: FitRun, saved_states: list[dict] | None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(run)
        for cb, saved in zip(self.callbacks, saved_states or ()):
            cb.set_state(saved)

    def epoch_begin(self, epoch: int, run: FitRun) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, run)

    def mark(self, run: FitRun) -> None:
        """Notes the running sums an epoch starts from: each interval's logs are differences from here."""
        first = jax.device_get(run.carry._replace(train_state=None)) if self.stepping else None
        self.last = {id(cb): first for cb in self.stepping}

    def steps_end(self, run: FitRun, steps_in_epoch: int | None) -> None:
        """After a compiled call: a mid-epoch backup when due, then the step callbacks that are due."""
        position = run.progress.position
        backup = self.backup
        if backup is not None and backup.every_steps is not None and position % backup.every_steps == 0:
            if steps_in_epoch is None or position < steps_in_epoch:  # epoch ends save in epoch_end
                backup.save(run, self.states())
        due = [cb for cb in self.stepping if position % cb.step_interval == 0]
        if not due:
            return
        now: Carry = jax.device_get(run.carry._replace(train_state=run.train_state.step))
        for cb in due:
            last, self.last[id(cb)] = self.last[id(cb)], now
            since = {k: jax.tree.map(operator.sub, v, last.sums[k]) for k, v in now.sums.items()}
            logs = read_logs(since, float(now.count - last.count))
            cb.on_steps_end(int(now.train_state), logs, run)

    def epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        for cb in self.others:
            cb.on_epoch_end(epoch, logs, run)
        if self.backup is not None:  # last: the others may change the state or stop the run
            self.backup.on_epoch_end(epoch, logs, run)
            self.backup.save(run, self.states())

    def train_end(self, run: FitRun) -> None:
        for cb in self.callbacks:
            cb.on_train_end(run)

    def close(self) -> None:
        """After the run, however it ended: each callback's ``close`` (a Watchdog's thread, a
        Profiler's trace, a Track's runs are released there)."""
        for cb in self.callbacks:
            cb.close()
