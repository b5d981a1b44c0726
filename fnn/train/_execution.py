"""How ``fit``'s steps run: compiled one by one or fused with ``lax.scan``, timed, or eagerly.

The one module that compiles. :func:`fused_steps` is the public fused-epoch
primitive (``fit``, custom loops and the playground use it); :class:`Execution`
decides how many steps each compiled call runs and runs an epoch's calls.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from fnn import data as data_lib
from fnn.parallel import DataParallel
from fnn.train._run import Carry, Summed
from fnn.train._state import TrainState, turned_non_finite

# On CPU, "auto" times the first epoch unfused and fuses only where that can pay (see
# Plan); a single-epoch run cannot compare, and fuses when its step has fewer FLOPs than
# this (XLA's cost analysis), where dispatch overhead dominates.
CPU_FUSE_MAX_FLOPS = 2e7

# Compiling a fused epoch (the step inside a lax.scan) takes about this many times as long
# as compiling the step alone; "auto" fuses only where the saving beats that.
FUSED_COMPILE_RATIO = 1.5

# Operations seen to run slower inside XLA:CPU's loops than called one step at a time: a
# LeNet's step with them ran 2.9x slower in a lax.scan (XLA:CPU leaves the backward
# convolutions in slow layouts inside the loop; a hand-written scan does the same).
# "auto" never fuses a step with one of them on CPU (benchmarks/results/auto_execution.md).
SLOW_IN_CPU_LOOPS = ("stablehlo.convolution",)

C = TypeVar("C")


def fused_steps(step: Callable[[C, Any], C], carry: C, data: Any, rows: jax.Array) -> C:
    """Runs ``step`` once per row of ``rows`` in one ``lax.scan``, gathering each batch from ``data``.

    The fused-epoch primitive: with ``rows`` an epoch's shuffled batch indices
    (e.g. ``fnn.data.shuffle_indices(n, seed, epoch)[:k * b].reshape(k, b)``),
    one compiled call trains a whole epoch, with no Python dispatch per step.
    Wrap it in ``jax.jit`` (donating ``carry``).

    Args:
        step: ``step(carry, batch) -> carry``, e.g. a train step over a :class:`TrainState`.
        carry: any pytree, e.g. a TrainState.
        data: the dataset, a pytree of arrays ``(n, ...)`` (e.g. ``(x, y)``).
        rows: int ``(steps, batch_size)``: the examples of each step's batch.

    Returns:
        The carry after ``steps`` steps.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> data = jnp.arange(6.0)
        >>> total = jax.jit(fused_steps, static_argnums=0)(lambda c, b: c + b.sum(), 0.0, data,
        ...                                                 jnp.array([[0, 1], [2, 3]]))
        >>> float(total)
        6.0
    """
    return jax.lax.scan(lambda c, r: (step(c, data_lib.take(data, r)), None), carry, rows)[0]


def _advance(train_step: Callable, ts: TrainState, batch: Any) -> tuple[TrainState, dict]:
    """Applies the pure train step to a TrainState; step ``s`` draws from ``fold_in(key, s)``."""
    params, state, opt_state, logs = train_step(
        ts.params, ts.state, ts.opt_state, batch, jax.random.fold_in(ts.key, ts.step)
    )
    return ts._replace(params=params, state=state, opt_state=opt_state, step=ts.step + 1), logs


def log_specs(train_step: Callable, ts: TrainState, batch_spec: Any) -> dict[str, Any]:
    """The train step's logs as shapes, checked to be scalars or :class:`Summed` (no FLOPs: shapes only)."""
    specs = jax.eval_shape(lambda t, b: _advance(train_step, t, b)[1], ts, batch_spec)
    for name, spec in specs.items():
        shape = jax.eval_shape(spec.result, spec.stats).shape if isinstance(spec, Summed) else spec.shape
        if shape != ():
            raise ValueError(f"fit: metric {name!r} returned shape {shape}; fit's metrics must be scalars")
    return specs


