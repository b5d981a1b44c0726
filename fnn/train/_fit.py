"""fit, evaluate and predict: Keras's convenience over fnn's pure train step.

``fit`` keeps an in-memory dataset on the device and runs the train step either
one step per Python call or many steps fused into one compiled ``lax.scan``.
Both run the same step function on the same batches in the same order, so
they give bitwise the same parameters and History on CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import data as data_lib
from fnn import losses as losses_lib
from fnn import optimizers
from fnn._core import Layer
from fnn.parallel import DataParallel, is_primary
from fnn.train._callbacks import Callback, FitRun
from fnn.train._checkpointing import BackupAndRestore
from fnn.train._evaluate import (
    check_batch_size,
    check_labels,
    evaluate_unchecked,
    example_shapes,
    place,
)
from fnn.train._state import TrainState, turned_non_finite
from fnn.train._step import MetricsArg, make_grad_fn, make_train_step

# On CPU, "auto" times an unfused and a fused epoch and keeps the faster (see
# _Execution); a single-epoch run cannot compare, and fuses when its step has
# fewer FLOPs than this (XLA's cost analysis), where dispatch overhead dominates.
CPU_FUSE_MAX_FLOPS = 2e7

# Compiling a fused epoch (the step inside a lax.scan) takes about this many times as long
# as compiling the step alone; "auto" fuses only where the saving beats that.
FUSED_COMPILE_RATIO = 1.5

# Progress bars fetch running metrics from the device at most this often, so a
# bar never forces a host sync per step.
_PROGRESS_INTERVAL_S = 0.25


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

    @property
    def state(self) -> Any:
        return self.train_state.state

    @property
    def opt_state(self) -> Any:
        return self.train_state.opt_state


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else jnp.array(a), tree)


def _batch_size_of(batch: Any) -> int:
    return int(jnp.shape(jax.tree.leaves(batch)[0])[0])


# --------------------------------------------------------------------------- steps


def _advance(train_step: Callable, ts: TrainState, batch: Any) -> tuple[TrainState, dict]:
    """Applies the pure train step to a TrainState; step ``s`` draws from ``fold_in(key, s)``."""
    params, state, opt_state, logs = train_step(
        ts.params, ts.state, ts.opt_state, batch, jax.random.fold_in(ts.key, ts.step)
    )
    return ts._replace(params=params, state=state, opt_state=opt_state, step=ts.step + 1), logs


def _make_step(
    train_step: Callable, guard_nan: bool, dp: DataParallel | None = None
) -> Callable[[tuple[TrainState, dict], Any], tuple[TrainState, dict]]:
    """One training step over ``(train_state, accumulator)``: the unit both modes run.

    The accumulator holds the running sums of the batch logs (weighted by batch
    size), their count, and the first step whose loss or update was not finite (-1: none).
    """

    def step(carry: tuple[TrainState, dict], batch: Any) -> tuple[TrainState, dict]:
        ts, acc = carry
        if dp is not None:  # a batch gathered on the devices stays split over them
            batch = dp.constrain(batch)
        new, logs = _advance(train_step, ts, batch)
        weight = jnp.asarray(_batch_size_of(batch), jnp.float32)
        nan_step = acc["nan_step"]
        if guard_nan:
            # Once a loss or an updated value is not finite (a NaN learning rate, or a NaN
            # gradient at a finite loss), this and every later step leave the state as it
            # was (the key never changes, and typed keys do not go through jnp.where).
            went_bad = turned_non_finite(ts._replace(key=None), new._replace(key=None))
            ok = jnp.isfinite(logs["loss"]) & ~went_bad & (nan_step < 0)
            nan_step = jnp.where(~ok & (nan_step < 0), ts.step, nan_step)
            kept = jax.tree.map(
                lambda a, b: jnp.where(ok, a, b), new._replace(key=None), ts._replace(key=None)
            )
            new = kept._replace(key=ts.key)
            weight = jnp.where(ok, weight, 0.0)
        sums = {k: acc["sums"][k] + weight * logs[k].astype(jnp.float32) for k in acc["sums"]}
        return new, {"sums": sums, "count": acc["count"] + weight, "nan_step": nan_step}

    return step


def _accumulator_factory(
    train_step: Callable, ts: TrainState, batch_spec: Any, dp: DataParallel | None
) -> Callable[[], dict]:
    """A compiled function returning a fresh, zeroed accumulator: one sum per log entry.

    One compiled call per epoch instead of a copy per buffer (the carry is donated).
    """
    names = []
    for name, spec in jax.eval_shape(lambda t, b: _advance(train_step, t, b)[1], ts, batch_spec).items():
        if spec.shape != ():
            raise ValueError(
                f"fit: metric {name!r} returned shape {spec.shape}; fit's metrics must be scalars"
            )
        names.append(name)
    return jax.jit(
        lambda: {
            "sums": {name: jnp.zeros((), jnp.float32) for name in names},
            "count": jnp.zeros((), jnp.float32),
            "nan_step": jnp.full((), -1, jnp.int32),
        },
        **_replicated_out(dp),
    )


def _replicated_out(dp: DataParallel | None) -> dict[str, Any]:
    """``jax.jit`` options: outputs replicated over the mesh, if there is one."""
    return {} if dp is None else {"out_shardings": dp.replicated}


class _Execution:
    """How many steps each compiled call runs, possibly chosen by measurement.

    An int is used as given. ``"auto"`` fuses whole epochs on accelerators. On
    CPU it runs the first epoch unfused and times it, and times a call that
    does nothing. Fusing can save at most that per-call cost on each step
    left, and compiling the fused epoch costs about what compiling one step
    did; only when the saving is larger is the fused epoch compiled and timed,
    and the faster kept. So a fused program is never compiled where it cannot
    pay (a short run, or a heavy step such as a convolution's). A single epoch
    is fused or not by XLA's cost analysis of the step. Both modes give
    bitwise the same results, so the choice affects speed only.
    """

    def __init__(
        self,
        requested: int | str,
        full_batches: int,
        epochs: int,
        step: Callable,
        carry: Any,
        batch_spec: Any,
        max_per_call: int | None = None,
    ):
        if requested != "auto" and (
            isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
        ):
            raise ValueError(f"fit: steps_per_execution must be 'auto' or a positive int, got {requested!r}")
        self.timings: dict[int, float] = {}
        self.steps_left = epochs * full_batches  # fusing can pay off only over these
        if requested != "auto":
            self.candidates = [min(requested, max(full_batches, 1))]
        elif full_batches < 2:
            self.candidates = [1]
        elif jax.default_backend() != "cpu":
            self.candidates = [full_batches]
        else:
            # Unfused first: a process's first executions run slow, and the unfused
            # epoch can skip its warm-up steps when timing; the fused one cannot.
            self.candidates = [1, full_batches]
            if epochs < 2:  # nothing to compare: guess from XLA's cost analysis
                flops = jax.jit(step).lower(carry, batch_spec).cost_analysis().get("flops", math.inf)
                self.candidates = [full_batches if flops < CPU_FUSE_MAX_FLOPS else 1]
        if max_per_call is not None:
            self.candidates = sorted({min(c, max_per_call) for c in self.candidates})
        self.measuring = len(self.candidates) > 1

    def next(self) -> int:
        untried = [c for c in self.candidates if c not in self.timings]
        return untried[0] if untried else min(self.timings, key=self.timings.__getitem__)

    def record(self, steps_per_call: int, seconds_per_step: float, steps: int) -> None:
        self.timings.setdefault(steps_per_call, seconds_per_step)
        self.steps_left -= steps

    def drop_fusing_unless_it_pays(self, call_seconds: float, compile_seconds: float) -> None:
        """Keeps the fused candidates only if their saving can beat their compile time.

        Args:
            call_seconds: the cost of one compiled call that does nothing: what fusing saves per step.
            compile_seconds: what compiling the one-step program took, about what a fused one takes.
        """
        self.candidates = [
            c
            for c in self.candidates
            if c == 1 or call_seconds * (1 - 1 / c) * self.steps_left > FUSED_COMPILE_RATIO * compile_seconds
        ]
        self.measuring = len(self.candidates) > 1


# ---------------------------------------------------------------------------- fit


def _split_validation(data: tuple, fraction: Any, n: int) -> tuple[tuple, tuple]:
    if isinstance(fraction, bool) or not isinstance(fraction, (float, int)) or not 0 < fraction < 1:
        raise ValueError(f"fit: validation_split must be a fraction in (0, 1), got {fraction!r}")
    n_val = int(math.floor(n * fraction))
    if not 1 <= n_val < n:
        raise ValueError(f"fit: validation_split={fraction} leaves {n_val} of {n} examples for validation")
    cut = n - n_val  # Keras takes the last examples, before any shuffling
    return data_lib.take(data, slice(0, cut)), data_lib.take(data, slice(cut, n))


def _unpack_validation(validation_data: Any) -> tuple:
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        return tuple(validation_data) if len(validation_data) == 3 else (*validation_data, None)
    raise ValueError("fit: validation_data must be (x, y) or (x, y, sample_weight)")


class _Progress:
    """A per-epoch tqdm bar that reads running metrics from the device only now and then."""

    def __init__(self, verbose: int, epoch: int, epochs: int, total: int | None):
        self.verbose = verbose
        self.bar = None
        if verbose == 1:
            from tqdm.auto import tqdm  # here, not at import: tqdm.auto costs a tenth of `import fnn`

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step")
        self.last = 0.0

    def due(self) -> bool:
        return self.verbose == 1 and time.monotonic() - self.last >= _PROGRESS_INTERVAL_S

    def update(self, steps: int, acc: dict | None = None) -> None:
        if self.bar is None:
            return
        self.bar.update(steps)
        if acc is not None:
            self.last = time.monotonic()
            count = max(float(acc["count"]), 1.0)
            self.bar.set_postfix(
                {k: f"{float(v) / count:.4f}" for k, v in acc["sums"].items()}, refresh=False
            )

    def close(self, epoch: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.close()
        if self.verbose == 2:
            print(f"epoch {epoch + 1}: " + "  ".join(f"{k} {v:.4f}" for k, v in logs.items()))


def fit(
    model: Layer,
    x: Any,
    y: Any = None,
    *,
    loss: str | losses_lib.Loss,
    optimizer: str | optax.GradientTransformation = "adam",
    metrics: MetricsArg = None,
    epochs: int = 1,
    initial_epoch: int = 0,
    batch_size: int = 32,
    validation_split: float | None = None,
    validation_data: Any = None,
    sample_weight: Any = None,
    class_weight: Mapping[int, float] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    verbose: int = 1,
    steps_per_execution: int | str = "auto",
    steps_per_epoch: int | None = None,
    params: Any = None,
    state: Any = None,
    train_state: TrainState | None = None,
    validation_batch_size: int = 256,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    mesh: Any = None,
) -> History:
    """Trains a model, Keras-style, and returns a :class:`History` with the trained state.

    Nothing is mutated: the trained params, state and optimiser state come back
    in ``History.train_state``.

    Data comes either as in-memory arrays ``x`` and ``y`` (NumPy or JAX; arrays
    or pytrees of arrays such as dicts for several inputs), which are placed on
    the device once and shuffled there each epoch by the permutation of
    ``(seed, epoch)``, or as ``x`` alone: an iterable of ``(x, y)`` /
    ``(x, y, sample_weight)`` batches for data that does not fit in memory. A
    re-iterable (a list, a dataset object) is iterated afresh each epoch; a
    one-shot iterator (a generator) needs ``steps_per_epoch`` for several epochs.

    Args:
        model: the model to train.
        x: inputs, or an iterable of batches when ``y`` is ``None``.
        y: targets (array or pytree of arrays).
        loss: a loss name or function, as for :func:`fnn.make_train_step`.
        optimizer: a name (Keras's default rate) or an optax transformation.
        metrics: names or functions (or a dict of them), averaged over batches
            for training and computed on the whole validation set.
        epochs: the epoch to stop at (as in Keras: trains ``epochs - initial_epoch`` epochs).
        initial_epoch: the epoch to start from; with ``train_state`` from an
            earlier run this continues it exactly (same shuffles, same keys).
        batch_size: examples per step. A last, smaller batch is trained too (it
            costs one extra compile). A ``batch_size`` above the number of
            examples trains on all of them in one batch, as Keras does.
        validation_split: the fraction of the arrays, taken from the end before
            shuffling (as Keras does), held out for validation.
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight)``.
        sample_weight: per-example weights ``(n,)`` for the training loss.
        class_weight: as in Keras, ``{class: weight}`` for integer labels ``y``
            ``(n,)``: each training example's loss is weighted by its class's
            weight (times its ``sample_weight``); every class in ``y`` needs one.
        shuffle: reshuffle the training arrays every epoch.
        seed: an int in ``[0, 2**63)``; seeds initialisation, dropout and
            shuffling; the same seed gives bitwise the same run on the same machine.
        callbacks: :class:`Callback` s (early stopping, LR changes, logging ...).
        verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        steps_per_execution: steps fused into one compiled ``lax.scan`` call, or
            ``"auto"``: a whole epoch on accelerators; on CPU, 1 unless fusing
            can save more than compiling the fused epoch costs (judged after
            the first epoch from the measured call overhead and compile time),
            in which case the faster of the two is kept (a single-epoch run
            fuses steps under ``CPU_FUSE_MAX_FLOPS`` by XLA's cost analysis).
            Fused and unfused runs give bitwise the same results on CPU;
            ``History.steps_per_execution`` says what was used last.
        steps_per_epoch: for iterables: batches per epoch.
        params: start from these params (transfer learning); a fresh
            optimiser state is made for them.
        state: the model state to start from, with ``params``.
        train_state: continue a run exactly (params, state, optimiser state,
            step and key), e.g. from a previous ``History.train_state``.
        validation_batch_size: batch size of the validation forward passes.
        checkpoint_dir: back the run up here (see :class:`BackupAndRestore`):
            at every epoch end and every ``checkpoint_every`` steps. Rerun the
            same call after an interruption and it continues where the newest
            backup left off, ending bitwise where an uninterrupted run would.
            The backups are kept, so rerunning a finished run returns at once.
        checkpoint_every: with ``checkpoint_dir``, also back up every this many
            steps inside epochs.
        mesh: train data-parallel over this ``jax.sharding.Mesh`` (see
            :mod:`fnn.parallel`): batches are split along its ``"data"`` axis,
            everything else is replicated, and XLA averages the gradients (and
            BatchNorm's batch statistics) over the devices. ``batch_size`` is
            the global batch; it and a last, smaller batch must divide by the
            number of devices. In a multi-process run each process passes its
            own, equally long shard of ``x`` and ``y`` (or its own batches),
            the global batch is the processes' parts in process order, and
            only process 0 shows progress or runs file-writing callbacks. The
            returned state is replicated over the mesh.

    Returns:
        A :class:`History`.

    Raises:
        ValueError: for inconsistent data, bad sizes or options, naming them.

    Examples:
        >>> import numpy as np, fnn
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = (x.sum(axis=1) > 0).astype(np.int32)
        >>> model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(2)])
        >>> history = fnn.fit(model, x, y, loss="sparse_categorical_crossentropy", optimizer="sgd",
        ...                   metrics=["accuracy"], epochs=2, batch_size=16, verbose=0)
        >>> sorted(history.history), len(history.history["loss"])
        (['accuracy', 'learning_rate', 'loss'], 2)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    if (
        isinstance(initial_epoch, bool)
        or not isinstance(initial_epoch, int)
        or not 0 <= initial_epoch <= epochs
    ):
        raise ValueError(f"fit: initial_epoch must be an int in [0, epochs={epochs}], got {initial_epoch!r}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"fit: seed must be an int in [0, 2**63), got {seed!r}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"fit: shuffle must be True or False, got {shuffle!r}")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks must be fnn Callback instances, got {cb!r}")
    callbacks, backup = _with_backup(callbacks, checkpoint_dir, checkpoint_every)
    dp = None if mesh is None else DataParallel(mesh)
    if dp is not None and not is_primary():
        verbose, callbacks = 0, [cb for cb in callbacks if not cb.primary_only]
    tx = optimizers.get(optimizer)
    guard_nan = any(cb.guards_nan for cb in callbacks)
    train_step = make_train_step(model, loss, tx, metrics)
    step = _make_step(train_step, guard_nan, dp)
    key = jax.random.key(seed)

    if class_weight is not None:
        sample_weight = _weights_of_classes(y, class_weight, sample_weight)
    source, val = _sources(
        x, y, sample_weight, validation_split, validation_data, batch_size, shuffle, seed, steps_per_epoch, dp
    )
    first_batch = source.batch_spec()
    input_shape = example_shapes(first_batch[0])
    if train_state is None:
        train_state = TrainState.create(model, tx, input_shape, key, params=params, state=state)
    elif params is not None or state is not None:
        raise ValueError("fit: pass train_state or params/state, not both")
    elif not isinstance(train_state, TrainState):
        raise TypeError(
            f"fit: train_state must be a TrainState, got {type(train_state).__name__}; a checkpoint "
            "restored without a target is plain dicts: use fnn.TrainState.restore(path, model, "
            "optimizer, input_shape)"
        )
    if y is not None:
        labels = {"y": (y, sample_weight)}
        if validation_data is not None:
            labels["validation_data's y"] = (val[1], val[2])
        check_labels("fit", loss, labels, model, train_state.params, train_state.state, input_shape)
    # The steps donate their inputs; copy so the caller's arrays stay valid.
    place_state = _copy if dp is None else dp.replicate
    run = FitRun(model, epochs, place_state(train_state), input_shape)
    run.gradients = functools.partial(_gradients, model, loss, first_batch, run, dp)

    batch_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), first_batch)
    new_accumulator = _accumulator_factory(train_step, run.train_state, batch_spec, dp)
    acc0 = new_accumulator()
    done: list[int] = []
    position, resumed_acc, resume = 0, None, None
    if backup is not None:
        template = {"train_state": run.train_state, "epoch_logs": acc0}
        resume = backup.start(template, source.fingerprint(seed), callbacks)
        if resume is not None:
            run.train_state, resumed_acc = place_state((resume.train_state, resume.epoch_logs))
            initial_epoch, position = min(resume.epoch, epochs), resume.position
            run.history, done, run.stop_reason = resume.history, resume.epochs_done, resume.stop_reason
            run.stop_training = resume.stop_reason is not None
    step_logs = _StepLogs(callbacks)
    intervals = [*step_logs.intervals(), *([backup.every_steps] if backup and backup.every_steps else [])]
    every = math.gcd(*intervals) if intervals else None  # compiled calls end at every one of them
    execution = _Execution(
        steps_per_execution if source.fusable else _stream_steps(steps_per_execution),
        source.full_batches,
        epochs - initial_epoch,
        step,
        (run.train_state, acc0),
        batch_spec,
        max_per_call=every,
    )
    runner = source.runner(step, execution, (run.train_state, acc0), every)

    def at_boundary(position: int, carry: Any, epoch: int) -> Any:
        run.train_state = carry[0]  # live: the callbacks read it before the next call donates it
        if backup is not None and backup.due(position, source.steps_in_epoch()):
            backup.save(carry, epoch, position, run, done)
        step_logs(position, carry, run)
        if run.train_state is carry[0]:
            return carry
        changed = run.train_state if dp is None else dp.conform(run.train_state)
        return changed, carry[1]

    for cb in callbacks:
        cb.on_train_begin(run)
    if resume is not None:
        for cb, saved in zip(callbacks, resume.callback_states):
            cb.set_state(saved)
    for epoch in range(initial_epoch, initial_epoch if run.stop_training else epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, run)
        progress = _Progress(verbose, epoch, epochs, source.steps_in_epoch())
        if dp is not None:  # callbacks may have put new, unplaced values in the state
            run.train_state = dp.conform(run.train_state)
        carry = (run.train_state, resumed_acc if position else new_accumulator())
        step_logs.start(carry[1])
        run.train_state, acc = _train_epoch(
            runner, epoch, carry, progress, guard_nan, position, functools.partial(at_boundary, epoch=epoch)
        )
        position = 0
        # One device-to-host transfer for everything the epoch logs.
        acc, rate = jax.device_get((acc, optimizers.learning_rate(run.train_state.opt_state)))
        logs = _epoch_logs(acc)
        if acc["nan_step"] >= 0:
            run.nan_step = int(acc["nan_step"])
        if val is not None:
            params_state = (run.train_state.params, run.train_state.state)
            val_logs = evaluate_unchecked(
                model, *(params_state if dp is None else dp.local(params_state)), *val[:2],
                losses_lib.get(loss), metrics, val[2], validation_batch_size,
            )  # fmt: skip
            if dp is not None:  # each process holds its own validation data
                val_logs = dp.mean_over_processes(val_logs, data_lib.num_examples(val[1]))
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        if rate is not None:
            logs["learning_rate"] = float(rate)
        progress.close(epoch, logs)
        done.append(epoch)
        for k, v in logs.items():
            run.history.setdefault(k, []).append(v)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs, run)
        if backup is not None:  # after the callbacks, which may change the state or stop the run
            backup.save((run.train_state, acc0), epoch + 1, 0, run, done)
        if run.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end(run)
    return History(run.history, done, run.train_state, run.stop_reason, execution.next())


