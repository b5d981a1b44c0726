"""Many seeds (or hyper-parameters) at once: ``fit_ensemble`` trains N members in one compiled program.

Each member is the run ``fit`` makes for its seed: the same initial state, the same
shuffles and dropout keys, the same steps. The members' train states are stacked
along a leading axis and an epoch of all of them is one compiled call, so the
compile, the dispatch and the Python loop are paid once, not N times.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import data as data_lib
from fnn import losses as losses_lib
from fnn import optimizers
from fnn._checks import check_int
from fnn._core import Layer
from fnn.train._evaluate import (
    _add,
    _compiled_statistics,
    _to_host,
    check_labels,
    example_shapes,
    is_stream,
    logs_of_statistics,
    place,
)
from fnn.train._execution import fused_steps, log_specs, make_step
from fnn.train._loop import check_fit_options
from fnn.train._run import Carry, History, read_logs
from fnn.train._sources import make_sources
from fnn.train._state import TrainState, create_train_state, seed_bits
from fnn.train._step import MetricsArg, make_fit_step

# XLA:CPU hands some batched operations (reductions over a member axis, and dots it sees
# whole) to its YNNPACK library, whose summation order differs from the loops it compiles
# for one member; without it a vectorised member is within a few float32 ulps of its run.
_VECTORISED_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@dataclasses.dataclass
class EnsembleHistory:
    """What :func:`fit_ensemble` returns: each member's :class:`History` and their spread.

    Attributes:
        members: one :class:`History` per member, in order: its per-epoch logs and
            its final train state, as ``fit`` with its seed (and hyper-parameters)
            returns them.
        seeds: each member's seed.
        hyperparams: each member's hyper-parameters, ``{name: [value per member]}``.
        train_state: the members' final :class:`TrainState` s stacked along a
            leading axis of size N (for ``jax.vmap`` over the ensemble).
        seconds: the wall time of the training, compiles included.
    """

    members: list[History]
    seeds: list[int]
    hyperparams: dict[str, list[float]]
    train_state: TrainState
    seconds: float

    def values(self, name: str) -> np.ndarray:
        """The log ``name`` as float64 ``(epochs, members)``."""
        if name not in self.members[0].history:
            raise KeyError(
                f"EnsembleHistory: no log {name!r}; the logs are {sorted(self.members[0].history)}"
            )
        return np.asarray([m.history[name] for m in self.members], np.float64).T

    @property
    def mean(self) -> dict[str, list[float]]:
        """Each log's mean over the members, per epoch."""
        return {name: self.values(name).mean(axis=1).tolist() for name in self.members[0].history}

    @property
    def std(self) -> dict[str, list[float]]:
        """Each log's sample standard deviation over the members (``ddof=1``; 0 for one member), per epoch."""
        ddof = 1 if len(self.members) > 1 else 0
        return {name: self.values(name).std(axis=1, ddof=ddof).tolist() for name in self.members[0].history}

    def summary(self) -> str:
        """The last epoch's logs as ``mean ± std (min .. max)`` over the members, one line each.

        Examples:
            >>> import numpy as np, fnn
            >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
            >>> y = (x.sum(axis=1) > 0).astype(np.int32)
            >>> model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(2)])
            >>> runs = fnn.fit_ensemble(model, x, y, seeds=[0, 1, 2], loss="sparse_categorical_crossentropy",
            ...                         optimizer="sgd", epochs=2, batch_size=16, verbose=0)
            >>> print(runs.summary().splitlines()[0])  # doctest: +ELLIPSIS
            3 members, epoch 2: ...
        """
        if not self.members[0].epochs:
            return f"{len(self.members)} members, no epoch trained"
        last = len(self.members[0].epochs) - 1
        lines = [
            f"{len(self.members)} members, epoch {self.members[0].epochs[-1] + 1}: mean ± std (min .. max)"
        ]
        width = max((len(name) for name in self.members[0].history), default=0)
        for name in self.members[0].history:
            row = self.values(name)[last]
            std = row.std(ddof=1) if len(row) > 1 else 0.0
            lines.append(
                f"  {name:<{width}}  {row.mean():.4f} ± {std:.4f} ({row.min():.4f} .. {row.max():.4f})"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"EnsembleHistory({len(self.members)} members, {len(self.members[0].epochs)} epoch(s))"


def fit_ensemble(
    model: Layer,
    x: Any,
    y: Any,
    *,
    seeds: int | Sequence[int] = 0,
    hyperparams: Mapping[str, Sequence[float]] | None = None,
    loss: losses_lib.LossSpec,
    optimizer: str | optax.GradientTransformation = "adam",
    metrics: MetricsArg = None,
    loss_weights: losses_lib.WeightsSpec = None,
    epochs: int = 1,
    batch_size: int = 32,
    validation_split: float | None = None,
    validation_data: Any = None,
    sample_weight: Any = None,
    class_weight: Mapping[int, float] | None = None,
    shuffle: bool = True,
    validation_batch_size: int = 256,
    vectorize: bool = False,
    verbose: int = 1,
) -> EnsembleHistory:
    """Trains N independently seeded runs of ``fit`` as one compiled program, and reports their spread.

    "Run with different random seeds and report the average": member ``i`` is
    the run ``fnn.fit(model, x, y, seed=seeds[i], ...)`` makes (its own
    initialisation, shuffles and dropout keys), with ``hyperparams``' ``i``-th
    values if given. The members' train states are stacked along a leading
    axis; each epoch of all of them is one compiled call (``jax.lax.map`` over
    the members of the fused epoch), so the compile, the dispatch and the
    Python loop are paid once instead of N times, and each member's history
    and params are **bitwise** those of its ``fit`` on CPU.

    ``vectorize=True`` instead runs the members side by side (``jax.vmap``):
    faster where one member leaves the processor idle (small models), but
    XLA compiles the batched operations another way, so a member equals its
    ``fit`` to float32 rounding (drifting over many steps), not bitwise.

    The data must be in-memory arrays (one copy on the device serves every
    member). Callbacks, checkpoints, meshes and streams are ``fit``'s alone.

    Args:
        model: the model to train.
        x: inputs (an array or pytree of arrays).
        y: targets.
        seeds: the members' seeds (each an int in ``[0, 2**63)``), or one seed
            shared by all members when ``hyperparams`` tells them apart.
        hyperparams: ``{name: [value per member]}`` of scalar optimiser
            hyper-parameters. ``"learning_rate"`` works with every optimiser
            ``fnn.optimizers.get`` builds; other names need an optimiser whose
            state holds them, e.g. ``optax.inject_hyperparams(optax.adamw)(
            learning_rate=1e-3, weight_decay=1e-4)``. Member ``i`` equals ``fit``
            with that optimiser made with the ``i``-th values.
        loss: as for :func:`fnn.fit`.
        optimizer: as for :func:`fnn.fit`.
        metrics: as for :func:`fnn.fit`.
        loss_weights: as for :func:`fnn.fit`.
        epochs: epochs to train each member.
        batch_size: examples per step (a last, smaller batch is trained too).
        validation_split: as for :func:`fnn.fit` (the same examples for every member).
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight)``.
        sample_weight: per-example weights ``(n,)``.
        class_weight: ``{class: weight}``, as for :func:`fnn.fit`.
        shuffle: reshuffle every epoch (each member by its own seed).
        validation_batch_size: batch size of the validation forward passes.
        vectorize: run the members side by side with ``jax.vmap`` (see above).
        verbose: 0 silent, 1 or 2 one line per epoch with each log's mean ± std.

    Returns:
        An :class:`EnsembleHistory`.

    Raises:
        ValueError: for bad seeds, hyper-parameters or options, naming them.

    Examples:
        >>> import numpy as np, fnn
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = (x.sum(axis=1) > 0).astype(np.int32)
        >>> model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Dense(2)])
        >>> runs = fnn.fit_ensemble(model, x, y, seeds=[0, 1], hyperparams={"learning_rate": [0.1, 0.3]},
        ...                         loss="sparse_categorical_crossentropy", optimizer="sgd", epochs=2,
        ...                         batch_size=16, verbose=0)
        >>> len(runs.members), runs.members[1].history["learning_rate"]
        (2, [0.30000001192092896, 0.30000001192092896])
    """
    seeds, values = _members(seeds, hyperparams)
    for seed in seeds:
        check_fit_options(epochs, 0, verbose, seed, shuffle, loss, None)
    if y is None or is_stream(x):
        raise ValueError(
            "fit_ensemble: needs in-memory arrays x and y (fit trains on streams, one run at a time)"
        )
    check_int("fit_ensemble", "validation_batch_size", validation_batch_size, low=1)
    started = time.perf_counter()
    tx = optimizers.get(optimizer)
    source, val = make_sources(
        x, y, sample_weight, class_weight, validation_split, validation_data, batch_size, shuffle, seeds[0],
        None, None,
    )  # fmt: skip
    input_shape = example_shapes(source.batch_spec()[0])
    states = [
        _with_hyperparams(create_train_state(model, tx, input_shape, seed_bits(seed)), values, i)
        for i, seed in enumerate(seeds)
    ]
    labels = {"y": (y, sample_weight)}
    if validation_data is not None:
        labels["validation_data's y"] = val[1:]
    check_labels("fit_ensemble", loss, labels, model, states[0].params, states[0].state, input_shape)
    train_step = make_fit_step(model, loss, tx, metrics, loss_weights)
    specs = log_specs(train_step, states[0], source.batch_spec())
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    del states  # the stacked copy is the only one: the epochs donate it
    statistics = _compiled_statistics(model, loss, metrics, loss_weights)
    programs = _Programs(make_step(train_step, guard_nan=False), specs, statistics, vectorize)
    sources = [source] + [_reseeded(source, seed) for seed in seeds[1:]]
    logs: list[dict[str, list[float]]] = [{} for _ in seeds]
    for epoch in range(epochs):
        orders = [s.rows(epoch) for s in sources]
        carry = programs.epoch(stacked, jnp.stack([rows for rows, _ in orders]), source.data)
        if source.remainder:
            carry = programs.last(carry, jnp.stack([last for _, last in orders]), source.data)
        stacked = carry.train_state
        sums, counts, rates = jax.device_get(
            (carry.sums, carry.count, jax.vmap(optimizers.learning_rate)(stacked.opt_state))
        )
        member_logs = [read_logs(_member(sums, i), counts[i]) for i in range(len(seeds))]
        if val is not None:
            scored = programs.validate(stacked, val, validation_batch_size, metrics)
            member_logs = [{**m, **v} for m, v in zip(member_logs, scored)]
        for i, entry in enumerate(member_logs):
            if rates is not None:
                entry["learning_rate"] = float(rates[i])
            for name, value in entry.items():
                logs[i].setdefault(name, []).append(value)
        if verbose:
            print(_epoch_line(epoch, epochs, member_logs))
    fused = source.full_batches  # each member's full batches ran as one fused call per epoch
    members = [
        History(logs[i], list(range(epochs)), _member(stacked, i), None, fused) for i in range(len(seeds))
    ]
    return EnsembleHistory(members, seeds, values, stacked, time.perf_counter() - started)


def _members(seeds: Any, hyperparams: Mapping[str, Sequence[float]] | None) -> tuple[list[int], dict]:
    """The members' seeds and hyper-parameter values, checked to agree in number."""
    values: dict[str, list[float]] = {}
    for name, given in (hyperparams or {}).items():
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or not given:
            raise ValueError(
                f"fit_ensemble: hyperparams[{name!r}] must be a non-empty list of numbers (one per member), "
                f"got {given!r}"
            )
        for v in given:
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float, np.integer, np.floating))
                or not math.isfinite(v)
            ):
                raise ValueError(
                    f"fit_ensemble: hyperparams[{name!r}] holds {v!r}; each must be a finite number"
                )
        values[name] = [float(v) for v in given]
    counts = {len(v) for v in values.values()}
    if len(counts) > 1:
        raise ValueError(
            "fit_ensemble: hyperparams' lists must be as long as each other, got "
            + ", ".join(f"{k}: {len(v)}" for k, v in values.items())
        )
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if not values:
            raise ValueError(
                "fit_ensemble: seeds must be a list of seeds (one per member), or one seed with hyperparams "
                f"lists; got seeds={seeds!r} and no hyperparams"
            )
        return [int(seeds)] * counts.pop(), values
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"fit_ensemble: seeds must be a non-empty list of ints, got {seeds!r}")
    if counts and counts != {len(seeds)}:
        raise ValueError(
            f"fit_ensemble: {len(seeds)} seeds but hyperparams' lists hold {counts.pop()} values; "
            "give one value per seed (or one seed for all)"
        )
    return list(seeds), values


