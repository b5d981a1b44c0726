"""fnn.plot: figures with the expected axes, lines and texts, saved atomically."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import plot

PNG = b"\x89PNG\r\n\x1a\n"


def test_history_draws_train_and_validation_per_metric(tmp_path):
    logs = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.7, 0.6], "accuracy": [0.5, 0.7, 0.9],
            "learning_rate": [0.1] * 3}  # fmt: skip
    figure = plot.history(logs, path=tmp_path / "curves.png")
    assert [a.get_title() for a in figure.axes] == ["loss", "accuracy"]
    loss_axes = figure.axes[0]
    assert [line.get_label() for line in loss_axes.get_lines()] == ["train", "validation"]
    np.testing.assert_array_equal(loss_axes.get_lines()[1].get_ydata(), logs["val_loss"])
    assert [line.get_label() for line in figure.axes[1].get_lines()] == ["train"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary files left
    with pytest.raises(ValueError, match=r"plot.history: no entries \['f1'\]; the history has"):
        plot.history(logs, metrics=["f1"])


def test_history_of_a_fit_uses_its_epochs():
    x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    run = fnn.fit(
        fnn.Dense(1), x, x[:, :1], loss="mse", optimizer="sgd", epochs=2, initial_epoch=0, verbose=0
    )
    figure = plot.history(run)
    assert list(figure.axes[0].get_lines()[0].get_xdata()) == [0, 1]


def test_confusion_matrix_writes_counts_or_fractions(tmp_path):
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    figure = plot.confusion_matrix(y_true, y_pred, num_classes=3, class_names=["a", "b", "c"])
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["1", "1", "0", "0", "2", "0", "1", "0", "0"]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["a", "b", "c"]
    scores = jax.nn.one_hot(y_pred, 3)
    normalised = plot.confusion_matrix(y_true, scores, num_classes=3, normalize=True, path=tmp_path / "c.svg")
    assert [t.get_text() for t in normalised.axes[0].texts][:3] == ["0.50", "0.50", "0.00"]
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()
    with pytest.raises(ValueError, match=r"2 class_names for 3 classes"):
        plot.confusion_matrix(y_true, y_pred, num_classes=3, class_names=["a", "b"])


@pytest.mark.parametrize("outputs, threshold", [(1, 0.0), (2, 0.0)])
def test_decision_boundary_colours_the_plane_by_predicted_class(outputs, threshold):
    # A fixed linear classifier: class 1 right of x = 0.
    model = fnn.Dense(outputs)
    w = jnp.array([[1.0], [0.0]]) if outputs == 1 else jnp.array([[-1.0, 1.0], [0.0, 0.0]])
    params = {"w": w, "b": jnp.zeros(outputs)}
    x = np.array([[-1.0, 0.0], [1.0, 1.0], [0.5, -1.0]], np.float32)
    figure = plot.decision_boundary(
        model, params, {}, x, np.array([0, 1, 1]), threshold=threshold, resolution=21
    )
    axes = figure.axes[0]
    assert axes.get_title() == "Decision boundary"
    assert len(axes.collections) >= 2  # the filled regions and the points
    np.testing.assert_array_equal(axes.collections[-1].get_offsets(), x)
    with pytest.raises(ValueError, match=r"x must be \(n, 2\) points, got shape \(3,\)"):
        plot.decision_boundary(model, params, {}, x[:, 0], np.array([0, 1, 1]))
