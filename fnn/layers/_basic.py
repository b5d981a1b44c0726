"""Stateless, parameter-free layers: Lambda, Identity, Flatten, Reshape, activations."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn import activations, regularizers
from fnn._core import Layer, check_input_dtype, check_name, default_name, make_layer
from fnn._layer_losses import Penalties


def stateless(kind: str, name: str, fn: Callable[[Any], Any], *, floating: bool = False) -> Layer:
    """A layer without params or state that maps a batch ``x`` to ``fn(x)``.

    With ``floating``, ``apply`` first checks that ``x`` is floating point (layers
    that compute: activations, pooling); shape-only layers take any dtype.
    """

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        if floating:
            check_input_dtype(kind, name, x, jnp.floating)
        return fn(x), state

    return make_layer(kind, name, init, apply)


def Lambda(fn: Callable[[Any], Any], *, name: str | None = None) -> Layer:
    """Wraps a pure function of a batch as a layer (no params, no state).

    Args:
        fn: maps a batch ``(batch, ...)`` to a batch; it must keep the batch
            axis and be traceable (no Python side effects).
        name: layer name; ``"lambda"`` by default.

    Examples:
        >>> import jax.numpy as jnp
        >>> total = Lambda(lambda x: jnp.sum(x, axis=-1, keepdims=True), name="total")
        >>> total.apply({}, {}, jnp.ones((2, 3)), train=False)[0]
        Array([[3.],
               [3.]], dtype=float32)
    """
    if not callable(fn):
        raise TypeError(f"Lambda: fn must be callable, got {fn!r}")
    return stateless("Lambda", check_name("Lambda", name or "lambda"), fn)


def Identity(*, name: str | None = None) -> Layer:
    """Returns its input unchanged.

    Examples:
        >>> Identity().apply({}, {}, 1.0, train=False)
        (1.0, {})
    """
    return stateless("Identity", check_name("Identity", name or "identity"), lambda x: x)


def Flatten(*, name: str | None = None) -> Layer:
    """Flattens each example: ``(batch, d1, d2, ...)`` -> ``(batch, d1 * d2 * ...)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> Flatten().apply({}, {}, jnp.ones((2, 3, 4)), train=False)[0].shape
        (2, 12)
    """
    name = check_name("Flatten", name or "flatten")

    def flatten(x: Any) -> jax.Array:
        if jnp.ndim(x) < 1:
            raise ValueError(f"Flatten '{name}' expects inputs with a batch axis, got a scalar")
        return jnp.reshape(x, (jnp.shape(x)[0], -1))

    return stateless("Flatten", name, flatten)


def Reshape(target_shape: Sequence[int], *, name: str | None = None) -> Layer:
    """Reshapes each example to ``target_shape`` (no batch axis; one ``-1`` allowed).

    Args:
        target_shape: the per-example output shape.
        name: layer name; ``"reshape"`` by default.

    Raises:
        ValueError: for a malformed target, or an input whose per-example size
            does not fit it, naming both shapes.

    Examples:
        >>> import jax.numpy as jnp
        >>> Reshape((2, -1)).apply({}, {}, jnp.ones((5, 6)), train=False)[0].shape
        (5, 2, 3)
    """
    name = check_name("Reshape", name or "reshape")
    target = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else (None,)
    if (
        not all(isinstance(d, int) and not isinstance(d, bool) for d in target)
        or any(d < -1 or d == 0 for d in target)
        or target.count(-1) > 1
    ):
        raise ValueError(
            f"Reshape '{name}': target_shape must be a tuple of positive ints with at most one -1, "
            f"got {target_shape!r}"
        )
    known = math.prod(d for d in target if d != -1)

    def reshape(x: Any) -> jax.Array:
        per_example = tuple(jnp.shape(x)[1:])
        size = math.prod(per_example)
        if (size != known) if -1 not in target else (size % known != 0):
            raise ValueError(
                f"Reshape '{name}' cannot reshape per-example shape {per_example} "
                f"({size} elements) to {target}"
            )
        return jnp.reshape(x, (jnp.shape(x)[0], *target))

    return stateless("Reshape", name, reshape)


def Activation(activation: str | activations.Activation, *, name: str | None = None, **kwargs: Any) -> Layer:
    """Applies an activation function, by name or as a function, as a layer.

    Args:
        activation: a name from :data:`fnn.activations.ACTIVATIONS` or a function.
        name: layer name; the activation's name by default.
        **kwargs: keyword arguments of the function (e.g. ``negative_slope``).

    Raises:
        TypeError: for keyword arguments the function does not take.

    Examples:
        >>> import jax.numpy as jnp
        >>> Activation("leaky_relu", negative_slope=0.5).apply(
        ...     {}, {}, jnp.array([[-2.0]]), train=False)[0]
        Array([[-1.]], dtype=float32)
    """
    fn = activations.get(activation)
    label = activation if isinstance(activation, str) else getattr(fn, "__name__", "activation")
    name = check_name("Activation", name or label)
    if kwargs:
        try:
            inspect.signature(fn).bind(None, **kwargs)
        except TypeError as e:
            raise TypeError(
                f"Activation '{name}': {label} does not take {sorted(kwargs)} ({e}); "
                f"its signature is {inspect.signature(fn)}"
            ) from None
    return stateless("Activation", name, lambda x: fn(x, **kwargs), floating=True)


def ActivityRegularization(l1: float = 0.0, l2: float = 0.0, *, name: str | None = None) -> Layer:
    """Passes its input on and adds a penalty on it to the training loss (Keras's layer).

    With ``train=True`` the penalty ``(l1 * sum(abs(x)) + l2 * sum(x ** 2)) /
    batch`` is written to the state (see :func:`fnn.add_loss`), and
    :func:`fnn.fit` adds it to the loss it minimises; with ``train=False``
    the state is returned unchanged.

    Args:
        l1: the L1 factor, a non-negative finite number.
        l2: the L2 factor, a non-negative finite number.
        name: layer name; ``"activity_regularization"`` by default.

    Returns:
        A :class:`~fnn.Layer` without params, with state
        ``{"losses": {"activity_regularizer": ()}}``; output = input.

    Raises:
        ValueError: for a negative, infinite or NaN factor.
        TypeError: in ``apply``, for inputs that are not floating point.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = ActivityRegularization(l2=0.1)
        >>> params, state = layer.init(jax.random.key(0), (2,))
        >>> x = jnp.array([[1.0, 2.0], [3.0, 0.0]])
        >>> y, state = layer.apply(params, state, x, train=True)
        >>> state  # 0.1 * (1 + 4 + 9) / 2 examples
        {'losses': {'activity_regularizer': Array(0.7, dtype=float32)}}
    """
    kind = "ActivityRegularization"
    name = check_name(kind, name or default_name(kind))
    owner = f"{kind} '{name}'"
    penalty = regularizers.l1_l2(regularizers._rate(owner, "l1", l1), regularizers._rate(owner, "l2", l2))
    regularized = Penalties(kind, name, {}, penalty)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, regularized.init({})

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, key
        check_input_dtype(kind, name, x, jnp.floating)
        return x, regularized.apply(state, None, x, train=train)

    return make_layer(kind, name, init, apply)


def _activation_layer(fn_name: str) -> Callable[..., Layer]:
    kind = "".join(part.capitalize() for part in fn_name.split("_"))

    def constructor(*, name: str | None = None, **kwargs: Any) -> Layer:
        return Activation(fn_name, name=name or default_name(kind), **kwargs)

    constructor.__name__ = constructor.__qualname__ = kind
    constructor.__doc__ = (
        f"The ``jax.nn.{fn_name}`` activation as a layer; keyword arguments go to it.\n\n"
        f"Returns:\n    A parameter-free :class:`~fnn.Layer` named ``{default_name(kind)}`` "
        "by default; output shape = input shape (``Glu`` halves the last axis).\n"
    )
    return constructor


Relu = _activation_layer("relu")
Relu6 = _activation_layer("relu6")
Sigmoid = _activation_layer("sigmoid")
Tanh = _activation_layer("tanh")
Softmax = _activation_layer("softmax")
LogSoftmax = _activation_layer("log_softmax")
Gelu = _activation_layer("gelu")
Elu = _activation_layer("elu")
Selu = _activation_layer("selu")
Celu = _activation_layer("celu")
Softplus = _activation_layer("softplus")
SoftSign = _activation_layer("soft_sign")
Silu = _activation_layer("silu")
Swish = _activation_layer("swish")
LeakyRelu = _activation_layer("leaky_relu")
HardTanh = _activation_layer("hard_tanh")
HardSigmoid = _activation_layer("hard_sigmoid")
HardSilu = _activation_layer("hard_silu")
HardSwish = _activation_layer("hard_swish")
LogSigmoid = _activation_layer("log_sigmoid")
Mish = _activation_layer("mish")
Glu = _activation_layer("glu")
SparsePlus = _activation_layer("sparse_plus")
SparseSigmoid = _activation_layer("sparse_sigmoid")
Squareplus = _activation_layer("squareplus")
