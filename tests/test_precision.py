"""Mixed precision (fnn.MixedPrecision) and float16 loss scaling (fnn.optimizers.loss_scale)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn import _random

BF16 = jnp.bfloat16


def mlp():
    return fnn.Sequential([fnn.Dense(16, "relu"), fnn.Dense(16, "tanh"), fnn.Dense(3)])


def setup(model, shape=(5,), batch=8):
    params, state = model.init(jax.random.key(0), shape)
    x = _random.normal(jax.random.key(1), (batch, *shape))
    return params, state, x


def dtypes_in_jaxpr(fn, *args):
    return {str(v.aval.dtype) for eqn in jax.make_jaxpr(fn)(*args).eqns if eqn.primitive.name == "dot_general"
            for v in eqn.outvars}  # fmt: skip


def test_params_stay_float32_compute_is_bfloat16_and_output_float32():
    model = fnn.MixedPrecision(mlp())
    params, state, x = setup(model)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y, _ = model.apply(params, state, x, train=False)
    assert y.dtype == jnp.float32
    assert dtypes_in_jaxpr(lambda p, x: model.apply(p, state, x, train=False)[0], params, x) == {"bfloat16"}


def test_outputs_match_float32_within_bfloat16_precision_and_gradients_are_float32():
    plain, mixed = mlp(), fnn.MixedPrecision(mlp())
    params, state, x = setup(plain)
    y32, _ = plain.apply(params, state, x, train=False)
    y16, _ = mixed.apply(params, state, x, train=False)
    np.testing.assert_allclose(y16, y32, rtol=0.05, atol=0.05)
    batch = (x, jnp.zeros(8, jnp.int32))
    # Compiled: eagerly, every primitive of the backward pass would compile on its own.
    g32 = jax.jit(fnn.make_grad_fn(plain, "sparse_categorical_crossentropy"))(params, state, batch)
    g16 = jax.jit(fnn.make_grad_fn(mixed, "sparse_categorical_crossentropy"))(params, state, batch)
    assert {a.dtype for a in jax.tree.leaves(g16)} == {jnp.dtype(jnp.float32)}
    chex.assert_trees_all_close(g16, g32, rtol=0.1, atol=0.02)


def test_nested_float32_exception_keeps_its_params_and_computes_exactly():
    # Inside a bfloat16 model, a float32 layer sees the bfloat16-rounded input but its own
    # float32 params; its output goes on as bfloat16 and leaves the model as float32.
    head = fnn.Dense(3)
    model = fnn.MixedPrecision(fnn.Sequential([fnn.MixedPrecision(head, "float32")]))
    params, state, x = setup(model)
    y, _ = model.apply(params, state, x, train=False)
    rounded = x.astype(BF16).astype(jnp.float32)
    expected = head.apply(params["dense"], {}, rounded, train=False)[0].astype(BF16).astype(jnp.float32)
    np.testing.assert_array_equal(y, expected)


def test_batchnorm_statistics_are_float32_from_bfloat16_activations():
    bn = fnn.BatchNorm()
    model = fnn.MixedPrecision(bn)
    params, state, x = setup(model, shape=(4,))
    y, new_state = model.apply(params, state, x, train=True)
    assert {a.dtype for a in jax.tree.leaves(new_state)} == {jnp.dtype(jnp.float32)}
    rounded = x.astype(BF16).astype(jnp.float32)
    _, expected = bn.apply(params, state, rounded, train=True)
    chex.assert_trees_all_close(new_state, expected, rtol=1e-6)  # statistics from float32 arithmetic
    assert y.dtype == jnp.float32


def test_integer_inputs_give_float32_outputs():
    model = fnn.MixedPrecision(fnn.Sequential([fnn.Embedding(10, 4), fnn.Dense(2)]))
    params, state = model.init(jax.random.key(0), jax.ShapeDtypeStruct((3,), jnp.int32))
    y, _ = model.apply(params, state, jnp.ones((2, 3), jnp.int32), train=False)
    assert y.dtype == jnp.float32


@pytest.mark.standard_promotion  # as users run it: strict promotion would hide a silent cast
def test_bfloat16_data_needs_mixed_precision_and_goes_through_it_from_init_to_apply():
    # Issue 20: a float32 model computed bfloat16 data in float32 without a word. Now that is an
    # error that points to MixedPrecision, which takes the same data from init (the shape walk of
    # its Sequential) to apply, and its summary.
    data = jax.ShapeDtypeStruct((5,), BF16)
    x = _random.normal(jax.random.key(1), (8, 5), BF16)
    with pytest.raises(
        TypeError, match=r"Dense 'dense' expects float32 inputs .*got bfloat16.*fnn.MixedPrecision"
    ):
        mlp().init(jax.random.key(0), data)
    model = fnn.MixedPrecision(fnn.Sequential([fnn.MixedPrecision(fnn.BatchNorm(), "float32"), mlp()]))
    params, state = model.init(jax.random.key(0), data)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y, _ = model.apply(params, state, x, train=True)
    assert y.dtype == BF16 and y.shape == (8, 3)
    assert fnn.summary(model, data).params == fnn.summary(model, (5,)).params


@pytest.mark.parametrize("bad", ["int8", "nope", jnp.int32])
def test_non_floating_compute_dtype_is_an_error(bad):
    with pytest.raises(
        ValueError, match=r"MixedPrecision 'dense': compute_dtype must be a floating dtype .*got"
    ):
        fnn.MixedPrecision(fnn.Dense(2), bad)


@pytest.mark.standard_promotion
def test_fit_in_mixed_bfloat16_learns_like_float32():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = y.astype(np.int32)
    accuracies = {}
    for name, model in {"f32": mlp(), "bf16": fnn.MixedPrecision(mlp(), "mixed_bfloat16")}.items():
        history = fnn.fit(model, x, y, loss="sparse_categorical_crossentropy", optimizer="adam",
                          metrics=["accuracy"], epochs=30, batch_size=16, verbose=0)  # fmt: skip
        accuracies[name] = history.history["accuracy"][-1]
        assert {a.dtype for a in jax.tree.leaves(history.train_state.params)} == {jnp.dtype(jnp.float32)}
    assert accuracies["bf16"] > 0.9 and abs(accuracies["bf16"] - accuracies["f32"]) < 0.05


# --- loss scaling ---------------------------------------------------------------------------


def test_loss_scaling_in_float32_changes_nothing_bitwise():
    # Scales are powers of two, so scaling and unscaling are exact.
    model = mlp()
    params, state, x = setup(model)
    batch = (x, jnp.zeros(8, jnp.int32))
    out = {}
    for name, tx in {"plain": optax.sgd(0.1), "scaled": fnn.optimizers.loss_scale(optax.sgd(0.1))}.items():
        step = jax.jit(fnn.make_train_step(model, "sparse_categorical_crossentropy", tx))
        out[name] = step(params, state, tx.init(params), batch, None)
    chex.assert_trees_all_equal(out["scaled"][0], out["plain"][0])
    assert out["scaled"][3]["loss"] == out["plain"][3]["loss"]  # the logged loss is unscaled


def test_float16_gradients_underflow_without_loss_scaling_and_survive_with_it():
    model = fnn.MixedPrecision(fnn.Dense(1, use_bias=False), "mixed_float16")
    params, state = model.init(jax.random.key(0), (4,))

    def tiny_loss(y_true, y_pred, sample_weight=None):
        return 1e-9 * jnp.mean(jnp.square(y_pred))

    batch = (jnp.ones((2, 4)), jnp.zeros((2, 1)))
    moved = {}
    for name, tx in {"plain": optax.sgd(1e6), "scaled": fnn.optimizers.loss_scale(optax.sgd(1e6))}.items():
        new_params = fnn.make_train_step(model, tiny_loss, tx)(params, state, tx.init(params), batch, None)[0]
        moved[name] = bool(jnp.any(new_params["w"] != params["w"]))
    assert moved == {"plain": False, "scaled": True}


@pytest.mark.standard_promotion  # optax's adam
def test_non_finite_step_is_skipped_and_scale_shrinks_then_grows():
    tx = fnn.optimizers.loss_scale(optax.adam(0.1), initial_scale=8.0, growth_interval=2)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    updates, bad = tx.update({"w": jnp.array([1.0, jnp.nan])}, state, params)
    assert updates["w"].tolist() == [0.0, 0.0] and float(bad.scale) == 4.0
    chex.assert_trees_all_equal(bad.inner_state, state.inner_state)
    for expected in (4.0, 8.0):  # two finite steps in a row double it
        _, bad = tx.update({"w": jnp.ones(2)}, bad, params)
        assert float(bad.scale) == expected
    assert float(fnn.optimizers.current_loss_scale(bad)) == 8.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"initial_scale": 0}, "initial_scale must be a positive number, got 0"),
        ({"growth_interval": 0}, "growth_interval must be a positive int, got 0"),
        ({"factor": 1}, "factor must be a number above 1, got 1"),
    ],
)
def test_loss_scale_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=f"loss_scale: {match}"):
        fnn.optimizers.loss_scale("adam", **kwargs)
