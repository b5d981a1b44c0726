"""Activation functions by name, all from ``jax.nn``.

Example:
    >>> import jax.numpy as jnp
    >>> from fnn import activations
    >>> activations.get("relu")(jnp.array([-1.0, 2.0]))
    Array([0., 2.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnn._checks import resolve

Activation = Callable[..., jax.Array]


def linear(x: jax.typing.ArrayLike) -> jax.Array:
    """The identity activation (Keras's ``"linear"``)."""
    return jnp.asarray(x)


# Every activation jax.nn offers, under its own name, plus Keras's spellings.
ACTIVATIONS: dict[str, Activation] = {
    "linear": linear,
    "identity": linear,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jax.nn.tanh,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "celu": jax.nn.celu,
    "softplus": jax.nn.softplus,
    "soft_sign": jax.nn.soft_sign,
    "softsign": jax.nn.soft_sign,
    "silu": jax.nn.silu,
    "swish": jax.nn.swish,
    "leaky_relu": jax.nn.leaky_relu,
    "hard_tanh": jax.nn.hard_tanh,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_silu": jax.nn.hard_silu,
    "hard_swish": jax.nn.hard_swish,
    "log_sigmoid": jax.nn.log_sigmoid,
    "mish": jax.nn.mish,
    "glu": jax.nn.glu,
    "sparse_plus": jax.nn.sparse_plus,
    "sparse_sigmoid": jax.nn.sparse_sigmoid,
    "squareplus": jax.nn.squareplus,
}


def get(activation: str | Activation | None) -> Activation:
    """Resolves an activation given by name, as a function, or ``None`` (identity).

    Args:
        activation: a name from :data:`ACTIVATIONS` (``"relu"``, ``"gelu"``, ...),
            any callable, or ``None``.

    Returns:
        The activation function.

    Raises:
        ValueError: for an unknown name, listing the known ones.
        TypeError: for anything that is neither a name nor callable.

    Examples:
        >>> get("gelu") is jax.nn.gelu
        True
    """
    if activation is None:
        return linear
    return resolve("activation", ACTIVATIONS, activation)
