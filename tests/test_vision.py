"""Convolution, pooling and normalisation numerics against direct NumPy loops; their errors."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def per_axis(value, nd):
    """An int for every spatial axis, or one value per axis, as a tuple."""
    return (value,) * nd if isinstance(value, int) else tuple(value)


def run_layer(ctor, shape, kwargs):
    """Builds the layer, applies it to a random batch of 2; returns (params, x, y)."""
    layer = ctor(**kwargs)
    params, state = layer.init(jax.random.key(0), shape)
    x = rand((2, *shape))
    return params, x, layer.apply(params, state, x, train=False)[0]


def same_pads(size, kernel, stride):
    """XLA/TensorFlow 'same': output ceil(size / stride), extra padding on the high side."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pads_for(padding, spatial, kernel_eff, strides):
    if padding == "same":
        return [same_pads(n, k, s) for n, k, s in zip(spatial, kernel_eff, strides)]
    if padding == "valid":
        return [(0, 0)] * len(spatial)
    return [(p, p) if isinstance(p, int) else p for p in padding]


def np_conv(x, w, strides, pads, dilation, groups):
    """y[b, o..., f] = sum over kernel taps k and the group's channels of x[b, o*s + k*d - lo, c] w[k, c, f]."""
    x = np.pad(x.astype(np.float64), [(0, 0), *pads, (0, 0)])
    *kernel, c_per_group, filters = w.shape
    nd = len(kernel)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    out = [(x.shape[1 + i] - eff[i]) // strides[i] + 1 for i in range(nd)]
    f_per_group = filters // groups
    y = np.zeros((x.shape[0], *out, filters))
    for o in itertools.product(*map(range, out)):
        for k in itertools.product(*map(range, kernel)):
            pos = tuple(o[i] * strides[i] + k[i] * dilation[i] for i in range(nd))
            for g in range(groups):
                patch = x[(slice(None), *pos, slice(g * c_per_group, (g + 1) * c_per_group))]
                block = w[(*k, slice(None), slice(g * f_per_group, (g + 1) * f_per_group))]
                y[(slice(None), *o, slice(g * f_per_group, (g + 1) * f_per_group))] += patch @ block
    return y


CONV_CASES = [
    # (constructor, per-example input shape, kwargs)
    (fnn.Conv1D, (9, 2), dict(filters=3, kernel_size=3)),
    (fnn.Conv1D, (9, 4), dict(filters=4, kernel_size=2, strides=2, padding="same", dilation=2, groups=2)),
    (fnn.Conv1D, (6, 1), dict(filters=2, kernel_size=3, padding=[(2, 1)])),
    (fnn.Conv2D, (6, 5, 3), dict(filters=2, kernel_size=(3, 2), strides=(2, 1), padding="same")),
    (fnn.Conv2D, (7, 7, 2), dict(filters=4, kernel_size=3, dilation=(2, 1), padding="valid")),
    (fnn.Conv2D, (5, 5, 4), dict(filters=6, kernel_size=2, groups=2, padding=1)),
    (fnn.Conv2D, (4, 4, 3), dict(filters=3, kernel_size=3, groups=3, padding="same")),
    (fnn.Conv3D, (4, 3, 4, 2), dict(filters=2, kernel_size=2, strides=(1, 2, 1), padding="same")),
    (fnn.Conv3D, (4, 4, 4, 1), dict(filters=1, kernel_size=(2, 3, 2), dilation=(1, 1, 2))),
]


@pytest.mark.parametrize("ctor, shape, kwargs", CONV_CASES)
def test_convolutions_match_a_numpy_loop(ctor, shape, kwargs):
    params, x, y = run_layer(ctor, shape, kwargs)
    nd = len(shape) - 1
    kernel, strides, dilation = (
        per_axis(kwargs.get(k, 1), nd) for k in ("kernel_size", "strides", "dilation")
    )
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    padding = kwargs.get("padding", "valid")
    padding = per_axis(padding, nd) if isinstance(padding, int) else padding
    pads = pads_for(padding, shape[:-1], eff, strides)
    expected = np_conv(x, np.asarray(params["w"]), strides, pads, dilation, kwargs.get("groups", 1))
    np.testing.assert_allclose(y, expected + np.asarray(params["b"]), rtol=1e-4, atol=1e-5)


def test_depthwise_and_separable_match_numpy():
    x = rand((2, 5, 5, 3))
    depthwise = fnn.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    params, state = depthwise.init(jax.random.key(1), (5, 5, 3))
    y, _ = depthwise.apply(params, state, x, train=False)
    pads = pads_for("same", (5, 5), (3, 3), (1, 1))
    expected = np_conv(x, np.asarray(params["w"]), (1, 1), pads, (1, 1), groups=3) + np.asarray(params["b"])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    separable = fnn.SeparableConv2D(4, 2)
    params, state = separable.init(jax.random.key(2), (5, 5, 3))
    y, _ = separable.apply(params, state, x, train=False)
    mid = np_conv(x, np.asarray(params["depthwise"]["w"]), (1, 1), [(0, 0)] * 2, (1, 1), groups=3)
    out = np_conv(mid, np.asarray(params["pointwise"]["w"]), (1, 1), [(0, 0)] * 2, (1, 1), groups=1)
    np.testing.assert_allclose(y, out + np.asarray(params["pointwise"]["b"]), rtol=1e-4, atol=1e-5)


def np_conv_transpose(x, w, strides, padding, dilation):
    """The adjoint of the forward conv that maps an output-sized z to x: scatter each x[o] through w."""
    *kernel, filters, _ = w.shape
    nd = len(kernel)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    spatial = x.shape[1:-1]
    if padding == "same":
        size = [n * s for n, s in zip(spatial, strides)]
        lows = [max((n - 1) * s + e - z, 0) // 2 for n, s, e, z in zip(spatial, strides, eff, size)]
    else:
        size = [(n - 1) * s + e for n, s, e in zip(spatial, strides, eff)]
        lows = [0] * nd
    z = np.zeros((x.shape[0], *size, filters))
    for o in itertools.product(*map(range, spatial)):
        for k in itertools.product(*map(range, kernel)):
            pos = tuple(o[i] * strides[i] + k[i] * dilation[i] - lows[i] for i in range(nd))
            if all(0 <= p < n for p, n in zip(pos, size)):
                z[(slice(None), *pos)] += x[(slice(None), *o)].astype(np.float64) @ w[k].T
    return z


@pytest.mark.parametrize(
    "ctor, shape, kwargs",
    [
        (fnn.Conv1DTranspose, (4, 2), dict(filters=3, kernel_size=3, strides=2)),
        (fnn.Conv1DTranspose, (5, 1), dict(filters=2, kernel_size=3, strides=2, padding="same")),
        (fnn.Conv2DTranspose, (3, 4, 2), dict(filters=2, kernel_size=(3, 2), strides=(2, 1), padding="same")),
        (fnn.Conv2DTranspose, (3, 3, 1), dict(filters=2, kernel_size=2, dilation=2)),
        (fnn.Conv3DTranspose, (2, 3, 2, 2), dict(filters=1, kernel_size=2, strides=2)),
    ],
)
def test_transposed_convolutions_match_the_numpy_adjoint(ctor, shape, kwargs):
    params, x, y = run_layer(ctor, shape, kwargs)
    nd = len(shape) - 1
    expected = np_conv_transpose(
        x, np.asarray(params["w"]), per_axis(kwargs.get("strides", 1), nd), kwargs.get("padding", "valid"),
        per_axis(kwargs.get("dilation", 1), nd),
    )  # fmt: skip
    np.testing.assert_allclose(y, expected + np.asarray(params["b"]), rtol=1e-4, atol=1e-5)


def np_pool(x, window, strides, pads, reducer):
    x = x.astype(np.float64)
    fill = -np.inf if reducer == "max" else np.nan
    x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    nd = len(window)
    out = [(x.shape[1 + i] - window[i]) // strides[i] + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in itertools.product(*map(range, out)):
        region = x[
            (slice(None), *(slice(o[i] * strides[i], o[i] * strides[i] + window[i]) for i in range(nd)))
        ]
        region = region.reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *o)] = region.max(axis=1) if reducer == "max" else np.nanmean(region, axis=1)
    return y


@pytest.mark.parametrize(
    "ctor, shape, kwargs",
    [
        (fnn.MaxPool1D, (7, 2), dict(pool_size=2)),
        (fnn.MaxPool1D, (7, 2), dict(pool_size=3, strides=2, padding="same")),
        (fnn.MaxPool2D, (5, 6, 2), dict(pool_size=(2, 3), strides=1)),
        (fnn.MaxPool2D, (5, 5, 1), dict(pool_size=3, strides=2, padding=1)),
        (fnn.MaxPool3D, (4, 4, 3, 1), dict(pool_size=2, padding="same")),
        (fnn.MaxPool2D, (5, 7, 3), dict(pool_size=2)),
        (fnn.MaxPool3D, (4, 5, 6, 2), dict(pool_size=(2, 1, 3))),
        (fnn.AvgPool1D, (7, 2), dict(pool_size=3, strides=2)),
        (fnn.AvgPool2D, (5, 5, 2), dict(pool_size=2, padding="same")),
        (fnn.AvgPool2D, (4, 4, 1), dict(pool_size=3, strides=1, padding=[(1, 1), (0, 2)])),
        (fnn.AvgPool3D, (3, 4, 4, 2), dict(pool_size=(1, 2, 2))),
    ],
)
def test_pooling_matches_a_numpy_loop(ctor, shape, kwargs):
    _, x, y = run_layer(ctor, shape, kwargs)
    nd = len(shape) - 1
    window = per_axis(kwargs["pool_size"], nd)
    strides = per_axis(kwargs.get("strides", kwargs["pool_size"]), nd)
    padding = kwargs.get("padding", "valid")
    padding = per_axis(padding, nd) if isinstance(padding, int) else padding
    pads = pads_for(padding, shape[:-1], window, strides)
    reducer = "max" if "Max" in ctor.__name__ else "avg"
    np.testing.assert_allclose(y, np_pool(x, window, strides, pads, reducer), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "ctor, shape, pool_size",
    [(fnn.MaxPool1D, (7, 2), 2), (fnn.MaxPool2D, (5, 7, 3), 2), (fnn.MaxPool2D, (6, 6, 1), (3, 2)),
     (fnn.MaxPool3D, (4, 5, 6, 2), (2, 1, 3))],
)  # fmt: skip
def test_max_pooling_sends_the_gradient_to_each_windows_first_maximum(ctor, shape, pool_size):
    # Non-overlapping windows take a reshape path; ties (rounded inputs) must not split the gradient.
    x = np.round(rand((2, *shape)) * 2).astype(np.float32)
    layer = ctor(pool_size)
    y, pullback = jax.vjp(lambda x: layer.apply({}, {}, x, train=False)[0], jnp.asarray(x))
    g = rand(y.shape) + 2.0
    (grad,) = pullback(jnp.asarray(g))
    window = per_axis(pool_size, len(shape) - 1)
    expected = np.zeros_like(x)
    for index in np.ndindex(*y.shape):
        batch, *out, channel = index
        corner = [o * k for o, k in zip(out, window)]
        block = x[(batch, *(slice(c, c + k) for c, k in zip(corner, window)), channel)]
        first = np.unravel_index(np.argmax(block), block.shape)  # row-major: the first maximum
        expected[(batch, *(c + f for c, f in zip(corner, first)), channel)] += g[index]
    np.testing.assert_array_equal(np.asarray(grad), expected)


def test_global_pooling():
    x = rand((2, 3, 4, 5))
    np.testing.assert_allclose(fnn.GlobalMaxPool().apply({}, {}, x, train=False)[0], x.max(axis=(1, 2)))
    np.testing.assert_allclose(
        fnn.GlobalAvgPool(keepdims=True).apply({}, {}, x, train=False)[0],
        x.mean(axis=(1, 2), keepdims=True),
        rtol=1e-6,
    )


# --------------------------------------------------------------------- normalisation


def test_batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones():
    bn = fnn.BatchNorm(momentum=0.8, epsilon=1e-3)
    params, state = bn.init(jax.random.key(0), (4, 3))
    scale, offset = np.array([1.0, 2.0, 0.5], np.float32), np.array([0.0, 1.0, -1.0], np.float32)
    params = {"scale": jnp.asarray(scale), "offset": jnp.asarray(offset)}
    x = rand((5, 4, 3)) * 3 + 2
    y, new_state = bn.apply(params, state, x, train=True)
    flat = x.reshape(-1, 3).astype(np.float64)
    mean, var = flat.mean(0), flat.var(0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) * scale + offset, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new_state["mean"], 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["var"], 0.8 + 0.2 * var, rtol=1e-5)
    y_eval, same_state = bn.apply(params, new_state, x, train=False)
    assert same_state is new_state
    running_mean, running_var = np.asarray(new_state["mean"]), np.asarray(new_state["var"])
    expected = (x - running_mean) / np.sqrt(running_var + 1e-3) * scale + offset
    np.testing.assert_allclose(y_eval, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.standard_promotion  # optax's Adam inside fit
def test_batch_norm_running_statistics_converge_in_fit():
    x = rand((256, 3)) * np.array([1.0, 2.0, 3.0], np.float32) + np.array([5.0, -1.0, 0.0], np.float32)
    y = np.zeros((256, 3), np.float32)
    model = fnn.Sequential([fnn.BatchNorm(momentum=0.9)])
    history = fnn.fit(model, x, y, loss="mse", epochs=10, batch_size=64, verbose=0)
    stats = history.state["batch_norm"]
    np.testing.assert_allclose(stats["mean"], x.mean(0), atol=0.15)
    np.testing.assert_allclose(stats["var"], x.var(0), rtol=0.15)


def test_layer_group_and_rms_norm_match_numpy():
    x = rand((2, 3, 4)).astype(np.float64)
    for layer, ref in [
        (
            fnn.LayerNorm(epsilon=1e-5),
            (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5),
        ),
        (fnn.RMSNorm(epsilon=1e-5), x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5)),
    ]:
        params, state = layer.init(jax.random.key(0), (3, 4))
        np.testing.assert_allclose(
            layer.apply(params, state, x.astype(np.float32), train=False)[0], ref, rtol=1e-4, atol=1e-5
        )
    groups = x.reshape(2, 3, 2, 2)
    mean, var = groups.mean(axis=(1, 3), keepdims=True), groups.var(axis=(1, 3), keepdims=True)
    ref = ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    gn = fnn.GroupNorm(2, epsilon=1e-5)
    params, state = gn.init(jax.random.key(0), (3, 4))
    np.testing.assert_allclose(
        gn.apply(params, state, x.astype(np.float32), train=False)[0], ref, rtol=1e-4, atol=1e-5
    )


