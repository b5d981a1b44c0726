"""Watchdog: a run that stops making progress ends with an error instead of hanging."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from fnn._checks import check_int, check_positive_float
from fnn.train._callbacks import Callback, Logs
from fnn.train._run import FitRun

EXIT_CODE = 70  # EX_SOFTWARE: told apart from a crash (1) or a kill (-9) by a scheduler's retry rule


def _exit(message: str) -> None:
    """Reports where every thread is stuck, then ends the process: a thread blocked in a collective
    cannot be interrupted, and ``os._exit`` does not wait for it."""
    print(message, file=sys.stderr, flush=True)
    faulthandler.dump_traceback(sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_CODE)


class Watchdog(Callback):
    """Ends a run that makes no progress for ``timeout_s`` seconds, with a clear error, instead of hanging.

    In a multi-process run a peer that crashes is caught by JAX's heartbeats
    (:func:`fnn.parallel.initialize`), but one that is alive and stuck (a data
    loader that blocks, a deadlock, a host that stalls) keeps the others
    waiting in the next collective forever: JAX's CPU and GPU collectives have
    no timeout. Give every process a ``Watchdog``: each marks progress when
    training begins and at every epoch's start and end (and every
    ``every_steps`` steps), and when ``timeout_s`` passes without any, it
    prints which progress it waited for and where every thread is stuck, and
    ends the process with exit code 70. Its peers time out the same way. Rerun
    the script to continue from the last complete backup
    (``fit(checkpoint_dir=...)``). A thread blocked in a collective cannot be
    interrupted, so ending the process is the only bounded way out (PyTorch's
    NCCL watchdog does the same).

    The timeout counts everything between two marks: the first epoch's
    compilation, validation and checkpoint writes, so leave room for them.
    ``fit`` stops the watchdog however it ends. Outside ``fit``, use it as a
    context manager and call :meth:`beat` as the loop advances.

    Args:
        timeout_s: seconds without progress before the run is ended.
        every_steps: also mark progress every this many steps inside an epoch
            (fused calls then end there, which costs a host sync each time).
        on_timeout: called with the message instead of ending the process
            (for alerts, or for tests), again after each further ``timeout_s``
            without progress; the stuck run is left as it is.

    Examples:
        >>> import fnn
        >>> with fnn.Watchdog(timeout_s=60) as watchdog:
        ...     for step in range(3):
        ...         watchdog.beat(f"step {step}")
    """

    def __init__(
        self,
        timeout_s: float = 600.0,
        *,
        every_steps: int | None = None,
        on_timeout: Callable[[str], Any] | None = None,
    ):
        timeout_s = check_positive_float("Watchdog", "timeout_s", timeout_s)
        every_steps = None if every_steps is None else check_int("Watchdog", "every_steps", every_steps)
        self.timeout_s, self.step_interval = timeout_s, every_steps
        self.on_timeout = on_timeout or _exit
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = (time.monotonic(), "")

    def beat(self, what: str) -> None:
        """Marks progress: ``what`` just happened (named in the error if nothing follows it)."""
        self._last = (time.monotonic(), what)  # one tuple: the watching thread reads both at once

    def start(self) -> None:
        """Starts watching (again), from now."""
        self.close()
        self._stopped = threading.Event()
        self.beat("the watchdog started")
        self._thread = threading.Thread(target=self._watch, name="fnn.Watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops watching."""
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _watch(self) -> None:
        stopped, poll = self._stopped, min(1.0, self.timeout_s / 4)
        while not stopped.wait(poll):
            since, what = self._last
            if time.monotonic() - since > self.timeout_s:
                self.on_timeout(
                    f"fnn.Watchdog: no progress for {self.timeout_s:g} s since {what} (process "
                    f"{_process_index()}): a peer process is stuck or dead, or this one is; ending the run. "
                    "Rerun it to continue from its last backup (fit(checkpoint_dir=...))"
                )
                self._last = (time.monotonic(), what)  # a handler that returns hears again a timeout later

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_train_begin(self, run: FitRun) -> None:
        self.start()
        self.beat("training began")

    def on_epoch_begin(self, epoch: int, run: FitRun) -> None:
        self.beat(f"epoch {epoch} began")

    def on_steps_end(self, step: int, logs: Logs, run: FitRun) -> None:
        self.beat(f"step {step}")

    def on_epoch_end(self, epoch: int, logs: Logs, run: FitRun) -> None:
        self.beat(f"epoch {epoch} ended")

    def on_train_end(self, run: FitRun) -> None:
        self.close()


def _process_index() -> int:
    import jax

    return jax.process_index() if jax.distributed.is_initialized() else 0
