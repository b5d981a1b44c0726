"""Mixed precision: a layer computes in bfloat16 or float16 while its params stay float32."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn._core import Layer, Shape, _map_shapes, as_shape, make_layer
from fnn.layers._combinators import _check_layers

# Keras's policy names, and the plain dtype names.
_PRECISIONS = {
    "mixed_bfloat16": jnp.bfloat16,
    "mixed_float16": jnp.float16,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
    "float32": jnp.float32,
    "float64": jnp.float64,
}


def _is_float(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)


def _cast(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype) if _is_float(a) else a, tree)


def _as_built(input_shape: Any) -> Any:
    """Per-example input shapes with narrow floats (bfloat16, float16) as float32.

    A model is built in float32 (or wider) and fnn's layers take inputs of
    their params' dtype only, so MixedPrecision traces the model it wraps (its
    init, its children for summaries, the walk for nested exceptions) with
    narrow inputs widened: it casts them at its boundary when it runs.
    """

    def widen(shape: Shape) -> Shape:
        narrow = jnp.issubdtype(shape.dtype, jnp.floating) and jnp.finfo(shape.dtype).bits < 32
        return Shape(shape, jnp.float32) if narrow else shape

    return _map_shapes(widen, as_shape(input_shape))


def _pinned(layer: Layer, input_shape: Any, prefix: tuple = ()) -> list[tuple]:
    """Param paths of the MixedPrecision layers nested in ``layer``: they keep their own dtype."""
    if layer.children is None:
        return []
    out = []
    for key, child, shape in layer.children(input_shape):
        path = (*prefix, key)
        out += [path] if hasattr(child.apply, "compute_dtype") else _pinned(child, shape, path)
    return out


def _under(path: tuple, prefixes: list[tuple]) -> bool:
    keys = tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path)
    return any(keys[: len(p)] == p for p in prefixes)


def MixedPrecision(layer: Layer, compute_dtype: Any = "bfloat16") -> Layer:
    """Runs a layer in another floating-point precision; its params and state keep their dtype.

    At the layer's boundary, floating params and inputs are cast to
    ``compute_dtype``; floating outputs are cast back to the dtype the inputs
    came in (float32 for integer inputs such as token ids), and the new state
    to the dtype of the state. So wrapping a float32 model in
    ``MixedPrecision(model, "bfloat16")`` gives Keras's ``mixed_bfloat16``
    policy: bfloat16 matmuls and activations, float32 params, optimiser state,
    gradients and loss. Normalisation layers compute their statistics in
    float32 whatever their inputs, as in Keras and Flax. It is the one place
    fnn casts inputs: its model's own layers reject a dtype other than their
    params' (see "Input dtypes" in the layers' API page), while a MixedPrecision
    model takes inputs in its compute dtype or its params' dtype alike, so
    bfloat16 data can be fed as it is, from ``init`` to ``apply``.

    Exceptions by layer nest: a ``MixedPrecision(sublayer, "float32")`` inside
    the model keeps its params float32 (the outer wrapper leaves them alone),
    computes in float32 and hands bfloat16 on to the next layer.

    For float16, whose range is narrow, scale the loss with
    :func:`fnn.optimizers.loss_scale`.

    Args:
        layer: any layer or combinator; name, params and state are unchanged.
        compute_dtype: a floating dtype, or a Keras policy name
            (``"mixed_bfloat16"``, ``"mixed_float16"``).

    Raises:
        ValueError: if ``compute_dtype`` is not a floating dtype.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = MixedPrecision(fnn.Sequential([
        ...     fnn.Dense(8, "relu"),
        ...     MixedPrecision(fnn.LayerNorm(), "float32"),
        ...     fnn.Dense(2)]))
        >>> params, state = model.init(jax.random.key(0), (4,))
        >>> params["dense"]["w"].dtype
        dtype('float32')
        >>> y, _ = model.apply(params, state, jnp.ones((3, 4)), train=False)
        >>> y.dtype
        dtype('float32')
    """
    (layer,) = _check_layers("MixedPrecision", layer.name if isinstance(layer, Layer) else "?", [layer])
    dtype = _PRECISIONS.get(compute_dtype, compute_dtype) if isinstance(compute_dtype, str) else compute_dtype
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"MixedPrecision '{layer.name}': compute_dtype must be a floating dtype or one of "
            f"{list(_PRECISIONS)}, got {compute_dtype!r}"
        )

    def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        floats = [a.dtype for a in jax.tree.leaves(x) if _is_float(a)]
        out_dtype = jnp.result_type(*floats) if floats else jnp.dtype(jnp.float32)
        with jax.ensure_compile_time_eval():  # shapes only: keep the walk out of the traced program
            pinned = _pinned(
                layer, _as_built(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), x))
            )
        params = jax.tree_util.tree_map_with_path(
            lambda path, a: a.astype(dtype) if _is_float(a) and not _under(path, pinned) else a, params
        )
        y, new_state = layer.apply(params, state, _cast(x, dtype), train=train, key=key)
        new_state = jax.tree.map(
            lambda new, old: new.astype(old.dtype) if _is_float(old) else new, new_state, state
        )
        return _cast(y, out_dtype), new_state

    def init(key: jax.Array, input_shape: Any) -> tuple[Any, Any]:
        return layer.init(key, _as_built(input_shape))

    children = None if layer.children is None else lambda input_shape: layer.children(_as_built(input_shape))
    # the wrapped layer's kind: tools (fnn.interop) see through the wrapper, as through its children
    built = make_layer("MixedPrecision", layer.name, init, apply, children)._replace(kind=layer.kind)
    built.apply.compute_dtype = dtype  # how an outer MixedPrecision recognises this one
    return built
