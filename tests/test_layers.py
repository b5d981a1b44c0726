"""Layer numerics against NumPy, combinator behaviour, and every layer error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnn
from fnn import testing


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def affine(x, p):
    """x @ w + b in NumPy, the reference for a Dense layer's params p."""
    return np.asarray(x) @ np.asarray(p["w"]) + np.asarray(p["b"])


# ----------------------------------------------------------------------------- Dense


def numpy_dense(x, w, b, activation=lambda v: v):
    """A direct loop over examples and units: y[n, j] = act(sum_i x[n, i] w[i, j] + b[j])."""
    y = np.zeros((x.shape[0], w.shape[1]), np.float64)
    for n in range(x.shape[0]):
        for j in range(w.shape[1]):
            y[n, j] = sum(float(x[n, i]) * float(w[i, j]) for i in range(w.shape[0])) + b[j]
    return activation(y)


@given(
    config=testing.dense_configs(),
    in_features=st.integers(1, 6),
    batch=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_dense_matches_numpy_loop(config, in_features, batch, seed):
    layer = fnn.Dense(**config)
    params, state = layer.init(jax.random.key(seed), (in_features,))
    x = rand((batch, in_features), seed)
    y, new_state = layer.apply(params, state, x, train=False)
    b = np.asarray(params["b"]) if config["use_bias"] else np.zeros(config["units"])
    act = fnn.activations.get(config["activation"])
    expected = np.asarray(act(jnp.asarray(numpy_dense(x, np.asarray(params["w"]), b), jnp.float32)))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert new_state == {}


@given(shape=testing.shapes(min_rank=1, max_rank=3, max_side=4), config=testing.dense_configs(max_units=4))
def test_dense_float64_gradients_on_generated_shapes(shape, config):
    layer = fnn.Dense(**config)
    params, state = layer.init(jax.random.key(0), shape)
    x = rand((2, *shape))
    testing.check_layer_grads(layer, params, state, x)


def test_dense_applies_to_the_last_axis_of_rank3_inputs():
    layer = fnn.Dense(3)
    params, state = layer.init(jax.random.key(0), (5, 4))
    x = rand((2, 5, 4))
    y, _ = layer.apply(params, state, x, train=False)
    np.testing.assert_allclose(y[1, 2], affine(x[1, 2], params), rtol=1e-5)


def test_dense_initializers_and_dtype():
    layer = fnn.Dense(2, kernel_init="ones", bias_init=jax.nn.initializers.constant(0.5), dtype=jnp.float16)
    params, _ = layer.init(jax.random.key(0), (3,))
    assert params["w"].dtype == jnp.float16
    np.testing.assert_array_equal(params["w"], np.ones((3, 2)))
    np.testing.assert_array_equal(params["b"], [0.5, 0.5])
    assert "b" not in fnn.Dense(2, use_bias=False).init(jax.random.key(0), (3,))[0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"units": -3}, ValueError, r"Dense 'dense': units must be a positive int, got -3"),
        ({"units": 2.5}, ValueError, r"units must be a positive int, got 2.5"),
        ({"units": 2, "activation": "rellu"}, ValueError, r"unknown activation 'rellu'; known: .*relu"),
        ({"units": 2, "kernel_init": "glorot"}, ValueError, r"unknown initializer 'glorot'"),
        ({"units": 2, "activation": 3}, TypeError, r"activation must be a name or a callable, got 3"),
        ({"units": 2, "name": "a/b"}, ValueError, r"Dense: name must be .* got 'a/b'"),
    ],
)
def test_dense_rejects_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        fnn.Dense(**kwargs)


def test_dense_rejects_wrong_input_size_and_rank():
    layer = fnn.Dense(3, name="dense_2")
    params, state = layer.init(jax.random.key(0), (64,))
    with pytest.raises(
        ValueError,
        match=r"Dense 'dense_2' expects inputs of shape \(batch, \.\.\., 64\), got shape \(32, 10\)",
    ):
        layer.apply(params, state, jnp.ones((32, 10)), train=False)
    with pytest.raises(ValueError, match=r"got shape \(64,\)"):
        layer.apply(params, state, jnp.ones((64,)), train=False)
    with pytest.raises(
        ValueError, match=r"Dense 'dense_2' expects a per-example input_shape with a feature axis.*got \(\)"
    ):
        layer.init(jax.random.key(0), ())


