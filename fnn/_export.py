"""Export a model's inference function with its weights; run it without the model's code.

The function is serialised by ``jax.export`` (StableHLO, with a symbolic batch
size); the weights go beside it in a verified checkpoint (see
:mod:`fnn.checkpoint`), so the exported computation stays small and the
weights are checked on load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax import export as jax_export
from jax.extend import core as jax_core

from fnn import _io, checkpoint
from fnn._core import Layer, Shape, as_shape

FUNCTION_FILE = "function.jax_exported"


def _input_structs(input_shape: Any, batch: Any) -> Any:
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct((batch, *s), s.dtype),
        as_shape(input_shape),
        is_leaf=lambda s: isinstance(s, Shape),
    )


def export(
    path: str | os.PathLike,
    model: Layer,
    params: Any,
    state: Any,
    input_shape: Any,
    *,
    platforms: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves ``model.apply(params, state, x, train=False)`` as a self-contained directory.

    Args:
        path: the directory to write (atomically, as a :mod:`fnn.checkpoint`).
        model: the model.
        params: its trained params.
        state: its state.
        input_shape: the per-example input shape (no batch axis), e.g.
            ``(28, 28, 1)``, or :class:`fnn.Shape` with a dtype for integer
            inputs; pytrees of them for several inputs. The batch size is
            symbolic: any batch size works when loaded.
        platforms: where the function may run (``"cpu"``, ``"cuda"``, ``"rocm"``,
            ``"tpu"``); the current backend by default.
        overwrite: replace an existing export at ``path``.

    Returns:
        The directory written.

    Examples:
        >>> import jax, jax.numpy as jnp, tempfile, os, fnn
        >>> model = fnn.Sequential([fnn.Dense(4, "relu"), fnn.Dense(2)])
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> path = fnn.export(os.path.join(tempfile.mkdtemp(), "m"), model, params, state, (3,))
        >>> loaded = fnn.load_exported(path)
        >>> x = jnp.ones((5, 3))
        >>> bool((loaded(x) == model.apply(params, state, x, train=False)[0]).all())
        True
    """
    weights, treedef = jax.tree.flatten((params, state))

    def infer(flat_weights: list, x: Any) -> Any:
        params, state = jax.tree.unflatten(treedef, flat_weights)
        return model.apply(params, state, x, train=False)[0]

    (batch,) = jax_export.symbolic_shape("batch")
    weight_structs = [jax.ShapeDtypeStruct(jnp.shape(w), jnp.result_type(w)) for w in weights]
    exported = jax_export.export(jax.jit(infer), platforms=platforms)(
        weight_structs, _input_structs(input_shape, batch)
    )
    return checkpoint.save(
        path,
        {"weights": weights},
        metadata={"model": model.name, "platforms": list(exported.platforms)},
        files={FUNCTION_FILE: bytes(exported.serialize())},
        overwrite=overwrite,
    )


class ExportedModel:
    """A model loaded by :func:`load_exported`: call it on a batch of inputs.

    Attributes:
        exported: the ``jax.export.Exported`` function ``(weights, x) -> y``.
        weights: the list of weight arrays it is called with.
        name: the exported model's name.
    """

    def __init__(self, exported: jax_export.Exported, weights: list, name: str):
        self.exported, self.weights, self.name = exported, weights, name

    @property
    def input_structs(self) -> Any:
        """The input's shapes and dtypes (the batch axis is the symbol ``batch``)."""
        return _arguments(self.exported)[1]

    def __call__(self, x: Any) -> Any:
        """The model's outputs (``train=False``) for a batch ``x``."""
        return self.exported.call(self.weights, x)

    def __repr__(self) -> str:
        return f"ExportedModel({self.name!r}, platforms={self.exported.platforms})"


def load_exported(path: str | os.PathLike, *, verify: bool = True) -> ExportedModel:
    """Loads what :func:`export` wrote; no model code is needed.

    The file holds a StableHLO computation that XLA compiles and runs; nothing
    is unpickled and no Python code from the file is executed. It is
    deserialised completely (the StableHLO module included) here, so a bad
    file is reported now rather than at the first call.

    Args:
        path: a directory written by :func:`export`.
        verify: check the SHA-256 digests of the function and the weights.

    Returns:
        The loaded model.

    Raises:
        fnn.checkpoint.CheckpointError: for a missing, corrupted or malformed
            export, naming the file.
    """
    file = Path(path) / FUNCTION_FILE
    data = checkpoint.read_file(path, FUNCTION_FILE, verify=verify)
    try:
        exported = jax_export.deserialize(bytearray(data))
        weight_avals, _ = _arguments(exported)
        weight_structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in weight_avals]
        exported.mlir_module()  # parses the StableHLO bytecode
    except Exception as e:  # a malformed file fails anywhere in the decoder, with any error type
        raise checkpoint.CheckpointError(
            f"{file}: not a valid exported function ({type(e).__name__}: {e})"
        ) from None
    weights = checkpoint.restore(path, {"weights": weight_structs}, verify=verify)["weights"]
    name = checkpoint.read_metadata(path).get("model", "model")
    return ExportedModel(exported, weights, name if isinstance(name, str) else "model")


