"""Keras's numeric preprocessing layers: Normalization, Discretization, CategoryEncoding,
Rescaling, CenterCrop and Resizing.

fnn layers own nothing, so Keras's ``layer.adapt(data)`` is a pure function here
that returns the layer's state from data on the host: :func:`normalization_state`
and :func:`discretization_state`. Their dicts are both the layer's constructor
arguments and its state, so either build the layer with them::

    norm = fnn.Normalization(**fnn.normalization_state(x_train))

or put them into the state of a model already built
(``state["normalization"] = fnn.normalization_state(x_train)``). The statistics
live in the layer's state, so checkpoints save and restore them with the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_int
from fnn._core import Layer, check_input_dtype, check_name, check_positive_int, default_name, make_layer

# Keras divides by max(sqrt(variance), epsilon) so a constant feature does not give inf.
_EPSILON = 1e-7


# --------------------------------------------------------------------------- adapt helpers


def _batches(fn: str, data: Any) -> Iterator[np.ndarray]:
    """An array (anything with ``.shape``) as one batch, any other iterable as a stream of batches."""
    if hasattr(data, "shape"):
        yield _host_batch(fn, data)
        return
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(
            f"{fn}: data must be an array of examples or an iterable of batches of them, got "
            f"{type(data).__name__}"
        )
    for batch in data:
        yield _host_batch(fn, batch)


def _host_batch(fn: str, batch: Any) -> np.ndarray:
    if isinstance(batch, (tuple, Mapping)):
        raise TypeError(
            f"{fn}: each batch must be one array of features, got a {type(batch).__name__}; "
            "pass the features only, e.g. (x for x, y in batches)"
        )
    array = np.asarray(batch)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{fn}: data must hold integer or floating numbers, got {array.dtype}")
    return array.astype(np.float64)


def _keep_axes(owner: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """Keras's ``axis`` (axes of the batched input kept apart) as sorted positive axes."""
    if axis is None:
        return ()
    axes = (axis,) if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) else axis
    if not isinstance(axes, Sequence) or not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
    ):
        raise TypeError(f"{owner}: axis must be an int, a tuple of ints or None, got {axis!r}")
    kept = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{owner}: axis {a} is out of range for inputs of rank {ndim} (batch axis included)"
            )
        a = int(a) % ndim
        if a == 0:
            raise ValueError(
                f"{owner}: axis {axis!r} names the batch axis of inputs of rank {ndim}; statistics are "
                "per feature: give the inputs a feature axis, e.g. x[:, None], or use axis=None for one "
                "mean and variance over everything"
            )
        kept.append(a)
    if len(set(kept)) != len(kept):
        raise ValueError(f"{owner}: axis {axis!r} repeats an axis")
    return tuple(sorted(kept))


