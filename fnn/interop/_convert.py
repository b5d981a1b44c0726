"""Mapping foreign weights onto an fnn model, layer by layer, with a report of everything.

The model is walked through its combinators' ``children``; every layer with a
:mod:`~fnn.interop._layouts` entry for its ``kind`` is one unit, whose foreign
name follows the rules each ecosystem uses to name weights:

- PyTorch: the fnn path with ``.`` for ``/``; a child of a ``Sequential`` that
  keeps its default name (``dense``, ``conv2d_1``) is named by its index, as in
  ``nn.Sequential``; where a file is read, whichever of the two it holds wins.
- Keras 3: each ``Sequential`` level is a ``layers/`` group in which a layer is
  named after its Keras class, counted per class (``dense``, ``dense_1``, ...),
  whatever it was called; other combinators add no level (Keras builds them as
  functional models, flat). A nested ``Sequential`` is its own group
  (``layers/sequential/layers/...``) when the file has one.

``names={fnn path: foreign name}`` overrides both for any layer.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn._core import Layer, abstract_init, as_shape, default_name, output_shape
from fnn.interop import _files
from fnn.interop._layouts import KERAS, TORCH, Layout, _keras_name, channels_first_rows

_EXTRA_DEFAULTS = {"RNN": ("lstm", "gru", "simple_rnn", "rnn")}
_NESTED_MODELS = ("sequential", "functional")  # Keras's class names of a model inside a model
# Layers whose outputs PyTorch holds channels first (NCHW), fnn channels last: a flatten after them
# orders the features differently.
_SPATIAL = (
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "DepthwiseConv2D",
    "SeparableConv2D", "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "AdaptiveAvgPool2D", "BasicBlock", "Bottleneck", "InvertedResidual",
)  # fmt: skip
_PER_CHANNEL = ("BatchNorm", "GroupNorm")  # keep a spatial map spatial
DEFAULT_IGNORE = {
    "torch": ("*num_batches_tracked",),  # BatchNorm's step counter: no fnn counterpart, unused in eval
    "keras": ("optimizer/*", "*seed_generator*"),  # the optimiser's slots and RNG states are not weights
}


class _Unit(NamedTuple):
    keys: tuple[str, ...]  # into params and state
    kind: str | None
    input_shape: Any
    levels: tuple[tuple[str, ...], ...]  # PyTorch: each level's candidate names, preferred first
    keras: str  # Keras's group path, or "" for PyTorch
    flattened: tuple[int, ...] | None = None  # a Dense after a flatten, in the other order, of this shape

    @property
    def path(self) -> str:
        return "/".join(self.keys)


def _default_like(key: str, child: Layer) -> bool:
    kind = child.kind or ""
    base = re.sub(r"_\d+$", "", key)
    return base in {default_name(kind), kind.lower(), _keras_name(kind), *_EXTRA_DEFAULTS.get(kind, ())}


def _sub(tree: Any, keys: Sequence[str]) -> Any:
    for k in keys:
        tree = tree[k]
    return tree


def _set(tree: dict, keys: Sequence[str], value: Any) -> dict:
    if not keys:
        return value
    return {**tree, keys[0]: _set(tree[keys[0]], keys[1:], value)}


def _variables(params: Any, state: Any, keys: Sequence[str]) -> dict:
    state = _sub(state, keys)
    return {"params": _sub(params, keys), "state": dict(state) if isinstance(state, Mapping) else {}}


class _Walk:
    """Lists a model's units with their foreign names for one ecosystem.

    ``present`` is the file's tensor names when loading (the walk then follows
    whichever naming the file uses), ``None`` when exporting.
    """

    def __init__(
        self, style: str, params: Any, state: Any, present: set[str] | None, flat: bool = False
    ) -> None:
        self.style, self.params, self.state, self.present, self.flat = style, params, state, present, flat
        self.layouts = TORCH if style == "torch" else KERAS
        self.units: list[_Unit] = []
        self.ambiguous: set[str] = set()  # Keras: units whose position among same-class layers is unsure
        self.unmappable: list[str] = []

    def _has_prefix(self, prefix: str) -> bool:
        return self.present is None or any(n.startswith(prefix) for n in self.present)

    def _in_file(self, prefix: str) -> bool:
        return self.present is not None and any(n.startswith(prefix) for n in self.present)

    @staticmethod
    def _count(name: str, counters: dict) -> str:
        count = counters.get(name, -1) + 1
        counters[name] = count
        return name if count == 0 else f"{name}_{count}"

    def _has_weights(self, keys: tuple) -> bool:
        variables = _variables(self.params, self.state, keys)
        return bool(
            jax.tree.leaves(
                {**variables, "state": {k: v for k, v in variables["state"].items() if k != "losses"}}
            )
        )

    def visit(self, layer: Layer, shape: Any, keys: tuple, levels: tuple, ns: str, counters: dict,
              parent: str | None = None, order: Any = None) -> Any:  # fmt: skip
        """Lists ``layer``'s units; returns the feature order after it (see :meth:`_order_after`),
        given ``order``, the one before it."""
        kind = layer.kind
        flat = order[1] if isinstance(order, tuple) else None
        if kind in self.layouts:
            group = ""
            if self.style == "keras":
                layout = self.layouts[kind]
                variables = _variables(self.params, self.state, keys)
                group = ns + self._count(
                    layout.name(variables) if callable(layout.name) else layout.name, counters
                )
            self.units.append(_Unit(keys, kind, shape, levels, group, flat if kind == "Dense" else None))
            if flat and kind != "Dense":
                self.unmappable.append(
                    f"{'/'.join(keys)} ({kind}) sits between a flatten and the next Dense, where "
                    f"{'PyTorch' if self.style == 'torch' else 'Keras'} orders the features otherwise than fnn"
                )
            return None if kind == "Dense" else self._order_after(layer, shape, keys, order)
        if not layer.children:
            if self._has_weights(keys):
                self.units.append(_Unit(keys, kind, shape, levels, ""))  # no layout: reported as missing
            return self._order_after(layer, shape, keys, order)
        if self.style == "keras" and kind == "Sequential" and keys:
            ns, counters = self._keras_nested(ns, counters, parent)
        children = layer.children(shape)
        inner = order if kind == "Sequential" else None  # a Sequential passes the order through its layers
        branches = []
        for i, (key, child, child_shape) in enumerate(children):
            if kind == "Sequential":
                level = (str(i), key) if _default_like(key, child) else (key, str(i))
            else:
                level = (key,)
            before = (len(self.units), dict(counters))
            after = self.visit(child, child_shape, (*keys, key), (*levels, level), ns, counters, kind, inner)
            inner = after if kind == "Sequential" else None
            branches.append((before, len(self.units), dict(counters)))
        if self.style == "keras" and kind != "Sequential" and len(children) > 1:
            self._mark_ambiguous(branches)
        return inner if kind == "Sequential" else self._order_after(layer, shape, keys, order)

    def _order_after(self, layer: Layer, shape: Any, keys: tuple, order: Any) -> Any:
        """The order of the features after ``layer``, as far as a flatten cares: ``"spatial"``, a
        map ``(*spatial, C)`` that PyTorch holds channels first; ``("flat", shape)``, such a map
        flattened in the other order than the foreign one (fnn's ``Flatten`` and Keras: channels
        last; PyTorch and the zoo's ``FlattenChannelsFirst``: channels first), which the next Dense
        reorders its rows for; ``None``, nothing to reorder (tokens, sequences, vectors)."""
        kind = layer.kind
        torch = self.style == "torch"
        if kind in ("Flatten", "FlattenChannelsFirst"):
            differs = (kind == "Flatten") == torch and (order == "spatial" or not torch)
            return ("flat", tuple(shape)) if differs and len(shape) >= 2 else None
        if torch and kind in _SPATIAL:
            return "spatial"
        if order is None or layer.children or (self._has_weights(keys) and kind not in _PER_CHANNEL):
            return None
        return order if output_shape(layer, shape) == shape else None  # weightless, shape-keeping

    def _keras_nested(self, ns: str, counters: dict, parent: str | None) -> tuple[str, dict]:
        """A Sequential inside a model: Keras's nested ``sequential``/``functional`` group when the
        file has one (on export: when its parent is a Sequential), else flat in its parent's."""
        for model_class in _NESTED_MODELS:
            trial = dict(counters)
            nested = ns + self._count(model_class, trial) + "/layers/"
            wanted = (
                parent == "Sequential" and not self.flat if self.present is None else self._in_file(nested)
            )
            if wanted:
                counters[model_class] = trial[model_class]
                return nested, {}
        return ns, counters

    def _mark_ambiguous(self, branches: list) -> None:
        """Keras names a functional model's layers in its own order of depth, which fnn cannot
        see across branches: same-class layers in two branches of a flat region are ambiguous."""
        consumed = []
        for (start, before), end, after in branches:
            classes = {name for name, count in after.items() if count != before.get(name, -1)}
            consumed.append((classes, start, end))
        for classes, start, end in consumed:
            if any(classes & other for other, s, _ in consumed if s != start):
                self.ambiguous.update(u.path for u in self.units[start:end])

    def torch_name(self, unit: _Unit) -> str:
        prefix = ""
        for level in unit.levels:
            prefix += next((c for c in level if self._has_prefix(f"{prefix}{c}.")), level[0]) + "."
        return prefix.rstrip(".")


def _units(
    style: str,
    model: Layer,
    shape: Any,
    params: Any,
    state: Any,
    present: set | None,
    names: Mapping,
    flat: bool = False,
) -> list[tuple[_Unit, str]]:
    walk = _Walk(style, params, state, present, flat)
    # A model's own image input is channels first in PyTorch (NCHW): a flatten of it reorders too.
    image = all(isinstance(d, int) for d in shape) and len(shape) >= 3
    walk.visit(model, shape, (), (), "layers/", {}, order="spatial" if image else None)
    if walk.unmappable:
        raise ValueError(
            "cannot map the features' order through a flatten:\n  " + "\n  ".join(walk.unmappable)
        )
    units = []
    for unit in walk.units:
        default = walk.torch_name(unit) if style == "torch" else unit.keras
        units.append((unit, names.get(unit.path, default)))
    unknown = set(names) - {u.path for u, _ in units}
    if unknown:
        raise ValueError(
            f"names: {sorted(unknown)} are not layer paths of the model; its layers with weights are "
            f"{[u.path for u, _ in units]}"
        )
    unsure = sorted(walk.ambiguous - set(names))
    if unsure:
        raise ValueError(
            f"Keras names the layers of a functional model in its own order, which fnn cannot see across "
            f"the branches holding {unsure}: pass names={{fnn layer path: Keras group}} for them "
            f"(read_keras(path) lists the file's groups)"
        )
    taken: dict[str, str] = {}
    for unit, prefix in units:
        if prefix in taken and unit.kind is not None:
            raise ValueError(
                f"layers {taken[prefix]!r} and {unit.path!r} both map to the foreign name {prefix!r}"
            )
        taken[prefix] = unit.path
    return units


def _join(style: str, prefix: str, suffix: str) -> str:
    if not prefix:
        return suffix
    return f"{prefix}.{suffix}" if style == "torch" else f"{prefix}/{suffix}"


def _expected(layout: Layout, variables: dict, shape: Any) -> dict[str, jax.ShapeDtypeStruct]:
    def shapes(v: dict) -> dict:
        return {k: a for k, a in layout.to_foreign(v, shape).items() if k not in layout.optional}

    return jax.eval_shape(shapes, variables)


def _label(unit: _Unit, model: Layer) -> str:
    return f"{unit.path or model.name} ({unit.kind or 'a custom layer'})"


@dataclasses.dataclass(frozen=True)
class WeightsReport:
    """What a foreign load did; ``print`` it for a summary.

    Attributes:
        mapped: ``(fnn layer path, foreign names)`` for each layer loaded.
        kept: fnn layer paths left as they were (``keep=``).
        missing: fnn layers the file lacks weights for, and why.
        mismatched: foreign tensors whose shape or dtype the layer cannot take.
        unused: foreign tensors no layer took (and ``ignore`` did not name).
        ignored: foreign tensors ``ignore`` named.
        cast: tensors cast without loss to the layer's dtype (``bfloat16 -> float32``).
    """

    mapped: tuple[tuple[str, tuple[str, ...]], ...] = ()
    kept: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    cast: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every layer was loaded or kept and every tensor used or ignored."""
        return not (self.missing or self.mismatched or self.unused)

    def problems(self) -> str:
        """The missing, mismatched and unused entries alone."""
        return "\n".join(
            _block("MISSING from the file", self.missing)
            + _block("MISMATCHED", self.mismatched)
            + _block("UNUSED from the file (name them in ignore= to skip them)", self.unused)
        )

    def _mapped(self) -> list[str]:
        return [f"{path or '(the model)'} <- {', '.join(names)}" for path, names in self.mapped]

    def _repr_html_(self) -> str:
        from fnn import _display

        return _display.sections(
            "weights loaded" if self.ok else "weights that do not fit",
            [
                ("MISSING from the file", self.missing),
                ("MISMATCHED", self.mismatched),
                ("UNUSED from the file", self.unused),
                ("loaded", self._mapped()),
                ("kept as they were (keep=)", self.kept),
                ("ignored", self.ignored),
                ("cast without loss", self.cast),
            ],
        )

    def __str__(self) -> str:
        mapped = self._mapped()
        return "\n".join(
            _block("loaded", mapped)
            + _block("kept as they were (keep=)", self.kept)
            + ([self.problems()] if not self.ok else [])
            + _block("ignored", self.ignored)
            + _block("cast without loss", self.cast)
        )


def _block(title: str, items: Sequence[str]) -> list[str]:
    return [f"{title} ({len(items)}):", *(f"  {i}" for i in items)] if items else []


class WeightsMismatchError(ValueError):
    """A foreign file does not fit the model; ``.report`` holds the :class:`WeightsReport`."""

    def __init__(self, what: str, report: WeightsReport, hint: str = "") -> None:
        summary = (
            f"({len(report.mapped)} layers loaded, {len(report.kept)} kept, {len(report.ignored)} tensors "
            "ignored: the error's .report lists them)"
        )
        super().__init__(f"{what}: the weights do not fit the model\n{report.problems()}\n{summary}{hint}")
        self.report = report


class Loaded(NamedTuple):
    """The result of a load: the model's ``params`` and ``state`` and the :class:`WeightsReport`."""

    params: Any
    state: Any
    report: WeightsReport


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """A glob, the name itself, or a prefix of it up to a ``/`` or ``.`` (``"2"`` matches ``2.weight``)."""
    return any(
        fnmatch.fnmatchcase(name, p)
        or name == p
        or name.startswith((p.rstrip("/.") + "/", p.rstrip("/.") + "."))
        for p in patterns
    )


def _resolve(style: str, unit: _Unit, prefix: str, layouts: Mapping[str, Layout]) -> tuple[Layout, str, str]:
    """The unit's layout (a Dense after a PyTorch Flatten reorders its rows), its foreign prefix, and
    the layer of a multi-layer PyTorch RNN (``names={"lstm_1": "lstm:1"}``: ``weight_ih_l1``)."""
    layout = layouts[unit.kind]
    if unit.flattened:
        layout = channels_first_rows(layout, unit.flattened, foreign_first=style == "torch")
    rnn_layer = "0"
    if style == "torch" and unit.kind in ("RNN", "Bidirectional") and ":" in prefix:
        prefix, rnn_layer = prefix.rsplit(":", 1)
        if not rnn_layer.isdigit():
            raise ValueError(f"names: {unit.path!r}: 'module:layer' needs a layer number, got {rnn_layer!r}")
    return layout, prefix, rnn_layer


def _foreign_name(style: str, prefix: str, suffix: str, rnn_layer: str) -> str:
    if rnn_layer != "0":
        suffix = re.sub(r"_l0(?=$|_reverse$)", f"_l{rnn_layer}", suffix)
    return _join(style, prefix, suffix)


def _hint(unit: _Unit, tensors: Mapping[str, Any]) -> str:
    """Why a recurrent layer finds nothing, when the file holds a deeper PyTorch RNN."""
    deeper = sorted({n.rsplit(".", 1)[0] for n in tensors if re.search(r"(^|\.)weight_ih_l[1-9]\d*$", n)})
    if unit.kind in ("RNN", "Bidirectional") and deeper:
        return (f" ({', '.join(deeper)}: a PyTorch RNN with num_layers > 1, which is one fnn RNN per layer: "
                f"map each with names={{fnn layer path: '{deeper[0]}:<layer>'}})")  # fmt: skip
    return ""


def _patterns(arg: str, value: str | Sequence[str]) -> tuple[str, ...]:
    value = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in value):
        raise TypeError(f"{arg} must be a pattern or a sequence of patterns (str), got {value!r}")
    return value


