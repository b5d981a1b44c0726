"""Keras's numeric preprocessing layers (issue 22 §3) against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn

KEY = jax.random.key(0)


def run(layer, x, input_shape=None, train=False):
    x = jnp.asarray(x)
    shape = fnn.Shape(x.shape[1:], x.dtype) if input_shape is None else input_shape
    params, state = layer.init(KEY, shape)
    y, new_state = jax.jit(lambda p, s, x: layer.apply(p, s, x, train=train))(params, state, x)
    return y, state, new_state


# --------------------------------------------------------------------------- Normalization


@pytest.mark.parametrize("axis", [-1, (1, 2), None])
def test_normalization_state_of_a_stream_is_that_of_the_concatenated_data(axis):
    # A large offset makes the naive sum(x^2) - n mean^2 lose every digit; Chan's merge keeps them.
    rng = np.random.default_rng(0)
    x = 1e4 + rng.standard_normal((23, 3, 2)) * np.array([1.0, 2.0])
    stream = (x[i : i + 5] for i in range(0, 23, 5))  # ragged last batch of 3
    axes = {-1: (0, 1), (1, 2): (0,), None: None}[axis]
    want_mean, want_var = x.mean(axis=axes), x.var(axis=axes)
    for data in (x, stream):
        stats = fnn.normalization_state(data, axis=axis)
        assert stats["mean"].dtype == jnp.float32 and stats["mean"].shape == np.shape(want_mean)
        np.testing.assert_allclose(stats["mean"], want_mean, rtol=1e-7)
        np.testing.assert_allclose(stats["variance"], want_var, rtol=1e-6)


def test_normalization_applies_keras_formula_never_changes_state_and_inverts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3)).astype(np.float32) * 3 + 1
    mean, var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.0, 0.25])  # a constant feature: var 0
    layer = fnn.Normalization(mean=mean, variance=var)
    for train in (False, True):
        y, state, new_state = run(layer, x, train=train)
        assert new_state is state or all(np.array_equal(new_state[k], state[k]) for k in ("mean", "variance"))
        np.testing.assert_allclose(y, (x - mean) / np.maximum(np.sqrt(var), 1e-7), rtol=1e-5)
    inverse = fnn.Normalization(mean=mean, variance=np.array([4.0, 1.0, 0.25]), invert=True)
    back, _, _ = run(inverse, (x - mean) / np.array([2.0, 1.0, 0.5]))
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-5)
    # A scalar statistic broadcasts over the kept axis, as in Keras; bfloat16 stays bfloat16.
    y, state, _ = run(fnn.Normalization(mean=2.0, variance=4.0), jnp.asarray(x, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16 and state["mean"].shape == (3,)


def test_normalization_errors_name_the_layer_and_the_fix():
    with pytest.raises(
        ValueError, match=r"Normalization 'normalization' has no statistics: .*normalization_state"
    ):
        fnn.Normalization().init(KEY, (3,))
    with pytest.raises(ValueError, match="pass both mean and variance"):
        fnn.Normalization(mean=0.0)
    with pytest.raises(ValueError, match="variance must be non-negative"):
        fnn.Normalization(mean=0.0, variance=-1.0)
    with pytest.raises(ValueError, match=r"axis 0 names the batch axis"):
        fnn.Normalization(axis=0, mean=0.0, variance=1.0)
    layer = fnn.Normalization(mean=np.zeros(3), variance=np.ones(3), name="norm")
    with pytest.raises(ValueError, match=r"Normalization 'norm': mean has shape \(3,\), .* shape \(4,\)"):
        layer.init(KEY, (4,))
    params, state = layer.init(KEY, (3,))
    with pytest.raises(ValueError, match=r"Normalization 'norm' expects inputs with sizes \(3,\) on axis -1"):
        layer.apply(params, state, jnp.ones((2, 5)), train=False)
    with pytest.raises(TypeError, match="Normalization 'norm' expects floating-point inputs, got int32"):
        layer.apply(params, state, jnp.ones((2, 3), jnp.int32), train=False)
    with pytest.raises(ValueError, match="holds NaN or inf.*impute"):
        fnn.normalization_state(np.array([[1.0], [np.nan]]))
    with pytest.raises(TypeError, match=r"pass the features only, e.g. \(x for x, y in batches\)"):
        fnn.normalization_state([(np.ones((2, 1)), np.ones(2))])
    with pytest.raises(ValueError, match=r"every batch must have rank 2 and sizes \(2,\)"):
        fnn.normalization_state([np.ones((2, 2)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="holds no examples"):
        fnn.normalization_state(iter([]))


def test_normalization_state_is_the_layer_state_of_an_adapted_model():
    x = np.arange(12.0).reshape(6, 2)
    model = fnn.Sequential([fnn.Normalization(**fnn.normalization_state(x)), fnn.Dense(1)])
    params, state = model.init(KEY, (2,))
    y, _ = model.apply(params, state, jnp.asarray(x, jnp.float32), train=False)
    np.testing.assert_allclose(state["normalization"]["mean"], [5.0, 6.0])
    z = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(
        y, z @ np.asarray(params["dense"]["w"]) + np.asarray(params["dense"]["b"]), rtol=1e-5
    )


# --------------------------------------------------------------------------- Discretization


def test_discretization_buckets_as_np_digitize_and_marks_nan():
    bounds = [-1.0, 0.0, 0.5, 2.0]
    x = np.array([[-3.0, -1.0, 0.0, 0.2], [0.5, 1.9, 2.0, np.nan]], np.float32)
    y, _, _ = run(fnn.Discretization(bounds), x)
    want = np.digitize(x, bounds)
    want[np.isnan(x)] = -1  # np.digitize would silently say "last bucket"
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(y, want)


def test_discretization_state_gives_quantiles_on_arrays_and_streams():
    x = np.random.default_rng(2).uniform(0, 1, 400)
    bounds = fnn.discretization_state(x, num_bins=4)["bin_boundaries"]
    np.testing.assert_allclose(bounds, np.quantile(x, [0.25, 0.5, 0.75]), atol=0.02)
    streamed = fnn.discretization_state((x[i : i + 100] for i in range(0, 400, 100)), num_bins=4)
    np.testing.assert_allclose(streamed["bin_boundaries"], bounds, atol=0.02)
    layer = fnn.Discretization(**fnn.discretization_state(x, num_bins=4))
    y, _, _ = run(layer, x[:, None].astype(np.float32))
    np.testing.assert_array_equal(y[:, 0], np.digitize(x.astype(np.float32), bounds))
    assert np.abs(np.bincount(np.asarray(y[:, 0]), minlength=4) - 100).max() <= 2  # quartiles


def test_discretization_errors():
    with pytest.raises(
        ValueError, match=r"Discretization 'discretization' has no bin_boundaries.*num_bins=3"
    ):
        fnn.Discretization(num_bins=3).init(KEY, (1,))
    with pytest.raises(ValueError, match="num_bins=3 disagrees with 1 bin_boundaries"):
        fnn.Discretization([0.0], num_bins=3)
    with pytest.raises(ValueError, match="non-decreasing"):
        fnn.Discretization([1.0, 0.0])
    with pytest.raises(ValueError, match="4 bins need at least 4 values"):
        fnn.discretization_state(np.array([1.0, 2.0]), num_bins=4)
    layer = fnn.Discretization([0.0])
    with pytest.raises(TypeError, match="Discretization 'discretization' expects floating-point inputs"):
        layer.apply({}, {"bin_boundaries": jnp.zeros(1)}, jnp.ones((2, 1), jnp.int32), train=False)


# --------------------------------------------------------------------------- CategoryEncoding


def test_category_encoding_matches_bincount_and_poisons_out_of_range_rows():
    ids = np.array([[0, 3, 3], [1, 1, 2], [4, 0, 1], [-1, 2, 2]], np.int32)
    for mode in ("count", "multi_hot"):
        y, _, _ = run(fnn.CategoryEncoding(4, mode), ids)
        for row, out in zip(ids[:2], np.asarray(y)[:2]):
            counts = np.bincount(row, minlength=4)
            np.testing.assert_array_equal(out, counts if mode == "count" else counts > 0)
        assert np.isnan(y[2:]).all()  # ids 4 and -1 are out of range: the whole row, never dropped
    one_hot, _, _ = run(fnn.CategoryEncoding(3, "one_hot"), np.array([[2], [0], [3]], np.int32))
    np.testing.assert_array_equal(one_hot[:2], np.eye(3)[[2, 0]])
    assert np.isnan(one_hot[2]).all()


def test_category_encoding_errors():
    layer = fnn.CategoryEncoding(3, "one_hot", name="enc")
    with pytest.raises(
        ValueError, match=r"'enc' with output_mode='one_hot' expects ids of shape .* got \(2, 2\); use"
    ):
        layer.apply({}, {}, jnp.zeros((2, 2), jnp.int32), train=False)
    with pytest.raises(TypeError, match=r"CategoryEncoding 'enc' expects integer inputs"):
        layer.apply({}, {}, jnp.zeros((2,), jnp.float32), train=False)
    with pytest.raises(ValueError, match="output_mode must be one of"):
        fnn.CategoryEncoding(3, "tf_idf")


# --------------------------------------------------------------------------- images


def test_rescaling_center_crop_and_their_errors():
    x = np.arange(2 * 5 * 4 * 1, dtype=np.float32).reshape(2, 5, 4, 1)
    y, _, _ = run(fnn.Rescaling(1 / 127.5, -1.0), x)
    np.testing.assert_allclose(y, x / 127.5 - 1, rtol=1e-6)
    crop, _, _ = run(fnn.CenterCrop(2, 3), x)
    np.testing.assert_array_equal(crop, x[:, 1:3, 0:3])  # (5-2)//2 = 1, (4-3)//2 = 0, as in Keras
    with pytest.raises(
        ValueError, match=r"CenterCrop 'center_crop' crops 6x3 but got images of 5x4.*Resizing"
    ):
        fnn.CenterCrop(6, 3).apply({}, {}, jnp.asarray(x), train=False)
    with pytest.raises(TypeError, match="Rescaling 'rescaling' expects floating-point inputs, got uint8"):
        fnn.Rescaling(0.5).apply({}, {}, jnp.zeros((1, 2), jnp.uint8), train=False)


def test_resizing_matches_closed_forms():
    ramp = np.broadcast_to(np.arange(4.0, dtype=np.float32)[None, :], (3, 4)).reshape(1, 3, 4, 1)
    up, _, _ = run(fnn.Resizing(3, 8), ramp)
    # Half-pixel centres: output column j samples source x = (j + 0.5) * 4/8 - 0.5, clamped at the edges.
    want = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(up[0, :, :, 0], np.broadcast_to(want, (3, 8)), atol=1e-6)
    image = np.random.default_rng(3).standard_normal((1, 6, 4, 2)).astype(np.float32)
    near, _, _ = run(fnn.Resizing(3, 2, "nearest"), image)
    np.testing.assert_array_equal(near, image[:, [1, 3, 5]][:, :, [1, 3]])  # floor((i + 0.5) * 2)
    const, _, _ = run(fnn.Resizing(5, 3, "bicubic"), np.full((1, 4, 4, 1), 7.0, np.float32))
    np.testing.assert_allclose(const, 7.0, rtol=1e-6)
    # Keras's aspect crop: a 6x4 image to 2x2 keeps the central 4x4 first.
    cropped, _, _ = run(fnn.Resizing(2, 2, "nearest", crop_to_aspect_ratio=True), image)
    np.testing.assert_array_equal(cropped, image[:, 1:5][:, [1, 3]][:, :, [1, 3]])
    with pytest.raises(TypeError, match="Resizing 'resizing' expects floating-point inputs"):
        fnn.Resizing(2, 2).apply({}, {}, jnp.zeros((1, 4, 4, 1), jnp.int32), train=False)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, height, width, channels\)"):
        fnn.Resizing(2, 2).apply({}, {}, jnp.zeros((4, 4, 1)), train=False)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        fnn.Resizing(2, 2, "area")


# --------------------------------------------------------------------------- to_categorical


def test_to_categorical_matches_np_eye_and_refuses_bad_labels():
    y = np.array([[2], [0], [1]])
    np.testing.assert_array_equal(fnn.data.to_categorical(y), np.eye(3)[[2, 0, 1]])
    assert fnn.data.to_categorical(np.array([[0, 1]]), num_classes=4).shape == (1, 2, 4)
    with pytest.raises(ValueError, match=r"labels must be >= 0, got -1 at index \(1,\)"):
        fnn.data.to_categorical(np.array([0, -1]))
    with pytest.raises(ValueError, match=r"labels must be < num_classes=3, got 3"):
        fnn.data.to_categorical(np.array([0, 3]), num_classes=3)
    with pytest.raises(TypeError, match=r"integer class labels, got float64.*astype"):
        fnn.data.to_categorical(np.array([0.0, 1.0]))
