"""The run as one value: a device-side :class:`Carry` and a host-side :class:`Progress`.

Every compiled call maps the carry; the loop only updates the progress (plain
JSON) between calls. A backup saves both (with the callbacks' states) and a
resume restores them, so nothing else holds run state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from fnn.train._state import TrainState


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Summed:
    """A log kept as additive statistics (a metric's, :func:`fnn.metrics.statistics`), exact over many batches.

    ``stats`` sum leaf by leaf over steps; ``result(stats)`` is the log's value.
    Logs that are plain scalars are instead averaged, weighted by batch size.
    """

    stats: Any
    result: Callable[[Any], Any] = dataclasses.field(metadata={"static": True})


class Carry(NamedTuple):
    """What every compiled call of ``fit`` maps: the train state and the epoch's running logs.

    Attributes:
        train_state: the :class:`TrainState`.
        sums: ``{log name: float32 scalar}``, each batch's log times its size, summed over
            the epoch, or for a :class:`Summed` log its statistics summed.
        count: float32 scalar, the examples those sums cover.
        nan_step: int32 scalar, the first step whose loss or update was not finite (-1: none).
    """

    train_state: TrainState
    sums: dict[str, Any]
    count: jax.Array
    nan_step: jax.Array

    @classmethod
    def start(cls, train_state: TrainState | None, specs: Mapping[str, Any], sharding: Any = None) -> Carry:
        """A carry at the start of an epoch: zero sums for the logs (shapes as ``specs``; new buffers, on ``sharding``)."""

        def zeros(spec: Any) -> Any:
            if isinstance(spec, Summed):  # float32 at least: int32 counts would wrap, bfloat16 round
                wide = lambda s: np.float64 if s.dtype == np.float64 else np.float32  # noqa: E731
                return jax.tree.map(lambda s: np.zeros(np.shape(s), wide(s)), spec)
            return np.zeros((), np.float32)

        # Made on the host and placed: a transfer, not a compiled program per zero.
        sums = {name: zeros(spec) for name, spec in specs.items()}
        zero = jax.device_put((sums, np.zeros((), np.float32), np.full((), -1, np.int32)), sharding)
        return cls(train_state, *zero)

    def logs(self) -> dict[str, float]:
        """The epoch's logs so far, as Python floats (NaN before the first step)."""
        return read_logs(*jax.device_get((self.sums, self.count)))


def read_logs(sums: Mapping[str, Any], count: Any) -> dict[str, float]:
    """Logs from (host) running sums over ``count`` examples: means, or :class:`Summed` results."""
    if not count:
        return {k: math.nan for k in sums}
    return {
        k: float(v.result(v.stats)) if isinstance(v, Summed) else float(v) / float(count)
        for k, v in sums.items()
    }


@dataclasses.dataclass
class Progress:
    """Where a run stands, on the host, as plain JSON data.

    Attributes:
        epoch: the epoch being trained (0-based).
        position: steps of that epoch already taken.
        history: per-epoch logs so far, ``{"loss": [...], "val_loss": [...], ...}``.
        epochs_done: the epochs the history entries belong to.
        stop_reason: why the run stopped early, else ``None``.
        stream_state: a checkpointable stream's iterator state after the last
            batch trained on (``None`` for arrays and other streams).
    """

    epoch: int = 0
    position: int = 0
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    epochs_done: list[int] = dataclasses.field(default_factory=list)
    stop_reason: str | None = None
    stream_state: Any = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def record(self, epoch: int, logs: dict[str, float]) -> None:
        self.epochs_done.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)


