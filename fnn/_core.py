"""The Layer contract, shapes, and the helpers every layer and combinator shares.

A layer is a pair of pure functions plus a name::

    params, state = layer.init(key, input_shape)        # input_shape: per example
    y, new_state = layer.apply(params, state, x, train=..., key=...)  # x: (batch, *input_shape)

Params and state are dicts of arrays (``{}`` when empty), so ``jax.jit``,
``jax.grad``, ``optax`` and checkpoints take them as they are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_int

Params = dict[str, Any]
State = dict[str, Any]
PyTree = Any

# Output shapes are computed on a batch of this size; 2 (not 1) so a layer that
# mixes up or squeezes the batch axis is caught by `output_shape`.
_SHAPE_BATCH = 2


class Shape(tuple):
    """A per-example shape (no batch axis) that also carries a dtype.

    It is a plain tuple to any code that ignores the dtype, so custom layers can
    index and slice it; combinators use the dtype to trace the next layer with
    the right input type (integer token ids, say).

    ``Shape(dims, dtype=jnp.float32)``: ``dims`` are the per-example axis sizes,
    ``dtype`` the element type of the inputs.

    Examples:
        >>> s = Shape((28, 28, 1))
        >>> s, s[-1], s.dtype
        ((28, 28, 1), 1, dtype('float32'))
    """

    dtype: np.dtype

    def __new__(cls, dims: Sequence[int], dtype: Any = jnp.float32) -> Shape:
        self = super().__new__(cls, (int(d) for d in dims))
        self.dtype = jnp.dtype(dtype)
        return self


class InitFn(Protocol):
    """``(key, input_shape) -> (params, state)``; pure and traceable."""

    def __call__(self, key: jax.Array, input_shape: Any) -> tuple[Params, State]: ...


class ApplyFn(Protocol):
    """``(params, state, x, *, train, key=None) -> (y, new_state)``."""

    def __call__(
        self, params: Params, state: State, x: Any, *, train: bool, key: jax.Array | None = None
    ) -> tuple[Any, State]: ...


ChildrenFn = Callable[[Any], list[tuple[str, "Layer", Any]]]


class Layer(NamedTuple):
    """A layer: pure ``init`` and ``apply`` functions and a name.

    Attributes:
        init: ``(key, input_shape) -> (params, state)``. ``input_shape`` is per
            example (no batch axis): a tuple of ints or a :class:`Shape`, or a
            tuple of those for layers with several inputs.
        apply: ``(params, state, x, *, train, key=None) -> (y, new_state)`` with
            ``x`` of shape ``(batch, *input_shape)``. ``new_state`` has the
            structure, shapes and dtypes of the init state; with ``train=False``
            it is ``state`` unchanged.
        name: the name that paths (``dense_1/w``), summaries and errors use.
        children: combinators only: ``input_shape -> [(key, child, child_input_shape), ...]``,
            so that tools (summary, graphs, freezing) can walk the tree. ``None``
            for leaf layers; custom layers can leave it out.
        kind: the constructor that built it (``"Dense"``, ``"Conv2D"``), which tools
            such as :mod:`fnn.interop` read to map foreign weights; ``None`` for
            custom layers.

    Examples:
        A custom layer is two inner functions and a return:

        >>> def Scale(name="scale"):
        ...     def init(key, input_shape):
        ...         return {"s": jnp.ones(())}, {}
        ...     def apply(params, state, x, *, train, key=None):
        ...         return x * params["s"], state
        ...     return Layer(init, apply, name)
        >>> layer = Scale()
        >>> params, state = layer.init(jax.random.key(0), (3,))
        >>> y, _ = layer.apply(params, state, jnp.ones((2, 3)), train=False)
        >>> y.shape
        (2, 3)
    """

    init: InitFn
    apply: ApplyFn
    name: str
    children: ChildrenFn | None = None
    kind: str | None = None


# --------------------------------------------------------------------------- shapes


def _is_dims(obj: Any) -> bool:
    return isinstance(obj, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in obj
    )


def as_shape(input_shape: Any) -> Any:
    """Normalises a per-example input shape to :class:`Shape` (or a tuple/dict of them).

    Accepts a tuple of ints, a :class:`Shape`, a per-example
    ``jax.ShapeDtypeStruct``, or a tuple/list/dict of those (multi-input layers).

    Raises:
        TypeError: for anything else, naming what was given.

    Examples:
        >>> as_shape([4]), as_shape(((2,), (3, 1)))
        ((4,), ((2,), (3, 1)))
    """
    if isinstance(input_shape, Shape):
        return input_shape
    if isinstance(input_shape, jax.ShapeDtypeStruct):
        return Shape(input_shape.shape, input_shape.dtype)
    if _is_dims(input_shape):
        return Shape(input_shape)
    if isinstance(input_shape, (tuple, list)):
        return tuple(as_shape(s) for s in input_shape)
    if isinstance(input_shape, Mapping):
        return {k: as_shape(v) for k, v in input_shape.items()}
    raise TypeError(
        "input_shape must be a per-example shape such as (28, 28, 1) (no batch axis), "
        f"or a tuple or dict of them; got {input_shape!r}"
    )


def _map_shapes(fn: Callable[[Shape], Any], shapes: Any) -> Any:
    # Shapes are tuples, so jax.tree.map would walk into them; recurse by hand.
    if isinstance(shapes, Shape):
        return fn(shapes)
    if isinstance(shapes, tuple):
        return tuple(_map_shapes(fn, s) for s in shapes)
    return {k: _map_shapes(fn, v) for k, v in shapes.items()}


def batched_struct(input_shape: Any, batch_size: int = _SHAPE_BATCH) -> Any:
    """``jax.ShapeDtypeStruct`` s for a batch of inputs of a per-example shape."""
    return _map_shapes(lambda s: jax.ShapeDtypeStruct((batch_size, *s), s.dtype), as_shape(input_shape))


def _per_example_shape(struct: Any, batch_size: int) -> Any:
    if isinstance(struct, (tuple, list)):
        return tuple(_per_example_shape(s, batch_size) for s in struct)
    if isinstance(struct, Mapping):
        return {k: _per_example_shape(v, batch_size) for k, v in struct.items()}
    if not struct.shape or struct.shape[0] != batch_size:
        raise ValueError(
            f"a layer changed the batch axis: for a batch of {batch_size} it returned "
            f"shape {tuple(struct.shape)}; layers must keep the leading batch axis"
        )
    return Shape(struct.shape[1:], struct.dtype)


def abstract(tree: PyTree) -> PyTree:
    """Replaces every array of a pytree by its ``jax.ShapeDtypeStruct``."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def abstract_init(layer: Layer, input_shape: Any) -> tuple[PyTree, PyTree]:
    """The params and state a layer would create, as ``jax.ShapeDtypeStruct`` s (no FLOPs)."""
    shape = as_shape(input_shape)
    return jax.eval_shape(lambda key: layer.init(key, shape), jax.random.key(0))