def _weights_of_classes(y: Any, class_weight: Mapping[int, float], sample_weight: Any) -> np.ndarray:
    """Per-example weights ``(n,)``: each label's class weight, times ``sample_weight`` if given."""
    if y is None:
        raise ValueError("fit: class_weight needs arrays x and y; with batches, put the weights in them")
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"fit: class_weight needs integer class labels y of shape (n,), got {labels.dtype}{labels.shape}"
        )
    missing = sorted(set(np.unique(labels).tolist()) - set(class_weight))
    if missing:
        raise ValueError(f"fit: class_weight has no weight for class(es) {missing} found in y")
    table = {int(c): float(w) for c, w in class_weight.items()}
    if not all(math.isfinite(w) and w >= 0 for w in table.values()):
        raise ValueError(f"fit: class_weight values must be finite and >= 0, got {class_weight!r}")
    weights = np.asarray([table[c] for c in labels.tolist()], np.float32)
    return weights if sample_weight is None else weights * np.asarray(sample_weight, np.float32)


def _sources(
    x: Any, y: Any, sample_weight: Any, validation_split: Any, validation_data: Any,
    batch_size: int, shuffle: bool, seed: int, steps_per_epoch: int | None, dp: DataParallel | None,
) -> tuple[_ArraySource | _StreamSource, tuple | None]:  # fmt: skip
    """The training data source and the validation data ``(x, y, sample_weight)``."""
    if y is None:
        if validation_split is not None or sample_weight is not None:
            raise ValueError(
                "fit: with an iterable of batches, pass validation_data (not validation_split) "
                "and weights inside the batches"
            )
        source: _ArraySource | _StreamSource = _StreamSource(x, steps_per_epoch, dp)
    else:
        if validation_split is not None and validation_data is not None:
            raise ValueError("fit: pass validation_split or validation_data, not both")
        arrays = (x, y) if sample_weight is None else (x, y, sample_weight)
        n = data_lib.num_examples(arrays, "(x, y, sample_weight)")
        if validation_split is not None:
            arrays, held_out = _split_validation(arrays, validation_split, n)
            validation_data = held_out if sample_weight is not None else (*held_out, None)
            n = data_lib.num_examples(arrays)
        if dp is not None and dp.multi_process:
            source = _ProcessShardSource(arrays, n, batch_size, shuffle, seed, dp)
        else:
            source = _ArraySource(arrays, n, check_batch_size("fit", batch_size, n), shuffle, seed, dp)
    return source, None if validation_data is None else _unpack_validation(validation_data)


