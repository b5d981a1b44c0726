"""Where ``fit``'s batches come from: data only (no compiling, no timers).

Every source gives a ``batch_spec()`` (the first batch, for shapes),
``steps_in_epoch()``, a ``fingerprint(seed)`` a backup must match, and
``batches(epoch, start)``: the epoch's placed batches from step ``start``, and
``state``: what a backup must store to read on after the last batch handed out
(``None`` where ``(seed, epoch, step)`` says it all). An :class:`ArraySource`
also offers ``rows(epoch)``, the epoch's batch indices into its placed
``data``, so that many steps can gather their batches inside one compiled call.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from fnn import data as data_lib
from fnn._checks import check_int
from fnn.parallel import DataParallel
from fnn.train._evaluate import check_batch_size, is_stream, place


class ArraySource:
    """In-memory arrays, placed on the device once; batches are gathered there."""

    state = None  # a batch is a function of (seed, epoch, step)

    def __init__(
        self, arrays: tuple, n: int, batch_size: int, shuffle: bool, seed: int, dp: DataParallel | None
    ):
        self.n, self.batch_size, self.shuffle, self.seed, self.dp = n, batch_size, shuffle, seed, dp
        self.full_batches, self.remainder = divmod(n, batch_size)
        if dp is None:
            self.data, self._rows = place(arrays), jax.device_put
        else:  # the data on every device; each gathers its part of a batch
            dp.check_batch_size("batch_size", batch_size)
            if self.remainder:
                dp.check_last_batch(f"{n} examples in batches of {batch_size}", self.remainder)
            self.data, self._rows = dp.replicate(arrays), dp.shard_rows

    def batch_spec(self) -> Any:
        """A batch's shapes and dtypes (cutting a real one would compile a program)."""
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((self.batch_size, *a.shape[1:]), a.dtype), self.data
        )

    def first_batch(self) -> Any:
        return data_lib.take(self.data, slice(0, self.batch_size))

    def steps_in_epoch(self) -> int:
        return self.full_batches + (self.remainder > 0)

    def fingerprint(self, seed: int) -> dict[str, Any]:
        """What a backup must agree on to continue this run's batches exactly."""
        return {"examples": self.n, "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": seed}

    def rows(self, epoch: int) -> tuple[jax.Array, jax.Array | None]:
        """The epoch's batch indices: ``(full_batches, batch_size)``, and ``(1, remainder)`` or ``None``."""
        order = data_lib.shuffle_indices(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)
        order = order.astype(np.int32)
        cut = self.full_batches * self.batch_size
        last = self._rows(order[cut:][None]) if self.remainder else None
        return self._rows(order[:cut].reshape(self.full_batches, self.batch_size)), last

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        full, last = self.rows(epoch)
        for i in range(start, self.steps_in_epoch()):
            yield data_lib.take(self.data, full[i] if i < self.full_batches else last[0])


class ProcessShardSource:
    """This process's shard of the arrays in a multi-process run.

    Each process cuts its part of every batch (``batch_size / processes`` rows,
    shuffled by the same ``(seed, epoch)`` permutation of its shard) on the host,
    and the parts form the global batch.
    """

    state = None

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
        self.full_batches, self.remainder = divmod(n, part)
        if self.remainder:
            dp.check_last_batch(
                f"{dp.processes} shards of {n} examples in parts of {part}", self.remainder * dp.processes
            )
        self.data = jax.tree.map(np.asarray, arrays)

    def batch_spec(self) -> Any:
        return data_lib.take(self.data, slice(0, self.batch_size))

    def steps_in_epoch(self) -> int:
        return self.full_batches + (self.remainder > 0)

    def fingerprint(self, seed: int) -> dict[str, Any]:
        return {
            "examples": self.n, "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": seed,
            "processes": self.dp.processes,
        }  # fmt: skip

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        order = data_lib.shuffle_indices(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)
        for begin in range(start * self.batch_size, self.n, self.batch_size):
            yield self.dp.global_batch(data_lib.take(self.data, order[begin : begin + self.batch_size]))