def _with_hyperparams(ts: TrainState, values: Mapping[str, list[float]], i: int) -> TrainState:
    opt_state = ts.opt_state
    for name, per_member in values.items():
        try:
            opt_state = optimizers.set_hyperparam(opt_state, name, per_member[i])
        except ValueError as e:
            raise ValueError(f"fit_ensemble: hyperparams {name!r}: {e}") from None
    return ts._replace(opt_state=opt_state)


def _reseeded(source: Any, seed: int) -> Any:
    """The same placed arrays, shuffled by another seed."""
    other = copy.copy(source)
    other.seed = seed
    return other


class _Programs:
    """The compiled calls over all members: an epoch's full batches, its last batch, a validation batch."""

    def __init__(self, step: Any, specs: Mapping[str, Any], statistics: Any, vectorize: bool):
        options = _VECTORISED_CPU_OPTIONS if vectorize and jax.default_backend() == "cpu" else None

        def member_epoch(ts: TrainState, rows: jax.Array, data: Any) -> Carry:
            return fused_steps(step, _zero_carry(ts, specs), data, rows)

        def member_last(carry: Carry, rows: jax.Array, data: Any) -> Carry:
            return step(carry, data_lib.take(data, rows[0]))

        def member_statistics(params: Any, state: Any, batch: tuple) -> dict:
            return statistics(params, state, *batch)

        def compiled(fn: Any, **jit_options: Any) -> Any:
            """``fn(member, per_member, shared)`` over members stacked on a leading axis."""
            over = (
                jax.vmap(fn, in_axes=(0, 0, None))
                if vectorize
                else lambda members, per_member, shared: jax.lax.map(
                    lambda m: fn(*m, shared), (members, per_member)
                )
            )
            return jax.jit(over, compiler_options=options, **jit_options)

        self.epoch = compiled(member_epoch, donate_argnums=0)
        self.last = compiled(member_last, donate_argnums=0)
        self.statistics = compiled(member_statistics)

    def validate(
        self, stacked: TrainState, val: tuple, batch_size: int, metrics: Any
    ) -> list[dict[str, float]]:
        """Each member's validation logs, from statistics summed on the host as ``fit`` sums them."""
        x, y, weight = val
        total = data_lib.num_examples(x, "validation x")
        summed = None
        for start in range(0, total, min(batch_size, total)):
            rows = slice(start, start + batch_size)
            batch = (x, y) if weight is None else (x, y, np.asarray(weight))
            x_rows, y_rows, *w_rows = (place(data_lib.take(a, rows)) for a in batch)
            stats = self.statistics(stacked.params, stacked.state, (x_rows, y_rows, *(w_rows or [None])))
            summed = _add(summed, _to_host(stats))
        y_first = data_lib.take(y, slice(0, 1))
        members = len(jax.tree.leaves(summed)[0])
        return [
            {f"val_{k}": v for k, v in logs_of_statistics(metrics, y_first, _member(summed, i)).items()}
            for i in range(members)
        ]


def _member(tree: Any, i: int) -> Any:
    """Member ``i`` of a tree stacked along a leading axis."""
    return jax.tree.map(lambda a: a[i], tree)


def _zero_carry(ts: TrainState, specs: Mapping[str, Any]) -> Carry:
    """A carry at an epoch's start, made inside the compiled call (zeros as ``Carry.start`` makes them)."""
    start = Carry.start(None, specs)
    return Carry(ts, *jax.tree.map(jnp.asarray, (start.sums, start.count, start.nan_step)))


def _epoch_line(epoch: int, epochs: int, member_logs: list[dict[str, float]]) -> str:
    parts = []
    for name in member_logs[0]:
        row = np.asarray([m[name] for m in member_logs])
        std = row.std(ddof=1) if len(row) > 1 else 0.0
        parts.append(f"{name} {row.mean():.4f} ± {std:.4f}")
    return f"Epoch {epoch + 1}/{epochs} ({len(member_logs)} members) - " + " - ".join(parts)
