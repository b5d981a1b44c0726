"""The pure train and eval steps: correctness, determinism, no retracing, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

import fnn

pytestmark = pytest.mark.standard_promotion


def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int32)


def train(seed, steps=30):
    x, y = digits()
    model = fnn.Sequential([fnn.Dense(32, "relu"), fnn.Dropout(0.2), fnn.Dense(10)])
    tx = fnn.optimizers.get("adam", learning_rate=1e-2)
    step = jax.jit(fnn.make_train_step(model, "sparse_categorical_crossentropy", tx, ["accuracy"]))
    key = jax.random.key(seed)
    params, state = model.init(key, (64,))
    opt_state = tx.init(params)
    history = []
    for i in range(steps):
        batch = (x[i * 32 % 1700 :][:32], y[i * 32 % 1700 :][:32])
        params, state, opt_state, logs = step(params, state, opt_state, batch, jax.random.fold_in(key, i))
        history.append(logs)
    return model, params, state, history


def test_same_seed_gives_bitwise_the_same_parameters():
    _, p1, _, _ = train(seed=1)
    _, p2, _, _ = train(seed=1)
    _, p3, _, _ = train(seed=2)
    jax.tree.map(np.testing.assert_array_equal, p1, p2)
    assert not np.array_equal(p1["dense"]["w"], p3["dense"]["w"])


def test_training_reduces_the_loss_and_evaluates():
    model, params, state, history = train(seed=0, steps=60)
    assert float(history[-1]["loss"]) < 0.5 * float(history[0]["loss"])
    x, y = digits()
    logs = jax.jit(fnn.make_eval_step(model, "sparse_categorical_crossentropy", ["accuracy"]))(
        params, state, (x, y)
    )
    assert float(logs["accuracy"]) > 0.85


def test_train_step_equals_a_hand_written_optax_step():
    model = fnn.Dense(2)
    params, state = model.init(jax.random.key(0), (3,))
    tx = optax.sgd(0.1, momentum=0.9)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).normal(size=(4, 2)), jnp.float32)
    w = jnp.array([1.0, 0.0, 2.0, 1.0])
    new_params, _, _, logs = fnn.make_train_step(model, "mse", tx)(
        params, state, tx.init(params), (x, y, w), None
    )

    def loss(p):
        per_example = jnp.mean((x @ p["w"] + p["b"][None, :] - y) ** 2, axis=1)
        return jnp.mean(per_example * w)

    value, grads = jax.value_and_grad(loss)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = optax.apply_updates(params, updates)
    np.testing.assert_allclose(logs["loss"], value, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_params, expected)


def test_metrics_are_computed_before_the_update_and_named():
    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = y[:, None].astype(np.float32)
    model = fnn.Dense(1)
    params, state = model.init(jax.random.key(0), (30,))
    metrics = {"acc": lambda t, p: fnn.metrics.binary_accuracy(t, p, threshold=0.0)}
    step = fnn.make_train_step(model, "binary_crossentropy", "sgd", metrics)
    _, _, _, logs = step(params, state, fnn.optimizers.get("sgd").init(params), (x, y), None)
    logits, _ = model.apply(params, state, x, train=False)
    np.testing.assert_allclose(logs["acc"], fnn.metrics.binary_accuracy(y, logits, threshold=0.0))
    assert sorted(logs) == ["acc", "loss"]


def test_train_step_traces_once():
    model = fnn.Sequential([fnn.Dense(4, "relu"), fnn.Dense(2)])
    params, state = model.init(jax.random.key(0), (3,))
    tx = optax.adam(1e-3)
    traces = []
    inner = fnn.make_train_step(model, "sparse_categorical_crossentropy", tx)

    def counted(*args):
        traces.append(1)
        return inner(*args)

    step = jax.jit(counted, donate_argnums=(0, 2))
    opt_state = tx.init(params)
    for i in range(3):
        batch = (jnp.full((8, 3), float(i)), jnp.zeros(8, jnp.int32))
        params, state, opt_state, _ = step(params, state, opt_state, batch, None)
    assert len(traces) == 1


def test_bad_batches_and_missing_keys_are_explained():
    model = fnn.Sequential([fnn.Dense(2), fnn.Dropout(0.5)])
    params, state = model.init(jax.random.key(0), (3,))
    step = fnn.make_train_step(model, "mse", "sgd")
    opt_state = fnn.optimizers.get("sgd").init(params)
    with pytest.raises(
        ValueError, match=r"batch must be a tuple \(x, y\) or \(x, y, sample_weight\), got dict"
    ):
        step(params, state, opt_state, {"x": 1}, None)
    with pytest.raises(ValueError, match=r"Dropout 'dropout' needs a PRNG key when train=True"):
        step(params, state, opt_state, (jnp.ones((2, 3)), jnp.ones((2, 2))), None)
    with pytest.raises(
        ValueError, match=r"mean_squared_error: y_true shape \(2,\) and y_pred shape \(2, 2\) differ"
    ):
        step(params, state, opt_state, (jnp.ones((2, 3)), jnp.ones(2)), jax.random.key(0))
