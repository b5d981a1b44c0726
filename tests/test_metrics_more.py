"""AUC, averaged precision/recall/F1, IoU and perplexity against scikit-learn and NumPy."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import sklearn.metrics as skm

from fnn import metrics

N = 50


def binary_data(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=N).astype(np.int32)
    # Informative but overlapping scores in (0, 1).
    scores = np.clip(0.3 * labels + 0.7 * rng.random(N), 0.0, 1.0).astype(np.float32)
    return labels, scores


def numpy_counts(labels, scores, num_thresholds):
    """Keras's thresholds and counts by brute-force comparison, in float64 where possible."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = np.asarray([-1e-7, *inner, 1 + 1e-7], np.float32)
    above = scores[:, None] > thresholds[None, :]
    pos = labels[:, None] > 0.5
    tp, fp = (above & pos).sum(0), (above & ~pos).sum(0)
    return tp, fp, (~above & ~pos).sum(0), (~above & pos).sum(0)


def numpy_pr_auc(tp, fp, fn):
    """Area under precision(recall) with tp, fp linear between thresholds, by fine quadrature."""
    total = 0.0
    for i in range(len(tp) - 1):
        if tp[i] == tp[i + 1]:
            continue  # recall does not move: no area
        s = (np.arange(2000) + 0.5) / 2000  # midpoint rule along the segment
        tp_s = tp[i + 1] + s * (tp[i] - tp[i + 1])
        p_s = tp_s + fp[i + 1] + s * (fp[i] - fp[i + 1])
        total += np.mean(tp_s / p_s) * (tp[i] - tp[i + 1]) / (tp[0] + fn[0])
    return total


# One compilation per shape, instead of one per primitive per shape when run eagerly.
auc_counts = jax.jit(metrics.auc_counts, static_argnums=2)
auc_from_counts = jax.jit(metrics.auc_from_counts, static_argnums=1)


def test_auc_matches_sklearn_and_numpy():
    labels, scores = binary_data()
    counts = auc_counts(labels, scores, 200)
    for got, want in zip(counts, numpy_counts(labels, scores, 200)):
        np.testing.assert_array_equal(got, want)
    roc, pr = auc_from_counts(counts, "ROC"), auc_from_counts(counts, "PR")
    # 200 thresholds put scores closer than 1/199 in one bucket, where the curve counts them as
    # tied (half credit); on 50 scores that moves the AUC by well under 1e-2.
    np.testing.assert_allclose(roc, skm.roc_auc_score(labels, scores), atol=1e-2)
    # Keras integrates precision linearly interpolated between operating points (Davis &
    # Goadrich), scikit-learn's average precision is a step sum over them: they differ by about
    # the precision change between neighbouring points, a few 1e-2 on 50 examples.
    np.testing.assert_allclose(pr, skm.average_precision_score(labels, scores), atol=5e-2)
    tp, fp, _, fn = (c.astype(np.float64) for c in numpy_counts(labels, scores, 200))
    np.testing.assert_allclose(pr, numpy_pr_auc(tp, fp, fn), rtol=1e-4)


def test_auc_is_exact_on_the_threshold_grid():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=N).astype(np.int32)
    # Scores k/10, k = 1..10 (ties included), one per bucket (threshold k-1, threshold k] of
    # num_thresholds=11: every distinct score is its own operating point, so the trapezoidal ROC
    # AUC is scikit-learn's exactly (0 and 0.1 would share the first bucket).
    scores = (rng.integers(1, 11, size=N) / 10).astype(np.float32)
    counts = auc_counts(labels, scores, 11)
    np.testing.assert_allclose(auc_from_counts(counts, "ROC"), skm.roc_auc_score(labels, scores), rtol=1e-6)
    tp, fp, _, fn = (c.astype(np.float64) for c in numpy_counts(labels, scores, 11))
    np.testing.assert_allclose(auc_from_counts(counts, "PR"), numpy_pr_auc(tp, fp, fn), rtol=1e-4)
    # Perfect ranking and its reverse (scores exactly 0 and 1 fall inside the end thresholds).
    perfect = labels.astype(np.float32)
    assert float(auc_from_counts(auc_counts(labels, perfect, 11), "ROC")) == 1.0
    assert float(auc_from_counts(auc_counts(labels, 1 - perfect, 11), "ROC")) == 0.0


def test_auc_counts_summed_over_batches_give_the_whole_set_auc():
    labels, _ = binary_data(2)
    # Logits, so that auc's from_logits is checked against the counts of their probabilities.
    logits = np.random.default_rng(7).normal(size=N).astype(np.float32) + labels
    scores = jax.nn.sigmoid(logits)
    parts = [auc_counts(labels[a:b], scores[a:b], 200) for a, b in ((0, 25), (25, N))]
    summed = tuple(parts[0][k] + parts[1][k] for k in range(4))
    whole = auc_counts(labels, scores, 200)
    for got, want in zip(summed, whole):
        np.testing.assert_array_equal(got, want)
    # auc itself under jit and vmap (one AUC per row).
    per_half = jax.jit(jax.vmap(functools.partial(metrics.auc, curve="PR", from_logits=True)))(
        labels.reshape(2, 25), logits.reshape(2, 25)
    )
    for half, part in zip(per_half, parts):
        np.testing.assert_allclose(half, auc_from_counts(part, "PR"), rtol=1e-6)