def make_step(
    train_step: Callable, guard_nan: bool, dp: DataParallel | None = None
) -> Callable[[Carry, Any], Carry]:
    """One training step over a :class:`Carry`: the unit every execution runs.

    Adds the batch's logs, weighted by its size, to the carry's running sums
    (a :class:`Summed` log's statistics as they are).
    With ``guard_nan``, once a loss or an updated value is not finite (a NaN
    learning rate, or a NaN gradient at a finite loss), this and every later
    step leave the state as it was and ``nan_step`` records the first.
    """

    def step(carry: Carry, batch: Any) -> Carry:
        ts = carry.train_state
        if dp is not None:  # a batch gathered on the devices stays split over them
            batch = dp.constrain(batch)
        new, logs = _advance(train_step, ts, batch)
        weight = jnp.asarray(jnp.shape(jax.tree.leaves(batch)[0])[0], jnp.float32)
        nan_step = carry.nan_step
        if guard_nan:  # typed keys never change and do not go through jnp.where
            went_bad = turned_non_finite(ts._replace(key=None), new._replace(key=None))
            ok = jnp.isfinite(logs["loss"]) & ~went_bad & (nan_step < 0)
            nan_step = jnp.where(~ok & (nan_step < 0), ts.step, nan_step)
            kept = jax.tree.map(
                lambda a, b: jnp.where(ok, a, b), new._replace(key=None), ts._replace(key=None)
            )
            new = kept._replace(key=ts.key)
            weight = jnp.where(ok, weight, 0.0)

        def add(total: Any, log: Any) -> Any:
            if isinstance(log, Summed):  # a step that does not count adds nothing
                return jax.tree.map(lambda t, s: t + jnp.where(weight > 0, s, 0).astype(t.dtype), total, log)
            return total + weight * log.astype(jnp.float32)

        sums = {k: add(carry.sums[k], logs[k]) for k in carry.sums}
        return Carry(new, sums, carry.count + weight, nan_step)

    return step