def check_batch(batch: Any) -> tuple:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            f"fit: each batch must be (x, y) or (x, y, sample_weight), got {type(batch).__name__}"
        )
    return tuple(batch)


class StreamSource:
    """An iterable of host batches, placed on the device a few batches ahead (:func:`fnn.data.prefetch`).

    Without ``steps_per_epoch`` an epoch is one pass over the stream. With it,
    one iterator is read on across epochs (as Keras does), so a long or
    repeating stream is not cut to its first batches every epoch; a
    re-iterable read to its end starts a new pass, inside an epoch too.

    With ``keep_state`` (a backup is kept), ``state`` says where the stream
    stands after the last batch handed out, as JSON data a backup stores and
    :meth:`resume` takes back. A *checkpointable* stream, one whose iterator
    has ``get_state()`` and ``set_state(state)`` (a grain ``MapDataset``,
    ``IterDataset`` or ``DataLoader``, or your own class), keeps its
    iterator's state (bytes as base64), so a resumed run continues at the
    exact batch and reads nothing twice. Any other stream keeps how many
    batches of the current pass it has read; a resumed run reads the pass
    again from its start and skips them (exact where the stream yields the
    same batches again, e.g. a list, or a generator made anew).
    """

    def __init__(
        self,
        batches: Iterable,
        steps_per_epoch: int | None,
        dp: DataParallel | None,
        keep_state: bool = False,
    ):
        if isinstance(batches, (np.ndarray, jax.Array, Mapping)):
            raise ValueError(
                "fit: y is missing; pass x and y arrays, or x alone as an iterable of (x, y) batches"
            )
        if steps_per_epoch is not None:
            check_int("fit", "steps_per_epoch", steps_per_epoch)
        self.one_shot = iter(batches) is batches
        self.continues = self.one_shot or steps_per_epoch is not None  # one iterator across epochs
        self.source, self.steps_per_epoch, self.keep_state = batches, steps_per_epoch, keep_state
        self.put = place if dp is None else dp.global_batch
        self.multi_process = dp is not None and dp.multi_process  # every process reads in step: no thread
        self.iterator = iter(batches)
        # Each process reads its own stream, and a backup holds one state: those re-read instead.
        self.checkpointable = _checkpointable(self.iterator) and not self.multi_process
        self.read_in_pass = 0  # batches of the current pass read so far
        self.first = next(self.iterator, None)
        if self.first is None:
            raise ValueError("fit: the iterable of batches is empty")
        self.first = check_batch(self.first)
        self.read_in_pass = 1
        self.spec, self.state = self.first, self._state()
        self.resume_at: Any = None  # a backup's state, applied where the resumed epoch starts reading

    def batch_spec(self) -> Any:
        return self.spec

    def steps_in_epoch(self) -> int | None:
        return self.steps_per_epoch

    def fingerprint(self, seed: int) -> dict[str, Any]:
        # Only where true, so that backups of other streams written before the key existed still match.
        checkpointable = {"checkpointable": True} if self.checkpointable else {}
        return {"steps_per_epoch": self.steps_per_epoch, "seed": seed, **checkpointable}

    def resume(self, state: Any) -> None:
        """Continues after the batch a backup's ``state`` (this source's ``state`` then) was taken at."""
        self.resume_at = state

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        for _, batch in self.chunks(epoch, start):
            yield batch

    def chunks(
        self, epoch: int, start: int = 0, per_call: int = 1, every: int | None = None
    ) -> Iterator[tuple[int, Any]]:
        """The epoch's batches from step ``start`` as placed ``(steps, batch)`` pairs.

        With ``per_call > 1``, up to that many consecutive batches of one shape
        come stacked on a new leading axis of length ``steps``, for one fused
        call; a chunk never crosses a multiple of ``every``, and a batch of
        another shape (a ragged last one) comes alone. The reading, stacking
        and placing run ahead of the device (:func:`fnn.data.prefetch`);
        ``state`` follows the chunks handed out.
        """
        read = self._pairs(start)
        if self.steps_per_epoch is not None:
            read = itertools.islice(read, self.steps_per_epoch - start)
        groups = _stacked(read, start, per_call, every)
        put = lambda group: (group[0], self.put(group[1]), group[2])  # noqa: E731
        steps = 0
        for steps_here, batch, state in (
            map(put, groups) if self.multi_process else data_lib.prefetch(groups, put=put)
        ):
            steps += steps_here
            self.state = state  # the batch is trained before the next is asked for
            yield steps_here, batch
        if steps == 0 and start == 0:
            raise ValueError(
                f"fit: the iterator of batches was exhausted before epoch {epoch}; pass "
                "steps_per_epoch, or a re-iterable (e.g. a list) instead of a generator"
            )

    def _pairs(self, start: int) -> Iterator[tuple[tuple, Any]]:
        """The epoch's ``(batch, state after it)`` pairs from step ``start`` on."""
        at, self.resume_at = self.resume_at, None
        restart = self.continues and not self.one_shot
        if at is not None and (self.continues or start > 0):  # where a backup left the stream
            if "read" not in at:  # an iterator's own state: nothing is read twice
                if not self.one_shot:
                    self.iterator = iter(self.source)
                self.iterator.set_state(_decode_state(at))
                self.first = None
                return self._read(restart)
            return self._again(at["read"], restart)
        if self.first is not None:
            first, self.first = self.first, None
            return itertools.chain([(first, self.state)], self._read(restart))
        if not self.continues:
            self.iterator, self.read_in_pass = iter(self.source), 0
        return self._read(restart) if at is None and start == 0 else self._again(start, restart)

    def _again(self, read: int, restart: bool) -> Iterator[tuple[tuple, Any]]:
        """The pass read again from its start, its first ``read`` batches (already trained on) skipped."""
        if self.one_shot:  # made anew (a rerun): its first batch, read for the shapes, is one of them
            if self.first is not None and read == 0:
                first, self.first = self.first, None
                return itertools.chain([(first, self.state)], self._read(restart))
            self.first, skip = None, read - 1
        else:
            self.first, self.iterator, skip = None, iter(self.source), read
        self.read_in_pass = read
        return self._read(restart, skip)

    def _read(self, restart: bool, skip: int = 0) -> Iterator[tuple[tuple, Any]]:
        """Reads on (in the prefetch thread); with ``restart``, a pass read to its end starts a new one."""
        for _ in range(skip):
            next(self.iterator, None)
        while True:
            read = 0
            for batch in self.iterator:
                read += 1
                self.read_in_pass += 1
                yield check_batch(batch), self._state()
            if not restart or (read == 0 and self.read_in_pass == 0):  # an empty pass: no endless loop
                return
            self.iterator, self.read_in_pass = iter(self.source), 0

    def _state(self) -> Any:
        if not self.keep_state:
            return None
        if self.checkpointable:
            return _encode_state(self.iterator.get_state())
        return {"read": self.read_in_pass}


