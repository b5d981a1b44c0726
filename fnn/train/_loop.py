"""The epoch loop of ``fit``: data flows source → execution → run → callbacks, and nowhere else.

:class:`Loop` wires one run: it starts (or resumes) the :class:`FitRun`, trains
an epoch by passing the run's carry through the execution's compiled calls and
handing the run to the callbacks between them, and closes an epoch with its
logs (validation included).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from fnn import optimizers
from fnn._checks import check_int
from fnn._core import Layer
from fnn.parallel import DataParallel
from fnn.train._callback_list import CallbackList
from fnn.train._debug import NonFinite, find_non_finite
from fnn.train._evaluate import evaluate_stream, evaluate_unchecked, is_stream, place
from fnn.train._execution import Execution
from fnn.train._run import FitRun, History
from fnn.train._sources import StreamSource
from fnn.train._step import make_grad_fn

# Progress bars fetch running metrics from the device at most this often, so a
# bar never forces a host sync per step.
_PROGRESS_INTERVAL_S = 0.25


@dataclasses.dataclass
class Validation:
    """What each epoch's validation needs: the data (``None``: no validation) and how to score it."""

    data: Any  # (x, y, sample_weight or None), a re-iterable of such batches, or None
    loss: Any
    metrics: Any
    batch_size: int
    evaluate_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data is not None and self.loss is None:
            raise ValueError(
                "fit: validation needs loss= (with your own train_step, the loss to score it by)"
            )

    def logs(self, model: Layer, run: FitRun, dp: DataParallel | None) -> dict[str, float]:
        if self.data is None:
            return {}
        params_state = (run.train_state.params, run.train_state.state)
        if dp is not None:  # on this process's first device
            params_state = dp.local(params_state)
        # Each process holds its own validation data: their statistics add up to the whole set's.
        options = {**self.evaluate_options, "combine": None if dp is None else dp.sum_over_processes}
        if is_stream(self.data):
            logs, _ = evaluate_stream(model, *params_state, self.data, self.loss, self.metrics, **options)
        else:
            x, y, weight = self.data
            logs = evaluate_unchecked(
                model, *params_state, x, y, self.loss, self.metrics, weight, self.batch_size, **options
            )
        return {f"val_{k}": v for k, v in logs.items()}


@dataclasses.dataclass
class Loop:
    """One ``fit`` run's wiring: the execution, the callbacks, validation and the progress display."""

    model: Layer
    execution: Execution
    callbacks: CallbackList
    validation: Validation
    verbose: int
    dp: DataParallel | None
    train_step: Callable

    def epoch(self, run: FitRun, epoch: int) -> None:
        """Trains one epoch (from ``run.progress.position`` when resuming inside it) and ends it."""
        run.progress.epoch = epoch
        self.callbacks.epoch_begin(epoch, run)
        source = self.execution.source
        bar = _Bar(self.verbose, epoch, run.epochs, source.steps_in_epoch())
        ts = run.train_state if self.dp is None else self.dp.conform(run.train_state)
        start = run.progress.position
        run.carry = run.carry._replace(train_state=ts) if start else self.execution.start(ts)
        if self.callbacks.guards_nan and self._replayable():  # where a NaN step's batch is, to replay it
            first_step = int(ts.step)
            run.find_non_finite = lambda: self._replay(run, epoch, start + run.nan_step - first_step)
        self.callbacks.mark(run)
        self._steps(run, epoch, start, bar)
        run.progress.position = 0
        sums = run.carry._replace(train_state=None)  # the state stays on the device
        carry, rate = jax.device_get((sums, optimizers.learning_rate(run.train_state.opt_state)))
        logs = carry.logs()
        if carry.nan_step >= 0:
            run.nan_step = int(carry.nan_step)
        logs.update(self.validation.logs(self.model, run, self.dp))
        if rate is not None:
            logs["learning_rate"] = float(rate)
        bar.close(epoch, logs)
        run.progress.record(epoch, logs)
        run.progress.epoch = epoch + 1  # what a backup written now continues with
        self.callbacks.epoch_end(epoch, logs, run)

    def _steps(self, run: FitRun, epoch: int, start: int, bar: _Bar) -> None:
        """Passes the run's carry through the epoch's compiled calls, the callbacks seeing it live between them."""
        bar.update(start)
        calls = self.execution.epoch(run.carry, epoch, start)
        for steps, carry in _sending(calls, lambda: run.carry):
            run.carry = carry
            run.progress.position += steps
            run.progress.stream_state = self.execution.source.state
            self.callbacks.steps_end(run, self.execution.source.steps_in_epoch())
            if self.dp is not None and run.train_state is not carry.train_state:
                run.train_state = self.dp.conform(run.train_state)  # a callback put new, unplaced values
            if not bar.due():
                bar.update(steps)
                continue
            bar.update(steps, run.carry)
            if self.callbacks.guards_nan and int(run.carry.nan_step) >= 0:
                return  # the remaining steps would leave the state unchanged anyway
        bar.update(0, run.carry)

    def _replayable(self) -> bool:
        # a stream's batches cannot be read twice, and another process holds part of a global batch
        return not isinstance(self.execution.source, StreamSource) and not (self.dp and self.dp.multi_process)

    def _replay(self, run: FitRun, epoch: int, position: int) -> NonFinite | None:
        """Runs the train step that turned non-finite again, one operation at a time, to name where."""
        batch = jax.device_get(next(iter(self.execution.source.batches(epoch, position))))  # all its rows
        ts = run.train_state  # the guard kept it from before that step
        ts = ts if self.dp is None else self.dp.local(ts)
        key = jax.random.fold_in(ts.key, ts.step)
        return find_non_finite(self.train_step, ts.params, ts.state, ts.opt_state, batch, key)

    def history(self, run: FitRun) -> History:
        plan = self.execution.plan
        return History(run.history, run.progress.epochs_done, run.train_state, run.stop_reason, plan.next())