def _with_backup(
    callbacks: Sequence[Callback], checkpoint_dir: Any, checkpoint_every: int | None
) -> tuple[list[Callback], BackupAndRestore | None]:
    """The callbacks (with one for ``checkpoint_dir``) and the BackupAndRestore among them."""
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        callbacks.append(
            BackupAndRestore(checkpoint_dir, every_steps=checkpoint_every, delete_checkpoint=False)
        )
    elif checkpoint_every is not None:
        raise ValueError("fit: checkpoint_every needs checkpoint_dir")
    backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError("fit: pass one BackupAndRestore (checkpoint_dir adds one)")
    return callbacks, backups[0] if backups else None


@functools.lru_cache(maxsize=16)
def _compiled_grad_fn(model: Layer, loss: Any) -> Callable:
    return jax.jit(make_grad_fn(model, loss))


def _gradients(model: Layer, loss: Any, batch: Any, run: FitRun, dp: DataParallel | None) -> Any:
    ts = run.train_state
    if dp is not None:  # on this process's first device, beside nothing else
        ts, batch = dp.local((ts, batch))
    key = jax.random.fold_in(ts.key, ts.step)
    return _compiled_grad_fn(model, loss)(ts.params, ts.state, place(batch), key)  # placed only when asked


class _StepLogs:
    """Feeds ``on_steps_end``: mean logs over each callback's last ``step_interval`` steps.

    They come from the epoch's running sums on the device, fetched only at the
    callbacks' intervals.
    """

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = [cb for cb in callbacks if cb.step_interval is not None]
        for cb in self.callbacks:
            if (
                isinstance(cb.step_interval, bool)
                or not isinstance(cb.step_interval, int)
                or cb.step_interval < 1
            ):
                raise ValueError(
                    f"fit: {type(cb).__name__}.step_interval must be a positive int, got {cb.step_interval!r}"
                )

    def intervals(self) -> list[int]:
        return [cb.step_interval for cb in self.callbacks]

    def start(self, acc: Any) -> None:
        first = jax.device_get(acc) if self.callbacks else None
        self.last = {id(cb): first for cb in self.callbacks}

    def __call__(self, position: int, carry: Any, run: FitRun) -> None:
        due = [cb for cb in self.callbacks if position % cb.step_interval == 0]
        if not due:
            return
        acc, step = jax.device_get((carry[1], carry[0].step))
        for cb in due:
            last, self.last[id(cb)] = self.last[id(cb)], acc
            count = float(acc["count"] - last["count"])
            logs = {
                k: float(v - last["sums"][k]) / count if count else math.nan for k, v in acc["sums"].items()
            }
            cb.on_steps_end(int(step), logs, run)


