"""Bring your weights: PyTorch and Keras checkpoints in and out of fnn models.

``load_torch`` maps a PyTorch ``state_dict`` (a ``.safetensors`` file, or a dict
of arrays) onto an fnn model; ``load_keras`` does the same for a Keras 3
``.weights.h5`` file or the weights inside a ``.keras`` archive. ``to_torch`` /
``save_torch`` and ``to_keras`` / ``save_keras`` go the other way, so weights
trained in fnn load back with ``module.load_state_dict`` or
``model.load_weights``.

Each layer's weights are transposed, reordered and renamed by a documented map
(:mod:`fnn.interop._layouts` lists them: Linear/Conv kernels, the GRU gate order,
PyTorch's two recurrent biases, attention projections, BatchNorm statistics).
Nothing is skipped silently: a load returns a :class:`WeightsReport` and raises
:class:`WeightsMismatchError` when a layer finds no weights, a tensor's shape or
dtype does not fit, or a tensor is left over, unless ``keep=`` / ``ignore=`` name
them. Pickle-based files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) are refused
with the one-line conversion to safetensors; nothing is ever unpickled, and a
``.keras`` archive's config (which names code) is never read.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import fnn
    >>> from fnn import interop
    >>> model = fnn.Sequential([fnn.Dense(4), fnn.Relu(), fnn.Dense(2)])
    >>> state_dict = {  # what torch.nn.Sequential(Linear(3, 4), ReLU(), Linear(4, 2)) holds
    ...     "0.weight": np.ones((4, 3), np.float32), "0.bias": np.zeros(4, np.float32),
    ...     "2.weight": np.ones((2, 4), np.float32), "2.bias": np.zeros(2, np.float32)}
    >>> params, state, report = interop.load_torch(model, (3,), state_dict)
    >>> params["dense"]["w"].shape  # PyTorch's (out, in) weight, transposed
    (3, 4)
    >>> print(report)
    loaded (2):
      dense <- 0.bias, 0.weight
      dense_1 <- 2.bias, 2.weight
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from fnn._core import Layer
from fnn.interop._convert import (
    DEFAULT_IGNORE,
    Loaded,
    WeightsMismatchError,
    WeightsReport,
    _export,
    _load,
    _source,
)
from fnn.interop._files import ForeignFileError, read_keras, read_safetensors, write_keras, write_safetensors

Source = str | os.PathLike | Mapping[str, Any]


def load_torch(
    model: Layer,
    input_shape: Any,
    source: Source,
    *,
    params: Any = None,
    state: Any = None,
    names: Mapping[str, str] | None = None,
    ignore: str | Sequence[str] = (),
    keep: str | Sequence[str] = (),
    cast: bool = False,
    key: jax.Array | None = None,
) -> Loaded:
    """Loads a PyTorch ``state_dict`` into an fnn model.

    A layer's PyTorch name is its fnn path with ``.`` for ``/`` (``features/conv``
    -> ``features.conv.weight``); a ``Sequential`` child that keeps its default
    name is found by its index instead, as ``nn.Sequential`` names it
    (``dense_1`` -> ``2.weight``). ``names`` overrides either.

    Args:
        model: the fnn model, built to match the PyTorch one (same sizes and options).
        input_shape: its per-example input shape (fnn's layout: channels last).
        source: a ``.safetensors`` file, or ``{name: array}`` (numpy, JAX, or
            torch CPU tensors: ``module.state_dict()``).
        params, state: the model's variables to load into; what ``keep`` names
            stays as it is here. Initialised from ``key`` when omitted.
        names: ``{fnn layer path: PyTorch module name}`` for layers named otherwise.
        ignore: patterns (``fnmatch``) of file tensors to leave unused on purpose,
            besides :data:`DEFAULT_IGNORE` (BatchNorm's ``num_batches_tracked``).
        keep: fnn layer paths (or patterns) not to load, e.g. a new head.
        cast: allow casts that lose precision (float32 file -> bfloat16 model);
            widening ones (bfloat16 -> float32) always happen and are reported.
        key: PRNG key of the initialisation when ``params`` or ``state`` is omitted.

    Returns:
        ``Loaded(params, state, report)``.

    Raises:
        WeightsMismatchError: a layer without weights in the file, a shape or
            dtype that does not fit, or a tensor left unused; its message and
            ``.report`` list every one.
        ForeignFileError: for a pickle-based or malformed file.
    """
    return _load(
        "torch", model, input_shape, _source("torch", source), params=params, state=state, names=names,
        ignore=ignore, keep=keep, cast=cast, key=key,
    )  # fmt: skip


def load_keras(
    model: Layer,
    input_shape: Any,
    source: Source,
    *,
    params: Any = None,
    state: Any = None,
    names: Mapping[str, str] | None = None,
    ignore: str | Sequence[str] = (),
    keep: str | Sequence[str] = (),
    cast: bool = False,
    key: jax.Array | None = None,
) -> Loaded:
    """Loads Keras 3 weights (``.weights.h5`` or ``.keras``) into an fnn model.

    Keras files name a layer by its class, counted per class inside each model
    (``layers/dense_1/vars/0``), so the k-th fnn ``Dense`` of a ``Sequential``
    takes the k-th Keras ``Dense``'s weights whatever either is called. Branching
    fnn combinators are flat in Keras (a functional model): check the report, or
    pass ``names`` (``{fnn layer path: "layers/dense_3"}``) where branches hold
    layers of the same class and shape.

    Args:
        model, input_shape, params, state, keep, cast, key: as for :func:`load_torch`.
        source: a ``.weights.h5`` file, a ``.keras`` archive (only its weights
            are read), or ``{hdf5 path: array}``.
        names: ``{fnn layer path: Keras group path}``.
        ignore: patterns of file tensors to leave unused, besides
            :data:`DEFAULT_IGNORE` (the optimiser's variables, RNG seeds).

    Returns:
        ``Loaded(params, state, report)``.

    Raises:
        WeightsMismatchError: as for :func:`load_torch`.
        ForeignFileError: for a pickle, a legacy Keras 2 HDF5 file, or a malformed file.
    """
    return _load(
        "keras", model, input_shape, _source("keras", source), params=params, state=state, names=names,
        ignore=ignore, keep=keep, cast=cast, key=key,
    )  # fmt: skip


def to_torch(
    model: Layer, input_shape: Any, params: Any, state: Any, *, names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The model's weights as a PyTorch ``state_dict`` of numpy arrays (names as for :func:`load_torch`).

    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``
    loads it into the matching PyTorch module (bfloat16 arrays: write them with
    :func:`save_torch` and read the file with ``safetensors.torch.load_file``). BatchNorm layers get a
    ``num_batches_tracked`` of 0, which PyTorch's strict loading expects.

    Raises:
        ValueError: for a layer PyTorch has no layout for (a GRU with
            ``reset_after=False``, a custom layer), all listed.
    """
    return _export("torch", model, input_shape, params, state, names)


def to_keras(
    model: Layer,
    input_shape: Any,
    params: Any,
    state: Any,
    *,
    names: Mapping[str, str] | None = None,
    flat: bool = False,
) -> dict[str, Any]:
    """The model's weights as ``{Keras HDF5 path: numpy array}`` (paths as for :func:`load_keras`).

    A ``Sequential`` inside a ``Sequential`` is a nested model group
    (``layers/sequential/layers/dense``), as Keras writes a ``Sequential`` in a
    ``Sequential``; ``flat=True`` writes every layer in the top group instead, as
    Keras writes one functional model (``keras.applications``' VGG16, say).

    Raises:
        ValueError: for a layer Keras has no layout for here, all listed.
    """
    return _export("keras", model, input_shape, params, state, names, flat)


def save_torch(
    path: str | os.PathLike,
    model: Layer,
    input_shape: Any,
    params: Any,
    state: Any,
    *,
    names: Mapping[str, str] | None = None,
) -> None:
    """Writes :func:`to_torch`'s ``state_dict`` as a safetensors file, atomically
    (``safetensors.torch.load_file(path)`` reads it)."""
    write_safetensors(path, to_torch(model, input_shape, params, state, names=names), {"format": "pt"})


def save_keras(
    path: str | os.PathLike,
    model: Layer,
    input_shape: Any,
    params: Any,
    state: Any,
    *,
    names: Mapping[str, str] | None = None,
    flat: bool = False,
) -> None:
    """Writes :func:`to_keras`'s weights (``flat`` as there) as a Keras 3 ``.weights.h5`` file,
    atomically (``model.load_weights(path)`` reads it)."""
    write_keras(path, to_keras(model, input_shape, params, state, names=names, flat=flat))


__all__ = [
    "DEFAULT_IGNORE",
    "ForeignFileError",
    "Loaded",
    "WeightsMismatchError",
    "WeightsReport",
    "load_keras",
    "load_torch",
    "read_keras",
    "read_safetensors",
    "save_keras",
    "save_torch",
    "to_keras",
    "to_torch",
]
