"""Loss terms a layer adds to training (Keras's ``add_loss`` and regularizers), kept in its state.

A layer adds a term by returning it in its state under the reserved key
``"losses"``: a dict ``{term name: scalar}``. ``init`` creates the entries with
zeros, so the state's structure never changes (contract rule 4); ``apply`` with
``train=True`` writes the terms of that call, and with ``train=False`` returns
the state unchanged (rule 3). Combinators keep their children's states, so
:func:`collected_losses` finds every term of a model by walking its state, and
the train step adds their sum to the loss it differentiates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fnn import regularizers
from fnn._core import path_str

State = dict[str, Any]

LOSSES = "losses"  # the reserved state key


def _is_losses_key(entry: Any) -> bool:
    return isinstance(entry, jax.tree_util.DictKey) and entry.key == LOSSES


def add_loss(state: Mapping[str, Any], name: str, value: Any) -> State:
    """Returns ``state`` with the loss term ``name`` set to ``value`` (Keras's ``layer.add_loss``).

    A custom layer calls it twice: in ``init`` with ``0.0``, to create the
    entry (a layer's state keeps one structure), and in ``apply`` with the
    term's value when ``train=True``. With ``train=False`` it returns its state
    unchanged, as every layer does, so evaluation losses are the data loss alone.
    :func:`fnn.make_train_step` and :func:`fnn.fit` add every term to the loss
    they minimise and log their sum as ``"regularization_loss"``.

    Args:
        state: the layer's state dict; the terms live in ``state["losses"]``.
        name: the term's name (no ``/``), e.g. ``"kernel_regularizer"``.
        value: a floating scalar (shape ``()``). It is stored in the dtype of
            the entry ``init`` created (float32 for a new entry), so a term
            computed in bfloat16 or float64 leaves the state's dtypes as they were.

    Returns:
        A new state dict; ``state`` itself is not changed.

    Raises:
        TypeError: if ``state`` or ``state["losses"]`` is not a dict, or
            ``value`` is not floating point.
        ValueError: for a bad ``name`` or a ``value`` that is not a scalar.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> def Penalised(rate=0.1, name="penalised"):
        ...     def init(key, input_shape):
        ...         return {"s": jnp.ones(())}, fnn.add_loss({}, "penalty", 0.0)
        ...     def apply(params, state, x, *, train, key=None):
        ...         if train:
        ...             state = fnn.add_loss(state, "penalty", rate * params["s"] ** 2)
        ...         return x * params["s"], state
        ...     return fnn.Layer(init, apply, name)
        >>> model = fnn.Sequential([fnn.Dense(2), Penalised()])
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> _, state = model.apply(params, state, jnp.ones((4, 3)), train=True)
        >>> fnn.collected_losses(state)
        {'penalised/penalty': Array(0.1, dtype=float32)}
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"fnn.add_loss: state must be a layer's state dict, got {type(state).__name__}")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"fnn.add_loss: name must be a non-empty string without '/', got {name!r}")
    terms = state.get(LOSSES, {})
    if not isinstance(terms, Mapping):
        raise TypeError(
            f"fnn.add_loss: state[{LOSSES!r}] is reserved for loss terms (a dict of scalars), "
            f"got {type(terms).__name__}"
        )
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(f"fnn.add_loss: the loss term {name!r} must be a scalar, got shape {value.shape}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"fnn.add_loss: the loss term {name!r} must be floating point, got {value.dtype}")
    old = terms.get(name)
    dtype = jnp.float32 if old is None else jnp.result_type(old)
    return {**state, LOSSES: {**terms, name: value.astype(dtype)}}


def collected_losses(state: Any) -> dict[str, jax.Array]:
    """Every loss term in a model's state, keyed by its path (``"dense_1/kernel_regularizer"``).

    Args:
        state: a model's state pytree (a combinator's holds its children's).

    Returns:
        ``{path: scalar}``, empty for a model without terms. After a training
        step the values are those of that step; ``init`` gives zeros.

    Raises:
        ValueError: if a ``"losses"`` entry holds something other than scalars
            (the key is reserved for loss terms).

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Sequential([fnn.Dense(4, kernel_regularizer="l2"), fnn.Dense(1)])
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> fnn.collected_losses(state)
        {'dense/kernel_regularizer': Array(0., dtype=float32)}
    """
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if any(_is_losses_key(entry) for entry in path[:-1]):
            where = path_str(path)
            if len(path) < 2 or not _is_losses_key(path[-2]) or jnp.shape(leaf) != ():
                raise ValueError(
                    f"state key {LOSSES!r} is reserved for loss terms (a dict of scalars), but the state "
                    f"holds {where} of shape {jnp.shape(leaf)}; rename the layer or state entry called "
                    f"{LOSSES!r}"
                )
            out[path_str((*path[:-2], path[-1]))] = leaf
    return out


def zeroed_losses(state: Any) -> Any:
    """``state`` with every loss term set to zero (same dtypes).

    The train step applies the model to this, so the terms it sums are those
    of the call: a layer that writes none (one under :func:`fnn.InferenceMode`)
    counts zero, not the value an earlier step left in the state.
    """

    def zero(path: Any, leaf: Any) -> Any:
        return jnp.zeros_like(leaf) if len(path) >= 2 and _is_losses_key(path[-2]) else leaf

    return jax.tree_util.tree_map_with_path(zero, state)


def add_regularization(
    value: jax.Array, logs: dict[str, Any], state: Any
) -> tuple[jax.Array, dict[str, Any]]:
    """The training loss and logs with the loss terms in ``state`` (after ``apply`` with ``train=True``).

    Keras's ``loss`` is what is minimised, so ``value`` and ``logs["loss"]``
    become data loss + the sum of the terms, and the sum is logged as
    ``"regularization_loss"``. Without terms both come back unchanged, so the
    logs of a model without regularizers do not change.
    """
    terms = collected_losses(state)
    if not terms:
        return value, logs
    dtype = jnp.result_type(value)  # the data loss's: a float64 model sums in float64
    penalty = sum((t.astype(dtype) for t in terms.values()), jnp.zeros((), dtype))
    total = value + penalty
    return total, {**logs, "loss": total, "regularization_loss": penalty}


# ----------------------------------------------------------------------- layers' side


@dataclasses.dataclass(frozen=True)
class Penalties:
    """A layer's resolved regularizers: which terms it adds and how it computes them.

    Attributes:
        kind: the layer's kind, for errors (``"Dense"``).
        name: the layer's name, for errors.
        weights: ``{argument name: (penalty, params -> array)}``, e.g.
            ``{"kernel_regularizer": (l2, lambda p: p["w"])}``.
        activity: the penalty on the layer's output, or ``None``.
    """

    kind: str
    name: str
    weights: Mapping[str, tuple[regularizers.Regularizer, Callable[[Any], jax.Array]]]
    activity: regularizers.Regularizer | None = None

    @property
    def terms(self) -> list[str]:
        return [*self.weights, *(["activity_regularizer"] if self.activity is not None else [])]

    def init(self, state: State) -> State:
        """``state`` with a zero entry per term; unchanged for a layer without regularizers."""
        for term in self.terms:
            state = add_loss(state, term, jnp.zeros((), jnp.float32))
        return state

    def apply(self, state: State, params: Any, y: Any, *, train: bool) -> State:
        """``state`` with this call's terms when ``train``; else ``state`` unchanged."""
        if not train:
            return state
        for term, (penalty, param) in self.weights.items():
            state = add_loss(state, term, self._scalar(term, penalty(param(params))))
        if self.activity is not None:
            value = self._scalar("activity_regularizer", self.activity(y))
            # Keras divides by the batch size, so the weight of activity and weight penalties
            # does not change with it; max(.., 1): an empty batch gives 0, as Keras's divide_no_nan.
            state = add_loss(state, "activity_regularizer", value / max(jnp.shape(y)[0], 1))
        return state

    def _scalar(self, term: str, value: Any) -> jax.Array:
        value = jnp.asarray(value)
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
            raise ValueError(
                f"{self.kind} '{self.name}': {term} must return a floating scalar, got {value.dtype} "
                f"of shape {value.shape}"
            )
        return value


def resolve_regularizer(kind: str, name: str, arg: str, spec: Any) -> regularizers.Regularizer | None:
    """:func:`fnn.regularizers.get`, with errors that name the layer and the argument."""
    try:
        return regularizers.get(spec)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{kind} '{name}': {arg}: {e}") from None


def penalties(
    kind: str,
    name: str,
    weights: Mapping[str, tuple[Any, Callable[[Any], jax.Array]]],
    activity: Any = None,
    *,
    use_bias: bool = True,
) -> Penalties:
    """Resolves a layer's regularizer arguments, in its constructor.

    Args:
        kind: the layer's kind, e.g. ``"Dense"``.
        name: the layer's name.
        weights: ``{argument name: (spec, params -> array)}``; specs that are
            ``None`` add no term.
        activity: the ``activity_regularizer`` spec.
        use_bias: whether the layer has a bias; a ``bias_regularizer`` without
            one is an error (Keras ignores it), never dropped silently.

    Raises:
        ValueError: for a ``bias_regularizer`` on a layer without a bias, and
            (as :func:`fnn.regularizers.get`) unknown names.
        TypeError: for specs that are neither names, functions nor ``None``.
    """
    if weights.get("bias_regularizer", (None,))[0] is not None and not use_bias:
        raise ValueError(
            f"{kind} '{name}': bias_regularizer given, but use_bias=False leaves no bias to penalise"
        )
    resolved = {}
    for arg, (spec, param) in weights.items():
        penalty = resolve_regularizer(kind, name, arg, spec)
        if penalty is not None:
            resolved[arg] = (penalty, param)
    return Penalties(kind, name, resolved, resolve_regularizer(kind, name, "activity_regularizer", activity))
