"""Data helpers: seeded splits (optionally stratified), shuffling and batching.

Everything runs on the host (NumPy) from an explicit integer ``seed``: the same
seed gives the same split and the same batch order on every machine. Datasets
are pytrees of arrays with the examples on the first axis, e.g. ``(x, y)`` or
``{"image": ..., "label": ...}``.

Example:
    >>> import numpy as np
    >>> from fnn import data
    >>> x, y = np.arange(10.0)[:, None], np.arange(10) % 2
    >>> x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=0)
    >>> x_train.shape, x_test.shape
    ((8, 1), (2, 1))
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from fnn._checks import check_int


def _count(arg: str, size: float | int, n: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise TypeError(f"{arg} must be a fraction in (0, 1) or a count, got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0 < size < 1:
            raise ValueError(f"{arg} as a fraction must be in (0, 1), got {size!r}")
        count = int(round(size * n))
    else:
        count = int(size)
    if not 1 <= count < n:
        raise ValueError(f"{arg}={size!r} gives {count} of {n} examples; it must give between 1 and {n - 1}")
    return count


def _largest_remainder(total: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Integer allocation of ``total`` proportional to ``weights``, within ``capacity``."""
    ideal = total * weights / weights.sum()
    alloc = np.minimum(np.floor(ideal).astype(int), capacity)
    for k in np.argsort(-(ideal - alloc), kind="stable"):
        if alloc.sum() == total:
            break
        if alloc[k] < capacity[k]:
            alloc[k] += 1
    return alloc


def _split_indices(
    n: int, counts: Sequence[int], seed: int, stratify: Any, shuffle: bool
) -> list[np.ndarray]:
    """Index arrays for a train part (the rest) followed by one part per count."""
    rng = np.random.default_rng(seed)
    if stratify is None:
        order = rng.permutation(n) if shuffle else np.arange(n)
        bounds = np.cumsum([n - sum(counts), *counts])[:-1]
        return np.split(order, bounds)
    labels = np.asarray(stratify)
    if labels.shape[:1] != (n,):
        raise ValueError(f"stratify must hold one label per example ({n}), got shape {labels.shape}")
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(inverse.ravel() == k)) for k in range(len(classes))]
    left = np.array([len(m) for m in members])
    sizes = left.astype(float)
    taken = np.zeros_like(left)
    held_out = []
    for count in counts:
        alloc = _largest_remainder(count, sizes, left)
        held_out.append(np.concatenate([m[t : t + a] for m, t, a in zip(members, taken, alloc)]))
        taken, left = taken + alloc, left - alloc
    train = np.concatenate([m[t:] for m, t in zip(members, taken)])
    return [rng.permutation(part) for part in (train, *held_out)]


def _check_arrays(arrays: Sequence[Any]) -> int:
    if not arrays:
        raise ValueError("pass at least one array to split")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"all arrays must have the same number of examples, got lengths {lengths}")
    return lengths[0]


def _take(arrays: Sequence[Any], parts: list[np.ndarray]) -> list[Any]:
    return [np.asarray(a)[idx] if not hasattr(a, "shape") else a[idx] for a in arrays for idx in parts]


def train_test_split(
    *arrays: Any,
    test_size: float | int = 0.25,
    seed: int = 0,
    stratify: Any = None,
    shuffle: bool = True,
) -> list[Any]:
    """Splits arrays (same first axis) into train and test parts.

    Args:
        *arrays: arrays with the examples on the first axis.
        test_size: a fraction in ``(0, 1)`` or a number of examples.
        seed: the split's seed; the same seed gives the same split.
        stratify: labels ``(n,)`` whose class proportions both parts keep.
        shuffle: shuffle before splitting (ignored when stratifying).

    Returns:
        ``[a_train, a_test, b_train, b_test, ...]`` as in scikit-learn.

    Raises:
        ValueError: for arrays of different lengths or sizes that leave a part empty.
    """
    n = _check_arrays(arrays)
    parts = _split_indices(n, [_count("test_size", test_size, n)], seed, stratify, shuffle)
    return _take(arrays, parts)


def train_dev_test_split(
    *arrays: Any,
    dev_size: float | int = 0.15,
    test_size: float | int = 0.15,
    seed: int = 0,
    stratify: Any = None,
) -> list[Any]:
    """Splits arrays into train, dev (validation) and test parts.

    Args:
        *arrays: arrays with the examples on the first axis.
        dev_size: a fraction in ``(0, 1)`` or a number of examples.
        test_size: the same, for the test part.
        seed: the split's seed.
        stratify: labels ``(n,)`` whose class proportions all three parts keep.

    Returns:
        ``[a_train, a_dev, a_test, b_train, b_dev, b_test, ...]``.

    Examples:
        >>> import numpy as np
        >>> y = np.repeat([0, 1, 2], 20)
        >>> y_train, y_dev, y_test = train_dev_test_split(y, dev_size=0.2, test_size=0.2, stratify=y)
        >>> np.bincount(y_dev).tolist(), np.bincount(y_test).tolist()
        ([4, 4, 4], [4, 4, 4])
    """
    n = _check_arrays(arrays)
    counts = [_count("dev_size", dev_size, n), _count("test_size", test_size, n)]
    if sum(counts) >= n:
        raise ValueError(
            f"dev_size and test_size take {sum(counts)} of {n} examples, leaving no training data"
        )
    return _take(arrays, _split_indices(n, counts, seed, stratify, shuffle=True))


# ------------------------------------------------------------------------ labels