def _checkpointable(iterator: Any) -> bool:
    return callable(getattr(iterator, "get_state", None)) and callable(getattr(iterator, "set_state", None))


def _encode_state(state: Any) -> dict[str, Any]:
    """An iterator's state as JSON data, copied now (the iterator reads on)."""
    if isinstance(state, bytes):
        return {"iterator_bytes": base64.b64encode(state).decode("ascii")}
    try:
        return {"iterator": json.loads(json.dumps(state))}
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"fit: the stream's get_state() must return JSON data (dicts, lists, numbers, strings) or "
            f"bytes, for a backup to store it; got {type(state).__name__} ({error})"
        ) from None


def _decode_state(state: dict[str, Any]) -> Any:
    if "iterator_bytes" in state:
        return base64.b64decode(state["iterator_bytes"])
    return state["iterator"]


def _stacked(
    batches: Iterator[tuple[Any, Any]], position: int, per_call: int, every: int | None
) -> Iterator[tuple[int, Any, Any]]:
    """``(1, batch, state)``, or ``(k, batches stacked, state)`` for ``k`` consecutive batches of one shape
    (see ``chunks``), from ``(batch, state after it)`` pairs; a chunk's state is its last batch's."""

    def shape(batch: Any) -> Any:
        return jax.tree.structure(batch), [(np.shape(a), np.result_type(a)) for a in jax.tree.leaves(batch)]

    pending: list = []

    def flush() -> Iterator[tuple[int, Any, Any]]:
        if len(pending) == 1:
            yield 1, *pending[0]
        elif pending:
            stacked = jax.tree.map(
                lambda *parts: np.stack([np.asarray(p) for p in parts]), *[b for b, _ in pending]
            )
            yield len(pending), stacked, pending[-1][1]
        pending.clear()

    for batch, state in batches:
        if pending and shape(batch) != shape(pending[0][0]):
            for single in list(pending):  # another shape: what is pending goes one by one
                position += 1
                yield 1, *single
            pending.clear()
        pending.append((batch, state))
        target = per_call if every is None else min(per_call, every - position % every)  # chunk starts here
        if len(pending) >= target:
            position += len(pending)
            yield from flush()
    yield from flush()