def calls(start: int, total: int, per_call: int, every: int | None) -> Iterator[tuple[int, int]]:
    """``(first step, steps)`` of each compiled call from ``start`` to ``total``.

    Calls hold at most ``per_call`` steps and never cross a multiple of ``every``
    (where callbacks and backups look at the run).
    """
    begin = start
    while begin < total:
        end = min(begin + per_call, total)
        if every is not None:
            end = min(end, (begin // every + 1) * every)
        yield begin, end - begin
        begin = end


class Plan:
    """How many steps each compiled call runs, possibly chosen by measurement.

    An int is used as given. ``"auto"`` fuses whole epochs on accelerators. On
    CPU it looks at the step first (:meth:`look`): one with operations that
    XLA:CPU runs slower inside loops (:data:`SLOW_IN_CPU_LOOPS`) is never fused,
    and a single epoch is fused or not by XLA's cost analysis of the step.
    Otherwise the first epoch runs unfused and is timed, with the CPU time the
    Python thread spends per step (dispatch and the loop): that is all fusing
    can save on each step left, and compiling the fused epoch costs about
    :data:`FUSED_COMPILE_RATIO` times what compiling the step did. Only when the
    saving is larger is the fused epoch compiled, run and timed, and the faster
    kept. So no program is compiled that does not run, and none where it
    cannot pay. Both modes give bitwise the same results: the choice affects
    speed only.
    """

    def __init__(self, requested: int | str, full_batches: int, epochs: int):
        if requested != "auto" and not (
            isinstance(requested, int) and not isinstance(requested, bool) and requested >= 1
        ):
            raise ValueError(f"fit: steps_per_execution must be 'auto' or a positive int, got {requested!r}")
        self.timings: dict[int, float] = {}
        self.steps_left, self.epochs = epochs * full_batches, epochs  # fusing can pay off only over these
        self.looks = requested == "auto" and full_batches >= 2 and jax.default_backend() == "cpu"
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

    @property
    def measuring(self) -> bool:
        """Whether a candidate is still to be timed."""
        return any(c not in self.timings for c in self.candidates) and len(self.candidates) > 1

    def limit(self, max_per_call: int | None) -> None:
        if max_per_call is not None:
            self.candidates = sorted({min(c, max_per_call) for c in self.candidates})

    def look(self, lowered: jax.stages.Lowered) -> None:
        """CPU evidence before running: the step's operations, and its FLOPs for a single epoch."""
        self.looks = False
        if any(op in lowered.as_text() for op in SLOW_IN_CPU_LOOPS):
            self.candidates = [1]
        elif self.epochs < 2 and len(self.candidates) > 1:  # nothing to compare: guess from the cost
            flops = lowered.cost_analysis().get("flops", float("inf"))
            self.candidates = [self.candidates[-1] if flops < CPU_FUSE_MAX_FLOPS else 1]

    def next(self) -> int:
        untried = [c for c in self.candidates if c not in self.timings]
        return untried[0] if untried else min(self.timings, key=self.timings.__getitem__)

    def record(self, steps_per_call: int, seconds_per_step: float, steps: int) -> None:
        self.timings.setdefault(steps_per_call, seconds_per_step)
        self.steps_left -= steps

    def drop_fusing_unless_it_pays(self, host_seconds: float, compile_seconds: float) -> None:
        """Keeps the fused candidates only if their saving can beat their compile time.

        Args:
            host_seconds: the Python thread's CPU time per unfused step (dispatch and
                the loop): at most what fusing saves per step.
            compile_seconds: what compiling the one-step program took.
        """
        self.candidates = [
            c
            for c in self.candidates
            if c == 1 or host_seconds * (1 - 1 / c) * self.steps_left > FUSED_COMPILE_RATIO * compile_seconds
        ]


class Execution:
    """Runs an epoch's steps as compiled calls: ``epoch(carry, epoch, start)``.

    ``epoch`` is a generator: it yields ``(steps, carry)`` after each call and
    takes back (``send``) the carry to go on with, which callbacks may have
    replaced. Only :class:`~fnn.train._sources.ArraySource` batches can be fused
    (gathered on the device inside the call); other sources run one compiled
    step per batch.

    ``eager`` (a function ``(train_state, batch) -> None``, or ``None``) asks
    for Keras's ``run_eagerly``: nothing is compiled, and before each step
    ``eager`` runs the step's forward pass on concrete arrays. JAX's autodiff
    only ever shows a layer tracers, even uncompiled, so that extra pass is
    where ``print``, ``float`` and ``pdb`` see real values.
    """

    def __init__(
        self, step: Callable, source: Any, plan: Plan, carry_spec: Carry, every: int | None,
        dp: DataParallel | None, eager: Callable | None = None,
    ):  # fmt: skip
        self.step, self.source, self.plan = step, source, plan
        self.every, self.dp, self.eager = every, dp, eager
        self.out = {} if dp is None else {"out_shardings": dp.shardings(carry_spec)}
        self.wrap = (lambda f: f) if dp is None else dp.one_at_a_time
        self.sums = carry_spec.sums
        self.fusable = hasattr(source, "rows") and eager is None
        if self.fusable:
            self._compile_indexed(carry_spec)
        else:
            self.one = step if eager is not None else self.wrap(jax.jit(step, donate_argnums=0, **self.out))
            scan = lambda carry, stacked: jax.lax.scan(lambda c, b: (step(c, b), None), carry, stacked)[0]  # noqa: E731
            self.stacked = jax.jit(scan, donate_argnums=0)  # a stream's stack of batches, one device only

    def start(self, train_state: TrainState) -> Carry:
        """A carry for a new epoch: ``train_state`` with zeroed running logs."""
        return Carry.start(train_state, self.sums, None if self.dp is None else self.dp.replicated)

    def _compile_indexed(self, carry_spec: Carry) -> None:
        step, source = self.step, self.source

        def one_step(carry: Carry, data: Any, rows: jax.Array, i: Any) -> Carry:
            # Row i is picked inside the compiled call: slicing it outside costs a dispatch.
            return step(carry, data_lib.take(data, jax.lax.dynamic_index_in_dim(rows, i, keepdims=False)))

        self.one_jit = jax.jit(one_step, donate_argnums=0, **self.out)
        self.many_jit = jax.jit(functools.partial(fused_steps, step), donate_argnums=0, **self.out)
        self.any_rows, self.any_chunk = self.wrap(self.one_jit), self.wrap(self.many_jit)
        self.one, self.many = self.any_rows, self.any_chunk
        self.carry_spec, self.compile_seconds = carry_spec, 0.0
        # Each call's row index, placed once: a Python int would be a host-to-device transfer per call.
        positions = np.arange(max(source.full_batches, 1), dtype=np.int32)
        self.positions = jax.device_put(list(positions), None if self.dp is None else self.dp.replicated)
        if self.plan.looks:  # lowered to look at; compiled by its first call (a jit's calls dispatch fastest)
            rows_spec = self.rows_spec(source.full_batches)
            self.plan.look(self.one_jit.lower(carry_spec, source.data, rows_spec, self.positions[0]))

    def _stream_epoch(self, carry: Carry, epoch: int, start: int):
        """A stream's epoch: one compiled step per batch, or a fused call per stack of batches."""
        if self.eager is not None:
            for batch in self.source.batches(epoch, start):
                with jax.disable_jit():
                    self.eager(carry.train_state, batch)  # the forward pass on concrete arrays
                    carry = self.one(carry, batch)
                carry = yield 1, carry
            return
        if self.plan.next() == 1:
            for batch in self.source.batches(epoch, start):
                carry = yield 1, self.one(carry, batch)
            return
        for steps, batch in self.source.chunks(epoch, start, self.plan.next(), self.every):
            carry = yield steps, (self.one if steps == 1 else self.stacked)(carry, batch)

    def rows_spec(self, length: int) -> jax.ShapeDtypeStruct:
        sharding = None if self.dp is None else self.dp.rows_sharding
        return jax.ShapeDtypeStruct((length, self.source.batch_size), jnp.int32, sharding=sharding)

    def epoch(self, carry: Carry, epoch: int, start: int = 0):
        if not self.fusable:
            yield from self._stream_epoch(carry, epoch, start)
            return
        source, plan = self.source, self.plan
        rows, last = source.rows(epoch)
        per_call, fused = plan.next(), plan.candidates[-1]
        measure = plan.measuring and start == 0
        if measure and per_call > 1:  # compiled only now that it may pay, and before the timing
            self.many = self.wrap(
                self.many_jit.lower(self.carry_spec, source.data, self.rows_spec(fused)).compile()
            )
        # An unfused epoch is timed over its second half (the first warms up), with the
        # Python thread's CPU time: what fusing would save.
        timed_from = source.full_batches // 2 if per_call == 1 else 0
        start_time, start_thread = time.perf_counter(), time.thread_time()
        for begin, length in calls(start, source.full_batches, per_call, self.every):
            if measure and begin == timed_from and begin > 0:
                jax.block_until_ready(carry)
                start_time, start_thread = time.perf_counter(), time.thread_time()
            if length == 1 and measure and begin == start:  # the first call compiles: time that
                started = time.perf_counter()
                carry = jax.block_until_ready(self.one(carry, source.data, rows, self.positions[begin]))
                self.compile_seconds = time.perf_counter() - started
            elif length == 1:
                carry = self.one(carry, source.data, rows, self.positions[begin])
            else:  # other chunk lengths (a shorter last one) compile once more
                chunk = rows if length == source.full_batches else rows[begin : begin + length]
                carry = (self.many if length == fused else self.any_chunk)(carry, source.data, chunk)
            carry = yield length, carry
        if measure:
            jax.block_until_ready(carry)
            steps = source.full_batches - timed_from
            plan.record(per_call, (time.perf_counter() - start_time) / steps, source.full_batches)
            if per_call == 1:
                plan.drop_fusing_unless_it_pays(
                    (time.thread_time() - start_thread) / steps, self.compile_seconds
                )
        if last is not None:  # the last, smaller batch: one more compile
            carry = self.any_rows(carry, source.data, last, self.positions[0])
            yield 1, carry


def eager_forward(model: Any) -> Callable[[TrainState, Any], None]:
    """The forward pass a step takes (``train=True``, the step's key), run for its side effects only."""

    def forward(ts: TrainState, batch: Any) -> None:
        model.apply(ts.params, ts.state, batch[0], train=True, key=jax.random.fold_in(ts.key, ts.step))

    return forward


def build_execution(
    step: Callable, source: Any, requested: int | str, eager: Callable | None, epochs: int, every: int | None,
    dp: DataParallel | None, carry: Carry,
) -> Execution:  # fmt: skip
    fusable = hasattr(source, "rows") and eager is None
    stackable = hasattr(source, "chunks") and eager is None and dp is None
    if not (fusable or stackable) and requested not in ("auto", 1):
        raise ValueError(
            "fit: steps_per_execution > 1 needs in-memory arrays (x and y) in one process, or a stream of "
            "batches on one device; not a multi-process or multi-device stream, or run_eagerly"
        )
    if fusable:
        plan = Plan(requested, source.full_batches, epochs)
    else:  # a stream fuses only as asked: "auto" would need its length and a timing of both
        fixed = 1 if requested == "auto" else requested
        plan = Plan(fixed, source.steps_in_epoch() or fixed, epochs)
    plan.limit(every)
    return Execution(step, source, plan, carry, every, dp, eager)