def test_spatial_dropout_drops_whole_channels():
    y, _ = fnn.SpatialDropout(0.5).apply({}, {}, jnp.ones((8, 5, 5, 16)), train=True, key=jax.random.key(0))
    per_channel = np.asarray(y).reshape(8, 25, 16)
    assert np.all((per_channel == 0).all(axis=1) | (per_channel == 2).all(axis=1))
    assert 0.3 < float(np.mean(per_channel[:, 0] == 0)) < 0.7


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, call, error, match",
    [
        (lambda: fnn.Conv2D(4, 3), lambda l: l.init(jax.random.key(0), (8, 8)), ValueError,
         r"Conv2D 'conv2d' expects per-example input_shape of shape \(height, width, channels\) \(rank 3\), got \(8, 8\)"),
        (lambda: fnn.Conv2D(4, 3), lambda l: l.apply(l.init(jax.random.key(0), (8, 8, 1))[0], {}, jnp.ones((8, 8, 1)), train=False),
         ValueError, r"Conv2D 'conv2d' expects inputs of shape \(batch, height, width, channels\) \(rank 4\), got \(8, 8, 1\)"),
        (lambda: fnn.Conv2D(4, 3, groups=2), lambda l: l.init(jax.random.key(0), (8, 8, 3)), ValueError,
         r"Conv2D 'conv2d': input channels \(3\) must be divisible by groups \(2\); input_shape \(8, 8, 3\)"),
        (lambda: fnn.Conv2D(3, 3, groups=2), None, ValueError, r"Conv2D 'conv2d': filters \(3\) must be divisible by groups \(2\)"),
        (lambda: fnn.Conv2D(4, 5), lambda l: l.init(jax.random.key(0), (4, 4, 1)), ValueError,
         r"Conv2D 'conv2d': the dilated kernel \(5, 5\) is larger than the padded input \(4, 4\)"),
        (lambda: fnn.Conv1D(4, 3, dilation=3), lambda l: l.init(jax.random.key(0), (6, 1)), ValueError,
         r"Conv1D 'conv1d': the dilated kernel \(7,\) is larger than the padded input \(6,\)"),
        (lambda: fnn.Conv2D(4, (3, 3, 3)), None, ValueError,
         r"Conv2D 'conv2d': kernel_size must be a positive int or a tuple of 2 positive ints, got \(3, 3, 3\)"),
        (lambda: fnn.Conv2D(4, 3, padding="full"), None, ValueError,
         r"padding must be 'same', 'valid', a non-negative int, or 2 non-negative ints or \(low, high\) pairs, got 'full'"),
        (lambda: fnn.Conv2D(0, 3), None, ValueError, r"Conv2D 'conv2d': filters must be a positive int, got 0"),
        (lambda: fnn.MaxPool2D(3), lambda l: l.apply({}, {}, jnp.ones((1, 2, 2, 1)), train=False), ValueError,
         r"MaxPool2D 'max_pool2d': the pool window \(3, 3\) is larger than the padded input \(2, 2\)"),
        (lambda: fnn.AvgPool1D(2), lambda l: l.apply({}, {}, jnp.ones((1, 4)), train=False), ValueError,
         r"AvgPool1D 'avg_pool1d' expects inputs of shape \(batch, length, channels\) \(rank 3\), got \(1, 4\)"),
        (lambda: fnn.GlobalAvgPool(), lambda l: l.apply({}, {}, jnp.ones((1, 4)), train=False), ValueError,
         r"GlobalAvgPool 'global_avg_pool' expects inputs of shape \(batch, spatial\.\.\., channels\), got \(1, 4\)"),
        (lambda: fnn.GroupNorm(3), lambda l: l.apply(*l.init(jax.random.key(0), (2, 4)), jnp.ones((1, 2, 4)), train=False),
         ValueError, r"GroupNorm 'group_norm': channels \(4\) must be divisible by groups \(3\); got input shape \(1, 2, 4\)"),
        (lambda: fnn.BatchNorm(momentum=1.0), None, ValueError, r"BatchNorm 'batch_norm': momentum must be in \[0, 1\), got 1.0"),
        (lambda: fnn.BatchNorm(), lambda l: l.apply(*l.init(jax.random.key(0), (3,)), jnp.ones((2, 4)), train=True),
         ValueError, r"BatchNorm 'batch_norm' expects inputs of shape \(batch, \.\.\., 3\), got shape \(2, 4\)"),
        (lambda: fnn.SpatialDropout(1.0), None, ValueError, r"SpatialDropout 'spatial_dropout': rate must be in \[0, 1\), got 1.0"),
        (lambda: fnn.Conv2DTranspose(2, 3, padding="full"), None, ValueError, r"Conv2DTranspose 'conv2d_transpose': padding must be 'same', 'valid', a non-negative int .*got 'full'"),
    ],
)  # fmt: skip
def test_vision_errors_name_the_layer_and_shapes(make, call, error, match):
    with pytest.raises(error, match=match):
        layer = make()
        call(layer)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fnn.Conv2D(2, 2.5), r"Conv2D 'conv2d': kernel_size must be a positive int or a tuple of 2 positive ints, got 2.5"),
        (lambda: fnn.Conv2D(2, (3, 2.5)), r"kernel_size must be a positive int or a tuple of 2 positive ints, got \(3, 2.5\)"),
        (lambda: fnn.Conv1D(2, 3, strides=0), r"Conv1D 'conv1d': strides must be a positive int or a tuple of 1 positive int, got 0"),
        (lambda: fnn.Conv3D(2, 3, dilation="2"), r"Conv3D 'conv3d': dilation must be a positive int or a tuple of 3 positive ints, got '2'"),
        (lambda: fnn.Conv2D(2, 3, padding=1.5), r"Conv2D 'conv2d': padding must be 'same', 'valid', a non-negative int, .*got 1.5"),
        (lambda: fnn.Conv2D(2, 3, padding=(1, (0, -1))), r"padding must be .*\(low, high\) pairs, got \(1, \(0, -1\)\)"),
        (lambda: fnn.Conv2DTranspose(2, True), r"Conv2DTranspose 'conv2d_transpose': kernel_size must be a positive int .*got True"),
        (lambda: fnn.DepthwiseConv2D(None), r"DepthwiseConv2D 'depthwise_conv2d': kernel_size must be .*got None"),
        (lambda: fnn.MaxPool2D(2.0), r"MaxPool2D 'max_pool2d': pool_size must be a positive int or a tuple of 2 positive ints, got 2.0"),
        (lambda: fnn.AvgPool1D(2, strides=[1, 1]), r"AvgPool1D 'avg_pool1d': strides must be a positive int or a tuple of 1 positive int, got \[1, 1\]"),
        (lambda: fnn.MaxPool3D(2, padding="full"), r"MaxPool3D 'max_pool3d': padding must be 'same', 'valid', .*got 'full'"),
    ],
)  # fmt: skip
def test_window_arguments_must_be_positive_ints_or_tuples_of_them(make, match):
    # Issue 20: Conv2D(2, 2.5) raised "'float' object is not iterable".
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "make, built_for, given, match",
    [
        (lambda: fnn.Conv2D(6, 3), (8, 8, 1), (2, 8, 8, 3),
         r"Conv2D 'conv2d' expects inputs of shape \(batch, height, width, 1\) \(its params were built for 1 input "
         r"channels\), got shape \(2, 8, 8, 3\)"),
        (lambda: fnn.Conv2D(4, 3, groups=2), (8, 8, 4), (2, 8, 8, 8), r"expects inputs of shape \(batch, height, width, 4\)"),
        (lambda: fnn.Conv1D(4, 3), (8, 2), (2, 8, 4), r"Conv1D 'conv1d' expects inputs of shape \(batch, length, 2\)"),
        # A depthwise kernel built for 2 channels once ran on 4 as a different convolution.
        (lambda: fnn.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 2), (2, 8, 8, 4),
         r"DepthwiseConv2D 'depthwise_conv2d' expects inputs of shape \(batch, height, width, 2\)"),
    ],
)  # fmt: skip
def test_convolutions_reject_channels_their_params_were_not_built_for(make, built_for, given, match):
    # Issue 20: a Conv2D built for 1 channel, given 3, failed in XLA on feature_group_count.
    layer = make()
    params, state = layer.init(jax.random.key(0), built_for)
    with pytest.raises(ValueError, match=match):
        layer.apply(params, state, jnp.ones(given), train=False)