def make_sources(
    x: Any, y: Any, sample_weight: Any, class_weight: Mapping[int, float] | None, validation_split: Any,
    validation_data: Any, batch_size: int, shuffle: bool, seed: int, steps_per_epoch: int | None,
    dp: DataParallel | None, keep_state: bool = False,
) -> tuple[ArraySource | ProcessShardSource | StreamSource, tuple | None]:  # fmt: skip
    """The training source and the validation data ``(x, y, sample_weight)`` (or ``None``).

    ``keep_state``: a backup is kept, so a stream says where it stands (:class:`StreamSource`).
    """
    if y is None:
        if validation_split is not None or sample_weight is not None or class_weight is not None:
            raise ValueError(
                "fit: with an iterable of batches, pass validation_data (not validation_split) "
                "and weights inside the batches"
            )
        source: Any = StreamSource(x, steps_per_epoch, dp, keep_state)
    else:
        if validation_split is not None and validation_data is not None:
            raise ValueError("fit: pass validation_split or validation_data, not both")
        if class_weight is not None:
            sample_weight = _weights_of_classes(y, class_weight, sample_weight)
        arrays = (x, y) if sample_weight is None else (x, y, sample_weight)
        n = data_lib.num_examples(arrays, "(x, y, sample_weight)")
        if validation_split is not None:
            arrays, held_out = _split_validation(arrays, validation_split, n)
            validation_data = held_out if sample_weight is not None else (*held_out, None)
            n = data_lib.num_examples(arrays)
        if dp is not None and dp.multi_process:
            source = ProcessShardSource(arrays, n, batch_size, shuffle, seed, dp)
        else:
            source = ArraySource(arrays, n, check_batch_size("fit", batch_size, n), shuffle, seed, dp)
    return source, None if validation_data is None else _unpack_validation(validation_data)


def _split_validation(data: tuple, fraction: Any, n: int) -> tuple[tuple, tuple]:
    if isinstance(fraction, bool) or not isinstance(fraction, (float, int)) or not 0 < fraction < 1:
        raise ValueError(f"fit: validation_split must be a fraction in (0, 1), got {fraction!r}")
    n_val = int(math.floor(n * fraction))
    if not 1 <= n_val < n:
        raise ValueError(f"fit: validation_split={fraction} leaves {n_val} of {n} examples for validation")
    cut = n - n_val  # Keras takes the last examples, before any shuffling
    return data_lib.take(data, slice(0, cut)), data_lib.take(data, slice(cut, n))


def _unpack_validation(validation_data: Any) -> Any:
    if is_stream(validation_data):
        if iter(validation_data) is validation_data:
            raise ValueError(
                "fit: validation_data is a one-shot iterator (e.g. a generator), which the second "
                "epoch would find empty; pass arrays, or an object whose iteration starts over each time"
            )
        return validation_data
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        return tuple(validation_data) if len(validation_data) == 3 else (*validation_data, None)
    raise ValueError(
        "fit: validation_data must be (x, y) or (x, y, sample_weight), or a re-iterable of such batches"
    )


def _weights_of_classes(y: Any, class_weight: Mapping[int, float], sample_weight: Any) -> np.ndarray:
    """Per-example weights ``(n,)``: each label's class weight, times ``sample_weight`` if given."""
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