# -------------------------------------------------------------------- input dtypes


@pytest.mark.standard_promotion  # as users run it: strict promotion would hide a silent cast
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.uint8])
def test_dense_rejects_integer_and_bool_inputs_instead_of_casting_them(dtype):
    # Issue 20: Dense cast int32 and bool inputs to float32 without a word.
    layer = fnn.Dense(3, name="head")
    params, state = layer.init(jax.random.key(0), (4,))
    x = jnp.ones((2, 4), dtype)
    match = (
        rf"Dense 'head' expects float32 inputs \(the dtype of its params\), got {jnp.dtype(dtype)} of shape "
        r"\(2, 4\); fnn never casts inputs silently: cast them first, e.g. x.astype\(jnp.float32\)"
    )
    with pytest.raises(TypeError, match=match):
        layer.apply(params, state, x, train=False)
    with pytest.raises(TypeError, match=match):  # dtypes are static: the check holds under jit
        jax.jit(lambda p, x: layer.apply(p, state, x, train=False))(params, x)


@pytest.mark.standard_promotion
def test_float_inputs_of_another_precision_than_the_params_are_an_error_not_a_promotion():
    # JAX's standard promotion would silently compute a bfloat16 batch in float32 (or a float64
    # one in float64); fnn says so and names the two ways to get the precision asked for.
    layer = fnn.Dense(3)
    params, state = layer.init(jax.random.key(0), (4,))
    with pytest.raises(
        TypeError,
        match=r"Dense 'dense' expects float32 inputs \(the dtype of its params\), got bfloat16 .*"
        r"x.astype\(jnp.float32\), or compute in bfloat16 by building the layer with dtype=jnp.bfloat16 "
        r"or wrapping the model in fnn.MixedPrecision\(model, 'bfloat16'\)",
    ):
        layer.apply(params, state, jnp.ones((2, 4), jnp.bfloat16), train=False)
    with jax.enable_x64(True):
        with pytest.raises(TypeError, match=r"expects float32 inputs .*got float64"):
            layer.apply(params, state, jnp.ones((2, 4), jnp.float64), train=False)
    y, _ = fnn.MixedPrecision(layer).apply(params, state, jnp.ones((2, 4), jnp.bfloat16), train=False)
    assert y.dtype == jnp.bfloat16
    half = fnn.Dense(3, dtype=jnp.bfloat16)
    y, _ = half.apply(*half.init(jax.random.key(0), (4,)), jnp.ones((2, 4), jnp.bfloat16), train=False)
    assert y.dtype == jnp.bfloat16
    # NumPy's float64 is float32 to JAX unless x64 is on, so plain NumPy batches stay welcome.
    assert layer.apply(params, state, np.ones((2, 4)), train=False)[0].dtype == jnp.float32


@pytest.mark.standard_promotion
def test_parameter_free_layers_that_compute_reject_integers_and_shape_only_layers_take_any_dtype():
    ints = jnp.arange(12, dtype=jnp.int32).reshape(2, 6)
    for layer in [fnn.Relu(), fnn.Activation("tanh"), fnn.Dropout(0.5)]:
        with pytest.raises(TypeError, match=rf"'{layer.name}' expects floating-point inputs, got int32"):
            layer.apply({}, {}, ints, train=False)
    for layer in [fnn.Identity(), fnn.Flatten(), fnn.Reshape((3, 2))]:
        assert layer.apply({}, {}, ints, train=False)[0].dtype == jnp.int32


# ------------------------------------------------------------------- simple layers


def test_flatten_reshape_identity_lambda():
    x = rand((2, 3, 4))
    np.testing.assert_array_equal(fnn.Flatten().apply({}, {}, x, train=False)[0], x.reshape(2, 12))
    np.testing.assert_array_equal(fnn.Reshape((4, 3)).apply({}, {}, x, train=False)[0], x.reshape(2, 4, 3))
    np.testing.assert_array_equal(fnn.Reshape((-1,)).apply({}, {}, x, train=False)[0], x.reshape(2, 12))
    assert fnn.Identity().apply({}, {}, x, train=False)[0] is x
    np.testing.assert_allclose(fnn.Lambda(jnp.tanh).apply({}, {}, x, train=False)[0], np.tanh(x), rtol=1e-6)