def apply_shape(layer: Layer, params: Params, state: State, input_shape: Any) -> Any:
    """Per-example output shape of ``layer.apply`` for given (possibly traced) params."""
    shape = as_shape(input_shape)

    def run(p: Params, s: State, x: Any) -> Any:
        return layer.apply(p, s, x, train=False)[0]

    out = jax.eval_shape(run, abstract(params), abstract(state), batched_struct(shape))
    return _per_example_shape(out, _SHAPE_BATCH)


def output_shape(layer: Layer, input_shape: Any) -> Any:
    """Per-example output shape of a layer, traced with ``jax.eval_shape`` (no FLOPs).

    Args:
        layer: any :class:`Layer`.
        input_shape: the per-example input shape (no batch axis).

    Returns:
        The per-example output :class:`Shape` (a tuple of them for layers with
        several outputs).

    Examples:
        >>> import fnn
        >>> fnn.output_shape(fnn.Dense(10), (784,))
        (10,)
    """
    shape = as_shape(input_shape)

    def run(key: jax.Array) -> Any:
        params, state = layer.init(key, shape)
        x = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), batched_struct(shape))
        return layer.apply(params, state, x, train=False)[0]

    return _per_example_shape(jax.eval_shape(run, jax.random.key(0)), _SHAPE_BATCH)