class FitRun:
    """The running :func:`fnn.fit` that callbacks see and act on: one carry, one progress.

    Attributes:
        model: the model being trained.
        epochs: the number of epochs asked for.
        carry: the live :class:`Carry` (train state and running epoch logs).
        progress: the host-side :class:`Progress`.
        train_state: the current :class:`TrainState`, live in every hook
            (in :meth:`Callback.on_steps_end` too, mid-epoch); assign a new
            one to change the run (e.g. its learning rate) and the next step
            goes on from it. Its buffers are donated to the next step, so keep
            a copy (:meth:`snapshot`), not a reference.
        history: per-epoch logs so far (``progress.history``).
        stop_training: set to ``True`` to stop after the current epoch.
        stop_reason: why the run stopped early, for the History.
        nan_step: the global step whose loss was first not finite (with
            :class:`TerminateOnNaN`), else ``None``.
        find_non_finite: with :class:`TerminateOnNaN`, ``find_non_finite()``
            replays the step ``nan_step`` one operation at a time and returns
            :func:`fnn.find_non_finite`'s answer: the first layer whose output
            or gradient went NaN/Inf. Slow: for the message, once. ``None``
            where the batch cannot be read again (a stream, a multi-process run).
        input_shape: the per-example input shape(s) (:class:`fnn.Shape` s, with dtypes).
        gradients: ``gradients()`` returns the training loss's gradients at the
            current params on the first training batch (compiled on first use).
    """

    def __init__(
        self, model: Any, epochs: int, train_state: TrainState, input_shape: Any = None,
        log_specs: Mapping[str, Any] | None = None,
    ):  # fmt: skip
        self.model, self.epochs, self.input_shape = model, epochs, input_shape
        self.carry = Carry.start(train_state, log_specs or {})
        self.progress = Progress()
        self.stop_training = False
        self.nan_step: int | None = None
        self.find_non_finite: Callable[[], Any] | None = None  # set by fit with TerminateOnNaN
        self.gradients: Callable[[], Any] | None = None  # set by fit

    @property
    def train_state(self) -> TrainState:
        return self.carry.train_state

    @train_state.setter
    def train_state(self, value: TrainState) -> None:
        self.carry = self.carry._replace(train_state=value)

    @property
    def history(self) -> dict[str, list[float]]:
        return self.progress.history

    @property
    def stop_reason(self) -> str | None:
        return self.progress.stop_reason

    @stop_reason.setter
    def stop_reason(self, value: str | None) -> None:
        self.progress.stop_reason = value

    def snapshot(self) -> TrainState:
        """A copy of the train state that later (donating) steps cannot invalidate."""
        return jax.tree.map(lambda a: a.copy(), self.train_state)


@dataclasses.dataclass
class History:
    """What :func:`fit` returns: per-epoch logs and the final train state.

    Attributes:
        history: ``{"loss": [...], "accuracy": [...], "val_loss": [...], ...}``, one
            float per epoch (also ``"learning_rate"`` when the optimiser state has one).
        epochs: the epoch numbers the entries belong to.
        train_state: the final :class:`TrainState` (params, state, optimiser state,
            step, key); pass it back to ``fit(train_state=...)`` to continue.
        stop_reason: why training stopped early (a callback's message), else ``None``.
        steps_per_execution: how many steps ran per compiled call.
    """

    history: dict[str, list[float]]
    epochs: list[int]
    train_state: TrainState
    stop_reason: str | None
    steps_per_execution: int

    @property
    def params(self) -> Any:
        return self.train_state.params

    def _repr_html_(self) -> str:
        """For notebooks: the curves (with matplotlib) and the last epochs' logs as a table."""
        from fnn import _display

        names = list(self.history)
        shown = list(range(len(self.epochs)))[-10:]
        parts = [
            _display.paragraph(
                f"History: {len(self.epochs)} epoch(s)"
                + (f"; stopped: {self.stop_reason}" if self.stop_reason else "")
            )
        ]
        if self.epochs and any(not k.startswith("val_") and k != "learning_rate" for k in names):
            try:
                from fnn import plot

                parts.append(_display.figure_svg(plot.history(self)))
            except ImportError:  # matplotlib is an extra: the table alone
                pass
        rows = [[self.epochs[i], *(self.history[k][i] for k in names)] for i in shown]
        parts.append(_display.table(["epoch", *names], rows))
        return _display.block(*parts)

    @property
    def state(self) -> Any:
        return self.train_state.state

    @property
    def opt_state(self) -> Any:
        return self.train_state.opt_state