def _train_epoch(
    runner: Callable,
    epoch: int,
    carry: Any,
    progress: _Progress,
    guard_nan: bool,
    start: int,
    at_boundary: Callable[[int, Any], Any],
) -> Any:
    """Runs one epoch's compiled calls from step ``start``, updating the bar.

    ``at_boundary(position, carry)`` runs after each call (backups, step logs)
    and returns the carry to go on with; the epoch ends early after a NaN step.
    """
    position = start
    progress.update(start)
    calls = runner(carry, epoch, start)
    steps_done, latest = next(calls)
    while steps_done is not None:
        position += steps_done
        latest = at_boundary(position, latest)
        if progress.due():
            progress.update(steps_done, latest[1])
            if guard_nan and int(latest[1]["nan_step"]) >= 0:
                return latest  # the remaining steps would leave the state unchanged anyway
        else:
            progress.update(steps_done)
        steps_done, latest = calls.send(latest)
    progress.update(0, latest[1])
    return latest


def _epoch_logs(acc: dict) -> dict[str, float]:
    count = float(acc["count"])
    return {k: (float(v) / count if count else math.nan) for k, v in acc["sums"].items()}


def _stream_steps(requested: int | str) -> int | str:
    if requested not in ("auto", 1):
        raise ValueError(
            "fit: steps_per_execution > 1 needs in-memory arrays (x and y) in one process, not an "
            "iterable of batches or a multi-process run"
        )
    return 1