def _sending(generator: Any, reply: Callable[[], Any]):
    """Iterates a generator that takes a value back after each item: ``reply()``'s."""
    try:
        item = next(generator)
        while True:
            yield item
            item = generator.send(reply())
    except StopIteration:
        return


class _Bar:
    """A per-epoch tqdm bar that reads running metrics from the device only now and then."""

    def __init__(self, verbose: int, epoch: int, epochs: int, total: int | None):
        self.verbose, self.bar, self.last = verbose, None, 0.0
        if verbose == 1:
            from tqdm.auto import tqdm  # here, not at import: tqdm.auto costs a tenth of `import fnn`

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step")

    def due(self) -> bool:
        return self.verbose == 1 and time.monotonic() - self.last >= _PROGRESS_INTERVAL_S

    def update(self, steps: int, carry: Any = None) -> None:
        if self.bar is None:
            return
        self.bar.update(steps)
        if carry is not None:
            self.last = time.monotonic()
            logs = carry._replace(train_state=None).logs()
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

    def close(self, epoch: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.close()
        if self.verbose == 2:
            print(f"epoch {epoch + 1}: " + "  ".join(f"{k} {v:.4f}" for k, v in logs.items()))


def gradients_of(
    model: Layer, loss: Any, loss_weights: Any, first_batch: Callable[[], Any], run: FitRun,
    dp: DataParallel | None,
) -> Callable[[], Any]:  # fmt: skip
    """``FitRun.gradients``: the training loss's gradients at the run's current params on ``first_batch()``."""
    compiled = None  # compiled on first use only

    def gradients() -> Any:
        nonlocal compiled
        if loss is None:
            raise ValueError("FitRun.gradients needs fit's loss; a custom train_step has none")
        compiled = compiled or jax.jit(make_grad_fn(model, loss, loss_weights=loss_weights))
        ts, batch = run.train_state, first_batch()  # cut and placed only when asked
        if dp is not None:  # on this process's first device, beside nothing else
            ts, placed = dp.local((ts, batch))
        else:
            placed = place(batch)
        return compiled(ts.params, ts.state, placed, jax.random.fold_in(ts.key, ts.step))

    return gradients


def check_fit_options(
    epochs: Any, initial_epoch: Any, verbose: Any, seed: Any, shuffle: Any, loss: Any, train_step: Any
) -> None:
    """``fit``'s scalar options, checked before any work."""
    check_int("fit", "epochs", epochs, low=0)
    check_int("fit", "initial_epoch", initial_epoch, low=0, high=epochs, what=f"epochs={epochs}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
    check_int("fit", "seed", seed, low=0, high=2**63 - 1, what="2**63 - 1")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"fit: shuffle must be True or False, got {shuffle!r}")
    if loss is None and train_step is None:
        raise TypeError("fit: pass a loss (or your own train_step)")
    if train_step is not None and not callable(train_step):
        raise TypeError(f"fit: train_step must be a function, got {train_step!r}")
