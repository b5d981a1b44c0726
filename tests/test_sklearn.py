"""fnn.sklearn: scikit-learn's own estimator checks, model selection, partial_fit, pickling, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fnn
from fnn.sklearn import FnnClassifier, FnnRegressor

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


def iris():
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y


# scikit-learn's whole check_estimator suite, one test per check; none is expected to fail (two skip
# themselves: the array-API checks, without SCIPY_ARRAY_API set). The checks are about the estimator
# contract, which the MLP and the linear model share (the model is the only difference), and their
# training data is easy (blobs, iris, a linear regression): a linear model with SGD trains them for 20
# epochs in 35 s of the suite's time instead of 130 s (each check's data has its own shapes, so its
# fits compile their own programs).
LINEAR = dict(hidden_layer_sizes=(), optimizer="sgd", learning_rate=0.1, epochs=20)


@parametrize_with_checks([FnnClassifier(**LINEAR), FnnRegressor(**LINEAR)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_grid_search_and_cross_validation_in_a_pipeline():
    x, y = iris()
    search = GridSearchCV(
        FnnClassifier(hidden_layer_sizes=(8,), optimizer="sgd", epochs=10),
        {"learning_rate": [1e-3, 0.3]},
        cv=2,
    ).fit(x, y)
    assert search.best_params_ == {"learning_rate": 0.3} and search.best_score_ > 0.8
    assert list(search.cv_results_["param_learning_rate"]) == [1e-3, 0.3]
    pipeline = make_pipeline(
        StandardScaler(), FnnClassifier(hidden_layer_sizes=(8,), learning_rate=0.03, epochs=10)
    )
    scores = cross_val_score(pipeline, *load_iris(return_X_y=True), cv=2)
    assert scores.shape == (2,) and scores.min() > 0.8


def test_partial_fit_epochs_are_fits_epochs():
    x, y = iris()
    options = dict(hidden_layer_sizes=(8,), dropout=0.1, optimizer="sgd", seed=3)
    stepwise = FnnClassifier(**options)
    for _ in range(3):
        stepwise.partial_fit(x, y, classes=[0, 1, 2])
    whole = FnnClassifier(**options, epochs=3).fit(x, y)
    assert stepwise.n_iter_ == whole.n_iter_ == 3
    np.testing.assert_array_equal(stepwise.predict_proba(x), whole.predict_proba(x))


def test_a_pickled_estimator_predicts_the_same_and_trains_on():
    x, y = iris()
    fitted = FnnClassifier(epochs=5, hidden_layer_sizes=(8,), optimizer="sgd").fit(x, y)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(x), fitted.predict_proba(x))
    assert restored.partial_fit(x, y).n_iter_ == 6
    assert clone(fitted).get_params() == fitted.get_params() and not hasattr(clone(fitted), "model_")


def test_a_model_function_builds_for_the_classes_and_a_regressor_keeps_ys_shape():
    x, y = iris()

    def model(outputs):
        return fnn.Sequential([fnn.Dense(8, "tanh"), fnn.Dense(outputs)])

    clf = FnnClassifier(model, optimizer="sgd", learning_rate=0.3, epochs=10).fit(
        x, np.array(["setosa", "versicolor", "virginica"])[y]
    )
    assert clf.predict(x[:3]).tolist() == ["setosa"] * 3 and clf.model_.init is not None
    targets = np.stack([x[:, 0], -x[:, 1]], axis=1)
    reg = FnnRegressor(model, epochs=10, learning_rate=1e-2).fit(x, targets)
    assert reg.predict(x).shape == (150, 2) and FnnRegressor(epochs=2).fit(x, x[:, 0]).predict(x).shape == (
        150,
    )


def test_wrong_models_and_labels_are_named():
    x, y = iris()
    with pytest.raises(
        ValueError,
        match=r"model's outputs must have shape \(3,\) for this data \(one per class\), got \(5,\)",
    ):
        FnnClassifier(fnn.Dense(5), epochs=1).fit(x, y)
    with pytest.raises(
        TypeError, match="model must be an fnn Layer or a function n_outputs -> Layer, got str"
    ):
        FnnClassifier(lambda n: "dense", epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="the first call needs classes="):
        FnnClassifier().partial_fit(x, y)
    fitted = FnnClassifier(epochs=1).partial_fit(x[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(ValueError, match=r"labels \[2\] are not among classes_ \[0, 1\]"):
        fitted.partial_fit(x, y)
    with pytest.raises(ValueError, match="at least 2 classes, got 1 class: 0"):
        FnnClassifier(epochs=1).fit(x[:10], y[:10])
