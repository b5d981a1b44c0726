"""scikit-learn estimators around fnn models: ``Pipeline``, ``cross_val_score``, ``GridSearchCV``.

:class:`FnnClassifier` and :class:`FnnRegressor` follow scikit-learn's
estimator contract (they pass its ``check_estimator`` suite; ``tests/test_sklearn.py``
runs it): hyper-parameters are constructor arguments (``get_params``,
``set_params``, ``clone``), ``fit`` learns from scratch with ``fnn.fit``,
``partial_fit`` trains one more epoch, fitted attributes end in ``_``. Without
a ``model`` they build an MLP as scikit-learn's ``MLPClassifier`` does, from
``hidden_layer_sizes``; a ``model`` function builds any fnn model for the
number of outputs the data asks for.

Needs the ``sklearn`` extra (``pip install fnn[sklearn]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

import fnn
from fnn._core import Layer

__all__ = ["FnnClassifier", "FnnRegressor"]

_PREDICT_BATCH = 256


class _FnnEstimator(BaseEstimator):
    """What the classifier and the regressor share: building, training and pickling."""

    _loss: str

    def __init__(
        self,
        model: Callable[[int], Layer] | Layer | None = None,
        *,
        hidden_layer_sizes: Sequence[int] = (100,),
        activation: str = "relu",
        dropout: float = 0.0,
        optimizer: str = "adam",
        learning_rate: float | None = None,
        epochs: int = 200,
        batch_size: int = 32,
        validation_split: float | None = None,
        callbacks: Sequence[Any] | None = None,
        seed: int = 0,
        verbose: int = 0,
    ):
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.callbacks = callbacks
        self.seed = seed
        self.verbose = verbose

    # -- what the subclasses say about their targets ---------------------------------------

    def _targets(self, y: Any, first: bool) -> np.ndarray:
        raise NotImplementedError

    def _outputs(self) -> int:
        raise NotImplementedError

    # -- building and training ----------------------------------------------------------------

    def _build(self) -> Layer:
        """The model for ``n_outputs_`` outputs: the ``model`` given, or an MLP from ``hidden_layer_sizes``."""
        outputs = self._outputs()
        if self.model is None:
            hidden = [fnn.Dense(int(units), self.activation) for units in self.hidden_layer_sizes]
            if self.dropout:
                hidden = [part for layer in hidden for part in (layer, fnn.Dropout(self.dropout))]
            return fnn.Sequential([*hidden, fnn.Dense(outputs)])
        model = self.model if isinstance(self.model, Layer) else self.model(outputs)
        if not isinstance(model, Layer):
            raise TypeError(
                f"{type(self).__name__}: model must be an fnn Layer or a function n_outputs -> Layer, "
                f"got {type(model).__name__}"
            )
        shape = fnn.output_shape(model, (self.n_features_in_,))
        if not isinstance(shape, fnn.Shape) or tuple(shape) != (outputs,):
            raise ValueError(
                f"{type(self).__name__}: the model's outputs must have shape ({outputs},) for this data "
                f"(one per {'class' if self._loss != 'mse' else 'target'}), got {shape}"
            )
        return model

    def _optimizer(self) -> Any:
        if self.learning_rate is None:
            return fnn.optimizers.get(self.optimizer)
        return fnn.optimizers.get(self.optimizer, learning_rate=self.learning_rate)

    def _train(self, x: np.ndarray, y: np.ndarray, epochs: int, *, start: bool) -> None:
        """``fnn.fit`` from scratch (``start``) or on from the fitted state, for ``epochs`` more epochs."""
        options = dict(
            loss=self._loss, optimizer=self._optimizer(), batch_size=min(self.batch_size, len(x)), seed=self.seed,
            verbose=self.verbose, callbacks=list(self.callbacks or ()), validation_split=self.validation_split,
        )  # fmt: skip
        if start:
            self.model_ = self._build()
            history = fnn.fit(self.model_, x, y, epochs=epochs, **options)
            self.n_iter_ = 0
        elif getattr(self, "train_state_", None) is None:  # unpickled: params kept, optimiser state not
            history = fnn.fit(
                self.model_, x, y, epochs=epochs, params=self.params_, state=self.state_, **options
            )
        else:
            history = fnn.fit(
                self.model_, x, y, train_state=self.train_state_, initial_epoch=self.n_iter_,
                epochs=self.n_iter_ + epochs, **options,
            )  # fmt: skip
        self.history_ = history
        self.train_state_ = history.train_state
        self.params_, self.state_ = history.params, history.state
        self.n_iter_ += len(history.epochs)

    def _forward(self, x: Any) -> np.ndarray:
        check_is_fitted(self)
        x = validate_data(self, x, reset=False, dtype=np.float32)
        # Always whole batches of _PREDICT_BATCH rows: one program for any number of examples, so
        # an example's prediction never depends on how many came with it (XLA compiles each batch
        # size its own way, and float sums may round differently).
        rows = -len(x) % _PREDICT_BATCH
        padded = np.concatenate([x, np.zeros((rows, x.shape[1]), x.dtype)]) if rows else x
        out = fnn.predict(self.model_, self.params_, self.state_, padded, batch_size=_PREDICT_BATCH)
        return np.asarray(out, np.float64)[: len(x)]

    # -- pickling: arrays as NumPy, the model rebuilt from the hyper-parameters ------------------

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in ("model_", "history_", "train_state_"):
            state.pop(name, None)
        for name in ("params_", "state_"):
            if name in state:
                state[name] = jax.tree.map(np.asarray, state[name])
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "params_" in state:
            self.model_ = self._build()
            self.train_state_ = None

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False  # the same seed gives the same model
        return tags


class FnnClassifier(ClassifierMixin, _FnnEstimator):
    """A scikit-learn classifier that trains an fnn model with ``fnn.fit``.

    Labels of any type are encoded as ``0 .. n_classes - 1``; the model gives
    one logit per class and learns with sparse categorical cross-entropy;
    ``predict_proba`` is their softmax. Inputs are cast to float32, as
    scikit-learn's own estimators cast theirs.

    Args:
        model: ``None`` for an MLP (``hidden_layer_sizes``, ``activation``,
            ``dropout``), a function ``n_classes -> Layer`` giving logits, or a Layer.
        hidden_layer_sizes: the MLP's hidden units, as ``MLPClassifier``'s.
        activation: the MLP's hidden activation.
        dropout: the MLP's dropout rate after each hidden layer (0: none).
        optimizer: an optimiser name or optax transformation (``fnn.optimizers.get``).
        learning_rate: the optimiser's rate (``None``: its default).
        epochs: epochs ``fit`` trains.
        batch_size: examples per step (at most the number of examples).
        validation_split: held out for validation, as in ``fnn.fit``.
        callbacks: ``fnn`` callbacks (e.g. ``fnn.EarlyStopping``).
        seed: seeds initialisation, shuffling and dropout: the same seed, the same model.
        verbose: ``fnn.fit``'s verbosity.

    Attributes:
        classes_: the labels, sorted.
        n_features_in_: the number of input features.
        model_: the fnn model; ``params_``, ``state_``: its trained parameters and state.
        history_: the last training's ``fnn.History``; ``n_iter_``: epochs trained.

    Examples:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> x, y = load_iris(return_X_y=True)
        >>> clf = FnnClassifier(hidden_layer_sizes=(16,), optimizer="sgd", learning_rate=0.1, epochs=30)
        >>> clf = make_pipeline(StandardScaler(), clf).fit(x, y)
        >>> round(clf.score(x, y), 2) >= 0.9, clf.predict_proba(x[:2]).shape
        (True, (2, 3))
    """

    _loss = "sparse_categorical_crossentropy"

    def _targets(self, y: Any, first: bool, classes: Any = None) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(
                    f"FnnClassifier needs examples of at least 2 classes, got 1 class: {self.classes_.tolist()[0]!r}"
                )
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"FnnClassifier: labels {unknown.tolist()} are not among classes_ {self.classes_.tolist()}"
            )
        return np.searchsorted(self.classes_, y).astype(np.int32)

    def _outputs(self) -> int:
        return len(self.classes_)

    def fit(self, X: Any, y: Any) -> FnnClassifier:
        """Trains a new model on ``X`` ``(n, features)`` and labels ``y`` ``(n,)`` for ``epochs`` epochs."""
        x, y = validate_data(self, X, y, dtype=np.float32)
        self._train(x, self._targets(y, first=True), self.epochs, start=True)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> FnnClassifier:
        """Trains one more epoch on ``X``, ``y`` (the first call needs ``classes``: every label there will be)."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("FnnClassifier.partial_fit: the first call needs classes= (all the labels)")
        x, y = validate_data(self, X, y, dtype=np.float32, reset=first)
        self._train(x, self._targets(y, first, classes), 1, start=first)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, float64, in the order of ``classes_``."""
        logits = self._forward(X)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most likely label of each example ``(n,)``."""
        logits = self._forward(X)
        return self.classes_[np.argmax(logits, axis=1)]


