"""Regularizers and layer loss terms (issue 21): penalties, their place in the state, the training loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import regularizers

RNG = np.random.default_rng(0)


def arr(*shape):
    return jnp.asarray(RNG.standard_normal(shape), jnp.float32)


# ------------------------------------------------------------------ penalties


def test_penalties_match_numpy_closed_forms_and_keras_defaults():
    w = np.asarray(arr(3, 4))
    l1, l2 = np.abs(w).sum(), (w**2).sum()
    cases = [
        (regularizers.l1(0.3), 0.3 * l1),
        (regularizers.l2(0.2), 0.2 * l2),  # no 1/2, as in Keras
        (regularizers.l1_l2(l1=0.1, l2=0.4), 0.1 * l1 + 0.4 * l2),
        (regularizers.l1_l2(l1=0.0, l2=0.5), 0.5 * l2),
        (regularizers.get("l1"), 0.01 * l1),  # Keras's default rates
        (regularizers.get("l2"), 0.01 * l2),
        (regularizers.get("l1_l2"), 0.01 * l1 + 0.01 * l2),
    ]
    for penalty, expected in cases:
        value = penalty(jnp.asarray(w))
        assert value.shape == () and value.dtype == jnp.float32
        np.testing.assert_allclose(value, expected, rtol=1e-6)
    custom = lambda x: jnp.max(x)  # noqa: E731
    assert regularizers.get(custom) is custom and regularizers.get(None) is None


def test_penalty_gradients_are_the_closed_forms_and_work_under_jit_and_vmap():
    w = arr(5)
    np.testing.assert_allclose(jax.grad(regularizers.l2(0.1))(w), 0.2 * w, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(regularizers.l1(0.1)))(w), 0.1 * jnp.sign(w), rtol=1e-6)
    rows = jax.vmap(regularizers.l1_l2(0.1, 0.2))(jnp.stack([w, 2 * w]))
    np.testing.assert_allclose(rows[1], 0.1 * 2 * jnp.abs(w).sum() + 0.2 * 4 * (w**2).sum(), rtol=1e-6)


def test_the_keras_docstring_example():
    # keras.regularizers.Regularizer's example: kernel L1(0.01) is 0.25, activity L2(0.01)
    # divided by the batch size of 5 is 5.0, and sum(layer.losses) is 5.25.
    layer = fnn.Dense(
        5,
        kernel_init="ones",
        kernel_regularizer=regularizers.l1(0.01),
        activity_regularizer=regularizers.l2(0.01),
    )
    params, state = layer.init(jax.random.key(0), (5,))
    terms = train_terms(layer, params, state, jnp.ones((5, 5)) * 2.0)
    np.testing.assert_allclose(terms["kernel_regularizer"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(terms["activity_regularizer"], 5.0, rtol=1e-6)


# ------------------------------------------------------------------ the layers


def train_terms(layer, params, state, x):
    """The terms of one ``train=True`` call, compiled (one compilation, not one per op)."""
    return jax.jit(lambda p, s, x: fnn.collected_losses(layer.apply(p, s, x, train=True)[1]))(
        params, state, x
    )


def test_dense_terms_are_the_penalties_of_its_params_and_output():
    layer = fnn.Dense(
        3,
        "tanh",
        kernel_regularizer=regularizers.l2(0.1),
        bias_regularizer="l1",
        activity_regularizer=regularizers.l1_l2(0.01, 0.02),
    )
    params, state = layer.init(jax.random.key(0), (4,))
    params = {**params, "b": arr(3)}
    assert jax.tree.map(jnp.shape, state) == {
        "losses": {"kernel_regularizer": (), "bias_regularizer": (), "activity_regularizer": ()}
    }
    x = arr(6, 4)
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    y = np.tanh(np.asarray(x) @ w + b)
    terms = train_terms(layer, params, state, x)
    np.testing.assert_allclose(terms["kernel_regularizer"], 0.1 * (w**2).sum(), rtol=1e-5)
    np.testing.assert_allclose(terms["bias_regularizer"], 0.01 * np.abs(b).sum(), rtol=1e-5)
    activity = (0.01 * np.abs(y).sum() + 0.02 * (y**2).sum()) / 6  # divided by the batch, as in Keras
    np.testing.assert_allclose(terms["activity_regularizer"], activity, rtol=1e-5)


def test_a_layer_without_regularizers_keeps_its_state_empty():
    for layer in [fnn.Dense(2), fnn.Conv1D(2, 2), fnn.LSTM(2), fnn.Embedding(4, 2)]:
        shape = fnn.Shape((3,), jnp.int32) if layer.name == "embedding" else (3, 2)
        assert jax.eval_shape(lambda k: layer.init(k, shape), jax.random.key(0))[1] == {}


def test_convolution_embedding_and_recurrent_terms():
    l2 = regularizers.l2(0.1)
    sq = lambda a: float((np.asarray(a) ** 2).sum())  # noqa: E731

    conv = fnn.Conv2D(3, 2, kernel_regularizer=l2, bias_regularizer=l2, activity_regularizer=l2)
    params, state = conv.init(jax.random.key(0), (4, 4, 2))
    params = {**params, "b": arr(3)}
    x = arr(2, 4, 4, 2)
    y, _ = jax.jit(lambda p, s, x: conv.apply(p, s, x, train=False))(params, state, x)
    terms = train_terms(conv, params, state, x)
    np.testing.assert_allclose(
        [terms["kernel_regularizer"], terms["bias_regularizer"], terms["activity_regularizer"]],
        [0.1 * sq(params["w"]), 0.1 * sq(params["b"]), 0.1 * sq(y) / 2],
        rtol=1e-5,
    )

    transpose = fnn.Conv1DTranspose(2, 3, use_bias=False, kernel_regularizer="l1")
    params, state = transpose.init(jax.random.key(1), (5, 2))
    terms = train_terms(transpose, params, state, arr(2, 5, 2))
    np.testing.assert_allclose(terms["kernel_regularizer"], 0.01 * np.abs(params["w"]).sum(), rtol=1e-5)

    separable = fnn.SeparableConv2D(2, 2, depthwise_regularizer=l2, pointwise_regularizer="l1")
    params, state = separable.init(jax.random.key(2), (4, 4, 3))
    terms = train_terms(separable, params, state, arr(2, 4, 4, 3))
    assert sorted(terms) == ["depthwise/kernel_regularizer", "pointwise/kernel_regularizer"]
    np.testing.assert_allclose(
        terms["depthwise/kernel_regularizer"], 0.1 * sq(params["depthwise"]["w"]), rtol=1e-5
    )

    embedding = fnn.Embedding(7, 3, embeddings_regularizer=l2)
    params, state = embedding.init(jax.random.key(3), fnn.Shape((4,), jnp.int32))
    terms = train_terms(embedding, params, state, jnp.array([[1, 2, 3, 0]]))
    np.testing.assert_allclose(terms["embeddings_regularizer"], 0.1 * sq(params["table"]), rtol=1e-5)

    # Keras's GRU bias is [b_x, b_h], shape (2, 3U); an asymmetric penalty checks the order.
    gru = fnn.GRU(
        2,
        kernel_regularizer=l2,
        recurrent_regularizer="l1",
        bias_regularizer=lambda b: jnp.sum(b[0] - 2 * b[1]),
    )
    params, state = gru.init(jax.random.key(4), (3, 2))
    params = {**params, "b_x": arr(6), "b_h": arr(6)}
    terms = train_terms(gru, params, state, arr(2, 3, 2))
    np.testing.assert_allclose(
        [terms["kernel_regularizer"], terms["recurrent_regularizer"], terms["bias_regularizer"]],
        [
            0.1 * sq(params["w_x"]),
            0.01 * np.abs(params["w_h"]).sum(),
            np.sum(params["b_x"] - 2 * params["b_h"]),
        ],
        rtol=1e-5,
    )

    bi = fnn.Bidirectional(fnn.LSTM(2, bias_regularizer=l2))
    params, state = bi.init(jax.random.key(5), (3, 2))
    terms = train_terms(bi, params, state, arr(2, 3, 2))
    assert sorted(terms) == ["backward/bias_regularizer", "forward/bias_regularizer"]
    np.testing.assert_allclose(
        terms["backward/bias_regularizer"], 0.1 * sq(params["backward"]["b"]), rtol=1e-5
    )


def test_activity_regularization_passes_its_input_on_and_penalises_it():
    layer = fnn.ActivityRegularization(l1=0.1, l2=0.3)
    params, state = layer.init(jax.random.key(0), (2, 3))
    x = arr(4, 2, 3)
    y, new_state = layer.apply(params, state, x, train=True)
    assert params == {} and y is x
    expected = (0.1 * np.abs(x).sum() + 0.3 * (np.asarray(x) ** 2).sum()) / 4
    np.testing.assert_allclose(new_state["losses"]["activity_regularizer"], expected, rtol=1e-5)


def test_eval_mode_leaves_the_state_unchanged():
    model = fnn.Sequential(
        [fnn.Dense(3, kernel_regularizer="l2", activity_regularizer="l1"), fnn.ActivityRegularization(l2=1.0)]
    )
    params, state = model.init(jax.random.key(0), (2,))
    x = arr(5, 2)
    _, trained = jax.jit(lambda p, s: model.apply(p, s, x, train=True))(params, state)
    assert all(float(v) > 0 for v in fnn.collected_losses(trained).values())
    for s in (state, trained):
        _, out = jax.jit(lambda p, s: model.apply(p, s, x, train=False))(params, s)
        jax.tree.map(np.testing.assert_array_equal, out, s)
    assert model.apply(params, trained, x, train=False)[1]["dense"] is trained["dense"]


def test_mixed_precision_keeps_the_terms_float32():
    model = fnn.MixedPrecision(fnn.Dense(3, kernel_regularizer="l2", activity_regularizer="l2"), "bfloat16")
    params, state = model.init(jax.random.key(0), (4,))
    _, new_state = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, state, arr(2, 4))
    assert jax.tree.map(lambda a: a.dtype, new_state) == jax.tree.map(lambda a: a.dtype, state)
    np.testing.assert_allclose(
        new_state["losses"]["kernel_regularizer"], 0.01 * (params["w"] ** 2).sum(), rtol=2e-2
    )


# ------------------------------------------------------------------ add_loss and collected_losses


def Penalised(rate, name="penalised"):
    """A custom layer with a loss term of its own, in ten lines."""

    def init(key, input_shape):
        return {"s": jnp.full((), 2.0)}, fnn.add_loss({}, "scale_penalty", 0.0)

    def apply(params, state, x, *, train, key=None):
        if train:
            state = fnn.add_loss(state, "scale_penalty", rate * params["s"] ** 2)
        return x * params["s"], state

    return fnn.Layer(init, apply, name)


def test_add_loss_in_a_custom_layer_reaches_the_gradients():
    model = fnn.Sequential([fnn.Dense(2), Penalised(0.5)])
    params, state = model.init(jax.random.key(0), (3,))
    batch = (arr(4, 3), arr(4, 2))
    assert train_terms(model, params, state, batch[0]) == {"penalised/scale_penalty": 2.0}  # 0.5 * 2 ** 2

    def hand(p):
        y, _ = model.apply(p, state, batch[0], train=False)
        return jnp.mean((y - batch[1]) ** 2) + 0.5 * p["penalised"]["s"] ** 2

    grads = jax.jit(fnn.make_grad_fn(model, "mse"))(params, state, batch)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        grads,
        jax.jit(jax.grad(hand))(params),
    )


def test_add_loss_keeps_the_entry_dtype_and_does_not_change_its_input():
    state = fnn.add_loss({"mean": jnp.zeros(2)}, "a", 0.0)
    assert state["losses"]["a"].dtype == jnp.float32 and set(state) == {"mean", "losses"}
    updated = fnn.add_loss(state, "a", jnp.asarray(1.5, jnp.bfloat16))
    assert updated["losses"]["a"].dtype == jnp.float32 and float(updated["losses"]["a"]) == 1.5
    assert float(state["losses"]["a"]) == 0.0


def test_collected_losses_walks_any_state_and_names_paths():
    state = {
        "block": {"dense": fnn.add_loss({}, "kernel_regularizer", 1.0), "bn": {"mean": jnp.zeros(3)}},
        "head": {},
    }
    assert fnn.collected_losses(state) == {"block/dense/kernel_regularizer": 1.0}
    assert fnn.collected_losses({}) == {} and fnn.collected_losses(fnn.add_loss({}, "x", 2.0)) == {"x": 2.0}


# ------------------------------------------------------------------ training


def two_layer_model():
    return fnn.Sequential(
        [
            fnn.Dense(
                4,
                "tanh",
                kernel_regularizer=regularizers.l2(0.1),
                bias_regularizer=regularizers.l1(0.05),
                activity_regularizer=regularizers.l2(0.01),
            ),
            fnn.Dense(1, kernel_regularizer=regularizers.l1_l2(0.01, 0.02)),
        ]
    )


def numpy_loss(p, x, t):
    """The training loss written out in NumPy: mse + every penalty (float64)."""
    w0, b0, w1, b1 = (
        np.asarray(p[k][n], np.float64)
        for k, n in [("dense", "w"), ("dense", "b"), ("dense_1", "w"), ("dense_1", "b")]
    )
    h = np.tanh(x @ w0 + b0)
    y = h @ w1 + b1
    penalties = 0.1 * (w0**2).sum() + 0.05 * np.abs(b0).sum() + 0.01 * (h**2).sum() / len(x)
    penalties += 0.01 * np.abs(w1).sum() + 0.02 * (w1**2).sum()
    return ((y - t) ** 2).mean(), penalties


def test_training_gradients_are_data_loss_plus_penalty_gradients_float64_finite_differences():
    model = two_layer_model()
    params, state = model.init(jax.random.key(0), (3,))
    params["dense"]["b"] = arr(4)  # away from the kink of |b| at 0
    x, t = np.asarray(arr(8, 3), np.float64), np.asarray(arr(8, 1), np.float64)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        s64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state)  # float64 entries: exact terms
        grads = jax.jit(fnn.make_grad_fn(model, "mse"))(p64, s64, (jnp.asarray(x), jnp.asarray(t)))
        direction = jax.tree.map(lambda a: np.asarray(RNG.standard_normal(a.shape)), params)
        eps = 1e-6
        plus = jax.tree.map(lambda a, d: np.asarray(a, np.float64) + eps * d, params, direction)
        minus = jax.tree.map(lambda a, d: np.asarray(a, np.float64) - eps * d, params, direction)
        fd = (sum(numpy_loss(plus, x, t)) - sum(numpy_loss(minus, x, t))) / (2 * eps)
        ad = sum(float(np.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(ad, fd, rtol=1e-6)


@pytest.mark.standard_promotion
def test_train_step_minimises_and_logs_data_loss_plus_regularization():
    model = two_layer_model()
    params, state = model.init(jax.random.key(0), (3,))
    x, t = arr(8, 3), arr(8, 1)
    data, penalty = numpy_loss(params, np.asarray(x, np.float64), np.asarray(t, np.float64))
    tx = fnn.optimizers.get("sgd", learning_rate=0.1)
    step = jax.jit(fnn.make_train_step(model, "mse", tx, ["mae"]))
    _, new_state, _, logs = step(params, state, tx.init(params), (x, t), None)
    assert list(logs) == ["loss", "mae", "regularization_loss"]
    np.testing.assert_allclose(logs["regularization_loss"], penalty, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], data + penalty, rtol=1e-5)  # Keras's loss: the total minimised
    np.testing.assert_allclose(sum(fnn.collected_losses(new_state).values()), penalty, rtol=1e-5)
    eval_logs = fnn.make_eval_step(model, "mse")(params, new_state, (x, t))
    assert list(eval_logs) == ["loss"]
    np.testing.assert_allclose(eval_logs["loss"], data, rtol=1e-5)  # evaluation: the data loss alone


@pytest.mark.standard_promotion
def test_terms_left_in_the_state_never_count_again():
    # A regularized layer under InferenceMode writes no terms; the values an earlier run left
    # in its state must not enter the loss as a constant.
    inner = fnn.Dense(2, kernel_regularizer="l2")
    params, state = inner.init(jax.random.key(0), (3,))
    _, stale = inner.apply(params, state, arr(2, 3), train=True)
    model = fnn.InferenceMode(inner)
    tx = fnn.optimizers.get("sgd", learning_rate=0.1)
    _, new_state, _, logs = jax.jit(fnn.make_train_step(model, "mse", tx))(
        params, stale, tx.init(params), (arr(2, 3), arr(2, 2)), None
    )
    assert (
        float(logs["regularization_loss"]) == 0.0 and float(new_state["losses"]["kernel_regularizer"]) == 0.0
    )


@pytest.mark.standard_promotion
def test_fit_with_l2_shrinks_the_weights_and_logs_regularization_loss():
    x = np.asarray(arr(96, 6))
    y = (x @ np.asarray(arr(6, 1)) + 0.1 * np.asarray(arr(96, 1))).astype(np.float32)
    x_val, y_val = np.asarray(arr(32, 6)), np.asarray(arr(32, 1))

    def run(reg):
        model = fnn.Sequential(
            [fnn.Dense(16, "tanh", kernel_regularizer=reg), fnn.Dense(1, kernel_regularizer=reg)]
        )
        sgd = fnn.optimizers.get("sgd", learning_rate=0.1)
        options = dict(loss="mse", optimizer=sgd, epochs=8, batch_size=32, verbose=0, seed=3)
        return model, fnn.fit(model, x, y, validation_data=(x_val, y_val), **options)

    _, plain = run(None)
    model, shrunk = run(regularizers.l2(0.05))
    norm = lambda p: sum(float((p[k]["w"] ** 2).sum()) for k in ("dense", "dense_1"))  # noqa: E731
    assert norm(shrunk.params) < 0.9 * norm(plain.params)
    assert "regularization_loss" not in plain.history and "val_regularization_loss" not in shrunk.history
    reg = shrunk.history["regularization_loss"]
    assert len(reg) == 8 and all(0 < r < l for r, l in zip(reg, shrunk.history["loss"]))
    assert reg[-1] < reg[0]
    # val_loss is the data loss alone (unlike Keras): the mse of the predictions
    predictions = fnn.predict(model, shrunk.params, shrunk.state, x_val)
    np.testing.assert_allclose(shrunk.history["val_loss"][-1], np.mean((predictions - y_val) ** 2), rtol=1e-5)


# ------------------------------------------------------------------ errors


def test_bad_specs_and_rates_are_errors_naming_the_argument():
    with pytest.raises(ValueError, match=r"unknown regularizer 'l3'; known: l1, l1_l2, l2"):
        regularizers.get("l3")
    with pytest.raises(
        TypeError,
        match=r"got the number 0.01; give the rate to a regularizer, e.g. fnn.regularizers.l2\(0.01\)",
    ):
        regularizers.get(0.01)
    with pytest.raises(TypeError, match=r"regularizer must be a name or a callable, got \[1\]"):
        regularizers.get([1])
    for make, match in [
        (
            lambda: regularizers.l2(-0.1),
            r"fnn.regularizers.l2: rate must be a non-negative finite number, got -0.1",
        ),
        (lambda: regularizers.l1(float("nan")), r"fnn.regularizers.l1: rate must be .*got nan"),
        (lambda: regularizers.l1_l2(l2=float("inf")), r"fnn.regularizers.l1_l2: l2 must be .*got inf"),
        (lambda: regularizers.l1(True), r"rate must be a non-negative finite number, got True"),
        (lambda: regularizers.l2("0.1"), r"rate must be a non-negative finite number, got '0.1'"),
        (
            lambda: fnn.ActivityRegularization(l1=-1.0),
            r"ActivityRegularization 'activity_regularization': l1 must be",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            make()


def test_layer_errors_name_the_layer_and_argument():
    with pytest.raises(ValueError, match=r"Dense 'head': kernel_regularizer: unknown regularizer 'L2'"):
        fnn.Dense(2, kernel_regularizer="L2", name="head")
    with pytest.raises(TypeError, match=r"Conv2D 'conv2d': activity_regularizer: regularizer must be a name"):
        fnn.Conv2D(2, 3, activity_regularizer=3j)
    with pytest.raises(ValueError, match=r"LSTMCell 'lstm_cell': recurrent_regularizer: unknown regularizer"):
        fnn.LSTM(2, recurrent_regularizer="l3")
    with pytest.raises(
        ValueError, match=r"SeparableConv2D 'separable_conv2d': pointwise_regularizer: unknown"
    ):
        fnn.SeparableConv2D(2, 2, pointwise_regularizer="l0")
    with pytest.raises(
        ValueError, match=r"Dense 'dense': bias_regularizer given, but use_bias=False leaves no bias"
    ):
        fnn.Dense(2, use_bias=False, bias_regularizer="l2")
    with pytest.raises(ValueError, match=r"reserved for the loss terms"):
        fnn.Dense(2, name="losses")
    layer = fnn.Dense(2, kernel_regularizer=lambda w: w**2)  # not a scalar
    params, state = layer.init(jax.random.key(0), (3,))
    with pytest.raises(
        ValueError,
        match=r"Dense 'dense': kernel_regularizer must return a floating scalar, got float32 of shape \(3, 2\)",
    ):
        layer.apply(params, state, arr(1, 3), train=True)


def test_add_loss_and_collected_losses_errors():
    with pytest.raises(
        ValueError, match=r"fnn.add_loss: the loss term 'p' must be a scalar, got shape \(2,\)"
    ):
        fnn.add_loss({}, "p", jnp.ones(2))
    with pytest.raises(TypeError, match=r"fnn.add_loss: the loss term 'p' must be floating point, got int32"):
        fnn.add_loss({}, "p", jnp.int32(1))
    with pytest.raises(ValueError, match=r"name must be a non-empty string without '/', got 'a/b'"):
        fnn.add_loss({}, "a/b", 1.0)
    with pytest.raises(TypeError, match=r"state must be a layer's state dict, got tuple"):
        fnn.add_loss((), "p", 1.0)
    with pytest.raises(TypeError, match=r"state\['losses'\] is reserved for loss terms .* got Array"):
        fnn.add_loss({"losses": jnp.zeros(())}, "p", 1.0)
    with pytest.raises(
        ValueError, match=r"reserved for loss terms .* holds block/losses/mean of shape \(3,\)"
    ):
        fnn.collected_losses({"block": {"losses": {"mean": jnp.zeros(3)}}})
