"""Named optimisers are optax's, with Keras's default rates and clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fnn import optimizers

pytestmark = pytest.mark.standard_promotion

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0])}
GRADS = {"w": jnp.array([0.5, 0.1, -0.3])}


def updates_after_two_steps(tx):
    state = tx.init(PARAMS)
    for _ in range(2):
        updates, state = tx.update(GRADS, state, PARAMS)
    return updates["w"]


@pytest.mark.parametrize(
    "name, reference",
    [
        ("sgd", optax.sgd(0.01)),
        ("momentum", optax.sgd(0.01, momentum=0.9)),
        ("adam", optax.adam(0.001)),
        ("adamw", optax.adamw(0.001)),
        ("rmsprop", optax.rmsprop(0.001)),
        ("adadelta", optax.adadelta(0.001)),
        ("adagrad", optax.adagrad(0.001)),
    ],
)
def test_named_optimizers_equal_optax_with_keras_default_rates(name, reference):
    np.testing.assert_array_equal(
        updates_after_two_steps(optimizers.get(name)), updates_after_two_steps(reference)
    )


def test_learning_rate_options_and_schedules():
    tx = optimizers.get("momentum", learning_rate=0.1, momentum=0.5)
    np.testing.assert_array_equal(
        updates_after_two_steps(tx), updates_after_two_steps(optax.sgd(0.1, momentum=0.5))
    )
    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)
    tx = optimizers.get("sgd", learning_rate=schedule)
    np.testing.assert_allclose(updates_after_two_steps(tx), -0.05 * GRADS["w"], rtol=1e-6)
    custom = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    assert optimizers.get(custom) is custom


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: optimizers.get("adamm"), ValueError, r"unknown optimizer 'adamm'; known: .*adam"),
        (lambda: optimizers.get("sgd", learning_rate=-1.0), ValueError,
         r"optimizer 'sgd': learning_rate must be a positive, finite float or an optax schedule, got -1.0"),
        (lambda: optimizers.get("sgd", learning_rate=float("nan")), ValueError,
         r"optimizer 'sgd': learning_rate must be a positive, finite float .*got nan"),
        (lambda: optimizers.get("adam", learning_rate=float("inf")), ValueError,
         r"optimizer 'adam': learning_rate must be a positive, finite float .*got inf"),
        (lambda: optimizers.get("adam", b1=float("nan")), ValueError, r"optimizer 'adam': b1 must be finite, got nan"),
        (lambda: optimizers.get("adamw", weight_decay=np.float32("inf")), ValueError,
         r"optimizer 'adamw': weight_decay must be finite, got .*inf"),
        (lambda: optimizers.set_learning_rate(optimizers.get("sgd").init({"w": jnp.zeros(1)}), float("nan")),
         ValueError, r"set_learning_rate: value must be a positive, finite float, got nan"),
        (lambda: optimizers.get("adam", beta=0.9), TypeError, r"optimizer 'adam': bad options \{'beta': 0.9\}"),
        (lambda: optimizers.get(optax.adam(1e-3), learning_rate=0.1), TypeError,
         r"optimizer is already an optax GradientTransformation; set its learning rate .*got learning_rate=0.1"),
        (lambda: optimizers.get(3), TypeError, r"optimizer must be a name or an optax GradientTransformation, got 3"),
    ],
)  # fmt: skip
def test_optimizer_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_optimizer_step_is_jittable():
    tx = optimizers.get("adam")
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    updates, _ = step(GRADS, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["w"], -0.001 * jnp.sign(GRADS["w"]), rtol=1e-4)


def test_learning_rate_lives_in_the_state_and_can_be_replaced():
    tx = optimizers.get("sgd", learning_rate=0.1)
    state = tx.init(PARAMS)
    assert float(optimizers.learning_rate(state)) == pytest.approx(0.1)
    slower = optimizers.set_learning_rate(state, 0.01)
    assert float(optimizers.learning_rate(state)) == pytest.approx(0.1)  # the original is untouched
    updates, _ = jax.jit(tx.update)(GRADS, slower, PARAMS)
    np.testing.assert_allclose(updates["w"], -0.01 * GRADS["w"], rtol=1e-6)
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=0.5)
    assert float(optimizers.learning_rate(injected.init(PARAMS))) == 0.5
    assert optimizers.learning_rate(optax.adam(0.1).init(PARAMS)) is None
    with pytest.raises(ValueError, match=r"the optimiser state holds no learning rate to change"):
        optimizers.set_learning_rate(optax.adam(0.1).init(PARAMS), 0.2)


def test_set_learning_rate_takes_arrays_and_works_under_jit():
    state = optimizers.get("sgd").init({"w": jnp.zeros(1)})
    assert float(optimizers.learning_rate(optimizers.set_learning_rate(state, jnp.asarray(0.5)))) == 0.5
    traced = jax.jit(optimizers.set_learning_rate)(state, 0.25)
    assert float(optimizers.learning_rate(traced)) == 0.25
    with pytest.raises(ValueError, match=r"set_learning_rate: value must be a positive, finite float"):
        optimizers.set_learning_rate(state, jnp.asarray(jnp.inf))


# --- defaults="keras": Keras 3's update rules, written out in NumPy (float64) from keras/src/optimizers.

KERAS_GRADS = np.array(  # sizes from 1 to 1e-7 and a zero, so an epsilon's placement shows
    [[0.5, -2e-3, 3e-7, 0.0], [-0.3, 1e-3, -1e-7, 0.0], [0.8, 4e-3, 2e-7, 0.0]]
)
KERAS_W0 = np.array([1.0, -2.0, 0.5, 3.0])


def keras_numpy(name, lr, steps, **hp):
    """Each step (new minus old parameters) of Keras's ``update_step`` and its decoupled weight decay."""
    w, z = KERAS_W0.copy(), np.zeros(4)
    m, v, u, v_max, avg, mom, acc_g, acc_d = z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z, z
    acc = np.full(4, hp.get("initial_accumulator_value", 0.1))
    u_product, out = 1.0, []
    b1, b2, eps = hp.get("beta_1", 0.9), hp.get("beta_2", 0.999), hp.get("epsilon", 1e-7)
    for t, g in enumerate(KERAS_GRADS[:steps], start=1):
        if hp.get("weight_decay"):
            w = w - w * hp["weight_decay"] * lr
        if name == "sgd":
            if hp.get("momentum", 0.0):
                mom = mom * hp["momentum"] - lr * g
                w = w + (mom * hp["momentum"] - lr * g if hp.get("nesterov") else mom)
            else:
                w = w - lr * g
        elif name in ("adam", "adamw"):
            m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
            v_max = np.maximum(v_max, v)
            alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            w = w - m * alpha / (np.sqrt(v_max if hp.get("amsgrad") else v) + eps)
        elif name == "adamax":
            m, u = m + (g - m) * (1 - b1), np.maximum(b2 * u, np.abs(g))
            w = w - lr * m / ((1 - b1**t) * (u + eps))
        elif name == "nadam":
            u_t, u_next = b1 * (1 - 0.5 * 0.96**t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
            u_product = u_product * u_t
            m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
            m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
            w = w - m_hat * lr / (np.sqrt(v / (1 - b2**t)) + eps)
        elif name == "rmsprop":
            rho = hp.get("rho", 0.9)
            v, avg = rho * v + (1 - rho) * g * g, rho * avg + (1 - rho) * g
            increment = lr * g / np.sqrt((v - avg**2 if hp.get("centered") else v) + eps)
            mom = hp.get("momentum", 0.0) * mom + increment
            w = w - (mom if hp.get("momentum") else increment)
        elif name == "adadelta":
            rho = hp.get("rho", 0.95)
            acc_g = rho * acc_g + (1 - rho) * g * g
            delta = -np.sqrt(acc_d + eps) * g / np.sqrt(acc_g + eps)
            acc_d = rho * acc_d + (1 - rho) * delta**2
            w = w + lr * delta
        elif name == "adagrad":
            acc = acc + g * g
            w = w - lr * g / np.sqrt(acc + eps)
        elif name == "lamb":
            m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
            step = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
            w_norm, s_norm = np.linalg.norm(w), np.linalg.norm(step)
            w = w - (w_norm / s_norm if w_norm > 0 and s_norm > 0 else 1.0) * lr * step
        elif name == "lion":
            b2 = hp.get("beta_2", 0.99)
            w = w - lr * np.sign(m * b1 + g * (1 - b1))
            m = m * b2 + g * (1 - b2)
        out.append(w.copy())
    return np.diff(out, axis=0, prepend=[KERAS_W0])


def fnn_steps(tx, steps):
    params = {"w": jnp.asarray(KERAS_W0, jnp.float32)}
    state, out = tx.init(params), []
    for g in KERAS_GRADS[:steps]:
        updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(updates["w"], np.float64))
    return np.array(out)