def test_reshape_errors():
    with pytest.raises(
        ValueError,
        match=r"Reshape 'reshape' cannot reshape per-example shape \(3, 4\) \(12 elements\) to \(5, 2\)",
    ):
        fnn.Reshape((5, 2)).apply({}, {}, jnp.ones((2, 3, 4)), train=False)
    with pytest.raises(
        ValueError,
        match=r"Reshape 'r': target_shape must be a tuple of positive ints with at most one -1, got \(-1, -1\)",
    ):
        fnn.Reshape((-1, -1), name="r")
    with pytest.raises(ValueError, match=r"Reshape 'reshape': target_shape must be a tuple .*got 6"):
        fnn.Reshape(6)  # was "'int' object is not iterable"
    with pytest.raises(
        ValueError, match=r"cannot reshape per-example shape \(5,\) \(5 elements\) to \(2, -1\)"
    ):
        fnn.Reshape((2, -1)).apply({}, {}, jnp.ones((1, 5)), train=False)


def test_flatten_and_lambda_errors():
    with pytest.raises(ValueError, match=r"Flatten 'flatten' expects inputs with a batch axis, got a scalar"):
        fnn.Flatten().apply({}, {}, jnp.ones(()), train=False)
    with pytest.raises(TypeError, match=r"Lambda: fn must be callable, got 3"):
        fnn.Lambda(3)


@pytest.mark.parametrize("ctor", fnn.layers.ACTIVATION_LAYERS, ids=lambda c: c.__name__)
def test_activation_layers_apply_their_jax_nn_function(ctor):
    layer = ctor()
    fn = fnn.activations.get(layer.name)
    x = rand((2, 4))
    np.testing.assert_array_equal(layer.apply({}, {}, x, train=False)[0], fn(x))


def test_activation_by_name_with_options_and_errors():
    x = jnp.array([[-2.0, 2.0]])
    y, _ = fnn.LeakyRelu(negative_slope=0.1).apply({}, {}, x, train=False)
    np.testing.assert_allclose(y, [[-0.2, 2.0]], rtol=1e-6)
    assert fnn.Softmax(axis=-1).name == "softmax"
    with pytest.raises(TypeError, match=r"Activation 'relu': relu does not take \['slope'\]"):
        fnn.Relu(slope=2)
    with pytest.raises(ValueError, match=r"unknown activation 'relou'"):
        fnn.Activation("relou")


# -------------------------------------------------------------------------- Dropout


def test_dropout_drops_at_rate_and_rescales():
    layer = fnn.Dropout(0.25)
    x = jnp.ones((200, 100))
    y, _ = layer.apply({}, {}, x, train=True, key=jax.random.key(0))
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.25) < 0.01  # 20,000 draws: std 0.003
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.75], rtol=1e-6)
    again, _ = layer.apply({}, {}, x, train=True, key=jax.random.key(0))
    np.testing.assert_array_equal(y, again)
    assert layer.apply({}, {}, x, train=False)[0] is x


def test_dropout_errors():
    for rate in (-0.1, 1.0, 1.5, True):
        with pytest.raises(ValueError, match=rf"Dropout 'dropout': rate must be in \[0, 1\), got {rate}"):
            fnn.Dropout(rate)
    with pytest.raises(
        ValueError,
        match=r"Dropout 'drop' needs a PRNG key when train=True: call apply\(.*key=jax.random.key\(seed\)\)",
    ):
        fnn.Dropout(0.5, name="drop").apply({}, {}, jnp.ones((2, 2)), train=True)


# ---------------------------------------------------------------------- combinators


def mlp():
    return fnn.Sequential([fnn.Dense(4, "relu"), fnn.Dropout(0.5), fnn.Dense(4), fnn.Relu(), fnn.Dense(2)])


def test_sequential_names_children_uniquely_and_chains_them():
    model = mlp()
    params, state = model.init(jax.random.key(0), (3,))
    assert list(params) == ["dense", "dropout", "dense_1", "relu", "dense_2"]
    x = rand((5, 3))
    y, _ = model.apply(params, state, x, train=False)
    h = np.maximum(affine(x, params["dense"]), 0)
    h = np.maximum(affine(h, params["dense_1"]), 0)
    np.testing.assert_allclose(y, affine(h, params["dense_2"]), rtol=1e-5, atol=1e-6)


def test_unique_names_respect_explicit_names():
    from fnn._core import unique_names

    assert unique_names(["dense", "dense_1", "dense", "dense"]) == ["dense", "dense_1", "dense_2", "dense_3"]


