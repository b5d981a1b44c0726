"""Several outputs (Keras's compile(loss={...}, loss_weights={...}, metrics={...})) and several inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.train._step import check_output_activation

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside fit

LOSS = {"age": "mse", "kind": "sparse_categorical_crossentropy"}
WEIGHTS = {"age": 0.25, "kind": 2.0}


def two_heads(as_dict=True, kind_activation=None):
    """One regression head ("age", 1 value) and one classification head ("kind", 3 logits)."""
    layers = [
        fnn.Dense(8, "tanh"),
        fnn.FanOut(2),
        fnn.Parallel([fnn.Dense(1), fnn.Dense(3, kind_activation)]),
    ]
    if as_dict:
        layers.append(fnn.Lambda(lambda t: {"kind": t[1], "age": t[0]}, name="named"))
    return fnn.Sequential(layers)


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    age = (x[:, :1] * 2 - x[:, 1:]).astype(np.float32)
    kind = np.digitize(x[:, 0] + x[:, 1], [-0.5, 0.5]).astype(np.int32)
    return x, {"age": age, "kind": kind}


def reference(params, x, y, weights):
    """Loss, per-output losses and metrics by hand, in float64 NumPy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = np.tanh(x @ p["dense"]["w"] + p["dense"]["b"])
    age = h @ p["parallel"]["dense"]["w"] + p["parallel"]["dense"]["b"]
    z = h @ p["parallel"]["dense_1"]["w"] + p["parallel"]["dense_1"]["b"]
    log_softmax = z - z.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    age_loss = np.mean((age - y["age"]) ** 2)
    kind_loss = -np.mean(log_softmax[np.arange(len(x)), y["kind"]])
    return {
        "loss": weights["age"] * age_loss + weights["kind"] * kind_loss,
        "age_loss": age_loss,
        "kind_loss": kind_loss,
        "age_mae": np.mean(np.abs(age - y["age"])),
        "kind_accuracy": np.mean(z.argmax(1) == y["kind"]),
    }


def assert_logs(logs, expected, prefix=""):
    assert set(logs) >= {prefix + k for k in expected}
    for k, v in expected.items():
        np.testing.assert_allclose(float(logs[prefix + k]), v, rtol=2e-5, atol=1e-6, err_msg=k)


def test_fit_logs_the_weighted_loss_each_output_loss_and_per_output_metrics():
    x, y = data()
    model = two_heads()
    params, state = model.init(jax.random.key(1), (2,))
    metrics = {"age": ["mae"], "kind": ["accuracy"]}
    history = fnn.fit(
        model, x, y, loss=LOSS, loss_weights=WEIGHTS, metrics=metrics, optimizer="sgd", params=params,
        state=state, epochs=1, batch_size=len(x), shuffle=False, validation_data=(x, y), verbose=0,
    )  # fmt: skip
    logs = {k: v[0] for k, v in history.history.items()}
    assert set(logs) == {"loss", "age_loss", "kind_loss", "age_mae", "kind_accuracy", "learning_rate"} | {
        "val_" + k for k in ("loss", "age_loss", "kind_loss", "age_mae", "kind_accuracy")
    }
    # One batch: the training logs are those of the initial params, validation those of the trained ones.
    assert_logs(logs, reference(params, x, y, WEIGHTS))
    assert_logs(logs, reference(history.params, x, y, WEIGHTS), prefix="val_")
    assert history.params["dense"]["w"].shape == (2, 8)
    # fnn.evaluate and the eval step give the same names and values.
    evaluated = fnn.evaluate(
        model, history.params, state, x, y, loss=LOSS, loss_weights=WEIGHTS, metrics=metrics, batch_size=7
    )
    assert_logs(evaluated, reference(history.params, x, y, WEIGHTS))
    step = fnn.make_eval_step(model, LOSS, metrics, loss_weights=WEIGHTS)
    assert_logs(step(history.params, state, (x, y)), reference(history.params, x, y, WEIGHTS))


