"""find_non_finite: the first operation whose NaN/Inf reaches a train step's outputs, and its layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn.train import NonFinite, find_non_finite

pytestmark = pytest.mark.standard_promotion


def run(model, batch, tx=None, jit=False, params=None, reference=True):
    """find_non_finite on one train step of ``model`` with ``tx`` (SGD by default), and that step's logs."""
    tx = tx or optax.sgd(0.1)
    init_params, state = model.init(jax.random.key(0), batch[0].shape[1:])
    params = init_params if params is None else params
    step = fnn.make_train_step(model, "mse", tx)
    args = (params, state, tx.init(init_params), batch, None)
    logs = jax.jit(step)(*args)[3] if reference else None
    return find_non_finite(jax.jit(step) if jit else step, *args), logs


# kernel_init="ones" and inputs -1 make x @ w = -3 in every unit: a deterministic negative number.
LOG_OF_NEGATIVE = fnn.Sequential(
    [
        fnn.Dense(3, kernel_init="ones"),
        fnn.Sequential([fnn.Dense(2, kernel_init="ones"), fnn.Lambda(jnp.log)]),
        fnn.Dense(1),
    ]
)
BATCH = (-jnp.ones((4, 3)), jnp.ones((4, 1)))


@pytest.mark.parametrize("jit", [False, True])
def test_forward_nan_names_the_nested_layer(jit):
    found, logs = run(LOG_OF_NEGATIVE, BATCH, jit=jit)
    assert np.isnan(logs["loss"])  # the reference: the step really is NaN
    assert isinstance(found, NonFinite)
    assert (found.layer, found.phase, found.primitive, found.value) == (
        "sequential/lambda",
        "forward",
        "log",
        "NaN",
    )
    assert found.message.startswith(
        "the forward pass of layer 'sequential/lambda' (log) produced NaN from finite inputs at "
    )


def test_finite_step_gives_none():
    found, logs = run(LOG_OF_NEGATIVE, (-BATCH[0], BATCH[1]))  # x @ w = +3 > 0
    assert np.isfinite(logs["loss"])
    assert found is None


def test_finite_forward_with_infinite_gradient_is_phase_gradient():
    # sqrt(0) = 0 is finite, but d sqrt(x)/dx = 0.5 / sqrt(x) is inf at 0.
    model = fnn.Sequential([fnn.Dense(2, kernel_init="zeros"), fnn.Lambda(jnp.sqrt), fnn.Dense(1)])
    found, logs = run(model, BATCH)
    params, state = model.init(jax.random.key(0), (3,))
    grads = fnn.make_grad_fn(model, "mse")(params, state, BATCH)
    assert np.isfinite(logs["loss"]) and not np.isfinite(grads["dense"]["w"]).all()
    assert (found.layer, found.phase, found.value) == ("lambda", "gradient", "Inf")
    assert found.message.startswith("the gradient of layer 'lambda' (")


def test_nan_in_discarded_branch_is_not_blamed():
    # log(x) is NaN for the rows x @ w < 0 but jnp.where drops it, forward and backward: the step is finite.
    safe_log = fnn.Lambda(lambda x: jnp.where(x > 0, jnp.log(x), 0.0))
    model = fnn.Sequential([fnn.Dense(2, kernel_init="ones"), safe_log])
    found, logs = run(model, (jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), jnp.ones((4, 2))))
    assert np.isfinite(logs["loss"])
    assert found is None


def test_nan_params_name_the_argument_path():
    model = fnn.Sequential([fnn.Dense(2), fnn.Dense(1)])
    params, _ = model.init(jax.random.key(0), (3,))
    params["dense_1"]["w"] = params["dense_1"]["w"].at[0, 0].set(jnp.inf)
    found, _ = run(model, BATCH, params=params, reference=False)
    assert (found.layer, found.phase, found.primitive, found.value) == ("", "input", "", "Inf")
    assert found.where == "params/dense_1/w"
    assert found.message == "argument 'params/dense_1/w' already holds Inf before any operation ran"


def test_nan_learning_rate_is_phase_update():
    tx = optax.GradientTransformation(optax.scale(1.0).init, optax.scale(float("nan")).update)
    found, logs = run(fnn.Sequential([fnn.Dense(2), fnn.Dense(1)]), BATCH, tx=tx)
    assert np.isfinite(logs["loss"])  # logs are computed before the update
    assert (found.layer, found.phase, found.primitive, found.value) == ("", "update", "mul", "NaN")
    assert "the update outside any layer" in found.message


def test_nan_inside_scan_of_an_rnn():
    # log as the recurrent activation: x @ w_x = -2 at the first step, inside lax.scan (and a jit).
    rnn = fnn.SimpleRNN(2, activation=jnp.log, kernel_init="ones", return_sequences=True)
    model = fnn.Sequential([fnn.Dense(2, kernel_init="ones"), rnn])
    params, state = model.init(jax.random.key(0), (3, 2))
    forward = jax.jit(lambda p, x: model.apply(p, state, x, train=False)[0])
    x = jnp.full((1, 3, 2), -0.5)
    assert np.isnan(forward(params, x)).all()
    found = find_non_finite(forward, params, x)
    assert (found.layer, found.phase, found.primitive, found.value) == ("simple_rnn", "forward", "log", "NaN")
    assert find_non_finite(forward, params, -x) is None


def test_cond_and_while_are_entered_and_scopes_joined():
    def fn(x):
        with jax.named_scope("block"):
            y = jax.lax.cond(x.sum() > 0, lambda v: v * 2.0, lambda v: v, x)
            _, z = jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, jnp.log(c[1] - 1.5)), (0, y))
        return z

    found = find_non_finite(fn, jnp.ones(2))
    # 2 -> log(0.5) < 0 -> log(negative): NaN in the second iteration; no gradient, so "forward".
    assert (found.layer, found.phase, found.primitive, found.value) == ("block", "forward", "log", "NaN")
    assert find_non_finite(fn, jnp.full(2, 1e6)) is None  # 2e6 -> 14.5 -> 2.6 -> 0.06


def test_non_finite_keyword_argument_is_named():
    found = find_non_finite(
        lambda x, *, scale: x * scale, jnp.ones(2), scale={"a": jnp.array([1.0, jnp.nan])}
    )
    assert (found.phase, found.where, found.value) == ("input", "scale/a", "NaN")


def test_bad_calls_raise():
    with pytest.raises(TypeError, match=r"find_non_finite: fn must be callable, got int 3"):
        find_non_finite(3, jnp.ones(2))
    with pytest.raises(TypeError, match=r"find_non_finite: fn\(x, y\) does not take these arguments: .*'y'"):
        find_non_finite(lambda x, y: x + y, jnp.ones(2))