def to_categorical(y: Any, num_classes: int | None = None) -> np.ndarray:
    """Keras's ``to_categorical``: integer class labels to one-hot rows, on the host.

    Args:
        y: integer labels of shape ``(n, ...)``; a trailing axis of size 1
            (``(n, 1)``, as Keras) is dropped first.
        num_classes: the number of classes; ``max(y) + 1`` when ``None``.

    Returns:
        A float32 NumPy array of shape ``y.shape + (num_classes,)``.

    Raises:
        TypeError: for labels that are not integers (cast float labels with
            ``y.astype(int)`` once you know they are whole numbers).
        ValueError: for negative labels, or labels ``>= num_classes``, naming the
            first offending one (Keras would give a wrong or an all-zero row).

    Examples:
        >>> to_categorical(np.array([0, 2, 1])).tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    labels = np.asarray(y)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"to_categorical: y must hold integer class labels, got {labels.dtype}; fnn never casts "
            "silently: cast whole-number labels first, e.g. y.astype(np.int32)"
        )
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"to_categorical: labels must be >= 0, got {labels.min()} at index {tuple(int(i) for i in np.unravel_index(labels.argmin(), labels.shape))}"
        )
    if num_classes is None:
        if not labels.size:
            raise ValueError("to_categorical: y is empty, so num_classes must be given")
        num_classes = int(labels.max()) + 1
    num_classes = check_int("to_categorical", "num_classes", num_classes)
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"to_categorical: labels must be < num_classes={num_classes}, got {labels.max()} "
            f"at index {tuple(int(i) for i in np.unravel_index(labels.argmax(), labels.shape))}"
        )
    return (labels[..., None] == np.arange(num_classes)).astype(np.float32)


# ------------------------------------------------------------------------ batching


def num_examples(tree: Any, what: str = "data") -> int:
    """The shared length of the first axis of every array in a pytree.

    Raises:
        ValueError: for an empty tree, scalars, or arrays of different lengths, naming them.

    Examples:
        >>> num_examples({"image": np.zeros((5, 2)), "label": np.zeros(5)})
        5
    """
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    if not leaves:
        raise ValueError(f"{what} holds no arrays")
    lengths = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(f"{what}{jax.tree_util.keystr(path)} is a scalar; arrays need an example axis")
        lengths[jax.tree_util.keystr(path) or "<root>"] = shape[0]
    if len(set(lengths.values())) != 1:
        raise ValueError(f"all arrays in {what} must have the same number of examples, got {lengths}")
    return next(iter(lengths.values()))


def shuffle_indices(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(n)`` for ``(seed, epoch)``: the same on every machine.

    Examples:
        >>> shuffle_indices(5, seed=0, epoch=1).tolist() == shuffle_indices(5, seed=0, epoch=1).tolist()
        True
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def take(tree: Any, indices: Any) -> Any:
    """Rows ``indices`` of every array in a pytree (host or device arrays alike)."""
    return jax.tree.map(lambda a: a[indices], tree)


def batches(
    tree: Any,
    batch_size: int,
    *,
    seed: int | None = None,
    epoch: int = 0,
    drop_remainder: bool = False,
) -> Iterator[Any]:
    """Yields batches (pytrees of the same structure) of an in-memory dataset.

    Args:
        tree: a pytree of arrays with the examples on the first axis, e.g. ``(x, y)``.
        batch_size: examples per batch.
        seed: shuffle with :func:`shuffle_indices` ``(seed, epoch)``; ``None`` keeps the order.
        epoch: the epoch, so each epoch has its own deterministic order.
        drop_remainder: drop the last batch when it is smaller than ``batch_size``.

    Examples:
        >>> x, y = np.arange(10.0), np.arange(10)
        >>> [len(bx) for bx, by in batches((x, y), 4)]
        [4, 4, 2]
    """
    n = num_examples(tree)
    batch_size = check_int("batches", "batch_size", batch_size)
    order = np.arange(n) if seed is None else shuffle_indices(n, seed, epoch)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
        yield take(tree, order[start : start + batch_size])


def prefetch(
    batches: Iterable[Any], size: int = 2, put: Callable[[Any], Any] = jax.device_put
) -> Iterator[Any]:
    """Yields ``put(batch)`` for each batch, reading and placing up to ``size`` batches ahead in a thread.

    While the device runs one step, the next batches are read from ``batches``
    (a generator, a loader) and copied to the device, so a stream of host
    batches keeps the device busy. The order, and so a run's results, do not
    change. An error raised while reading is raised here, at the batch where
    it happened; leaving the loop early stops the reading.

    Args:
        batches: any iterable of batches (pytrees of arrays).
        size: how many placed batches may wait ahead, at least 1.
        put: what places a batch (``jax.device_put``; ``fit`` shards over its mesh).

    Examples:
        >>> import numpy as np
        >>> [int(b.sum()) for b in prefetch(np.ones((3, 2)) * i for i in range(3))]
        [0, 6, 12]
    """
    size = check_int("prefetch", "size", size)
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def hand_over(item: tuple) -> None:
        while not stop.is_set():  # never block for good on a consumer that has left
            try:
                return ready.put(item, timeout=0.05)
            except queue.Full:
                continue

    def read() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                hand_over((True, put(batch)))
        except BaseException as error:  # raised in the consumer, where the batch was due
            hand_over((False, error))
            return
        hand_over((False, None))

    reader = threading.Thread(target=read, daemon=True, name="fnn.data.prefetch")
    reader.start()
    try:
        while True:
            ok, item = ready.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        # The source is free again for the next reader (a one-shot iterator read on by the next
        # epoch); not for good where a live stream's next batch never comes.
        reader.join(timeout=10.0)