def shape_of(x: Any) -> Any:
    """Per-example shapes of an input batch, for error messages."""
    if isinstance(x, (tuple, list)):
        return tuple(shape_of(v) for v in x)
    if isinstance(x, Mapping):
        return {k: shape_of(v) for k, v in x.items()}
    return tuple(jnp.shape(x)[1:])


# --------------------------------------------------------------------------- checks

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def check_name(kind: str, name: Any) -> str:
    """Validates a layer name: paths join names with ``/``, so it must not hold one."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{kind}: name must be a non-empty identifier-like string without '/' "
            f"(letters, digits, '_', '.', '-'), got {name!r}"
        )
    if name == "losses":  # a combinator's state would read as the loss terms of fnn.add_loss
        raise ValueError(f"{kind}: the name 'losses' is reserved for the loss terms in a layer's state")
    return name


def check_train(kind: str, name: str, train: Any) -> None:
    """Raises unless ``train`` is a Python bool (it picks the code path at trace time)."""
    if not isinstance(train, bool):
        raise TypeError(
            f"{kind} '{name}': train must be a Python bool (True or False), got "
            f"{train!r} of type {type(train).__name__}; it selects the code path when "
            "tracing, so pass it as a static value (e.g. mark it static in jax.jit)"
        )


def require_key(kind: str, name: str, key: jax.Array | None) -> jax.Array:
    """Returns ``key`` or raises an error that names the layer and the fix."""
    if key is None:
        raise ValueError(
            f"{kind} '{name}' needs a PRNG key when train=True: call "
            "apply(params, state, x, train=True, key=jax.random.key(seed))"
        )
    return key


def check_positive_int(kind: str, name: str, arg: str, value: Any) -> int:
    """Validates a hyper-parameter that must be a positive int (:func:`fnn._checks.check_int` for a layer)."""
    return check_int(f"{kind} '{name}'", arg, value)


def input_dtype(x: Any) -> np.dtype:
    """The dtype JAX computes ``x`` in (numpy's float64 is float32 unless x64 is on)."""
    dtype = getattr(x, "dtype", None)
    return jnp.dtype(jax.dtypes.canonicalize_dtype(np.asarray(x).dtype if dtype is None else dtype))


def check_input_dtype(kind: str, name: str, x: Any, expected: Any) -> None:
    """Raises a TypeError naming the layer unless the input ``x`` has the dtype it computes in.

    Dtypes are static, so this check runs at trace time under ``jit`` too. fnn
    never casts an input silently: an integer image into a ``Conv2D``, or a
    float64 batch into float32 params, is an error that says how to cast.

    Args:
        kind: the layer's kind, e.g. ``"Dense"``.
        name: the layer's name.
        x: the input array (or a tracer).
        expected: ``jnp.floating`` (any floating dtype, for layers without
            params), ``jnp.integer`` (ids, for ``Embedding``), or the concrete
            dtype of the layer's params, which a floating input must match.

    Raises:
        TypeError: naming the layer, the expected and the actual dtype, and the fix.

    Examples:
        >>> check_input_dtype("Dense", "dense", jnp.ones((2, 3), jnp.int32), jnp.float32)
        Traceback (most recent call last):
        ...
        TypeError: Dense 'dense' expects float32 inputs (the dtype of its params), got int32 of shape (2, 3); ...
    """
    got = input_dtype(x)
    if expected is jnp.integer:
        if not jnp.issubdtype(got, jnp.integer):
            raise TypeError(
                f"{kind} '{name}' expects integer inputs (token ids), got {got} of shape {tuple(jnp.shape(x))}; "
                "fnn never casts inputs silently: cast them first, e.g. x.astype(jnp.int32)"
            )
        return
    any_float = expected is jnp.floating
    want = jnp.dtype(jnp.float32 if any_float else expected)
    if jnp.issubdtype(got, jnp.floating) and (any_float or got == want):
        return
    fix = f"x.astype(jnp.{want.name})"
    if jnp.issubdtype(got, jnp.floating):  # another precision: casting may not be what the user wants
        fix += (
            f", or compute in {got.name} by building the layer with dtype=jnp.{got.name} "
            f"or wrapping the model in fnn.MixedPrecision(model, '{got.name}')"
        )
    what = "floating-point inputs" if any_float else f"{want.name} inputs (the dtype of its params)"
    raise TypeError(
        f"{kind} '{name}' expects {what}, got {got} of shape {tuple(jnp.shape(x))}; "
        f"fnn never casts inputs silently: cast them first, e.g. {fix}"
    )


class _StaticShape:
    """A normalised input shape as a jit static argument.

    A :class:`Shape` hashes as a plain tuple, so two shapes that differ only in
    dtype would share one compiled init; this compares the dtypes too.
    """

    def __init__(self, shape: Any):
        self.shape = shape
        self._token = _shape_token(shape)

    def __hash__(self) -> int:
        return hash(self._token)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _StaticShape) and self._token == other._token