class FnnRegressor(RegressorMixin, _FnnEstimator):
    """A scikit-learn regressor that trains an fnn model with ``fnn.fit`` (mean squared error).

    Takes the arguments of :class:`FnnClassifier`; ``model`` functions get the
    number of targets. ``y`` may be ``(n,)`` or ``(n, targets)``; ``predict``
    answers in the same shape. Inputs and targets are cast to float32.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(200, 3))
        >>> y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
        >>> reg = FnnRegressor(hidden_layer_sizes=(), optimizer="sgd", learning_rate=0.05, epochs=30).fit(x, y)
        >>> round(reg.score(x, y), 3)
        1.0
    """

    _loss = "mse"

    def _targets(self, y: Any, first: bool) -> np.ndarray:
        y = np.asarray(y, np.float32)
        if first:
            self._one_d = y.ndim == 1
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        return y.reshape(len(y), -1)

    def _outputs(self) -> int:
        return self.n_outputs_

    def fit(self, X: Any, y: Any) -> FnnRegressor:
        """Trains a new model on ``X`` ``(n, features)`` and targets ``y`` ``(n,)`` or ``(n, targets)``."""
        x, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True)
        self._train(x, self._targets(y, first=True), self.epochs, start=True)
        return self

    def partial_fit(self, X: Any, y: Any) -> FnnRegressor:
        """Trains one more epoch on ``X``, ``y``."""
        first = not hasattr(self, "n_outputs_")
        x, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True, reset=first)
        self._train(x, self._targets(y, first), 1, start=first)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``(n,)`` (or ``(n, targets)`` when trained on several)."""
        out = self._forward(X)
        return out[:, 0] if self._one_d else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