def test_children_get_fold_in_keys_so_appending_keeps_earlier_params():
    short = fnn.Sequential([fnn.Dense(3), fnn.Dense(3)])
    longer = fnn.Sequential([fnn.Dense(3), fnn.Dense(3), fnn.Dense(2)])
    p_short, _ = short.init(jax.random.key(0), (2,))
    p_long, _ = longer.init(jax.random.key(0), (2,))
    for k in p_short:
        np.testing.assert_array_equal(p_short[k]["w"], p_long[k]["w"])
    # child i is initialised with fold_in(key, i)
    expected, _ = fnn.Dense(3).init(jax.random.fold_in(jax.random.key(0), 1), (3,))
    np.testing.assert_array_equal(p_long["dense_1"]["w"], expected["w"])


def test_dropout_key_reaches_children_by_fold_in():
    model = fnn.Sequential([fnn.Identity(), fnn.Dropout(0.5)])
    x = jnp.ones((4, 8))
    y, _ = model.apply(
        {"identity": {}, "dropout": {}}, {"identity": {}, "dropout": {}}, x, train=True, key=jax.random.key(5)
    )
    direct, _ = fnn.Dropout(0.5).apply({}, {}, x, train=True, key=jax.random.fold_in(jax.random.key(5), 1))
    np.testing.assert_array_equal(y, direct)


def test_errors_name_the_child_index_name_and_input_shape():
    model = fnn.Sequential([fnn.Dense(4), fnn.Sequential([fnn.Dense(2), fnn.Reshape((3,))], name="head")])
    with pytest.raises(ValueError, match=r"Reshape 'reshape' cannot reshape") as info:
        model.init(jax.random.key(0), (3,))
    notes = "\n".join(info.value.__notes__)
    assert "in Sequential 'head', child 1 'reshape' with per-example input shape (2,)" in notes
    assert "in Sequential 'sequential', child 1 'head' with per-example input shape (4,)" in notes
    params, state = fnn.Sequential([fnn.Dense(4), fnn.Dense(2)]).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"child 0 'dense' with per-example input shape \(5,\)"):
        fnn.Sequential([fnn.Dense(4), fnn.Dense(2)]).apply(params, state, jnp.ones((2, 5)), train=False)


def test_errors_keep_their_context_under_jit():
    model = fnn.Sequential([fnn.Dense(4)])
    params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"child 0 'dense' with per-example input shape \(7,\)"):
        jax.jit(model.apply, static_argnames="train")(params, state, jnp.ones((2, 7)), train=False)


def test_children_run_under_named_scopes():
    model = fnn.Sequential([fnn.Dense(4), fnn.Sequential([fnn.Dense(2)], name="head")])
    params, state = model.init(jax.random.key(0), (3,))
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, state, x, train=False)[0])(params, jnp.ones((1, 3)))
    stacks = {str(eqn.source_info.name_stack) for eqn in jaxpr.eqns}
    assert "dense" in stacks and "head/dense" in stacks


def test_combinator_argument_errors():
    with pytest.raises(
        TypeError,
        match=r"Sequential 'sequential': item 1 is not a Layer but function .*did you forget to call a constructor",
    ):
        fnn.Sequential([fnn.Dense(2), fnn.Relu])
    with pytest.raises(
        TypeError, match=r"Sequential 'sequential' expects a non-empty list of layers, got \[\]"
    ):
        fnn.Sequential([])
    model = fnn.Sequential([fnn.Dense(2)])
    with pytest.raises(
        ValueError,
        match=r"Sequential 'sequential' expects params with one entry per child \['dense'\], got \['dense_1'\]",
    ):
        model.apply({"dense_1": {}}, {"dense": {}}, jnp.ones((1, 2)), train=False)
    with pytest.raises(ValueError, match=r"FanOut 'fan_out': num must be a positive int, got 0"):
        fnn.FanOut(0)