def normalization_state(data: Any, axis: int | Sequence[int] | None = -1) -> dict[str, jax.Array]:
    """Keras's ``Normalization.adapt``: the mean and variance of data, exactly, in one pass.

    Works on an in-memory array or on a stream (any iterable of batches, e.g. a
    generator reading files), merging the batches' statistics with the
    numerically stable update of Chan et al. (in float64 on the host), so the
    result is the mean and (population) variance of all examples together,
    ragged last batch included.

    Args:
        data: an array ``(examples, ...)`` (anything with ``.shape``: NumPy, JAX,
            pandas), or an iterable of such batches of features (not ``(x, y)``
            pairs). Integer data is allowed here; the layer itself takes floats.
        axis: the axes of the batched input that keep their own statistics, as
            in Keras: ``-1`` (one mean per feature), a tuple, or ``None`` (one
            scalar mean and variance). The batch axis 0 cannot be one of them.

    Returns:
        ``{"mean": m, "variance": v}``, float32 arrays shaped like the kept axes
        (``(features,)`` for ``axis=-1``, ``()`` for ``None``): the
        :func:`Normalization` layer's state and constructor arguments.

    Raises:
        TypeError: for data that is neither an array nor an iterable of arrays.
        ValueError: for no examples, batches whose kept axes differ, or NaN/inf
            in the data (missing values must be dropped or imputed first).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 40.0]])
        >>> stats = normalization_state(iter([x[:2], x[2:]]))  # a stream of two batches
        >>> stats["mean"].tolist(), stats["variance"].tolist()
        ([2.0, 20.0], [2.6666667461395264, 200.0])
    """
    fn = "normalization_state"
    count, mean, m2, keep, kept_shape = 0, None, None, None, None
    for batch in _batches(fn, data):
        if keep is None:
            if batch.ndim < 1:
                raise ValueError(f"{fn}: a batch must have a batch axis, got a scalar")
            keep = _keep_axes(fn, axis, batch.ndim)
            kept_shape = tuple(batch.shape[a] for a in keep)
            ndim = batch.ndim
        shape = tuple(batch.shape[a] for a in keep) if batch.ndim == ndim else None
        if shape != kept_shape:
            raise ValueError(
                f"{fn}: every batch must have rank {ndim} and sizes {kept_shape} on axis {axis!r}, got a "
                f"batch of shape {batch.shape}"
            )
        reduce = tuple(a for a in range(ndim) if a not in keep)
        n = int(np.prod([batch.shape[a] for a in reduce]))
        if n == 0:
            continue
        b_mean = batch.mean(axis=reduce, keepdims=True)
        b_m2 = ((batch - b_mean) ** 2).sum(axis=reduce, keepdims=True)
        if mean is None:
            count, mean, m2 = n, b_mean, b_m2
            continue
        # Chan, Golub & LeVeque's pairwise update: no catastrophic cancellation of sum(x^2) - n*mean^2.
        delta = b_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + b_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None:
        raise ValueError(f"{fn}: data holds no examples")
    variance = m2 / count
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(variance))):
        raise ValueError(
            f"{fn}: the data holds NaN or inf, so its statistics would be NaN; drop or impute the "
            "missing values first (e.g. x[~np.isnan(x).any(axis=1)])"
        )
    return {
        "mean": jnp.asarray(mean.reshape(kept_shape), jnp.float32),
        "variance": jnp.asarray(variance.reshape(kept_shape), jnp.float32),
    }


