"""Layer options that porting Keras/PyTorch models needs (issue 23, section 3), against NumPy references.

BatchNorm's PyTorch semantics and ``axis``, Conv1D's causal padding, and the
transposed convolutions' ``output_padding``.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- BatchNorm: PyTorch's running variance, its momentum, and a channel axis ---------------------------------


def np_batch_norm_torch(x, scale, offset, mean, var, torch_momentum, eps):
    """torch.nn.BatchNorm2d's training step, written from its documentation, in float64 (channels first)."""
    x = x.astype(np.float64)
    axes = (0, 2, 3)
    n = x.size // x.shape[1]
    batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)  # biased: normalises
    view = (1, -1, 1, 1)
    y = (x - batch_mean.reshape(view)) / np.sqrt(batch_var.reshape(view) + eps)
    y = y * scale.reshape(view) + offset.reshape(view)
    new_mean = (1 - torch_momentum) * mean + torch_momentum * batch_mean
    new_var = (1 - torch_momentum) * var + torch_momentum * batch_var * n / (n - 1)  # unbiased: running
    return y, new_mean, new_var


def test_batch_norm_torch_recipe_matches_torch_semantics_channels_first():
    bn = fnn.BatchNorm(momentum=0.9, epsilon=1e-5, running_variance="unbiased", axis=1)
    params, state = bn.init(jax.random.key(0), (3, 2, 2))
    assert {k: v.shape for k, v in params.items()} == {"scale": (3,), "offset": (3,)}
    assert {k: v.shape for k, v in state.items()} == {"mean": (3,), "var": (3,)}
    params = {"scale": jnp.asarray(rand((3,), 1)), "offset": jnp.asarray(rand((3,), 2))}
    mean, var = np.zeros(3), np.ones(3)
    step = jax.jit(functools.partial(bn.apply, train=True))
    for seed in (3, 4):  # two steps, so the running statistics start away from their init
        x = rand((4, 3, 2, 2), seed) * 2 + 1
        y, state = step(params, state, x)
        ref_y, mean, var = np_batch_norm_torch(
            x, np.asarray(params["scale"]), np.asarray(params["offset"]), mean, var, 0.1, 1e-5
        )
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state["mean"], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["var"], var, rtol=1e-5, atol=1e-6)
    # Inference normalises by the running statistics, as torch's eval() does.
    x = rand((2, 3, 2, 2), 5)
    y, same = bn.apply(params, state, x, train=False)
    view = (1, -1, 1, 1)
    scale, offset = (np.asarray(params[k]).reshape(view) for k in ("scale", "offset"))
    expected = (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + 1e-5) * scale + offset
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert same is state


def test_batch_norm_axis_is_channels_last_after_moving_the_axis():
    x = rand((2, 3, 4, 5), 6)
    first = fnn.BatchNorm(momentum=0.5, axis=-3)  # axis 1 counted from the end
    params, state = first.init(jax.random.key(0), x.shape[1:])
    y, new_state = first.apply(params, state, x, train=True)
    last = fnn.BatchNorm(momentum=0.5)
    params_last, state_last = last.init(jax.random.key(0), (4, 5, 3))
    y_last, new_last = last.apply(params_last, state_last, np.moveaxis(x, 1, -1), train=True)
    np.testing.assert_allclose(y, np.moveaxis(np.asarray(y_last), -1, 1), rtol=1e-6, atol=1e-6)
    for k in ("mean", "var"):
        np.testing.assert_allclose(new_state[k], new_last[k], rtol=1e-6)
    # Biased by default, as Keras: the running variance moves towards the plain batch variance.
    np.testing.assert_allclose(new_state["var"], 0.5 + 0.5 * x.var(axis=(0, 2, 3)), rtol=1e-5)