def _lossless(source: np.dtype, target: np.dtype) -> bool:
    return source == target or (
        jnp.issubdtype(source, jnp.floating)
        and jnp.issubdtype(target, jnp.floating)
        and jnp.finfo(target).bits > jnp.finfo(source).bits
        and jnp.finfo(target).nmant >= jnp.finfo(source).nmant
    )


def _load(
    style: str,
    model: Layer,
    input_shape: Any,
    tensors: Mapping[str, np.ndarray],
    *,
    params: Any,
    state: Any,
    names: Mapping[str, str] | None,
    ignore: str | Sequence[str],
    keep: str | Sequence[str],
    cast: bool,
    key: jax.Array | None,
) -> Loaded:
    what = f"load_{style}"
    if not isinstance(model, Layer):
        raise TypeError(f"{what}: model must be an fnn Layer, got {type(model).__name__}")
    shape = as_shape(input_shape)
    given = params is not None and state is not None
    if not given:  # shapes only: a real initialisation is compiled below only if something is left over
        abstract = abstract_init(model, shape)
        params = abstract[0] if params is None else params
        state = abstract[1] if state is None else state
    ignore = DEFAULT_IGNORE[style] + _patterns("ignore", ignore)
    keep = _patterns("keep", keep)
    layouts = TORCH if style == "torch" else KERAS
    mapped, kept, missing, mismatched, casts, used = [], [], [], [], [], set()
    for unit, prefix in _units(style, model, shape, params, state, set(tensors), dict(names or {})):
        if keep and _matches(unit.path, keep):
            kept.append(unit.path)
            continue
        if unit.kind not in layouts:
            missing.append(f"{_label(unit, model)}: fnn has no {style} layout for this layer kind")
            continue
        layout, prefix, rnn_layer = _resolve(style, unit, prefix, layouts)
        like = _variables(params, state, unit.keys)
        try:
            expected = _expected(layout, like, unit.input_shape)
        except ValueError as e:
            missing.append(f"{_label(unit, model)}: {e}")
            continue
        full = {s: _foreign_name(style, prefix, s, rnn_layer) for s in expected}
        absent = [f"{full[s]} {tuple(e.shape)}" for s, e in expected.items() if full[s] not in tensors]
        used.update(n for n in full.values() if n in tensors)  # reported with the layer, not as unused
        if absent:
            missing.append(
                f"{_label(unit, model)}: the file has no {', '.join(absent)}{_hint(unit, tensors)}"
            )
            continue
        problems = []
        for s, e in expected.items():
            got = tensors[full[s]]
            if tuple(got.shape) != tuple(e.shape):
                problems.append(f"{full[s]}: the file has shape {tuple(got.shape)}, {_label(unit, model)} "
                                f"expects {tuple(e.shape)}")  # fmt: skip
            elif got.dtype != e.dtype:
                if _lossless(got.dtype, e.dtype) or cast:
                    casts.append(f"{full[s]}: {got.dtype} -> {np.dtype(e.dtype).name}")
                else:
                    problems.append(f"{full[s]}: the file has {got.dtype}, {_label(unit, model)} expects "
                                    f"{np.dtype(e.dtype).name} (pass cast=True to cast with loss)")  # fmt: skip
        if problems:
            mismatched += problems
            continue
        foreign = {s: np.asarray(tensors[full[s]]).astype(e.dtype) for s, e in expected.items()}
        loaded = layout.from_foreign(foreign, like, unit.input_shape)
        params = _set(params, unit.keys, loaded["params"])
        if isinstance(_sub(state, unit.keys), Mapping):
            state = _set(state, unit.keys, loaded["state"])
        mapped.append((unit.path, tuple(full.values())))
    leftover = [n for n in tensors if n not in used]
    report = WeightsReport(
        tuple(mapped),
        tuple(kept),
        tuple(missing),
        tuple(mismatched),
        tuple(n for n in leftover if not _matches(n, ignore)),
        tuple(n for n in leftover if _matches(n, ignore)),
        tuple(casts),
    )
    if not report.ok:
        dims = tuple(shape) if all(isinstance(d, int) for d in shape) else ()
        channels_first = len(dims) >= 3 and dims[0] in (1, 3, 4) and dims[-1] > 4 and report.mismatched
        hint = f"\nfnn computes channels last: is input_shape {dims} channels first? Pass {(*dims[1:], dims[0])}."
        raise WeightsMismatchError(what, report, hint if channels_first else "")
    params, state = jax.tree.map(
        lambda a: jnp.asarray(a) if isinstance(a, np.ndarray) else a, (params, state)
    )
    if not given and any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves((params, state))):
        initial = model.init(jax.random.key(0) if key is None else key, shape)
        params, state = jax.tree.map(
            lambda v, i: i if isinstance(v, jax.ShapeDtypeStruct) else v, (params, state), initial
        )
    return Loaded(params, state, report)