def _calls(start: int, total: int, per_call: int, every: int | None) -> Iterable[tuple[int, int]]:
    """``(first step, steps)`` of each compiled call from ``start`` to ``total``.

    Calls hold at most ``per_call`` steps and never cross a multiple of ``every``
    (the backup points).
    """
    begin = start
    while begin < total:
        end = min(begin + per_call, total)
        if every is not None:
            end = min(end, (begin // every + 1) * every)
        yield begin, end - begin
        begin = end


class _ArraySource:
    """In-memory arrays, placed on the device once; batches are gathered there."""

    fusable = True  # several steps can run in one compiled call

    def __init__(
        self, arrays: tuple, n: int, batch_size: int, shuffle: bool, seed: int, dp: DataParallel | None
    ):
        self.n, self.batch_size, self.shuffle, self.seed, self.dp = n, batch_size, shuffle, seed, dp
        self.full_batches = n // batch_size
        self.remainder = n % batch_size
        if dp is None:
            self.data, self.rows = place(arrays), jnp.asarray
        else:  # the data on every device; each gathers its part of a batch
            dp.check_batch_size("batch_size", batch_size)
            if self.remainder:
                dp.check_last_batch(f"{n} examples in batches of {batch_size}", self.remainder)
            self.data, self.rows = dp.replicate(arrays), dp.shard_rows

    def batch_spec(self) -> Any:
        return data_lib.take(self.data, slice(0, self.batch_size))

    def steps_in_epoch(self) -> int:
        return self.full_batches + (self.remainder > 0)

    def fingerprint(self, seed: int) -> dict[str, Any]:
        """What a backup must agree on to continue this run's batches exactly."""
        return {"examples": self.n, "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": seed}

    def runner(self, step: Callable, execution: _Execution, carry_spec: Any, every: int | None) -> Callable:
        """``run_epoch(carry, epoch, start)``: yields ``(steps, carry)`` per compiled call, then ``(None, carry)``.

        Each ``(steps, carry)`` is answered with ``send(carry)``: the carry to go on
        with, which callbacks may have changed.

        Calls run at most ``execution.next()`` steps and end at multiples of ``every``.
        """

        def one_step(carry: Any, data: Any, rows: jax.Array, i: Any) -> Any:
            # Row i is picked inside the compiled call: slicing it outside costs a dispatch.
            return step(carry, data_lib.take(data, jax.lax.dynamic_index_in_dim(rows, i, keepdims=False)))

        def many_steps(carry: Any, data: Any, rows: jax.Array) -> Any:
            return jax.lax.scan(lambda c, r: (step(c, data_lib.take(data, r)), None), carry, rows)[0]

        out = _replicated_out(self.dp)
        one_jit = jax.jit(one_step, donate_argnums=0, **out)
        many_jit = jax.jit(many_steps, donate_argnums=0, **out)
        wrap = (lambda f: f) if self.dp is None else self.dp.one_at_a_time
        any_rows, any_chunk = wrap(one_jit), wrap(many_jit)  # compiled for each new shape
        one, many, fused = any_rows, any_chunk, execution.candidates[-1]
        rows_sharding = None if self.dp is None else self.dp.rows_sharding

        def rows_spec(length: int) -> jax.ShapeDtypeStruct:
            return jax.ShapeDtypeStruct((length, self.batch_size), jnp.int32, sharding=rows_sharding)

        if execution.measuring:  # compiled up front, so that the timed epoch excludes compiling
            started = time.perf_counter()
            one = wrap(one_jit.lower(carry_spec, self.data, rows_spec(self.full_batches), 0).compile())
            compile_seconds = time.perf_counter() - started
            nothing = jax.jit(lambda carry, data, rows, i: carry, donate_argnums=0, **out)
            nothing = wrap(nothing.lower(carry_spec, self.data, rows_spec(self.full_batches), 0).compile())

        def run_epoch(carry: Any, epoch: int, start: int = 0):
            nonlocal many
            order = data_lib.shuffle_indices(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)
            order = order.astype(np.int32)
            cut = self.full_batches * self.batch_size
            rows = self.rows(order[:cut].reshape(self.full_batches, self.batch_size))
            per_call = execution.next()
            measure = execution.measuring and start == 0
            if measure and per_call == 1:  # what a call costs that does nothing: all fusing saves
                carry, call_seconds = _time_calls(nothing, carry, self.data, rows)
            if measure and per_call > 1:  # compiled only now that it may pay, and before the timing
                many = wrap(many_jit.lower(carry_spec, self.data, rows_spec(fused)).compile())
            timed_from, start_time = (self.full_batches // 2 if per_call == 1 else 0), time.perf_counter()
            for begin, length in _calls(start, self.full_batches, per_call, every):
                if measure and begin == timed_from and begin > 0:
                    jax.block_until_ready(carry)  # the first half warmed up; time the second
                    start_time = time.perf_counter()
                if length == 1:
                    carry = one(carry, self.data, rows, begin)
                else:  # other chunk lengths (a shorter last one) compile once more
                    chunk = rows if length == self.full_batches else rows[begin : begin + length]
                    carry = (many if length == fused else any_chunk)(carry, self.data, chunk)
                carry = yield length, carry
            if measure:
                jax.block_until_ready(carry)
                seconds = (time.perf_counter() - start_time) / (self.full_batches - timed_from)
                execution.record(per_call, seconds, self.full_batches)
                if per_call == 1:
                    execution.drop_fusing_unless_it_pays(call_seconds, compile_seconds)
            if self.remainder:  # the last, smaller batch: one more compile
                carry = any_rows(carry, self.data, self.rows(order[cut:][None]), 0)
                carry = yield 1, carry
            yield None, carry

        return run_epoch


def _time_calls(call: Callable, carry: Any, data: Any, rows: Any, repeats: int = 5) -> tuple[Any, float]:
    """The fastest of ``repeats`` synced calls of ``call(carry, data, rows, 0) -> carry``, in seconds."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        carry = jax.block_until_ready(call(carry, data, rows, 0))
        best = min(best, time.perf_counter() - started)
    return carry, best


def _check_batch(batch: Any) -> tuple:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            f"fit: each batch must be (x, y) or (x, y, sample_weight), got {type(batch).__name__}"
        )
    return tuple(batch)


class _ProcessShardSource(_ArraySource):
    """This process's shard of the arrays in a multi-process run.

    Each process cuts its part of every batch (``batch_size / processes`` rows,
    shuffled by the same ``(seed, epoch)`` permutation of its shard) on the host,
    and the parts form the global batch, one compiled step at a time.
    """

    fusable = False

    def __init__(self, arrays: tuple, n: int, batch_size: int, shuffle: bool, seed: int, dp: DataParallel):
        dp.check_batch_size("batch_size", check_batch_size("fit", batch_size, batch_size))
        sizes = dp.gather_ints(n)
        if len(set(sizes)) > 1:
            raise ValueError(
                f"fit: every process must pass a shard of the same number of examples; got {sizes} "
                "(process 0, 1, ...)"
            )
        part = batch_size // dp.processes
        if part > n:
            raise ValueError(
                f"fit: batch_size {batch_size} needs {part} examples from each of {dp.processes} "
                f"processes, but each shard holds {n}"
            )
        self.n, self.batch_size, self.shuffle, self.seed, self.dp = n, part, shuffle, seed, dp
        self.full_batches, self.remainder = n // part, n % part
        if self.remainder:
            dp.check_last_batch(
                f"{dp.processes} shards of {n} examples in parts of {part}", self.remainder * dp.processes
            )
        self.data = jax.tree.map(np.asarray, arrays)

    def fingerprint(self, seed: int) -> dict[str, Any]:
        return {**super().fingerprint(seed), "processes": self.dp.processes}

    def runner(self, step: Callable, execution: _Execution, carry_spec: Any, every: int | None) -> Callable:
        one = self.dp.one_at_a_time(jax.jit(step, donate_argnums=0, **_replicated_out(self.dp)))

        def run_epoch(carry: Any, epoch: int, start: int = 0):
            order = data_lib.shuffle_indices(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)
            for begin in range(start * self.batch_size, self.n, self.batch_size):
                part = data_lib.take(self.data, order[begin : begin + self.batch_size])
                carry = one(carry, self.dp.global_batch(part))
                carry = yield 1, carry
            yield None, carry

        return run_epoch


class _StreamSource:
    """An iterable of host batches, placed on the device one by one."""

    fusable = False

    def __init__(self, batches: Iterable, steps_per_epoch: int | None, dp: DataParallel | None):
        self.dp = dp
        if isinstance(batches, (np.ndarray, jax.Array, Mapping)):
            raise ValueError(
                "fit: y is missing; pass x and y arrays, or x alone as an iterable of (x, y) batches"
            )
        if steps_per_epoch is not None and (
            isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1
        ):
            raise ValueError(f"fit: steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
        self.one_shot = iter(batches) is batches
        self.batches, self.steps_per_epoch = batches, steps_per_epoch
        self.iterator = iter(batches)
        self.first = next(self.iterator, None)
        if self.first is None:
            raise ValueError("fit: the iterable of batches is empty")
        self.first = _check_batch(self.first)
        self.full_batches = 1

    def batch_spec(self) -> Any:
        return self.first

    def steps_in_epoch(self) -> int | None:
        return self.steps_per_epoch

    def fingerprint(self, seed: int) -> dict[str, Any]:
        return {"steps_per_epoch": self.steps_per_epoch, "seed": seed}

    def _epoch_batches(self, epoch: int) -> Iterable:
        if self.first is not None:
            head, self.first = [self.first], None
            stream = itertools.chain(head, self.iterator)
        elif self.one_shot:
            stream = self.iterator
        else:
            stream = iter(self.batches)
        return stream if self.steps_per_epoch is None else itertools.islice(stream, self.steps_per_epoch)

    def runner(self, step: Callable, execution: _Execution, carry_spec: Any, every: int | None) -> Callable:
        one = jax.jit(step, donate_argnums=0, **_replicated_out(self.dp))
        put = place
        if self.dp is not None:
            one, put = self.dp.one_at_a_time(one), self.dp.global_batch

        def run_epoch(carry: Any, epoch: int, start: int = 0):
            steps = 0
            # Resuming inside an epoch skips the batches already trained on; only a
            # re-iterable that yields the same batches each time continues exactly.
            for batch in itertools.islice(self._epoch_batches(epoch), start, None):
                carry = one(carry, put(_check_batch(batch)))
                steps += 1
                carry = yield 1, carry
            if steps == 0 and start == 0:
                raise ValueError(
                    f"fit: the iterator of batches was exhausted before epoch {epoch}; pass "
                    "steps_per_epoch, or a re-iterable (e.g. a list) instead of a generator"
                )
            yield None, carry

        return run_epoch
