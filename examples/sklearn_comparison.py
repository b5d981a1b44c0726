"""An fnn MLP beside scikit-learn's classic models, on the same split, through fnn.sklearn.

"Compare to more traditional ML models": fnn.sklearn.FnnClassifier is a
scikit-learn estimator, so the MLP sits in a Pipeline with the scaler and is
scored exactly as logistic regression, a random forest and gradient boosting
are: the same split of the breast-cancer data, the same cross-validation.

Run: python examples/sklearn_comparison.py   (prints `fnn MLP test accuracy: X` last)
"""

import os
import time

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fnn.sklearn import FnnClassifier

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the MLP's training seed; the split stays fixed
EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 60))
FOLDS = int(os.environ.get("FNN_EXAMPLE_FOLDS", 5))  # the suite runs 2
x, y = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)

models = {
    "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "random forest": RandomForestClassifier(n_estimators=200, random_state=0),
    "gradient boosting": GradientBoostingClassifier(random_state=0),
    "fnn MLP": make_pipeline(
        StandardScaler(), FnnClassifier(hidden_layer_sizes=(32, 16), dropout=0.2, epochs=EPOCHS, seed=SEED)
    ),
}
print(f"{len(x_train)} training and {len(x_test)} test tumours, {x.shape[1]} features")
print(f"{'model':<20} {f'{FOLDS}-fold CV accuracy':>20} {'test accuracy':>14} {'seconds':>8}")
scores = {}
for name, model in models.items():
    started = time.perf_counter()
    cv = cross_val_score(model, x_train, y_train, cv=FOLDS)
    scores[name] = model.fit(x_train, y_train).score(x_test, y_test)
    seconds = time.perf_counter() - started
    print(f"{name:<20} {cv.mean():>13.3f} ± {cv.std():.3f} {scores[name]:>14.3f} {seconds:>8.1f}")
print(f"fnn MLP test accuracy: {scores['fnn MLP']:.3f}")