def _shape_token(shape: Any) -> Any:
    if isinstance(shape, Shape):
        return ("shape", tuple(shape), shape.dtype.str)
    if isinstance(shape, tuple):
        return ("tuple", *map(_shape_token, shape))
    return ("dict", *((k, _shape_token(v)) for k, v in shape.items()))


def _key_order(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _key_order(v) for k, v in tree.items()}
    if type(tree) in (list, tuple):
        return type(tree)(map(_key_order, tree))
    return None


def _in_key_order(tree: Any, order: Any) -> Any:
    # jit hands dicts back with sorted keys; params read in layer order.
    if isinstance(tree, dict):
        return {k: _in_key_order(tree[k], sub) for k, sub in order.items()}
    if type(tree) in (list, tuple):
        return type(tree)(_in_key_order(t, o) for t, o in zip(tree, order))
    return tree


def compiled_init(init: InitFn) -> InitFn:
    """``init``, compiled as one program when it is called outside any trace.

    Run eagerly, every random op of an init compiles on its own (two dozen small
    compilations for an LSTM, and a QR for its orthogonal kernel), which made the
    first step of a run twice as slow as hand-written JAX's. The values are
    bitwise those of the eager init. Under a trace (``vmap`` over keys,
    ``eval_shape``, a combinator's init) it runs as written, so a model compiles
    once, at its outermost layer.
    """
    # Filled while tracing, like jit's own cache: the key order of each shape's output.
    key_orders: dict[_StaticShape, Any] = {}

    def traced(key: jax.Array, static: _StaticShape) -> tuple[Params, State]:
        out = init(key, static.shape)
        key_orders[static] = _key_order(out)
        return out

    # LLVM's level 1 compiles random bits a third as long as its default and runs
    # them as fast; an init runs once, so compile time is what counts.
    jitted = jax.jit(traced, static_argnums=1, compiler_options={"xla_backend_optimization_level": 1})

    def init_once(key: jax.Array, input_shape: Any) -> tuple[Params, State]:
        if isinstance(key, jax.core.Tracer):
            return init(key, input_shape)
        try:
            static = _StaticShape(as_shape(input_shape))
        except TypeError:
            return init(key, input_shape)  # the layer's own check names what is wrong
        out = jitted(key, static)
        return _in_key_order(out, key_orders[static])

    return init_once


def make_layer(
    kind: str,
    name: str,
    init: InitFn,
    apply: ApplyFn,
    children: ChildrenFn | None = None,
) -> Layer:
    """Builds a :class:`Layer` whose ``apply`` first checks that ``train`` is a bool
    and whose ``init`` compiles once when called eagerly (see :func:`compiled_init`)."""

    def checked_apply(
        params: Params, state: State, x: Any, *, train: bool, key: jax.Array | None = None
    ) -> tuple[Any, State]:
        check_train(kind, name, train)
        return apply(params, state, x, train=train, key=key)

    return Layer(compiled_init(init), checked_apply, name, children, kind)


def default_name(kind: str) -> str:
    """``LeakyRelu`` -> ``leaky_relu``: the Keras-style default layer name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", kind).lower()


def unique_names(names: Sequence[str]) -> list[str]:
    """Makes names unique in order: ``dense, dense, relu`` -> ``dense, dense_1, relu``."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, i = name, 0
        while candidate in taken:
            i += 1
            candidate = f"{name}_{i}"
        taken.add(candidate)
        out.append(candidate)
    return out


