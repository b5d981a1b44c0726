"""Combinators: layers built from layers (Sequential, Parallel, FanOut, FanIn*, Residual, Repeat).

They keep their children's params and state in dicts keyed by the children's
names made unique (``dense``, ``dense_1``, ...), give child ``i`` the key
``fold_in(key, i)``, run it under ``jax.named_scope`` and add the child's index,
name and input shape to any exception that passes through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn._core import (
    Layer,
    apply_shape,
    as_shape,
    batched_struct,
    check_name,
    check_positive_int,
    default_name,
    make_layer,
    output_shape,
    shape_of,
    unique_names,
)
from fnn.layers._basic import stateless


@contextlib.contextmanager
def _child(kind: str, name: str, index: int, key: str, input_shape: Any) -> Iterator[None]:
    try:
        with jax.named_scope(key):
            yield
    except Exception as e:
        e.add_note(f"  in {kind} '{name}', child {index} '{key}' with per-example input shape {input_shape}")
        raise


def _child_key(key: jax.Array | None, index: int) -> jax.Array | None:
    # fold_in (not split) so appending a child never changes the others' randomness.
    return None if key is None else jax.random.fold_in(key, index)


def _check_layers(kind: str, name: str, layers: Sequence[Layer]) -> tuple[Layer, ...]:
    if isinstance(layers, Layer) or not isinstance(layers, Sequence) or not layers:
        raise TypeError(f"{kind} '{name}' expects a non-empty list of layers, got {layers!r}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{kind} '{name}': item {i} is not a Layer but {type(layer).__name__} "
                f"({layer!r}); did you forget to call a constructor, e.g. Relu()?"
            )
    return tuple(layers)


def _check_children(kind: str, name: str, what: str, keys: Sequence[str], tree: Any) -> None:
    if not isinstance(tree, dict) or set(tree) != set(keys):
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"{kind} '{name}' expects {what} with one entry per child {list(keys)}, got {got}")


def Sequential(layers: Sequence[Layer], *, name: str | None = None) -> Layer:
    """Chains layers: the output of each is the input of the next.

    Args:
        layers: a non-empty list of layers.
        name: layer name; ``"sequential"`` by default.

    Returns:
        A :class:`~fnn.Layer` whose params and state are dicts keyed by the
        children's unique names (``{"dense": ..., "relu": ..., "dense_1": ...}``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fnn
        >>> model = Sequential([fnn.Dense(8), fnn.Relu(), fnn.Dense(2)])
        >>> params, state = model.init(jax.random.key(0), (4,))
        >>> list(params)
        ['dense', 'relu', 'dense_1']
        >>> model.apply(params, state, jnp.ones((5, 4)), train=False)[0].shape
        (5, 2)
    """
    kind = "Sequential"
    name = check_name(kind, name or default_name(kind))
    layers = _check_layers(kind, name, layers)
    keys = unique_names([layer.name for layer in layers])

    def children(input_shape: Any) -> list[tuple[str, Layer, Any]]:
        out, shape = [], as_shape(input_shape)
        for i, (k, layer) in enumerate(zip(keys, layers)):
            out.append((k, layer, shape))
            with _child(kind, name, i, k, shape):
                shape = output_shape(layer, shape)
        return out

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        params, state, shape = {}, {}, as_shape(input_shape)
        for i, (k, layer) in enumerate(zip(keys, layers)):
            with _child(kind, name, i, k, shape):
                params[k], state[k] = layer.init(jax.random.fold_in(key, i), shape)
                shape = apply_shape(layer, params[k], state[k], shape)
        return params, state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        _check_children(kind, name, "params", keys, params)
        _check_children(kind, name, "state", keys, state)
        new_state = {}
        for i, (k, layer) in enumerate(zip(keys, layers)):
            with _child(kind, name, i, k, shape_of(x)):
                x, new_state[k] = layer.apply(params[k], state[k], x, train=train, key=_child_key(key, i))
        return x, new_state

    return make_layer(kind, name, init, apply, children)


def _split_inputs(kind: str, name: str, inputs: Any, n: int, what: str) -> tuple:
    if not isinstance(inputs, (tuple, list)) or len(inputs) != n:
        got = f"{len(inputs)} items" if isinstance(inputs, (tuple, list)) else repr(inputs)
        raise ValueError(f"{kind} '{name}' expects a tuple of {n} {what} (one per branch), got {got}")
    return tuple(inputs)


def Parallel(layers: Sequence[Layer], *, name: str | None = None) -> Layer:
    """Applies layer ``i`` to input ``i`` of a tuple; returns the tuple of outputs.

    Combine with :func:`FanOut` and :func:`FanInConcat`/:func:`FanInSum` for
    branching models.

    Args:
        layers: one layer per branch.
        name: layer name; ``"parallel"`` by default.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fnn
        >>> branches = Sequential([FanOut(2), Parallel([fnn.Dense(3), fnn.Dense(5)]), FanInConcat()])
        >>> fnn.output_shape(branches, (4,))
        (8,)
    """
    kind = "Parallel"
    name = check_name(kind, name or default_name(kind))
    layers = _check_layers(kind, name, layers)
    keys = unique_names([layer.name for layer in layers])

    def children(input_shape: Any) -> list[tuple[str, Layer, Any]]:
        shapes = _split_inputs(kind, name, as_shape(input_shape), len(layers), "input shapes")
        return list(zip(keys, layers, shapes))

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        params, state = {}, {}
        for i, (k, layer, shape) in enumerate(children(input_shape)):
            with _child(kind, name, i, k, shape):
                params[k], state[k] = layer.init(jax.random.fold_in(key, i), shape)
        return params, state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        _check_children(kind, name, "params", keys, params)
        _check_children(kind, name, "state", keys, state)
        xs = _split_inputs(kind, name, x, len(layers), "inputs")
        ys, new_state = [], {}
        for i, (k, layer, xi) in enumerate(zip(keys, layers, xs)):
            with _child(kind, name, i, k, shape_of(xi)):
                yi, new_state[k] = layer.apply(params[k], state[k], xi, train=train, key=_child_key(key, i))
            ys.append(yi)
        return tuple(ys), new_state

    return make_layer(kind, name, init, apply, children)


def FanOut(num: int, *, name: str | None = None) -> Layer:
    """Copies its input into a tuple of ``num`` branches.

    Examples:
        >>> FanOut(2).apply({}, {}, 1.0, train=False)[0]
        (1.0, 1.0)
    """
    name = check_name("FanOut", name or default_name("FanOut"))
    num = check_positive_int("FanOut", name, "num", num)
    return stateless("FanOut", name, lambda x: (x,) * num)


def _check_tuple_of_arrays(kind: str, name: str, xs: Any) -> tuple:
    if not isinstance(xs, (tuple, list)) or not xs:
        raise ValueError(
            f"{kind} '{name}' expects a non-empty tuple of arrays (e.g. from Parallel), "
            f"got {type(xs).__name__}"
        )
    return tuple(xs)


def FanInConcat(axis: int = -1, *, name: str | None = None) -> Layer:
    """Concatenates a tuple of branch outputs along a per-example ``axis``.

    Args:
        axis: per-example axis (``0`` is the first axis after the batch axis;
            negative counts from the end).
        name: layer name; ``"fan_in_concat"`` by default.

    Raises:
        ValueError: when the inputs' shapes differ off ``axis``, naming them.

    Examples:
        >>> import jax.numpy as jnp
        >>> FanInConcat().apply({}, {}, (jnp.ones((2, 3)), jnp.ones((2, 1))), train=False)[0].shape
        (2, 4)
    """
    kind = "FanInConcat"
    name = check_name(kind, name or default_name(kind))
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{kind} '{name}': axis must be an int (a per-example axis), got {axis!r}")

    def concat(xs: Any) -> jax.Array:
        xs = _check_tuple_of_arrays(kind, name, xs)
        shapes = [tuple(jnp.shape(x)) for x in xs]
        ndim = len(shapes[0])
        batch_axis = axis + 1 if axis >= 0 else ndim + axis
        if not 1 <= batch_axis < ndim or any(
            len(s) != ndim
            or s[:batch_axis] + s[batch_axis + 1 :] != shapes[0][:batch_axis] + shapes[0][batch_axis + 1 :]
            for s in shapes
        ):
            raise ValueError(
                f"{kind} '{name}' needs inputs whose shapes agree except on per-example "
                f"axis {axis}; got shapes {shapes}"
            )
        return jnp.concatenate(xs, axis=batch_axis)

    return stateless(kind, name, concat)


def FanInSum(*, name: str | None = None) -> Layer:
    """Adds a tuple of branch outputs of identical shape (nothing is broadcast).

    Examples:
        >>> import jax.numpy as jnp
        >>> FanInSum().apply({}, {}, (jnp.ones((1, 2)), jnp.ones((1, 2))), train=False)[0]
        Array([[2., 2.]], dtype=float32)
    """
    kind = "FanInSum"
    name = check_name(kind, name or default_name(kind))

    def add(xs: Any) -> jax.Array:
        xs = _check_tuple_of_arrays(kind, name, xs)
        shapes = [tuple(jnp.shape(x)) for x in xs]
        if len(set(shapes)) != 1:
            raise ValueError(f"{kind} '{name}' needs inputs of identical shape; got shapes {shapes}")
        return sum(xs[1:], start=xs[0])

    return stateless(kind, name, add)


def Residual(layer: Layer, *, name: str | None = None) -> Layer:
    """A skip connection: ``y = x + layer(x)``; ``layer`` must keep the shape.

    Args:
        layer: the residual branch (often a :func:`Sequential`).
        name: layer name; ``"residual"`` by default.

    Raises:
        ValueError: when the branch changes the shape, naming both shapes.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fnn
        >>> block = Residual(fnn.Dense(4))
        >>> params, state = block.init(jax.random.key(0), (4,))
        >>> list(params)
        ['dense']
    """
    kind = "Residual"
    name = check_name(kind, name or default_name(kind))
    (layer,) = _check_layers(kind, name, [layer])
    key_name = layer.name

    def check_same(x_shape: Any, y_shape: Any) -> None:
        if x_shape != y_shape:
            raise ValueError(
                f"{kind} '{name}' needs its branch '{key_name}' to keep the per-example "
                f"shape {x_shape}, got {y_shape}"
            )

    def children(input_shape: Any) -> list[tuple[str, Layer, Any]]:
        return [(key_name, layer, as_shape(input_shape))]

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        shape = as_shape(input_shape)
        with _child(kind, name, 0, key_name, shape):
            params, state = layer.init(jax.random.fold_in(key, 0), shape)
        check_same(shape, apply_shape(layer, params, state, shape))
        return {key_name: params}, {key_name: state}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        _check_children(kind, name, "params", [key_name], params)
        _check_children(kind, name, "state", [key_name], state)
        with _child(kind, name, 0, key_name, shape_of(x)):
            y, new_state = layer.apply(
                params[key_name], state[key_name], x, train=train, key=_child_key(key, 0)
            )
        check_same(shape_of(x), shape_of(y))
        return x + y, {key_name: new_state}

    return make_layer(kind, name, init, apply, children)


def Repeat(
    layer: Layer, times: int, *, remat: bool | str | Callable = False, name: str | None = None
) -> Layer:
    """``times`` copies of ``layer`` one after another, each with its own params, run by ``lax.scan``.

    The copies are traced and compiled once, whatever ``times`` is: a 32-block
    Transformer compiles about as fast as a 2-block one, where a
    :func:`Sequential` of 32 blocks traces and compiles each
    (``benchmarks/scan_layers.py``). ``layer`` must keep the structure, shapes
    and dtypes of its input (a Transformer block does); a mask passed with the
    input, ``(x, mask)``, goes through every copy.

    Args:
        layer: the block to repeat, e.g. ``TransformerDecoderBlock(4, 256)``.
        times: how many copies.
        remat: recompute each copy's activations in the backward pass instead
            of storing them (``jax.checkpoint``): ``True``, or a policy as for
            :func:`Remat` (``"dots_saveable"`` ...).
        name: layer name; ``"repeat"`` by default.

    Returns:
        A :class:`~fnn.Layer` whose params and state are ``layer``'s with a
        leading axis of ``times`` (copy ``i``'s at index ``i``); copy ``i`` gets
        the key ``fold_in(key, i)``, at init and in training.

    Raises:
        ValueError: for ``times`` that is not a positive int, or (in ``init``
            and ``apply``) a layer that changes its input's shape or dtype.
        TypeError: for a ``layer`` that is not a Layer.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fnn
        >>> deep = Repeat(fnn.Residual(fnn.Dense(8, "gelu")), 12)
        >>> params, state = deep.init(jax.random.key(0), (8,))
        >>> params["dense"]["w"].shape  # 12 copies of the (8, 8) kernel
        (12, 8, 8)
        >>> deep.apply(params, state, jnp.ones((2, 8)), train=False)[0].shape
        (2, 8)
    """
    kind = "Repeat"
    name = check_name(kind, name or default_name(kind))
    (layer,) = _check_layers(kind, name, [layer])
    times = check_positive_int(kind, name, "times", times)
    policy = _remat_policy(kind, name, remat) if remat is not False else None

    def check_kept(x: Any, y: Any) -> None:
        described = [jax.tree.map(lambda a: (jnp.shape(a)[1:], jnp.result_type(a)), t) for t in (x, y)]
        if described[0] != described[1]:
            raise ValueError(
                f"{kind} '{name}' needs '{layer.name}' to keep its input's per-example shapes and dtypes, "
                f"{described[0]}, to repeat it; got {described[1]}"
            )

    def init(key: jax.Array, input_shape: Any) -> tuple[Any, Any]:
        shape = as_shape(input_shape)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(times))
        with _child(kind, name, 0, layer.name, shape):
            params, state = jax.vmap(lambda k: layer.init(k, shape))(keys)
            x = batched_struct(shape)

            def first_copy(params: Any, state: Any, x: Any) -> Any:
                p, s = jax.tree.map(lambda a: a[0], (params, state))
                return layer.apply(p, s, x, train=False)[0]

            check_kept(x, jax.eval_shape(first_copy, params, state, x))
        return params, state

    def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        keys = None if key is None else jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(times))

        def copy(x: Any, per_copy: tuple) -> tuple[Any, Any]:
            p, s, k = per_copy
            y, new_s = layer.apply(p, s, x, train=train, key=k)
            check_kept(x, y)  # at trace time, before lax.scan's own message
            return y, new_s

        if remat is not False:
            copy = jax.checkpoint(copy, policy=policy)
        with _child(kind, name, 0, layer.name, shape_of(x)):
            return jax.lax.scan(copy, x, (params, state, keys))

    return make_layer(kind, name, init, apply)


# jax.checkpoint_policies that need no arguments, by name.
REMAT_POLICIES = (
    "nothing_saveable",
    "everything_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots",
    "checkpoint_dots_with_no_batch_dims",
)


def Remat(layer: Layer, *, policy: str | Callable | None = None) -> Layer:
    """Rematerialises a layer: its activations are recomputed in the backward pass, not stored.

    Trades compute for memory with ``jax.checkpoint``. The result is the same
    layer to everything else: same name, params, state and outputs, and the
    same gradients (only what is kept between the passes changes).

    Args:
        layer: any layer or combinator.
        policy: what may still be saved: a name from :data:`REMAT_POLICIES`
            (``"dots_saveable"`` keeps matrix products, recomputing the cheap
            element-wise work), a ``jax.checkpoint_policies`` function, or
            ``None`` (save nothing).

    Raises:
        ValueError: for an unknown policy name, listing the known ones.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> block = Remat(fnn.Sequential([fnn.Dense(8, "gelu"), fnn.Dense(8)]), policy="dots_saveable")
        >>> params, state = block.init(jax.random.key(0), (8,))
        >>> block.apply(params, state, jnp.ones((2, 8)), train=True)[0].shape
        (2, 8)
    """
    (layer,) = _check_layers("Remat", layer.name if isinstance(layer, Layer) else "?", [layer])
    policy = _remat_policy("Remat", layer.name, policy)

    def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        # train is a Python bool: closed over, so it stays static inside the checkpoint.
        run = jax.checkpoint(lambda p, s, x, k: layer.apply(p, s, x, train=train, key=k), policy=policy)
        return run(params, state, x, key)

    return layer._replace(apply=apply)


def _remat_policy(kind: str, name: str, policy: Any) -> Callable | None:
    """A policy name, a ``jax.checkpoint_policies`` function, or None (and True: None) -> the function."""
    if policy is None or policy is True:
        return None
    if isinstance(policy, str):
        if policy not in REMAT_POLICIES:
            raise ValueError(
                f"{kind} '{name}': unknown policy {policy!r}; choose one of {list(REMAT_POLICIES)}"
            )
        return getattr(jax.checkpoint_policies, policy)
    if not callable(policy):
        raise TypeError(f"{kind} '{name}': policy must be a name, a function or None, got {policy!r}")
    return policy


def InferenceMode(layer: Layer) -> Layer:
    """Runs a layer as in inference even while the model trains: ``train=False`` always.

    For transfer learning, as Keras does for a frozen base model: its
    ``BatchNorm`` layers use (and keep) their running statistics and its
    dropout is off. Freeze its parameters as well with
    :func:`fnn.optimizers.freeze` (they still get gradients here, so that
    fine-tuning can later unfreeze them without rebuilding the model).

    Args:
        layer: any layer; name, params and state are unchanged.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> base = InferenceMode(fnn.Sequential([fnn.Dense(4), fnn.BatchNorm(), fnn.Dropout(0.5)]))
        >>> params, state = base.init(jax.random.key(0), (3,))
        >>> y, new_state = base.apply(params, state, jnp.ones((2, 3)), train=True)  # no key needed
        >>> jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), new_state, state))
        True
    """
    (layer,) = _check_layers("InferenceMode", layer.name if isinstance(layer, Layer) else "?", [layer])

    def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        del train, key
        return layer.apply(params, state, x, train=False)

    # the wrapped layer's kind, so that tools (fnn.interop) still see what it is
    return make_layer("InferenceMode", layer.name, layer.init, apply, layer.children)._replace(
        kind=layer.kind
    )
