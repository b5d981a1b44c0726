"""Plots people otherwise write by hand: training curves, confusion matrices, decision boundaries.

Needs matplotlib (``pip install fnn[plot]``). Figures are built with
matplotlib's object-oriented API (``matplotlib.figure.Figure``), so nothing
touches pyplot's global state or needs a display; each function returns the
Figure and, given ``path``, also saves it atomically (the format follows the
file's suffix).

Example:
    >>> import numpy as np
    >>> from fnn import plot
    >>> figure = plot.confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), num_classes=2)
    >>> figure.axes[0].get_title()
    'Confusion matrix'
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("fnn.plot needs matplotlib: pip install 'fnn[plot]'") from e

from fnn import metrics as metrics_lib
from fnn._io import atomic_write_bytes

__all__ = ["confusion_matrix", "decision_boundary", "history", "save"]


def save(figure: Figure, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Saves a figure atomically; the format follows the suffix (``.png``, ``.svg``, ``.pdf``)."""
    path = Path(path)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _finish(figure: Figure, path: str | os.PathLike | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        save(figure, path)
    return figure


def history(
    run: Any, *, metrics: Sequence[str] | None = None, path: str | os.PathLike | None = None
) -> Figure:
    """Training curves: one panel per metric, train and validation lines over epochs.

    Args:
        run: a :class:`fnn.History` (or its ``.history`` dict).
        metrics: the entries to plot (without ``val_``); by default every
            logged one except the learning rate.
        path: also save the figure here.

    Returns:
        The Figure: one Axes per metric, lines labelled ``train`` and ``validation``.

    Raises:
        ValueError: for a metric the history does not have.
    """
    logs = run.history if hasattr(run, "history") else run
    epochs = list(getattr(run, "epochs", range(len(next(iter(logs.values()), [])))))
    available = [k for k in logs if not k.startswith("val_") and k != "learning_rate"]
    names = available if metrics is None else list(metrics)
    missing = [m for m in names if m not in logs]
    if missing or not names:
        raise ValueError(f"plot.history: no entries {missing or names}; the history has {sorted(logs)}")
    figure = Figure(figsize=(4.5 * len(names), 3.5))
    for i, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), i + 1)
        axes.plot(epochs, logs[name], label="train")
        if f"val_{name}" in logs:
            axes.plot(epochs, logs[f"val_{name}"], label="validation")
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.legend()
    return _finish(figure, path)


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A confusion-matrix heat map with the counts (or row fractions) written in.

    Args:
        y_true: integer labels ``(n,)``.
        y_pred: integer labels ``(n,)`` or class scores ``(n, num_classes)`` (argmax).
        num_classes: the number of classes.
        class_names: tick labels, one per class.
        normalize: show each row as fractions of the true class.
        path: also save the figure here.
    """
    counts = np.asarray(metrics_lib.confusion_matrix(y_true, y_pred, num_classes=num_classes))
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"plot.confusion_matrix: {len(class_names)} class_names for {num_classes} classes")
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    figure = Figure(figsize=(1.0 + 0.5 * num_classes, 0.8 + 0.5 * num_classes))
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=axes)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    axes.set_xticks(range(num_classes), names)
    axes.set_yticks(range(num_classes), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix")
    high = values.max() / 2 if values.size else 0
    for i in range(num_classes):
        for j in range(num_classes):
            text = f"{values[i, j]:.2f}" if normalize else str(int(values[i, j]))
            axes.text(j, i, text, ha="center", va="center", color="white" if values[i, j] > high else "black")
    return _finish(figure, path)


def decision_boundary(
    model: Any,
    params: Any,
    state: Any,
    x: Any,
    y: Any,
    *,
    threshold: float = 0.0,
    resolution: int = 200,
    margin: float = 0.5,
    path: str | os.PathLike | None = None,
) -> Figure:
    """The regions a 2-D classifier assigns to each class, with the data on top.

    The TensorFlow Playground picture: the model is evaluated (``train=False``)
    on a ``resolution x resolution`` grid around the data.

    Args:
        model: the classifier; its inputs are ``(n, 2)``.
        params: its params.
        state: its state.
        x: the points ``(n, 2)``.
        y: their integer labels ``(n,)``.
        threshold: for a single output, class 1 where the output exceeds it
            (0 for logits, 0.5 for probabilities); several outputs use argmax.
        resolution: grid points per axis.
        margin: space around the data, in input units.
        path: also save the figure here.

    Raises:
        ValueError: for inputs that are not ``(n, 2)``.
    """
    from fnn.train import predict  # fnn.train imports nothing from here; avoids a cycle at import

    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot.decision_boundary: x must be (n, 2) points, got shape {x.shape}")
    (x0, y0), (x1, y1) = x.min(axis=0) - margin, x.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(x.dtype)
    out = np.asarray(predict(model, params, state, jnp.asarray(grid), batch_size=4096))
    if out.ndim == 1 or out.shape[-1] == 1:
        classes = (out.reshape(-1) > threshold).astype(int)
    else:
        classes = out.argmax(axis=-1)
    figure = Figure(figsize=(5, 4.5))
    axes = figure.add_subplot()
    axes.contourf(gx, gy, classes.reshape(gx.shape), alpha=0.3, cmap="coolwarm")
    axes.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", edgecolors="k", s=18)
    axes.set_title("Decision boundary")
    return _finish(figure, path)