def test_tuple_outputs_take_a_list_of_losses_and_weights_and_one_sample_weight_for_all():
    x, y = data()
    model = two_heads(as_dict=False)
    params, state = model.init(jax.random.key(2), (2,))
    y_list = [y["age"], y["kind"]]
    step = fnn.make_eval_step(
        model, list(LOSS.values()), {"output_1": ["accuracy"]}, loss_weights=[WEIGHTS["age"], WEIGHTS["kind"]]
    )
    logs = step(params, state, (x, tuple(y_list)))
    expected = reference(params, x, y, WEIGHTS)
    assert list(logs) == ["loss", "output_0_loss", "output_1_loss", "output_1_accuracy"]
    np.testing.assert_allclose(logs["output_0_loss"], expected["age_loss"], rtol=2e-5)
    np.testing.assert_allclose(logs["output_1_accuracy"], expected["kind_accuracy"])
    np.testing.assert_allclose(logs["loss"], expected["loss"], rtol=2e-5)
    # One per-example weight array weighs every output's loss.
    w = np.linspace(0.0, 2.0, len(x)).astype(np.float32)
    weighted = step(params, state, (x, y_list, w))
    for i, loss in enumerate(LOSS.values()):
        per_output = fnn.losses.get(loss)(
            y_list[i], model.apply(params, state, x, train=False)[0][i], sample_weight=w
        )
        np.testing.assert_allclose(weighted[f"output_{i}_loss"], per_output, rtol=1e-6)
    # A plain list of metrics applies to every output, one loss to every output (summed).
    both = fnn.make_eval_step(model, "mae", ["mae"])(params, state, (x, (y["age"], y["age"].repeat(3, 1))))
    assert list(both) == ["loss", "output_0_loss", "output_1_loss", "output_0_mae", "output_1_mae"]
    np.testing.assert_allclose(both["loss"], both["output_0_loss"] + both["output_1_loss"], rtol=1e-6)


def test_gradients_are_the_weighted_sum_of_each_outputs_gradients():
    x, y = data(8)
    model = two_heads()
    params, state = model.init(jax.random.key(3), (2,))
    grads = jax.jit(fnn.make_grad_fn(model, LOSS, loss_weights=WEIGHTS))(params, state, (x, y))
    only = [
        jax.jit(fnn.make_grad_fn(model, LOSS, loss_weights={k: float(k == name) for k in LOSS}))(
            params, state, (x, y)
        )
        for name in ("age", "kind")
    ]
    expected = jax.tree.map(lambda a, k: WEIGHTS["age"] * a + WEIGHTS["kind"] * k, *only)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, expected)


def test_several_inputs_and_outputs_train_through_fit():
    x, y = data(64)
    inputs = {"left": x[:, :1], "right": x[:, 1:]}
    join = fnn.Lambda(lambda d: jnp.concatenate([d["left"], d["right"]], axis=-1), name="join")
    model = fnn.Sequential([join, two_heads()])
    history = fnn.fit(
        model, inputs, y, loss=LOSS, metrics={"kind": ["accuracy"]}, optimizer=fnn.optimizers.get("adam", learning_rate=0.05),
        epochs=8, batch_size=16, verbose=0,
    )  # fmt: skip
    h = history.history
    assert set(h) == {"loss", "age_loss", "kind_loss", "kind_accuracy", "learning_rate"}
    assert h["age_loss"][-1] < 0.5 * h["age_loss"][0] and h["kind_loss"][-1] < h["kind_loss"][0]
    out = fnn.predict(model, history.params, history.state, inputs)
    assert out["age"].shape == (64, 1) and out["kind"].shape == (64, 3)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"loss": {"age": "mse"}}, ValueError, r"loss: no entry for \['kind'\]; the model's outputs are \['age', 'kind'\]"),
        ({"loss": {**LOSS, "agee": "mae"}}, ValueError, r"loss: unknown keys \['agee'\]; the model's outputs are \['age', 'kind'\]"),
        ({"loss": ["mse", "mse"]}, ValueError, r"loss: the model's outputs are a dict with keys \['age', 'kind'\]: pass a dict keyed by output name, got a list"),
        ({"loss": {"age": "mse", "kind": "nope"}}, ValueError, r"unknown loss 'nope'"),
        ({"loss_weights": [1.0, 2.0]}, ValueError, r"loss_weights: the model's outputs are a dict .* pass a dict keyed by output name"),
        ({"loss_weights": {"age": 1.0}}, ValueError, r"loss_weights: no entry for \['kind'\]"),
        ({"loss_weights": {"age": 1.0, "kind": -2.0}}, ValueError, r"loss_weights\['kind'\] must be a finite number >= 0, got -2.0"),
        ({"loss_weights": 2.0}, ValueError, r"loss_weights: give one weight per output of \['age', 'kind'\] as a list or dict"),
        ({"y": "tuple"}, ValueError, r"y is a tuple of 2 arrays but the model's outputs are a dict with keys \['age', 'kind'\]; it must have the outputs' structure"),
        ({"y": "age only"}, ValueError, r"y is a dict with keys \['age'\] but the model's outputs are a dict with keys \['age', 'kind'\]"),
        ({"y": "array"}, ValueError, r"y is one array of shape \(8, 1\) but the model's outputs are a dict"),
        ({"y": "bad label"}, ValueError, r"fit: y\['kind'\] holds label 3 at index \(0,\) \(1 out of range in all\); output 'kind' has 3 classes"),
        ({"metrics": {"age": ["mae"], "knd": ["accuracy"]}}, ValueError, r"metrics: keys \['knd'\] are not output names; the model's outputs are \['age', 'kind'\]"),
        ({"metrics": {"kinds": ["accuracy"]}}, ValueError, r"metrics: keys \['kinds'\] are not output names"),
        ({"metrics": ["accuracy"]}, ValueError, r"output 'age': accuracy: cannot tell sparse from categorical"),
        ({"sample_weight": "per output"}, ValueError, r"sample_weight: one array of per-example weights \(batch,\) applies to every output"),
    ],
)  # fmt: skip
def test_bad_specs_and_targets_are_named(options, error, message):
    x, y = data(8)
    model = two_heads()
    targets = {
        "tuple": (y["age"], y["kind"]),
        "age only": {"age": y["age"]},
        "array": y["age"],
        "bad label": {**y, "kind": np.r_[3, y["kind"][1:]].astype(np.int32)},
    }.get(options.pop("y", None), y)
    if options.get("sample_weight") == "per output":
        options["sample_weight"] = None
        batches = [(x, y, {"age": np.ones(8, np.float32), "kind": np.ones(8, np.float32)})]
        with pytest.raises(error, match=message):
            fnn.fit(model, batches, loss=LOSS, epochs=1, verbose=0)
        return
    with pytest.raises(error, match=message):
        fnn.fit(model, x, targets, **{"loss": LOSS, **options}, epochs=1, verbose=0)