def path_str(path: Sequence[Any]) -> str:
    """A pytree key path as ``dense_1/w``."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def leaf_paths(tree: PyTree) -> list[str]:
    """The path of every leaf of a pytree, as :func:`path_str` writes it."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def path_matches(path: str, pattern: str) -> bool:
    """Whether a parameter path falls under a pattern.

    A pattern is a path prefix made of whole components (``features`` covers
    ``features/conv/w``; ``0`` covers the first child) or a glob
    (``*/conv*/w``, ``dense_?/b``) matched against the whole path or a prefix.
    """
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def select_paths(owner: str, paths: Sequence[str], patterns: str | Sequence[str]) -> set[str]:
    """The paths matching any pattern; a pattern that matches nothing is an error (a typo)."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    chosen = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"{owner}: patterns must be strings, got {pattern!r}")
        hits = {p for p in paths if path_matches(p, pattern)}
        if not hits:
            shown = ", ".join(paths[:12]) + (", ..." if len(paths) > 12 else "")
            raise ValueError(f"{owner}: pattern {pattern!r} matches no parameter; the paths are: {shown}")
        chosen |= hits
    return chosen


def count_params(tree: PyTree) -> tuple[int, int]:
    """``(number of scalars, bytes)`` of the arrays (or structs) in a pytree."""
    leaves = jax.tree.leaves(tree)
    size = sum(math.prod(jnp.shape(a)) for a in leaves)
    nbytes = sum(math.prod(jnp.shape(a)) * jnp.dtype(a.dtype).itemsize for a in leaves)
    return int(size), int(nbytes)


# --------------------------------------------------------------------------- summary


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """One row of :func:`summary`: a layer's path, output shape and sizes."""

    path: str
    depth: int
    output_shape: Any
    params: int
    state: int
    frozen: int = 0
    flops: float | None = None  # per example, XLA's count for the compiled forward pass
    memory: int | None = None  # bytes: the compiled forward pass's arguments, outputs and temporaries


