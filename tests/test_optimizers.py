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