@pytest.mark.parametrize(
    "name, rule, lr, options",
    [
        ("sgd", "sgd", 0.01, {}),  # lr=None: Keras's default rate
        ("nesterov", "sgd", 0.1, {}),
        ("adam", "adam", None, {}),
        ("adam", "adam", 0.1, {"amsgrad": True, "beta_1": 0.8, "weight_decay": 0.1}),
        ("adamw", "adamw", 0.1, {}),
        ("adamax", "adamax", 0.1, {}),
        ("nadam", "nadam", 0.1, {}),
        ("rmsprop", "rmsprop", 0.1, {}),
        ("rmsprop", "rmsprop", 0.1, {"centered": True, "momentum": 0.9, "rho": 0.8}),
        ("adadelta", "adadelta", 1.0, {}),
        ("adagrad", "adagrad", 0.1, {}),
        ("lamb", "lamb", 0.1, {}),
        ("lion", "lion", 0.1, {}),
    ],
)
def test_keras_defaults_follow_keras_update_rules(name, rule, lr, options):
    tx = optimizers.get(name, defaults="keras", learning_rate=lr, **options)
    fixed = {"adamw": {"weight_decay": 0.004}, "nesterov": {"momentum": 0.9, "nesterov": True}}.get(name, {})
    expected = keras_numpy(rule, 0.001 if lr is None else lr, 3, **{**fixed, **options})
    # Steps, not parameters: each step must agree, those of tiny gradients included.
    np.testing.assert_allclose(fnn_steps(tx, 3), expected, rtol=2e-5, atol=1e-12)