def _arguments(exported: jax_export.Exported) -> tuple[list, Any]:
    """``(weight avals, input avals)`` of an exported ``(weights, x)`` function."""
    (weights, x), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    return weights, x


def export_onnx(
    path: str | os.PathLike,
    model: Layer,
    params: Any,
    state: Any,
    input_shape: Any,
    *,
    opset: int = 23,
) -> Path:
    """Writes ``model.apply(params, state, x, train=False)`` as an ONNX file, through ``jax2onnx``.

    For runtimes that read ONNX (onnxruntime, TensorRT, browsers, phones). The
    model is first traced to a JAX program (a jaxpr) and ``jax2onnx`` converts
    its operations one by one, with the weights as constants; the batch axis
    stays symbolic (``"batch"``). :func:`export` (StableHLO) remains fnn's
    default: it takes every operation and reloads into JAX exactly. Needs the
    ``onnx`` extra (``pip install 'fnn[onnx]'``: jax2onnx and onnxruntime).

    Args:
        path: the ``.onnx`` file to write (atomically).
        model: the model.
        params: its trained params.
        state: its state.
        input_shape: the per-example input shape, or :class:`fnn.Shape` with a
            dtype for integer inputs; a pytree of them for several inputs (the
            ONNX inputs in ``jax.tree.leaves`` order).
        opset: the ONNX operator set to target.

    Returns:
        The file written.

    Raises:
        NotImplementedError: when the converter has no rule for an operation,
            naming the layer(s) that use it.
        ImportError: without ``jax2onnx``.

    Examples:
        >>> import jax, numpy as np, onnxruntime, fnn  # doctest: +SKIP
        >>> model = fnn.Sequential([fnn.Dense(4, "relu"), fnn.Dense(2)])  # doctest: +SKIP
        >>> params, state = model.init(jax.random.key(0), (3,))  # doctest: +SKIP
        >>> path = fnn.export_onnx("model.onnx", model, params, state, (3,))  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession(str(path))  # doctest: +SKIP
        >>> session.run(None, {session.get_inputs()[0].name: np.ones((5, 3), np.float32)})[0].shape  # doctest: +SKIP
        (5, 2)
    """
    try:
        import jax2onnx
    except ImportError as e:
        raise ImportError("export_onnx needs jax2onnx: pip install 'fnn[onnx]'") from e
    (batch,) = jax_export.symbolic_shape("batch")
    structs = _input_structs(input_shape, batch)
    leaves, treedef = jax.tree.flatten(structs)
    # Traced by JAX first: jax2onnx then sees primitives only, never fnn's Python (its shape checks)
    # under its own patched jax.numpy.
    program = jax.make_jaxpr(
        lambda *xs: model.apply(params, state, jax.tree.unflatten(treedef, xs), train=False)[0]
    )(*leaves)

    def flat_infer(*xs: Any) -> list:
        return jax.core.eval_jaxpr(program.jaxpr, program.consts, *xs)

    try:  # the inputs keep the symbolic batch axis the program was traced with
        proto = jax2onnx.to_onnx(flat_infer, leaves, model_name=model.name, opset=opset)
    except NotImplementedError as e:
        found = re.search(r"primitive '([^']+)'", str(e))
        if found is None:
            raise
        layers = sorted(_layers_using(program.jaxpr, found[1])) or ["(outside any layer)"]
        raise NotImplementedError(
            f"export_onnx: the ONNX converter (jax2onnx) cannot convert {found[1]!r}, used by layer "
            f"{', '.join(repr(name) for name in layers)}; fnn.export (StableHLO) takes every operation"
        ) from None
    target = Path(path)
    _io.atomic_write_bytes(target, proto.SerializeToString())
    return target


def _layers_using(jaxpr: Any, primitive: str) -> set[str]:
    """The layer paths (their ``jax.named_scope`` s) of every equation of ``primitive``, nested ones too."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            found.add(str(eqn.source_info.name_stack))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, (jax_core.Jaxpr, jax_core.ClosedJaxpr)):
                    found |= _layers_using(getattr(sub, "jaxpr", sub), primitive)
    return {name for name in found if name}
