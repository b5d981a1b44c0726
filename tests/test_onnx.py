"""fnn.export_onnx: each layer family round-trips through onnxruntime; what the converter lacks is named.

jax2onnx and onnxruntime live in their own environment (`make onnx`, the ``onnx`` extra): its
converter brings Flax, Equinox and Orbax along. In ``make test`` the round trips skip, and only the
missing-converter error runs.
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn

HAVE_CONVERTER = all(importlib.util.find_spec(m) is not None for m in ("jax2onnx", "onnxruntime"))
needs_converter = pytest.mark.skipif(not HAVE_CONVERTER, reason="jax2onnx and onnxruntime: `make onnx`")

FAMILIES = {
    "dense and dropout": (lambda: [fnn.Dense(16, "relu"), fnn.Dropout(0.2), fnn.Dense(3, "softmax")], (4,)),
    "conv and max pooling": (
        lambda: [fnn.Conv2D(4, 3, activation="relu"), fnn.MaxPool2D(2), fnn.Flatten(), fnn.Dense(3)],
        (8, 8, 1),
    ),
    "conv 1-d, average and global pooling": (
        lambda: [fnn.Conv1D(4, 3, padding="same"), fnn.AvgPool1D(2), fnn.GlobalMaxPool(), fnn.Dense(3)],
        (8, 2),
    ),
    "batch and layer normalisation": (
        lambda: [fnn.Dense(8), fnn.BatchNorm(), fnn.Gelu(), fnn.LayerNorm(), fnn.Dense(3)],
        (4,),
    ),
    "embedding and LSTM": (
        lambda: [fnn.Embedding(20, 8), fnn.LSTM(8), fnn.Dense(3)],
        fnn.Shape((6,), jnp.int32),
    ),
    "GRU and a bidirectional simple RNN": (
        lambda: [fnn.GRU(8, return_sequences=True), fnn.Bidirectional(fnn.SimpleRNN(4)), fnn.Dense(3)],
        (5, 4),
    ),
    "transformer encoder (attention)": (
        lambda: [fnn.TransformerEncoderBlock(2, 16), fnn.GlobalAvgPool(), fnn.Dense(3)],
        (5, 8),
    ),
}


def inputs(shape, batch, seed=0):
    rng = np.random.default_rng(seed)
    if getattr(shape, "dtype", None) == jnp.int32:
        return rng.integers(0, 20, (batch, *shape)).astype(np.int32)
    return rng.normal(size=(batch, *shape)).astype(np.float32)


@needs_converter
@pytest.mark.parametrize("family", FAMILIES)
def test_each_layer_family_gives_the_same_outputs_in_onnxruntime(family, tmp_path):
    import onnxruntime

    layers, shape = FAMILIES[family]
    model = fnn.Sequential(layers())
    params, state = model.init(jax.random.key(0), shape)
    path = fnn.export_onnx(tmp_path / "model.onnx", model, params, state, shape)
    session = onnxruntime.InferenceSession(str(path))
    (given,) = session.get_inputs()
    assert given.shape[0] == "batch"
    for batch in (1, 7):  # the batch axis is symbolic
        x = inputs(shape, batch, seed=batch)
        expected = np.asarray(model.apply(params, state, x, train=False)[0])
        np.testing.assert_allclose(session.run(None, {given.name: x})[0], expected, rtol=1e-5, atol=1e-5)


@needs_converter
def test_several_inputs_and_outputs_are_the_onnx_inputs_and_outputs_in_leaf_order(tmp_path):
    import onnxruntime

    model = fnn.Sequential(
        [fnn.Parallel([fnn.Dense(3), fnn.Dense(2)]), fnn.Lambda(lambda ab: (ab[1], ab[0]))]
    )
    shapes = ((4,), (5,))
    params, state = model.init(jax.random.key(1), shapes)
    session = onnxruntime.InferenceSession(
        str(fnn.export_onnx(tmp_path / "m.onnx", model, params, state, shapes))
    )
    xs = (inputs((4,), 3), inputs((5,), 3, seed=1))
    outputs = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})
    for got, expected in zip(outputs, model.apply(params, state, xs, train=False)[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@needs_converter
def test_an_operation_the_converter_lacks_is_named_with_its_layer(tmp_path):
    def on_the_host(x):
        return jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    model = fnn.Sequential([fnn.Dense(4), fnn.Lambda(on_the_host, name="host_call")])
    params, state = model.init(jax.random.key(0), (4,))
    with pytest.raises(
        NotImplementedError, match=r"cannot convert 'pure_callback', used by layer 'host_call'"
    ):
        fnn.export_onnx(tmp_path / "m.onnx", model, params, state, (4,))
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.skipif(HAVE_CONVERTER, reason="the converter is installed here")
def test_without_the_converter_the_extra_to_install_is_named(tmp_path):
    model = fnn.Dense(2)
    params, state = model.init(jax.random.key(0), (3,))
    with pytest.raises(ImportError, match=r"export_onnx needs jax2onnx: pip install 'fnn\[onnx\]'"):
        fnn.export_onnx(tmp_path / "m.onnx", model, params, state, (3,))