def test_keras_epsilon_placement_differs_from_optax_where_it_matters():
    # Keras's epsilon is added to the un-corrected sqrt(v): about 32x larger than optax's at step 1.
    keras_step, optax_step = (fnn_steps(optimizers.get("adam", defaults=d), 1)[0] for d in ("keras", "optax"))
    np.testing.assert_allclose(keras_step[0], optax_step[0], rtol=1e-4)  # a large gradient: the same
    assert abs(keras_step[2]) < 0.5 * abs(optax_step[2])  # a 3e-7 gradient: epsilon dominates in Keras
    tx = optimizers.get("adadelta", defaults="keras")
    assert float(optimizers.learning_rate(tx.init(PARAMS))) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: optimizers.get("adam", defaults="tf"), ValueError,
         r"optimizer 'adam': defaults must be 'optax' or 'keras', got 'tf'"),
        (lambda: optimizers.get("adam", defaults="keras", b1=0.8), TypeError,
         r"optimizer 'adam': bad options \{'b1': 0.8\} \(Keras's argument names with defaults='keras'\)"),
        (lambda: optimizers.get("lamb", defaults="keras", weight_decay=0.1), TypeError,
         r"optimizer 'lamb': bad options \{'weight_decay': 0.1\}"),
        (lambda: optimizers.get(optax.adam(1e-3), defaults="keras"), TypeError,
         r"optimizer is already an optax GradientTransformation; .*defaults='keras'"),
        (lambda: optimizers.get("adam", defaults="keras", epsilon=float("nan")), ValueError,
         r"optimizer 'adam': epsilon must be finite, got nan"),
    ],
)  # fmt: skip
def test_keras_defaults_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