@dataclasses.dataclass(frozen=True)
class Summary:
    """The result of :func:`summary`; ``print`` it for a Keras-style table."""

    name: str
    input_shape: Any
    output_shape: Any
    rows: tuple[SummaryRow, ...]
    params: int
    state: int
    bytes: int
    frozen: int = 0
    cost: bool = False

    def _columns(self) -> tuple[list[str], list[list[Any]]]:
        """The table's header and rows, the optional columns included where they apply."""
        header = ["Layer", "Output shape", "Params", "State"] + ["Frozen"] * bool(self.frozen)
        header += ["FLOPs/example", "Memory (bytes)"] * self.cost
        rows = [
            [r.path, str(r.output_shape), r.params, r.state]
            + [r.frozen] * bool(self.frozen)
            + [int(r.flops or 0), r.memory or 0] * self.cost
            for r in self.rows
        ]
        return header, rows

    def __str__(self) -> str:
        header, rows = self._columns()
        body = [
            ("  " * r.depth + row[0], row[1], *(f"{v:,}" for v in row[2:])) for r, row in zip(self.rows, rows)
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(row: Sequence[str]) -> str:
            left = row[0].ljust(widths[0]) + "  " + row[1].ljust(widths[1])
            right = "  ".join(c.rjust(w) for c, w in zip(row[2:], widths[2:]))
            return left + "  " + right

        rule = "-" * len(line(header))
        return "\n".join(
            [
                f'Model "{self.name}"  input {self.input_shape} -> output {self.output_shape}',
                rule,
                line(header),
                rule,
                *(line(r) for r in body),
                rule,
                f"Trainable params: {self.params - self.frozen:,}",
                *([f"Frozen params:    {self.frozen:,}"] if self.frozen else []),
                f"State entries:    {self.state:,}",
                f"Total bytes:      {self.bytes:,}",
            ]
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """The table as HTML, for notebooks."""
        from fnn import _display

        header, rows = self._columns()
        totals = f"Trainable params: {self.params - self.frozen:,}" + (
            f" · frozen: {self.frozen:,}" if self.frozen else ""
        )
        return _display.block(
            _display.paragraph(
                f'Model "{self.name}": input {self.input_shape} → output {self.output_shape}', bold=True
            ),
            _display.table(header, rows, indents=[r.depth for r in self.rows]),
            _display.paragraph(f"{totals} · state entries: {self.state:,} · total bytes: {self.bytes:,}"),
        )


def forward_cost(layer: Layer, input_shape: Any) -> tuple[float, int]:
    """``(FLOPs, bytes)`` of a layer's compiled forward pass on one example, from XLA's own analyses.

    The FLOPs are XLA's cost analysis of the optimised program (a multiply-add
    counts 2); the bytes are its memory analysis: arguments (params, state,
    input), outputs and temporaries. Compiles the layer; computes nothing.
    """
    params, state = abstract_init(layer, input_shape)
    compiled = (
        jax.jit(lambda p, s, x: layer.apply(p, s, x, train=False)[0])
        .lower(params, state, batched_struct(input_shape, 1))
        .compile()
    )
    costs = compiled.cost_analysis()
    costs = costs[0] if isinstance(costs, (list, tuple)) else costs  # one entry per program in older JAX
    memory = compiled.memory_analysis()
    held = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    return float(costs.get("flops", 0.0)), int(held)


def _summary_rows(layer: Layer, input_shape: Any, path: str, depth: int, cost: bool) -> list[SummaryRow]:
    params, state = abstract_init(layer, input_shape)
    flops, memory = forward_cost(layer, input_shape) if cost else (None, None)
    row = SummaryRow(
        path,
        depth,
        output_shape(layer, input_shape),
        count_params(params)[0],
        count_params(state)[0],
        flops=flops,
        memory=memory,
    )
    rows = [row]
    for key, child, child_shape in layer.children(input_shape) if layer.children else []:
        rows += _summary_rows(child, child_shape, f"{path}/{key}", depth + 1, cost)
    return rows


def summary(
    model: Layer, input_shape: Any, *, frozen: str | Sequence[str] = (), cost: bool = False
) -> Summary:
    """A Keras-style table of a model: each layer's path, output shape and sizes.

    Nothing is computed: shapes and sizes come from ``jax.eval_shape``.

    Args:
        model: any :class:`Layer`; combinators list their children, indented.
        input_shape: per-example input shape (no batch axis).
        frozen: the patterns given to :func:`fnn.optimizers.freeze`; a
            "Frozen" column then counts each layer's frozen parameters.
        cost: add each layer's FLOPs per example and memory (bytes of
            arguments, outputs and temporaries) of its compiled forward pass,
            from XLA's cost and memory analyses of the compiled program; the
            model's row is the total. Compiles every layer, so it takes longer.

    Returns:
        A :class:`Summary`; ``print`` it for the table, or read its fields.

    Examples:
        >>> import fnn
        >>> model = fnn.Sequential([fnn.Dense(8), fnn.Relu(), fnn.Dense(3)])
        >>> s = fnn.summary(model, (4,))
        >>> s.params, [r.path for r in s.rows]
        (67, ['sequential', 'sequential/dense', 'sequential/relu', 'sequential/dense_1'])
    """
    shape = as_shape(input_shape)
    rows = tuple(_summary_rows(model, shape, model.name, 0, cost))
    params, state = abstract_init(model, shape)
    n_params, p_bytes = count_params(params)
    n_state, s_bytes = count_params(state)
    if frozen:
        sizes = {path_str(p): math.prod(a.shape) for p, a in jax.tree_util.tree_flatten_with_path(params)[0]}
        chosen = select_paths("summary", list(sizes), frozen)

        def frozen_under(row: SummaryRow) -> int:
            prefix = row.path.partition("/")[2]  # the row's path without the model's name
            return sum(sizes[p] for p in chosen if not prefix or p == prefix or p.startswith(prefix + "/"))

        rows = tuple(dataclasses.replace(r, frozen=frozen_under(r)) for r in rows)
    return Summary(
        model.name,
        shape,
        rows[0].output_shape,
        rows,
        n_params,
        n_state,
        p_bytes + s_bytes,
        rows[0].frozen,
        cost,
    )
