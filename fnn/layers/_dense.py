"""Dense (fully connected) layer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn import activations, initializers, regularizers
from fnn._core import Layer, check_input_dtype, check_name, check_positive_int, default_name, make_layer
from fnn._layer_losses import penalties


def Dense(
    units: int,
    activation: str | activations.Activation | None = None,
    *,
    use_bias: bool = True,
    kernel_init: str | initializers.Initializer = "glorot_uniform",
    bias_init: str | initializers.Initializer = "zeros",
    kernel_regularizer: str | regularizers.Regularizer | None = None,
    bias_regularizer: str | regularizers.Regularizer | None = None,
    activity_regularizer: str | regularizers.Regularizer | None = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A fully connected layer ``y = activation(x @ w + b)`` on the last axis.

    Args:
        units: output features, a positive int.
        activation: a name (``"relu"``), a function, or ``None`` for linear.
        use_bias: whether to add the bias ``b``.
        kernel_init: initialiser of ``w``, by name or ``(key, shape, dtype)`` function.
        bias_init: initialiser of ``b``.
        kernel_regularizer: a penalty on ``w`` added to the training loss:
            ``"l1"``, ``"l2"``, ``"l1_l2"`` (Keras's rates), a function from
            :mod:`fnn.regularizers` such as ``l2(1e-4)``, any ``array -> scalar``
            function, or ``None``.
        bias_regularizer: a penalty on ``b``, likewise.
        activity_regularizer: a penalty on the output, divided by the batch
            size (as in Keras), likewise.
        dtype: dtype of the parameters.
        name: layer name; ``"dense"`` by default.

    Returns:
        A :class:`~fnn.Layer` with params ``{"w": (in, units), "b": (units,)}``
        (no ``"b"`` when ``use_bias=False``) and no state; with regularizers,
        the state ``{"losses": {"kernel_regularizer": (), ...}}`` holds the
        penalties of the last ``train=True`` call (see :func:`fnn.add_loss`).
        ``apply`` maps ``(batch, ..., in)`` to ``(batch, ..., units)``.

    Raises:
        ValueError: for bad hyper-parameters (a ``bias_regularizer`` without a
            bias included), and in ``init``/``apply`` for an
            input whose last axis does not match, naming the layer and shapes.
        TypeError: in ``apply``, for inputs whose dtype is not the params' ``dtype``
            (integers included: fnn never casts them silently).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Dense(3, "relu")
        >>> params, state = layer.init(jax.random.key(0), (4,))
        >>> jax.tree.map(jnp.shape, params)
        {'b': (3,), 'w': (4, 3)}
        >>> layer.apply(params, state, jnp.ones((2, 4)), train=False)[0].shape
        (2, 3)
    """
    name = check_name("Dense", name or default_name("Dense"))
    units = check_positive_int("Dense", name, "units", units)
    act = activations.get(activation)
    w_init = initializers.get(kernel_init)
    b_init = initializers.get(bias_init)
    regularized = penalties(
        "Dense",
        name,
        {
            "kernel_regularizer": (kernel_regularizer, lambda p: p["w"]),
            "bias_regularizer": (bias_regularizer, lambda p: p["b"]),
        },
        activity_regularizer,
        use_bias=use_bias,
    )

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        if len(input_shape) < 1:
            raise ValueError(
                f"Dense '{name}' expects a per-example input_shape with a feature axis, "
                f"e.g. (features,), got {tuple(input_shape)}"
            )
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (input_shape[-1], units), dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (units,), dtype)
        return params, regularized.init({})

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del key
        check_input_dtype("Dense", name, x, params["w"].dtype)
        in_features = params["w"].shape[0]
        if jnp.ndim(x) < 2 or jnp.shape(x)[-1] != in_features:
            raise ValueError(
                f"Dense '{name}' expects inputs of shape (batch, ..., {in_features}), "
                f"got shape {tuple(jnp.shape(x))}"
            )
        y = jnp.matmul(x, params["w"])
        if use_bias:
            y = y + params["b"].reshape((1,) * (y.ndim - 1) + (units,))
        y = act(y)
        return y, regularized.apply(state, params, y, train=train)

    return make_layer("Dense", name, init, apply)
