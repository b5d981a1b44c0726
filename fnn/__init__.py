"""fnn: a functional deep-learning library on JAX.

Models are pure functions over parameter pytrees. A :class:`Layer` is a pair
``init(key, input_shape) -> (params, state)`` and
``apply(params, state, x, *, train, key=None) -> (y, new_state)``; combinators
such as :func:`Sequential` are layers too. Optimisers are optax's.

Example:
    >>> import jax, jax.numpy as jnp, fnn
    >>> model = fnn.Sequential([fnn.Dense(16, "relu"), fnn.Dense(3)])
    >>> params, state = model.init(jax.random.key(0), (4,))
    >>> logits, state = model.apply(params, state, jnp.ones((8, 4)), train=False)
    >>> logits.shape
    (8, 3)
"""

from fnn import (
    activations,
    augment,
    checkpoint,
    data,
    datasets,
    initializers,
    interop,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    parallel,
    preprocessing,
    regularizers,
    tensorboard,
    testing,
    tracking,
    train,
)
from fnn._compilation_cache import enable_compilation_cache
from fnn._core import Layer, Shape, Summary, as_shape, output_shape, summary
from fnn._export import ExportedModel, export, export_onnx, load_exported
from fnn._generation import generate, sample_logits
from fnn._graph import Graph, graph
from fnn._layer_losses import add_loss, collected_losses
from fnn._version import __version__ as __version__
from fnn.augment import (
    GaussianNoise,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
)
from fnn.layers import *  # noqa: F403  (the layer constructors are part of fnn's namespace)
from fnn.layers import __all__ as _layer_names
from fnn.tensorboard import Profiler, TensorBoard
from fnn.train import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    EnsembleHistory,
    History,
    LearningRateScheduler,
    LivePlot,
    ModelCheckpoint,
    NonFinite,
    ReduceLROnPlateau,
    TerminateOnNaN,
    TrainState,
    Watchdog,
    evaluate,
    find_non_finite,
    fit,
    fit_ensemble,
    fused_steps,
    make_eval_step,
    make_grad_fn,
    make_train_step,
    make_train_step_from_loss,
    predict,
)

__all__ = [
    "enable_compilation_cache",
    "TensorBoard",
    "tensorboard",
    "Graph",
    "graph",
    "generate",
    "sample_logits",
    "ExportedModel",
    "export",
    "load_exported",
    "export_onnx",
    "BackupAndRestore",
    "ModelCheckpoint",
    "checkpoint",
    "parallel",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "GaussianNoise",
    "History",
    "EnsembleHistory",
    "Layer",
    "LearningRateScheduler",
    "LivePlot",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "ReduceLROnPlateau",
    "Profiler",
    "TerminateOnNaN",
    "TrainState",
    "Watchdog",
    "NonFinite",
    "evaluate",
    "find_non_finite",
    "fused_steps",
    "fit",
    "fit_ensemble",
    "predict",
    "Shape",
    "Summary",
    "activations",
    "add_loss",
    "augment",
    "as_shape",
    "collected_losses",
    "data",
    "datasets",
    "initializers",
    "interop",
    "layers",
    "losses",
    "make_eval_step",
    "make_grad_fn",
    "make_train_step",
    "make_train_step_from_loss",
    "metrics",
    "models",
    "optimizers",
    "output_shape",
    "preprocessing",
    "regularizers",
    "summary",
    "testing",
    "tracking",
    "train",
    *_layer_names,
]