def test_batch_norm_option_errors():
    with pytest.raises(ValueError, match=r"BatchNorm 'batch_norm': axis must be a non-zero int .*got 0"):
        fnn.BatchNorm(axis=0)
    with pytest.raises(ValueError, match=r"axis must be a non-zero int .*got True"):
        fnn.BatchNorm(axis=True)
    with pytest.raises(
        ValueError, match=r"running_variance must be 'biased' \(Keras\) or 'unbiased'.*got 'sample'"
    ):
        fnn.BatchNorm(running_variance="sample")
    with pytest.raises(ValueError, match=r"'bn': axis=4 is not a non-batch axis .*input_shape \(3, 2, 2\)"):
        fnn.BatchNorm(axis=4, name="bn").init(jax.random.key(0), (3, 2, 2))
    bn = fnn.BatchNorm(axis=1, name="bn")
    params, state = bn.init(jax.random.key(0), (3, 2))
    with pytest.raises(
        ValueError, match=r"'bn' expects inputs with 3 channels on axis 1, got shape \(2, 2, 3\)"
    ):
        bn.apply(params, state, jnp.ones((2, 2, 3)), train=False)
    params, state = fnn.BatchNorm(axis=2, name="bn").init(jax.random.key(0), (3, 4))
    with pytest.raises(ValueError, match=r"axis=2 is not a non-batch axis of inputs of shape \(2, 3\)"):
        fnn.BatchNorm(axis=2, name="bn").apply(params, state, jnp.ones((2, 3)), train=False)
    torch_like = fnn.BatchNorm(running_variance="unbiased", name="bn")
    params, state = torch_like.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"'unbiased' needs more than one value per channel.*\(1, 3\)"):
        torch_like.apply(params, state, jnp.ones((1, 3)), train=True)
    torch_like.apply(params, state, jnp.ones((1, 3)), train=False)  # inference needs no batch statistics


# --- Conv1D(padding="causal") ---------------------------------------------------------------------------------


