"""fit: Keras's convenience over fnn's pure train step, as wiring and a short loop.

Data flows one way: source (``_sources``) → execution (``_execution``: compiled,
fused or eager calls) → run (``_run``: carry and progress) → callbacks (``_callback_list``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optax

from fnn import losses as losses_lib
from fnn import optimizers
from fnn._core import Layer
from fnn.parallel import DataParallel, is_primary
from fnn.train._callback_list import CallbackList
from fnn.train._callbacks import Callback
from fnn.train._evaluate import check_labels, example_shapes, is_stream
from fnn.train._execution import build_execution, eager_forward, log_specs, make_step
from fnn.train._loop import Loop, Validation, check_fit_options, gradients_of
from fnn.train._run import FitRun, History
from fnn.train._sources import make_sources
from fnn.train._state import TrainState, initial_train_state
from fnn.train._step import MetricsArg, make_fit_step


def fit(
    model: Layer,
    x: Any,
    y: Any = None,
    *,
    loss: losses_lib.LossSpec | None = None,
    optimizer: str | optax.GradientTransformation = "adam",
    metrics: MetricsArg = None,
    loss_weights: losses_lib.WeightsSpec = None,
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
    sharding: Any = None,
    train_step: Callable | None = None,
    run_eagerly: bool = False,
    resume_from: str | os.PathLike | None = None,
) -> History:
    """Trains a model, Keras-style, and returns a :class:`History` with the trained state.

    Nothing is mutated: the trained params, state and optimiser state come back
    in ``History.train_state``.

    Data comes as in-memory arrays ``x`` and ``y`` (arrays or pytrees of them),
    placed on the device once and shuffled there by the permutation of ``(seed,
    epoch)``, or as ``x`` alone: an iterable of ``(x, y[, sample_weight])``
    batches (a generator needs ``steps_per_epoch`` for several epochs), read
    and placed a few batches ahead of the device. A grain pipeline
    (``MapDataset``, ``IterDataset``, ``DataLoader``) or any stream whose
    iterator has ``get_state``/``set_state`` is *checkpointable*: backups store
    its state, and a resumed run continues at the exact batch without
    reading the earlier ones again. Other streams are read again from the
    start of their current pass, skipping the batches already trained on
    (exact where they yield the same batches again).

    Args:
        model: the model to train.
        x: inputs, or an iterable of batches when ``y`` is ``None``.
        y: targets (array or pytree of arrays); for a model with several
            outputs, a tuple, list or dict of arrays like its outputs.
        loss: a loss name or function, as for :func:`fnn.make_train_step`
            (optional with ``train_step``, where it only scores validation).
            Several outputs take one loss each (a list, or a dict keyed by
            output name) or one loss for all, as in Keras's ``compile(loss={...})``.
        optimizer: a name (Keras's default rate) or an optax transformation.
        metrics: names or functions (or a dict of them). Each is logged from
            its statistics summed over the epoch's batches (and over the
            whole validation set), so precision, F1, AUC and R² are those of
            all the data, not a mean of batch values (as Keras's stateful
            metrics); a function without statistics is averaged over batches
            (see :func:`fnn.metrics.statistics`). Several outputs take a dict
            ``{output name: [metrics]}`` (or one list for all), logged as
            ``"<output>_<metric>"``.
        loss_weights: several outputs' loss weights, a list or dict like
            ``loss`` (default all 1.0): ``"loss"`` is ``sum(weight * loss)``,
            and each output's unweighted loss is logged as ``"<output>_loss"``.
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
        steps_per_execution: steps fused into one compiled ``lax.scan`` call (a
            stream's batches stacked), or ``"auto"``: for arrays, whole epochs on
            accelerators; on CPU never for a step with convolutions (they run
            slower inside XLA:CPU's loops), else only where the host time the
            first epoch measured per step, saved on every step left, beats the
            compile (a stream: 1). Bitwise the same results; ``History`` says what ran.
        steps_per_epoch: for iterables: batches per epoch. One iterator is then
            read on across epochs (as Keras does), so a long or repeating stream
            is not cut to its first batches each epoch; a re-iterable read to its
            end starts a new pass. Without it an epoch is one pass.
        params: start from these params (transfer learning); a fresh
            optimiser state is made for them.
        state: the model state to start from, with ``params``.
        train_state: continue a run exactly (params, state, optimiser state,
            step and key), e.g. from a previous ``History.train_state``.
        validation_batch_size: batch size of the validation forward passes.
        checkpoint_dir: back the run up here (:class:`BackupAndRestore`) at
            epoch ends and every ``checkpoint_every`` steps; rerunning the call
            after a crash continues bitwise as if uninterrupted.
        checkpoint_every: with ``checkpoint_dir``, also back up every this many
            steps inside epochs.
        mesh: train data-parallel over this ``jax.sharding.Mesh`` (see
            :mod:`fnn.parallel`): batches split along its ``"data"`` axis,
            everything else replicated. ``batch_size`` is the global batch and
            must divide by the devices; in a multi-process run each process
            passes its own equal shard, and only process 0 shows progress.
        sharding: with ``mesh``, split the params and their optimiser state
            instead of replicating them: sharding policies of
            :mod:`fnn.parallel`, applied in order, e.g. ``[fsdp()]`` (FSDP,
            about ``1/devices`` of them on each device) or
            ``[tensor_parallel(), fsdp()]`` on a ``make_mesh(data=4,
            model=2)``. The step is the same; XLA gathers and reduces.
        train_step: your own ``train_step(params, state, opt_state, batch,
            key) -> (params, state, opt_state, logs)`` (as
            :func:`fnn.make_train_step` builds; scalar logs with ``"loss"``)
            for distillation, GANs or contrastive losses; callbacks, fusion,
            backups and validation (by ``loss``) stay. ``optimizer`` makes
            the initial optimiser state.
        run_eagerly: Keras's ``run_eagerly``, for debugging: nothing compiles,
            and each step's forward pass first runs on concrete arrays, where
            ``print``, ``float(x)`` and ``pdb`` in layers see real values (inside
            autodiff layers only see tracers: use ``jax.debug.print`` there).
        resume_from: a checkpoint of :class:`ModelCheckpoint` (``manager.path(step)``):
            continue that run (optimiser state, step, key) after the epoch it saved.

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
    check_fit_options(epochs, initial_epoch, verbose, seed, shuffle, loss, train_step)
    tx = optimizers.get(optimizer)
    if sharding is not None and mesh is None:
        raise ValueError(
            "fit: sharding needs a mesh to split the params over (mesh=fnn.parallel.make_mesh(...))"
        )
    dp = None if mesh is None else DataParallel(mesh, policies=sharding or (), tx=tx)
    callbacks = CallbackList(callbacks, checkpoint_dir, checkpoint_every, primary=dp is None or is_primary())
    verbose = verbose if dp is None or is_primary() else 0
    if train_step is None:
        train_step = make_fit_step(model, loss, tx, metrics, loss_weights)
    source, val = make_sources(
        x, y, sample_weight, class_weight, validation_split, validation_data, batch_size, shuffle, seed,
        steps_per_epoch, dp, keep_state=callbacks.backup is not None,
    )  # fmt: skip
    batch = source.batch_spec()
    input_shape = example_shapes(batch[0])
    train_state, initial_epoch = initial_train_state(
        model, tx, input_shape, seed, params, state, train_state, resume_from, initial_epoch
    )
    if loss is not None and y is not None:
        labels = {"y": (y, sample_weight)}
        if validation_data is not None and not is_stream(val):  # a stream's labels are checked as it is read
            labels["validation_data's y"] = val[1:]
        check_labels("fit", loss, labels, model, train_state.params, train_state.state, input_shape)
    validation = Validation(val, loss, metrics, validation_batch_size, {"loss_weights": loss_weights})
    run = FitRun(model, epochs, train_state, input_shape, log_specs(train_step, train_state, batch))
    if dp is not None:  # (the train state is in new buffers: the steps donate them)
        run.carry = dp.place(run.carry)
    run.progress.epoch = initial_epoch
    first_batch = getattr(source, "first_batch", source.batch_spec)  # a stream's spec is its first batch
    run.gradients = gradients_of(model, loss, loss_weights, first_batch, run, dp)
    saved = callbacks.restore(run, source.fingerprint(seed), dp)
    if run.progress.stream_state is not None:
        source.resume(run.progress.stream_state)
    step = make_step(train_step, callbacks.guards_nan, dp)
    eager = eager_forward(model) if run_eagerly else None
    epochs_left = epochs - min(run.progress.epoch, epochs)
    execution = build_execution(
        step, source, steps_per_execution, eager, epochs_left, callbacks.every, dp, run.carry
    )
    loop = Loop(model, execution, callbacks, validation, verbose, dp, train_step)
    try:
        callbacks.train_begin(run, saved)
        for epoch in range(min(run.progress.epoch, epochs), epochs):
            if run.stop_training:
                break
            loop.epoch(run, epoch)
        callbacks.train_end(run)
    finally:
        callbacks.close()  # threads, traces and tracker runs are released however the run ends
    return loop.history(run)