def Normalization(
    axis: int | Sequence[int] | None = -1,
    mean: Any = None,
    variance: Any = None,
    invert: bool = False,
    *,
    name: str | None = None,
) -> Layer:
    """Keras's ``Normalization``: ``(x - mean) / sqrt(variance)`` with statistics in the state.

    Build it with the statistics, given or computed from data by
    :func:`normalization_state` (Keras's ``adapt``)::

        norm = Normalization(**normalization_state(x_train))

    Args:
        axis: the axes of the batched input ``(batch, ...)`` with their own
            mean and variance, as in Keras: ``-1`` per feature, a tuple of axes,
            or ``None`` for one scalar mean and variance. Axis 0 (the batch) is
            refused.
        mean: the mean, a scalar (used for every kept index, as in Keras) or
            an array shaped like the kept axes; required (with ``variance``).
        variance: the variance, likewise; non-negative.
        invert: apply the inverse, ``mean + x * sqrt(variance)`` (to turn
            normalised predictions back into data units).
        name: layer name; ``"normalization"`` by default.

    Returns:
        A :class:`~fnn.Layer` with no params and the state
        ``{"mean": kept, "variance": kept}`` (float32, ``kept`` the sizes of the
        kept axes), which checkpoints save. ``apply`` maps ``(batch, ...)`` to
        the same shape and dtype (any floating dtype) and never changes the
        state, in training too.

    Raises:
        ValueError: at construction for bad ``axis``/statistics; in ``init``
            when no statistics were given (the message names the fix) or their
            shape does not fit the input; in ``apply`` for inputs whose kept
            axes differ from the state's.
        TypeError: in ``apply``, for non-floating inputs.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> x = np.array([[1.0, 10.0], [3.0, 30.0]], np.float32)
        >>> norm = Normalization(**normalization_state(x))
        >>> params, state = norm.init(jax.random.key(0), (2,))
        >>> norm.apply(params, state, jnp.asarray(x), train=False)[0].tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
    """
    kind = "Normalization"
    name = check_name(kind, name or default_name(kind))
    owner = f"{kind} '{name}'"
    _keep_axes(owner, axis, 64)  # type and batch-axis checks now; ranks in init
    if (mean is None) != (variance is None):
        raise ValueError(f"{owner}: pass both mean and variance, or neither, got only one")
    if mean is not None:
        mean = np.asarray(mean, np.float64)
        variance = np.asarray(variance, np.float64)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(variance))):
            raise ValueError(f"{owner}: mean and variance must be finite")
        if np.any(variance < 0):
            raise ValueError(f"{owner}: variance must be non-negative, got min {variance.min()}")
    invert = bool(invert)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key
        if mean is None:
            raise ValueError(
                f"{owner} has no statistics: build it with mean= and variance=, or from data with "
                f"Normalization(**fnn.normalization_state(x_train, axis={axis!r}), axis={axis!r}) "
                "(Keras's adapt)"
            )
        keep = _keep_axes(owner, axis, len(input_shape) + 1)
        kept = tuple(input_shape[a - 1] for a in keep)
        state = {}
        for arg, value in (("mean", mean), ("variance", variance)):
            if value.shape not in ((), kept):
                raise ValueError(
                    f"{owner}: {arg} has shape {value.shape}, but inputs of per-example shape "
                    f"{tuple(input_shape)} need a scalar or shape {kept} (axis={axis!r})"
                )
            state[arg] = jnp.asarray(np.broadcast_to(value, kept), jnp.float32)
        return {}, state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        check_input_dtype(kind, name, x, jnp.floating)
        x = jnp.asarray(x)
        keep = _keep_axes(owner, axis, x.ndim)
        kept = tuple(x.shape[a] for a in keep)
        if kept != state["mean"].shape:
            raise ValueError(
                f"{owner} expects inputs with sizes {state['mean'].shape} on axis {axis!r}, got shape {x.shape}"
            )
        # Reshape the statistics to broadcast against x explicitly (same rank, 1 on reduced axes).
        bshape = tuple(x.shape[a] if a in keep else 1 for a in range(x.ndim))
        m = state["mean"].astype(x.dtype).reshape(bshape)
        std = jnp.maximum(jnp.sqrt(state["variance"].astype(x.dtype)), _EPSILON).reshape(bshape)
        y = m + x * std if invert else (x - m) / std
        return y, state

    return make_layer(kind, name, init, apply)


# --------------------------------------------------------------------------- Discretization