@pytest.mark.standard_promotion  # as users run it: strict promotion would hide a silent cast
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fnn.Conv2D(2, 3), r"Conv2D 'conv2d' expects float32 inputs \(the dtype of its params\), got uint8"),
        (lambda: fnn.Conv2DTranspose(2, 3), r"Conv2DTranspose 'conv2d_transpose' expects float32 inputs .*got uint8"),
        (lambda: fnn.MaxPool2D(2), r"MaxPool2D 'max_pool2d' expects floating-point inputs, got uint8"),
        (lambda: fnn.GlobalAvgPool(), r"GlobalAvgPool 'global_avg_pool' expects floating-point inputs, got uint8"),
        (lambda: fnn.BatchNorm(), r"BatchNorm 'batch_norm' expects float32 inputs .*got uint8"),
        (lambda: fnn.LayerNorm(center=False, scale=False), r"LayerNorm 'layer_norm' expects floating-point inputs, got uint8"),
    ],
)  # fmt: skip
def test_vision_layers_reject_integer_images_naming_the_layer(make, match):
    # Issue 20: Conv2D gave a raw JAX error for integer images; pooling cast them silently.
    layer = make()
    params, state = layer.init(jax.random.key(0), (6, 6, 3))
    with pytest.raises(TypeError, match=match + r" of shape \(2, 6, 6, 3\); .*x.astype\(jnp.float32\)"):
        layer.apply(params, state, jnp.ones((2, 6, 6, 3), jnp.uint8), train=False)
