"""Parameter initialisers by name, all from ``jax.nn.initializers``.

An initialiser is ``(key, shape, dtype) -> array``, the ``jax.nn.initializers``
protocol, so any of JAX's own can be passed directly.

Example:
    >>> import jax
    >>> from fnn import initializers
    >>> initializers.get("zeros")(jax.random.key(0), (2,), jax.numpy.float32)
    Array([0., 0.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from fnn._checks import lookup, resolve

Initializer = Callable[..., jax.Array]

_init = jax.nn.initializers

# Names as Keras spells them, plus JAX's aliases; values build the initialiser.
INITIALIZERS: dict[str, Callable[[], Initializer]] = {
    "glorot_uniform": _init.glorot_uniform,
    "glorot_normal": _init.glorot_normal,
    "xavier_uniform": _init.xavier_uniform,
    "xavier_normal": _init.xavier_normal,
    "he_uniform": _init.he_uniform,
    "he_normal": _init.he_normal,
    "kaiming_uniform": _init.kaiming_uniform,
    "kaiming_normal": _init.kaiming_normal,
    "lecun_uniform": _init.lecun_uniform,
    "lecun_normal": _init.lecun_normal,
    "orthogonal": _init.orthogonal,
    "normal": _init.normal,
    "random_normal": _init.normal,
    "uniform": _init.uniform,
    "random_uniform": _init.uniform,
    "truncated_normal": _init.truncated_normal,
    "zeros": lambda: _init.zeros,
    "ones": lambda: _init.ones,
}


def get(initializer: str | Initializer) -> Initializer:
    """Resolves an initialiser given by name or as a ``(key, shape, dtype)`` function.

    Raises:
        ValueError: for an unknown name, listing the known ones.
        TypeError: for anything that is neither a name nor callable.

    Examples:
        >>> w = get("he_normal")(jax.random.key(0), (3, 4), jax.numpy.float32)
        >>> w.shape
        (3, 4)
    """
    if isinstance(initializer, str):
        return lookup("initializer", INITIALIZERS, initializer)()
    return resolve("initializer", {}, initializer)