def test_auc_errors():
    labels, scores = binary_data()
    with pytest.raises(ValueError, match="auc: curve must be 'ROC' or 'PR', got 'roc'"):
        metrics.auc(labels, scores, curve="roc")
    with pytest.raises(ValueError, match="auc_counts: num_thresholds must be an int >= 2, got 1"):
        metrics.auc(labels, scores, num_thresholds=1)
    with pytest.raises(TypeError, match="auc_counts: y_pred must be floating point, got int32"):
        metrics.auc(labels, labels)
    with pytest.raises(ValueError, match="auc_counts"):
        metrics.auc(labels, scores[:-1])
    with pytest.raises(ValueError, match=r"counts must be four arrays of one shape .* got shapes"):
        metrics.auc_from_counts((np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(2)))
    with pytest.raises(ValueError, match="counts must be \\(tp, fp, tn, fn\\), got 2 arrays"):
        metrics.auc_from_counts((np.zeros(3), np.zeros(3)))


AVERAGES = ("macro", "micro", "weighted", None)
PRF = (metrics.precision, metrics.recall, metrics.f1_score)


def test_averages_match_sklearn():
    rng = np.random.default_rng(3)
    # Class 3 is never a target but may be predicted: zero support, zero division.
    labels = rng.integers(0, 3, size=N).astype(np.int32)
    scores = rng.normal(size=(N, 4)).astype(np.float32)

    @jax.jit  # every average of every metric in one compilation
    def all_averages(labels, scores):
        return [[fn(labels, scores, num_classes=4, average=a) for fn in PRF] for a in AVERAGES]

    for average, got in zip(AVERAGES, all_averages(labels, scores)):
        want = skm.precision_recall_fscore_support(
            labels, scores.argmax(-1), labels=range(4), average=average, zero_division=0
        )[:3]
        for g, w in zip(got, want):
            assert g.shape == np.shape(w)
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_binary_averages_are_the_binary_value():
    labels, scores = binary_data(4)
    got = jax.jit(lambda t, p: [[fn(t, p, average=a) for a in AVERAGES[:3]] for fn in PRF])(labels, scores)
    for values, sk in zip(got, (skm.precision_score, skm.recall_score, skm.f1_score)):
        np.testing.assert_allclose(values, [sk(labels, scores > 0.5, zero_division=0)] * 3, rtol=1e-6)
    with pytest.raises(
        ValueError, match="precision: average=None returns one value per class, so it needs num_classes"
    ):
        metrics.precision(labels, scores, average=None)
    with pytest.raises(
        ValueError, match="f1_score: average must be 'macro', 'micro', 'weighted' or None, got 'samples'"
    ):
        metrics.f1_score(labels, scores, average="samples")


def test_iou_matches_keras_semantics_and_sklearn():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, size=N).astype(np.int32)
    pred = rng.integers(0, 3, size=N).astype(np.int32)
    both = jax.jit(
        lambda t, p: (metrics.iou(t, p, num_classes=4, average=None), metrics.iou(t, p, num_classes=4))
    )
    per_class, mean = both(labels, pred)
    want = skm.jaccard_score(labels, pred, labels=range(4), average=None, zero_division=0)
    np.testing.assert_allclose(per_class, want, rtol=1e-6)
    # Class 3 occurs in neither: Keras's MeanIoU leaves it out of the mean (scikit-learn's
    # macro average over labels=range(4) would count it as 0).
    np.testing.assert_allclose(mean, skm.jaccard_score(labels, pred, average="macro"), rtol=1e-6)
    with pytest.raises(ValueError, match="iou: average must be 'macro' or None, got 'micro'"):
        metrics.iou(labels, pred, num_classes=3, average="micro")
    with pytest.raises(ValueError, match="iou: num_classes must be a positive int, got 0"):
        metrics.iou(labels, pred, num_classes=0)


def test_perplexity_matches_numpy():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 5, size=(10, 3)).astype(np.int32)
    logits = rng.normal(size=(10, 3, 5)).astype(np.float32)
    x = logits.astype(np.float64)
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    want = np.exp(-np.take_along_axis(log_probs, labels[..., None], -1).mean())
    np.testing.assert_allclose(jax.jit(metrics.perplexity)(labels, logits), want, rtol=1e-5)
    # d exp(mean CE) / d logits = perplexity * (softmax - one_hot) / positions, in closed form.
    grad = jax.jit(jax.grad(metrics.perplexity, argnums=1))(labels, logits)
    expected_grad = want * (np.exp(log_probs) - np.eye(5)[labels]) / labels.size
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)
    with pytest.raises(TypeError, match="perplexity: y_true must hold integer class indices, got float32"):
        metrics.perplexity(labels.astype(np.float32), logits)
    with pytest.raises(TypeError, match="perplexity: y_pred must be floating point, got int32"):
        metrics.perplexity(labels, labels[..., None])
    with pytest.raises(ValueError, match="perplexity: expects y_true of shape"):
        metrics.perplexity(labels[:, :2], logits)


def test_registry_and_direction():
    assert metrics.get("auc") is metrics.auc
    assert metrics.get("perplexity") is metrics.perplexity
    assert (metrics.better("val_auc"), metrics.better("val_iou"), metrics.better("perplexity")) == (
        "max",
        "max",
        "min",
    )
    # Metrics with a required option go in by partial, under a display name.
    resolved = metrics.resolve_all({"iou": functools.partial(metrics.iou, num_classes=3)})
    assert resolved["iou"].func is metrics.iou and resolved["iou"].keywords == {"num_classes": 3}