def test_a_softmax_head_on_one_output_is_refused_by_its_logits_loss_naming_the_output():
    x, y = data(8)
    model = two_heads(kind_activation="softmax")
    params, state = model.init(jax.random.key(0), (2,))
    message = (
        r"sparse_categorical_crossentropy: output 'kind' of model 'sequential' ends in a softmax, but the "
        r"loss takes logits .* or pass fnn.losses.get\('sparse_categorical_crossentropy', "
        r"from_logits=False\) as its loss"
    )
    with pytest.raises(ValueError, match=message):
        fnn.evaluate(model, params, state, x, y, loss=LOSS)
    with pytest.raises(ValueError, match=message):
        fnn.make_eval_step(model, LOSS)(params, state, (x, y))
    probabilities = {**LOSS, "kind": fnn.losses.get("sparse_categorical_crossentropy", from_logits=False)}
    assert np.isfinite(fnn.evaluate(model, params, state, x, y, loss=probabilities)["kind_loss"])
    # The softmax head's output is left alone when its loss reads probabilities; mse on "age" is no issue.
    check_output_activation(model, {"age": "mse", "kind": "mse"}, params, state, x)


def test_one_output_models_keep_their_names_and_refuse_structured_specs():
    x, y = data(8)
    model = fnn.Dense(1)
    params, state = model.init(jax.random.key(0), (2,))
    logs = fnn.make_eval_step(model, ["mse"], ["mae"], loss_weights=0.5)(params, state, (x, y["age"]))
    assert list(logs) == ["loss", "mae"]
    np.testing.assert_allclose(
        logs["loss"],
        0.5 * fnn.losses.mean_squared_error(y["age"], model.apply(params, state, x, train=False)[0]),
    )
    with pytest.raises(
        ValueError,
        match=r"loss: the model has one output \(one array of shape \(8, 1\)\), so it takes one loss",
    ):
        fnn.make_eval_step(model, {"age": "mse"})(params, state, (x, y["age"]))
    with pytest.raises(
        ValueError,
        match=r"y is a dict with keys \['age'\] but the model's outputs are one array of shape \(8, 1\)",
    ):
        fnn.make_eval_step(model, "mse")(params, state, (x, {"age": y["age"]}))
    with pytest.raises(ValueError, match=r"metrics: the model has one output, so it takes a list of metrics"):
        fnn.make_eval_step(model, "mse", {"age": ["mae"]})(params, state, (x, y["age"]))


def test_tuple_outputs_check_each_outputs_class_labels_on_the_host():
    x, y = data(8)
    model = two_heads(as_dict=False)
    params, state = model.init(jax.random.key(0), (2,))
    labels = np.r_[y["kind"][:5], -1, y["kind"][6:]].astype(np.int32)
    with pytest.raises(
        ValueError, match=r"evaluate: y\[1\] holds label -1 at index \(5,\) .* output 'output_1' has 3"
    ):
        fnn.evaluate(model, params, state, x, [y["age"], labels], loss=list(LOSS.values()))
    # weight 0 marks padding, whose label may be anything (as for one output)
    weight = np.r_[np.ones(5), 0.0, np.ones(2)].astype(np.float32)
    logs = fnn.evaluate(
        model, params, state, x, [y["age"], labels], loss=list(LOSS.values()), sample_weight=weight
    )
    assert np.isfinite(logs["loss"])