def _summarize(values: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras's quantile summary of one batch: every ``n * epsilon``-th sorted value with its weight."""
    values = np.sort(values.reshape(-1))
    increment = values.size * epsilon
    step = max(increment, 1.0)
    points = values[int(increment) :: int(step)]
    return np.stack([points, np.full_like(points, step)])


def _compress(summary: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras's compression: interpolate the summary at the cumulative-weight fractions ``epsilon, 2 epsilon, ...``."""
    if summary.shape[1] * epsilon < 1:
        return summary
    fractions = epsilon + np.arange(0.0, 1.0, epsilon)
    cum = summary[1].cumsum()
    points = np.interp(fractions, cum / cum[-1], summary[0])
    cum = np.interp(fractions, cum / cum[-1], cum)
    return np.stack([points, np.diff(cum, prepend=0.0)]).astype(np.float32)


def discretization_state(data: Any, num_bins: int, *, epsilon: float = 0.01) -> dict[str, jax.Array]:
    """Keras's ``Discretization.adapt``: ``num_bins - 1`` quantile boundaries of data.

    Uses Keras's algorithm (and so gives Keras's boundaries): each batch is
    reduced to a summary of about ``1/epsilon`` weighted quantiles, summaries
    are merged batch by batch, and the boundaries are interpolated at the
    fractions ``1/num_bins, 2/num_bins, ...``. On an in-memory array they are
    the exact quantiles up to ``epsilon``; on a stream, approximate within it.

    Args:
        data: an array of any shape (all its values count), or an iterable of
            batches of them.
        num_bins: the number of bins, at least 2.
        epsilon: the summary's error tolerance, in ``(0, 1)``.

    Returns:
        ``{"bin_boundaries": (num_bins - 1,)}`` (float32): the
        :func:`Discretization` layer's state and constructor argument.

    Raises:
        ValueError: for bad arguments, fewer values than ``num_bins``, or NaN/inf in the data.

    Examples:
        >>> import numpy as np
        >>> x = np.array([[-1.5, 1.0, 3.4, 0.5], [0.0, 3.0, 1.3, 0.0]])
        >>> bounds = discretization_state(x, num_bins=4)["bin_boundaries"]
        >>> [round(float(b), 4) for b in bounds]  # the 25%, 50% and 75% quantiles
        [0.0, 0.5, 1.3]
    """
    fn = "discretization_state"
    num_bins = check_int(fn, "num_bins", num_bins, low=2)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (float, int)) or not 0 < epsilon < 1:
        raise ValueError(f"{fn}: epsilon must be a number in (0, 1), got {epsilon!r}")
    summary = np.zeros((2, 0), np.float32)
    for batch in _batches(fn, data):
        if not np.all(np.isfinite(batch)):
            raise ValueError(f"{fn}: the data holds NaN or inf; drop or impute the missing values first")
        if batch.size:
            batch_summary = _summarize(batch.astype(np.float32), epsilon)  # float32, as Keras
            merged = np.concatenate([summary, batch_summary], axis=1)
            summary = _compress(merged[:, np.argsort(merged[0], kind="stable")], epsilon)
    final = _compress(summary, 1.0 / num_bins)
    if final.shape[1] != num_bins:
        raise ValueError(
            f"{fn}: {num_bins} bins need at least {num_bins} values, got a summary of {summary.shape[1]}"
        )
    return {"bin_boundaries": jnp.asarray(final[0, :-1], jnp.float32)}


def Discretization(
    bin_boundaries: Any = None, num_bins: int | None = None, *, name: str | None = None
) -> Layer:
    """Keras's ``Discretization``: the bucket index of every value, as ``np.digitize``.

    Boundaries ``[b0, b1, ...]`` make the buckets ``(-inf, b0)``, ``[b0, b1)``,
    ..., ``[b_last, inf)``, numbered 0, 1, ... Give them, or compute them from
    data with :func:`discretization_state` (Keras's ``adapt``)::

        layer = Discretization(**discretization_state(x_train, num_bins=4))

    A NaN input gets bucket ``-1`` (``np.digitize`` would put it silently into
    the last bucket); fnn's ``Embedding`` and :func:`CategoryEncoding` turn
    that id into a row of NaN, so a missing value shows up instead of
    passing as a large one.

    Args:
        bin_boundaries: the non-decreasing, finite boundaries (at least one);
            required.
        num_bins: optional, as in Keras; if given it must equal
            ``len(bin_boundaries) + 1``.
        name: layer name; ``"discretization"`` by default.

    Returns:
        A :class:`~fnn.Layer` with no params and the state
        ``{"bin_boundaries": (num_bins - 1,)}`` (float32). ``apply`` maps
        floating ``(batch, ...)`` inputs to int32 bucket ids of the same shape.

    Raises:
        ValueError: for bad boundaries; in ``init`` when none were given (the
            message names the fix).
        TypeError: in ``apply``, for non-floating inputs.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Discretization([0.0, 1.0, 2.0])
        >>> params, state = layer.init(jax.random.key(0), (3,))
        >>> layer.apply(params, state, jnp.array([[-1.5, 1.0, 3.4]]), train=False)[0].tolist()
        [[0, 2, 3]]
    """
    kind = "Discretization"
    name = check_name(kind, name or default_name(kind))
    owner = f"{kind} '{name}'"
    if num_bins is not None:
        num_bins = check_int(owner, "num_bins", num_bins, low=2)
    if bin_boundaries is not None:
        bounds = np.asarray(bin_boundaries, np.float64)
        if (
            bounds.ndim != 1
            or bounds.size < 1
            or not np.all(np.isfinite(bounds))
            or np.any(np.diff(bounds) < 0)
        ):
            raise ValueError(
                f"{owner}: bin_boundaries must be a non-empty, non-decreasing list of finite numbers, "
                f"got {bin_boundaries!r}"
            )
        if num_bins is not None and num_bins != bounds.size + 1:
            raise ValueError(
                f"{owner}: num_bins={num_bins} disagrees with {bounds.size} bin_boundaries "
                f"(which make {bounds.size + 1} bins)"
            )

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        if bin_boundaries is None:
            bins = num_bins if num_bins is not None else 4
            raise ValueError(
                f"{owner} has no bin_boundaries: pass them, or compute them from data with "
                f"Discretization(**fnn.discretization_state(x_train, num_bins={bins})) (Keras's adapt)"
            )
        return {}, {"bin_boundaries": jnp.asarray(bounds, jnp.float32)}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        check_input_dtype(kind, name, x, jnp.floating)
        x = jnp.asarray(x)
        # Compare in the wider of the two dtypes: the output is an index, so nothing is cast back.
        dtype = jnp.promote_types(x.dtype, state["bin_boundaries"].dtype)
        ids = jnp.searchsorted(state["bin_boundaries"].astype(dtype), x.astype(dtype), side="right")
        return jnp.where(jnp.isnan(x), -1, ids).astype(jnp.int32), state

    return make_layer(kind, name, init, apply)


# --------------------------------------------------------------------------- CategoryEncoding

_ENCODINGS = ("multi_hot", "one_hot", "count")


def CategoryEncoding(
    num_tokens: int, output_mode: str = "multi_hot", *, dtype: Any = jnp.float32, name: str | None = None
) -> Layer:
    """Keras's ``CategoryEncoding``: integer ids to one-hot, multi-hot or count vectors.

    Ids must lie in ``[0, num_tokens)``. Their values cannot be checked under
    ``jit``, and Keras drops out-of-range ids silently; fnn instead makes the
    whole output row of an example with such an id NaN (as ``Embedding``
    does), so a bad id shows up in the loss rather than vanishing.

    Args:
        num_tokens: the number of distinct ids.
        output_mode: ``"multi_hot"`` (1 where an id occurs in the example),
            ``"count"`` (how often), or ``"one_hot"`` (one id per example).
        dtype: the output's floating dtype.
        name: layer name; ``"category_encoding"`` by default.

    Returns:
        A :class:`~fnn.Layer` without params or state. ``apply`` maps integer
        ids ``(batch,)`` or ``(batch, ids)`` (``(batch, 1)`` for
        ``"one_hot"``) to ``(batch, num_tokens)``.

    Raises:
        ValueError: for bad hyper-parameters, or in ``apply`` for inputs of
            another rank.
        TypeError: in ``apply``, for non-integer inputs (floats and bools included).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = CategoryEncoding(4, "count")
        >>> layer.apply({}, {}, jnp.array([[0, 1, 1], [3, 3, 0]]), train=False)[0].tolist()
        [[1.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 2.0]]
    """
    kind = "CategoryEncoding"
    name = check_name(kind, name or default_name(kind))
    num_tokens = check_positive_int(kind, name, "num_tokens", num_tokens)
    if output_mode not in _ENCODINGS:
        raise ValueError(f"{kind} '{name}': output_mode must be one of {_ENCODINGS}, got {output_mode!r}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{kind} '{name}': dtype must be floating, got {jnp.dtype(dtype)}")

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        check_input_dtype(kind, name, x, jnp.integer)
        ids = jnp.asarray(x)
        ok_rank = ids.ndim == 1 or (ids.ndim == 2 and (output_mode != "one_hot" or ids.shape[1] == 1))
        if not ok_rank:
            want = "(batch,) or (batch, 1)" if output_mode == "one_hot" else "(batch,) or (batch, ids)"
            raise ValueError(
                f"{kind} '{name}' with output_mode={output_mode!r} expects ids of shape {want}, got "
                f"{ids.shape}" + ("; use 'multi_hot' or 'count' for several ids" if ids.ndim == 2 else "")
            )
        ids = ids.reshape(ids.shape[0], -1)
        valid = (ids >= 0) & (ids < num_tokens)
        # Out-of-range ids go to index num_tokens, which mode="drop" drops; their rows become NaN below.
        safe = jnp.where(valid, ids, num_tokens)
        rows = jnp.broadcast_to(jnp.arange(ids.shape[0])[:, None], ids.shape)
        counts = jnp.zeros((ids.shape[0], num_tokens), dtype).at[rows, safe].add(1, mode="drop")
        if output_mode == "multi_hot":
            counts = jnp.minimum(counts, 1)
        out = jnp.where(jnp.all(valid, axis=1)[:, None], counts, jnp.asarray(jnp.nan, dtype))
        return out, state

    return make_layer(kind, name, init, apply)


# --------------------------------------------------------------------------- images


def _check_number(owner: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {arg} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{owner}: {arg} must be finite, got {value!r}")
    return float(value)


def Rescaling(scale: float, offset: float = 0.0, *, name: str | None = None) -> Layer:
    """Keras's ``Rescaling``: ``x * scale + offset``, e.g. pixels from ``[0, 255]`` to ``[0, 1]``.

    Args:
        scale: the factor, a number (``1 / 255``, or ``1 / 127.5`` with
            ``offset=-1`` for ``[-1, 1]``).
        offset: added after scaling.
        name: layer name; ``"rescaling"`` by default.

    Returns:
        A :class:`~fnn.Layer` without params or state; ``apply`` keeps the
        shape and the (floating) dtype of its input.

    Raises:
        TypeError: for a non-numeric scale or offset, and in ``apply`` for
            non-floating inputs (cast ``uint8`` images first:
            ``x.astype(jnp.float32)``).

    Examples:
        >>> import jax.numpy as jnp
        >>> Rescaling(1 / 255).apply({}, {}, jnp.array([[0.0, 255.0]]), train=False)[0].tolist()
        [[0.0, 1.0]]
    """
    kind = "Rescaling"
    name = check_name(kind, name or default_name(kind))
    scale = _check_number(f"{kind} '{name}'", "scale", scale)
    offset = _check_number(f"{kind} '{name}'", "offset", offset)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        check_input_dtype(kind, name, x, jnp.floating)
        return x * scale + offset, state  # Python floats are weakly typed: x keeps its dtype

    return make_layer(kind, name, init, apply)


def _check_images(kind: str, name: str, x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{kind} '{name}' expects images of shape (batch, height, width, channels), got {x.shape}"
        )
    return x


def CenterCrop(height: int, width: int, *, name: str | None = None) -> Layer:
    """Keras's ``CenterCrop``: the central ``height x width`` window of each image.

    The window starts at ``((H - height) // 2, (W - width) // 2)``, as in
    Keras. An image smaller than the window is an error (Keras resizes it
    silently); use :func:`Resizing` with ``crop_to_aspect_ratio=True`` for that.

    Args:
        height: output height.
        width: output width.
        name: layer name; ``"center_crop"`` by default.

    Returns:
        A :class:`~fnn.Layer` without params or state: ``(batch, H, W, C)`` to
        ``(batch, height, width, C)``, any dtype.

    Raises:
        ValueError: for bad sizes, inputs that are not NHWC or smaller than the window.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.arange(16).reshape(1, 4, 4, 1)
        >>> CenterCrop(2, 2).apply({}, {}, x, train=False)[0][0, :, :, 0].tolist()
        [[5, 6], [9, 10]]
    """
    kind = "CenterCrop"
    name = check_name(kind, name or default_name(kind))
    height = check_positive_int(kind, name, "height", height)
    width = check_positive_int(kind, name, "width", width)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        x = _check_images(kind, name, x)
        h, w = x.shape[1:3]
        if h < height or w < width:
            raise ValueError(
                f"{kind} '{name}' crops {height}x{width} but got images of {h}x{w} (shape {x.shape}); "
                f"to enlarge them use Resizing({height}, {width}, crop_to_aspect_ratio=True)"
            )
        top, left = (h - height) // 2, (w - width) // 2
        return x[:, top : top + height, left : left + width, :], state

    return make_layer(kind, name, init, apply)


_METHODS = {
    "bilinear": "linear",
    "nearest": "nearest",
    "bicubic": "cubic",
    "lanczos3": "lanczos3",
    "lanczos5": "lanczos5",
}


def Resizing(
    height: int,
    width: int,
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    *,
    antialias: bool = False,
    name: str | None = None,
) -> Layer:
    """Keras's ``Resizing``: images resized to ``height x width`` with ``jax.image.resize``.

    Sampling uses half-pixel centres (as Keras and ``tf.image.resize``). With
    ``crop_to_aspect_ratio=True``, the largest central window of the target
    aspect ratio is cut out first (Keras's rule), so nothing is stretched.

    Args:
        height: output height.
        width: output width.
        interpolation: ``"bilinear"``, ``"nearest"``, ``"bicubic"``,
            ``"lanczos3"`` or ``"lanczos5"``.
        crop_to_aspect_ratio: crop to the target aspect ratio before resizing.
        antialias: low-pass filter when downsampling (Keras's ``antialias``,
            off by default as there).
        name: layer name; ``"resizing"`` by default.

    Returns:
        A :class:`~fnn.Layer` without params or state: ``(batch, H, W, C)`` to
        ``(batch, height, width, C)`` in the input's dtype. Floating inputs
        only, except for ``"nearest"``, which only picks pixels.

    Raises:
        ValueError: for bad hyper-parameters or inputs that are not NHWC.
        TypeError: in ``apply``, for non-floating inputs when interpolating.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((2, 4, 6, 3))
        >>> Resizing(2, 2, crop_to_aspect_ratio=True).apply({}, {}, x, train=False)[0].shape
        (2, 2, 2, 3)
    """
    kind = "Resizing"
    name = check_name(kind, name or default_name(kind))
    height = check_positive_int(kind, name, "height", height)
    width = check_positive_int(kind, name, "width", width)
    if interpolation not in _METHODS:
        raise ValueError(
            f"{kind} '{name}': interpolation must be one of {tuple(_METHODS)}, got {interpolation!r}"
        )
    method = _METHODS[interpolation]

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        if interpolation != "nearest":
            check_input_dtype(kind, name, x, jnp.floating)
        x = _check_images(kind, name, x)
        if crop_to_aspect_ratio:
            h, w = x.shape[1:3]
            crop_h = max(min(h, int(w * height / width)), 1)
            crop_w = max(min(w, int(h * width / height)), 1)
            top, left = (h - crop_h) // 2, (w - crop_w) // 2
            x = x[:, top : top + crop_h, left : left + crop_w, :]
        shape = (x.shape[0], height, width, x.shape[3])
        return jax.image.resize(x, shape, method=method, antialias=antialias), state

    return make_layer(kind, name, init, apply)