def np_causal_conv1d(x, w, b, stride, dilation):
    """y[t] = sum_j x[t * stride - dilation * (k - 1 - j)] @ w[j] + b, with x = 0 before time 0 (float64)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    k, length = w.shape[0], x.shape[1]
    steps = -(-length // stride)
    y = np.zeros((x.shape[0], steps, w.shape[-1]))
    for t in range(steps):
        for j in range(k):
            src = t * stride - dilation * (k - 1 - j)
            if src >= 0:
                y[:, t] += x[:, src] @ w[j]
    return y + b


@pytest.mark.parametrize("stride, dilation", [(1, 2), (2, 1)])
def test_conv1d_causal_matches_a_direct_loop(stride, dilation):
    layer = fnn.Conv1D(3, 3, strides=stride, dilation=dilation, padding="causal")
    params, state = layer.init(jax.random.key(0), (7, 2))
    x = rand((2, 7, 2))
    y, _ = layer.apply(params, state, x, train=False)
    expected = np_causal_conv1d(x, np.asarray(params["w"]), np.asarray(params["b"]), stride, dilation)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # Causality itself: changing the future leaves earlier outputs alone.
    x_later = x.copy()
    x_later[:, 4:] += 10.0
    y_later, _ = layer.apply(params, state, x_later, train=False)
    kept = -(-4 // stride)  # the outputs at t * stride < 4
    np.testing.assert_array_equal(y_later[:, :kept], y[:, :kept])


def test_causal_padding_errors():
    with pytest.raises(ValueError, match=r"Conv2D 'c': padding='causal' works only with Conv1D"):
        fnn.Conv2D(2, 3, padding="causal", name="c")
    with pytest.raises(
        ValueError, match=r"Conv1D 'c': padding must be 'same', 'valid', 'causal', .*got 'full'"
    ):
        fnn.Conv1D(2, 3, padding="full", name="c")


# --- Conv*Transpose(output_padding=...) -----------------------------------------------------------------------


def np_conv_transpose(x, w, strides, dilation, padding, output_padding):
    """Keras's transposed conv in float64: scatter every input through the kernel, then cut Keras's window.

    The full scatter has ``(n - 1) * s + k`` rows (``k`` dilated). Keras's output has
    ``(n - 1) * s + k + op`` rows ("valid", starting at row 0: PyTorch's ``padding=0``) or
    ``(n - 1) * s + k % 2 + op`` ("same", starting where TensorFlow's "same" forward conv
    on that many rows would pad: ``max((n - 1) * s + k - size, 0) // 2``); rows past the
    scatter are zero.
    """
    *kernel, filters, _ = w.shape
    nd = len(kernel)
    spatial = x.shape[1:-1]
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    full = [(n - 1) * s + e for n, s, e in zip(spatial, strides, eff)]
    z = np.zeros((x.shape[0], *full, filters))
    for o in itertools.product(*map(range, spatial)):
        for k in itertools.product(*map(range, kernel)):
            pos = tuple(o[i] * strides[i] + k[i] * dilation[i] for i in range(nd))
            z[(slice(None), *pos)] += x[(slice(None), *o)].astype(np.float64) @ w[k].astype(np.float64).T
    if padding == "valid":
        size = [f + op for f, op in zip(full, output_padding)]
        lows = [0] * nd
    else:
        size = [(n - 1) * s + e % 2 + op for n, s, e, op in zip(spatial, strides, eff, output_padding)]
        lows = [max(f - m, 0) // 2 for f, m in zip(full, size)]
    out = np.zeros((x.shape[0], *size, filters))
    for pos in itertools.product(*map(range, size)):
        src = tuple(p + lo for p, lo in zip(pos, lows))
        if all(s < f for s, f in zip(src, full)):
            out[(slice(None), *pos)] = z[(slice(None), *src)]
    return out


@pytest.mark.parametrize(
    "ctor, shape, kwargs",
    [
        (fnn.Conv1DTranspose, (4, 2), dict(kernel_size=3, strides=2, padding="same", output_padding=1)),
        (fnn.Conv1DTranspose, (3, 1), dict(kernel_size=4, strides=3, padding="same", output_padding=2)),
        (fnn.Conv1DTranspose, (3, 2), dict(kernel_size=2, dilation=3, padding="same", output_padding=2)),
        (fnn.Conv2DTranspose, (3, 2, 2), dict(kernel_size=(3, 2), strides=(2, 3), padding="same", output_padding=(0, 2))),
        (fnn.Conv3DTranspose, (2, 2, 1, 1), dict(kernel_size=2, strides=(2, 1, 2), padding="valid", output_padding=(1, 0, 1))),
    ],
)  # fmt: skip
def test_transposed_conv_output_padding_matches_a_scatter_loop(ctor, shape, kwargs):
    nd = len(shape) - 1
    layer = ctor(2, **kwargs)
    params, state = layer.init(jax.random.key(0), shape)
    x = rand((2, *shape))
    y, _ = layer.apply(params, state, x, train=False)
    per_axis = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)  # noqa: E731
    expected = np_conv_transpose(
        x, np.asarray(params["w"]), per_axis(kwargs.get("strides", 1)), per_axis(kwargs.get("dilation", 1)),
        kwargs["padding"], per_axis(kwargs["output_padding"]),
    )  # fmt: skip
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected + np.asarray(params["b"]), rtol=1e-5, atol=1e-5)


def test_same_output_padding_is_the_gradient_of_a_same_strided_conv():
    # output_padding=stride-1 with an odd kernel recovers the input size of a "same" Conv1D with that stride.
    transpose = fnn.Conv1DTranspose(2, 3, strides=3, padding="same", output_padding=2, use_bias=False)
    params, state = transpose.init(jax.random.key(1), (4, 3))
    x = rand((1, 4, 3))
    y, _ = transpose.apply(params, state, x, train=False)
    forward = fnn.Conv1D(3, 3, strides=3, padding="same", use_bias=False)
    conv = lambda z: forward.apply(params, {}, z, train=False)[0]  # noqa: E731  (w: (k, 2 in, 3 out))
    _, vjp = jax.vjp(conv, jnp.zeros((1, 12, 2)))
    np.testing.assert_allclose(y, vjp(jnp.asarray(x))[0], rtol=1e-5, atol=1e-6)


def test_output_padding_errors():
    with pytest.raises(ValueError, match=r"'t': output_padding must be smaller than max\(strides, dilation\) = "
                       r"\(2, 1\) on each axis, got output_padding=\(1, 1\)"):  # fmt: skip
        fnn.Conv2DTranspose(2, 3, strides=(2, 1), output_padding=1, name="t")
    with pytest.raises(
        ValueError, match=r"output_padding must be None, a non-negative int or a tuple of 2 .*\(1,\)"
    ):
        fnn.Conv2DTranspose(2, 3, strides=2, output_padding=(1,))
    with pytest.raises(
        ValueError, match=r"Conv1DTranspose 'conv1d_transpose': output_padding must be .*got -1"
    ):
        fnn.Conv1DTranspose(2, 3, strides=2, output_padding=-1)


# --- Conv*Transpose(padding=p): PyTorch's integer padding ----------------------------------------------------


@pytest.mark.parametrize(
    "ctor, shape, kwargs",
    [
        # PyTorch's upsampling ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1): doubles the size
        (fnn.Conv2DTranspose, (3, 2, 2), dict(kernel_size=3, strides=2, padding=1, output_padding=1)),
        # per-axis padding, one beyond the kernel's reach (k - 1 - p < 0: PyTorch crops, so does fnn), dilation
        (fnn.Conv3DTranspose, (2, 3, 2, 1), dict(kernel_size=(2, 1, 3), strides=(1, 2, 2), padding=(0, 1, 2),
                                                 dilation=(2, 1, 1), output_padding=(1, 0, 1))),
    ],
)  # fmt: skip
def test_transposed_conv_torch_padding_matches_a_cropped_scatter_loop(ctor, shape, kwargs):
    # PyTorch's definition: the full scatter (plus output_padding zero rows on the high side), p rows cut per side.
    nd = len(shape) - 1
    layer = ctor(2, **kwargs)
    params, state = layer.init(jax.random.key(0), shape)
    x = rand((2, *shape))
    y, _ = layer.apply(params, state, x, train=False)
    per_axis = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)  # noqa: E731
    pads, ops = per_axis(kwargs["padding"]), per_axis(kwargs.get("output_padding", 0))
    full = np_conv_transpose(
        x, np.asarray(params["w"]), per_axis(kwargs.get("strides", 1)), per_axis(kwargs.get("dilation", 1)),
        "valid", ops,
    )  # fmt: skip
    expected = full[(slice(None), *(slice(p, n - p) for p, n in zip(pads, full.shape[1:-1])))]
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected + np.asarray(params["b"]), rtol=1e-5, atol=1e-5)


def test_torch_padding_is_the_gradient_of_a_conv_with_that_padding_and_not_keras_same():
    # ConvTranspose(padding=p, output_padding=op) is the input-gradient of Conv(padding=p) on the input size it names.
    transpose = fnn.Conv1DTranspose(2, 3, strides=2, padding=1, output_padding=1, use_bias=False)
    params, state = {"w": jnp.asarray(rand((3, 2, 3), seed=1))}, {}  # by hand: init's compile costs time
    x = rand((1, 4, 3))
    y, _ = transpose.apply(params, state, x, train=False)
    forward = fnn.Conv1D(3, 3, strides=2, padding=1, use_bias=False)
    conv = lambda z: forward.apply(params, {}, z, train=False)[0]  # noqa: E731
    _, vjp = jax.vjp(conv, jnp.zeros((1, 8, 2)))
    np.testing.assert_allclose(y, vjp(jnp.asarray(x))[0], rtol=1e-5, atol=1e-6)
    # Keras's "same" has that size too, but pads (2, 1) where PyTorch pads (1, 2): one row later.
    keras_same = fnn.Conv1DTranspose(2, 3, strides=2, padding="same", use_bias=False)
    same, _ = keras_same.apply(params, state, x, train=False)
    assert same.shape == y.shape and not np.allclose(same, y)
    np.testing.assert_allclose(same[:, 1:], y[:, :-1], rtol=1e-5, atol=1e-6)


def test_torch_padding_errors():
    with pytest.raises(ValueError, match=r"'t': padding must be 'same', 'valid', a non-negative int or a tuple "
                       r"of 2 non-negative ints \(PyTorch's ConvTranspose padding\), got \(1, -1\)"):  # fmt: skip
        fnn.Conv2DTranspose(2, 3, padding=(1, -1), name="t")
    with pytest.raises(ValueError, match=r"tuple of 2 non-negative ints .*got \(\(1, 1\), \(0, 0\)\)"):
        fnn.Conv2DTranspose(2, 3, padding=((1, 1), (0, 0)))  # (low, high) pairs mean nothing to PyTorch
    with pytest.raises(ValueError, match=r"Conv1DTranspose 'conv1d_transpose': padding must be 'same', 'valid', "
                       r"a non-negative int or a tuple of 1 non-negative int \(PyTorch's .*got 'causal'"):  # fmt: skip
        fnn.Conv1DTranspose(2, 3, padding="causal")
    with pytest.raises(ValueError, match=r"must be smaller than max\(strides, dilation\) = \(1,\)"):
        fnn.Conv1DTranspose(2, 3, padding=1, output_padding=1)
    # (2 - 1) * 1 - 2 * 3 + 3 = -2 rows: PyTorch's "Output size is too small", here in init and apply
    layer = fnn.Conv1DTranspose(2, 3, padding=3, name="t")
    message = r"'t': padding=3 leaves an output of spatial size \(-2,\) for input spatial shape \(2,\); it"
    with pytest.raises(ValueError, match=message):
        layer.init(jax.random.key(0), (2, 1))
    with pytest.raises(ValueError, match=r"spatial size \(0,\) for input spatial shape \(4,\)"):
        layer.init(jax.random.key(0), (4, 1))  # (4 - 1) - 6 + 3 = 0 rows is still too few
    shapes, _ = jax.eval_shape(lambda k: layer.init(k, (5, 1)), jax.random.key(0))  # 1 row is enough
    assert shapes["w"].shape == (3, 2, 1)
    with pytest.raises(ValueError, match=message):
        layer.apply({"w": jnp.zeros((3, 2, 1)), "b": jnp.zeros(2)}, {}, jnp.ones((1, 2, 1)), train=False)