def test_parallel_fan_out_and_fan_in():
    model = fnn.Sequential([fnn.FanOut(2), fnn.Parallel([fnn.Dense(3), fnn.Dense(5)]), fnn.FanInConcat()])
    params, state = model.init(jax.random.key(0), (4,))
    x = rand((2, 4))
    y, _ = model.apply(params, state, x, train=False)
    p = params["parallel"]
    np.testing.assert_allclose(y[:, :3], affine(x, p["dense"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[:, 3:], affine(x, p["dense_1"]), rtol=1e-5, atol=1e-6)
    total, _ = fnn.FanInSum().apply({}, {}, (x, 2 * x, 3 * x), train=False)
    np.testing.assert_allclose(total, 6 * x, rtol=1e-6)
    stacked, _ = fnn.FanInConcat(axis=0).apply({}, {}, (x[:, None], x[:, None]), train=False)
    assert stacked.shape == (2, 2, 4)


def test_parallel_and_fan_in_errors():
    par = fnn.Parallel([fnn.Dense(3), fnn.Dense(5)])
    with pytest.raises(
        ValueError,
        match=r"Parallel 'parallel' expects a tuple of 2 input shapes \(one per branch\), got 3 items",
    ):
        par.init(jax.random.key(0), ((4,), (4,), (4,)))
    params, state = par.init(jax.random.key(0), ((4,), (2,)))
    with pytest.raises(
        ValueError, match=r"Parallel 'parallel' expects a tuple of 2 inputs \(one per branch\)"
    ):
        par.apply(params, state, jnp.ones((1, 4)), train=False)
    with pytest.raises(
        ValueError,
        match=r"FanInConcat 'fan_in_concat' needs inputs whose shapes agree except on per-example axis -1; got shapes \[\(2, 3, 1\), \(2, 4, 1\)\]",
    ):
        fnn.FanInConcat().apply({}, {}, (jnp.ones((2, 3, 1)), jnp.ones((2, 4, 1))), train=False)
    with pytest.raises(
        ValueError,
        match=r"FanInSum 'fan_in_sum' needs inputs of identical shape; got shapes \[\(2, 3\), \(2, 1\)\]",
    ):
        fnn.FanInSum().apply({}, {}, (jnp.ones((2, 3)), jnp.ones((2, 1))), train=False)
    with pytest.raises(ValueError, match=r"FanInSum 'fan_in_sum' expects a non-empty tuple of arrays"):
        fnn.FanInSum().apply({}, {}, jnp.ones((2, 3)), train=False)
    with pytest.raises(TypeError, match=r"FanInConcat 'fan_in_concat': axis must be an int .*got 'x'"):
        fnn.FanInConcat("x")  # was "'>=' not supported between instances of 'str' and 'int'" in apply


def test_residual_adds_its_branch_and_checks_shape():
    block = fnn.Residual(fnn.Dense(3))
    params, state = block.init(jax.random.key(0), (3,))
    x = rand((2, 3))
    y, _ = block.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, x + affine(x, params["dense"]), rtol=1e-5, atol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"Residual 'residual' needs its branch 'dense' to keep the per-example shape \(3,\), got \(2,\)",
    ):
        fnn.Residual(fnn.Dense(2)).init(jax.random.key(0), (3,))


# --------------------------------------------------------------- shapes and summary


def test_output_shape_and_shape_dtype():
    assert fnn.output_shape(mlp(), (3,)) == (2,)
    assert fnn.output_shape(fnn.FanOut(2), (3,)) == ((3,), (3,))
    assert fnn.output_shape(fnn.Flatten(), jax.ShapeDtypeStruct((2, 3), jnp.float16)).dtype == jnp.float16
    with pytest.raises(
        TypeError, match=r"input_shape must be a per-example shape such as \(28, 28, 1\).*got 'abc'"
    ):
        fnn.output_shape(fnn.Flatten(), "abc")
    with pytest.raises(
        ValueError, match=r"a layer changed the batch axis: for a batch of 2 it returned shape \(3,\)"
    ):
        fnn.output_shape(fnn.Lambda(lambda x: x[0]), (3,))


def test_summary_counts_params_and_renders_a_table():
    model = fnn.Sequential([fnn.Dense(8, "relu"), fnn.Residual(fnn.Dense(8)), fnn.Dense(3)])
    s = fnn.summary(model, (4,))
    assert s.params == (4 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)
    assert s.state == 0 and s.bytes == 4 * s.params
    assert [r.path for r in s.rows] == [
        "sequential", "sequential/dense", "sequential/residual", "sequential/residual/dense",
        "sequential/dense_1",
    ]  # fmt: skip
    assert [r.output_shape for r in s.rows] == [(3,), (8,), (8,), (8,), (3,)]
    text = str(s)
    assert "Trainable params: 139" in text and "sequential/residual/dense" in text
