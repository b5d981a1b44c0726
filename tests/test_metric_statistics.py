"""Issue 22: exact metrics from additive sufficient statistics, summed over batches by evaluate."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn import metrics
from fnn.train._step import compute_logs
from tests.fitting import digits

N, CUTS = 23, (0, 5, 16, 23)  # uneven batches of 5, 11 and 7 (for a plain function's fallback)
rng = np.random.default_rng(0)
LABELS = rng.integers(0, 4, N).astype(np.int32)
SCORES = rng.normal(size=(N, 4)).astype(np.float32)
BINARY = rng.integers(0, 2, (N, 2)).astype(np.int32)
PROBS = rng.uniform(size=(N, 2)).astype(np.float32)
TARGETS = rng.normal(size=(N, 3)).astype(np.float32)
PREDS = (TARGETS + rng.normal(size=(N, 3))).astype(np.float32)
SEQ_LABELS = rng.integers(0, 4, (N, 3)).astype(np.int32)
SEQ_SCORES = rng.normal(size=(N, 3, 4)).astype(np.float32)
BINARY_1D, PROBS_1D = BINARY[:, 0], PROBS[:, 0]

CASES = {  # every built-in metric (and partials with their options), with data it takes
    "accuracy sparse": ("accuracy", LABELS, SCORES),
    "accuracy categorical": ("accuracy", np.eye(4, dtype=np.float32)[LABELS], SCORES),
    "binary_accuracy": ("binary_accuracy", BINARY, PROBS),
    "categorical_accuracy": ("categorical_accuracy", np.eye(4, dtype=np.float32)[LABELS], SCORES),
    "sparse_categorical_accuracy": ("sparse_categorical_accuracy", SEQ_LABELS, SEQ_SCORES),
    "top_k_accuracy k=2": (functools.partial(metrics.top_k_accuracy, k=2), LABELS, SCORES),
    "precision binary": ("precision", BINARY, PROBS),
    "recall weighted": (functools.partial(metrics.recall, num_classes=4, average="weighted"), LABELS, SCORES),
    "f1 micro": (functools.partial(metrics.f1_score, num_classes=4, average="micro"), LABELS, SCORES),
    "precision per class": (
        functools.partial(metrics.precision, num_classes=4, average=None),
        LABELS,
        SCORES,
    ),
    "iou": (functools.partial(metrics.iou, num_classes=4), SEQ_LABELS, SEQ_SCORES),
    "auc ROC": ("auc", BINARY_1D, PROBS_1D),
    "perplexity": ("perplexity", SEQ_LABELS, SEQ_SCORES),
    "mae": ("mae", TARGETS, PREDS),
    "rmse": ("rmse", TARGETS, PREDS),
    "r2_score": ("r2_score", TARGETS + 3.0, PREDS + 3.0),
    "confusion_matrix": (functools.partial(metrics.confusion_matrix, num_classes=4), LABELS, SCORES),
}


def host_sum(parts):
    """Sums statistics as evaluate does: leaf by leaf, in float64 on the host."""
    return jax.tree.map(lambda *leaves: sum(np.asarray(a, np.float64) for a in leaves), *parts)


CUT = 9  # batches of 9 and 14 rows; the second with weight 0 (padding, NaN scores) on every third row
KEEP = np.arange(N - CUT) % 3 != 1
KEPT = np.concatenate([np.ones(CUT, bool), KEEP])


@jax.jit  # every case in one compiled call: eagerly, each op of each batch shape compiles alone
def all_cases(data):
    out = {}
    for case, (metric, _, _) in CASES.items():
        y_true, y_pred, y_true_kept, y_pred_kept = data[case]
        stats, result = metrics.statistics(metric)
        padded = jnp.where(KEEP.reshape((-1,) + (1,) * (y_pred.ndim - 1)), y_pred[CUT:], jnp.nan)
        parts = [stats(y_true[:CUT], y_pred[:CUT]), stats(y_true[CUT:], padded, sample_weight=KEEP)]
        summed = jax.tree.map(lambda a, b: a + b, *parts)
        out[case] = result(summed), metrics.get(metric)(y_true_kept, y_pred_kept)
        if (
            case == "auc ROC"
        ):  # the PR curve's statistics are the same counts: its own result, bound by partial
            pr = metrics.statistics(functools.partial(metrics.auc, curve="PR"))
            out["auc PR"] = pr.result(summed), metrics.auc(y_true_kept, y_pred_kept, curve="PR")
    stats, result = metrics.statistics("binary_accuracy")
    counted = stats(BINARY, PROBS, sample_weight=np.arange(N) % 2)  # integer weights: exact int32 counts
    weighted = result(stats(BINARY, PROBS, sample_weight=data["float weights"]))
    return out, counted, weighted


def test_every_metric_from_statistics_of_uneven_padded_batches_equals_its_value_on_all_data():
    data = {case: (t, p, t[KEPT], p[KEPT]) for case, (_, t, p) in CASES.items()}
    weight = rng.uniform(size=N).astype(np.float32)
    out, counted, weighted = all_cases({**data, "float weights": weight})
    assert set(out) == {*CASES, "auc PR"}
    for case, (summed, whole) in out.items():
        # R² loses float32 digits in SS_tot = sum(t^2) - sum(t)^2 / n (Keras's R2Score formula).
        rtol = 1e-4 if case == "r2_score" else 2e-6
        np.testing.assert_allclose(summed, whole, rtol=rtol, atol=1e-6, err_msg=case)
    assert counted["total"].dtype == jnp.int32 and int(counted["count"]) == 2 * (N // 2)
    hits = (PROBS > 0.5) == (BINARY > 0.5)
    expected = np.average(hits, weights=np.broadcast_to(weight[:, None], hits.shape))
    np.testing.assert_allclose(weighted, expected, rtol=1e-6)


def test_a_plain_function_falls_back_to_the_example_weighted_mean_of_its_batch_values():
    def largest_error(y_true, y_pred):
        return jnp.max(jnp.abs(y_pred - y_true))

    stats, result = metrics.statistics(largest_error)
    sizes = np.diff(CUTS)
    values = [np.max(np.abs(PREDS[a:b] - TARGETS[a:b])) for a, b in zip(CUTS, CUTS[1:])]
    parts = [stats(TARGETS[a:b], PREDS[a:b]) for a, b in zip(CUTS, CUTS[1:])]
    np.testing.assert_allclose(result(host_sum(parts)), np.average(values, weights=sizes), rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"statistics: largest_error has no statistics .* pass sample_weight=None"
    ):
        stats(TARGETS, PREDS, sample_weight=np.ones(N))


def test_statistics_errors_name_the_metric_and_the_fix():
    with pytest.raises(TypeError, match=r"statistics: iou needs num_classes=\.\.\.; pass functools.partial"):
        metrics.statistics(metrics.iou)
    with pytest.raises(TypeError, match=r"statistics: auc takes no option 'curves'; its options are"):
        metrics.statistics(functools.partial(metrics.auc, curves="PR"))
    with pytest.raises(ValueError, match=r"precision: average must be 'macro', 'micro', 'weighted' or None"):
        metrics.statistics(functools.partial(metrics.precision, average="mean"))
    with pytest.raises(
        ValueError, match=r"mean_absolute_error: sample_weight must have shape \(23,\) .* got \(3,\)"
    ):
        metrics.statistics("mae").stats(TARGETS, PREDS, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"unknown metric 'nope'"):
        metrics.statistics("nope")


# ------------------------------------------------------------------------------------- evaluate

TRACES: list[int] = []
MODEL = fnn.Sequential([fnn.Dense(3), fnn.Lambda(lambda h: (TRACES.append(1), h)[1])])
PARAMS, STATE = MODEL.init(jax.random.key(0), (4,))
X = rng.normal(size=(N, 4)).astype(np.float32)
Y = rng.integers(0, 3, N).astype(np.int32)
WEIGHT = rng.uniform(0.5, 1.5, N).astype(np.float32)
METRICS = {
    "accuracy": "accuracy",
    "perplexity": "perplexity",
    "f1": functools.partial(metrics.f1_score, num_classes=3),
    "iou": functools.partial(metrics.iou, num_classes=3),
}
LOSS = "sparse_categorical_crossentropy"


def stream(size):
    for a in range(0, N, size):
        yield X[a : a + size], Y[a : a + size], WEIGHT[a : a + size]


def test_evaluate_on_arrays_equals_a_stream_and_the_old_concatenate_then_compute_values():
    options = dict(loss=LOSS, metrics=METRICS)
    TRACES.clear()
    arrays = fnn.evaluate(MODEL, PARAMS, STATE, X, Y, sample_weight=WEIGHT, batch_size=8, **options)
    first = len(TRACES)
    again = fnn.evaluate(MODEL, PARAMS, STATE, X, Y, sample_weight=WEIGHT, batch_size=8, **options)
    # The checks trace each call; the batches of 8 and the last of 7 compile once, in the first.
    assert arrays == again and first - (len(TRACES) - first) == 2
    assert fnn.evaluate(MODEL, PARAMS, STATE, stream(8), **options) == arrays
    # The old evaluate: all outputs at once, then the loss and metrics once (jitted: a single compile).
    logs = jax.jit(lambda *a: compute_logs(LOSS, None, METRICS, *a))(
        Y, MODEL.apply(PARAMS, STATE, X, train=False)[0], WEIGHT
    )
    assert sorted(arrays) == sorted(logs)
    for name, value in logs.items():
        assert arrays[name] == pytest.approx(float(value), rel=2e-6), name


def test_evaluate_sums_each_output_loss_and_the_weighted_total():
    model = fnn.Sequential([fnn.Dense(3), fnn.Lambda(lambda h: {"age": h[:, :1], "kind": h}, name="named")])
    params, state = model.init(jax.random.key(1), (4,))
    y = {"age": X[:, :1] * 2, "kind": Y}
    options = dict(loss={"age": "mse", "kind": LOSS}, loss_weights={"age": 0.5, "kind": 2.0})
    options["metrics"] = {"age": ["mae", "r2_score"], "kind": ["accuracy"]}
    x, y = X[:20], jax.tree.map(lambda a: a[:20], y)
    logs = fnn.evaluate(model, params, state, x, y, batch_size=10, **options)  # one shape: one compile
    whole = model.apply(params, state, x, train=False)[0]
    spec = options["loss"], options["loss_weights"], options["metrics"]
    reference = jax.jit(lambda *a: compute_logs(*spec, *a))(y, whole)
    assert sorted(logs) == sorted(reference)
    for name, value in reference.items():
        assert logs[name] == pytest.approx(float(value), rel=2e-6), name


def test_evaluate_over_a_long_stream_keeps_no_outputs_and_checks_each_batch_labels():
    live = []

    def batches():
        for i in range(40):
            live.append(len(jax.live_arrays()))
            yield X[:4] + i, Y[:4]

    fnn.evaluate(MODEL, PARAMS, STATE, batches(), loss=LOSS, metrics=["accuracy"])
    # Kept outputs would add an array per batch; the prefetch queue and one pending batch are bounded.
    assert max(live[20:]) <= live[5] + 6, live
    bad = Y.copy()
    bad[13] = 3
    with pytest.raises(ValueError, match=r"evaluate: y holds label 3 at index \(13,\)"):
        fnn.evaluate(MODEL, PARAMS, STATE, ((X[a : a + 8], bad[a : a + 8]) for a in (0, 8, 16)), loss=LOSS)


@pytest.mark.standard_promotion  # optax inside
def test_fit_logs_the_epochs_training_metrics_exactly_not_a_mean_of_batch_values():
    x, y = digits(100)
    model = fnn.Dense(10)
    f1 = functools.partial(fnn.metrics.f1_score, num_classes=10, average="macro")
    history = fnn.fit(
        model, x, y, loss="sparse_categorical_crossentropy", optimizer=optax.sgd(0.0), metrics={"f1": f1},
        epochs=1, batch_size=5, shuffle=False, verbose=0,
    )  # fmt: skip
    scores = np.asarray(fnn.predict(model, history.params, history.state, x))  # the rate is 0: as in training
    exact = float(f1(y, scores))
    batch_mean = sum(float(f1(y[i : i + 5], scores[i : i + 5])) * 5 for i in range(0, 100, 5))
    assert history.history["f1"][0] == pytest.approx(exact, rel=1e-5)
    assert abs(batch_mean / 100 - exact) > 0.015  # what averaging batch values would have logged (0.033 off)