def _export(
    style: str,
    model: Layer,
    input_shape: Any,
    params: Any,
    state: Any,
    names: Mapping[str, str] | None,
    flat: bool = False,
) -> dict[str, np.ndarray]:
    what = f"to_{style}"
    layouts = TORCH if style == "torch" else KERAS
    out, problems = {}, []
    units = _units(style, model, as_shape(input_shape), params, state, None, dict(names or {}), flat)
    for unit, prefix in units:
        if unit.kind not in layouts:
            problems.append(f"{_label(unit, model)}: fnn has no {style} layout for this layer kind")
            continue
        layout, prefix, rnn_layer = _resolve(style, unit, prefix, layouts)
        variables = jax.tree.map(
            np.asarray, _variables(params, state, unit.keys)
        )  # numpy: nothing to compile
        try:
            tensors = layout.to_foreign(variables, unit.input_shape)
        except ValueError as e:
            problems.append(f"{_label(unit, model)}: {e}")
            continue
        out.update({_foreign_name(style, prefix, s, rnn_layer): np.asarray(a) for s, a in tensors.items()})
    if problems:
        raise ValueError(f"{what}: cannot export\n  " + "\n  ".join(problems))
    return out


# --------------------------------------------------------------------------- public


def _source(style: str, source: Any) -> Mapping[str, np.ndarray]:
    if isinstance(source, Mapping):
        return _files._as_arrays(source, f"load_{style}")
    if not isinstance(source, (str, os.PathLike, bytes)):
        raise TypeError(
            f"load_{style}: source must be a file path or a mapping of names to arrays, got {source!r}"
        )
    return _files.read_safetensors(source) if style == "torch" else _files.read_keras(source)
